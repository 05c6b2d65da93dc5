"""Atomic writes: write a sibling temp file, then rename over the target.

A crash or a kill at any moment leaves either the old file or the new one, never half of one. The
new file is fsynced before the rename (and the folder after it), so a power loss cannot leave the
renamed name pointing at an empty file; a full disk fails the write and leaves the old file as it was.
"""
from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import re
import tempfile
from pathlib import Path

from .errors import UserError

# a write that failed for want of room: no space, a file-size limit (ulimit -f), a disk quota
NO_ROOM = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}


_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, run_dir: Path | None = None, hint: str | None = None):
    """Yield a temporary path beside `path`; on success rename it over `path`. A write that does not fit
    is one UserError (`no_room`: `run_dir` names the run to resume in its hint, or `hint` replaces it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    mode = 0o666 & ~_UMASK  # mkstemp makes 0600; give the file the usual permissions
    os.chmod(tmp, mode)
    try:
        yield Path(tmp)
        os.chmod(tmp, mode)  # a writer that replaced the temp file (safetensors does) made its own 0600
        _fsync(tmp)
        os.replace(tmp, path)
        _fsync(path.parent)
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if is_no_room(e):
            raise no_room(path, room_reason(e), run_dir, hint) from None
        raise


def is_no_room(e: BaseException) -> bool:
    """Whether `e` is a write that failed for want of room, however its writer says so: an OSError's errno,
    a Rust writer's io error (safetensors: "File too large (os error 27)"), numpy's short write
    ("800 requested and 512 written", no errno). torch's zip writer is the checkpoint writer's to tell."""
    if isinstance(e, OSError) and e.errno in NO_ROOM:
        return True
    text = str(e)
    return any(f"(os error {n})" in text for n in NO_ROOM) or bool(re.search(r"\d+ requested and \d+ written", text))


def room_reason(e: BaseException) -> str:
    """The few words for a failed write's cause: the errno's text when there is one."""
    if isinstance(e, OSError) and e.errno:
        return os.strerror(e.errno)
    return "the disk is full or a file-size limit was reached"


# the hint for a cache entry that did not fit: nothing of the run is lost, the cache can live elsewhere
CACHE_HINT = ("free disk space there (or raise the file-size limit), or point --cache-dir at a disk with room, "
              "then run the command again")


def no_room(path: Path, reason: str, run_dir: Path | None = None, hint: str | None = None) -> UserError:
    """The one line for a write that did not fit: which file, and that the previous version is intact."""
    resume = f"imagefit train --resume {run_dir}" if run_dir else "imagefit train --resume RUN_FOLDER"
    return UserError(f"could not write {path} ({reason}); the previous version of the file, if any, is intact",
                     hint or "free disk space (or raise the file-size limit), then run the command again; an "
                     f"interrupted training continues from its last checkpoint with {resume}")


def _fsync(path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:  # some file systems cannot fsync a folder; the file itself was synced
        pass
    finally:
        os.close(fd)


def finite(value):
    """`value` with every NaN or infinite float replaced by None, so JSON stays standard (no bare NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def write_json(path: str | os.PathLike, value, indent: int = 2) -> None:
    """Standard JSON (non-finite numbers as null), written atomically."""
    write_text(path, json.dumps(finite(value), indent=indent, allow_nan=False) + "\n")


def write_text(path: str | os.PathLike, text: str, run_dir: Path | None = None) -> None:
    with atomic_path(path, run_dir) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
