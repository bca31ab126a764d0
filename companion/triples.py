r"""Chapter 8 — Triple extraction with a half-pointer, half-tagging network.

A sentence holds a *set* of (subject, predicate, object) triples whose spans may overlap. The
chapter factorizes :math:`p(s,p,o)=p(s)\,p(o,p\mid s)` (equation :eq:`spo-factor`): one head marks the
start and end of every subject with independent sigmoids, a second head, conditioned on one
subject through Conditional LayerNorm (equation :eq:`spo-cln`), marks the start and end of every object
*per predicate* (equation :eq:`spo-pointer`). Sigmoids of the form :math:`\sigma(z)^n` (equation :eq:`spo-pn`)
fight the imbalance of the sparse labels; spans are read back with the nearest-end rule
(equation :eq:`spo-decode`); triples are scored by exact-match precision, recall and F1 (equation :eq:`spo-f1`).

Public surface:

* corpus: ``PREDICATES``, :class:`Sentence`, :func:`generate_corpus` (template sentences with
  Normal / SEO / EPO / nested overlaps and a reuse probability), :func:`overlap_type`,
  :func:`corpus_stats`;
* tokens: :class:`Vocab`, :func:`build_vocab`, :func:`encode_sentence`, :func:`find_span`;
* labels and their oracles: :func:`subject_labels`, :func:`object_labels`,
  :func:`decode_spans`, :func:`decode_gold`, :func:`single_tag_capacity`;
* model and training: :class:`ConditionalLayerNorm`, :class:`TripleModel`, :func:`pn_bce`,
  :class:`TripleData` (batches with the subject sampling of the chapter), :func:`triple_loss`,
  :func:`train_extractor` (the chapter's training recipe);
* decoding and scoring: :func:`extract`, :func:`prf`, :func:`evaluate`.

Conventions: a sentence is a list of word tokens; a span is ``(start, end)`` with *inclusive*
token indices; a triple is ``(subject_words, predicate, object_words)`` with tuples of words, so two
triples are equal when their words are (the chapter's exact-match rule).
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .utils import check_int, check_positive, check_tensor

__all__ = [
    "PREDICATES",
    "Sentence",
    "generate_corpus",
    "overlap_type",
    "corpus_stats",
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
    "evaluate",
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
    """One corpus sentence: its word ``tokens``, its gold ``triples`` and whether it is ``nested``."""

    tokens: list[str]
    triples: list[Triple] = field(default_factory=list)
    nested: bool = False

    @property
    def kind(self) -> str:
        """Overlap type, see :func:`overlap_type`."""
        return overlap_type(self.triples)


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


class _Pools:
    """Entity draws; with probability ``reuse`` an entity of the same class already used in the
    sentence is drawn again (long-range shared entities)."""

    def __init__(self, rng: random.Random, reuse: float):
        self.rng, self.reuse = rng, reuse
        self.used: dict[str, list[tuple[str, ...]]] = {}

    def _fresh(self, kind: str) -> tuple[str, ...]:
        r = self.rng
        if kind == "person":
            return (r.choice(_FIRST), r.choice(_LAST))
        if kind == "title":
            return ("the", r.choice(_ADJ), r.choice(_NOUN))
        if kind == "city":
            return (r.choice(_CITY),)
        if kind == "year":
            return (str(r.randint(1900, 2020)),)
        return r.choice(_ORG)

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
    return corpus


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


def generate_corpus(n: int, seed: int = 0, reuse: float = 0.0, max_clauses: int = 3) -> list[Sentence]:
    """``n`` template sentences of 1..``max_clauses`` clauses joined by ``, ; and , while``.

    ``reuse`` is the probability that a later entity repeats an earlier one of the same class.
    Sentences without any triple are redrawn. Deterministic given ``seed``.
    """
    n = check_int("n", n, minimum=1)
    max_clauses = check_int("max_clauses", max_clauses, minimum=1)
    seed = check_int("seed", seed, minimum=0)
    reuse = check_positive("reuse", reuse, allow_zero=True)
    if reuse > 1:
        raise ValueError(f"reuse must be a probability in [0, 1], got {reuse}")
    rng = random.Random(seed)
    out: list[Sentence] = []
    while len(out) < n:
        pools = _Pools(rng, reuse)
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
# tokens and labels


@dataclass
class Vocab:
    """Word ↔ id table; id 0 is padding, id 1 the unknown word."""

    itos: list[str]

    def __post_init__(self):
        self.stoi = {w: i for i, w in enumerate(self.itos)}

    def __len__(self) -> int:
        return len(self.itos)


def build_vocab(corpora: list[list[Sentence]] | list[Sentence]) -> Vocab:
    """A closed vocabulary from the words of one corpus or a list of corpora (sorted, deterministic)."""
    if not isinstance(corpora, (list, tuple)) or not corpora:
        raise TypeError("corpora must be a non-empty list of Sentence or a list of such lists")
    sents = corpora if isinstance(corpora[0], Sentence) else [s for c in corpora for s in _check_corpus(c, "corpora[i]")]
    _check_corpus(sents, "corpora")
    words = sorted({w for s in sents for w in s.tokens})
    return Vocab(["[PAD]", "[UNK]", *words])


def find_span(tokens: list[str], words: tuple[str, ...]) -> tuple[int, int] | None:
    """Inclusive span of the **first** occurrence of ``words`` in ``tokens`` (``None`` if absent)."""
    for name, seq in (("tokens", tokens), ("words", words)):
        if not isinstance(seq, (list, tuple)) or not all(isinstance(w, str) for w in seq):
            raise TypeError(f"{name} must be a list or tuple of str, got {type(seq).__name__}")
    if not words:
        raise ValueError("words must be non-empty")
    m = len(words)
    for i in range(len(tokens) - m + 1):
        if tuple(tokens[i:i + m]) == tuple(words):
            return (i, i + m - 1)
    return None


def encode_sentence(tokens: list[str], vocab: Vocab, max_len: int, *, strict: bool = False,
                    truncate: bool = False) -> torch.Tensor:
    """Token ids ``(T,)`` (int64) of a sentence.

    Unknown words map to ``[UNK]`` (id 1), or raise ``ValueError`` if ``strict``. A sentence longer
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
    return torch.tensor([vocab.stoi.get(w, 1) for w in tokens], dtype=torch.long)


def _spans(sent: Sentence) -> list[tuple[tuple[int, int], int, tuple[int, int]]]:
    out = []
    for s, p, o in sent.triples:
        ss, os_ = find_span(sent.tokens, s), find_span(sent.tokens, o)
        if ss is None or os_ is None:
            raise ValueError(f"triple {(s, p, o)} is not in the sentence")
        out.append((ss, PREDICATES.index(p), os_))
    return out


def subject_labels(sent: Sentence, length: int | None = None) -> torch.Tensor:
    """Subject pointer labels ``(T, 2)``: column 0 marks subject starts, column 1 ends (equation :eq:`spo-pointer`)."""
    T = _check_length(_check_sentence(sent), length)
    y = torch.zeros(T, 2)
    for (a, b), _, _ in _spans(sent):
        y[a, 0] = y[b, 1] = 1.0
    return y


def object_labels(sent: Sentence, subject: tuple[int, int], length: int | None = None) -> torch.Tensor:
    """Object–predicate labels ``(T, P, 2)`` given one subject span (equation :eq:`spo-pointer`); all
    zero when ``subject`` is not a gold subject (a negative sample)."""
    T = _check_length(_check_sentence(sent), length)
    if (not isinstance(subject, (tuple, list)) or len(subject) != 2
            or not all(isinstance(i, int) and not isinstance(i, bool) for i in subject)):
        raise TypeError(f"subject must be an inclusive span (start, end) of two ints, got {subject!r}")
    if not 0 <= subject[0] <= subject[1] < len(sent.tokens):
        raise ValueError(f"subject span {tuple(subject)} must satisfy 0 <= start <= end < {len(sent.tokens)}")
    y = torch.zeros(T, len(PREDICATES), 2)
    for ss, p, (a, b) in _spans(sent):
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


def _to_triple(tokens: list[str], s: tuple[int, int], p: int, o: tuple[int, int]) -> Triple:
    return (tuple(tokens[s[0]:s[1] + 1]), PREDICATES[p], tuple(tokens[o[0]:o[1] + 1]))


def decode_gold(sent: Sentence) -> set[Triple]:
    """Decode the gold labels of a sentence with :func:`decode_spans` (the oracle of the scheme).

    Predicates whose labels are all zero are skipped (they cannot decode to a span)."""
    ys = subject_labels(sent)
    out = set()
    for s in decode_spans(ys[:, 0], ys[:, 1]):
        yo = object_labels(sent, s)
        for p in torch.nonzero(yo.sum(dim=(0, 2))).flatten().tolist():
            for o in decode_spans(yo[:, p, 0], yo[:, p, 1]):
                out.add(_to_triple(sent.tokens, s, p, o))
    return out


def single_tag_capacity(sent: Sentence) -> int:
    """Most triples of ``sent`` that a one-tag-per-token scheme can hold.

    In that scheme (Zheng et al., 2017) each token carries one tag (predicate, role); a triple is
    held when every token of its subject carries (p, subject) and every token of its object
    (p, object). Exact maximum over subsets of the triples (sentences hold a handful).
    """
    spans = _spans(_check_sentence(sent))
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
    """

    def __init__(self, vocab_size: int, n_predicates: int = len(PREDICATES), *, d: int = 64, heads: int = 4,
                 layers: int = 2, ffn: int = 256, max_len: int = 64, dropout: float = 0.1,
                 conditioning: str = "cln", n_subject: int = 2, n_object: int = 4, pos_std: float = 1.0,
                 seed: int = 0):
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
        seed = check_int("seed", seed, minimum=0)
        self.conditioning = conditioning
        torch.manual_seed(seed)
        self.emb = nn.Embedding(vocab_size, d, padding_idx=0)
        self.pos = nn.Parameter(pos_std * torch.randn(max_len, d))
        layer = nn.TransformerEncoderLayer(d, heads, ffn, dropout, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d)
        self.subject_head = nn.Linear(d, 2)
        if conditioning == "cln":
            self.cond = ConditionalLayerNorm(d, 2 * d)
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
        if ids.min() < 0 or ids.max() >= self.emb.num_embeddings:
            raise ValueError(f"ids must be token ids in [0, {self.emb.num_embeddings})")

    def _check_h(self, h: torch.Tensor) -> None:
        check_tensor("h", h, ndim=3)
        d = self.norm.normalized_shape[0]
        if 0 in h.shape or h.shape[-1] != d:
            raise ValueError(f"h must have shape (B, T, {d}) with B, T >= 1, got {tuple(h.shape)}")
        if h.dtype != self.subject_head.weight.dtype:
            raise TypeError(f"h has dtype {h.dtype}, the model {self.subject_head.weight.dtype}")

    def encode(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``ids`` (B, T) int64, ``mask`` (B, T) bool (True = token) -> H (B, T, d)."""
        self._check_ids(ids, mask)
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
    """A corpus encoded for training: padded ids, masks, subject labels and, per sentence, the gold
    starts/ends and the object labels of each gold subject.

    Calling it as ``data(batch_size, generator)`` draws a batch and one subject per sentence
    (a random gold start, then a random gold end at or after it — not always a gold subject, which
    gives free negative samples), the sampler :func:`companion.train.fit` expects.
    """

    def __init__(self, corpus: list[Sentence], vocab: Vocab, max_len: int = 64):
        _check_corpus(corpus)
        _check_vocab(vocab)
        max_len = check_int("max_len", max_len, minimum=1)
        self.corpus, self.vocab, self.max_len = corpus, vocab, max_len
        T = max(len(s.tokens) for s in corpus)
        if T > max_len:
            raise ValueError(f"corpus has a sentence of {T} tokens, more than max_len={max_len}")
        n = len(corpus)
        self.T = T
        self.ids = torch.zeros(n, T, dtype=torch.long)
        self.mask = torch.zeros(n, T, dtype=torch.bool)
        self.ys = torch.zeros(n, T, 2)
        self.starts: list[list[int]] = []
        self.ends: list[list[int]] = []
        self.yo: list[dict[tuple[int, int], torch.Tensor]] = []
        for i, s in enumerate(corpus):
            L = len(s.tokens)
            self.ids[i, :L] = encode_sentence(s.tokens, vocab, max_len)
            self.mask[i, :L] = True
            self.ys[i] = subject_labels(s, T)
            subs = sorted({ss for ss, _, _ in _spans(s)})
            self.starts.append(sorted({a for a, _ in subs}))
            self.ends.append(sorted({b for _, b in subs}))
            self.yo.append({ss: object_labels(s, ss, T) for ss in subs})
        self.zero = torch.zeros(T, len(PREDICATES), 2)

    def __len__(self) -> int:
        return len(self.corpus)

    def __call__(self, batch_size: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        idx = torch.randint(0, len(self), (batch_size,), generator=generator).tolist()
        st, en, yo = [], [], []
        for i in idx:
            a = self.starts[i][int(torch.randint(0, len(self.starts[i]), (1,), generator=generator))]
            ends = [b for b in self.ends[i] if b >= a]
            b = ends[int(torch.randint(0, len(ends), (1,), generator=generator))]
            st.append(a)
            en.append(b)
            yo.append(self.yo[i].get((a, b), self.zero))
        return {"ids": self.ids[idx], "mask": self.mask[idx], "ys": self.ys[idx],
                "start": torch.tensor(st), "end": torch.tensor(en), "yo": torch.stack(yo)}


def triple_loss(model: TripleModel, batch: dict[str, torch.Tensor], generator: torch.Generator | None = None
                ) -> torch.Tensor:
    """Subject loss (mean over the 2 pointers, masked mean over tokens) plus object loss (mean over
    the 2 pointers, summed over predicates, masked mean over tokens), 1:1 (equation :eq:`spo-loss`)."""
    h = model.encode(batch["ids"], batch["mask"])
    m = batch["mask"].to(h.dtype)
    ls = pn_bce(model.subject_logits(h), batch["ys"], model.n_subject).mean(-1)
    lo = pn_bce(model.object_logits(h, batch["start"], batch["end"]), batch["yo"], model.n_object).mean(-1).sum(-1)
    return ((ls * m).sum() + (lo * m).sum()) / m.sum()


def train_extractor(data: TripleData, *, seed: int = 0, steps: int = 600, batch_size: int = 32,
                    lr: float = 3e-3, cosine: bool = False, progress: bool = True, **model_kw):
    """The chapter's training recipe: a :class:`TripleModel` (weights seeded by ``seed``, other
    options ``model_kw``) trained on ``data`` with :func:`triple_loss` by
    :func:`companion.train.fit`: Adam, no EMA, no gradient clipping, batches and subject sampling
    seeded by ``seed + 1``; a constant rate ``lr``, or a cosine decay of it if ``cosine``.
    Returns the :class:`companion.train.FitResult` (``.model`` is the trained model)."""
    from .train import fit

    if not isinstance(data, TripleData):
        raise TypeError(f"data must be a TripleData, got {type(data).__name__}")
    seed = check_int("seed", seed, minimum=0)
    model = TripleModel(len(data.vocab), seed=seed, **model_kw)
    return fit(model, triple_loss, data, steps=steps, batch_size=batch_size, lr=lr, seed=seed + 1,
               ema_decay=None, grad_clip=None, cosine=cosine, progress=progress, desc="triples")


@torch.no_grad()
def extract(model: TripleModel, corpus: list[Sentence], vocab: Vocab, *, t_start: float = 0.6,
            t_end: float = 0.5, batch_size: int = 256) -> list[set[Triple]]:
    """Predicted triple sets of every sentence (equation :eq:`spo-decode`): subjects first, then one
    batched object pass per subject. Unknown words map to ``[UNK]``; sentences longer than the
    model's position table raise ``ValueError``."""
    needed = ("encode", "subject_logits", "object_logits", "n_subject", "n_object", "n_predicates", "max_len")
    if not isinstance(model, nn.Module) or not all(hasattr(model, a) for a in needed):
        raise TypeError(f"model must be a TripleModel (or a module with its interface), got {type(model).__name__}")
    _check_corpus(corpus)
    _check_vocab(vocab)
    t_start = _check_prob("t_start", t_start)
    t_end = _check_prob("t_end", t_end)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    model.eval()
    out: list[set[Triple]] = []
    for b0 in range(0, len(corpus), batch_size):
        chunk = corpus[b0:b0 + batch_size]
        T = max(len(s.tokens) for s in chunk)
        ids = torch.zeros(len(chunk), T, dtype=torch.long)
        mask = torch.zeros(len(chunk), T, dtype=torch.bool)
        for i, s in enumerate(chunk):
            ids[i, : len(s.tokens)] = encode_sentence(s.tokens, vocab, model.max_len)
            mask[i, : len(s.tokens)] = True
        h = model.encode(ids, mask)
        ps = torch.sigmoid(model.subject_logits(h)) ** model.n_subject
        rows, subs = [], []
        for i, s in enumerate(chunk):
            L = len(s.tokens)
            for sp in decode_spans(ps[i, :L, 0], ps[i, :L, 1], t_start, t_end):
                rows.append(i)
                subs.append(sp)
        preds: list[set[Triple]] = [set() for _ in chunk]
        if rows:
            r = torch.tensor(rows)
            st = torch.tensor([a for a, _ in subs])
            en = torch.tensor([b for _, b in subs])
            po = torch.sigmoid(model.object_logits(h[r], st, en)) ** model.n_object
            for k, (i, sp) in enumerate(zip(rows, subs, strict=True)):
                L = len(chunk[i].tokens)
                for p in range(model.n_predicates):
                    for o in decode_spans(po[k, :L, p, 0], po[k, :L, p, 1], t_start, t_end):
                        preds[i].add(_to_triple(chunk[i].tokens, sp, p, o))
        out += preds
    return out


def prf(pred: list[set[Triple]], gold: list[set[Triple]]) -> dict[str, float]:
    """Corpus-level exact-match precision, recall and F1 (equation :eq:`spo-f1`):
    :math:`P=|R\\cap G|/|R|`, :math:`R=|R\\cap G|/|G|`, :math:`F_1=2|R\\cap G|/(|R|+|G|)`
    with counts summed over sentences (0 when a denominator is 0)."""
    for name, v in (("pred", pred), ("gold", gold)):
        if not isinstance(v, (list, tuple)):
            raise TypeError(f"{name} must be a list of sets of triples, got {type(v).__name__}")
    if len(pred) != len(gold):
        raise ValueError(f"pred and gold must have the same length, got {len(pred)} and {len(gold)}")
    hit = sum(len(set(p) & set(g)) for p, g in zip(pred, gold, strict=True))
    n_p = sum(len(set(p)) for p in pred)
    n_g = sum(len(set(g)) for g in gold)
    return {"precision": hit / n_p if n_p else 0.0, "recall": hit / n_g if n_g else 0.0,
            "f1": 2 * hit / (n_p + n_g) if n_p + n_g else 0.0, "n": len(gold)}


def evaluate(pred: list[set[Triple]], corpus: list[Sentence]) -> dict[str, dict[str, float]]:
    """:func:`prf` overall and per overlap type (``"all"``, ``"Normal"``, ``"SEO"``, ``"EPO"``, ``"nested"``)."""
    _check_corpus(corpus)
    gold = [set(s.triples) for s in corpus]
    res = {"all": prf(pred, gold)}
    for t in (*TYPES, "nested"):
        keep = [i for i, s in enumerate(corpus) if (s.nested if t == "nested" else s.kind == t)]
        if keep:
            res[t] = prf([pred[i] for i in keep], [gold[i] for i in keep])
    return res

