"""The readers on arbitrary bytes: nothing but EdgecompError escapes, and valid input comes back intact.

Decisions these pin down: a leading UTF-8 BOM is dropped; lines end at \\n, \\r\\n or \\r only (U+2028,
U+0085, form feed… stay inside a line, as JSON strings may hold them raw); NUL bytes mean binary;
other control characters are text; JSON strings with unpaired surrogate escapes are refused.
"""

import codecs
import json
import re

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from edgecomp.data.readers import read_lines, read_pairs, read_text
from edgecomp.errors import EdgecompError

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
READERS = [read_text, read_lines, read_pairs]
# text without NUL and without the three line-break characters: anything else is allowed in a line
line_text = st.text(st.characters(blacklist_characters="\x00\r\n\ufeff", blacklist_categories=("Cs",)), min_size=1)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)


def write(tmp_path, data: bytes):
    path = tmp_path / "input"
    path.write_bytes(data)
    return path


@FUZZ
@given(data=st.binary(max_size=300))
@example(data=b"[" * 100_000)
@example(data=b'{"text": "\\ud800", "summary": "x"}')
@example(data=codecs.BOM_UTF8)
@example(data=b"\xef\xbb")
@example(data=b"\n\r\n \t\x0c\n")
def test_arbitrary_bytes_raise_only_edgecomp_errors(tmp_path, data):
    path = write(tmp_path, data)
    for reader in READERS:
        try:
            reader(path)
        except EdgecompError as e:
            assert str(e).startswith(str(path))


@FUZZ
@given(
    lines=st.lists(line_text, min_size=1, max_size=8),
    newline=st.sampled_from(["\n", "\r\n", "\r"]),
    bom=st.booleans(),
    final=st.booleans(),
)
def test_valid_text_comes_back(tmp_path, lines, newline, bom, final):
    body = newline.join(lines) + (newline if final else "")
    path = write(tmp_path, (codecs.BOM_UTF8 if bom else b"") + body.encode("utf-8"))
    if not body.strip():
        with pytest.raises(EdgecompError, match="file is empty"):
            read_text(path)
        return
    assert read_text(path) == body
    assert read_lines(path) == [line.strip() for line in lines if line.strip()]


def _row(text, summary, extra):
    return {**extra, "text": text, "summary": summary}


rows = st.builds(
    _row,
    line_text.filter(str.strip),
    line_text.filter(str.strip),
    st.dictionaries(st.text(max_size=5), json_values, max_size=3),
)


@FUZZ
@given(pairs=st.lists(rows, min_size=1, max_size=5), ascii_only=st.booleans(), bom=st.booleans())
def test_valid_pairs_come_back(tmp_path, pairs, ascii_only, bom):
    body = "".join(json.dumps(p, ensure_ascii=ascii_only) + "\n" for p in pairs)  # raw U+2028 when not ascii_only
    path = write(tmp_path, (codecs.BOM_UTF8 if bom else b"") + body.encode("utf-8"))
    assert read_pairs(path) == pairs


@FUZZ
@given(pairs=st.lists(rows, min_size=1, max_size=5), bad=json_values, at=st.integers(min_value=0))
def test_a_bad_jsonl_line_is_named(tmp_path, pairs, bad, at):
    lines = [json.dumps(p) for p in pairs]
    if isinstance(bad, dict) and all(isinstance(bad.get(k), str) and bad[k].strip() for k in ("text", "summary")):
        bad = [bad]  # a valid row after all: make it bad
    n = at % (len(lines) + 1)
    lines.insert(n, json.dumps(bad))
    path = write(tmp_path, "\n".join(lines).encode("utf-8"))
    with pytest.raises(EdgecompError, match=rf"^{re.escape(str(path))}:{n + 1}: "):
        read_pairs(path)


@pytest.mark.parametrize(
    "data, message",
    [
        (b"ok\n\xff\n", r":2: not UTF-8 text \(byte 3\)"),
        (codecs.BOM_UTF8 + b"\xc3\x28", r":1: not UTF-8 text \(byte 3\)"),
        (b"a\x00b", "looks binary"),
        (b'{"text": "a", "summary": "b"}\n\n[1]\n', r":3: expected a JSON object"),
        (b'{"text": "a", "summary": "b"}\r\n{"text": 1, "summary": "b"}', r":2: missing or empty string field 'text'"),
        (b'{"text": "a\\udc00", "summary": "b"}', r":1: field 'text' has an unpaired surrogate"),
        (b"[" * 100_000, r":1: JSON nested too deeply"),
        (b'{"text": "a",\n "summary": "b"}', r":1: malformed JSON"),
    ],
)
def test_error_messages(tmp_path, data, message):
    with pytest.raises(EdgecompError, match=message):
        read_pairs(write(tmp_path, data))


def test_unicode_separators_stay_inside_lines(tmp_path):
    row = {"text": "one\u2028two\x85three\x0cfour", "summary": "s\u2029"}
    path = write(tmp_path, (json.dumps(row, ensure_ascii=False) + "\n").encode("utf-8"))
    assert read_pairs(path) == [row]
    assert read_lines(path) == [json.dumps(row, ensure_ascii=False)]


def test_folders_and_missing_files(tmp_path):
    with pytest.raises(EdgecompError, match="is a folder"):
        read_text(tmp_path)
    with pytest.raises(EdgecompError, match="no such file"):
        read_text(tmp_path / "missing.txt")
