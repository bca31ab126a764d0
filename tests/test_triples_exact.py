"""Checks of companion.sequence.triples that mutation testing showed were missing: every sentence template
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


@pytest.mark.parametrize("cond", ["cln", "add"])
def test_object_logits_written_out(cond):
    """object_logits = object_head(u) with u = CLN(H | [h_start; h_end]) (or H + W c for the additive
    variant), reshaped to (B, T, P, 2)."""
    try:
        m = tr.TripleModel(10, d=16, heads=2, layers=1, ffn=32, max_len=8, conditioning=cond)
    except ValueError:
        pytest.skip(f"conditioning {cond!r} not offered")
    h = torch.randn(2, 8, 16, generator=torch.Generator().manual_seed(1))
    start, end = torch.tensor([0, 3]), torch.tensor([2, 3])
    c = torch.stack([torch.cat([h[0, 0], h[0, 2]]), torch.cat([h[1, 3], h[1, 3]])])
    u = m.cond(h, c) if cond == "cln" else h + m.cond(c)[:, None]
    ref = (u @ m.object_head.weight.T + m.object_head.bias).view(2, 8, m.n_predicates, 2)
    torch.testing.assert_close(m.object_logits(h, start, end), ref, rtol=0, atol=1e-6)


def test_pn_bce_refuses_a_target_of_another_shape():
    z = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="shape of logits"):
        tr.pn_bce(z, torch.zeros(2, 4), 2)
    with pytest.raises(ValueError, match="shape of logits"):
        tr.pn_bce(torch.zeros(0, 3), torch.zeros(0, 3), 2)


def test_token_ids_outside_the_vocabulary_are_refused():
    m = tr.TripleModel(10, d=16, heads=2, layers=1, ffn=32, max_len=8)
    mask = torch.ones(1, 4, dtype=torch.bool)
    for bad in ([[1, 2, 3, 10]], [[-1, 2, 3, 4]]):
        with pytest.raises(ValueError):
            m.encode(torch.tensor(bad), mask)


def test_vocab_from_a_one_sentence_corpus_and_from_a_list_of_corpora():
    a, b = tr.generate_corpus(1, seed=3), tr.generate_corpus(4, seed=4)
    assert tr.build_vocab(a).itos == tr.build_vocab([a]).itos
    assert tr.build_vocab([a, b]).itos == tr.build_vocab(a + b).itos
