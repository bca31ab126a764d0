"""Full runs of chapter 8 (triple extraction): seed sweeps and arms too long for the notebook.

Every run is :func:`companion.triples.train_extractor` (the recipe the notebook runs for seed 0)
on the chapter's template corpus, scored by :func:`companion.triples.evaluate` on the test
corpus. An *arm* is a set of changes to the notebook's recipe ``RECIPE``.
"""

from __future__ import annotations

import time
from typing import Any

from .. import triples
from . import experiment

# the corpus and the training recipe of the notebook's section 6
CORPUS = dict(train_size=6000, train_seed=0, test_size=1000, test_seed=1)
RECIPE = dict(steps=600, batch_size=32, lr=3e-3, cosine=False, conditioning="cln", n_subject=2, n_object=4,
              pos_std=1.0)
SEEDS = [0, 1, 2]


def _config(arms: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return dict(CORPUS, recipe=RECIPE, arms=arms, seeds=SEEDS, threads=1)


def run_arms(cfg: dict[str, Any]) -> dict[str, Any]:
    """Train and score one model per (arm, seed); scores per overlap type as :func:`triples.evaluate`."""
    train = triples.generate_corpus(cfg["train_size"], seed=cfg["train_seed"])
    test = triples.generate_corpus(cfg["test_size"], seed=cfg["test_seed"])
    vocab = triples.build_vocab([train, test])
    data = triples.TripleData(train, vocab)
    out: dict[str, list[dict[str, Any]]] = {}
    for arm, changes in cfg["arms"].items():
        out[arm] = []
        for seed in cfg["seeds"]:
            t0 = time.perf_counter()
            run = triples.train_extractor(data, seed=seed, progress=False, **dict(cfg["recipe"], **changes))
            scores = triples.evaluate(triples.extract(run.model, test, vocab), test)
            out[arm].append({"seed": seed, "seconds": round(time.perf_counter() - t0, 1), "scores": scores})
    return {"arms": out}


@experiment("ch8", "seeds", config=_config({"recipe": {}}),
            description="the notebook's extractor (CLN, n=(2,4), 600 steps, batch 32) over 3 seeds")
def seeds(cfg: dict[str, Any]) -> dict[str, Any]:
    return run_arms(cfg)


@experiment("ch8", "variants", config=_config({"cosine_lr4e-3": {"cosine": True, "lr": 4e-3},
                                                "batch64": {"batch_size": 64}}),
            description="training variants: cosine decay of a 4e-3 rate; batch 64 (3 seeds each)")
def variants(cfg: dict[str, Any]) -> dict[str, Any]:
    return run_arms(cfg)


@experiment("ch8", "ablation", config=_config({"plain_sigmoids": {"n_subject": 1, "n_object": 1},
                                                "additive": {"conditioning": "add"},
                                                "pos_std_0.02": {"pos_std": 0.02}}),
            description="ablations: plain sigmoids n=(1,1); additive conditioning; position table std 0.02 (3 seeds each)")
def ablation(cfg: dict[str, Any]) -> dict[str, Any]:
    return run_arms(cfg)
