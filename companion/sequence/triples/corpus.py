"""The template corpus of chapter 9: sentences with their triples, overlap types (Normal, SEO, EPO, nested),
entities held out of training, splits, and token spans.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from ...core.utils import check_int, check_positive

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

    Sentences read from files (:func:`~companion.sequence.triples.io.parse_record`) also keep their ``text``, the character
    ``offsets`` of each token, so that a predicted span can be cut from the original string
    (:meth:`span_text`), ``entity_spans``, the occurrence (inclusive token span) of each entity
    that the labels use (without it, an entity is labelled at its first occurrence), and
    ``dropped``: the record's triples that the sentence cannot label, each with its reason
    (``"missing_entity"``: an entity is not in the text as whole tokens; ``"unknown_predicate"``:
    the predicate is not in the schema). Dropped triples are still gold triples: :attr:`gold`
    holds them and :func:`~companion.sequence.triples.decode.evaluate` counts them as misses."""

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


def _to_triple(tokens: list[str], s: tuple[int, int], p: str, o: tuple[int, int]) -> Triple:
    return (tuple(tokens[s[0]:s[1] + 1]), p, tuple(tokens[o[0]:o[1] + 1]))
