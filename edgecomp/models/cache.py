"""edgecomp's cache folder, and whole-or-absent cache entries.

An entry is built in a temporary sibling, given a manifest (``edgecomp-cache.json``) that lists the
sha256 and size of each file, then renamed into place under a file lock, so two processes converting
the same model at once do the work once and never see a half-written entry.

Entries are checked on every use, cheaply (each listed file exists with its recorded size: catches
truncation and deletion, e.g. by a disk cleaner), and ``verify_entry(full=True)`` re-hashes. A
damaged entry is rebuilt, saying so, rather than loaded.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from filelock import FileLock

from ..console import console
from ..fsutil import atomic_dir, home, sha256_file, write_json

MANIFEST = "edgecomp-cache.json"


def verify_entry(entry: Path, full: bool = True) -> str | None:
    """What is wrong with a cache entry, or None when it is whole.

    The cheap check (``full=False``) compares sizes with the manifest; ``full`` also re-hashes.
    """
    try:
        manifest = json.loads((entry / MANIFEST).read_text(encoding="utf-8"))
        hashes, sizes = manifest["files"], manifest["sizes"]
    except FileNotFoundError:
        return "no manifest"
    except (ValueError, KeyError, TypeError):
        return "unreadable manifest"
    for name, digest in hashes.items():
        file = entry / name
        if not file.is_file():
            return f"{name} is missing"
        if file.stat().st_size != sizes.get(name):
            return f"{name} has {file.stat().st_size} bytes, expected {sizes.get(name)}"
        if full and sha256_file(file) != digest:
            return f"{name} does not match its sha256"
    return None


def cached_entry(kind: str, key: str, build: Callable[[Path], dict]) -> Path:
    """Return ``home()/kind/key``, building it with ``build(tmp_dir) -> info`` if absent or damaged.

    ``info`` is stored in the manifest next to the files' hashes and sizes.
    """
    root = home() / kind
    root.mkdir(parents=True, exist_ok=True)
    entry = root / key
    with FileLock(str(root / f".{key}.lock")):
        if entry.exists():
            problem = verify_entry(entry, full=False)
            if problem is None:
                return entry
            console.print(f"[yellow]cache entry {entry} is damaged ({problem}); rebuilding it[/]")
        with atomic_dir(entry, force=True) as tmp:
            info = build(tmp)
            files = sorted(p for p in tmp.rglob("*") if p.is_file())
            write_json(
                tmp / MANIFEST,
                {
                    "info": info,
                    "files": {str(p.relative_to(tmp)): sha256_file(p) for p in files},
                    "sizes": {str(p.relative_to(tmp)): p.stat().st_size for p in files},
                },
            )
    return entry
