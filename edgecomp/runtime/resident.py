"""Give back the resident pages of weights ONNX Runtime no longer reads.

ONNX Runtime maps an export's external data (``model.onnx.data``) into memory and, on CPU, repacks
the quantized MatMul weights into its own layout at load. The originals stay mapped: the tied
8-bit embedding table because the embedding Gather still reads it, and its pages were all read
once by the repacking, so a 262k-row table stays resident although a summary reads a few hundred
rows of it. Dropping the pages of a mapping nothing has written to (``MADV_DONTNEED`` on private
file pages with no copy of their own) is invisible to the program: a later read faults the page
back in from the file. A mapping with a page the process wrote (a private copy) is left alone.
Linux only; elsewhere a no-op.
"""

from __future__ import annotations

import ctypes
import re
import sys
from pathlib import Path

_MADV_DONTNEED = 4
_HEADER = re.compile(r"^([0-9a-f]+)-([0-9a-f]+) \S+ \S+ \S+ \S+\s+(.*)$")


def _mappings(folder: str) -> list[tuple[int, int, int, int]]:
    """``(start, end, resident bytes, written bytes)`` of each mapping of a file in ``folder``; written
    pages are the process's own copies (``Anonymous`` in smaps), which the file does not have."""
    found, current = [], None
    with open("/proc/self/smaps", encoding="utf-8", errors="replace") as smaps:
        for line in smaps:
            header = _HEADER.match(line)
            if header:
                inside = header[3].startswith(folder + "/")
                current = [int(header[1], 16), int(header[2], 16), 0, 0] if inside else None
                if current is not None:
                    found.append(current)
            elif current is not None and line.startswith(("Rss:", "Anonymous:")):
                current[2 if line.startswith("Rss:") else 3] += int(line.split()[1]) * 1024
    return [tuple(m) for m in found]


def release_clean_pages(folder: str | Path) -> int:
    """Drop the resident pages of the clean mappings of files in ``folder`` (an export's); the bytes
    that were resident there."""
    if not sys.platform.startswith("linux"):
        return 0
    libc = ctypes.CDLL(None, use_errno=True)
    libc.madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    released = 0
    for start, end, resident, written in _mappings(str(Path(folder).resolve())):
        if resident and not written and libc.madvise(start, end - start, _MADV_DONTNEED) == 0:
            released += resident
    return released
