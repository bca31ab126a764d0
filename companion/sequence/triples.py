r"""Chapter 9 — Triple extraction with a half-pointer, half-tagging network.

A sentence holds a *set* of (subject, predicate, object) triples whose spans may overlap. The
chapter factorizes :math:`p(s,p,o)=p(s)\,p(o,p\mid s)` (equation :eq:`spo-factor`): one head marks the
start and end of every subject with independent sigmoids, a second head, conditioned on one
subject through Conditional LayerNorm (equation :eq:`spo-cln`), marks the start and end of every object
*per predicate* (equation :eq:`spo-pointer`). Sigmoids of the form :math:`\sigma(z)^n` (equation :eq:`spo-pn`)
fight the imbalance of the sparse labels; spans are read back with the nearest-end rule
(equation :eq:`spo-decode`); triples are scored by exact-match precision, recall and F1 (equation :eq:`spo-f1`).

Public surface:

* corpus: ``PREDICATES`` (the template corpus's schema), :class:`Sentence`,
  :func:`generate_corpus` (template sentences with Normal / SEO / EPO / nested overlaps, a reuse
  probability and a pool of entities held out of training), :func:`overlap_type`,
  :func:`corpus_stats`, :func:`dedupe`, :func:`toy_splits`;
* real data: :func:`tokenize` (one token per CJK character, one per word otherwise),
  :class:`Schema`, :func:`load_schema`, :func:`parse_record`, :func:`load_jsonl` (the JSON-lines
  format of DuIE / LIC2019), :func:`generate_records` and :func:`write_dataset` (a small generated
  corpus in that exact format, with Chinese sentences), :func:`to_record` (the inverse, n-ary
  objects folded back), :func:`run_files` (which counts every triple it cannot label or reach),
  :func:`window_starts` and :func:`window_coverage` (long text read in windows),
  :func:`load_extractor` and :func:`predict_texts` (a saved model on new text), and the command
  line ``python -m companion.sequence.triples_cli train --train T.jsonl --dev D.jsonl --schema S.json``
  (and ``predict --model DIR --input FILE.jsonl``);
* tokens: :class:`Vocab`, :func:`build_vocab` (training split only; unknown tokens map to
  ``[UNK]``), :func:`encode_sentence`, :func:`find_span`;
* labels and their oracles: :func:`subject_labels`, :func:`object_labels`,
  :func:`decode_spans`, :func:`decode_gold`, :func:`single_tag_capacity`;
* model and training: :class:`ConditionalLayerNorm`, :class:`TripleModel` (built-in encoder, or
  any ``encoder`` module mapping token ids ``(n, L)`` to hidden states ``(n, L, H)``, such as a
  pretrained BERT), :func:`pn_bce`, :class:`TripleData` (batches with the subject sampling of the
  chapter), :func:`triple_loss`, :func:`train_extractor` (the chapter's training recipe);
* decoding and scoring: :func:`extract`, :func:`prf`, :func:`evaluate` (optionally on the test
  triples whose entities never occur in training).

Conventions: a sentence is a list of tokens; a span is ``(start, end)`` with *inclusive*
token indices; a triple is ``(subject_tokens, predicate, object_tokens)`` with tuples of tokens, so
two triples are equal when their tokens are (the chapter's exact-match rule). Every function that
maps predicates to label columns takes ``predicates`` (the schema's predicate names, in order;
default: the template corpus's ``PREDICATES``); a predicate outside it raises ``ValueError``.
"""

from __future__ import annotations

import argparse
import bisect
import itertools
import json
import random
import re
import sys
import time
import warnings
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..core.utils import check_int, check_positive, check_tensor

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

Triple = tuple[tuple[str, ...], str, tuple[str, ...]]

PREDICATES: tuple[str, ...] = (
    "author", "publisher", "director", "actor", "birthplace", "birth_year", "spouse", "producer",
)
TYPES: tuple[str, ...] = ("Normal", "SEO", "EPO")

_FIRST = [
    "alice", "bruno", "clara", "dmitri", "elena", "felix", "greta", "hugo", "irene", "jonas",
    "karla", "leon", "maria", "nils", "olga", "pavel", "quinn", "rosa", "sven", "tanja",
    "ulrich", "vera", "walter", "xenia", "yusuf", "zoe",
]
_LAST = [
    "adler", "berg", "costa", "dahl", "engel", "fischer", "gruber", "horn", "ivanov", "jensen",
    "keller", "lund", "moreau", "novak", "ortega", "petrov",
]
_ADJ = ["silent", "golden", "broken", "hidden", "last", "red", "frozen", "distant", "quiet", "burning", "lost", "final"]
_NOUN = ["river", "garden", "empire", "letter", "mirror", "harbor", "forest", "tower", "winter", "promise", "island", "voice"]
_CITY = ["paris", "lisbon", "oslo", "vienna", "prague", "madrid", "dublin", "athens", "berlin", "riga", "turin", "kyoto"]
_ORG = [
    ("north", "star", "press"), ("blue", "owl", "books"), ("atlas", "house"), ("iron", "gate", "pictures"),
    ("harbor", "light", "media"), ("seven", "hills", "publishing"), ("lantern", "films"), ("oak", "tree", "studios"),
]
_SEPARATORS = [[","], [";"], ["and"], [",", "while"]]


@dataclass
class Sentence:
    """One corpus sentence: its ``tokens``, its gold ``triples`` and whether it is ``nested``.

    Sentences read from files (:func:`parse_record`) also keep their ``text``, the character
    ``offsets`` of each token, so that a predicted span can be cut from the original string
    (:meth:`span_text`), ``entity_spans``, the occurrence (inclusive token span) of each entity
    that the labels use (without it, an entity is labelled at its first occurrence), and
    ``dropped``: the record's triples that the sentence cannot label, each with its reason
    (``"missing_entity"``: an entity is not in the text as whole tokens; ``"unknown_predicate"``:
    the predicate is not in the schema). Dropped triples are still gold triples: :attr:`gold`
    holds them and :func:`evaluate` counts them as misses."""

    tokens: list[str]
    triples: list[Triple] = field(default_factory=list)
    nested: bool = False
    text: str | None = None
    offsets: list[tuple[int, int]] | None = None
    entity_spans: dict[tuple[str, ...], tuple[int, int]] | None = None
    dropped: list[tuple[Triple, str]] = field(default_factory=list)

    @property
    def kind(self) -> str:
        """Overlap type, see :func:`overlap_type`."""
        return overlap_type(self.triples)

    @property
    def gold(self) -> set[Triple]:
        """Every gold triple of the sentence, the labelled ``triples`` and the ``dropped`` ones."""
        return set(self.triples) | {t for t, _ in self.dropped}

    def span_text(self, words: tuple[str, ...]) -> str:
        """The original characters of ``words`` at the occurrence its labels use (its first
        occurrence for an entity the labels do not know); tokens joined by spaces when the
        sentence has no ``text`` or does not hold ``words``."""
        sp = (self.entity_spans or {}).get(tuple(words)) or find_span(self.tokens, words)
        if self.text is None or self.offsets is None or sp is None:
            return " ".join(words)
        return self.text[self.offsets[sp[0]][0]:self.offsets[sp[1]][1]]


def overlap_type(triples: list[Triple]) -> str:
    """``"EPO"`` if two triples share their (subject, object) pair, else ``"SEO"`` if an entity
    occurs in two triples, else ``"Normal"`` (the usual tagging of overlap types)."""
    if not isinstance(triples, (list, tuple, set)) or not all(isinstance(t, tuple) and len(t) == 3 for t in triples):
        raise TypeError("triples must be a list of (subject, predicate, object) tuples")
    pairs = [(s, o) for s, _, o in triples]
    if len(set(pairs)) < len(pairs):
        return "EPO"
    ents = [e for s, _, o in set(triples) for e in (s, o)]
    if len(set(ents)) < len(ents):
        return "SEO"
    return "Normal"


def _heldout(kind: str, e: tuple[str, ...]) -> bool:
    """Whether entity ``e`` of class ``kind`` belongs to the quarter of each class that the
    ``"train"`` pool never draws (a fixed rule on the pool indices, the same for every seed)."""
    if kind == "person":
        return (_FIRST.index(e[0]) + _LAST.index(e[1])) % 4 == 0
    if kind == "title":
        return (_ADJ.index(e[1]) + _NOUN.index(e[2])) % 4 == 0
    if kind == "city":
        return _CITY.index(e[0]) % 4 == 0
    if kind == "year":
        return int(e[0]) % 4 == 0
    return _ORG.index(e) % 4 == 0


class _Pools:
    """Entity draws; with probability ``reuse`` an entity of the same class already used in the
    sentence is drawn again (long-range shared entities). With ``pool="train"`` the held-out
    quarter of every class (:func:`_heldout`) is never drawn."""

    def __init__(self, rng: random.Random, reuse: float, pool: str = "all", fresh=None, heldout=None):
        self.rng, self.reuse, self.pool = rng, reuse, pool
        self._fresh_fn = fresh or _fresh_en
        self._heldout_fn = heldout or _heldout
        self.used: dict[str, list[tuple[str, ...]]] = {}

    def _fresh(self, kind: str) -> tuple[str, ...]:
        e = self._fresh_fn(self.rng, kind)
        while self.pool == "train" and self._heldout_fn(kind, e):
            e = self._fresh_fn(self.rng, kind)
        return e

    def draw(self, kind: str, avoid: tuple = ()) -> tuple[str, ...]:
        seen = [e for e in self.used.get(kind, []) if e not in avoid]
        if seen and self.rng.random() < self.reuse:
            e = self.rng.choice(seen)
        else:
            e = self._fresh(kind)
            while e in avoid:
                e = self._fresh(kind)
        self.used.setdefault(kind, []).append(e)
        return e


def _fresh_en(r: random.Random, kind: str) -> tuple[str, ...]:
    if kind == "person":
        return (r.choice(_FIRST), r.choice(_LAST))
    if kind == "title":
        return ("the", r.choice(_ADJ), r.choice(_NOUN))
    if kind == "city":
        return (r.choice(_CITY),)
    if kind == "year":
        return (str(r.randint(1900, 2020)),)
    return r.choice(_ORG)


def _clause(pools: _Pools, rng: random.Random) -> tuple[list[str], list[Triple], bool]:
    """One template clause: its words, its triples and whether it has a nested span."""
    d = pools.draw
    k = rng.randrange(12)
    if k == 0:
        b, p = d("title"), d("person")
        return [*b, "was", "written", "by", *p], [(b, "author", p)], False
    if k == 1:
        p, b = d("person"), d("title")
        return [*p, "wrote", *b], [(b, "author", p)], False
    if k == 2:
        b, o = d("title"), d("org")
        return [*b, "was", "published", "by", *o], [(b, "publisher", o)], False
    if k == 3:  # one subject, two objects
        f, a1 = d("title"), d("person")
        a2 = d("person", avoid=(a1,))
        return ["the", "film", *f, "stars", *a1, "and", *a2], [(f, "actor", a1), (f, "actor", a2)], False
    if k == 4:  # two subjects, one object
        a, f1 = d("person"), d("title")
        f2 = d("title", avoid=(f1,))
        return [*a, "appeared", "in", "both", *f1, "and", *f2], [(f1, "actor", a), (f2, "actor", a)], False
    if k == 5:  # EPO: one pair, two predicates
        p, f = d("person"), d("title")
        return [*p, "directed", "and", "starred", "in", *f], [(f, "director", p), (f, "actor", p)], False
    if k == 6:
        p, c = d("person"), d("city")
        return [*p, "was", "born", "in", *c], [(p, "birthplace", c)], False
    if k == 7:
        p, y = d("person"), d("year")
        return [*p, "was", "born", "in", *y], [(p, "birth_year", y)], False
    if k == 8:  # symmetric relation: both directions
        p1 = d("person")
        p2 = d("person", avoid=(p1,))
        return [*p1, "married", *p2], [(p1, "spouse", p2), (p2, "spouse", p1)], False
    if k == 9:  # nested: the object lies inside the subject
        p, o = d("person"), d("org")
        s = ("the", "life", "of", *p)
        return [*s, "was", "published", "by", *o], [(s, "publisher", o), (s, "author", p)], True
    if k == 10:
        o, f = d("org"), d("title")
        return [*o, "produced", *f], [(f, "producer", o)], False
    p, c = d("person"), d("city")  # distractor: entities, no relation
    return [*p, "visited", *c], [], False


def _check_sentence(sent, name: str = "sent") -> Sentence:
    if not isinstance(sent, Sentence):
        raise TypeError(f"{name} must be a Sentence, got {type(sent).__name__}")
    return sent


def _check_corpus(corpus, name: str = "corpus") -> list:
    if not isinstance(corpus, (list, tuple)):
        raise TypeError(f"{name} must be a list of Sentence, got {type(corpus).__name__}")
    if not corpus:
        raise ValueError(f"{name} is empty")
    for s in corpus:
        _check_sentence(s, f"every element of {name}")
    return list(corpus)


def _check_vocab(vocab) -> None:
    if not isinstance(vocab, Vocab):
        raise TypeError(f"vocab must be a Vocab, got {type(vocab).__name__}")


def _check_prob(name: str, value: float) -> float:
    value = check_positive(name, value, allow_zero=True)
    if value > 1:
        raise ValueError(f"{name} must be in [0, 1], got {value}")
    return value


def _check_length(sent: Sentence, length: int | None) -> int:
    if length is None:
        return len(sent.tokens)
    length = check_int("length", length, minimum=1)
    if length < len(sent.tokens):
        raise ValueError(f"length ({length}) must be >= the sentence length ({len(sent.tokens)})")
    return length


def _check_pool(pool) -> str:
    if pool not in ("all", "train"):
        raise ValueError(f"pool must be 'all' or 'train', got {pool!r}")
    return pool


def generate_corpus(n: int, seed: int = 0, reuse: float = 0.0, max_clauses: int = 3,
                    pool: str = "all") -> list[Sentence]:
    """``n`` template sentences of 1..``max_clauses`` clauses joined by ``, ; and , while``.

    ``reuse`` is the probability that a later entity repeats an earlier one of the same class.
    ``pool="train"`` never draws the held-out quarter of each entity class (persons, titles,
    cities, years, organizations), so a test corpus drawn with ``pool="all"`` holds entities a
    model trained on it has never seen. Sentences without any triple are redrawn. Deterministic
    given ``seed``.
    """
    n = check_int("n", n, minimum=1)
    max_clauses = check_int("max_clauses", max_clauses, minimum=1)
    seed = check_int("seed", seed, minimum=0)
    reuse = check_positive("reuse", reuse, allow_zero=True)
    if reuse > 1:
        raise ValueError(f"reuse must be a probability in [0, 1], got {reuse}")
    pool = _check_pool(pool)
    rng = random.Random(seed)
    out: list[Sentence] = []
    while len(out) < n:
        pools = _Pools(rng, reuse, pool)
        tokens: list[str] = []
        triples: list[Triple] = []
        nested = False
        for i in range(rng.randint(1, max_clauses)):
            words, tr, nest = _clause(pools, rng)
            if i:
                tokens += rng.choice(_SEPARATORS)
            tokens += words
            triples += [t for t in tr if t not in triples]
            nested |= nest
        if triples:
            out.append(Sentence(tokens, triples, nested))
    return out


def dedupe(test: list[Sentence], train: list[Sentence]) -> list[Sentence]:
    """The sentences of ``test`` that share no triple with ``train`` and are not a verbatim copy
    of a training sentence (order kept), so that no test triple can be scored by memory."""
    _check_corpus(test, "test")
    _check_corpus(train, "train")
    seen_triples = {t for s in train for t in s.triples}
    seen_tokens = {tuple(s.tokens) for s in train}
    return [s for s in test if tuple(s.tokens) not in seen_tokens and not seen_triples.intersection(s.triples)]


def toy_splits(train_size: int = 6000, test_size: int = 1000, *, train_seed: int = 0, test_seed: int = 1,
               reuse: float = 0.0) -> tuple[list[Sentence], list[Sentence]]:
    """The chapter's template corpus: ``train_size`` training sentences drawn from the ``"train"``
    entity pool (a quarter of every entity class held out) and the first ``test_size`` sentences
    of a ``"all"``-pool corpus that survive :func:`dedupe` against the training set."""
    train_size = check_int("train_size", train_size, minimum=1)
    test_size = check_int("test_size", test_size, minimum=1)
    train = generate_corpus(train_size, seed=train_seed, reuse=reuse, pool="train")
    test = dedupe(generate_corpus(3 * test_size, seed=test_seed, reuse=reuse, pool="all"), train)
    if len(test) < test_size:
        raise ValueError(f"only {len(test)} of {3 * test_size} test sentences share no triple with the training set; "
                         f"ask for fewer than {test_size}")
    return train, test[:test_size]


def corpus_stats(corpus: list[Sentence]) -> dict[str, float]:
    """Mean length, mean triples per sentence, and the fraction of each overlap type and of nested sentences."""
    _check_corpus(corpus)
    n = len(corpus)
    st = {
        "mean_length": sum(len(s.tokens) for s in corpus) / n,
        "mean_triples": sum(len(s.triples) for s in corpus) / n,
        "nested": sum(s.nested for s in corpus) / n,
    }
    for t in TYPES:
        st[t] = sum(s.kind == t for s in corpus) / n
    return st


# ---------------------------------------------------------------------------------------------
# real data: the JSON-lines format of DuIE / LIC2019

# CJK ideographs (with extensions and compatibility forms) and Japanese kana: one token per character
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002fa1f"
_TOKEN_RE = re.compile(f"[{_CJK}]|[^\\W_{_CJK}]+|\\S")


def tokenize(text: str, *, offsets: bool = False):
    """Split ``text`` into tokens: every CJK character is one token (character-level Chinese, as the
    chapter's spans need), every run of other letters and digits is one token (word-level English,
    ``"1990年"`` gives ``["1990", "年"]``), every other non-space character is one token, and
    white space separates. With ``offsets=True`` also returns each token's ``(begin, end)``
    character offsets, so that ``text[begin:end]`` is the token."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    matches = list(_TOKEN_RE.finditer(text))
    toks = [m.group() for m in matches]
    return (toks, [m.span() for m in matches]) if offsets else toks


@dataclass(frozen=True)
class Schema:
    """The predicates of a corpus, in the order of the object head's columns, with the subject and
    object types the schema file gives (empty strings when it gives none).

    ``slots`` lists the *slot predicates* of n-ary objects (DuIE 2.0), one
    ``(name, predicate, key)`` per slot: the slot ``key`` of ``predicate``'s objects is the
    predicate ``name`` (``f"{predicate}_{key}"`` in a schema from :func:`load_schema`), whose
    triples go from the object's value to the slot's value (see :func:`parse_record`)."""

    predicates: tuple[str, ...]
    subject_types: tuple[str, ...] = ()
    object_types: tuple[str, ...] = ()
    slots: tuple[tuple[str, str, str], ...] = ()

    def __post_init__(self):
        preds = _check_predicates(self.predicates)
        if not isinstance(self.slots, tuple) or not all(
                isinstance(t, tuple) and len(t) == 3 and all(isinstance(x, str) and x for x in t) for t in self.slots):
            raise TypeError("slots must be a tuple of (name, predicate, key) tuples of non-empty str")
        for name, base, key in self.slots:
            if name not in preds or base not in preds:
                raise ValueError(f"slot {(name, base, key)}: both {name!r} and {base!r} must be predicates of the schema")
        if len({(b, k) for _, b, k in self.slots}) < len(self.slots) or len({n for n, _, _ in self.slots}) < len(self.slots):
            raise ValueError("slots must name each (predicate, key) once, with distinct names")

    def __len__(self) -> int:
        return len(self.predicates)

    def slot_predicate(self, predicate: str, key: str) -> str | None:
        """The slot predicate of slot ``key`` of ``predicate``'s objects (``None`` if the schema has none)."""
        return next((n for n, b, k in self.slots if b == predicate and k == key), None)


def _check_predicates(predicates) -> tuple[str, ...]:
    """The predicate names of a schema (a :class:`Schema` or a sequence of distinct non-empty str)."""
    if isinstance(predicates, Schema):
        return predicates.predicates
    if isinstance(predicates, str) or not isinstance(predicates, Sequence):
        raise TypeError(f"predicates must be a Schema or a sequence of predicate names, got {type(predicates).__name__}")
    if not predicates:
        raise ValueError("predicates is empty: a schema needs at least one predicate")
    if not all(isinstance(p, str) and p for p in predicates):
        raise TypeError("predicates must be non-empty strings")
    if len(set(predicates)) < len(predicates):
        dup = sorted({p for p in predicates if list(predicates).count(p) > 1})
        raise ValueError(f"predicates must be distinct, repeated: {dup[:5]}")
    return tuple(predicates)


def _predicate_index(predicates: tuple[str, ...]) -> dict[str, int]:
    return {p: i for i, p in enumerate(predicates)}


def _type_name(v) -> str:
    """A schema type: a string, or DuIE 2.0's ``{"@value": type}``."""
    if isinstance(v, dict):
        v = v.get("@value", "")
    return v if isinstance(v, str) else ""


def _json_error(path: Path, line: int, col: int, msg: str) -> ValueError:
    """The error of a malformed JSON line, as ``file:line:column: ...``."""
    return ValueError(f"{path}:{line}:{col}: not valid JSON: {msg} (line {line}, column {col})")


def _json_lines(path: Path):
    """``(line number, object)`` of every non-blank line of a JSON-lines file read as UTF-8 (a
    byte-order mark at its start is skipped). Lines are split at ``\\n`` only, as JSON counts
    them; a line that is not UTF-8 or not JSON raises ``ValueError`` naming its line and column."""
    with path.open("rb") as f:
        for i, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8-sig" if i == 1 else "utf-8")
            except UnicodeDecodeError as e:
                col = len(raw[:e.start].decode("utf-8", errors="replace")) + 1
                raise ValueError(f"{path}:{i}:{col}: not UTF-8 text ({e.reason}, byte {e.start + 1} of the line)") from None
            line = line.rstrip("\r\n")  # a line end would put the error of a cut-off line at "column 1" of the next
            if not line.strip():
                continue
            try:
                yield i, json.loads(line)
            except json.JSONDecodeError as e:
                raise _json_error(path, i, e.pos + 1, e.msg) from None


def load_schema(path: str | Path) -> Schema:
    """Read a schema file: JSON lines ``{"predicate": ..., "subject_type": ..., "object_type": ...}``
    (the ``all_50_schemas`` file of LIC2019, the ``schema.json`` of DuIE 2.0), or one JSON list of
    such objects or of predicate names; UTF-8, with or without a byte-order mark.

    Predicates keep the file's order. A DuIE 2.0 entry whose ``object_type`` is a dict with keys
    besides ``"@value"`` (an n-ary object, e.g. ``{"@value": "人物", "inWork": "影视作品"}`` for
    ``配音``) is followed by one *slot predicate* per other key, named ``f"{predicate}_{key}"``
    (``配音_inWork``), whose subject type is the object's ``"@value"`` type and whose object type is
    the slot's (:attr:`Schema.slots`; :func:`parse_record` explains the triples). Raises
    ``ValueError`` naming the line (and column) of a malformed entry, a missing ``predicate`` or a
    repeated one, including a slot name that collides with a predicate."""
    path = Path(path)
    text = path.read_text(encoding="utf-8-sig")
    stripped = text.strip()
    if not stripped:
        raise ValueError(f"{path}: the schema file is empty")
    if stripped.startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError as e:
            raise _json_error(path, e.lineno, e.colno, e.msg) from None
        entries = [(i + 1, it) for i, it in enumerate(items)]
        where = "entry"
    else:
        entries = []
        for i, line in enumerate(text.split("\n"), 1):
            line = line.rstrip("\r")
            if line.strip():
                try:
                    entries.append((i, json.loads(line)))
                except json.JSONDecodeError as e:
                    raise _json_error(path, i, e.pos + 1, e.msg) from None
        where = "line"
    preds, subj, obj, slots = [], [], [], []

    def add(name: str, s_type: str, o_type: str, i: int) -> None:
        if name in preds:
            raise ValueError(f"{path}: {where} {i}: predicate {name!r} is listed twice")
        preds.append(name)
        subj.append(s_type)
        obj.append(o_type)

    for i, it in entries:
        if isinstance(it, str):
            it = {"predicate": it}
        if not isinstance(it, dict):
            raise ValueError(f"{path}: {where} {i}: expected an object with a 'predicate', got {type(it).__name__}")
        p = it.get("predicate")
        if not isinstance(p, str) or not p.strip():
            raise ValueError(f"{path}: {where} {i}: missing or empty 'predicate' (keys: {sorted(it)})")
        o_type = it.get("object_type", "")
        add(p, _type_name(it.get("subject_type", "")), _type_name(o_type), i)
        if isinstance(o_type, dict):
            for key, t in o_type.items():
                if key != "@value":
                    add(f"{p}_{key}", _type_name(o_type), _type_name(t), i)
                    slots.append((f"{p}_{key}", p, key))
    return Schema(tuple(preds), tuple(subj), tuple(obj), tuple(slots))


def _entity(v, field_name: str, where: str) -> str:
    if not isinstance(v, str) or not v.strip():
        raise ValueError(f"{where}: {field_name} must be a non-empty string, got {v!r}")
    return v


def _object(v, where: str) -> tuple[str, dict[str, str]]:
    """An object's value and its slots: a string, or DuIE 2.0's ``{"@value": v, key: value, ...}``."""
    if isinstance(v, dict):
        if "@value" not in v:
            raise ValueError(f"{where}: an object given as a dict needs an '@value' (keys: {sorted(v)})")
        slots = {k: _entity(x, f"object[{k!r}]", where) for k, x in v.items() if k != "@value"}
        return _entity(v["@value"], "object['@value']", where), slots
    return _entity(v, "object", where), {}


#: What :func:`parse_record` and :func:`load_jsonl` count (the keys of their ``stats``).
LOAD_COUNTS: tuple[str, ...] = (
    "records", "triples_read", "kept", "duplicates", "dropped_missing_entity", "dropped_unknown_predicate",
    "nary_objects", "slot_triples", "nary_ambiguous", "overlap_sentences", "overlap_search_gave_up",
    "undecodable_triples", "undecodable_sentences",
)
_SEARCH_BUDGET = 20_000  # nodes of the occurrence search before it settles for the fewest overlaps


def _overlap(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return a[0] <= b[1] and b[0] <= a[1]


def _choose_spans(tokens: list[str], entities: list[tuple[str, ...]]
                  ) -> tuple[dict[tuple[str, ...], tuple[int, int]], str]:
    """One occurrence per entity (each must occur), such that no two entities overlap.

    Depth-first search over the occurrences, entities with the fewest occurrences first,
    occurrences left to right; the first overlap-free choice found is returned with status
    ``"free"``. If there is none (``"overlap"``), or the search gives up after
    ``_SEARCH_BUDGET`` nodes (``"gave_up"``), each entity in the same order takes the occurrence
    that overlaps the fewest already chosen (the leftmost among ties)."""
    occ = {e: list(_iter_spans(tokens, e)) for e in entities}
    order = sorted(occ, key=lambda e: (len(occ[e]), occ[e][0]))
    chosen: dict[tuple[str, ...], tuple[int, int]] = {}
    budget = [_SEARCH_BUDGET]

    def search(k: int) -> bool:
        if k == len(order):
            return True
        budget[0] -= 1
        if budget[0] < 0:
            return False
        for sp in occ[order[k]]:
            if not any(_overlap(sp, c) for c in chosen.values()):
                chosen[order[k]] = sp
                if search(k + 1):
                    return True
                del chosen[order[k]]
        return False

    if search(0):
        return chosen, "free"
    status = "gave_up" if budget[0] < 0 else "overlap"
    chosen = {}
    for e in order:
        chosen[e] = min(occ[e], key=lambda sp: (sum(_overlap(sp, c) for c in chosen.values()), sp))
    return chosen, status


def _nearest_end(starts, ends) -> list[tuple[int, int]]:
    """The nearest-end rule of :func:`decode_spans` on sets of 0/1 label positions."""
    ends = sorted(set(ends))
    out = []
    for i in sorted(set(starts)):
        j = bisect.bisect_left(ends, i)
        if j < len(ends):
            out.append((i, ends[j]))
    return out


def _decoded_rows(rows) -> set[tuple[tuple[int, int], int, tuple[int, int]]]:
    """What decoding the gold labels of ``rows`` ((subject span, column, object span) each) gives
    back, without building the dense labels (the oracle :func:`decode_gold`, on spans)."""
    out: set[tuple] = set()
    for sub in _nearest_end([ss[0] for ss, _, _ in rows], [ss[1] for ss, _, _ in rows]):
        cols: dict[int, tuple[list[int], list[int]]] = {}
        for ss, p, os_ in rows:
            if ss == sub:
                cols.setdefault(p, ([], []))
                cols[p][0].append(os_[0])
                cols[p][1].append(os_[1])
        for p, (st, en) in cols.items():
            out.update((sub, p, o) for o in _nearest_end(st, en))
    return out


def _nary_misfolds(objects: list[tuple[str, str, str, frozenset]]) -> int:
    """How many n-ary objects folding the slot triples back (:func:`to_record`) gets wrong, missed
    or invented, for the ``(subject, predicate, value, slots)`` objects of one record: within a
    ``(predicate, value)`` that has slots, every subject gets every combination of slot values."""
    groups: dict[tuple[str, str], set] = {}
    for s, p, v, slots in objects:
        groups.setdefault((p, v), set()).add((s, slots))
    wrong = 0
    for objs in groups.values():
        values: dict[str, set[str]] = {}
        for _, slots in objs:
            for k, x in slots:
                values.setdefault(k, set()).add(x)
        if not values:
            continue
        keys = list(values)
        folded = {(s, frozenset(zip(keys, combo, strict=True)))
                  for s in {s for s, _ in objs} for combo in itertools.product(*(values[k] for k in keys))}
        wrong += len(folded ^ objs)
    return wrong


def _check_stats(stats) -> dict | None:
    if stats is not None and not isinstance(stats, dict):
        raise TypeError(f"stats must be a dict (counts are added to it) or None, got {type(stats).__name__}")
    return stats


def parse_record(record: dict, predicates=PREDICATES, *, where: str = "record",
                 skip_missing: bool = False, stats: dict | None = None) -> tuple[Sentence, int]:
    """One ``{"text": ..., "spo_list": [{"subject", "predicate", "object"}, ...]}`` record as a
    tokenized :class:`Sentence` (:func:`tokenize`; the entities are tokenized the same way).
    Repeated triples are kept once.

    **N-ary objects** (DuIE 2.0): an object ``{"@value": v, "inWork": w}`` of predicate ``配音``
    with subject ``s`` gives the triple ``(s, 配音, v)`` and, for each other key, a *slot triple*
    from the object's value to the slot's value under the schema's slot predicate
    (:meth:`Schema.slot_predicate`, named ``配音_inWork`` by :func:`load_schema`):
    ``(v, 配音_inWork, w)``. Hanging the slot on the value keeps apart the objects of one subject
    that differ only in their slots, e.g. box office in two areas; :func:`to_record` folds the
    slot triples back into n-ary objects. With ``predicates`` a plain list of names the slot
    predicate is looked up as ``f"{predicate}_{key}"``.

    **Occurrences.** An entity that occurs several times in the text is labelled at one
    occurrence, chosen so that no two entities of the sentence overlap (:attr:`Sentence.entity_spans`);
    so ``红楼梦`` is not labelled inside ``红楼梦魇`` when it also stands on its own. Where no
    such choice exists, the fewest overlaps are kept and the sentence is counted; the gold triples
    that decoding the labels (:func:`decode_spans`'s nearest-end rule) does not give back are
    counted too: they stay gold triples, but the labels cannot teach them.

    An entity that is not in the text as whole tokens, or a predicate not in ``predicates``,
    raises ``ValueError`` (naming ``where``, the entity or predicate and the triple), unless
    ``skip_missing``: the triple then goes to :attr:`Sentence.dropped` (still a gold triple for
    :func:`evaluate`, so it counts as a miss). Returns the sentence and the number of triples
    dropped. With ``stats`` (a dict), adds to it the counts named in ``LOAD_COUNTS``:
    ``triples_read`` (n-ary objects expanded) = ``kept`` + ``duplicates`` +
    ``dropped_missing_entity`` + ``dropped_unknown_predicate``; ``nary_objects``,
    ``slot_triples``; ``nary_ambiguous`` (n-ary objects that folding the slot triples back gets
    wrong, missed or invented: objects that share predicate and value but not their slots, e.g.
    two awards of one name on two dates for two works); ``overlap_sentences``
    (of which ``overlap_search_gave_up``); ``undecodable_triples`` and ``undecodable_sentences``."""
    pred_names = _check_predicates(predicates)
    preds = _predicate_index(pred_names)
    stats = _check_stats(stats)
    if not isinstance(record, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(record).__name__}")
    text = record.get("text")
    if not isinstance(text, str):
        raise ValueError(f"{where}: 'text' is missing or not a string (keys: {sorted(record)})")
    tokens, offs = tokenize(text, offsets=True)
    if not tokens:
        raise ValueError(f"{where}: 'text' is empty")
    spo = record.get("spo_list", None)
    if not isinstance(spo, list):
        raise ValueError(f"{where}: 'spo_list' is missing or not a list")
    count = dict.fromkeys(LOAD_COUNTS, 0)
    count["records"] = 1
    expanded: list[tuple[str, str, str, str]] = []  # subject, predicate, object, where
    objects: list[tuple[str, str, str, frozenset]] = []  # subject, predicate, value, slots
    for k, t in enumerate(spo):
        w = f"{where}, spo_list[{k}]"
        if not isinstance(t, dict) or not all(key in t for key in ("subject", "predicate", "object")):
            raise ValueError(f"{w}: expected an object with 'subject', 'predicate' and 'object', got {t!r}")
        subj = t["subject"]
        if isinstance(subj, dict) and set(subj) == {"@value"}:
            subj = subj["@value"]
        subj = _entity(subj, "subject", w)
        obj, slots = _object(t["object"], w)
        p = t["predicate"]
        if not isinstance(p, str) or not p:
            raise ValueError(f"{w}: predicate must be a non-empty string, got {p!r}")
        expanded.append((subj, p, obj, w))
        objects.append((subj, p, obj, frozenset(slots.items())))
        if slots:
            count["nary_objects"] += 1
            count["slot_triples"] += len(slots)
        for key, value in slots.items():
            name = predicates.slot_predicate(p, key) if isinstance(predicates, Schema) else None
            expanded.append((obj, name or f"{p}_{key}", value, f"{w}, object[{key!r}]"))
    count["nary_ambiguous"] = _nary_misfolds(objects)
    count["triples_read"] = len(expanded)
    triples: list[Triple] = []
    dropped: list[tuple[Triple, str]] = []
    seen: set[Triple] = set()
    for subj, p, obj, w in expanded:
        tri = (tuple(tokenize(subj)), p, tuple(tokenize(obj)))
        if tri in seen:
            count["duplicates"] += 1
            continue
        seen.add(tri)
        if p not in preds:
            if skip_missing:
                dropped.append((tri, "unknown_predicate"))
                continue
            raise ValueError(f"{w}: unknown predicate {p!r} (the schema has {len(preds)}: "
                             f"{', '.join(list(preds)[:8])}{', ...' if len(preds) > 8 else ''})")
        missing = [(name, e) for name, e, toks in (("subject", subj, tri[0]), ("object", obj, tri[2]))
                   if find_span(tokens, toks) is None]
        if missing:
            if skip_missing:
                dropped.append((tri, "missing_entity"))
                continue
            name, e = missing[0]
            raise ValueError(f"{w}: {name} {e!r} is not in the text as whole tokens "
                             f"(text {text[:60]!r}{'...' if len(text) > 60 else ''})")
        triples.append(tri)
    count["kept"] = len(triples)
    count["dropped_missing_entity"] = sum(r == "missing_entity" for _, r in dropped)
    count["dropped_unknown_predicate"] = sum(r == "unknown_predicate" for _, r in dropped)
    ents = list(dict.fromkeys(e for a, _, b in triples for e in (a, b)))
    spans, status = _choose_spans(tokens, ents) if ents else ({}, "free")
    count["overlap_sentences"] = status != "free"
    count["overlap_search_gave_up"] = status == "gave_up"
    rows = [(spans[a], preds[p], spans[b]) for a, p, b in triples]
    decoded = {_to_triple(tokens, s, pred_names[p], o) for s, p, o in _decoded_rows(rows)}
    count["undecodable_triples"] = sum(t not in decoded for t in triples)
    count["undecodable_sentences"] = count["undecodable_triples"] > 0
    if stats is not None:
        for key, v in count.items():
            stats[key] = stats.get(key, 0) + int(v)
    nested = any(_inside(a, b) for a, _, b in rows)
    return Sentence(tokens, triples, nested, text=text, offsets=offs, entity_spans=spans, dropped=dropped), len(dropped)


def _inside(a: tuple[int, int] | None, b: tuple[int, int] | None) -> bool:
    """Whether one of the two spans lies inside the other (and they differ)."""
    if a is None or b is None or a == b:
        return False
    return (a[0] <= b[0] and b[1] <= a[1]) or (b[0] <= a[0] and a[1] <= b[1])


def load_jsonl(path: str | Path, predicates=PREDICATES, *, skip_missing: bool = False,
               return_dropped: bool = False, return_stats: bool = False):
    """Read a JSON-lines corpus (one :func:`parse_record` record per non-blank line), UTF-8 with or
    without a byte-order mark.

    Malformed lines raise ``ValueError`` with ``file:line:column`` and what is wrong; so do, unless
    ``skip_missing``, unknown predicates and entities that are not in their text (with
    ``skip_missing`` these triples are dropped from the labels, kept as gold triples in
    :attr:`Sentence.dropped` and counted). With ``return_dropped`` also returns how many triples
    were dropped; with ``return_stats`` also the counts of :func:`parse_record` summed over the
    file (a dict with the keys ``LOAD_COUNTS``), in that order after the sentences."""
    path = Path(path)
    _check_predicates(predicates)
    out: list[Sentence] = []
    stats = dict.fromkeys(LOAD_COUNTS, 0)
    for i, record in _json_lines(path):
        sent, _ = parse_record(record, predicates, where=f"{path}:{i}", skip_missing=skip_missing, stats=stats)
        out.append(sent)
    if not out:
        raise ValueError(f"{path}: no records (the file is empty)")
    dropped = stats["dropped_missing_entity"] + stats["dropped_unknown_predicate"]
    extra = ([dropped] if return_dropped else []) + ([stats] if return_stats else [])
    return (out, *extra) if extra else out


def to_record(sent: Sentence, predicates=None) -> dict:
    """A :class:`Sentence` as a JSON-lines record (tokens joined by spaces when it has no text;
    each entity cut from the text at the occurrence its labels use). Dropped triples are left out.

    With a :class:`Schema` that has slots (DuIE 2.0), slot triples are folded back into n-ary
    objects, the inverse of :func:`parse_record`: the triple ``(s, p, v)`` and the slot triples
    ``(v, p_key, w)`` give ``{"subject": s, "predicate": p, "object": {"@value": v, key: w}}``.
    If one slot has several values for ``(p, v)``, one object per combination is written; a
    slot triple whose ``(p, v)`` has no main triple is written as a plain triple."""
    _check_sentence(sent)
    if predicates is not None:
        _check_predicates(predicates)
    slots = {n: (b, k) for n, b, k in predicates.slots} if isinstance(predicates, Schema) else {}
    text = sent.text if sent.text is not None else " ".join(sent.tokens)
    cut = sent.span_text
    main = [t for t in sent.triples if t[1] not in slots]
    side = [t for t in sent.triples if t[1] in slots]
    used: set[Triple] = set()
    spo = []
    for s, p, o in main:
        values: dict[str, list[str]] = {}
        for t in side:
            if t[0] == o and slots[t[1]][0] == p:
                values.setdefault(slots[t[1]][1], []).append(cut(t[2]))
                used.add(t)
        for combo in itertools.product(*values.values()):
            obj = {"@value": cut(o), **dict(zip(values, combo, strict=True))} if values else cut(o)
            spo.append({"subject": cut(s), "predicate": p, "object": obj})
    spo += [{"subject": cut(s), "predicate": p, "object": cut(o)} for s, p, o in side if (s, p, o) not in used]
    return {"text": text, "spo_list": spo}


# a small Chinese corpus in the DuIE format (generated, so that the real-data path can be tested)
_ZH_SURNAME = list("王李张刘陈杨黄赵吴周徐孙马朱胡郭")
_ZH_GIVEN = list("伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂")
_ZH_TITLE = list("春夜海山风雪城梦月河花火星雨林光")
_ZH_CITY = ["北京", "上海", "广州", "深圳", "杭州", "南京", "成都", "西安", "武汉", "重庆", "苏州", "天津"]
_ZH_ORG = ["人民文学出版社", "中华书局", "三联书店", "译林出版社", "华谊兄弟", "光线传媒", "博纳影业", "BBC工作室"]
_ZH_SCHEMA = [("作者", "图书作品", "人物"), ("出版社", "书籍", "出版社"), ("导演", "影视作品", "人物"),
              ("主演", "影视作品", "人物"), ("出生地", "人物", "地点"), ("出生日期", "人物", "Date"),
              ("配偶", "人物", "人物"), ("出品公司", "影视作品", "企业")]
ZH_SCHEMA = Schema(tuple(p for p, _, _ in _ZH_SCHEMA), tuple(s for _, s, _ in _ZH_SCHEMA),
                   tuple(o for _, _, o in _ZH_SCHEMA))


def _fresh_zh(r: random.Random, kind: str) -> tuple[str, ...]:
    if kind == "person":
        return (r.choice(_ZH_SURNAME) + r.choice(_ZH_GIVEN) + r.choice(_ZH_GIVEN),)
    if kind == "title":
        return ("".join(r.sample(_ZH_TITLE, r.choice((2, 3)))),)
    if kind == "city":
        return (r.choice(_ZH_CITY),)
    if kind == "year":
        return (f"{r.randint(1900, 2020)}年",)
    return (r.choice(_ZH_ORG),)


def _heldout_zh(kind: str, e: tuple[str, ...]) -> bool:
    """The held-out quarter of each Chinese entity class (fixed rule, as :func:`_heldout`)."""
    w = e[0]
    if kind == "person":
        return (_ZH_SURNAME.index(w[0]) + _ZH_GIVEN.index(w[1]) + _ZH_GIVEN.index(w[2])) % 4 == 0
    if kind == "title":
        return sum(_ZH_TITLE.index(c) for c in w) % 4 == 0
    if kind == "city":
        return _ZH_CITY.index(w) % 4 == 0
    if kind == "year":
        return int(w[:-1]) % 4 == 0
    return _ZH_ORG.index(w) % 4 == 0


def _clause_zh(pools: _Pools, rng: random.Random) -> tuple[str, list[tuple[str, str, str]]]:
    """One Chinese template clause: its text and its (subject, predicate, object) strings."""
    d = lambda kind, avoid=(): pools.draw(kind, avoid)[0]  # noqa: E731
    k = rng.randrange(12)
    if k == 0:
        b, p = d("title"), d("person")
        return f"《{b}》是{p}创作的小说", [(b, "作者", p)]
    if k == 1:
        p, b = d("person"), d("title")
        return f"{p}写了《{b}》", [(b, "作者", p)]
    if k == 2:
        b, o = d("title"), d("org")
        return f"《{b}》由{o}出版", [(b, "出版社", o)]
    if k == 3:  # one subject, two objects
        f, a1 = d("title"), d("person")
        a2 = d("person", avoid=((a1,),))
        return f"电影《{f}》由{a1}和{a2}主演", [(f, "主演", a1), (f, "主演", a2)]
    if k == 4:  # two subjects, one object
        a, f1 = d("person"), d("title")
        f2 = d("title", avoid=((f1,),))
        return f"{a}参演了《{f1}》和《{f2}》", [(f1, "主演", a), (f2, "主演", a)]
    if k == 5:  # EPO
        p, f = d("person"), d("title")
        return f"{p}自导自演了《{f}》", [(f, "导演", p), (f, "主演", p)]
    if k == 6:
        p, c = d("person"), d("city")
        return f"{p}出生于{c}", [(p, "出生地", c)]
    if k == 7:
        p, y = d("person"), d("year")
        return f"{p}生于{y}", [(p, "出生日期", y)]
    if k == 8:  # symmetric
        p1 = d("person")
        p2 = d("person", avoid=((p1,),))
        return f"{p1}与{p2}结婚", [(p1, "配偶", p2), (p2, "配偶", p1)]
    if k == 9:  # nested: the object inside the subject
        p, o = d("person"), d("org")
        return f"《{p}传》由{o}出版", [(f"{p}传", "出版社", o), (f"{p}传", "作者", p)]
    if k == 10:
        o, f = d("org"), d("title")
        return f"{o}出品了电影《{f}》", [(f, "出品公司", o)]
    p, c = d("person"), d("city")  # distractor
    return f"{p}去过{c}", []


def generate_records(n: int, seed: int = 0, reuse: float = 0.0, max_clauses: int = 3,
                     pool: str = "all") -> list[dict]:
    """``n`` Chinese sentences in the DuIE / LIC2019 JSON-lines format,
    ``{"text": ..., "spo_list": [{"subject", "predicate", "object"}, ...]}``, from templates that
    mirror :func:`generate_corpus` (multi-object, multi-subject, EPO, symmetric, nested,
    distractor; years mix digits and characters, one organization Latin letters), with the
    predicates of ``ZH_SCHEMA``. ``reuse`` and ``pool`` as in :func:`generate_corpus`.
    Deterministic given ``seed``."""
    n = check_int("n", n, minimum=1)
    max_clauses = check_int("max_clauses", max_clauses, minimum=1)
    seed = check_int("seed", seed, minimum=0)
    reuse = _check_prob("reuse", reuse)
    pool = _check_pool(pool)
    rng = random.Random(seed)
    out: list[dict] = []
    while len(out) < n:
        pools = _Pools(rng, reuse, pool, fresh=_fresh_zh, heldout=_heldout_zh)
        parts, spo = [], []
        for i in range(rng.randint(1, max_clauses)):
            text, tr = _clause_zh(pools, rng)
            parts.append((rng.choice(["，", "；", "，同时"]) if i else "") + text)
            spo += [t for t in tr if t not in spo]
        if spo:
            out.append({"text": "".join(parts) + "。",
                        "spo_list": [{"subject": s, "predicate": p, "object": o} for s, p, o in spo]})
    return out


def _write_jsonl(records: list, path: Path) -> None:
    with path.open("w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def write_dataset(directory: str | Path, n_train: int = 2000, n_dev: int = 300, *, seed: int = 0,
                  reuse: float = 0.0) -> dict[str, Path]:
    """Write a generated Chinese corpus in the DuIE / LIC2019 layout to ``directory``:
    ``train.jsonl`` (``n_train`` sentences from the ``"train"`` entity pool), ``dev.jsonl`` (the
    first ``n_dev`` sentences of an ``"all"``-pool corpus that survive :func:`dedupe` against the
    training set) and ``schema.json`` (one ``{"predicate", "subject_type", "object_type"}`` line per
    predicate). Returns the three paths (keys ``"train"``, ``"dev"``, ``"schema"``)."""
    n_train = check_int("n_train", n_train, minimum=1)
    n_dev = check_int("n_dev", n_dev, minimum=1)
    seed = check_int("seed", seed, minimum=0)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    train = generate_records(n_train, seed=seed, reuse=reuse, pool="train")
    cand = generate_records(3 * n_dev, seed=seed + 1, reuse=reuse, pool="all")
    parse = lambda recs: [parse_record(r, ZH_SCHEMA)[0] for r in recs]  # noqa: E731
    cand_s = parse(cand)
    kept = {id(s) for s in dedupe(cand_s, parse(train))}
    dev = [r for r, s in zip(cand, cand_s, strict=True) if id(s) in kept][:n_dev]
    if len(dev) < n_dev:
        raise ValueError(f"only {len(dev)} generated dev sentences share no triple with the training set")
    paths = {"train": directory / "train.jsonl", "dev": directory / "dev.jsonl", "schema": directory / "schema.json"}
    _write_jsonl(train, paths["train"])
    _write_jsonl(dev, paths["dev"])
    _write_jsonl([{"predicate": p, "subject_type": s, "object_type": o} for p, s, o in _ZH_SCHEMA], paths["schema"])
    return paths


# ---------------------------------------------------------------------------------------------
# tokens and labels


@dataclass
class Vocab:
    """Token ↔ id table; id 0 is padding; tokens not in the table map to ``unk`` (``[UNK]``, id 1
    in a table from :func:`build_vocab`). :meth:`from_file` reads a one-token-per-line file such as
    a BERT ``vocab.txt``, whose ``[PAD]`` is id 0 and ``[UNK]`` id 100."""

    itos: list[str]
    unk: str = "[UNK]"

    def __post_init__(self):
        if not isinstance(self.itos, list) or len(self.itos) < 2 or not all(isinstance(w, str) for w in self.itos):
            raise TypeError("itos must be a list of at least two str (padding first)")
        self.stoi = {w: i for i, w in enumerate(self.itos)}
        if self.unk not in self.stoi:
            raise ValueError(f"the unknown token {self.unk!r} is not in the vocabulary")
        self.unk_id = self.stoi[self.unk]

    def __len__(self) -> int:
        return len(self.itos)

    @classmethod
    def from_file(cls, path: str | Path, unk: str = "[UNK]") -> Vocab:
        """One token per line (line ``i`` is id ``i``), e.g. the ``vocab.txt`` of a BERT checkpoint;
        UTF-8 with or without a byte-order mark, lines split at ``\\n`` only."""
        lines = Path(path).read_text(encoding="utf-8-sig").split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        return cls([w.removesuffix("\r") for w in lines], unk=unk)


def build_vocab(corpora: list[list[Sentence]] | list[Sentence], min_count: int = 1) -> Vocab:
    """A vocabulary from the tokens of one corpus or a list of corpora (sorted, deterministic), keeping
    tokens seen at least ``min_count`` times. Build it from the **training split only**: tokens of
    other splits then map to ``[UNK]`` (id 1), as they would for new text."""
    if not isinstance(corpora, (list, tuple)) or not corpora:
        raise TypeError("corpora must be a non-empty list of Sentence or a list of such lists")
    min_count = check_int("min_count", min_count, minimum=1)
    sents = corpora if isinstance(corpora[0], Sentence) else [s for c in corpora for s in _check_corpus(c, "corpora[i]")]
    _check_corpus(sents, "corpora")
    counts: dict[str, int] = {}
    for s in sents:
        for w in s.tokens:
            counts[w] = counts.get(w, 0) + 1
    words = sorted(w for w, c in counts.items() if c >= min_count and w not in ("[PAD]", "[UNK]"))
    return Vocab(["[PAD]", "[UNK]", *words])


def find_span(tokens: list[str], words: tuple[str, ...]) -> tuple[int, int] | None:
    """Inclusive span of the **first** occurrence of ``words`` in ``tokens`` (``None`` if absent)."""
    for name, seq in (("tokens", tokens), ("words", words)):
        if not isinstance(seq, (list, tuple)) or not all(isinstance(w, str) for w in seq):
            raise TypeError(f"{name} must be a list or tuple of str, got {type(seq).__name__}")
    if not words:
        raise ValueError("words must be non-empty")
    return next(_iter_spans(tokens, words), None)


def _iter_spans(tokens: Sequence[str], words: Sequence[str]):
    """Inclusive spans of the occurrences of ``words`` (non-empty) in ``tokens``, left to right."""
    tokens, words = list(tokens), list(words)
    m, i = len(words), -1
    while True:
        try:
            i = tokens.index(words[0], i + 1)
        except ValueError:
            return
        if tokens[i:i + m] == words:
            yield (i, i + m - 1)


def encode_sentence(tokens: list[str], vocab: Vocab, max_len: int, *, strict: bool = False,
                    truncate: bool = False) -> torch.Tensor:
    """Token ids ``(T,)`` (int64) of a sentence.

    Unknown tokens map to ``vocab.unk`` (``[UNK]``), or raise ``ValueError`` if ``strict``. A sentence longer
    than ``max_len`` (the model's position table) raises ``ValueError`` unless ``truncate``, in
    which case it is cut to its first ``max_len`` tokens. An empty sentence raises ``ValueError``.
    """
    max_len = check_int("max_len", max_len, minimum=1)
    _check_vocab(vocab)
    if not isinstance(tokens, (list, tuple)) or not all(isinstance(w, str) for w in tokens):
        raise TypeError("tokens must be a list of str")
    if len(tokens) == 0:
        raise ValueError("tokens is an empty sentence")
    if len(tokens) > max_len:
        if not truncate:
            raise ValueError(f"sentence has {len(tokens)} tokens, more than max_len={max_len} positions "
                             "(pass truncate=True to cut it)")
        tokens = tokens[:max_len]
    if strict:
        unknown = [w for w in tokens if w not in vocab.stoi]
        if unknown:
            raise ValueError(f"unknown tokens {unknown[:5]} (strict=True)")
    return torch.tensor([vocab.stoi.get(w, vocab.unk_id) for w in tokens], dtype=torch.long)


def _spans(sent: Sentence, predicates=PREDICATES) -> list[tuple[tuple[int, int], int, tuple[int, int]]]:
    """(subject span, predicate column, object span) of every triple, each entity at the
    occurrence of ``sent.entity_spans`` or else its first one; ``ValueError`` for an entity that
    is not in the sentence (or not at its given span) or a predicate that is not in ``predicates``."""
    return _span_rows(sent, _predicate_index(_check_predicates(predicates)))


def _span_rows(sent: Sentence, index: dict[str, int]) -> list[tuple[tuple[int, int], int, tuple[int, int]]]:
    """:func:`_spans` with the predicate columns ``index`` already built."""
    where = sent.entity_spans or {}
    for e, (a, b) in where.items():
        if tuple(sent.tokens[a:b + 1]) != e or a < 0:
            raise ValueError(f"entity_spans puts {e} at {(a, b)}, where the sentence has {tuple(sent.tokens[a:b + 1])}")
    out = []
    for s, p, o in sent.triples:
        ss, os_ = (where.get(e) or next(_iter_spans(sent.tokens, e), None) if e else None for e in (s, o))
        if ss is None or os_ is None:
            raise ValueError(f"triple {(s, p, o)} is not in the sentence")
        if p not in index:
            raise ValueError(f"unknown predicate {p!r} in triple {(s, p, o)}: not among the {len(index)} predicates "
                             "of the schema (pass predicates=)")
        out.append((ss, index[p], os_))
    return out


def subject_labels(sent: Sentence, length: int | None = None, predicates=PREDICATES) -> torch.Tensor:
    """Subject pointer labels ``(T, 2)``: column 0 marks subject starts, column 1 ends (equation :eq:`spo-pointer`)."""
    T = _check_length(_check_sentence(sent), length)
    y = torch.zeros(T, 2)
    for (a, b), _, _ in _spans(sent, predicates):
        y[a, 0] = y[b, 1] = 1.0
    return y


def object_labels(sent: Sentence, subject: tuple[int, int], length: int | None = None,
                  predicates=PREDICATES) -> torch.Tensor:
    """Object–predicate labels ``(T, P, 2)`` given one subject span (equation :eq:`spo-pointer`); all
    zero when ``subject`` is not a gold subject (a negative sample). Column ``r`` of the ``P`` axis is
    predicate ``predicates[r]``."""
    T = _check_length(_check_sentence(sent), length)
    if (not isinstance(subject, (tuple, list)) or len(subject) != 2
            or not all(isinstance(i, int) and not isinstance(i, bool) for i in subject)):
        raise TypeError(f"subject must be an inclusive span (start, end) of two ints, got {subject!r}")
    if not 0 <= subject[0] <= subject[1] < len(sent.tokens):
        raise ValueError(f"subject span {tuple(subject)} must satisfy 0 <= start <= end < {len(sent.tokens)}")
    predicates = _check_predicates(predicates)
    y = torch.zeros(T, len(predicates), 2)
    for ss, p, (a, b) in _spans(sent, predicates):
        if ss == tuple(subject):
            y[a, p, 0] = y[b, p, 1] = 1.0
    return y


def decode_spans(start: torch.Tensor, end: torch.Tensor, t_start: float = 0.6,
                 t_end: float = 0.5) -> list[tuple[int, int]]:
    """Spans from pointer probabilities ``start, end`` of shape ``(T,)`` (equation :eq:`spo-decode`).

    Every position with ``start > t_start`` is paired with the **nearest** position
    ``j >= i`` with ``end > t_end``; a start with no such end gives no span. Known limit: a span
    nested in another with an earlier end steals the outer span's end.
    """
    check_tensor("start", start, ndim=1)
    check_tensor("end", end, ndim=1)
    if start.shape != end.shape:
        raise ValueError(f"start and end must have the same shape, got {tuple(start.shape)} and {tuple(end.shape)}")
    if ((start < 0) | (start > 1) | (end < 0) | (end > 1)).any():
        raise ValueError("start and end must be probabilities in [0, 1]")
    t_start = _check_prob("t_start", t_start)
    t_end = _check_prob("t_end", t_end)
    ends = torch.nonzero(end > t_end).flatten().tolist()
    out = []
    for i in torch.nonzero(start > t_start).flatten().tolist():
        j = next((e for e in ends if e >= i), None)
        if j is not None:
            out.append((i, j))
    return out


def _to_triple(tokens: list[str], s: tuple[int, int], p: str, o: tuple[int, int]) -> Triple:
    return (tuple(tokens[s[0]:s[1] + 1]), p, tuple(tokens[o[0]:o[1] + 1]))


def decode_gold(sent: Sentence, predicates=PREDICATES) -> set[Triple]:
    """Decode the gold labels of a sentence with :func:`decode_spans` (the oracle of the scheme).

    Predicates whose labels are all zero are skipped (they cannot decode to a span)."""
    predicates = _check_predicates(predicates)
    ys = subject_labels(sent, predicates=predicates)
    out = set()
    for s in decode_spans(ys[:, 0], ys[:, 1]):
        yo = object_labels(sent, s, predicates=predicates)
        for p in torch.nonzero(yo.sum(dim=(0, 2))).flatten().tolist():
            for o in decode_spans(yo[:, p, 0], yo[:, p, 1]):
                out.add(_to_triple(sent.tokens, s, predicates[p], o))
    return out


def single_tag_capacity(sent: Sentence, predicates=PREDICATES) -> int:
    """Most triples of ``sent`` that a one-tag-per-token scheme can hold.

    In that scheme (Zheng et al., 2017) each token carries one tag (predicate, role); a triple is
    held when every token of its subject carries (p, subject) and every token of its object
    (p, object). Exact maximum over subsets of the triples (sentences hold a handful).
    """
    spans = _spans(_check_sentence(sent), predicates)
    for k in range(len(spans), 0, -1):
        for sub in itertools.combinations(spans, k):
            tags: dict[int, tuple[int, int]] = {}
            ok = True
            for (a, b), p, (c, e) in sub:
                for pos, tag in [(t, (p, 0)) for t in range(a, b + 1)] + [(t, (p, 1)) for t in range(c, e + 1)]:
                    if tags.setdefault(pos, tag) != tag:
                        ok = False
            if ok:
                return k
    return 0


# ---------------------------------------------------------------------------------------------
# model


def _seed_int(seed: int | torch.Generator, name: str = "seed") -> int:
    """An int seed as is (checked), or one int drawn from a ``torch.Generator``."""
    if isinstance(seed, torch.Generator):
        return int(torch.randint(0, 2**62, (1,), generator=seed))
    return check_int(name, seed, minimum=0)


class ConditionalLayerNorm(nn.Module):
    r"""Layer norm whose gain and bias depend on a condition ``c`` (equation :eq:`spo-cln`):
    :math:`\frac{h-\mu}{\sigma}\odot(\gamma+W_\gamma c)+(\beta+W_\beta c)`, with
    :math:`W_\gamma,W_\beta` zero-initialised so that it starts as a plain layer norm."""

    def __init__(self, d: int, d_cond: int, eps: float = 1e-5):
        super().__init__()
        d = check_int("d", d, minimum=1)
        d_cond = check_int("d_cond", d_cond, minimum=1)
        check_positive("eps", eps)
        self.eps = eps
        self.gamma = nn.Parameter(torch.ones(d))
        self.beta = nn.Parameter(torch.zeros(d))
        self.w_gamma = nn.Linear(d_cond, d, bias=False)
        self.w_beta = nn.Linear(d_cond, d, bias=False)
        nn.init.zeros_(self.w_gamma.weight)
        nn.init.zeros_(self.w_beta.weight)

    def forward(self, h: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """``h`` (B, T, d), ``c`` (B, d_cond) -> (B, T, d)."""
        d, d_cond = self.gamma.shape[0], self.w_gamma.in_features
        check_tensor("h", h, ndim=3)
        check_tensor("c", c, ndim=2)
        if 0 in h.shape or h.shape[-1] != d:
            raise ValueError(f"h must have shape (B, T, {d}) with B, T >= 1, got {tuple(h.shape)}")
        if c.shape != (h.shape[0], d_cond):
            raise ValueError(f"c must have shape ({h.shape[0]}, {d_cond}), got {tuple(c.shape)}")
        if c.dtype != self.w_gamma.weight.dtype:
            raise TypeError(f"c has dtype {c.dtype}, the layer {self.w_gamma.weight.dtype}")
        n = F.layer_norm(h, h.shape[-1:], eps=self.eps)
        return n * (self.gamma + self.w_gamma(c)[:, None]) + (self.beta + self.w_beta(c)[:, None])


class TripleModel(nn.Module):
    """Encoder (word + learned positions, Pre-LN Transformer, final LN), a subject pointer head
    and an object–predicate pointer head conditioned on one subject (equations :eq:`spo-factor` …
    :eq:`spo-pn`).

    ``conditioning="cln"`` uses :class:`ConditionalLayerNorm` on ``[h_start; h_end]``; ``"add"``
    adds ``Linear([h_start; h_end])`` to every token instead. ``n_subject``, ``n_object`` are the
    exponents of the :math:`\\sigma(z)^n` outputs (1 = plain sigmoid). The learned position table
    starts as ``pos_std`` times a standard normal table (the word embeddings start at unit scale).

    ``seed`` (an int or a ``torch.Generator``, from which one int is drawn) fixes the initial
    weights; they are built inside ``torch.random.fork_rng``, so the caller's global random
    state is left as it was.

    **Pretrained encoder.** ``encoder`` replaces the built-in encoder by any module mapping token ids
    ``(n, L)`` (int64, padding id 0) to hidden states ``(n, L, H)``; pass ``d=H``. The heads are
    built on top and the whole network is trained (freeze the encoder's parameters to train the
    heads only); ``vocab_size`` is then the encoder's vocabulary size (ids are checked against
    it) and ``heads``, ``layers``, ``ffn``, ``dropout``, ``pos_std`` are unused. For a
    ``transformers`` BERT::

        class BertHidden(nn.Module):
            def __init__(self, bert):
                super().__init__()
                self.bert = bert
            def forward(self, ids):
                return self.bert(input_ids=ids, attention_mask=(ids != 0).long()).last_hidden_state

        vocab = Vocab.from_file("bert-base-chinese/vocab.txt")   # [PAD] = 0, [UNK] = 100
        model = TripleModel(len(vocab), len(schema), d=768, max_len=512, encoder=BertHidden(bert))

    The ids then come from the checkpoint's ``vocab.txt`` through :func:`tokenize` (one
    token per Chinese character, as in a Chinese BERT; an English word that is not a whole entry
    of ``vocab.txt`` maps to ``[UNK]``, since no word-piece split is done).
    """

    def __init__(self, vocab_size: int, n_predicates: int = len(PREDICATES), *, d: int = 64, heads: int = 4,
                 layers: int = 2, ffn: int = 256, max_len: int = 64, dropout: float = 0.1,
                 conditioning: str = "cln", n_subject: int = 2, n_object: int = 4, pos_std: float = 1.0,
                 seed: int | torch.Generator = 0, encoder: nn.Module | None = None):
        super().__init__()
        pos_std = check_positive("pos_std", pos_std)
        if conditioning not in ("cln", "add"):
            raise ValueError(f"conditioning must be 'cln' or 'add', got {conditioning!r}")
        self.max_len = check_int("max_len", max_len, minimum=1)
        self.n_subject = check_int("n_subject", n_subject, minimum=1)
        self.n_object = check_int("n_object", n_object, minimum=1)
        self.n_predicates = check_int("n_predicates", n_predicates, minimum=1)
        vocab_size = check_int("vocab_size", vocab_size, minimum=2)
        d = check_int("d", d, minimum=1)
        heads = check_int("heads", heads, minimum=1)
        if d % heads:
            raise ValueError(f"d={d} must be divisible by heads={heads}")
        check_int("layers", layers, minimum=1)
        check_int("ffn", ffn, minimum=1)
        dropout = check_positive("dropout", dropout, allow_zero=True)
        if dropout >= 1:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        seed = _seed_int(seed)
        if encoder is not None and not isinstance(encoder, nn.Module):
            raise TypeError(f"encoder must be a torch.nn.Module mapping ids (n, L) to (n, L, H), got "
                            f"{type(encoder).__name__}")
        self.conditioning = conditioning
        self.vocab_size, self.d = vocab_size, d
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            if encoder is None:
                self.emb = nn.Embedding(vocab_size, d, padding_idx=0)
                self.pos = nn.Parameter(pos_std * torch.randn(max_len, d))
                layer = nn.TransformerEncoderLayer(d, heads, ffn, dropout, batch_first=True, norm_first=True)
                self.encoder: nn.Module = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
                self.external = False
            else:
                self.encoder = encoder
                self.external = True
            self.norm = nn.LayerNorm(d)
            self.subject_head = nn.Linear(d, 2)
            if conditioning == "cln":
                self.cond: nn.Module = ConditionalLayerNorm(d, 2 * d)
            else:
                self.cond = nn.Linear(2 * d, d)
            self.object_head = nn.Linear(d, 2 * n_predicates)

    def _check_ids(self, ids: torch.Tensor, mask: torch.Tensor) -> None:
        check_tensor("ids", ids, ndim=2, floating=False)
        check_tensor("mask", mask, ndim=2, floating=False)
        if ids.is_floating_point() or ids.dtype == torch.bool:
            raise TypeError(f"ids must be an integer tensor of token ids, got {ids.dtype}")
        if mask.dtype != torch.bool:
            raise TypeError(f"mask must be a bool tensor (True = token), got {mask.dtype}")
        if ids.shape != mask.shape:
            raise ValueError(f"ids and mask must have the same shape, got {tuple(ids.shape)} and {tuple(mask.shape)}")
        if ids.shape[1] > self.max_len:
            raise ValueError(f"sequence length {ids.shape[1]} exceeds the position table max_len={self.max_len}")
        if not mask.any(dim=1).all():
            raise ValueError("mask has a row with no valid token (empty sentence)")
        if ids.min() < 0 or ids.max() >= self.vocab_size:
            raise ValueError(f"ids must be token ids in [0, {self.vocab_size})")

    def _check_h(self, h: torch.Tensor) -> None:
        check_tensor("h", h, ndim=3)
        d = self.norm.normalized_shape[0]
        if 0 in h.shape or h.shape[-1] != d:
            raise ValueError(f"h must have shape (B, T, {d}) with B, T >= 1, got {tuple(h.shape)}")
        if h.dtype != self.subject_head.weight.dtype:
            raise TypeError(f"h has dtype {h.dtype}, the model {self.subject_head.weight.dtype}")

    def encode(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``ids`` (B, T) int64, ``mask`` (B, T) bool (True = token) -> H (B, T, d).

        With an external ``encoder``: ``norm(encoder(ids * mask))`` (padding set to id 0)."""
        self._check_ids(ids, mask)
        if self.external:
            h = self.encoder(ids * mask)
            if not isinstance(h, torch.Tensor) or h.shape != (*ids.shape, self.d):
                raise ValueError(f"the encoder must map ids {tuple(ids.shape)} to hidden states "
                                 f"{(*ids.shape, self.d)} (d = H), got {getattr(h, 'shape', type(h).__name__)}")
            return self.norm(h)
        x = self.emb(ids) + self.pos[: ids.shape[1]]
        return self.norm(self.encoder(x, src_key_padding_mask=~mask))

    def subject_logits(self, h: torch.Tensor) -> torch.Tensor:
        """H (B, T, d) -> subject start/end logits (B, T, 2)."""
        self._check_h(h)
        return self.subject_head(h)

    def object_logits(self, h: torch.Tensor, start: torch.Tensor, end: torch.Tensor) -> torch.Tensor:
        """H (B, T, d), subject ``start, end`` (B,) -> object logits (B, T, P, 2) (equation :eq:`spo-cln`)."""
        self._check_h(h)
        for name, t in (("start", start), ("end", end)):
            if not isinstance(t, torch.Tensor) or t.is_floating_point() or t.dtype == torch.bool:
                raise TypeError(f"{name} must be an integer tensor of positions")
            if t.shape != h.shape[:1]:
                raise ValueError(f"{name} must have shape ({h.shape[0]},), got {tuple(t.shape)}")
        if (start < 0).any() or (end < start).any() or (end >= h.shape[1]).any():
            raise ValueError(f"subject spans must satisfy 0 <= start <= end < {h.shape[1]}")
        idx = torch.arange(h.shape[0], device=h.device)
        c = torch.cat([h[idx, start], h[idx, end]], dim=-1)
        u = self.cond(h, c) if self.conditioning == "cln" else h + self.cond(c)[:, None]
        return self.object_head(u).view(*h.shape[:2], self.n_predicates, 2)


def pn_bce(logits: torch.Tensor, target: torch.Tensor, n: int) -> torch.Tensor:
    r"""Elementwise binary cross-entropy of the probability :math:`q=\sigma(z)^n` (equation :eq:`spo-pn`).

    Stable form: :math:`\log q=n\log\sigma(z)` and
    :math:`\log(1-q)=\log\sigma(-z)+\log\sum_{k<n}\sigma(z)^k`. Same shape as ``logits``.
    """
    check_tensor("logits", logits)
    check_tensor("target", target)
    n = check_int("n", n, minimum=1)
    if target.shape != logits.shape or logits.numel() == 0:
        raise ValueError(f"target must have the (non-empty) shape of logits {tuple(logits.shape)}, "
                         f"got {tuple(target.shape)}")
    if ((target < 0) | (target > 1)).any():
        raise ValueError("target must lie in [0, 1]")
    ls = F.logsigmoid(logits)
    log_q = n * ls
    log_1mq = F.logsigmoid(-logits)
    if n > 1:
        log_1mq = log_1mq + torch.logsumexp(torch.stack([k * ls for k in range(n)]), dim=0)
    return -(target * log_q + (1 - target) * log_1mq)


class TripleData:
    """A corpus encoded for training, stored sparsely: the token ids of every sentence and the
    (subject span, predicate column, object span) of every gold triple. The dense labels of a batch
    are built when it is drawn, padded to the longest sentence *of the batch*: memory is
    O(tokens + triples) for the corpus and O(batch × length × P) for a batch, whatever the
    longest sentence of the corpus (:attr:`nbytes` is what it stores).

    Calling it as ``data(batch_size, generator)`` draws a batch and one subject per sentence
    (a random gold start, then a random gold end at or after it — not always a gold subject, which
    gives free negative samples), the sampler :func:`companion.core.train.fit` expects. A sentence with
    no triple contributes the one-token span at position 0 with all-zero object labels.
    ``predicates`` is the schema (object-head columns), by default the template corpus's.

    ``max_len`` is the model's position table. A longer sentence raises ``ValueError``, unless
    ``truncate``: it is then cut to its first ``max_len`` tokens, its triples with a token past the
    cut leave the labels, and a warning says what that cost. ``stats`` counts ``sentences``,
    ``triples`` (labelled), ``truncated_sentences`` and ``truncated_triples``.
    """

    def __init__(self, corpus: list[Sentence], vocab: Vocab, max_len: int = 64, predicates=PREDICATES, *,
                 truncate: bool = False):
        _check_corpus(corpus)
        _check_vocab(vocab)
        max_len = check_int("max_len", max_len, minimum=1)
        if not isinstance(truncate, bool):
            raise TypeError(f"truncate must be a bool, got {type(truncate).__name__}")
        self.predicates = _check_predicates(predicates)
        self.corpus, self.vocab, self.max_len = corpus, vocab, max_len
        ids, offsets, rows, row_offsets = array("i"), array("q", [0]), array("i"), array("q", [0])
        self.stats = {"sentences": len(corpus), "triples": 0, "truncated_sentences": 0, "truncated_triples": 0}
        index, stoi, unk = _predicate_index(self.predicates), vocab.stoi, vocab.unk_id
        for i, s in enumerate(corpus):
            if not s.tokens:
                raise ValueError(f"sentence {i} of the corpus is empty")
            if len(s.tokens) > max_len:
                if not truncate:
                    raise ValueError(f"corpus sentence {i} has {len(s.tokens)} tokens, more than max_len={max_len} "
                                     "(pass truncate=True to cut it)")
                self.stats["truncated_sentences"] += 1
            ids.extend([stoi.get(w, unk) for w in s.tokens[:max_len]])
            offsets.append(len(ids))
            spans = sorted(set(_span_rows(s, index)))
            kept = [(ss, p, os_) for ss, p, os_ in spans if max(ss[1], os_[1]) < max_len]
            self.stats["truncated_triples"] += len(spans) - len(kept)
            for (a, b), p, (c, d) in kept:
                rows.extend((a, b, p, c, d))
            row_offsets.append(len(rows) // 5)
        self.stats["triples"] = len(rows) // 5
        self._ids = torch.frombuffer(ids, dtype=torch.int32)
        self._offsets = torch.frombuffer(offsets, dtype=torch.int64)
        self._rows = torch.frombuffer(rows, dtype=torch.int32).view(-1, 5) if rows else torch.zeros(0, 5, dtype=torch.int32)
        self._row_offsets = torch.frombuffer(row_offsets, dtype=torch.int64)
        self._buffers = (ids, offsets, rows, row_offsets)  # the memory the tensors above share
        if self.stats["truncated_sentences"]:
            warnings.warn(f"{self.stats['truncated_sentences']} training sentences are longer than max_len={max_len} and "
                          f"were truncated; {self.stats['truncated_triples']} of their triples lie past the cut and are "
                          "not in the labels", stacklevel=2)

    def __len__(self) -> int:
        return len(self.corpus)

    @property
    def nbytes(self) -> int:
        """Bytes of the stored encoding (token ids, label spans and their offsets)."""
        return sum(t.numel() * t.element_size() for t in (self._ids, self._offsets, self._rows, self._row_offsets))

    def subject_sets(self, i: int) -> tuple[list[int], list[int], list[tuple[int, int]]]:
        """Gold subject starts, ends (``[0]`` each for a sentence without triples) and gold subject
        spans of sentence ``i``: what the sampler draws from."""
        i = check_int("i", i, minimum=0)
        if i >= len(self):
            raise ValueError(f"i must be < {len(self)}, got {i}")
        return self._subject_sets(i)

    def _subject_sets(self, i: int) -> tuple[list[int], list[int], list[tuple[int, int]]]:
        r0, r1 = self._buffers[3][i], self._buffers[3][i + 1]  # row offsets as Python ints
        subs = sorted({(a, b) for a, b, *_ in self._rows[r0:r1].tolist()})
        return sorted({a for a, _ in subs}) or [0], sorted({b for _, b in subs}) or [0], subs

    def batch(self, indices: list[int], start: list[int], end: list[int]) -> dict[str, torch.Tensor]:
        """Sentences ``indices`` with one subject span ``(start[k], end[k])`` each, as padded tensors:
        ``ids``, ``mask`` (B, T), subject labels ``ys`` (B, T, 2), object labels ``yo`` (B, T, P, 2)
        (all zero for a subject that is not gold), ``start``, ``end`` and ``index`` (B,), with T the
        longest of these sentences."""
        idx = torch.as_tensor(indices, dtype=torch.long)
        st, en = torch.as_tensor(start, dtype=torch.long), torch.as_tensor(end, dtype=torch.long)
        if idx.ndim != 1 or idx.numel() == 0 or st.shape != idx.shape or en.shape != idx.shape:
            raise ValueError("indices, start and end must be non-empty lists of the same length")
        if idx.min() < 0 or idx.max() >= len(self):
            raise ValueError(f"indices must lie in [0, {len(self)})")
        off, roff, ix = self._buffers[1], self._buffers[3], idx.tolist()  # offsets as Python ints
        lengths = torch.tensor([off[i + 1] - off[i] for i in ix])
        if (st < 0).any() or (en < st).any() or (en >= lengths).any():
            raise ValueError("subject spans must satisfy 0 <= start <= end < the sentence's length")
        B, P = len(ix), len(self.predicates)
        ids = nn.utils.rnn.pad_sequence([self._ids[off[i]:off[i + 1]] for i in ix], batch_first=True).long()
        T = ids.shape[1]
        mask = torch.arange(T) < lengths[:, None]
        rows = torch.cat([self._rows[roff[i]:roff[i + 1]] for i in ix]).long()
        k = torch.repeat_interleave(torch.arange(B), torch.tensor([roff[i + 1] - roff[i] for i in ix]))
        ys = torch.zeros(B, T, 2)
        ys[k, rows[:, 0], 0] = 1.0
        ys[k, rows[:, 1], 1] = 1.0
        hit = (rows[:, 0] == st[k]) & (rows[:, 1] == en[k])
        yo = torch.zeros(B, T, P, 2)
        yo[k[hit], rows[hit, 3], rows[hit, 2], 0] = 1.0
        yo[k[hit], rows[hit, 4], rows[hit, 2], 1] = 1.0
        return {"ids": ids, "mask": mask, "ys": ys, "start": st, "end": en, "yo": yo, "index": idx}

    def __call__(self, batch_size: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        idx = torch.randint(0, len(self), (batch_size,), generator=generator).tolist()
        st, en = [], []
        for i in idx:
            starts, ends, _ = self._subject_sets(i)
            a = starts[int(torch.randint(0, len(starts), (1,), generator=generator))]
            ends = [b for b in ends if b >= a]
            b = ends[int(torch.randint(0, len(ends), (1,), generator=generator))]
            st.append(a)
            en.append(b)
        return self.batch(idx, st, en)


def triple_loss(model: TripleModel, batch: dict[str, torch.Tensor], generator: torch.Generator | None = None
                ) -> torch.Tensor:
    """Subject loss (mean over the 2 pointers, masked mean over tokens) plus object loss (mean over
    the 2 pointers, summed over predicates, masked mean over tokens), 1:1 (equation :eq:`spo-loss`)."""
    h = model.encode(batch["ids"], batch["mask"])
    m = batch["mask"].to(h.dtype)
    ls = pn_bce(model.subject_logits(h), batch["ys"], model.n_subject).mean(-1)
    lo = pn_bce(model.object_logits(h, batch["start"], batch["end"]), batch["yo"], model.n_object).mean(-1).sum(-1)
    return ((ls * m).sum() + (lo * m).sum()) / m.sum()


def train_extractor(data: TripleData, *, seed: int | torch.Generator = 0, steps: int = 600, batch_size: int = 32,
                    lr: float = 3e-3, cosine: bool = False, ema_decay: float | None = 0.999, progress: bool = True,
                    **model_kw):
    """The chapter's training recipe: a :class:`TripleModel` (weights seeded by ``seed``, one
    column pair per predicate of ``data.predicates``, other options ``model_kw``, e.g.
    ``encoder=``) trained on ``data`` with :func:`triple_loss` by :func:`companion.core.train.fit`:
    Adam, no gradient clipping, batches and subject sampling seeded by ``seed + 1``, dropout by
    ``seed + 2``; a constant rate ``lr``, or a cosine decay of it if ``cosine``; an exponential
    moving average of the weights with decay ``ema_decay`` (``None``: none).

    ``seed`` is an int or a ``torch.Generator`` (one int is drawn from it). The run happens inside
    ``torch.random.fork_rng``: the caller's global random state is left untouched. Returns the
    :class:`companion.core.train.FitResult`: ``.model`` is the trained model, ``.ema`` its averaged copy
    (the model itself when ``ema_decay`` is ``None``)."""
    from ..core.train import fit

    if not isinstance(data, TripleData):
        raise TypeError(f"data must be a TripleData, got {type(data).__name__}")
    seed = _seed_int(seed)
    if "n_predicates" in model_kw and model_kw["n_predicates"] != len(data.predicates):
        raise ValueError(f"n_predicates={model_kw['n_predicates']} differs from the data's {len(data.predicates)} predicates")
    model_kw = dict(model_kw, n_predicates=len(data.predicates))
    model_kw.setdefault("max_len", data.max_len)
    model = TripleModel(len(data.vocab), seed=seed, **model_kw)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + 2)  # dropout
        return fit(model, triple_loss, data, steps=steps, batch_size=batch_size, lr=lr, seed=seed + 1,
                   ema_decay=ema_decay, grad_clip=None, cosine=cosine, progress=progress, desc="triples")


def window_starts(length: int, max_len: int, stride: int) -> list[int]:
    """First token of each window of ``max_len`` tokens that reads a sentence of ``length``
    tokens: ``0, stride, 2 stride, ...``, the last window ending at the sentence's end (one window
    ``[0]`` when the sentence fits). Every stretch of at most ``max_len - stride + 1`` tokens
    lies inside a window."""
    length = check_int("length", length, minimum=1)
    max_len = check_int("max_len", max_len, minimum=1)
    stride = check_int("stride", stride, minimum=1)
    if stride > max_len:
        raise ValueError(f"stride ({stride}) must be <= max_len ({max_len}), or text between windows is never read")
    if length <= max_len:
        return [0]
    starts = list(range(0, length - max_len + 1, stride))
    if starts[-1] + max_len < length:
        starts.append(length - max_len)
    return starts


def window_coverage(corpus: list[Sentence], max_len: int, stride: int) -> dict[str, int]:
    """How much of ``corpus`` windows of ``max_len`` tokens every ``stride`` tokens
    (:func:`window_starts`, as :func:`extract` reads long sentences) can reach: ``sentences``,
    ``windowed_sentences`` (longer than ``max_len``), ``triples`` (labelled) and
    ``triples_outside_windows``, those whose subject and object (at the occurrences the labels
    use) lie in no single window, which a model can only find through another occurrence."""
    _check_corpus(corpus)
    out = {"sentences": len(corpus), "windowed_sentences": 0, "triples": 0, "triples_outside_windows": 0}
    for s in corpus:
        starts = window_starts(len(s.tokens), max_len, stride)
        out["windowed_sentences"] += len(starts) > 1
        where = s.entity_spans or {}
        for tri in s.triples:
            ss, os_ = (where.get(e) or find_span(s.tokens, e) for e in (tri[0], tri[2]))
            if ss is None or os_ is None:
                raise ValueError(f"triple {tri} is not in its sentence")
            lo, hi = min(ss[0], os_[0]), max(ss[1], os_[1])
            out["triples"] += 1
            out["triples_outside_windows"] += not any(w <= lo and hi < w + max_len for w in starts)
    return out


@torch.no_grad()
def extract(model: TripleModel, corpus: list[Sentence], vocab: Vocab, *, t_start: float = 0.6,
            t_end: float = 0.5, batch_size: int = 256, predicates=PREDICATES, stride: int | None = None
            ) -> list[set[Triple]]:
    """Predicted triple sets of every sentence (equation :eq:`spo-decode`): subjects first, then one
    batched object pass per subject. Unknown tokens map to ``[UNK]``. ``predicates`` names the
    object head's columns (the schema the model was trained with).

    A sentence longer than the model's position table ``model.max_len`` raises ``ValueError``
    unless ``stride`` is given: it is then read in windows of ``max_len`` tokens starting every
    ``stride`` tokens (:func:`window_starts`), and its triples are the union of the windows'
    (a triple is found only where its subject and object share a window: :func:`window_coverage`)."""
    needed = ("encode", "subject_logits", "object_logits", "n_subject", "n_object", "n_predicates", "max_len")
    if not isinstance(model, nn.Module) or not all(hasattr(model, a) for a in needed):
        raise TypeError(f"model must be a TripleModel (or a module with its interface), got {type(model).__name__}")
    _check_corpus(corpus)
    _check_vocab(vocab)
    t_start = _check_prob("t_start", t_start)
    t_end = _check_prob("t_end", t_end)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    predicates = _check_predicates(predicates)
    if len(predicates) != model.n_predicates:
        raise ValueError(f"the model has {model.n_predicates} predicate columns, predicates lists {len(predicates)}")
    if stride is not None:
        stride = check_int("stride", stride, minimum=1)
        if stride > model.max_len:
            raise ValueError(f"stride ({stride}) must be <= the model's max_len ({model.max_len})")
    pieces: list[tuple[int, list[str]]] = []  # (sentence, tokens of one window)
    for n, s in enumerate(corpus):
        if len(s.tokens) > model.max_len and stride is None:
            raise ValueError(f"sentence {n} has {len(s.tokens)} tokens, more than the model's max_len={model.max_len} "
                             "positions (pass stride= to read it in windows)")
        if not s.tokens:
            raise ValueError(f"sentence {n} is empty")
        for w in window_starts(len(s.tokens), model.max_len, stride or model.max_len):
            pieces.append((n, s.tokens[w:w + model.max_len]))
    model.eval()
    out: list[set[Triple]] = [set() for _ in corpus]
    for b0 in range(0, len(pieces), batch_size):
        chunk = [toks for _, toks in pieces[b0:b0 + batch_size]]
        T = max(len(toks) for toks in chunk)
        ids = torch.zeros(len(chunk), T, dtype=torch.long)
        mask = torch.zeros(len(chunk), T, dtype=torch.bool)
        for i, toks in enumerate(chunk):
            ids[i, : len(toks)] = encode_sentence(toks, vocab, model.max_len)
            mask[i, : len(toks)] = True
        h = model.encode(ids, mask)
        ps = torch.sigmoid(model.subject_logits(h)) ** model.n_subject
        rows, subs = [], []
        for i, toks in enumerate(chunk):
            L = len(toks)
            for sp in decode_spans(ps[i, :L, 0], ps[i, :L, 1], t_start, t_end):
                rows.append(i)
                subs.append(sp)
        if rows:
            r = torch.tensor(rows)
            st = torch.tensor([a for a, _ in subs])
            en = torch.tensor([b for _, b in subs])
            po = torch.sigmoid(model.object_logits(h[r], st, en)) ** model.n_object
            for k, (i, sp) in enumerate(zip(rows, subs, strict=True)):
                toks, L = chunk[i], len(chunk[i])
                for p in range(model.n_predicates):
                    for o in decode_spans(po[k, :L, p, 0], po[k, :L, p, 1], t_start, t_end):
                        out[pieces[b0 + i][0]].add(_to_triple(toks, sp, predicates[p], o))
    return out


def prf(pred: list[set[Triple]], gold: list[set[Triple]]) -> dict[str, float]:
    """Corpus-level exact-match precision, recall and F1 (equation :eq:`spo-f1`):
    :math:`P=|R\\cap G|/|R|`, :math:`R=|R\\cap G|/|G|`, :math:`F_1=2|R\\cap G|/(|R|+|G|)`
    with counts summed over sentences (0 when a denominator is 0); also the counts ``hits``,
    ``predicted`` and ``gold``, and ``n`` the number of sentences."""
    for name, v in (("pred", pred), ("gold", gold)):
        if not isinstance(v, (list, tuple)):
            raise TypeError(f"{name} must be a list of sets of triples, got {type(v).__name__}")
    if len(pred) != len(gold):
        raise ValueError(f"pred and gold must have the same length, got {len(pred)} and {len(gold)}")
    hit = sum(len(set(p) & set(g)) for p, g in zip(pred, gold, strict=True))
    n_p = sum(len(set(p)) for p in pred)
    n_g = sum(len(set(g)) for g in gold)
    return {"precision": hit / n_p if n_p else 0.0, "recall": hit / n_g if n_g else 0.0,
            "f1": 2 * hit / (n_p + n_g) if n_p + n_g else 0.0, "n": len(gold),
            "hits": hit, "predicted": n_p, "gold": n_g}


def entities(corpus: list[Sentence]) -> set[tuple[str, ...]]:
    """Every subject and object (as token tuples) of the triples of ``corpus``."""
    _check_corpus(corpus)
    return {e for s in corpus for a, _, b in s.triples for e in (a, b)}


def evaluate(pred: list[set[Triple]], corpus: list[Sentence], train: list[Sentence] | None = None
             ) -> dict[str, dict[str, float]]:
    """:func:`prf` overall and per overlap type (``"all"``, ``"Normal"``, ``"SEO"``, ``"EPO"``, ``"nested"``).

    With the training corpus ``train``, also ``"new_entities"``: :func:`prf` restricted to the
    triples (gold and predicted) whose subject and object are both absent from the training
    triples (:func:`entities`), and ``"new_entity"``: those with at least one such entity. These
    entries count triples in ``"n"`` (the others count sentences).

    The gold triples of a sentence are :attr:`Sentence.gold`: its labelled triples and those the
    loader dropped (an entity not in the text, a predicate not in the schema), which no
    prediction can match, so they count as misses."""
    _check_corpus(corpus)
    gold = [s.gold for s in corpus]
    res = {"all": prf(pred, gold)}
    for t in (*TYPES, "nested"):
        keep = [i for i, s in enumerate(corpus) if (s.nested if t == "nested" else s.kind == t)]
        if keep:
            res[t] = prf([pred[i] for i in keep], [gold[i] for i in keep])
    if train is not None:
        seen = entities(train)
        for key, rule in (("new_entities", all), ("new_entity", any)):
            new = lambda tri, rule=rule: rule(e not in seen for e in (tri[0], tri[2]))  # noqa: E731
            g = [{t for t in gs if new(t)} for gs in gold]
            r = prf([{t for t in set(ps) if new(t)} for ps in pred], g)
            res[key] = dict(r, n=sum(map(len, g)))
    return res


# ---------------------------------------------------------------------------------------------
# one command: train and evaluate on the user's files


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
    itself): the :class:`TripleModel` with its weights, in eval mode (its ``max_len`` is the
    position table it was trained with), its vocabulary, its :class:`Schema` (with the slot
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
    the input format (:func:`to_record`: entities cut from the text, slot triples folded back into
    n-ary objects). Each text is tokenized (:func:`tokenize`) and read by :func:`extract`; a text
    longer than ``model.max_len`` tokens is read in windows every ``stride`` tokens (default
    ``max_len // 2``), with a warning: a triple whose subject and object span more than
    ``max_len - stride + 1`` tokens may lie in no window (:func:`window_starts`) and cannot be
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
    """Predicted triples as records of the input format (:func:`to_record`), entities cut from the texts."""
    return [to_record(Sentence(s.tokens, sorted(p), text=s.text, offsets=s.offsets), schema)
            for s, p in zip(sents, preds, strict=True)]


def run_files(train: str | Path, dev: str | Path, schema: str | Path, *, out: str | Path | None = None,
              steps: int = 2000, batch_size: int = 32, lr: float = 3e-3, ema_decay: float | None = 0.999,
              seed: int = 0, skip_missing: bool = False, min_count: int = 1, max_len: int | None = None,
              stride: int | None = None, progress: bool = False, encoder: nn.Module | None = None,
              vocab: Vocab | None = None, **model_kw) -> dict:
    """Train the chapter's extractor on a JSON-lines training file and score it on a dev file.

    The predicates come from the ``schema`` file (:func:`load_schema`), the vocabulary from the
    training file only (:func:`build_vocab`; dev tokens it lacks map to ``[UNK]``), or is
    ``vocab`` (e.g. ``Vocab.from_file`` of a BERT ``vocab.txt``, with ``encoder=``). The model is
    :func:`train_extractor` with the given options; dev triples are scored with :func:`evaluate`
    (with the training set, so ``"new_entities"`` is included) for the final weights
    (``"model"``) and for their moving average (``"ema"``, when ``ema_decay`` is set).

    **Length.** ``max_len`` is the model's position table: by default the longest training
    sentence, at most ``MAX_LEN`` (512) tokens. Longer training sentences are truncated
    (:class:`TripleData` with ``truncate=True``: a warning, and the triples past the cut are
    counted). Longer dev sentences are read in windows of ``max_len`` tokens every ``stride``
    tokens (default ``max_len // 2``, :func:`extract`); the dev triples that lie in no window
    (:func:`window_coverage`) are counted, with a warning, and stay gold triples.

    **Accounting.** No triple is lost without a count. ``result["accounting"]`` holds, for
    ``"train"`` and ``"dev"``, the loader's counts (:func:`load_jsonl`: triples read, labelled,
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
    (:func:`write_dataset`) to ``DIR`` to try it on."""
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
