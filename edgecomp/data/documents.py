"""Documents to summarize, from files, folders or a JSON Lines file, each with an id.

A batch must survive its bad documents: one that is empty, binary or not UTF-8 (or a JSONL line
that does not parse or lacks its text field) becomes a :class:`Document` with ``error`` set and no
text, so the caller reports it by id and goes on. Problems with the input as a whole (a path that
does not exist, a JSONL file that cannot be read) are errors before any work starts.

Ids: a file's path as given (a folder's files: their path under the folder, sorted); a JSONL
line's ``id`` field, else its line number. Ids must be unique, since resuming skips the ids an
output already holds.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from ..errors import EdgecompError
from .readers import _NEWLINE, read_text

TEXT_SUFFIXES = (".txt", ".md")


@dataclass(frozen=True)
class Document:
    id: str
    text: str | None
    error: str | None = None


def _from_file(path: Path, doc_id: str) -> Document:
    try:
        return Document(doc_id, read_text(path))
    except EdgecompError as e:
        return Document(doc_id, None, str(e).removeprefix(f"{path}: ").removeprefix(f"{path}"))


def from_paths(paths: Iterable[str | Path]) -> list[Document]:
    """One document per file; a folder gives its ``.txt``/``.md`` files, recursively, sorted."""
    docs = []
    for given in paths:
        path = Path(given)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES)
            if not files:
                raise EdgecompError(f"{path}: no {' or '.join(TEXT_SUFFIXES)} files in this folder")
            docs += [_from_file(f, str(f)) for f in files]
        elif path.is_file():
            docs.append(_from_file(path, str(given)))
        else:
            raise EdgecompError(f"{given}: no such file or folder")
    return _unique(docs)


def from_jsonl(path: str | Path, text_field: str = "text", id_field: str = "id") -> list[Document]:
    """One document per non-blank line of a JSON Lines file."""
    path = Path(path)
    docs = []
    for n, line in enumerate(_NEWLINE.split(read_text(path)), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except (ValueError, RecursionError):
            docs.append(Document(str(n), None, f"line {n}: malformed JSON"))
            continue
        doc_id = str(obj.get(id_field, n)) if isinstance(obj, dict) else str(n)
        text = obj.get(text_field) if isinstance(obj, dict) else None
        if not isinstance(text, str) or not text.strip():
            docs.append(Document(doc_id, None, f"line {n}: no text in field '{text_field}'"))
        elif not _encodable(text):
            docs.append(Document(doc_id, None, f"line {n}: unpaired surrogate escape in '{text_field}'"))
        else:
            docs.append(Document(doc_id, text))
    if not docs:
        raise EdgecompError(f"{path}: no documents")
    return _unique(docs)


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _unique(docs: list[Document]) -> list[Document]:
    seen: set[str] = set()
    for doc in docs:
        if doc.id in seen:
            raise EdgecompError(f"document id '{doc.id}' appears more than once")
        seen.add(doc.id)
    return docs
