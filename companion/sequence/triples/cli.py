"""A saved model and the command line: train and score on JSON-lines files with an account of every
triple, save, load, and predict on new text.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import torch
from torch import nn

from ...core.utils import check_int
from .corpus import Sentence, Triple
from .decode import evaluate, extract, window_coverage
from .io import Schema, _json_lines, _write_jsonl, load_jsonl, load_schema, to_record, tokenize, write_dataset
from .model import TripleData, TripleModel, Vocab, _check_vocab, build_vocab, train_extractor

#: :func:`run_files`' default cap of the position table, in tokens.
MAX_LEN = 512


def _save_extractor(path: Path, model: TripleModel, vocab: Vocab, schema: Schema, options: dict, stride: int) -> None:
    torch.save({"format": 2, "state_dict": model.state_dict(), "options": options, "vocab": vocab.itos,
                "unk": vocab.unk, "predicates": list(schema.predicates),
                "schema": {"subject_types": list(schema.subject_types), "object_types": list(schema.object_types),
                           "slots": [list(t) for t in schema.slots]},
                "stride": stride, "external_encoder": bool(model.external)}, path)


def load_extractor(path: str | Path) -> tuple[TripleModel, Vocab, Schema, int]:
    """A model saved by :func:`run_files` (``model.pt`` in the directory ``path``, or the file
    itself): the :class:`~companion.sequence.triples.model.TripleModel` with its weights, in eval mode (its ``max_len`` is the
    position table it was trained with), its vocabulary, its :class:`~companion.sequence.triples.io.Schema` (with the slot
    predicates of n-ary objects) and the window stride its dev set was read with.

    A model trained with an external ``encoder`` cannot be rebuilt from the file: that raises
    ``ValueError`` (build the model yourself and load ``torch.load(path)["state_dict"]``)."""
    path = Path(path)
    if path.is_dir():
        path = path / "model.pt"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no saved model (run_files or `triples_cli train --out DIR` writes DIR/model.pt)")
    ck = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(ck, dict) or not {"state_dict", "options", "vocab", "predicates"} <= set(ck):
        raise ValueError(f"{path}: not a model saved by run_files (expected the keys state_dict, options, vocab, predicates)")
    if ck.get("external_encoder"):
        raise ValueError(f"{path}: the model was trained with an external encoder, which the file cannot rebuild; build "
                         "TripleModel(..., encoder=...) yourself and load the file's 'state_dict'")
    vocab = Vocab(list(ck["vocab"]), unk=ck.get("unk", "[UNK]"))
    sch = ck.get("schema", {})
    schema = Schema(tuple(ck["predicates"]), tuple(sch.get("subject_types", ())), tuple(sch.get("object_types", ())),
                    tuple(tuple(t) for t in sch.get("slots", ())))
    model = TripleModel(len(vocab), len(schema), **ck["options"])
    model.load_state_dict(ck["state_dict"])
    model.eval()
    return model, vocab, schema, int(ck.get("stride") or max(1, model.max_len // 2))


def predict_texts(model: TripleModel, vocab: Vocab, schema: Schema, texts: list[str], *, stride: int | None = None,
                  t_start: float = 0.6, t_end: float = 0.5, batch_size: int = 256) -> list[dict]:
    """The triples of new ``texts`` as JSON-lines records ``{"text", "spo_list"}``, one per text, in
    the input format (:func:`~companion.sequence.triples.io.to_record`: entities cut from the text, slot triples folded back into
    n-ary objects). Each text is tokenized (:func:`~companion.sequence.triples.io.tokenize`) and read by :func:`~companion.sequence.triples.decode.extract`; a text
    longer than ``model.max_len`` tokens is read in windows every ``stride`` tokens (default
    ``max_len // 2``), with a warning: a triple whose subject and object span more than
    ``max_len - stride + 1`` tokens may lie in no window (:func:`~companion.sequence.triples.decode.window_starts`) and cannot be
    found. A text without tokens gets an empty ``spo_list``."""
    if isinstance(texts, str) or not isinstance(texts, (list, tuple)) or not all(isinstance(t, str) for t in texts):
        raise TypeError("texts must be a list of str")
    if not isinstance(schema, Schema):
        raise TypeError(f"schema must be a Schema, got {type(schema).__name__}")
    stride = max(1, model.max_len // 2) if stride is None else check_int("stride", stride, minimum=1)
    sents = []
    for t in texts:
        toks, offs = tokenize(t, offsets=True)
        sents.append(Sentence(toks, text=t, offsets=offs))
    full = [s for s in sents if s.tokens]
    long = sum(len(s.tokens) > model.max_len for s in full)
    if long:
        warnings.warn(f"{long} of {len(texts)} texts are longer than the model's max_len={model.max_len} tokens and are "
                      f"read in windows of {model.max_len} tokens every {stride}; a triple whose subject and object span "
                      f"more than {model.max_len - stride + 1} tokens may lie in no window and is not found", stacklevel=2)
    preds = iter(extract(model, full, vocab, t_start=t_start, t_end=t_end, batch_size=batch_size, predicates=schema,
                         stride=stride) if full else [])
    return _records(sents, [next(preds) if s.tokens else set() for s in sents], schema)


def _records(sents: list[Sentence], preds: list[set[Triple]], schema: Schema) -> list[dict]:
    """Predicted triples as records of the input format (:func:`~companion.sequence.triples.io.to_record`), entities cut from the texts."""
    return [to_record(Sentence(s.tokens, sorted(p), text=s.text, offsets=s.offsets), schema)
            for s, p in zip(sents, preds, strict=True)]


def run_files(train: str | Path, dev: str | Path, schema: str | Path, *, out: str | Path | None = None,
              steps: int = 2000, batch_size: int = 32, lr: float = 3e-3, ema_decay: float | None = 0.999,
              seed: int = 0, skip_missing: bool = False, min_count: int = 1, max_len: int | None = None,
              stride: int | None = None, progress: bool = False, encoder: nn.Module | None = None,
              vocab: Vocab | None = None, **model_kw) -> dict:
    """Train the chapter's extractor on a JSON-lines training file and score it on a dev file.

    The predicates come from the ``schema`` file (:func:`~companion.sequence.triples.io.load_schema`), the vocabulary from the
    training file only (:func:`~companion.sequence.triples.model.build_vocab`; dev tokens it lacks map to ``[UNK]``), or is
    ``vocab`` (e.g. ``Vocab.from_file`` of a BERT ``vocab.txt``, with ``encoder=``). The model is
    :func:`~companion.sequence.triples.model.train_extractor` with the given options; dev triples are scored with :func:`~companion.sequence.triples.decode.evaluate`
    (with the training set, so ``"new_entities"`` is included) for the final weights
    (``"model"``) and for their moving average (``"ema"``, when ``ema_decay`` is set).

    **Length.** ``max_len`` is the model's position table: by default the longest training
    sentence, at most ``MAX_LEN`` (512) tokens. Longer training sentences are truncated
    (:class:`~companion.sequence.triples.model.TripleData` with ``truncate=True``: a warning, and the triples past the cut are
    counted). Longer dev sentences are read in windows of ``max_len`` tokens every ``stride``
    tokens (default ``max_len // 2``, :func:`~companion.sequence.triples.decode.extract`); the dev triples that lie in no window
    (:func:`~companion.sequence.triples.decode.window_coverage`) are counted, with a warning, and stay gold triples.

    **Accounting.** No triple is lost without a count. ``result["accounting"]`` holds, for
    ``"train"`` and ``"dev"``, the loader's counts (:func:`~companion.sequence.triples.io.load_jsonl`: triples read, labelled,
    repeated, dropped by ``skip_missing`` for a missing entity or an unknown predicate, n-ary
    objects, sentences whose entities must overlap, gold triples the labels cannot decode), the
    truncation counts (train), the window counts and ``gold_triples`` (dev: labelled + dropped,
    the recall denominator: dropped dev triples count as misses in every score).

    With ``out``, writes ``scores.json`` (the result without the run), ``dev_predictions.jsonl``
    (the averaged model's triples of the dev texts, as :func:`predict_texts` writes them) and
    ``model.pt`` (weights,
    options, vocabulary, schema and stride, read back by :func:`load_extractor`). Returns a dict
    with ``scores``, ``accounting``, ``seconds``, corpus sizes and, under ``"run"``, the
    :class:`companion.core.train.FitResult`."""
    sch = load_schema(schema)
    train_c, drop_tr, load_tr = load_jsonl(train, sch, skip_missing=skip_missing, return_dropped=True, return_stats=True)
    dev_c, drop_dev, load_dev = load_jsonl(dev, sch, skip_missing=skip_missing, return_dropped=True, return_stats=True)
    if vocab is None:
        vocab = build_vocab(train_c, min_count=min_count)
    _check_vocab(vocab)
    longest = max(len(s.tokens) for s in train_c)
    max_len = min(longest, MAX_LEN) if max_len is None else check_int("max_len", max_len, minimum=1)
    stride = max(1, max_len // 2) if stride is None else check_int("stride", stride, minimum=1)
    if stride > max_len:
        raise ValueError(f"stride ({stride}) must be <= max_len ({max_len})")
    data = TripleData(train_c, vocab, max_len=max_len, predicates=sch, truncate=True)
    cover = window_coverage(dev_c, max_len, stride)
    if cover["triples_outside_windows"]:
        warnings.warn(f"{cover['windowed_sentences']} dev sentences are longer than max_len={max_len} and are read in "
                      f"windows; {cover['triples_outside_windows']} of their triples lie in no window of {max_len} tokens "
                      "(they stay gold triples and count as misses unless found elsewhere)", stacklevel=2)
    t0 = time.perf_counter()
    run = train_extractor(data, seed=seed, steps=steps, batch_size=batch_size, lr=lr, ema_decay=ema_decay,
                          progress=progress, encoder=encoder, **model_kw)
    seconds = time.perf_counter() - t0
    models = {"model": run.model} if ema_decay is None else {"model": run.model, "ema": run.ema}
    preds = {k: extract(m, dev_c, vocab, predicates=sch, stride=stride) for k, m in models.items()}
    scores = {k: evaluate(p, dev_c, train=train_c) for k, p in preds.items()}
    unk = sum(vocab.stoi.get(w) is None for s in dev_c for w in s.tokens) / sum(len(s.tokens) for s in dev_c)
    accounting = {
        "train": dict(load_tr, truncated_sentences=data.stats["truncated_sentences"],
                      truncated_triples=data.stats["truncated_triples"]),
        "dev": dict(load_dev, windowed_sentences=cover["windowed_sentences"],
                    triples_outside_windows=cover["triples_outside_windows"],
                    gold_triples=sum(len(s.gold) for s in dev_c)),
    }
    result = {"scores": scores, "seconds": seconds, "n_train": len(train_c), "n_dev": len(dev_c),
              "predicates": len(sch), "vocab": len(vocab), "dev_unk_rate": unk, "max_len": max_len,
              "longest_train": longest, "stride": stride, "dropped_triples": {"train": drop_tr, "dev": drop_dev},
              "accounting": accounting, "run": run}
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "scores.json").write_text(json.dumps({k: v for k, v in result.items() if k != "run"}, indent=1,
                                                    ensure_ascii=False), encoding="utf-8")
        best = "ema" if "ema" in models else "model"
        _write_jsonl(_records(dev_c, preds[best], sch), out / "dev_predictions.jsonl")  # as predict_texts writes them
        _save_extractor(out / "model.pt", models[best], vocab, sch, dict(model_kw, max_len=max_len), stride)
    return result


_ACCOUNTING_ROWS = [
    ("records", "records"),
    ("triples read (n-ary objects expanded)", "triples_read"),
    ("  labelled", "kept"),
    ("  repeated in their record (kept once)", "duplicates"),
    ("  dropped: entity not in the text", "dropped_missing_entity"),
    ("  dropped: predicate not in the schema", "dropped_unknown_predicate"),
    ("n-ary objects", "nary_objects"),
    ("  their slot triples", "slot_triples"),
    ("  that folding slots back gets wrong", "nary_ambiguous"),
    ("sentences whose entities must overlap", "overlap_sentences"),
    ("gold triples the labels cannot decode", "undecodable_triples"),
    ("sentences truncated to max_len", "truncated_sentences"),
    ("  triples past the cut (not labelled)", "truncated_triples"),
    ("sentences read in windows", "windowed_sentences"),
    ("  triples in no window", "triples_outside_windows"),
    ("gold triples scored (labelled + dropped)", "gold_triples"),
]


def _accounting_table(acc: dict[str, dict[str, int]]) -> str:
    """The accounting of :func:`run_files` as a text table (``-`` where a count does not apply)."""
    lines = [f"{'':44s}{'train':>8s}{'dev':>8s}"]
    for label, key in _ACCOUNTING_ROWS:
        cells = [str(acc[split][key]) if key in acc[split] else "-" for split in ("train", "dev")]
        lines.append(f"{label:44s}{cells[0]:>8s}{cells[1]:>8s}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    """``python -m companion.sequence.triples_cli train --train T.jsonl --dev D.jsonl --schema S.json [--out DIR]``
    trains and scores the extractor (:func:`run_files`) and prints the accounting of every triple
    and precision, recall and F1; ``python -m companion.sequence.triples_cli predict --model DIR
    [--input FILE.jsonl] [--output FILE.jsonl]`` loads a saved model (:func:`load_extractor`) and
    writes the triples of new text as JSON lines (:func:`predict_texts`; the input is JSON lines
    with a ``"text"`` field, or plain text on standard input, one text per line);
    ``python -m companion.sequence.triples_cli demo DIR`` writes the generated Chinese corpus
    (:func:`~companion.sequence.triples.io.write_dataset`) to ``DIR`` to try it on."""
    ap = argparse.ArgumentParser(prog="python -m companion.sequence.triples_cli",
                                 description="Half-pointer, half-tagging triple extraction (chapter 9).")
    sub = ap.add_subparsers(dest="command", required=True)
    tr = sub.add_parser("train", help="train on a JSON-lines file and score a dev file")
    tr.add_argument("--train", required=True, help="training JSON lines {text, spo_list}")
    tr.add_argument("--dev", required=True, help="dev JSON lines {text, spo_list}")
    tr.add_argument("--schema", required=True, help="schema: JSON lines {predicate, subject_type, object_type}")
    tr.add_argument("--out", default=None, help="directory for scores.json, dev_predictions.jsonl, model.pt")
    tr.add_argument("--steps", type=int, default=2000)
    tr.add_argument("--batch-size", type=int, default=32)
    tr.add_argument("--lr", type=float, default=3e-3)
    tr.add_argument("--ema", type=float, default=0.999, help="EMA decay of the weights (0: none)")
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--d", type=int, default=64, help="model width")
    tr.add_argument("--layers", type=int, default=2)
    tr.add_argument("--max-len", type=int, default=None,
                    help=f"position table in tokens (default: the longest training sentence, at most {MAX_LEN}); "
                         "longer training sentences are truncated, longer dev sentences read in windows (counted)")
    tr.add_argument("--stride", type=int, default=None, help="step between dev windows (default: max_len // 2)")
    tr.add_argument("--min-count", type=int, default=1, help="keep training tokens seen at least this often")
    tr.add_argument("--skip-missing", action="store_true",
                    help="drop (and count) triples whose entity is not in the text or whose predicate is not in the "
                         "schema; dropped dev triples count as misses (default: stop with an error)")
    tr.add_argument("--progress", action="store_true")
    pr = sub.add_parser("predict", help="write the triples of new text with a saved model")
    pr.add_argument("--model", required=True, help="directory with model.pt (train --out DIR), or the file")
    pr.add_argument("--input", default=None,
                    help="JSON lines with a 'text' field (default: plain text on standard input, one text per line)")
    pr.add_argument("--output", default=None, help="JSON-lines file to write (default: standard output)")
    pr.add_argument("--stride", type=int, default=None, help="step between windows of long texts (default: as saved)")
    de = sub.add_parser("demo", help="write the generated Chinese corpus (train, dev, schema) to a directory")
    de.add_argument("directory")
    de.add_argument("--n-train", type=int, default=2000)
    de.add_argument("--n-dev", type=int, default=300)
    de.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    if a.command == "demo":
        paths = write_dataset(a.directory, a.n_train, a.n_dev, seed=a.seed)
        print("\n".join(f"{k}: {v}" for k, v in paths.items()))
        return {"paths": paths}
    if a.command == "predict":
        model, vocab, sch, stride = load_extractor(a.model)
        if a.input is None:
            texts = [line.rstrip("\r\n") for line in sys.stdin if line.strip()]
        else:
            texts = []
            for i, rec in _json_lines(Path(a.input)):
                if not isinstance(rec, dict) or not isinstance(rec.get("text"), str):
                    raise ValueError(f"{a.input}:{i}: expected a JSON object with a 'text' string")
                texts.append(rec["text"])
        records = predict_texts(model, vocab, sch, texts, stride=a.stride or stride)
        lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
        if a.output is None:
            sys.stdout.write(lines)
        else:
            Path(a.output).write_text(lines, encoding="utf-8")
        print(f"{len(records)} texts, {sum(len(r['spo_list']) for r in records)} triples"
              + (f" written to {a.output}" if a.output else ""), file=sys.stderr)
        return {"records": records}
    res = run_files(a.train, a.dev, a.schema, out=a.out, steps=a.steps, batch_size=a.batch_size, lr=a.lr,
                    ema_decay=a.ema or None, seed=a.seed, skip_missing=a.skip_missing, min_count=a.min_count,
                    max_len=a.max_len, stride=a.stride, progress=a.progress, d=a.d, layers=a.layers)
    print(f"{res['n_train']} training and {res['n_dev']} dev sentences, {res['predicates']} predicates, "
          f"vocabulary {res['vocab']} (dev tokens unknown: {res['dev_unk_rate']:.1%}), position table {res['max_len']} "
          f"tokens (longest training sentence {res['longest_train']}); trained in {res['seconds']:.0f} s")
    print(_accounting_table(res["accounting"]))
    for name, sc in res["scores"].items():
        for key in ("all", "new_entities"):
            r = sc[key]
            print(f"{name:5s} {key:12s} precision {r['precision']:.4f}  recall {r['recall']:.4f} "
                  f"({r['hits']}/{r['gold']})  F1 {r['f1']:.4f}"
                  f"  ({r['n']} {'sentences' if key == 'all' else 'gold triples'})")
    return res
