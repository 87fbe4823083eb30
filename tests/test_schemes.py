"""The quantization-scheme registry: a scheme registered anywhere is a ``--quantize`` choice, is applied
by the quantizer and names its exports in the cache; bumping one scheme's version changes only its keys."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import onnx
import pytest
from test_quantize import lookup_and_head, save
from typer.testing import CliRunner

from edgecomp.cli import app
from edgecomp.compose.spec import resolve_spec
from edgecomp.errors import EdgecompError
from edgecomp.export.merge_export import cached_export
from edgecomp.export.quantization.apply import quantize_model
from edgecomp.export.quantization.schemes import SCHEMES, Scheme, choices_help, get_scheme, register
from edgecomp.models import cache


def mark_converted(model: onnx.ModelProto) -> onnx.ModelProto:
    model.doc_string = "converted by the fake scheme"
    return model


@pytest.fixture
def fake_scheme():
    scheme = register(Scheme(name="fake", version=1, help="a test scheme", convert=mark_converted))
    yield scheme
    del SCHEMES["fake"]


def export_key(monkeypatch, tmp_path: Path, base: Path, quantize: str, **options) -> str:
    """The cache key ``cached_export`` files the export under (nothing is built)."""
    keys = []
    monkeypatch.setattr(cache, "cached_entry", lambda kind, key, build: keys.append(key) or tmp_path)
    cached_export(resolve_spec({}, tmp_path), base=str(base), quantize=quantize, **options)
    return keys[-1]


def test_a_registered_scheme_is_a_choice_the_quantizer_applies(fake_scheme, tmp_path):
    assert get_scheme("fake") is fake_scheme and "fake (a test scheme)" in choices_help()
    with pytest.raises(EdgecompError, match="unknown quantization 'int3'; choose one of .*fake"):
        get_scheme("int3")
    report = quantize_model(save(lookup_and_head(), tmp_path / "src"), tmp_path / "fake", "fake")
    assert report == {"mode": "fake", "tied_lm_head": True, "logits_to_keep": True}
    assert onnx.load(str(tmp_path / "fake" / "model.onnx")).doc_string == "converted by the fake scheme"
    with pytest.raises(ValueError, match="twice"):
        register(fake_scheme)


def test_options_are_refused_by_schemes_that_do_not_take_them(fake_scheme, tiny_llama_dir, tmp_path):
    text = tmp_path / "calibration.txt"
    text.write_text("hello world\n", encoding="utf-8")
    result = CliRunner().invoke(
        app,
        [
            "merge-export",
            "--base",
            str(tiny_llama_dir),
            "--quantize",
            "fake",
            "--calibration",
            str(text),
            "--out",
            str(tmp_path / "x"),
        ],
    )
    assert result.exit_code == 2 and "--calibration applies to --quantize int8 or int4 only" in result.stderr
    with pytest.raises(EdgecompError, match="--block-size, --tune-steps and --eight-bit-layers apply to --quantize"):
        fake_scheme.configured(tune_steps=3)
    assert get_scheme("int4").configured(block_size=16, calibration=[text]).block_size == 16


def test_bumping_a_scheme_version_changes_only_its_export_keys(fake_scheme, tiny_llama_dir, tmp_path, monkeypatch):
    names = list(SCHEMES)
    keys = {name: export_key(monkeypatch, tmp_path, tiny_llama_dir, name) for name in names}
    assert len(set(keys.values())) == len(names)  # the fake scheme names its own exports too
    for bumped in ("int4", "fake"):
        monkeypatch.setitem(SCHEMES, bumped, replace(SCHEMES[bumped], version=SCHEMES[bumped].version + 1))
        again = {name: export_key(monkeypatch, tmp_path, tiny_llama_dir, name) for name in names}
        assert [name for name in names if again[name] != keys[name]] == [bumped]
        keys = again
    assert export_key(monkeypatch, tmp_path, tiny_llama_dir, "int4", tune_steps=0) != keys["int4"]  # the full config


def test_calibration_files_key_the_schemes_that_calibrate(tiny_llama_dir, tmp_path, monkeypatch):
    text = tmp_path / "calibration.txt"
    text.write_text("hello world\n", encoding="utf-8")
    for name in ("int8", "int4"):
        plain = export_key(monkeypatch, tmp_path, tiny_llama_dir, name)
        assert export_key(monkeypatch, tmp_path, tiny_llama_dir, name, calibration=[text]) != plain
    hashes = get_scheme("int4").key(calibration=[text])["calibration"]
    text.write_text("other text\n", encoding="utf-8")
    assert get_scheme("int4").key(calibration=[text])["calibration"] != hashes
    assert "calibration" not in get_scheme("none").key(calibration=[text])
