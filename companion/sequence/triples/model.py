"""Tokens, labels and the network: vocabulary, encoding, subject and object labels, Conditional
LayerNorm, the half-pointer, half-tagging model, its loss and its training recipe.
"""

from __future__ import annotations

import warnings
from array import array
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ...core.utils import check_int, check_positive, check_tensor
from .corpus import PREDICATES, Sentence, _check_corpus, _check_length, _check_sentence, _iter_spans
from .io import _check_predicates, _predicate_index


def _check_vocab(vocab) -> None:
    if not isinstance(vocab, Vocab):
        raise TypeError(f"vocab must be a Vocab, got {type(vocab).__name__}")


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

    The ids then come from the checkpoint's ``vocab.txt`` through :func:`~companion.sequence.triples.io.tokenize` (one
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
    from ...core.train import fit

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
