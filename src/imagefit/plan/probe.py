"""Measure the candidates a budget could buy on this machine, then let `budget.plan_budget` choose.

The measurement is the only part of planning that needs models and data: a few warm steps of each
candidate (airbench94 and airbench93 at the data's side and cheaper ones, or the configured model alone)
on real training images with the run's augmentation. Candidates that cannot reach the epochs a schedule
needs even on a rough estimate are not measured at all, so the probe costs seconds, and those seconds
are measured and subtracted from the budget like every other fixed cost.
"""
from __future__ import annotations

import dataclasses
import logging

from ..config import TrainConfig
from ..data.augment import AUGMENTATIONS
from ..data.pipeline import PreparedData
from ..recipes import FAST_BATCH, recipe_defaults
from .budget import (TARGET_EPOCHS, BudgetPlan, Speed, Workload, candidate_sizes, choose_batch, early_size_for,
                     measure_speed, plan_budget)

log = logging.getLogger("imagefit")
PROBE_BATCH = 48  # images per probe step: cheap; optimistic at large sides (budget.required_epochs keeps a margin)
# A linear head on fixed features needs few epochs: on CIFAR-10-JPEG (Lite0 features at 128 px, Adam, one-cycle over
# 100 epochs) validation loss bottomed at epoch 13 and rose after (0.56 to 0.67; test 77.9%); with the cap, probes
# at 96 and 192 px gained 1.1-1.6 points by spending the time on a larger side instead (bench/README.md, B2).
PROBE_MAX_EPOCHS = 30
FAMILY = ("airbench93", "airbench")  # narrow first: its speeds bound the wide net's


def workload(cfg: TrainConfig, data: PreparedData, train_images: int) -> Workload:
    return Workload(train_images=train_images, val_images=len(data.val) if data.val is not None else 0,
                    test_images=data.test_count, num_classes=data.num_classes, image_size=data.image_size,
                    max_batch=FAST_BATCH if cfg.recipe == "fast" else 128 if cfg.batch_size is None else cfg.batch_size,
                    batch_size=cfg.batch_size, tta=cfg.tta, early_size=cfg.early_size,
                    early_fraction=cfg.early_fraction)


def plan_run(cfg: TrainConfig, data: PreparedData, precision: str, spent, make_model, train_images=None,
             fixed_model=None, augment: bool = True, checkpoint_seconds: float = 0.0,
             measured: Speed | None = None, make_optimizer=None) -> BudgetPlan:
    """`spent()`: seconds of the budget used so far. `make_model(name)`: a fresh model of that name.
    `make_optimizer(params)`: the run's own optimizer (Muon's Newton-Schulz steps cost time too), built on the
    probe's throw-away copy; the caller passes it, so planning does not reach up into training.
    `fixed_model`: the run's model when only the step count is the planner's (transfer, a pinned model);
    `measured`: its speed when already measured (the transfer planner measured the whole network)."""
    work = workload(cfg, data, train_images if train_images is not None else len(data.train))
    if cfg.transfer and cfg.early_size is None:
        # a pretrained net resizes every batch to its input size: a smaller side early would only blur it
        work = dataclasses.replace(work, early_size=0)
    if cfg.transfer and cfg.transfer_strategy == "linear-probe":
        work = dataclasses.replace(work, max_epochs=PROBE_MAX_EPOCHS)
    if measured is not None:
        return plan_budget(cfg.budget_seconds, spent(), work, [measured], checkpoint_seconds=checkpoint_seconds)
    if data.train.images.is_floating_point():  # cached features or activations: no images to augment at test time
        work = dataclasses.replace(work, tta="none")
    # the run's own batch when it is small: oneDNN compiles kernels per shape (seconds, on a first backward
    # pass), and the training steps then reuse what the probe compiled
    batch = min(PROBE_BATCH, work.batch_size or choose_batch(work.train_images, work.max_batch))
    sample = data.train.take(0, min(len(data.train), batch))
    labels = data.train.labels[:len(sample)]
    augment = AUGMENTATIONS[cfg.augment] if augment else None
    speeds: list[Speed] = []

    def measure(model, name, size):
        train, evaluate = measure_speed(model, sample, labels, precision, size, augment, make_optimizer=make_optimizer)
        speeds.append(Speed(name, size, train, evaluate))
        log.info("probe: %s at %d px trains %.0f images/s, evaluates %.0f", name, size, train, evaluate)

    if fixed_model is not None or (cfg.model is not None and cfg.model not in FAMILY):
        model = fixed_model if fixed_model is not None else make_model(cfg.model)
        size = cfg.image_size or getattr(model, "input_size", None) or data.image_size
        measure(model, cfg.model, size)
        early = cfg.early_size if cfg.early_size is not None else None
        if early:
            measure(model, cfg.model, early)
    else:
        names = (cfg.model,) if cfg.model else FAMILY
        sizes = [cfg.image_size or data.image_size] if cfg.image_size or data.loader == "stream" else \
            candidate_sizes(data.image_size)
        for name in names:
            model = make_model(name, max(sizes))
            for size in sorted(sizes):  # smallest first: once a side is hopeless, larger ones are too
                early = cfg.early_size if cfg.early_size is not None else early_size_for(size)
                if early and not any(s.model == name and s.size == early for s in speeds):
                    measure(model, name, early)
                measure(model, name, size)
                trial = plan_budget(cfg.budget_seconds, spent(), work, [s for s in speeds if s.model == name and s.size in (size, early)])
                if trial.epochs < 0.6 * TARGET_EPOCHS.get(name, 10):
                    break
    plan = plan_budget(cfg.budget_seconds, spent(), work, speeds, checkpoint_seconds=checkpoint_seconds)
    return plan


def apply_plan(cfg: TrainConfig, plan: BudgetPlan) -> TrainConfig:
    """The config the run saves: every planned choice written down, so `--config` repeats it. A key is the
    planner's when it was unset or the plan changed it; a pinned key (the plan kept it) keeps its source."""
    changes = dict(model=plan.model, image_size=plan.image_size if not cfg.transfer else cfg.image_size,
                   early_size=plan.early_size or cfg.early_size, batch_size=plan.batch_size, tta=plan.tta)
    if cfg.lr is None and cfg.recipe != "none":
        changes["lr"] = recipe_defaults(cfg.recipe, {"batch_size": plan.batch_size})["lr"]
    chosen = {k: v for k, v in changes.items() if getattr(cfg, k) is None or getattr(cfg, k) != v}
    if cfg.epochs is None:
        chosen["epochs"] = None  # as steps: the plan's epochs are in metrics.json's budget_plan
    return cfg.replace(**changes).decided("planner", **chosen)
