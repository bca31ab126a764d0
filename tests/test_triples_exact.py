"""Checks of companion.triples that mutation testing showed were missing: every sentence template
is generated, the documented bounds of reuse, and the type check of the subject span."""

from __future__ import annotations

import pytest
import torch

from companion import triples as tr

# one marker per template of the generator (12 templates; the last is the relation-free distractor)
MARKERS = [("was", "written", "by"), ("wrote",), ("was", "published", "by"), ("stars",), ("appeared", "in", "both"),
           ("directed", "and", "starred", "in"), ("born", "in"), ("married",), ("the", "life", "of"),
           ("produced",), ("visited",)]


def _has(tokens: list[str], words: tuple[str, ...]) -> bool:
    return any(tuple(tokens[i:i + len(words)]) == words for i in range(len(tokens) - len(words) + 1))


def test_every_template_is_generated():
    corpus = tr.generate_corpus(600, seed=0)
    for words in MARKERS:
        assert any(_has(s.tokens, words) for s in corpus), words
    preds = {p for s in corpus for (_, p, _) in s.triples}
    assert {"author", "publisher", "actor", "director", "birthplace", "birth_year", "spouse", "producer"} <= preds
    # the two "born in" templates: a city (birthplace) and a year (birth_year) both occur
    assert any(len(s.triples) and any(p == "birth_year" for _, p, _ in s.triples) for s in corpus)


def test_reuse_is_a_probability_including_its_ends():
    assert len(tr.generate_corpus(5, seed=1, reuse=1.0)) == 5
    assert len(tr.generate_corpus(5, seed=1, reuse=0.0)) == 5
    with pytest.raises(ValueError, match="reuse"):
        tr.generate_corpus(5, seed=1, reuse=1.0 + 1e-9)


def test_object_logits_refuse_float_or_bool_spans():
    m = tr.TripleModel(10, d=16, heads=2, layers=1, ffn=32, max_len=8)
    h = torch.randn(2, 8, 16, generator=torch.Generator().manual_seed(0))
    ok = torch.tensor([1, 2])
    assert m.object_logits(h, ok, ok + 1).shape == (2, 8, m.n_predicates, 2)
    first = torch.tensor([0, 0])  # a subject may start at the first token and end at the last
    assert m.object_logits(h, first, torch.tensor([0, 7])).shape == (2, 8, m.n_predicates, 2)
    for bad in (torch.tensor([1.0, 2.0]), torch.tensor([True, False])):
        with pytest.raises(TypeError, match="integer tensor"):
            m.object_logits(h, bad, ok)
        with pytest.raises(TypeError, match="integer tensor"):
            m.object_logits(h, ok, bad)
