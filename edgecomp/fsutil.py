"""Atomic file-system writes, content hashes and edgecomp's cache folder.

Results (adapters, checkpoints, exports, caches) are built in a temporary sibling and renamed into
place, so a crash or Ctrl-C never leaves a half-written folder that looks whole.

Temporary siblings are hidden (``.NAME.tmp-…``) and carry the writer's pid and host, so that the next
write of the same name can remove those of writers that died (SIGKILL, power loss) without touching
a live writer's. A full disk becomes an :class:`EdgecompError` naming what was being written.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Iterator

from .errors import EdgecompError

_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def home() -> Path:
    """``$EDGECOMP_HOME``, else the user's cache dir (``~/.cache/edgecomp`` on Linux)."""
    from platformdirs import user_cache_dir

    return Path(os.environ.get("EDGECOMP_HOME") or user_cache_dir("edgecomp"))


def _disk_full(e: BaseException | None) -> bool:
    """ENOSPC/EDQUOT, raised as an OSError or wrapped by a Rust writer (safetensors: "... (os error 28)")."""
    while e is not None:
        if isinstance(e, OSError) and e.errno in _DISK_FULL:
            return True
        if any(f"(os error {n})" in str(e) for n in _DISK_FULL):
            return True
        e = e.__cause__ or e.__context__
    return False


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _host() -> str:
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def _owner() -> str:
    """``PID@HOST``: who writes a temporary sibling (host, because a folder may be shared over NFS)."""
    return f"{os.getpid()}@{_host()}"


def _alive(pid: int) -> bool:
    if os.name != "posix":  # os.kill(pid, 0) terminates the process on Windows
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, another user's
        return True
    return True


def remove_stale_siblings(path: Path) -> None:
    """Remove ``.NAME.tmp-PID@HOST-…`` / ``.NAME.old-PID@HOST`` siblings of ``path`` left by dead writers on
    this host."""
    pattern = re.compile(rf"\.{re.escape(path.name)}\.(?:tmp|old)-(\d+)@([0-9a-f]{{8}})(?:-.*)?")
    if not path.parent.is_dir():
        return
    for sibling in path.parent.iterdir():
        match = pattern.fullmatch(sibling.name)
        if match and match[2] == _host() and not _alive(int(match[1])):
            if sibling.is_dir() and not sibling.is_symlink():
                shutil.rmtree(sibling, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    sibling.unlink()


def check_output_dir(out: Path, force: bool) -> None:
    """Refuse an existing output folder unless ``force``; never touch it on refusal."""
    if out.exists() and not force:
        raise EdgecompError(f"output folder {out} already exists (pass --force to replace it)")
    if out.exists() and not out.is_dir():
        raise EdgecompError(f"output path {out} exists and is not a folder")


@contextlib.contextmanager
def atomic_dir(out: str | os.PathLike, force: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling of ``out``; on success rename it to ``out``.

    On any exception the temporary folder is removed and ``out`` is left as it was; a full disk
    (ENOSPC, EDQUOT) is re-raised as an :class:`EdgecompError` naming ``out``.
    """
    out = Path(out)
    check_output_dir(out, force)
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_siblings(out)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-{_owner()}-", dir=out.parent))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700; results should get the usual mode
    try:
        yield tmp
        if out.exists():
            check_output_dir(out, force)  # it may have appeared while we worked
            trash = out.with_name(f".{out.name}.old-{_owner()}")
            os.rename(out, trash)
            os.rename(tmp, out)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.rename(tmp, out)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if _disk_full(e):
            raise EdgecompError(
                f"disk full while writing {out}; nothing was written (free some space and run again)"
            ) from e
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    path = Path(path)
    remove_stale_siblings(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-{_owner()}-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_json(path: str | os.PathLike, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, sort_keys=True) + "\n")


def read_jsonl_prefix(path: str | os.PathLike, accept) -> list[dict]:
    """The whole lines of an append-only JSON Lines file that ``accept(row)``; the file is cut
    after the last of them (a torn line from a run killed mid-write, or what follows it).

    Append-only outputs (predictions, summaries) resume from this: what a previous run wrote
    completely is kept, anything after it is written again."""
    path = Path(path)
    if not path.is_file():
        return []
    rows, good = [], 0
    with open(path, "rb") as f:
        for raw in f:
            try:
                row = json.loads(raw)
            except ValueError:
                break
            if not raw.endswith(b"\n") or not isinstance(row, dict) or not accept(row):
                break
            rows.append(row)
            good += len(raw)
    if good != path.stat().st_size:
        with open(path, "r+b") as f:
            f.truncate(good)
    return rows


def append_jsonl(path: str | os.PathLike, rows: list[dict]) -> None:
    """Append ``rows`` as JSON lines and sync them to disk, so a crash keeps every row written."""
    try:
        with open(path, "a", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        if _disk_full(e):
            raise EdgecompError(f"disk full while writing {path}; the rows written before are kept") from e
        raise
