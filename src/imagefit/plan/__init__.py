"""Every decision made before training, kept apart from what the user pinned.

- `start.py`: from scratch or from ImageNet weights (`--recipe auto`), from the data's size and the budget;
- `budget.py`: the budget plan (network, side, batch, TTA, steps), a pure function of measured speeds;
- `probe.py`: the thin measuring layer that times the candidates on this machine, and `apply_plan`;
- `transfer.py`: the transfer plan (strategy, depth, side), or a pinned strategy's side.

A run decides in three steps because each needs what the step before let it build (train/run.py): the
network and side from the decoded data, the transfer plan from the pretrained model, the steps from what
trains (the whole network, or its top on cached activations). `Decisions` holds what they chose; every
configuration key they set is recorded as the planner's (`TrainConfig.decided`).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from .budget import BudgetPlan
from .transfer import TransferChoice


@dataclass(frozen=True)
class Decisions:
    """What the run decided before training, beside the configuration it saves."""

    start: str | None = None  # recipe auto: why from scratch or from ImageNet weights
    budget: BudgetPlan | None = None  # a time budget's plan (steps re-planned on resume)
    transfer: TransferChoice | None = None  # the transfer planner's choice (None: pinned, or no budget)
    input_size: int | None = None  # the side a pretrained network sees (None: from scratch)

    def but(self, **changes) -> "Decisions":
        return replace(self, **changes)


__all__ = ["BudgetPlan", "Decisions", "TransferChoice"]
