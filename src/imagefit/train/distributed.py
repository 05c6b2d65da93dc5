"""One distributed launch per run, so that several runs can follow each other in one process (a study).

Lightning's script launcher starts the workers on rank 0's first `fit` and marks rank 0's environment
(LOCAL_RANK, MASTER_PORT, ...) as launched; the process group stays up after `fit`. imagefit's workers
train one run and exit, so a second run in the same process would wait for workers that are gone. Each run
therefore ends its process group and, in the process that launched the workers, removes the launcher's
marks: the next run launches fresh workers.
"""
from __future__ import annotations

import contextlib
import os

import torch

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
