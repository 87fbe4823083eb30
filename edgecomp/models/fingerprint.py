"""A fingerprint of a checkpoint's weights, so adapters trained on one base are not merged into another.

It is the sha256 over the checkpoint's safetensors files (names and contents); file hashes are
remembered by path, size and mtime (:mod:`edgecomp.hashes`), so it costs seconds once, not each time.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from ..hashes import remembered_sha256


def weights_fingerprint(checkpoint: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(checkpoint.glob("*.safetensors")):
        h.update(p.name.encode() + b"\0" + remembered_sha256(p).encode())
    return "sha256:" + h.hexdigest()
