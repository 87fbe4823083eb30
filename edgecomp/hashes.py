"""File hashes remembered by path, size and modification time.

Verifying a manifest or fingerprinting a 1 GB checkpoint on every command would cost seconds each
time; a file whose path, size and mtime are unchanged keeps its hash. Torch-free: the runtime uses it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from .fsutil import home, sha256_file, write_json


def remembered_sha256(path: Path) -> str:
    stat = path.stat()
    stamp = [str(path.resolve()), stat.st_size, stat.st_mtime_ns]
    memo = home() / "hashes" / (hashlib.sha256(json.dumps(stamp).encode()).hexdigest()[:32] + ".json")
    if memo.is_file():
        try:
            return json.loads(memo.read_text())["sha256"]
        except (OSError, ValueError, KeyError):
            pass  # a damaged memo is recomputed
    digest = sha256_file(path)
    memo.parent.mkdir(parents=True, exist_ok=True)
    write_json(memo, {"sha256": digest, "file": stamp})
    return digest
