"""The adapter library inside the package: what it holds, that it stays small, and that
``edgecomp summarize ARTICLE`` (no other option) summarizes each bundled article in its language.

The end-to-end part builds the real base's int8 export with run-time LoRA inputs (about a minute,
after the base conversion test_default_base.py shares in this session's cache).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgecomp.cli import app
from edgecomp.compose.adapters import load_adapter
from edgecomp.eval.language_id import identify
from edgecomp.library.catalog import SHIPPED, Library

DEMO = Path(__file__).parents[1] / "data" / "demo"
LANGUAGES = {"en", "sw", "hi", "vi", "id", "fr", "es", "ar"}  # those of the shared mono data
MAX_BYTES = 10 * 2**20


def test_the_library_covers_every_mono_language_within_10_mb():
    library = Library.load()
    assert set(library.languages) == LANGUAGES
    total = sum(f.stat().st_size for f in SHIPPED.rglob("*") if f.is_file())
    assert total <= MAX_BYTES, f"{total / 2**20:.2f} MB"
    for lang in library.languages:
        choice = library.choice(lang)
        for path, _ in choice.terms(library.root):
            adapter = load_adapter(path)
            meta = adapter.meta
            assert meta["packed"]["dtype"] == "float16" and adapter.stored_dtype == "float16"
            assert meta["base"]["spec"] == "gemma-3-270m" and meta["data"]["file"]
            assert adapter.config["base_model_name_or_path"] == "gemma-3-270m"
        assert choice.prompt(library.root) in ("neutral", "english")
    readme = (SHIPPED / "README.md").read_text(encoding="utf-8")
    for licence in ("CC BY-SA 4.0", "CC BY-NC-SA 4.0", "Gemma"):
        assert licence in readme


def test_an_unshipped_language_is_explained():
    with pytest.raises(Exception, match="closest by URIEL: .*sw"):
        Library.load().choice("zu")


@pytest.mark.parametrize("lang", sorted(LANGUAGES))
def test_each_bundled_article_is_summarized_in_its_language(lang):
    result = CliRunner().invoke(
        app, ["summarize", str(DEMO / f"article_{lang}.txt"), "--max-new-tokens", "40", "--json"]
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert f"language: {lang} (detected)" in result.stderr
    assert out["lang"] == lang and out["summary"].strip()
    assert identify([out["summary"]], lang) == [lang], out["summary"]
