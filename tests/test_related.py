"""Scenario 2's language side: ISO codes, URIEL distances, weights, adapter selection (no model loading)."""

import io
import logging
import math
import random
from pathlib import Path

import pytest
from rich.console import Console

from edgecomp.compose.adapters import LoraAdapter
from edgecomp.compose.languages import ISO639_1, check_language, iso639_3, uriel, uriel_languages
from edgecomp.compose.related import (
    KINDS,
    explain_table,
    language_distances,
    related_weights,
    select_related,
)
from edgecomp.errors import EdgecompError


def fake(name: str, kind: str, lang: str | None, loss: float | None = None) -> LoraAdapter:
    meta = {"kind": kind, "lang": lang}
    if loss is not None:
        meta["final_loss"] = loss
    return LoraAdapter(Path("library") / name, {"peft_type": "LORA", "r": 4, "lora_alpha": 8}, {}, meta)


def test_iso_table_covers_all_iso639_1_and_uriel_has_them():
    assert len(ISO639_1) == 184
    assert {iso639_3(k) for k in ("hi", "ur", "en", "sw", "vi", "ar", "id", "fr", "es")} == {
        "hin",
        "urd",
        "eng",
        "swa",
        "vie",
        "ara",
        "ind",
        "fra",
        "spa",
    }
    assert set(ISO639_1.values()) <= uriel_languages()


def test_two_and_three_letter_codes_agree():
    assert iso639_3("hi") == iso639_3("HIN") == iso639_3("hi-IN") == iso639_3("hi_IN") == "hin"
    short = related_weights("hi", ["ur", "en", "sw"])
    long = related_weights("hin", ["urd", "eng", "swa"])
    assert [(iso639_3(c), w, d) for c, w, d in short] == [(c, w, d) for c, w, d in long]


@pytest.mark.parametrize("code", ["xx", "qqq", "h1", "", "hindi", "e"])
def test_unknown_code_refused(code):
    with pytest.raises(EdgecompError, match="unknown language code"):
        check_language(code)
    with pytest.raises(EdgecompError, match="unknown language code"):
        related_weights("hi", ["ur", code])
    with pytest.raises(EdgecompError, match="unknown language code"):
        related_weights(code, ["ur"])


def test_check_language_accepts_uriel_only_codes():
    assert check_language("swh") == "swh"  # an ISO 639-3 code with no ISO 639-1 equivalent
    assert check_language("sw") == "swa"


def test_hindi_closest_is_urdu():
    rows = related_weights("hi", ["ur", "en", "sw", "vi"], min_weight=0)
    assert rows[0][0] == "ur"
    assert rows[0][1] == max(w for _, w, _ in rows) and rows[0][1] > 0.5
    d = dict((c, dist) for c, _, dist in rows)
    assert d["ur"]["genetic"] < d["en"]["genetic"] <= d["sw"]["genetic"]
    assert d["ur"]["syntactic"] < min(d[c]["syntactic"] for c in ("en", "sw", "vi"))
    assert [c for c, _, _ in rows] == sorted(d, key=lambda c: d[c]["combined"])


def test_weights_sum_to_one_and_are_deterministic():
    cands = ["ur", "en", "sw", "vi", "ar", "id", "fr", "es"]
    first = related_weights("hi", cands)
    assert math.isclose(sum(w for _, w, _ in first), 1.0, abs_tol=1e-12)
    assert all(w > 0 for _, w, _ in first)
    for seed in range(3):
        shuffled = cands[:]
        random.Random(seed).shuffle(shuffled)
        assert related_weights("hi", shuffled) == first
    flat = related_weights("sw", ["en", "fr", "ar", "hi"], min_weight=0)
    assert len(flat) == 4 and math.isclose(sum(w for _, w, _ in flat), 1.0)
    assert max(w for _, w, _ in flat) < 0.5  # nothing close to Swahili: weight is spread


def test_softmax_and_min_weight():
    rows = related_weights("hi", ["ur", "en"], temperature=0.2, min_weight=0)
    (_, wu, du), (_, we, de) = rows
    assert math.isclose(wu / we, math.exp((de["combined"] - du["combined"]) / 0.2), rel_tol=1e-9)
    hot = related_weights("hi", ["ur", "en"], temperature=100.0, min_weight=0)
    assert abs(hot[0][1] - 0.5) < 0.01
    dropped = related_weights("hi", ["ur", "en", "sw", "vi"], min_weight=0.1)
    assert [c for c, _, _ in dropped] == ["ur"] and dropped[0][1] == 1.0
    with pytest.raises(EdgecompError, match="temperature"):
        related_weights("hi", ["ur"], temperature=0)
    with pytest.raises(EdgecompError, match="min_weight"):
        related_weights("hi", ["ur"], min_weight=1.0)


def test_target_itself_gets_distance_zero_and_top_weight():
    rows = related_weights("hi", ["en", "ur", "hin", "sw"])
    code, weight, dist = rows[0]
    assert code == "hin" and weight == max(w for _, w, _ in rows)
    assert dist["combined"] == 0.0 and all(dist[k] == 0.0 for k in KINDS)


def test_top_k_respected():
    cands = ["ur", "en", "sw", "vi", "ar", "id", "fr", "es"]
    every = related_weights("hi", cands, min_weight=0)
    two = related_weights("hi", cands, top_k=2, min_weight=0)
    assert [c for c, _, _ in two] == [c for c, _, _ in every[:2]]
    assert math.isclose(sum(w for _, w, _ in two), 1.0)
    assert len(related_weights("hi", cands, top_k=20, min_weight=0)) == len(cands)
    with pytest.raises(EdgecompError, match="top_k"):
        related_weights("hi", cands, top_k=0)


def test_same_language_twice_refused():
    with pytest.raises(EdgecompError, match="same language"):
        related_weights("hi", ["ur", "urd"])
    with pytest.raises(EdgecompError, match="no candidate"):
        related_weights("hi", [])


def test_distances_match_urielplus_reference():
    u = uriel()
    previous = logging.root.manager.disable
    logging.disable(logging.INFO)  # new_distance logs timings at INFO
    try:
        for target, cand in [("hin", "urd"), ("hin", "eng"), ("swa", "ara"), ("vie", "ind")]:
            mine = language_distances(target, [cand])[cand]
            for kind in KINDS:
                try:
                    ref = u.new_distance(kind, target, cand)
                except ValueError:  # no shared features
                    ref = None
                assert mine.get(kind) == pytest.approx(ref, abs=1e-4) if ref is not None else kind not in mine
    finally:
        logging.disable(previous)


def test_missing_data_is_left_out():
    # Basque has no family in URIEL; Urdu no phonological features shared with Hindi
    eus = language_distances("eu", ["es"])["es"]
    assert "genetic" not in eus and eus["combined"] == eus["syntactic"]
    hi_ur = language_distances("hi", ["ur"])["ur"]
    assert "phonological" not in hi_ur
    assert hi_ur["combined"] == round((hi_ur["genetic"] + hi_ur["syntactic"]) / 2, 4)
    with pytest.raises(EdgecompError, match="unknown distance kind"):
        language_distances("hi", ["ur"], kinds=("lexical",))


def test_select_related_one_adapter_per_language_ignores_other_kinds():
    library = [
        fake("task-ur-b", "task", "ur", 2.0),
        fake("task-ur-a", "task", "urd", 1.5),  # same language as 'ur', lower loss: chosen
        fake("task-en-2", "task", "en", 1.0),
        fake("task-en-1", "task", "en", 1.0),  # tie on loss: path name decides
        fake("task-sw", "task", "sw"),  # no final_loss: still usable
        fake("lang-hi", "language", "hi", 0.1),  # other kind: ignored even though it is the target
        fake("lang-ur", "language", "ur", 0.1),
        LoraAdapter(Path("library/no-meta"), {"r": 4}, {}, None),
    ]
    chosen = select_related(library, "hi")
    names = [a.name for a, _, _ in chosen]
    assert names[0] == "task-ur-a"
    assert sorted(names) == ["task-en-1", "task-sw", "task-ur-a"]
    assert math.isclose(sum(w for _, w, _ in chosen), 1.0)
    assert select_related(library, "hi") == chosen
    assert [a.name for a, _, _ in select_related(library, "hi", top_k=1)] == ["task-ur-a"]
    langs = select_related(library, "hi", kind="language")
    assert [a.name for a, _, _ in langs] == ["lang-hi", "lang-ur"]


def test_select_related_errors():
    with pytest.raises(EdgecompError, match="no task adapters"):
        select_related([fake("lang-hi", "language", "hi")], "hi")
    with pytest.raises(EdgecompError, match="no task adapters"):
        select_related([], "hi")
    with pytest.raises(EdgecompError, match="bad-lang.*unknown language code"):
        select_related([fake("bad-lang", "task", "xx")], "hi")
    with pytest.raises(EdgecompError, match="unknown language code"):
        select_related([fake("task-ur", "task", "ur")], "zz")


def test_explain_table_has_a_row_per_candidate():
    library = [fake("task-ur", "task", "ur", 1.0), fake("task-en", "task", "en", 1.0), fake("task-vi", "task", "vi")]
    rows = select_related(library, "hi", min_weight=0)
    table = explain_table(rows)
    assert table.row_count == 3
    headers = [c.header for c in table.columns]
    assert headers[:2] == ["language", "adapter"] and headers[-2:] == ["combined", "weight"]
    assert {"genetic", "syntactic"} <= set(headers)
    out = io.StringIO()
    Console(file=out, width=200).print(table)
    text = out.getvalue()
    for name in ("task-ur", "task-en", "task-vi"):
        assert name in text
    plain = explain_table(related_weights("hi", ["ur", "en"]))
    assert plain.row_count == 2
