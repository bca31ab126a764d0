"""Full runs of chapter 9 (triple extraction): seed sweeps and arms too long for the notebook.

Every run is :func:`companion.sequence.triples.model.train_extractor` (the recipe the notebook runs for seed 0)
on the chapter's template corpus (:func:`companion.sequence.triples.corpus.toy_splits`: a quarter of every entity
class held out of training, test sentences sharing a triple with training removed, vocabulary
from the training split only), scored by :func:`companion.sequence.triples.decode.evaluate` on the test corpus,
for the final weights (``scores``) and for their moving average (``scores_ema``), including the
test triples whose entities never occur in training. An *arm* is a set of changes to the
notebook's recipe ``RECIPE``; the key ``corpus`` changes the corpus (e.g. its reuse rate).
"""

from __future__ import annotations

import time
from typing import Any

from ..sequence import triples
from .runner import experiment

# the corpus and the training recipe of the notebook's section 6
CORPUS = dict(train_size=6000, train_seed=0, test_size=1000, test_seed=1, reuse=0.0)
RECIPE = dict(steps=600, batch_size=32, lr=3e-3, cosine=False, conditioning="cln", n_subject=2, n_object=4,
              pos_std=1.0, ema_decay=0.999)
SEEDS = [0, 1, 2]


def _config(arms: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return dict(CORPUS, recipe=RECIPE, arms=arms, seeds=SEEDS, threads=1)


def corpus(cfg: dict[str, Any]) -> tuple[list, list, triples.Vocab]:
    """Training and test corpus of a configuration, and the vocabulary of the training split."""
    train, test = triples.toy_splits(cfg["train_size"], cfg["test_size"], train_seed=cfg["train_seed"],
                                     test_seed=cfg["test_seed"], reuse=cfg["reuse"])
    return train, test, triples.build_vocab(train)


def score_run(run, train: list, test: list, vocab: triples.Vocab) -> dict[str, Any]:
    """:func:`triples.evaluate` (with the new-entity subsets) of the final and the averaged weights."""
    out = {"scores": triples.evaluate(triples.extract(run.model, test, vocab), test, train=train)}
    if run.ema is not run.model:
        out["scores_ema"] = triples.evaluate(triples.extract(run.ema, test, vocab), test, train=train)
    return out


def run_arms(cfg: dict[str, Any]) -> dict[str, Any]:
    """Train and score one model per (arm, seed); scores per overlap type as :func:`triples.evaluate`."""
    splits: dict[tuple, tuple] = {}
    out: dict[str, list[dict[str, Any]]] = {}
    for arm, changes in cfg["arms"].items():
        changes = dict(changes)
        ccfg = dict(cfg, **changes.pop("corpus", {}))
        key = tuple(ccfg[k] for k in CORPUS)
        if key not in splits:
            train, test, vocab = corpus(ccfg)
            splits[key] = (train, test, vocab, triples.TripleData(train, vocab))
        train, test, vocab, data = splits[key]
        out[arm] = []
        for seed in cfg["seeds"]:
            t0 = time.perf_counter()
            run = triples.train_extractor(data, seed=seed, progress=False, **dict(cfg["recipe"], **changes))
            seconds = round(time.perf_counter() - t0, 1)
            out[arm].append({"seed": seed, "seconds": seconds, **score_run(run, train, test, vocab)})
    return {"arms": out}


@experiment("ch9", "seeds", config=_config({"recipe": {}}),
            description="the notebook's extractor (CLN, n=(2,4), 600 steps, batch 32, EMA 0.999) over 3 seeds")
def seeds(cfg: dict[str, Any]) -> dict[str, Any]:
    return run_arms(cfg)


@experiment("ch9", "variants", config=_config({"cosine_lr4e-3": {"cosine": True, "lr": 4e-3},
                                                "batch64": {"batch_size": 64}}),
            description="training variants: cosine decay of a 4e-3 rate; batch 64 (3 seeds each)")
def variants(cfg: dict[str, Any]) -> dict[str, Any]:
    return run_arms(cfg)


@experiment("ch9", "ablation", config=_config({"plain_sigmoids": {"n_subject": 1, "n_object": 1},
                                                "additive": {"conditioning": "add"},
                                                "pos_std_0.02": {"pos_std": 0.02}}),
            description="ablations: plain sigmoids n=(1,1); additive conditioning; position table std 0.02 (3 seeds each)")
def ablation(cfg: dict[str, Any]) -> dict[str, Any]:
    return run_arms(cfg)


@experiment("ch9", "reuse", config=_config({"reuse0.5": {"corpus": {"reuse": 0.5}},
                                             "reuse0.5_1200": {"corpus": {"reuse": 0.5}, "steps": 1200}}),
            description="corpus with reuse 0.5 (long-range shared entities): 600 and 1200 steps (3 seeds each)")
def reuse(cfg: dict[str, Any]) -> dict[str, Any]:
    return run_arms(cfg)
