"""Optimizers and learning-rate schedules by name, stepped per batch."""
from __future__ import annotations

import math
from typing import Callable

import torch

from ..config import TrainConfig


def build_optimizer(cfg: TrainConfig, params) -> torch.optim.Optimizer:
    """`params` may be parameter groups with their own "lr" (discriminative rates in transfer learning)."""
    lr, wd = cfg.learning_rate, cfg.weight_decay
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=cfg.momentum, nesterov=cfg.momentum > 0, weight_decay=wd)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=wd)
    return torch.optim.AdamW(params, lr=lr, weight_decay=wd)


def schedule_factor(name: str, progress: float) -> float:
    """The learning rate as a fraction of the peak, at `progress` (0 to 1) of the planned steps.

    cosine: from the peak to zero. onecycle: linear warm-up from 4% to the peak over the first 25%, then
    linear to zero. triangle (airbench's): linear from 0.2x up to the peak at 23%, then down to 0.07x.
    Written as functions of progress, not of a step count fixed at the start, so a time budget that
    re-plans its length mid-run still ends its schedule exactly at its last step.
    """
    p = min(max(progress, 0.0), 1.0)
    if name == "cosine":
        return 0.5 * (1 + math.cos(math.pi * p))
    if name == "onecycle":
        return 0.04 + 0.96 * p / 0.25 if p < 0.25 else 1 - (p - 0.25) / 0.75
    if name == "triangle":
        return 0.2 + 0.8 * p / 0.23 if p < 0.23 else 1 - 0.93 * (p - 0.23) / 0.77
    return 1.0


def build_scheduler(cfg: TrainConfig, optimizer: torch.optim.Optimizer, total_steps: Callable[[], int] | int):
    """A per-step LambdaLR over `schedule_factor`; `total_steps` is read at every step (a plan may change it)."""
    if cfg.scheduler == "none":
        return None
    total = total_steps if callable(total_steps) else (lambda: total_steps)
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: schedule_factor(cfg.scheduler, step / max(1, total())))
