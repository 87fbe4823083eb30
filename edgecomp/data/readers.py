"""Readers for the two input formats, with errors that name the file and line.

- unlabeled text: UTF-8, one sentence or paragraph a line (``mono/*.txt``);
- pairs: JSON Lines with at least ``text`` and ``summary`` strings.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import EdgecompError


def read_text(path: str | Path) -> str:
    """A whole UTF-8 text file; refuses missing, empty, binary and non-UTF-8 files."""
    path = Path(path)
    if not path.is_file():
        raise EdgecompError(f"{path}: no such file")
    raw = path.read_bytes()
    if b"\x00" in raw:
        raise EdgecompError(f"{path}: looks binary (contains NUL bytes), expected UTF-8 text")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise EdgecompError(f"{path}: not UTF-8 text (byte {e.start})") from None
    if not text.strip():
        raise EdgecompError(f"{path}: file is empty")
    return text


def read_lines(path: str | Path) -> list[str]:
    """Non-empty stripped lines of a text file."""
    return [line.strip() for line in read_text(path).splitlines() if line.strip()]


def read_pairs(path: str | Path) -> list[dict]:
    """Article/summary pairs from JSON Lines; each line needs non-empty ``text`` and ``summary``."""
    pairs = []
    for n, line in enumerate(read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise EdgecompError(f"{path}:{n}: malformed JSON ({e.msg})") from None
        if not isinstance(obj, dict):
            raise EdgecompError(f"{path}:{n}: expected a JSON object")
        for key in ("text", "summary"):
            if not isinstance(obj.get(key), str) or not obj[key].strip():
                raise EdgecompError(f"{path}:{n}: missing or empty string field '{key}'")
        pairs.append(obj)
    if not pairs:
        raise EdgecompError(f"{path}: no pairs found")
    return pairs
