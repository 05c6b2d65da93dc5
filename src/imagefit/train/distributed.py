"""What distributed training needs beyond Lightning: one launch per run, and one set of decisions for all ranks.

One launch per run, so that several runs can follow each other in one process (a study).

Lightning's script launcher starts the workers on rank 0's first `fit` and marks rank 0's environment
(LOCAL_RANK, MASTER_PORT, ...) as launched; the process group stays up after `fit`. imagefit's workers
train one run and exit, so a second run in the same process would wait for workers that are gone. Each run
therefore ends its process group and, in the process that launched the workers, removes the launcher's
marks: the next run launches fresh workers.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import time
from pathlib import Path

import torch

from ..atomic import write_json

LAUNCHER_ENV = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE")


@contextlib.contextmanager
def one_launch():
    launches_here = "LOCAL_RANK" not in os.environ  # not a worker, not under torchrun or SLURM's srun
    try:
        yield
    finally:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
        if launches_here:
            for key in LAUNCHER_ENV:
                os.environ.pop(key, None)


# ---- one set of decisions for every rank --------------------------------------------------------------
RUN_DIR_ENV = "IMAGEFIT_RUN_DIR"
DECISIONS_FILE = ".decisions.json"
JOIN_TIMEOUT = 3600.0  # seconds a worker waits for rank 0 to decode, plan and create the run folder


def launched_rank() -> int:
    """This process's rank as set by a distributed launcher (0 for the launching process); SLURM's srun sets
    only SLURM_PROCID."""
    return int(os.environ.get("RANK", os.environ.get("SLURM_PROCID", os.environ.get("LOCAL_RANK", 0))))


def external_launch_key() -> str | None:
    """What every process of one torchrun or srun launch shares; None for a single process and for the workers
    Lightning starts itself (they inherit IMAGEFIT_RUN_DIR from rank 0 instead)."""
    if "TORCHELASTIC_RUN_ID" in os.environ:
        parts = [os.environ.get(k, "") for k in ("TORCHELASTIC_RUN_ID", "MASTER_ADDR", "MASTER_PORT")]
    elif int(os.environ.get("SLURM_NTASKS", "1")) > 1 and "SLURM_PROCID" in os.environ:
        parts = [os.environ.get(k, "") for k in ("SLURM_JOB_ID", "SLURM_STEP_ID")]
    else:
        return None
    return re.sub(r"[^A-Za-z0-9_.-]", "_", "-".join(parts))


class RankZeroDecisions:
    """Decisions made from the clock (from scratch or transfer, the time-budget plan, the transfer plan, the
    steps a resumed run has left) are rank 0's, for every rank: each rank measuring its own speeds would
    plan its own network or step count, and the ranks would hang or fail at their first all-reduce.

    Rank 0 decides and writes what it decided into the run folder before training starts. The workers
    Lightning launches find that folder in IMAGEFIT_RUN_DIR; under torchrun or srun, where every rank starts
    at once, rank 0 also leaves the folder's path in runs/.launch-<launch id>.json and the workers wait for
    it (the runs folder must be shared, as on any cluster file system). A worker skips the measurements.
    Each rank keeps its own data preparation (a decode cache makes it cheap), so nothing large is sent."""

    def __init__(self, made: dict | None = None, worker: bool = False):
        self.made, self.worker = made or {}, worker

    @classmethod
    def join(cls, runs_dir: Path, started_wall: float, timeout: float = JOIN_TIMEOUT) -> "RankZeroDecisions":
        if launched_rank() == 0:
            return cls()
        folder, key = os.environ.get(RUN_DIR_ENV), external_launch_key()
        if key:  # every rank started at once: wait for rank 0's folder
            folder = _wait_for(runs_dir / f".launch-{key}.json", started_wall, timeout)["run_dir"]
            os.environ[RUN_DIR_ENV] = folder
        if not folder:
            return cls()
        return cls(_wait_for(Path(folder) / DECISIONS_FILE, timeout=timeout), worker=True)

    def decide(self, key: str, make, encode=lambda v: v, decode=lambda v: v):
        if self.worker and key in self.made:
            return decode(self.made[key])
        value = make()
        if not self.worker:
            self.made[key] = encode(value)
        return value

    def publish(self, run_dir: Path, world_size: int) -> Path | None:
        """Rank 0, before training on several processes: the decisions into the run folder, and for torchrun or
        srun its path where the waiting workers look (returned: rank 0 removes it when the run ends)."""
        if self.worker or launched_rank() != 0 or world_size < 2:
            return None
        write_json(run_dir / DECISIONS_FILE, self.made)
        key = external_launch_key()
        if key is None:
            return None
        pointer = run_dir.parent / f".launch-{key}.json"
        write_json(pointer, {"run_dir": str(run_dir.resolve())})
        return pointer


def _wait_for(path: Path, not_before: float = 0.0, timeout: float = JOIN_TIMEOUT) -> dict:
    """A JSON file written (atomically) by rank 0 since `not_before` (a launch pointer left by an earlier launch
    with the same launch id is stale; a run folder's decisions are always this launch's)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if path.stat().st_mtime >= not_before - 5:
                return json.loads(path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"rank {launched_rank()}: rank 0 did not write {path} within {timeout:.0f} s")
        time.sleep(0.2)


def agree(trainer, values: tuple[int, ...]) -> tuple[int, ...]:
    """Rank 0's integers on every rank. Called at every training step under DDP: one broadcast of a small tensor
    on the training device, not Lightning's pickled-object broadcast."""
    if trainer.world_size < 2:
        return values
    shared = torch.tensor(values, dtype=torch.long, device=trainer.strategy.root_device)
    torch.distributed.broadcast(shared, src=0)
    return tuple(shared.tolist())
