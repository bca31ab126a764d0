"""Real data in the JSON-lines format of DuIE / LIC2019: tokenisation, schemas, reading and writing
records (with an account of every triple that cannot be labelled), and a generated Chinese corpus in
that format.
"""

from __future__ import annotations

import bisect
import itertools
import json
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ...core.utils import check_int
from .corpus import (
    PREDICATES,
    Sentence,
    Triple,
    _check_pool,
    _check_prob,
    _check_sentence,
    _iter_spans,
    _Pools,
    _to_triple,
    dedupe,
    find_span,
)

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
    """The nearest-end rule of :func:`~companion.sequence.triples.decode.decode_spans` on sets of 0/1 label positions."""
    ends = sorted(set(ends))
    out = []
    for i in sorted(set(starts)):
        j = bisect.bisect_left(ends, i)
        if j < len(ends):
            out.append((i, ends[j]))
    return out


def _decoded_rows(rows) -> set[tuple[tuple[int, int], int, tuple[int, int]]]:
    """What decoding the gold labels of ``rows`` ((subject span, column, object span) each) gives
    back, without building the dense labels (the oracle :func:`~companion.sequence.triples.decode.decode_gold`, on spans)."""
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
    tokenized :class:`~companion.sequence.triples.corpus.Sentence` (:func:`tokenize`; the entities are tokenized the same way).
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
    occurrence, chosen so that no two entities of the sentence overlap (:attr:`~companion.sequence.triples.corpus.Sentence.entity_spans`);
    so ``红楼梦`` is not labelled inside ``红楼梦魇`` when it also stands on its own. Where no
    such choice exists, the fewest overlaps are kept and the sentence is counted; the gold triples
    that decoding the labels (:func:`~companion.sequence.triples.decode.decode_spans`'s nearest-end rule) does not give back are
    counted too: they stay gold triples, but the labels cannot teach them.

    An entity that is not in the text as whole tokens, or a predicate not in ``predicates``,
    raises ``ValueError`` (naming ``where``, the entity or predicate and the triple), unless
    ``skip_missing``: the triple then goes to :attr:`~companion.sequence.triples.corpus.Sentence.dropped` (still a gold triple for
    :func:`~companion.sequence.triples.decode.evaluate`, so it counts as a miss). Returns the sentence and the number of triples
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
    :attr:`~companion.sequence.triples.corpus.Sentence.dropped` and counted). With ``return_dropped`` also returns how many triples
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
    """A :class:`~companion.sequence.triples.corpus.Sentence` as a JSON-lines record (tokens joined by spaces when it has no text;
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
    """The held-out quarter of each Chinese entity class (fixed rule, as :func:`~companion.sequence.triples.corpus._heldout`)."""
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
    mirror :func:`~companion.sequence.triples.corpus.generate_corpus` (multi-object, multi-subject, EPO, symmetric, nested,
    distractor; years mix digits and characters, one organization Latin letters), with the
    predicates of ``ZH_SCHEMA``. ``reuse`` and ``pool`` as in :func:`~companion.sequence.triples.corpus.generate_corpus`.
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
    first ``n_dev`` sentences of an ``"all"``-pool corpus that survive :func:`~companion.sequence.triples.corpus.dedupe` against the
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
