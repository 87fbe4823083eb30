"""edgecomp's cache folder, and whole-or-absent cache entries.

An entry is built in a temporary sibling, given a manifest (``edgecomp-cache.json``) that lists the
sha256 of each file, then renamed into place under a file lock, so two processes converting the
same model at once do the work once and never see a half-written entry.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from filelock import FileLock
from platformdirs import user_cache_dir

from ..fsutil import atomic_dir, sha256_file, write_json

MANIFEST = "edgecomp-cache.json"


def home() -> Path:
    """``$EDGECOMP_HOME``, else the user's cache dir (``~/.cache/edgecomp`` on Linux)."""
    return Path(os.environ.get("EDGECOMP_HOME") or user_cache_dir("edgecomp"))


def cached_entry(kind: str, key: str, build: Callable[[Path], dict]) -> Path:
    """Return ``home()/kind/key``, building it with ``build(tmp_dir) -> info`` if absent.

    ``info`` is stored in the manifest next to the files' hashes.
    """
    root = home() / kind
    root.mkdir(parents=True, exist_ok=True)
    entry = root / key
    with FileLock(str(root / f".{key}.lock")):
        if (entry / MANIFEST).is_file():
            return entry
        with atomic_dir(entry, force=True) as tmp:
            info = build(tmp)
            files = {
                str(p.relative_to(tmp)): sha256_file(p) for p in sorted(tmp.rglob("*")) if p.is_file()
            }
            write_json(tmp / MANIFEST, {"info": info, "files": files})
    return entry
