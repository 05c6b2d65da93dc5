"""The learning-rate finder (`imagefit lr-find`, `--lr find`): Lightning's range test on imagefit's own module.

Lightning's `Tuner.lr_find` trains for a number of steps while the rate grows exponentially from `min_lr`
to `max_lr`, records the smoothed loss at each, suggests the rate where the loss falls fastest, and puts back
the weights (it checkpoints and reloads them) and the random-number state (`isolate_rng`). Here it runs on
the run's own network and training loader (the same augmentation, class weights and, for a linear probe or a
partial fine-tune, the same cached features), never on validation or test images, with three things
Lightning leaves to us:

- parameter groups keep their ratios. Lightning sets every group to the swept rate; a fine-tune's backbone
  must stay at `backbone_lr_mult` times the head (airbench's BatchNorm shifts at `bias_lr_scale` times the
  rest), so before each step `SweepModule` puts every group back at its multiple of the swept rate, which is
  the head's (the group named "head", else the first);
- the run stays reproducible: the loader's epoch is put back too, so `--lr find` trains exactly as
  `--lr <the suggestion>` would (tested);
- nothing is left in the run folder: Lightning's temporary checkpoint goes to a temporary folder.

The suggestion is rounded to 3 significant digits, so the `imagefit train ... --lr X` that `imagefit lr-find`
prints trains exactly what `--lr find` trains.
"""
from __future__ import annotations

import contextlib
import io
import json
import logging
import math
import sys
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import lightning as L
import torch

from .. import atomic
from ..config import TrainConfig
from ..errors import UserError
from .balance import balanced_class_weights
from .module import ClassifierModule

log = logging.getLogger("imagefit")

MIN_LR, MAX_LR, STEPS = 1e-8, 1.0, 100  # Lightning's defaults: 100 steps from 1e-8 to 1
JSON_NAME, PLOT_NAME = "lr_find.json", "lr_find.png"


@dataclass
class Sweep:
    """One range test: the rates tried, the smoothed training loss at each, and the suggested rate."""

    lrs: list[float]
    losses: list[float | None]  # None where the loss was not finite
    suggestion: float
    index: int  # the suggested point: lrs[index], before rounding
    min_lr: float
    max_lr: float
    steps: int  # asked for; fewer were run when the loss diverged (Lightning stops at 4x the best loss)
    seconds: float
    group_multipliers: list[float] = field(default_factory=list)  # each parameter group's rate / the swept rate
    dir: Path | None = None  # the folder it was written to

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k != "dir"}

    @classmethod
    def from_dict(cls, values: dict) -> "Sweep":
        return cls(**{k: values[k] for k in cls.__dataclass_fields__ if k in values and k != "dir"})

    def summary(self) -> dict:
        """What metrics.json keeps (the whole sweep is in lr_find.json)."""
        return {"suggestion": self.suggestion, "min_lr": self.min_lr, "max_lr": self.max_lr, "steps": self.steps,
                "steps_run": len(self.lrs), "seconds": self.seconds, "group_multipliers": self.group_multipliers,
                "sentence": self.sentence()}

    def sentence(self) -> str:
        groups = (f"; every parameter group kept its multiple of the head's rate ({', '.join(f'{m:g}' for m in self.group_multipliers)})"
                  if len(self.group_multipliers) > 1 else "")
        return (f"Learning rate {self.suggestion:g}: Lightning's learning-rate finder's suggestion, where the smoothed "
                f"training loss fell fastest in a sweep of {len(self.lrs)} steps from {self.min_lr:g} to "
                f"{self.lrs[-1]:.3g} on the training split ({self.seconds:.1f} s{groups}; {PLOT_NAME}).")


class SweepModule(ClassifierModule):
    """The run's module for the sweep: one optimizer, no schedule (the finder brings its own), and every
    parameter group stepped at its configured multiple of the swept rate."""

    def configure_optimizers(self):
        out = super().configure_optimizers()
        optimizer = out if isinstance(out, torch.optim.Optimizer) else out["optimizer"]
        groups = optimizer.param_groups
        names = [g.get("name") for g in groups]
        self.reference = names.index("head") if "head" in names else 0
        self.multipliers = [g["lr"] / groups[self.reference]["lr"] for g in groups]
        self.multipliers_used: list[float] = []
        return optimizer

    def on_before_optimizer_step(self, optimizer) -> None:
        groups = optimizer.param_groups
        rate = groups[self.reference]["lr"]  # the scheduler sets every group to the swept rate
        for group, multiplier in zip(groups, self.multipliers):
            group["lr"] = rate * multiplier
        self.multipliers_used = [g["lr"] / rate for g in groups]  # what the step used (the test reads it)


def check_range(min_lr: float = MIN_LR, max_lr: float = MAX_LR, steps: int = STEPS) -> None:
    """A sweep Lightning can suggest from, checked before any data is decoded."""
    if not 0 < min_lr < max_lr:
        raise UserError(f"the finder's range must have 0 < min_lr < max_lr, got {min_lr:g} to {max_lr:g}",
                        "pass --min-lr 1e-8 --max-lr 1")
    if steps < 13:  # Lightning's suggestion skips the first 10 points and the last one, and needs 2
        raise UserError(f"the finder needs at least 13 steps, got {steps}", "pass --steps 100")


def find_lr(cfg: TrainConfig, net: torch.nn.Module, data, train_loader, precision: str, groups=None,
            augment: bool = True, min_lr: float = MIN_LR, max_lr: float = MAX_LR, steps: int = STEPS) -> Sweep:
    """Lightning's range test on `net` with the run's training loader; `net`'s weights come back unchanged."""
    check_range(min_lr, max_lr, steps)
    from lightning.pytorch.tuner import Tuner

    from .callbacks import AtomicCheckpointIO

    class_weight = balanced_class_weights(data.train.labels, data.num_classes) if cfg.class_weights == "balanced" else None
    module = SweepModule(net, cfg.replace(scheduler="none"), data.num_classes, groups, augment=augment,
                         class_weight=class_weight, multilabel=data.train.multilabel)
    epoch = getattr(train_loader, "epoch", None)
    logging.getLogger("lightning.pytorch.trainer.connectors.checkpoint_connector").setLevel(logging.WARNING)
    # Lightning's sweep always draws a tqdm bar: shown on a terminal when progress is on, else kept out of logs
    shown = cfg.progress and sys.stderr.isatty()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="imagefit-lr-find-") as tmp, \
            warnings.catch_warnings(), contextlib.nullcontext() if shown else contextlib.redirect_stderr(io.StringIO()):
        warnings.filterwarnings("ignore", message=".*`validation_step` but have no `val_dataloader`.*")
        trainer = L.Trainer(accelerator=cfg.accelerator, devices=1, precision=precision, logger=False, max_epochs=-1,
                            enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                            default_root_dir=tmp, num_sanity_val_steps=0, limit_val_batches=0,
                            limit_train_batches=cfg.limit_train_batches, plugins=[AtomicCheckpointIO()])
        finder = Tuner(trainer).lr_find(module, train_dataloaders=train_loader, min_lr=min_lr, max_lr=max_lr,
                                        num_training=steps, update_attr=False)
    seconds = time.perf_counter() - started
    if epoch is not None:
        train_loader.epoch = epoch  # the sweep's passes do not shift the training run's shuffles
    suggestion = finder.suggestion() if finder is not None else None
    lrs = [float(x) for x in finder.results.get("lr", [])] if finder is not None else []
    losses = [float(x) if math.isfinite(x) else None for x in finder.results.get("loss", [])] if finder else []
    if suggestion is None or not math.isfinite(suggestion) or suggestion <= 0:
        raise UserError(f"the learning-rate finder found no rate: {len(lrs)} steps of the sweep were too few to "
                        "see the loss fall (it stops early when the loss diverges)",
                        f"pass a number with --lr, or run imagefit lr-find with a lower --max-lr than {max_lr:g}")
    return Sweep(lrs=lrs, losses=losses, suggestion=float(f"{suggestion:.3g}"), index=int(finder._optimal_idx),
                 min_lr=min_lr, max_lr=max_lr, steps=steps, seconds=round(seconds, 2),
                 group_multipliers=[round(m, 6) for m in module.multipliers_used])


def write_sweep(run_dir: Path, sweep: Sweep, config: dict) -> None:
    """lr_find.json (the sweep, the suggestion and the configuration) and lr_find.png, both atomically."""
    atomic.write_json(run_dir / JSON_NAME, {**sweep.to_dict(), "sentence": sweep.sentence(), "config": config})
    plot_sweep(sweep, run_dir / PLOT_NAME, title=f"{config.get('model')} on {Path(str(config.get('dataset'))).name}")
    sweep.dir = run_dir


def read_sweep(run_dir: Path) -> Sweep:
    """The sweep a run made before training (a resumed run uses it: the finder never runs twice)."""
    path = run_dir / JSON_NAME
    try:
        sweep = Sweep.from_dict(json.loads(path.read_text()))
    except (OSError, json.JSONDecodeError, TypeError) as e:
        raise UserError(f"{run_dir} was trained with lr: find but its {JSON_NAME} is unreadable ({type(e).__name__})",
                        f"start it again: imagefit train --config {run_dir / 'config.yaml'}") from None
    sweep.dir = run_dir
    return sweep


def plot_sweep(sweep: Sweep, path: Path, title: str = "") -> None:
    """The smoothed loss against the rate on a log axis, the suggested rate marked: Lightning's plot, labelled."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pairs = [(lr, loss) for lr, loss in zip(sweep.lrs, sweep.losses) if loss is not None]
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=100)
    ax.plot([p[0] for p in pairs], [p[1] for p in pairs], color="#1f77b4", linewidth=1.8, label="training loss (smoothed)")
    ax.set_xscale("log")
    point = sweep.losses[sweep.index] if 0 <= sweep.index < len(sweep.losses) else None
    ax.axvline(sweep.suggestion, color="#d62728", linestyle="--", linewidth=1.2)
    if point is not None:
        ax.plot([sweep.lrs[sweep.index]], [point], marker="o", markersize=9, color="#d62728", linestyle="none",
                label=f"suggested: {sweep.suggestion:g}")
    shown = [loss for loss in sweep.losses[10:] if loss is not None]  # the points the suggestion weighs
    if shown:  # (Lightning's smoothing starts low: its first few points are not losses to read)
        low, high = min(shown), max(shown)
        margin = 0.08 * (high - low) or 0.01 * abs(high) or 0.01
        ax.set_ylim(low - margin, high + margin)
    ax.set_xlabel("learning rate (log scale)")
    ax.set_ylabel("training loss")
    ax.set_title(f"Learning-rate finder{': ' + title if title else ''}")
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(loc="upper left")
    fig.tight_layout()
    with atomic.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
