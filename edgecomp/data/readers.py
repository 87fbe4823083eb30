"""Readers for the two input formats, with errors that name the file and line.

- unlabeled text: UTF-8, one sentence or paragraph a line (``mono/*.txt``);
- pairs: JSON Lines with at least ``text`` and ``summary`` strings.

Input is untrusted: whatever the bytes, these raise nothing but :class:`EdgecompError`. A leading
UTF-8 byte-order mark (Notepad writes one) is dropped. Lines end at ``\\n``, ``\\r\\n`` or ``\\r``
only, as editors count them; Unicode separators (U+2028, form feed…) stay inside a line, because
JSON strings may hold them raw and line numbers in errors must match what users see.
"""

from __future__ import annotations

import codecs
import json
import re
from pathlib import Path

from ..errors import EdgecompError

_NEWLINE = re.compile(r"\r\n|\r|\n")


def read_text(path: str | Path) -> str:
    """A whole UTF-8 text file; refuses missing, empty, binary and non-UTF-8 files."""
    path = Path(path)
    if path.is_dir():
        raise EdgecompError(f"{path}: is a folder, expected a file")
    if not path.is_file():
        raise EdgecompError(f"{path}: no such file")
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise EdgecompError(f"{path}: cannot read ({e.strerror})") from None
    bom = len(codecs.BOM_UTF8) if raw.startswith(codecs.BOM_UTF8) else 0
    if b"\x00" in raw:
        raise EdgecompError(f"{path}: looks binary (contains NUL bytes), expected UTF-8 text")
    try:
        text = raw[bom:].decode("utf-8")
    except UnicodeDecodeError as e:
        at = bom + e.start
        line = raw[:at].count(b"\n") + 1
        raise EdgecompError(f"{path}:{line}: not UTF-8 text (byte {at})") from None
    if not text.strip():
        raise EdgecompError(f"{path}: file is empty")
    return text


def read_lines(path: str | Path) -> list[str]:
    """Non-empty stripped lines of a text file."""
    return [line.strip() for line in _NEWLINE.split(read_text(path)) if line.strip()]


def _parse(path: Path, n: int, line: str) -> dict:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as e:
        raise EdgecompError(f"{path}:{n}: malformed JSON ({e.msg})") from None
    except RecursionError:
        raise EdgecompError(f"{path}:{n}: JSON nested too deeply") from None
    if not isinstance(obj, dict):
        raise EdgecompError(f"{path}:{n}: expected a JSON object")
    for key in ("text", "summary"):
        value = obj.get(key)
        if not isinstance(value, str) or not value.strip():
            raise EdgecompError(f"{path}:{n}: missing or empty string field '{key}'")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise EdgecompError(
                f"{path}:{n}: field '{key}' has an unpaired surrogate escape (\\ud800-\\udfff)"
            ) from None
    return obj


def read_pairs(path: str | Path) -> list[dict]:
    """Article/summary pairs from JSON Lines; each line needs non-empty ``text`` and ``summary``."""
    pairs = [
        _parse(Path(path), n, line) for n, line in enumerate(_NEWLINE.split(read_text(path)), start=1) if line.strip()
    ]
    if not pairs:
        raise EdgecompError(f"{path}: no pairs found")
    return pairs
