"""Optimizers and learning-rate schedules by name, stepped per batch."""
from __future__ import annotations

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


def build_scheduler(cfg: TrainConfig, optimizer: torch.optim.Optimizer, total_steps: int):
    """None, cosine decay to zero, one-cycle (warm-up for the first 25%, then anneal), or triangle
    (airbench's: linear from 0.2x up to the peak at 23%, then linear down to 0.07x)."""
    total_steps = max(1, total_steps)
    if cfg.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
    if cfg.scheduler == "onecycle":
        peaks = [group["lr"] for group in optimizer.param_groups]
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=peaks, total_steps=total_steps,
                                                   pct_start=0.25, anneal_strategy="linear",
                                                   cycle_momentum=cfg.optimizer == "sgd")
    if cfg.scheduler == "triangle":
        peaks = [group["lr"] for group in optimizer.param_groups]
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=peaks, total_steps=total_steps,
                                                   pct_start=0.23, anneal_strategy="linear", div_factor=5.0,
                                                   final_div_factor=0.2 / 0.07, cycle_momentum=False)
    return None
