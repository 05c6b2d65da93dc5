"""Fit a run to a time budget: measure the speed first, then plan the epochs that fit.

Cutting a schedule off when time runs out leaves the learning rate high and the model at its
noisiest; planning the number of epochs up front lets one-cycle or cosine finish properly inside
the budget. A Lightning Timer still stops the run if the estimate was optimistic.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .precision import autocast, is_convolutional

# evaluation needs no backward pass and no optimizer step: about a third of a training step
EVAL_STEP_FRACTION = 0.35
REPORT_SECONDS = 3.0  # metrics, plots and report after the test pass
LOOP_SECONDS_PER_STEP = 0.002  # Lightning's loop, logging and progress bar, measured on these CPUs
CHECKPOINT_BYTES_PER_SECOND = 300e6  # two checkpoints (last, best) a epoch: weights + optimizer state


@dataclass
class BudgetPlan:
    budget_seconds: float
    step_seconds: float
    epoch_seconds: float
    epochs: int
    train_deadline: float  # seconds from the run's start by which fit() must end, leaving room to evaluate

    def sentence(self, max_epochs: int) -> str:
        capped = " (the configured maximum)" if self.epochs == max_epochs else ""
        return (f"Time budget {self.budget_seconds:.0f} s: a training step measured {self.step_seconds * 1000:.0f} ms, "
                f"an epoch about {self.epoch_seconds:.1f} s, so {self.epochs} epochs{capped} were planned and the "
                f"learning-rate schedule was fitted to them.")


def measure_step_seconds(model: torch.nn.Module, batch: tuple[torch.Tensor, torch.Tensor], precision: str,
                         steps: int = 6) -> float:
    """Seconds per optimizer step on a throw-away copy of the model (the run itself is untouched)."""
    probe = copy.deepcopy(model).train()
    optimizer = torch.optim.SGD(probe.parameters(), lr=1e-6)
    x, y = batch
    device = next(probe.parameters()).device
    x, y = x.to(device), y.to(device)
    if is_convolutional(probe):
        probe.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    rng = torch.get_rng_state()
    timings = []
    for _ in range(steps):
        start = time.perf_counter()
        with autocast(precision, device.type):
            loss = F.cross_entropy(probe(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        timings.append(time.perf_counter() - start)
    torch.set_rng_state(rng)
    timings = sorted(timings[2:])  # the first steps pay for allocation and kernel selection
    return timings[len(timings) // 2]


def plan_epochs(budget_seconds: float, elapsed: float, step_seconds: float, train_steps: int, val_steps: int,
                test_steps: int, max_epochs: int, val_every: int = 1, params: int = 0) -> BudgetPlan:
    checkpoint = 2 * 3 * 4 * params / CHECKPOINT_BYTES_PER_SECOND
    epoch = (train_steps * (step_seconds + LOOP_SECONDS_PER_STEP)
             + val_steps * EVAL_STEP_FRACTION * step_seconds / val_every + checkpoint)
    reserve = test_steps * EVAL_STEP_FRACTION * step_seconds * 2 + REPORT_SECONDS  # final and best model
    deadline = budget_seconds - reserve
    epochs = max(1, min(max_epochs, int((deadline - elapsed) // epoch)))
    return BudgetPlan(budget_seconds, step_seconds, epoch, epochs, deadline)
