"""Adapter vocabularies: the file format, and which compositions an export trims to them by default."""

from __future__ import annotations

import json

import pytest
from adapters import make_adapter

from edgecomp.compose.spec import resolve_spec
from edgecomp.data.vocabulary import VOCABULARY, read_vocabulary, vocabulary_payload
from edgecomp.errors import EdgecompError
from edgecomp.fsutil import write_json


def test_ids_come_back_sorted_and_distinct(tmp_path):
    write_json(tmp_path / VOCABULARY, vocabulary_payload([7, 3, 3, 0, 262_143], 262_144))
    assert read_vocabulary(tmp_path).tolist() == [0, 3, 7, 262_143]
    assert read_vocabulary(tmp_path / "elsewhere") is None
    payload = json.loads((tmp_path / VOCABULARY).read_text())
    assert payload["count"] == 4 and len(payload["bitmap"]) < 1000  # compressed: a few bytes per id at most
    with pytest.raises(EdgecompError, match=r"lie in \[0, 10\)"):
        vocabulary_payload([10], 10)


@pytest.mark.parametrize(
    "damage",
    [
        lambda p: {**p, "bitmap": "not base64!"},
        lambda p: {**p, "count": p["count"] + 1},
        lambda p: {**p, "vocab_size": 3},
        lambda p: {**p, "format": "other/1"},
        lambda p: {k: v for k, v in p.items() if k != "bitmap"},
    ],
)
def test_a_damaged_file_is_one_line(tmp_path, damage):
    write_json(tmp_path / VOCABULARY, damage(vocabulary_payload(range(0, 100, 3), 100)))
    with pytest.raises(EdgecompError, match="is not a vocabulary file") as e:
        read_vocabulary(tmp_path)
    assert "\n" not in str(e.value)


@pytest.fixture(scope="module")
def library(tiny_llama_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("vocab-library")
    specs = {"task-en": ("task", "en"), "lang-sw": ("language", "sw"), "lang-en": ("language", "en")}
    specs |= {"lang-fr": ("language", "fr"), "composed": ("composition", None)}
    for seed, (name, (kind, lang)) in enumerate(specs.items()):
        make_adapter(tiny_llama_dir, root / name, seed, meta={"kind": kind, "lang": lang})
        if kind != "composition" and name != "lang-fr":
            write_json(root / name / VOCABULARY, vocabulary_payload([seed, 100 + seed], 1000))
    # An adapter trained before edgecomp recorded vocabularies:
    make_adapter(tiny_llama_dir, root / "task-old", 9, meta={"kind": "task", "lang": "en"})
    return root


@pytest.mark.parametrize(
    "adapters, expected",
    [
        (["task-en:1", "lang-sw:1", "lang-en:-1"], ["lang-en", "lang-sw", "task-en"]),  # task_en + lang_sw - lang_en
        (["lang-sw:1"], ["lang-sw"]),
        (["task-en:1"], None),  # no target language known
        (["task-old:1", "lang-sw:1"], None),  # the task adapter records no vocabulary
        (["task-en:1", "lang-sw:1", "lang-en:1"], None),  # two target languages
        (["task-en:1", "lang-fr:1", "lang-en:-1"], None),  # lang-fr records no vocabulary
        (["composed:1", "lang-sw:1"], None),  # a composed adapter's languages are not known
    ],
)
def test_which_compositions_are_for_one_language(library, adapters, expected):
    found = resolve_spec({"adapters": adapters}, library).vocabularies()
    assert (sorted(found) if found is not None else None) == expected
    if found:
        assert all(read_vocabulary(folder).size == 2 for folder in found.values())
