"""Reading triples back: the nearest-end span decoder, the gold-label oracles, windows over long
text, extraction, and exact-match scoring.
"""

from __future__ import annotations

import itertools

import torch
from torch import nn

from ...core.utils import check_int, check_tensor
from .corpus import (
    PREDICATES,
    TYPES,
    Sentence,
    Triple,
    _check_corpus,
    _check_prob,
    _check_sentence,
    _to_triple,
    find_span,
)
from .io import _check_predicates
from .model import TripleModel, Vocab, _check_vocab, _spans, encode_sentence, object_labels, subject_labels


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

    The gold triples of a sentence are :attr:`~companion.sequence.triples.corpus.Sentence.gold`: its labelled triples and those the
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
