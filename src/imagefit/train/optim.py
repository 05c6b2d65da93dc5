"""Optimizers and learning-rate schedules by name, stepped per batch."""
from __future__ import annotations

import math
from typing import Callable

import torch

from ..config import TrainConfig


# airbench94_muon's settings for convolution filters: the update's size is set by Newton-Schulz, not by the
# gradient's scale, so the rate does not follow the batch size or the loss's reduction
MUON_LR, MUON_MOMENTUM = 0.24, 0.6


def newton_schulz(g: torch.Tensor, steps: int = 5) -> torch.Tensor:
    """The nearest semi-orthogonal matrix to `g` (its singular values pushed towards 1): Muon's update. The
    quintic iteration's coefficients are Keller Jordan's; bf16 matmuls, as in airbench94_muon."""
    a, b, c = 3.4445, -4.7750, 2.0315
    x = g.bfloat16() / (g.norm() + 1e-7)
    tall = g.size(0) > g.size(1)
    x = x.T if tall else x
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return (x.T if tall else x).to(g.dtype)


class MuonSGD(torch.optim.Optimizer):
    """Muon (Jordan et al., 2024; airbench94_muon: 94% on CIFAR-10 in 8 epochs instead of 10) on the groups
    marked `muon` (convolution filters: each step renormalises the filter bank and applies the orthogonalised
    Nesterov momentum), Nesterov SGD on the rest (BatchNorm shifts, the head). One optimizer, so one schedule
    sets every group's rate. Hand-written because torch.optim.Muon takes 2-D matrices only; a filter bank is
    4-D and is flattened per output channel here, as in airbench94_muon."""

    def __init__(self, groups, lr: float, momentum: float, weight_decay: float):
        super().__init__(groups, {"lr": lr, "momentum": momentum, "weight_decay": weight_decay, "muon": False})

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad if group["muon"] or not group["weight_decay"] else p.grad.add(p, alpha=group["weight_decay"])
                state = self.state[p]
                if "momentum_buffer" not in state:  # not setdefault: that would allocate a zero buffer every step
                    state["momentum_buffer"] = torch.zeros_like(g)
                buf = state["momentum_buffer"]
                buf.mul_(group["momentum"]).add_(g)
                g = g.add(buf, alpha=group["momentum"])  # Nesterov
                if group["muon"]:
                    p.mul_(len(p) ** 0.5 / p.norm())
                    g = newton_schulz(g.reshape(len(g), -1)).view(g.shape)
                p.add_(g, alpha=-group["lr"])
        return loss


def muon_groups(params) -> list[dict]:
    """Parameter groups with every convolution filter bank (4-D) moved to one Muon group."""
    groups = [dict(g) for g in params] if isinstance(params, list) and params and isinstance(params[0], dict) \
        else [{"params": list(params)}]
    filters = []
    for g in groups:
        g["params"] = list(g["params"])
        filters += [p for p in g["params"] if p.ndim == 4]
        g["params"] = [p for p in g["params"] if p.ndim != 4]
    groups = [g for g in groups if g["params"]]
    return groups + [{"params": filters, "lr": MUON_LR, "momentum": MUON_MOMENTUM, "weight_decay": 0.0, "muon": True}]


def build_optimizer(cfg: TrainConfig, params) -> torch.optim.Optimizer:
    """`params` may be parameter groups with their own "lr" (discriminative rates in transfer learning)."""
    lr, wd = cfg.learning_rate, cfg.weight_decay
    if cfg.optimizer == "muon":
        return MuonSGD(muon_groups(params), lr=lr, momentum=cfg.momentum, weight_decay=wd)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=cfg.momentum, nesterov=cfg.momentum > 0, weight_decay=wd)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=wd)
    return torch.optim.AdamW(params, lr=lr, weight_decay=wd)


def probe_optimizer(cfg: TrainConfig) -> Callable:
    """The run's optimizer at a rate that leaves the planner's throw-away copy unchanged: its step is timed too."""
    return lambda params: build_optimizer(cfg.replace(lr=1e-9), params)


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
