"""A fingerprint of a checkpoint's weights, so adapters trained on one base are not merged into another.

It is the sha256 over the checkpoint's safetensors files (names and contents). Hashing a 1 GB
checkpoint takes seconds, so results are memoised in the cache, keyed by path, size and mtime.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from ..fsutil import sha256_file, write_json
from .cache import home


def weights_fingerprint(checkpoint: Path) -> str:
    files = sorted(checkpoint.glob("*.safetensors"))
    stamp = [[str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns] for p in files]
    key = hashlib.sha256(json.dumps(stamp).encode()).hexdigest()[:32]
    memo = home() / "fingerprints" / f"{key}.json"
    if memo.is_file():
        return json.loads(memo.read_text())["fingerprint"]
    h = hashlib.sha256()
    for p in files:
        h.update(p.name.encode() + b"\0" + sha256_file(p).encode())
    fingerprint = "sha256:" + h.hexdigest()
    memo.parent.mkdir(parents=True, exist_ok=True)
    write_json(memo, {"fingerprint": fingerprint, "files": stamp})
    return fingerprint
