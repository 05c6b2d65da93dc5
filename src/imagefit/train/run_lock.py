"""One process at a time per run folder.

Two `imagefit train --resume` of one folder would interleave their checkpoints and history, and a study that
redoes a run would delete a folder another process is still writing. The lock is the `filelock` package's
(an OS file lock, `flock` on Unix): the operating system drops it when its process dies, even by kill -9, so
a crashed run never leaves a stale lock behind and `--resume` works at once. Only rank 0 of a distributed
launch takes it: the other ranks write nothing.
"""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from filelock import FileLock, Timeout

from ..errors import UserError

LOCK_FILE = ".imagefit.lock"  # left in place after a run (deleting a lock file races with the next taker)


@contextmanager
def run_folder_lock(run_dir: str | Path) -> Iterator[None]:
    """Hold `run_dir` for the duration of the block, or fail at once with one line if another process holds it."""
    lock = FileLock(str(Path(run_dir) / LOCK_FILE), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise UserError(f"run folder {run_dir} is in use by another imagefit process",
                        "wait for that process to finish (or stop it with Ctrl-C), then run the command again") from None
    try:
        yield
    finally:
        lock.release()
