"""What a tune's trials and its final run are configured with: the user's keys, the searched ones, and what the
untuned first trial (the reference) fixes for the others."""
from __future__ import annotations

from ..config import TrainConfig

# image augmentations: a trial that trains on cached features or activations never sees an image to augment
IMAGE_KEYS = ("augment", "mixup", "cutmix", "random_erasing")
TRANSFER_PLAN = ("transfer_strategy", "trainable_blocks", "image_size")


def reference_of(cfg: TrainConfig, space: dict, trial: int) -> dict:
    """What the untuned first trial fixes for the others: its batch, rate and start (the final run's too) and, from
    ImageNet weights, its transfer plan (trials only: one trunk cache, settings compared on the same blocks and
    side; the final run plans its own for its longer budget), and the keys its cached inputs make inert."""
    ref = {"batch_size": cfg.batch_size, "lr": float(cfg.lr), "pretrained": bool(cfg.transfer), "trial": trial}
    if cfg.transfer:
        ref["transfer"] = {k: getattr(cfg, k) for k in TRANSFER_PLAN}
        if cfg.transfer_strategy in ("partial", "linear-probe"):
            ref["inert"] = [k for k in IMAGE_KEYS if k in space]
    return ref


def trial_options(given: dict, reference: dict | None) -> dict:
    """What every trial sets that the final run does not: no test pass (a trial is ranked on validation, and on
    CIFAR-10 a 30-s trial's test pass took a third of it; the seconds go to training instead), and the
    reference's transfer plan. On Imagenette at 30 minutes, trials left to plan their own chose 5, 8 or 11 blocks at
    96 or 128 px, and each new cut re-cached the trunk: 28-48 s of a 90-s trial."""
    options = {} if "test_pass" in given else {"test_pass": False}
    plan = (reference or {}).get("transfer") or {}
    if not any(k in given for k in TRANSFER_PLAN):  # a user's pin of any of them: the planner keeps the rest
        options.update({k: v for k, v in plan.items() if v is not None})
    return options


def run_config(given: dict, sources: dict, params: dict, reference: dict | None, by_tune: dict | None = None,
               **extra) -> TrainConfig:
    """A trial's (or the final run's) configuration: the user's keys, the tuned ones and the reference's pins."""
    tuned = {k: v for k, v in params.items() if k != "lr_scale"}
    if reference:
        pins = {"batch_size": reference["batch_size"]}
        if "pretrained" not in given and "weights" not in given:
            pins["pretrained"] = reference["pretrained"]
        if "lr_scale" in params:
            pins["lr"] = reference["lr"] * params["lr_scale"]
        tuned = {**{k: v for k, v in pins.items() if k not in given}, **tuned}
    tuned.update(by_tune or {})
    values = {**given, **tuned, **extra}
    return TrainConfig.from_dict(values, source="the tune", sources={**sources, **dict.fromkeys(tuned, "tune")})
