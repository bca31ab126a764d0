"""Tests of companion.sequence.triples (chapter 9): decoder, oracles, corpus statistics, loss, F1."""

import contextlib
import io
import itertools
import json
import math
import random
import tracemalloc
import warnings

import pytest
import torch
import torch.nn.functional as F

from companion import triples as tr


def _probs(T, ones):
    x = torch.zeros(T)
    x[list(ones)] = 1.0
    return x


# --- decoder -----------------------------------------------------------------------------------


def test_decode_nearest_end_shared():
    # starts {0, 3}, one end {4}: both starts take the nearest end at or after them
    assert tr.decode_spans(_probs(6, [0, 3]), _probs(6, [4])) == [(0, 4), (3, 4)]


def test_decode_single_token_and_orphan_start():
    # a start and end on the same token is a one-token span; a start after the last end is dropped
    assert tr.decode_spans(_probs(6, [1, 5]), _probs(6, [1])) == [(1, 1)]


def test_decode_nested_failure_documented():
    # gold spans [0, 5] ⊃ [1, 2]: the outer start grabs the inner, earlier end
    start, end = _probs(6, [0, 1]), _probs(6, [2, 5])
    spans = tr.decode_spans(start, end)
    assert spans == [(0, 2), (1, 2)]
    assert (0, 5) not in spans


def test_decode_thresholds_are_strict():
    start = torch.tensor([0.6, 0.61, 0.0])
    end = torch.tensor([0.0, 0.5, 0.51])
    # 0.6 is not > 0.6; 0.5 is not > 0.5, so start 1 pairs with end 2
    assert tr.decode_spans(start, end, 0.6, 0.5) == [(1, 2)]


def test_decode_validation():
    with pytest.raises(ValueError, match="same shape"):
        tr.decode_spans(torch.zeros(3), torch.zeros(4))
    with pytest.raises(TypeError, match="start"):
        tr.decode_spans([0.0, 1.0], torch.zeros(2))
    with pytest.raises(ValueError, match="end"):
        tr.decode_spans(torch.zeros(3), torch.zeros(3, 1))


# --- oracle representability -------------------------------------------------------------------


@pytest.mark.parametrize("reuse", [0.0, 0.5])
def test_oracle_half_pointer_recovers_all(reuse):
    corpus = tr.generate_corpus(300, seed=1, reuse=reuse)
    assert all(tr.decode_gold(s) == set(s.triples) for s in corpus)


def test_single_tag_capacity_hand_cases():
    # symmetric relation: both directions need opposite roles on the same tokens -> only one fits
    s = tr.Sentence("alice adler married bruno berg".split(),
                    [(("alice", "adler"), "spouse", ("bruno", "berg")), (("bruno", "berg"), "spouse", ("alice", "adler"))])
    assert tr.single_tag_capacity(s) == 1
    # EPO: same pair, two predicates -> one tag per token holds one of them
    f, p = ("the", "red", "river"), ("hugo", "horn")
    s = tr.Sentence("hugo horn directed and starred in the red river".split(), [(f, "director", p), (f, "actor", p)])
    assert tr.single_tag_capacity(s) == 1
    # disjoint triples: both fit
    s = tr.Sentence("hugo horn was born in oslo , zoe dahl was born in riga".split(),
                    [(p, "birthplace", ("oslo",)), (("zoe", "dahl"), "birthplace", ("riga",))])
    assert tr.single_tag_capacity(s) == 2


def test_single_tag_scheme_loses_overlaps():
    corpus = tr.generate_corpus(300, seed=1)
    cap = sum(tr.single_tag_capacity(s) for s in corpus) / sum(len(s.triples) for s in corpus)
    normal = [s for s in corpus if s.kind == "Normal"]
    # Normal sentences never conflict; overlapping corpora lose about 19 % (0.81 measured on 1000)
    assert all(tr.single_tag_capacity(s) == len(s.triples) for s in normal)
    assert cap < 0.9


# --- corpus ------------------------------------------------------------------------------------


def test_overlap_type_hand_cases():
    a, b, c = ("a",), ("b",), ("c",)
    assert tr.overlap_type([(a, "author", b)]) == "Normal"
    assert tr.overlap_type([(a, "author", b), (c, "actor", ("d",))]) == "Normal"
    assert tr.overlap_type([(a, "author", b), (a, "actor", c)]) == "SEO"
    assert tr.overlap_type([(a, "author", b), (c, "actor", b)]) == "SEO"
    assert tr.overlap_type([(a, "director", b), (a, "actor", b)]) == "EPO"


def test_corpus_deterministic_and_consistent():
    c1, c2 = tr.generate_corpus(50, seed=3), tr.generate_corpus(50, seed=3)
    assert [s.tokens for s in c1] == [s.tokens for s in c2]
    assert [s.tokens for s in c1] != [s.tokens for s in tr.generate_corpus(50, seed=4)]
    st = tr.corpus_stats(c1)
    assert math.isclose(st["Normal"] + st["SEO"] + st["EPO"], 1.0)
    for s in c1:  # every triple's words occur in the sentence
        for subj, p, obj in s.triples:
            assert p in tr.PREDICATES and tr.find_span(s.tokens, subj) and tr.find_span(s.tokens, obj)


def test_corpus_one_clause_law():
    # one clause: 12 templates, 1 without triples (redrawn); 6 give one triple, 5 give two and
    # 1 of the 11 is nested. Closed form: mean 16/11, sd sqrt(30)/11; nested share 1/11.
    n = 2000
    st = tr.corpus_stats(tr.generate_corpus(n, seed=0, max_clauses=1))
    se_mean = math.sqrt(30) / 11 / math.sqrt(n)
    se_nest = math.sqrt(1 / 11 * 10 / 11 / n)
    assert abs(st["mean_triples"] - 16 / 11) < 4 * se_mean
    assert abs(st["nested"] - 1 / 11) < 4 * se_nest


def test_reuse_creates_more_overlap():
    # measured on 1000 sentences: Normal share 0.351 (reuse 0) vs 0.267 (reuse 0.5)
    a = tr.corpus_stats(tr.generate_corpus(1000, seed=1, reuse=0.0))
    b = tr.corpus_stats(tr.generate_corpus(1000, seed=1, reuse=0.5))
    assert b["Normal"] < a["Normal"] - 0.04


def test_corpus_validation():
    with pytest.raises(ValueError, match="reuse"):
        tr.generate_corpus(10, reuse=1.5)
    with pytest.raises(ValueError, match="n"):
        tr.generate_corpus(0)
    with pytest.raises(TypeError, match="max_clauses"):
        tr.generate_corpus(5, max_clauses=1.5)
    with pytest.raises(ValueError, match="empty"):
        tr.corpus_stats([])


# --- tokens and labels -------------------------------------------------------------------------


def test_encode_bad_inputs():
    vocab = tr.build_vocab(tr.generate_corpus(20, seed=0))
    with pytest.raises(ValueError, match="empty"):
        tr.encode_sentence([], vocab, 8)
    ids = tr.encode_sentence(["alice", "zzzunknown"], vocab, 8)
    assert ids[1].item() == 1 and ids[0].item() == vocab.stoi["alice"]
    with pytest.raises(ValueError, match="unknown"):
        tr.encode_sentence(["alice", "zzzunknown"], vocab, 8, strict=True)
    with pytest.raises(ValueError, match="max_len"):
        tr.encode_sentence(["alice"] * 9, vocab, 8)
    assert tr.encode_sentence(["alice"] * 9, vocab, 8, truncate=True).shape == (8,)
    with pytest.raises(TypeError, match="tokens"):
        tr.encode_sentence("alice", vocab, 8)


def test_labels_first_occurrence_and_negative_subject():
    s = tr.Sentence("the life of vera lund was published by atlas house".split(),
                    [(("the", "life", "of", "vera", "lund"), "publisher", ("atlas", "house")),
                     (("the", "life", "of", "vera", "lund"), "author", ("vera", "lund"))])
    ys = tr.subject_labels(s)
    assert ys[:, 0].nonzero().flatten().tolist() == [0] and ys[:, 1].nonzero().flatten().tolist() == [4]
    yo = tr.object_labels(s, (0, 4))
    a = tr.PREDICATES.index("author")
    assert yo[3, a, 0] == 1 and yo[4, a, 1] == 1 and yo.sum() == 4
    assert tr.object_labels(s, (0, 3)).sum() == 0  # not a gold subject: all-zero negative
    with pytest.raises(ValueError, match="not in the sentence"):
        tr.subject_labels(tr.Sentence(["a"], [(("b",), "author", ("a",))]))


def test_sampler_subjects():
    corpus = tr.generate_corpus(40, seed=2)
    data = tr.TripleData(corpus, tr.build_vocab(corpus))
    g = torch.Generator().manual_seed(0)
    neg = 0
    for _ in range(20):
        b = data(16, g)
        assert b["ids"].shape == b["mask"].shape and b["yo"].shape[2:] == (len(tr.PREDICATES), 2)
        for i in range(16):
            a, e = b["start"][i].item(), b["end"][i].item()
            assert b["ys"][i, a, 0] == 1 and b["ys"][i, e, 1] == 1 and e >= a
            neg += b["yo"][i].sum().item() == 0
    assert neg > 0  # non-gold (start, end) pairs occur and carry all-zero labels
    with pytest.raises(ValueError, match="max_len"):
        tr.TripleData(corpus, tr.build_vocab(corpus), max_len=5)


# --- loss and model ----------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 2, 4])
def test_pn_bce_matches_direct_formula(n):
    z = torch.linspace(-6, 6, 25, dtype=torch.float64)
    q = torch.sigmoid(z) ** n
    for y in (0.0, 1.0):
        direct = -(y * torch.log(q) + (1 - y) * torch.log(1 - q))
        assert torch.allclose(tr.pn_bce(z, torch.full_like(z, y), n), direct, rtol=1e-10, atol=1e-12)
    if n == 1:
        t = (torch.arange(25) % 2).to(z)
        assert torch.allclose(tr.pn_bce(z, t, 1), F.binary_cross_entropy_with_logits(z, t, reduction="none"))


def test_pn_bce_stable_and_gradient():
    z = torch.tensor([-80.0, 80.0])
    assert torch.isfinite(tr.pn_bce(z, torch.tensor([1.0, 0.0]), 4)).all()
    # gradient for label 0 at p = 1/2: n p^n (1-p) / (1-p^n) = 4 (1/16)(1/2)/(15/16) = 2/15
    z = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    tr.pn_bce(z, torch.zeros(1, dtype=torch.float64), 4).sum().backward()
    assert math.isclose(z.grad.item(), 2 / 15, rel_tol=1e-12)
    with pytest.raises(ValueError, match="n"):
        tr.pn_bce(z, z, 0)


def test_cln_starts_as_layernorm_then_conditions():
    torch.manual_seed(0)
    cln = tr.ConditionalLayerNorm(8, 4).double()
    h, c = torch.randn(3, 5, 8, dtype=torch.float64), torch.randn(3, 4, dtype=torch.float64)
    assert torch.allclose(cln(h, c), F.layer_norm(h, (8,)))
    with torch.no_grad():
        cln.w_gamma.weight.normal_()
        cln.w_beta.weight.normal_()
    mu, var = h.mean(-1, keepdim=True), h.var(-1, unbiased=False, keepdim=True)
    manual = (h - mu) / torch.sqrt(var + 1e-5) * (1 + c @ cln.w_gamma.weight.T)[:, None] + (c @ cln.w_beta.weight.T)[:, None]
    assert torch.allclose(cln(h, c), manual, atol=1e-12)


def test_model_shapes_and_validation():
    corpus = tr.generate_corpus(8, seed=0)
    vocab = tr.build_vocab(corpus)
    data = tr.TripleData(corpus, vocab, max_len=32)
    for cond in ("cln", "add"):
        m = tr.TripleModel(len(vocab), d=16, heads=2, layers=1, ffn=32, max_len=32, conditioning=cond)
        b = data(4, torch.Generator().manual_seed(0))
        h = m.encode(b["ids"], b["mask"])
        T = b["ids"].shape[1]  # padded to the longest sentence of the batch
        assert T == b["mask"].sum(1).max() and h.shape == (4, T, 16)
        assert m.object_logits(h, b["start"], b["end"]).shape == (4, T, len(tr.PREDICATES), 2)
        loss = tr.triple_loss(m, b)
        assert loss.ndim == 0 and torch.isfinite(loss)
    with pytest.raises(ValueError, match="conditioning"):
        tr.TripleModel(10, conditioning="film")
    with pytest.raises(ValueError, match="max_len"):
        m.encode(torch.ones(1, 33, dtype=torch.long), torch.ones(1, 33, dtype=torch.bool))
    with pytest.raises(ValueError, match="empty"):
        m.encode(torch.ones(2, 3, dtype=torch.long), torch.tensor([[True] * 3, [False] * 3]))
    with pytest.raises(TypeError, match="ids"):
        m.encode(torch.ones(1, 3), torch.ones(1, 3, dtype=torch.bool))
    with pytest.raises(TypeError, match="mask"):
        m.encode(torch.ones(1, 3, dtype=torch.long), torch.ones(1, 3))
    with pytest.raises(ValueError, match="max_len"):
        tr.extract(m, [tr.Sentence(["alice"] * 40)], vocab)
    with pytest.raises(ValueError, match="empty"):
        tr.extract(m, [], vocab)


# --- scores ------------------------------------------------------------------------------------


def test_prf_known_predictions():
    A, B, C, D, E = [(("s",), "author", (w,)) for w in "abcde"]
    r = tr.prf([{A, B, C}, set()], [{A, B, D}, {E}])
    # 2 hits, 3 predicted, 4 gold: P = 2/3, R = 1/2, F1 = 2*2/(3+4)
    assert math.isclose(r["precision"], 2 / 3) and math.isclose(r["recall"], 0.5)
    assert math.isclose(r["f1"], 4 / 7)
    assert math.isclose(r["f1"], 2 * r["precision"] * r["recall"] / (r["precision"] + r["recall"]))
    assert tr.prf([set()], [set()])["f1"] == 0.0
    with pytest.raises(ValueError, match="same length"):
        tr.prf([set()], [])


def test_evaluate_per_type():
    corpus = tr.generate_corpus(60, seed=5)
    gold = [set(s.triples) for s in corpus]
    res = tr.evaluate(gold, corpus)
    assert all(v["f1"] == 1.0 for v in res.values())
    assert sum(res[t]["n"] for t in ("Normal", "SEO", "EPO")) == 60
    # drop every EPO sentence's predictions: only the EPO score and the total move
    pred = [set() if s.kind == "EPO" else g for s, g in zip(corpus, gold, strict=True)]
    res = tr.evaluate(pred, corpus)
    assert res["EPO"]["recall"] == 0.0 and res["SEO"]["f1"] == 1.0 and res["Normal"]["f1"] == 1.0
    n_epo = sum(len(g) for s, g in zip(corpus, gold, strict=True) if s.kind == "EPO")
    assert math.isclose(res["all"]["recall"], 1 - n_epo / sum(map(len, gold)))


class _OracleModel(torch.nn.Module):
    """Hand-built logits from the gold labels: true positions reach probability 0.9 only after
    the power n (sigma = 0.9**(1/n)); every other position has sigma = 0.7, above the start
    threshold but below both thresholds once raised to n >= 2. So extraction recovers the gold
    triples only if it decodes with sigma**n, reads start and end from the right channels, and
    pairs each subject with its own objects."""

    def __init__(self, corpus, n_subject=2, n_object=4, max_len=64):
        super().__init__()
        self.corpus, self.n_subject, self.n_object, self.max_len = corpus, n_subject, n_object, max_len
        self.n_predicates = len(tr.PREDICATES)

    @staticmethod
    def _logits(labels, n):
        p_true = torch.tensor(0.9 ** (1 / n))
        hi, lo = torch.log(p_true / (1 - p_true)), torch.log(torch.tensor(0.7 / 0.3))
        return torch.where(labels > 0.5, hi, lo)

    def encode(self, ids, mask):
        B, T = ids.shape
        return torch.arange(B, dtype=torch.float32)[:, None, None].expand(B, T, 1)   # which sentence

    def subject_logits(self, h):
        B, T, _ = h.shape
        out = torch.full((B, T, 2), -20.0)
        for i in range(B):
            ys = tr.subject_labels(self.corpus[i])
            out[i, : ys.shape[0]] = self._logits(ys, self.n_subject)
        return out

    def object_logits(self, h, start, end):
        R, T, _ = h.shape
        out = torch.full((R, T, self.n_predicates, 2), -20.0)
        for k in range(R):
            i = int(h[k, 0, 0])
            yo = tr.object_labels(self.corpus[i], (int(start[k]), int(end[k])))
            out[k, : yo.shape[0]] = self._logits(yo, self.n_object)
        return out


def test_extract_recovers_gold_from_hand_built_logits():
    corpus = tr.generate_corpus(60, seed=3)
    spans = [(s[0], o[0]) for sent in corpus for s, _, o in sent.triples]
    assert any(len(a) > 1 for a, _ in spans) and any(len(b) > 1 for _, b in spans)   # multi-token entities
    model = _OracleModel(corpus)
    pred = tr.extract(model, corpus, tr.build_vocab(corpus))
    assert pred == [set(s.triples) for s in corpus]
    # with n = 1 the decoys (sigma = 0.7) pass both thresholds: spans appear everywhere
    loose_pred = tr.extract(_OracleModel(corpus, 1, 1), corpus, tr.build_vocab(corpus))
    assert loose_pred != [set(s.triples) for s in corpus]


# --- real data: tokenizer, schema, JSON lines, command ------------------------------------------


def test_tokenize_chinese_characters_english_words():
    text = "Hugo Horn生于1990年，拍了《Star Wars》!"
    toks, offs = tr.tokenize(text, offsets=True)
    assert toks == ["Hugo", "Horn", "生", "于", "1990", "年", "，", "拍", "了", "《", "Star", "Wars", "》", "!"]
    assert [text[a:b] for a, b in offs] == toks  # offsets cut the original string
    # every CJK ideograph is its own token, also next to Latin letters; white space only separates
    assert tr.tokenize("BBC工作室") == ["BBC", "工", "作", "室"]
    assert tr.tokenize("  the  red\triver ") == ["the", "red", "river"]
    assert tr.tokenize("") == []
    with pytest.raises(TypeError, match="text"):
        tr.tokenize(None)


def _write(path, lines):
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_load_schema_formats_and_errors(tmp_path):
    s = tr.load_schema(_write(tmp_path / "s.json", [
        '{"predicate": "作者", "subject_type": "图书作品", "object_type": "人物"}', "",
        '{"predicate": "出生地", "subject_type": "人物", "object_type": {"@value": "地点"}}']))
    assert s.predicates == ("作者", "出生地") and s.object_types == ("人物", "地点") and len(s) == 2
    assert tr.load_schema(_write(tmp_path / "l.json", ['["author", "spouse"]'])).predicates == ("author", "spouse")
    with pytest.raises(ValueError, match=r"s2.json:2:15: not valid JSON"):
        tr.load_schema(_write(tmp_path / "s2.json", ['{"predicate": "a"}', '{"predicate": ']))  # cut off: column 15
    with pytest.raises(ValueError, match=r"line 1: missing or empty 'predicate'"):
        tr.load_schema(_write(tmp_path / "s3.json", ['{"name": "a"}']))
    with pytest.raises(ValueError, match="listed twice"):
        tr.load_schema(_write(tmp_path / "s4.json", ['{"predicate": "a"}', '{"predicate": "a"}']))
    with pytest.raises(ValueError, match="empty"):
        tr.load_schema(_write(tmp_path / "s5.json", [""]))


def test_load_jsonl_chinese_record(tmp_path):
    path = _write(tmp_path / "t.jsonl", [
        '{"text": "《雪春》是赵洋丽创作的小说，《吴明娜传》由中华书局出版。", "spo_list": ['
        '{"subject": "雪春", "predicate": "作者", "object": "赵洋丽"},'
        '{"subject": "雪春", "predicate": "作者", "object": "赵洋丽"},'
        '{"subject": "吴明娜传", "predicate": "出版社", "object": "中华书局"}]}'])
    (s,) = tr.load_jsonl(path, tr.ZH_SCHEMA)
    assert s.tokens[:4] == ["《", "雪", "春", "》"] and len(s.tokens) == len(s.text)  # one token per character
    assert s.triples == [(("雪", "春"), "作者", ("赵", "洋", "丽")), (("吴", "明", "娜", "传"), "出版社", ("中", "华", "书", "局"))]
    assert s.span_text(("吴", "明", "娜", "传")) == "吴明娜传"
    ys = tr.subject_labels(s, predicates=tr.ZH_SCHEMA)
    assert ys[:, 0].nonzero().flatten().tolist() == [1, 15] and ys[:, 1].nonzero().flatten().tolist() == [2, 18]
    yo = tr.object_labels(s, (1, 2), predicates=tr.ZH_SCHEMA)
    assert yo.shape == (len(s.tokens), len(tr.ZH_SCHEMA), 2)
    assert yo[:, 0, 0].nonzero().flatten().tolist() == [5] and yo[:, 0, 1].nonzero().flatten().tolist() == [7]
    assert tr.decode_gold(s, tr.ZH_SCHEMA) == set(s.triples)


@pytest.mark.parametrize("line, message", [
    ('{"text": "a b", "spo_list": [', "bad.jsonl:2:30: not valid JSON"),  # cut off after 29 characters
    ('["a b"]', "bad.jsonl:2: expected a JSON object"),
    ('{"spo_list": []}', "bad.jsonl:2: 'text' is missing"),
    ('{"text": "  ", "spo_list": []}', "bad.jsonl:2: 'text' is empty"),
    ('{"text": "a b"}', "bad.jsonl:2: 'spo_list' is missing"),
    ('{"text": "a b", "spo_list": [{"subject": "a", "object": "b"}]}', r"bad.jsonl:2, spo_list\[0\]: expected an object"),
    ('{"text": "a b", "spo_list": [{"subject": "", "predicate": "author", "object": "b"}]}', "subject must be a non-empty"),
    ('{"text": "a b", "spo_list": [{"subject": "a", "predicate": "wrote", "object": "b"}]}', "unknown predicate 'wrote'"),
    ('{"text": "a b", "spo_list": [{"subject": "a", "predicate": "author", "object": "c"}]}', "object 'c' is not in the text"),
    ('{"text": "ab c", "spo_list": [{"subject": "a", "predicate": "author", "object": "c"}]}', "subject 'a' is not in the text"),
])
def test_load_jsonl_malformed_lines_name_line_and_problem(tmp_path, line, message):
    ok = '{"text": "a b", "spo_list": [{"subject": "a", "predicate": "author", "object": "b"}]}'
    path = _write(tmp_path / "bad.jsonl", [ok, line])
    with pytest.raises(ValueError, match=message):
        tr.load_jsonl(path)


def test_load_jsonl_skip_missing_and_empty_file(tmp_path):
    path = _write(tmp_path / "m.jsonl", ['{"text": "ab c", "spo_list": [{"subject": "a", "predicate": "author", '
                                         '"object": "c"}, {"subject": "ab", "predicate": "spouse", "object": "c"}]}'])
    (s,), dropped = tr.load_jsonl(path, skip_missing=True, return_dropped=True)
    assert dropped == 1 and s.triples == [(("ab",), "spouse", ("c",))]
    with pytest.raises(ValueError, match="no records"):
        tr.load_jsonl(_write(tmp_path / "e.jsonl", [""]))


def test_template_corpus_round_trips_through_jsonl(tmp_path):
    corpus = tr.generate_corpus(50, seed=4)
    _write(tmp_path / "c.jsonl", [json.dumps(tr.to_record(s)) for s in corpus])
    back = tr.load_jsonl(tmp_path / "c.jsonl")
    assert [s.tokens for s in back] == [s.tokens for s in corpus]
    assert [s.triples for s in back] == [s.triples for s in corpus]
    assert [s.nested for s in back] == [s.nested for s in corpus]


def test_predicates_from_the_schema_not_a_fixed_tuple():
    s = tr.Sentence("ada wrote notes".split(), [(("notes",), "written_by", ("ada",))])
    with pytest.raises(ValueError, match="unknown predicate 'written_by'"):
        tr.subject_labels(s)  # not a tuple.index error
    preds = ("born_in", "written_by")
    assert tr.object_labels(s, (2, 2), predicates=preds)[:, 1].sum() == 2
    data = tr.TripleData([s], tr.build_vocab([s]), predicates=preds)
    assert data(1, torch.Generator().manual_seed(0))["yo"].shape[2] == 2 and data.predicates == preds
    with pytest.raises(ValueError, match="distinct"):
        tr.object_labels(s, (2, 2), predicates=("a", "a"))
    with pytest.raises(TypeError, match="predicates"):
        tr.subject_labels(s, predicates="written_by")


def test_vocab_from_training_split_unknown_to_unk():
    train = tr.load_jsonl.__globals__["parse_record"]({"text": "王伟写了《春夜》", "spo_list": []}, tr.ZH_SCHEMA)[0]
    vocab = tr.build_vocab([train])
    assert vocab.itos[:2] == ["[PAD]", "[UNK]"] and "王" in vocab.stoi and "李" not in vocab.stoi
    ids = tr.encode_sentence(tr.tokenize("李伟写了《秋夜》"), vocab, 16)
    unk = [w for w, i in zip(tr.tokenize("李伟写了《秋夜》"), ids.tolist(), strict=True) if i == 1]
    assert unk == ["李", "秋"]
    assert len(tr.build_vocab([train], min_count=2)) == 2  # every character occurs once
    # a BERT-style vocab.txt: [PAD] is id 0, [UNK] elsewhere
    bert = tr.Vocab(["[PAD]", "a", "[UNK]", "王"])
    assert tr.encode_sentence(["王", "李"], bert, 4).tolist() == [3, 2]
    with pytest.raises(ValueError, match="unknown token"):
        tr.Vocab(["[PAD]", "a"])


def test_dedupe_and_toy_splits_hold_out_entities():
    train, test = tr.toy_splits(600, 100)
    seen = {t for s in train for t in s.triples}
    assert len(test) == 100 and not any(seen.intersection(s.triples) for s in test)
    assert not {tuple(s.tokens) for s in test} & {tuple(s.tokens) for s in train}
    ents = tr.entities(train)
    held = [e for s in test for a, _, b in s.triples for e in (a, b) if e not in ents]
    assert held and all(e not in ents for e in held)
    # the "train" pool never draws a held-out entity: a quarter of every class
    big = tr.generate_corpus(2000, seed=0, pool="train")
    persons = {e for s in big for a, _, b in s.triples for e in (a, b) if len(e) == 2 and e[0] in tr.corpus._FIRST}
    assert not any(tr.corpus._heldout("person", p) for p in persons)
    assert sum(tr.corpus._heldout("person", (f, last)) for f in tr.corpus._FIRST for last in tr.corpus._LAST) == 104
    a = tr.Sentence(["x"], [(("x",), "author", ("x",))])
    assert tr.dedupe([a], [a]) == []


def test_evaluate_new_entities():
    s_train = tr.Sentence("a wrote b".split(), [(("b",), "author", ("a",))])
    s_test = tr.Sentence("a wrote c , d wrote e".split(), [(("c",), "author", ("a",)), (("e",), "author", ("d",))])
    pred = [{(("c",), "author", ("a",)), (("e",), "author", ("x",))}]
    res = tr.evaluate(pred, [s_test], train=[s_train])
    # new_entities: only (e, author, d) on the gold side, nothing new-only predicted that matches it
    assert res["new_entities"]["n"] == 1 and res["new_entities"]["recall"] == 0.0
    assert res["new_entities"]["precision"] == 0.0  # (e, author, x) is new-only and wrong
    assert res["new_entity"]["n"] == 2 and math.isclose(res["new_entity"]["recall"], 0.5)
    assert "new_entities" not in tr.evaluate(pred, [s_test])


def test_generated_chinese_dataset_is_deterministic_and_deduplicated(tmp_path):
    p1 = tr.write_dataset(tmp_path / "a", n_train=300, n_dev=60, seed=3)
    p2 = tr.write_dataset(tmp_path / "b", n_train=300, n_dev=60, seed=3)
    for k in ("train", "dev", "schema"):
        assert p1[k].read_bytes() == p2[k].read_bytes()
    schema = tr.load_schema(p1["schema"])
    assert schema == tr.ZH_SCHEMA
    train, dev = tr.load_jsonl(p1["train"], schema), tr.load_jsonl(p1["dev"], schema)
    assert len(train) == 300 and len(dev) == 60
    assert any("\u4e00" <= ch <= "\u9fff" for ch in p1["dev"].read_text(encoding="utf-8"))
    seen = {t for s in train for t in s.triples}
    assert not any(seen.intersection(s.triples) for s in dev)
    assert all(tr.decode_gold(s, schema) == set(s.triples) for s in train + dev)  # every triple representable
    kinds = {s.kind for s in train}
    assert kinds == {"Normal", "SEO", "EPO"} and any(s.nested for s in train)


@pytest.fixture(scope="module")
def trained_command(tmp_path_factory):
    """The command trained once on the generated corpus (500 steps, width 32, one layer), its
    paths and what it printed."""
    tmp_path = tmp_path_factory.mktemp("command")
    paths = tr.write_dataset(tmp_path, n_train=600, n_dev=200, seed=0)
    argv = ["train", "--train", str(paths["train"]), "--dev", str(paths["dev"]), "--schema", str(paths["schema"]),
            "--out", str(tmp_path / "out"), "--steps", "500", "--d", "32", "--layers", "1"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # this small model trains fastest on one thread
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            res = tr.main(argv)
        untrained = tr.run_files(paths["train"], paths["dev"], paths["schema"], steps=1, d=32, layers=1, ema_decay=None)
    finally:
        torch.set_num_threads(threads)
    return {"paths": paths, "out": tmp_path / "out", "res": res, "untrained": untrained, "printed": printed.getvalue()}


def test_command_trains_and_scores_generated_corpus(trained_command):
    res, out, printed = trained_command["res"], trained_command["out"], trained_command["printed"]
    assert "precision" in printed and "F1" in printed and "gold triples scored" in printed
    f1 = res["scores"]["ema"]["all"]["f1"]
    # measured 0.54 after 700 steps; an untrained network finds nothing (below)
    assert f1 > 0.3, f1
    assert res["scores"]["model"]["new_entities"]["n"] > 0
    saved = json.loads((out / "scores.json").read_text(encoding="utf-8"))
    assert math.isclose(saved["scores"]["ema"]["all"]["f1"], f1)
    first = json.loads((out / "dev_predictions.jsonl").read_text(encoding="utf-8").splitlines()[0])
    assert set(first) == {"text", "spo_list"}
    assert all(t["subject"] in first["text"] and t["object"] in first["text"] for t in first["spo_list"])
    assert trained_command["untrained"]["scores"]["model"]["all"]["f1"] < 0.05


def test_predict_command_reloads_the_saved_model(trained_command, tmp_path, capsys, monkeypatch):
    """``predict`` rebuilds the model from model.pt (weights, vocabulary, schema, max_len) and gives,
    for the dev texts, exactly the predictions the trained model wrote before it was saved."""
    out, dev = trained_command["out"], trained_command["paths"]["dev"]
    written = (out / "dev_predictions.jsonl").read_text(encoding="utf-8").splitlines()
    assert sum(len(json.loads(line)["spo_list"]) for line in written) > 100  # a model that predicts something
    res = tr.main(["predict", "--model", str(out), "--input", str(dev), "--output", str(tmp_path / "p.jsonl")])
    assert (tmp_path / "p.jsonl").read_text(encoding="utf-8").splitlines() == written
    assert len(res["records"]) == len(dev.read_text(encoding="utf-8").splitlines())
    capsys.readouterr()
    # plain text on standard input, one text per line, predictions on standard output
    texts = [json.loads(line)["text"] for line in written[:5]]
    monkeypatch.setattr("sys.stdin", io.StringIO("\n".join(texts) + "\n\n"))
    tr.main(["predict", "--model", str(out)])
    assert capsys.readouterr().out.splitlines() == written[:5]
    # a text longer than the position table is read in windows instead of refused
    model, vocab, schema, stride = tr.load_extractor(out / "model.pt")
    assert model.max_len == trained_command["res"]["max_len"] and schema == tr.ZH_SCHEMA and stride == model.max_len // 2
    long_text = "，".join(texts * 4)
    assert len(tr.tokenize(long_text)) > model.max_len
    with pytest.warns(UserWarning, match="1 of 1 texts are longer than the model's max_len"):
        (rec,) = tr.predict_texts(model, vocab, schema, [long_text])
    assert rec["text"] == long_text and rec["spo_list"]
    assert all(t["subject"] in long_text and t["object"] in long_text for t in rec["spo_list"])
    with pytest.raises(ValueError, match="max_len"):
        tr.extract(model, [tr.Sentence(tr.tokenize(long_text))], vocab, predicates=schema)
    with pytest.raises(FileNotFoundError, match="no saved model"):
        tr.load_extractor(tmp_path)


class _TinyEncoder(torch.nn.Module):
    """A stand-in for a pretrained encoder: ids (n, L) -> hidden states (n, L, H)."""

    def __init__(self, vocab_size, hidden):
        super().__init__()
        self.emb = torch.nn.Embedding(vocab_size, hidden)
        self.mix = torch.nn.Conv1d(hidden, hidden, 3, padding=1)

    def forward(self, ids):
        return self.mix(self.emb(ids).transpose(1, 2)).transpose(1, 2)


def test_external_encoder_hook():
    corpus = tr.generate_corpus(40, seed=2)
    vocab = tr.build_vocab(corpus)
    data = tr.TripleData(corpus, vocab)
    torch.manual_seed(0)
    enc = _TinyEncoder(len(vocab), 24)
    m = tr.TripleModel(len(vocab), d=24, encoder=enc, seed=0)
    assert m.encoder is enc and not hasattr(m, "emb")
    b = data(4, torch.Generator().manual_seed(0))
    h = m.encode(b["ids"], b["mask"])
    assert h.shape == (4, b["ids"].shape[1], 24)
    loss = tr.triple_loss(m, b)
    loss.backward()
    assert enc.emb.weight.grad is not None and enc.emb.weight.grad.abs().sum() > 0  # the encoder is trained too
    run = tr.train_extractor(data, seed=0, steps=3, progress=False, d=24, encoder=_TinyEncoder(len(vocab), 24))
    assert isinstance(run.model.encoder, _TinyEncoder)
    assert len(tr.extract(run.ema, corpus[:3], vocab)) == 3
    with pytest.raises(ValueError, match="hidden states"):
        tr.TripleModel(len(vocab), d=16, encoder=enc).encode(b["ids"], b["mask"])
    with pytest.raises(TypeError, match="encoder"):
        tr.TripleModel(len(vocab), encoder=lambda ids: ids)


def test_seeding_leaves_global_rng_untouched():
    corpus = tr.generate_corpus(30, seed=0)
    data = tr.TripleData(corpus, tr.build_vocab(corpus))
    torch.manual_seed(123)
    state = torch.get_rng_state()
    m1 = tr.TripleModel(len(data.vocab), d=16, heads=2, layers=1, ffn=32, seed=5)
    r1 = tr.train_extractor(data, seed=5, steps=4, progress=False, d=16, heads=2, layers=1, ffn=32)
    assert torch.equal(torch.get_rng_state(), state)  # the caller's stream goes on as if nothing ran
    torch.manual_seed(999)  # a different global state must not change the seeded results
    m2 = tr.TripleModel(len(data.vocab), d=16, heads=2, layers=1, ffn=32, seed=5)
    r2 = tr.train_extractor(data, seed=5, steps=4, progress=False, d=16, heads=2, layers=1, ffn=32)
    for a, b in ((m1, m2), (r1.model, r2.model), (r1.ema, r2.ema)):
        assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))
    m3 = tr.TripleModel(len(data.vocab), d=16, heads=2, layers=1, ffn=32, seed=6)
    assert not torch.equal(m1.subject_head.weight, m3.subject_head.weight)
    g1, g2 = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    assert torch.equal(tr.TripleModel(20, d=8, heads=2, seed=g1).subject_head.weight,
                       tr.TripleModel(20, d=8, heads=2, seed=g2).subject_head.weight)


# --- real data: no triple lost without a count ----------------------------------------------------

ZH_PREDS = ("作者", "位于", "姓名", "同学")


def _jsonl(path, records, bom=False):
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    path.write_text(text, encoding="utf-8-sig" if bom else "utf-8")
    return path


def _rec(text, *spo):
    return {"text": text, "spo_list": [{"subject": s, "predicate": p, "object": o} for s, p, o in spo]}


def test_dropped_dev_triples_count_as_misses(tmp_path):
    # 6 gold triples; with skip_missing two cannot be labelled: 杨绛 is not in its text, 出版社 is not a predicate
    records = [_rec("《围城》的作者是钱钟书", ("围城", "作者", "钱钟书"), ("围城", "作者", "杨绛"), ("围城", "出版社", "钱钟书")),
               _rec("李雷和韩梅是同学", ("李雷", "同学", "韩梅"), ("韩梅", "同学", "李雷")),
               _rec("《青春》的作者是李雷", ("青春", "作者", "李雷"))]
    corpus, dropped, stats = tr.load_jsonl(_jsonl(tmp_path / "dev.jsonl", records), ZH_PREDS, skip_missing=True,
                                           return_dropped=True, return_stats=True)
    assert dropped == 2 and stats["dropped_missing_entity"] == 1 and stats["dropped_unknown_predicate"] == 1
    assert [r for _, r in corpus[0].dropped] == ["missing_entity", "unknown_predicate"]
    # a model that finds every labelled triple and nothing else: recall 4 / 6, not 4 / 4
    perfect = [set(s.triples) for s in corpus]
    r = tr.evaluate(perfect, corpus)["all"]
    assert (r["hits"], r["predicted"], r["gold"]) == (4, 4, 6)
    assert math.isclose(r["recall"], 4 / 6) and r["precision"] == 1.0 and math.isclose(r["f1"], 2 * 4 / (4 + 6))


def test_unknown_predicates_are_skipped_and_counted_with_skip_missing(tmp_path):
    path = _jsonl(tmp_path / "u.jsonl", [_rec("李雷和韩梅是同学", ("李雷", "同学", "韩梅"), ("李雷", "朋友", "韩梅"),
                                              ("李雷", "朋友", "韩梅"))])
    with pytest.raises(ValueError, match="unknown predicate '朋友'"):
        tr.load_jsonl(path, ZH_PREDS)
    (s,), stats = tr.load_jsonl(path, ZH_PREDS, skip_missing=True, return_stats=True)
    assert s.triples == [(("李", "雷"), "同学", ("韩", "梅"))]
    assert s.dropped == [((("李", "雷"), "朋友", ("韩", "梅")), "unknown_predicate")]
    assert (stats["triples_read"], stats["kept"], stats["duplicates"], stats["dropped_unknown_predicate"]) == (3, 1, 1, 1)


DUIE2_SCHEMA = [
    {"predicate": "作者", "subject_type": "图书作品", "object_type": {"@value": "人物"}},
    {"predicate": "配音", "subject_type": "娱乐人物", "object_type": {"@value": "人物", "inWork": "影视作品"}},
    {"predicate": "获奖", "subject_type": "娱乐人物", "object_type": {"@value": "奖项", "onDate": "Date", "inWork": "作品"}},
    {"predicate": "位于", "subject_type": "地点", "object_type": {"@value": "地点"}},
    {"predicate": "姓名", "subject_type": "职位", "object_type": {"@value": "人物"}},
    {"predicate": "同学", "subject_type": "人物", "object_type": {"@value": "人物"}},
]


def _nary(subject, predicate, value, **slots):
    return {"subject": subject, "predicate": predicate, "object": {"@value": value, **slots},
            "subject_type": "人物", "object_type": {"@value": "人物", **dict.fromkeys(slots, "x")}}


def _toks(text):
    return tuple(tr.tokenize(text))


def test_nary_objects_keep_their_slots(tmp_path):
    schema = tr.load_schema(_jsonl(tmp_path / "schema.json", DUIE2_SCHEMA, bom=True))
    assert schema.predicates == ("作者", "配音", "配音_inWork", "获奖", "获奖_onDate", "获奖_inWork", "位于", "姓名", "同学")
    assert schema.slots == (("配音_inWork", "配音", "inWork"), ("获奖_onDate", "获奖", "onDate"),
                            ("获奖_inWork", "获奖", "inWork"))
    assert schema.subject_types[2] == "人物" and schema.object_types[2] == "影视作品"
    # two objects that differ only in their slot: both survive, as three triples
    text = "石班瑜为周星驰在《功夫》和《少林足球》中配音"
    rec = {"text": text, "spo_list": [_nary("石班瑜", "配音", "周星驰", inWork="功夫"),
                                      _nary("石班瑜", "配音", "周星驰", inWork="少林足球")]}
    stats = {}
    s, dropped = tr.parse_record(rec, schema, stats=stats)
    assert dropped == 0 and set(s.triples) == {(_toks("石班瑜"), "配音", _toks("周星驰")),
                                               (_toks("周星驰"), "配音_inWork", _toks("功夫")),
                                               (_toks("周星驰"), "配音_inWork", _toks("少林足球"))}
    assert (stats["triples_read"], stats["kept"], stats["duplicates"]) == (4, 3, 1)
    assert (stats["nary_objects"], stats["slot_triples"], stats["nary_ambiguous"]) == (2, 2, 0)
    assert tr.decode_gold(s, schema) == set(s.triples)

    def objects(spo):
        return sorted((t["subject"], t["predicate"], json.dumps(t["object"], ensure_ascii=False, sort_keys=True))
                      for t in spo)

    assert objects(tr.to_record(s, schema)["spo_list"]) == objects(rec["spo_list"])  # folded back: the same objects
    # two awards of one name, each with a date and a work: the triples cannot tell which date goes with which work
    text = "2001年李雷凭《青春》获金马奖，2005年凭《岁月》再获金马奖"
    rec = {"text": text, "spo_list": [_nary("李雷", "获奖", "金马奖", onDate="2001年", inWork="青春"),
                                      _nary("李雷", "获奖", "金马奖", onDate="2005年", inWork="岁月")]}
    stats = {}
    s, _ = tr.parse_record(rec, schema, stats=stats)
    assert len(s.triples) == 5 and stats["nary_ambiguous"] == 2  # folding back gives 2 x 2 objects, 2 invented
    assert len(tr.to_record(s, schema)["spo_list"]) == 4
    # a schema without the slot predicate: an error, or a counted drop
    with pytest.raises(ValueError, match="unknown predicate '配音_inWork'"):
        tr.parse_record({"text": "石班瑜为周星驰在《功夫》中配音", "spo_list": [_nary("石班瑜", "配音", "周星驰", inWork="功夫")]},
                        ("配音",))
    stats = {}
    s, dropped = tr.parse_record({"text": "石班瑜为周星驰在《功夫》中配音",
                                  "spo_list": [_nary("石班瑜", "配音", "周星驰", inWork="功夫")]},
                                 ("配音",), skip_missing=True, stats=stats)
    assert dropped == 1 and len(s.triples) == 1 and stats["dropped_unknown_predicate"] == 1


def test_entities_are_labelled_where_they_overlap_no_other():
    # 红楼梦 first occurs inside 红楼梦魇, then on its own: labelled on its own, every triple decodes
    stats = {}
    s, _ = tr.parse_record(_rec("红楼梦魇是张爱玲的作品，红楼梦的作者是曹雪芹", ("红楼梦魇", "作者", "张爱玲"),
                                ("红楼梦", "作者", "曹雪芹")), ZH_PREDS, stats=stats)
    assert s.entity_spans[_toks("红楼梦")] == (12, 14) and s.entity_spans[_toks("红楼梦魇")] == (0, 3)
    assert tr.decode_gold(s, ZH_PREDS) == set(s.triples) and len(s.triples) == 2
    assert (stats["overlap_sentences"], stats["undecodable_triples"]) == (0, 0)
    assert s.span_text(_toks("红楼梦")) == "红楼梦" and tr.subject_labels(s, predicates=ZH_PREDS)[12, 0] == 1


def test_crossing_entities_are_counted_with_the_triple_they_lose():
    # crossing subjects 南京市长 [3, 6] and 长江大桥 [6, 9] occur once: starts {3, 6}, ends {6, 9}, so start 6
    # takes end 6 and (长江大桥, 位于, 南京) cannot be decoded from the labels; both are counted
    stats = {}
    s, _ = tr.parse_record(_rec("我们在南京市长江大桥上见到了王强", ("南京市长", "姓名", "王强"),
                                ("长江大桥", "位于", "南京")), ZH_PREDS, stats=stats)
    assert (stats["overlap_sentences"], stats["undecodable_triples"], stats["undecodable_sentences"]) == (1, 1, 1)
    assert set(s.triples) - tr.decode_gold(s, ZH_PREDS) == {(_toks("长江大桥"), "位于", _toks("南京"))}


def _brute_force_overlap_free(tokens, ents):
    occ = [[(i, i + len(e) - 1) for i in range(len(tokens) - len(e) + 1) if tuple(tokens[i:i + len(e)]) == e]
           for e in ents]
    return any(all(a[1] < b[0] or b[1] < a[0] for a, b in itertools.combinations(choice, 2))
               for choice in itertools.product(*occ))


def test_occurrence_choice_and_decoding_count_against_brute_force_and_dense_oracle():
    """Random sentences over 4 letters with random entities: a sentence is counted as overlapping
    exactly when no choice of occurrences avoids overlaps (brute force), the chosen occurrences
    overlap nowhere otherwise, and the undecodable count is what decode_gold (dense labels) loses."""
    rng = random.Random(0)
    preds = ("p", "q")
    n_overlap = n_lost = 0
    for _ in range(400):
        toks = [rng.choice("abcd") for _ in range(rng.randint(4, 12))]
        spo = []
        for _ in range(rng.randint(1, 4)):
            (a, b), (c, d) = (sorted(rng.sample(range(len(toks)), 2)) for _ in range(2))
            spo.append((" ".join(toks[a:min(b, a + 2) + 1]), rng.choice(preds), " ".join(toks[c:min(d, c + 2) + 1])))
        stats = {}
        s, _ = tr.parse_record(_rec(" ".join(toks), *spo), preds, stats=stats)
        ents = list(dict.fromkeys(e for x, _, y in s.triples for e in (x, y)))
        free = _brute_force_overlap_free(toks, ents)
        assert stats["overlap_sentences"] == (not free)
        if free:
            spans = [s.entity_spans[e] for e in ents]
            assert all(a[1] < b[0] or b[1] < a[0] for a, b in itertools.combinations(spans, 2))
        lost = len(set(s.triples) - tr.decode_gold(s, preds))
        assert stats["undecodable_triples"] == lost
        n_overlap += not free
        n_lost += lost
    assert n_overlap > 20 and n_lost > 20  # both cases occur often enough to be tested


def test_batches_pad_to_their_longest_sentence_and_match_the_dense_labels():
    corpus = tr.generate_corpus(40, seed=2)
    long = tr.Sentence(corpus[0].tokens + ["and"] * 600, corpus[0].triples)  # one 600-token outlier
    corpus = [*corpus, long]
    vocab = tr.build_vocab(corpus)
    data = tr.TripleData(corpus, vocab, max_len=len(long.tokens))
    g = torch.Generator().manual_seed(0)
    widths = []
    for _ in range(40):
        b = data(6, g)
        idx = b["index"].tolist()
        T = max(len(corpus[i].tokens) for i in idx)
        assert b["ids"].shape == b["mask"].shape == (6, T) and b["yo"].shape == (6, T, len(tr.PREDICATES), 2)
        for k, i in enumerate(idx):
            L, sub = len(corpus[i].tokens), (b["start"][k].item(), b["end"][k].item())
            assert torch.equal(b["ids"][k, :L], tr.encode_sentence(corpus[i].tokens, vocab, len(long.tokens)))
            assert b["mask"][k].sum() == L and not b["ids"][k, L:].any()
            assert torch.equal(b["ys"][k], tr.subject_labels(corpus[i], T))
            assert torch.equal(b["yo"][k], tr.object_labels(corpus[i], sub, T))
        widths.append(T)
    assert max(widths) == len(long.tokens) and sorted(widths)[len(widths) // 2] < 60  # most batches stay short


def test_training_data_memory_does_not_grow_with_the_longest_sentence():
    """170 000 sentences (DuIE's training set is about that size), 50 predicates and one
    5000-token sentence. Dense object labels for it would take n * T * P * 2 floats (340 GB); the
    stored encoding is 4 bytes per token, 20 per triple and 16 per sentence, counted here from the
    corpus, and the Python-side peak while building it (tracemalloc, on 20 000 sentences) is no
    more than twice that, with or without the long sentence."""
    P, n = 50, 170_000
    preds = [f"p{i}" for i in range(P)]
    base = [[f"w{(7 * k + j) % 97}" for j in range(20 + k)] for k in range(10)]
    short = [tr.Sentence(t, [(tuple(t[1:3]), preds[k], tuple(t[5:8])), (tuple(t[10:12]), preds[k + 10], tuple(t[15:18]))])
             for k, t in enumerate(base)]
    long_tokens = [f"w{j % 97}" for j in range(5000)]
    long = tr.Sentence(long_tokens, [(tuple(long_tokens[4990:4992]), preds[0], tuple(long_tokens[2:4]))])
    vocab = tr.Vocab(["[PAD]", "[UNK]"] + [f"w{i}" for i in range(97)])

    def corpus(size, with_long):
        c = [short[i % 10] for i in range(size)]
        if with_long:
            c[size // 2] = long
        return c

    def stored(c):
        return 4 * sum(len(s.tokens) for s in c) + 20 * sum(len(s.triples) for s in c) + 16 * (len(c) + 1)

    big = corpus(n, True)
    data = tr.TripleData(big, vocab, max_len=5000, predicates=preds)
    assert data.nbytes == stored(big) < 1e-4 * n * 5000 * P * 2 * 4
    b = data(32, torch.Generator().manual_seed(0))
    assert b["index"].tolist().count(n // 2) == 0 and b["yo"].shape == (32, 29, P, 2)  # a batch: its own length
    peaks = {}
    for with_long in (False, True):
        c = corpus(20_000, with_long)
        tracemalloc.start()
        d = tr.TripleData(c, vocab, max_len=5000, predicates=preds)
        peaks[with_long] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert d.nbytes == stored(c) and peaks[with_long] < 2 * stored(c)
    assert abs(peaks[True] - peaks[False]) < 200_000  # the 5000-token sentence costs its own tokens only


def test_truncated_training_sentences_warn_and_count():
    s = tr.Sentence("a b c d e f g h i j".split(), [(("a",), "author", ("b",)), (("c",), "author", ("i",)),
                                                   (("h", "i"), "spouse", ("j",))])
    vocab = tr.build_vocab([s])
    with pytest.raises(ValueError, match="truncate=True"):
        tr.TripleData([s], vocab, max_len=6)
    with pytest.warns(UserWarning, match="1 training sentences are longer than max_len=6 and were truncated; 2 of"):
        data = tr.TripleData([s], vocab, max_len=6, truncate=True)
    assert data.stats == {"sentences": 1, "triples": 1, "truncated_sentences": 1, "truncated_triples": 2}
    b = data(3, torch.Generator().manual_seed(0))
    assert b["ids"].shape == (3, 6) and b["ys"][:, :, 0].nonzero()[:, 1].tolist() == [0, 0, 0]


class _TokenModel(torch.nn.Module):
    """Marks every token ``sK`` as a one-token subject and, given subject ``sK``, every token ``oK``
    as its object (one predicate): extraction is exact wherever ``sK`` and ``oK`` share a window."""

    def __init__(self, vocab, max_len):
        super().__init__()
        self.vocab, self.max_len, self.n_subject, self.n_object, self.n_predicates = vocab, max_len, 1, 1, 1
        self.is_s = torch.tensor([w.startswith("s") for w in vocab.itos])
        self.obj = torch.tensor([vocab.stoi.get("o" + w[1:], -1) if w.startswith("s") else -1 for w in vocab.itos])

    def encode(self, ids, mask):
        assert ids.shape[1] <= self.max_len
        return ids[..., None].float()

    def subject_logits(self, h):
        z = torch.where(self.is_s[h[..., 0].long()], 20.0, -20.0)
        return torch.stack([z, z], -1)

    def object_logits(self, h, start, end):
        ids = h[..., 0].long()
        target = self.obj[ids[torch.arange(len(start)), start]]
        z = torch.where(ids == target[:, None], 20.0, -20.0)
        return torch.stack([z, z], -1)[:, :, None, :]


def test_long_sentences_are_read_in_windows_and_unreachable_triples_counted():
    toks = ["x"] * 36
    for w, i in (("s1", 0), ("o1", 3), ("s3", 10), ("o3", 15), ("s2", 20), ("o2", 32)):
        toks[i] = w
    s = tr.Sentence(toks, [((f"s{k}",), "rel", (f"o{k}",)) for k in (1, 2, 3)])
    vocab = tr.build_vocab([s])
    model = _TokenModel(vocab, max_len=8)
    with pytest.raises(ValueError, match="stride"):
        tr.extract(model, [s], vocab, predicates=["rel"])
    # windows [0, 8), [4, 12), ..., [28, 36): s1..o1 and s3..o3 fit in one, s2 (20) .. o2 (32) in none
    assert tr.window_starts(36, 8, 4) == [0, 4, 8, 12, 16, 20, 24, 28]
    assert tr.window_starts(37, 8, 4)[-1] == 29 and tr.window_starts(8, 8, 4) == [0]
    (pred,) = tr.extract(model, [s], vocab, predicates=["rel"], stride=4)
    assert pred == {(("s1",), "rel", ("o1",)), (("s3",), "rel", ("o3",))}
    cover = tr.window_coverage([s], 8, 4)
    assert cover == {"sentences": 1, "windowed_sentences": 1, "triples": 3, "triples_outside_windows": 1}
    assert tr.window_coverage([s], 13, 4)["triples_outside_windows"] == 0  # o2 - s2 + 1 = 13 tokens


def test_new_long_texts_are_read_in_windows_with_a_warning():
    """predict_texts on a text longer than the position table: the triples of the windows, and a
    warning that names how far apart a subject and an object may lie and still be found."""
    toks = ["x"] * 36
    for w, i in (("s1", 0), ("o1", 3), ("s3", 10), ("o3", 15), ("s2", 20), ("o2", 32)):
        toks[i] = w
    vocab = tr.build_vocab([tr.Sentence(toks)])
    model, schema = _TokenModel(vocab, max_len=8), tr.Schema(("rel",))
    texts = [" ".join(toks), "s1 x o1", ""]
    with pytest.warns(UserWarning, match="1 of 3 texts are longer than the model's max_len=8 tokens and are read in "
                                         "windows of 8 tokens every 4; .* more than 5 tokens may lie in no window"):
        long, short, empty = tr.predict_texts(model, vocab, schema, texts, stride=4)
    assert sorted((t["subject"], t["object"]) for t in long["spo_list"]) == [("s1", "o1"), ("s3", "o3")]  # not s2 .. o2
    assert short["spo_list"] == [{"subject": "s1", "predicate": "rel", "object": "o1"}] and empty["spo_list"] == []
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # texts that fit: no warning
        tr.predict_texts(model, vocab, schema, texts[1:], stride=4)


def test_files_with_a_byte_order_mark_load(tmp_path):
    recs = [_rec("《青春》的作者是李雷", ("青春", "作者", "李雷"))]
    plain = tr.load_jsonl(_jsonl(tmp_path / "a.jsonl", recs), ZH_PREDS)
    bom = tr.load_jsonl(_jsonl(tmp_path / "b.jsonl", recs, bom=True), ZH_PREDS)
    assert (tmp_path / "b.jsonl").read_bytes()[:3] == b"\xef\xbb\xbf"
    assert [s.tokens for s in bom] == [s.tokens for s in plain] and [s.triples for s in bom] == [s.triples for s in plain]
    assert tr.load_schema(_jsonl(tmp_path / "s.json", DUIE2_SCHEMA[:1], bom=True)).predicates == ("作者",)
    (tmp_path / "v.txt").write_text("[PAD]\n[UNK]\n李\n", encoding="utf-8-sig")
    assert tr.Vocab.from_file(tmp_path / "v.txt").itos == ["[PAD]", "[UNK]", "李"]


def test_malformed_json_reports_its_line_and_column(tmp_path):
    ok = json.dumps(_rec("李雷和韩梅是同学", ("李雷", "同学", "韩梅")), ensure_ascii=False)
    cut = ok[:ok.index("[") + 1]  # a line cut off after '"spo_list": [': the error is just past its end
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join([ok, "", ok, cut, ok]) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=rf"bad.jsonl:4:{len(cut) + 1}: not valid JSON: .*\(line 4, column {len(cut) + 1}\)"):
        tr.load_jsonl(path, ZH_PREDS)
    mid = ok.replace('"predicate"', ', "predicate"', 1)  # a doubled comma inside the line
    path.write_text(ok + "\n" + mid + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=rf"bad.jsonl:2:{mid.index(', ,') + 3}: not valid JSON"):
        tr.load_jsonl(path, ZH_PREDS)
    # a schema list after blank lines: its own line numbers, not those of the stripped text
    lines = ["", "", '["作者",', ' "位于" "姓名"]']
    (tmp_path / "s.json").write_text("\n".join(lines), encoding="utf-8")
    col = lines[3].index('"姓名') + 1
    with pytest.raises(ValueError, match=rf"s.json:4:{col}: not valid JSON"):
        tr.load_schema(tmp_path / "s.json")
    (tmp_path / "v.jsonl").write_bytes(ok.encode() + b"\n" + b'{"text": "\xff"}\n')
    with pytest.raises(ValueError, match="v.jsonl:2:11: not UTF-8"):
        tr.load_jsonl(tmp_path / "v.jsonl", ZH_PREDS)


def test_a_corpus_with_every_hazard_loses_no_triple_without_a_count(tmp_path):
    """Train and dev files in the DuIE 2.0 format, with a byte-order mark, nested and crossing
    entities, n-ary objects, an unknown predicate, an entity not in its text and over-long lines.
    Every count below is worked out by hand from the records."""
    filler = "这是一段很长的文字。" * 4
    long_text = "《青春》的作者是李雷。" + filler + "《岁月》的作者是韩梅，韩梅是他的同学。"
    dev = [
        _rec("红楼梦魇是张爱玲的作品，红楼梦的作者是曹雪芹", ("红楼梦魇", "作者", "张爱玲"), ("红楼梦", "作者", "曹雪芹")),
        _rec("我们在南京市长江大桥上见到了王强", ("南京市长", "姓名", "王强"), ("长江大桥", "位于", "南京")),
        {"text": "石班瑜为周星驰在《功夫》和《少林足球》中配音",
         "spo_list": [_nary("石班瑜", "配音", "周星驰", inWork="功夫"), _nary("石班瑜", "配音", "周星驰", inWork="少林足球")]},
        _rec("《围城》的作者是钱钟书", ("围城", "作者", "钱钟书"), ("围城", "出版社", "钱钟书"), ("围城", "作者", "杨绛")),
        _rec(long_text, ("青春", "作者", "李雷"), ("岁月", "作者", "韩梅"), ("韩梅", "同学", "李雷")),
    ]
    train = [*dev[:4], _rec(long_text, ("青春", "作者", "李雷"), ("岁月", "作者", "韩梅"), ("韩梅", "同学", "李雷"))]
    assert len(long_text) == 70 and long_text.index("韩梅") == 59 and long_text.count("李雷") == 1
    files = {k: _jsonl(tmp_path / f"{k}.jsonl", v, bom=True) for k, v in (("train", train), ("dev", dev))}
    schema = _jsonl(tmp_path / "schema.json", DUIE2_SCHEMA, bom=True)
    with pytest.warns(UserWarning) as caught:
        res = tr.run_files(files["train"], files["dev"], schema, skip_missing=True, max_len=24, steps=1, d=16,
                           layers=1, ema_decay=None)
    messages = " ".join(str(w.message) for w in caught)
    assert "1 training sentences are longer than max_len=24 and were truncated; 2 of" in messages
    assert "1 of their triples lie in no window" in messages
    acc = res["accounting"]
    # dev: 2 + 2 + (2 objects + 2 slots) + 3 + 3 = 14 triples read; the repeated 配音 main triple is kept once;
    # 出版社 is not in the schema, 杨绛 not in the text
    expected = {"records": 5, "triples_read": 14, "duplicates": 1, "dropped_unknown_predicate": 1,
                "dropped_missing_entity": 1, "kept": 11, "nary_objects": 2, "slot_triples": 2, "nary_ambiguous": 0,
                "overlap_sentences": 1, "undecodable_triples": 1,  # 南京市长 / 长江大桥 cross
                "windowed_sentences": 1, "triples_outside_windows": 1,  # 韩梅 (59) .. 李雷 (8) fits no 24-token window
                "gold_triples": 13}
    assert {k: acc["dev"][k] for k in expected} == expected
    assert acc["dev"]["triples_read"] == sum(acc["dev"][k] for k in ("kept", "duplicates", "dropped_unknown_predicate",
                                                                       "dropped_missing_entity"))
    # train: the long line is cut at 24 tokens; (岁月, 作者, 韩梅) and (韩梅, 同学, 李雷) lie past the cut
    assert (acc["train"]["truncated_sentences"], acc["train"]["truncated_triples"]) == (1, 2)
    assert res["max_len"] == 24 and res["longest_train"] == 70 and res["stride"] == 12
    # the recall denominator is every dev gold triple, dropped ones included
    assert res["scores"]["model"]["all"]["gold"] == 13
    assert res["dropped_triples"] == {"train": 2, "dev": 2}
