r"""Chapter 9 — Triple extraction with a half-pointer, half-tagging network.

A sentence holds a *set* of (subject, predicate, object) triples whose spans may overlap. The
chapter factorizes :math:`p(s,p,o)=p(s)\,p(o,p\mid s)` (equation :eq:`spo-factor`): one head marks the
start and end of every subject with independent sigmoids, a second head, conditioned on one
subject through Conditional LayerNorm (equation :eq:`spo-cln`), marks the start and end of every object
*per predicate* (equation :eq:`spo-pointer`). Sigmoids of the form :math:`\sigma(z)^n` (equation :eq:`spo-pn`)
fight the imbalance of the sparse labels; spans are read back with the nearest-end rule
(equation :eq:`spo-decode`); triples are scored by exact-match precision, recall and F1 (equation :eq:`spo-f1`).

The package is split by stage: :mod:`~companion.sequence.triples.corpus`, :mod:`~companion.sequence.triples.io`,
:mod:`~companion.sequence.triples.model`, :mod:`~companion.sequence.triples.decode` and :mod:`~companion.sequence.triples.cli`;
every public name is importable from ``companion.triples``. Public surface:

* corpus: ``PREDICATES`` (the template corpus's schema), :class:`~companion.sequence.triples.corpus.Sentence`,
  :func:`~companion.sequence.triples.corpus.generate_corpus` (template sentences with Normal / SEO / EPO / nested overlaps, a reuse
  probability and a pool of entities held out of training), :func:`~companion.sequence.triples.corpus.overlap_type`,
  :func:`~companion.sequence.triples.corpus.corpus_stats`, :func:`~companion.sequence.triples.corpus.dedupe`, :func:`~companion.sequence.triples.corpus.toy_splits`;
* real data: :func:`~companion.sequence.triples.io.tokenize` (one token per CJK character, one per word otherwise),
  :class:`~companion.sequence.triples.io.Schema`, :func:`~companion.sequence.triples.io.load_schema`, :func:`~companion.sequence.triples.io.parse_record`, :func:`~companion.sequence.triples.io.load_jsonl` (the JSON-lines
  format of DuIE / LIC2019), :func:`~companion.sequence.triples.io.generate_records` and :func:`~companion.sequence.triples.io.write_dataset` (a small generated
  corpus in that exact format, with Chinese sentences), :func:`~companion.sequence.triples.io.to_record` (the inverse, n-ary
  objects folded back), :func:`~companion.sequence.triples.cli.run_files` (which counts every triple it cannot label or reach),
  :func:`~companion.sequence.triples.decode.window_starts` and :func:`~companion.sequence.triples.decode.window_coverage` (long text read in windows),
  :func:`~companion.sequence.triples.cli.load_extractor` and :func:`~companion.sequence.triples.cli.predict_texts` (a saved model on new text), and the command
  line ``python -m companion.sequence.triples_cli train --train T.jsonl --dev D.jsonl --schema S.json``
  (and ``predict --model DIR --input FILE.jsonl``);
* tokens: :class:`~companion.sequence.triples.model.Vocab`, :func:`~companion.sequence.triples.model.build_vocab` (training split only; unknown tokens map to
  ``[UNK]``), :func:`~companion.sequence.triples.model.encode_sentence`, :func:`~companion.sequence.triples.corpus.find_span`;
* labels and their oracles: :func:`~companion.sequence.triples.model.subject_labels`, :func:`~companion.sequence.triples.model.object_labels`,
  :func:`~companion.sequence.triples.decode.decode_spans`, :func:`~companion.sequence.triples.decode.decode_gold`, :func:`~companion.sequence.triples.decode.single_tag_capacity`;
* model and training: :class:`~companion.sequence.triples.model.ConditionalLayerNorm`, :class:`~companion.sequence.triples.model.TripleModel` (built-in encoder, or
  any ``encoder`` module mapping token ids ``(n, L)`` to hidden states ``(n, L, H)``, such as a
  pretrained BERT), :func:`~companion.sequence.triples.model.pn_bce`, :class:`~companion.sequence.triples.model.TripleData` (batches with the subject sampling of the
  chapter), :func:`~companion.sequence.triples.model.triple_loss`, :func:`~companion.sequence.triples.model.train_extractor` (the chapter's training recipe);
* decoding and scoring: :func:`~companion.sequence.triples.decode.extract`, :func:`~companion.sequence.triples.decode.prf`, :func:`~companion.sequence.triples.decode.evaluate` (optionally on the test
  triples whose entities never occur in training).

Conventions: a sentence is a list of tokens; a span is ``(start, end)`` with *inclusive*
token indices; a triple is ``(subject_tokens, predicate, object_tokens)`` with tuples of tokens, so
two triples are equal when their tokens are (the chapter's exact-match rule). Every function that
maps predicates to label columns takes ``predicates`` (the schema's predicate names, in order;
default: the template corpus's ``PREDICATES``); a predicate outside it raises ``ValueError``.
"""

from __future__ import annotations

from .cli import MAX_LEN, load_extractor, main, predict_texts, run_files
from .corpus import PREDICATES, Sentence, corpus_stats, dedupe, find_span, generate_corpus, overlap_type, toy_splits
from .decode import (
    decode_gold,
    decode_spans,
    entities,
    evaluate,
    extract,
    prf,
    single_tag_capacity,
    window_coverage,
    window_starts,
)
from .io import (
    LOAD_COUNTS,
    ZH_SCHEMA,
    Schema,
    generate_records,
    load_jsonl,
    load_schema,
    parse_record,
    to_record,
    tokenize,
    write_dataset,
)
from .model import (
    ConditionalLayerNorm,
    TripleData,
    TripleModel,
    Vocab,
    build_vocab,
    encode_sentence,
    object_labels,
    pn_bce,
    subject_labels,
    train_extractor,
    triple_loss,
)

__all__ = [
    "PREDICATES",
    "Sentence",
    "generate_corpus",
    "overlap_type",
    "corpus_stats",
    "dedupe",
    "toy_splits",
    "tokenize",
    "Schema",
    "load_schema",
    "parse_record",
    "load_jsonl",
    "generate_records",
    "write_dataset",
    "run_files",
    "LOAD_COUNTS",
    "MAX_LEN",
    "window_starts",
    "window_coverage",
    "load_extractor",
    "predict_texts",
    "main",
    "Vocab",
    "build_vocab",
    "find_span",
    "encode_sentence",
    "subject_labels",
    "object_labels",
    "decode_spans",
    "decode_gold",
    "single_tag_capacity",
    "ConditionalLayerNorm",
    "TripleModel",
    "pn_bce",
    "TripleData",
    "triple_loss",
    "train_extractor",
    "extract",
    "prf",
    "entities",
    "evaluate",
    "to_record",
    "ZH_SCHEMA",
]
