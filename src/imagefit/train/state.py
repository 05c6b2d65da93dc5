"""What a run carries from phase to phase (train/run.py): its session (device, precision, clock, the decisions
shared by the processes of a distributed run) and what it built to train."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import lightning as L
import torch

from ..config import TrainConfig
from ..data.pipeline import PreparedData
from ..runtime import compute_device, resolve_precision
from .before_fit import check_trainer_args, quiet_lightning
from .callbacks import read_checkpoint
from .clock import Stopwatch
from .distributed import RankZeroDecisions


@dataclass
class Session:
    """Where the run computes and its clock: fixed before the data is touched."""

    started: float  # time.perf_counter() at the start of the run's wall clock
    watch: Stopwatch
    precision: str
    device: torch.device
    world_size: int
    shared: RankZeroDecisions  # decisions made once, by rank 0, for every process of a distributed run
    checkpoint: dict  # a resumed run's last checkpoint ({} otherwise)
    launch: float = 0.0  # seconds of the budget set aside for the other processes of a distributed launch
    callbacks: list = field(default_factory=list)  # a caller's extra Lightning callbacks (tune's pruning)

    @classmethod
    def open(cls, cfg: TrainConfig, started: float, ckpt: Path | None) -> "Session":
        watch = Stopwatch(started)
        quiet_lightning()
        # denormal floats (momentum buffers decaying at the end of a schedule) are 10-100x slower on x86 CPUs
        torch.set_flush_denormal(True)
        L.seed_everything(cfg.seed, workers=True, verbose=False)
        precision = resolve_precision(cfg.precision, cfg.accelerator)
        device = compute_device(cfg.accelerator)
        world_size = check_trainer_args(cfg, precision)  # before the data is decoded and before the run folder exists
        shared = RankZeroDecisions.join(Path(cfg.runs_dir).expanduser(), time.time() - (time.perf_counter() - started))
        watch.lap("start")
        return cls(started, watch, precision, device, world_size, shared, read_checkpoint(ckpt) if ckpt else {})

    @property
    def history_state(self) -> dict:
        return self.checkpoint.get("callbacks", {}).get("HistoryWriter", {})

    def spent(self) -> float:
        """Seconds of the budget used: this session's and those of the sessions before a resume."""
        return self.history_state.get("elapsed", 0.0) + time.perf_counter() - self.started

    def spent_planning(self) -> float:
        return self.spent() + self.launch


@dataclass
class Built:
    """What trains, on what: the whole model, or a part of it on cached features or activations."""

    model: torch.nn.Module  # the whole network (saved, evaluated, exported)
    trainable: torch.nn.Module  # what the optimizer steps: the model, its head, or its top
    groups: list | None  # fine-tuning's parameter groups (backbone at a lower rate)
    data: PreparedData  # images, or the frozen part's features or activations
    cached: bool  # trains on cached features or activations (no augmentation, no TTA)
    total_params: int
    trainable_params: int
    eval_side: int  # the side evaluation batches are sized for (0: no cap)
