"""The time-budget planner: the best run a budget buys, chosen from speeds measured on this machine.

`imagefit train --time-budget 10m` without `--epochs` asks for the best model in ten minutes. The
planner (`plan_budget`, a pure function of measured speeds, so it is tested without a clock) chooses
what the user left unset:

- **batch size**: the largest power of two (up to the recipe's) that still gives every epoch at
  least MIN_STEPS_PER_EPOCH optimizer steps. A 7,000-image set at batch 1,024 gets 6 steps an epoch,
  too few for any schedule to work; at 256 it gets 27.
- **network and resolution**: from the candidates measured (airbench94 and the narrower airbench93, at
  the data's size and smaller ones), the highest resolution, then the widest network, whose schedule
  still gets the epochs it needs (`required_epochs`: TARGET_EPOCHS at the smallest side, more at larger
  ones: epochs before pixels); failing that, the one that gets the most epochs.
- **progressive resizing**: for sides of 64 px and more, the first half of the steps at half the side
  (fastai's and the ImageNet speedruns' trick: early steps learn coarse features at a quarter of the cost).
- **test-time augmentation**: the most views whose cost stays under TTA_SHARE of the budget.
- **steps**: every second left after the measured fixed costs (decoding, set-up, the probe itself)
  and the estimated evaluation and report costs, planned in optimizer steps (the last epoch may be partial)
  and fitted by the learning-rate schedule.

`FollowPlan` (callbacks) keeps the run on plan: it re-plans the remaining steps when the measured speed
drifts more than DRIFT from the plan, and a resumed run re-plans the time that is left.
"""
from __future__ import annotations

import copy
import math
import statistics
import time
from dataclasses import asdict, dataclass, field, replace

import torch
import torch.nn.functional as F

from ..runtime import autocast, is_convolutional, synchronize
from ..models.loss import classification_loss

MIN_STEPS_PER_EPOCH = 25
MIN_BATCH = 16
TARGET_EPOCHS = {"airbench": 10.0, "airbench93": 10.0}  # airbench94: 10 epochs; airbench93: 11 (we allow 10)
DEFAULT_TARGET_EPOCHS = 10.0
MAX_EPOCHS = 100  # beyond this a small data set gains nothing: the rest of the budget is left unused, and said
TTA_VIEWS = {"none": 1, "flip": 2, "flip-translate": 6}
TTA_EVAL_COST = {"none": 1.0, "flip": 1.2, "flip-translate": 1.8}  # per view, against a validation pass (measured)
TTA_SHARE = 0.04  # test-time augmentation may take this share of the budget
END_MARGIN = 0.02  # aim to end at 98% of the budget: the report's time is an estimate
WRITE_SECONDS = 2.5  # metrics, plots (Grad-CAM included), report.md and report.html; grows with the classes' confusion matrix
WRITE_SECONDS_PER_CLASS = 0.03
LOOP_SECONDS_PER_STEP = 0.003  # Lightning's loop, logging and progress bar, measured on these CPUs
DRIFT = 0.10
EPOCHS_PER_PIXELS = 0.5  # a side k times the smallest candidate's must buy k**0.5 times the target epochs
PROGRESSIVE_FROM = 64  # sides from which the early steps run at half the side


@dataclass(frozen=True)
class Workload:
    """What the planner plans for: the data's shape and what the user pinned."""

    train_images: int
    val_images: int
    test_images: int
    num_classes: int
    image_size: int  # the data's side as decoded
    max_batch: int = 1024  # the recipe's batch: the largest the planner tries
    batch_size: int | None = None  # pinned values (None: the planner's)
    tta: str | None = None
    early_size: int | None = None
    early_fraction: float = 0.5
    max_epochs: int = MAX_EPOCHS


@dataclass
class Speed:
    """Measured images per second of one (model, side) on this machine."""

    model: str
    size: int
    train: float  # training images/s: forward, backward, optimizer step, augmentation
    eval: float  # forward-only images/s


@dataclass
class BudgetPlan:
    budget_seconds: float
    spent_seconds: float  # before training: decoding, set-up, the probe (measured)
    model: str
    image_size: int
    early_size: int | None
    early_fraction: float
    batch_size: int
    steps_per_epoch: int
    steps: int  # optimizer steps in all (the schedule's length)
    tta: str
    train_seconds: float  # planned time in training steps
    step_seconds: float  # per step at the full side
    early_step_seconds: float  # per step at the early side
    val_seconds: float  # per validation pass
    test_seconds: float  # the final passes over test and validation, with TTA
    write_seconds: float
    reasons: list[str] = field(default_factory=list)
    replans: list[str] = field(default_factory=list)
    max_steps: int | None = None  # the epoch cap in steps: re-planning never goes past it
    ranks: int = 1  # the processes its steps are counted in (for_ranks)

    @property
    def epochs(self) -> float:
        return self.steps / self.steps_per_epoch

    @property
    def max_epochs(self) -> int:
        return max(1, math.ceil(self.steps / self.steps_per_epoch))

    @property
    def switch_step(self) -> int:
        """The first step at the full side."""
        return round(self.early_fraction * self.steps) if self.early_size else 0

    def size_at(self, step: int) -> int:
        return self.early_size if self.early_size and step < self.switch_step else self.image_size

    @property
    def train_deadline(self) -> float:
        """Seconds from the run's start by which training (validation included) must end."""
        return self.budget_seconds * (1 - END_MARGIN) - self.test_seconds - self.write_seconds

    def remaining_step_seconds(self, done: int) -> float:
        early = max(0, self.switch_step - done)
        late = max(0, self.steps - max(done, self.switch_step))
        return early * self.early_step_seconds + late * self.step_seconds

    def sentence(self) -> str:
        e = self.epochs
        phases = (f"{e * self.early_fraction:.1f} epochs at {self.early_size} px and {e * (1 - self.early_fraction):.1f} "
                  f"at {self.image_size} px" if self.early_size else f"{e:.1f} epochs at {self.image_size} px")
        why = "; ".join(self.reasons)
        return (f"Time budget {self.budget_seconds:.0f} s: {self.spent_seconds:.0f} s went to decoding, set-up and "
                f"measuring speeds, so {self.model} trains {self.steps} steps of batch {self.batch_size} "
                f"({phases}, about {self.train_seconds:.0f} s), with test-time augmentation '{self.tta}'"
                + (f", because {why}." if why else "."))

    @classmethod
    def from_dict(cls, values: dict) -> "BudgetPlan":
        from dataclasses import fields

        return cls(**{f.name: values[f.name] for f in fields(cls) if f.name in values})

    def to_dict(self) -> dict:
        d = asdict(self)
        d.update(epochs=round(self.epochs, 2), switch_step=self.switch_step)
        return d


def for_ranks(plan: BudgetPlan, ranks: int) -> BudgetPlan:
    """The plan counted in the steps of each of `ranks` processes (DDP). Each takes 1/ranks of every epoch, so
    an epoch has 1/ranks of the steps, and a step of each process sees `ranks` batches: at the throughput the
    probe measured (true of processes sharing a CPU's cores) a step takes `ranks` times as long. GPUs of their
    own are faster than that, and re-planning adds the steps they afford. Counted in one process's steps, a
    two-process run stopped at the epoch cap with a third of its budget unused."""
    if plan.ranks == ranks:
        return plan
    scale = ranks / plan.ranks
    fewer = lambda n: max(1, math.ceil(n / scale))  # noqa: E731
    return replace(plan, steps=fewer(plan.steps), steps_per_epoch=fewer(plan.steps_per_epoch),
                   max_steps=fewer(plan.max_steps) if plan.max_steps else None, step_seconds=plan.step_seconds * scale,
                   early_step_seconds=plan.early_step_seconds * scale, ranks=ranks,
                   reasons=[*plan.reasons, f"counted in the steps of each of {ranks} processes, each taking 1/{ranks} "
                            "of every epoch"])


def choose_batch(train_images: int, max_batch: int) -> int:
    """The largest power of two up to `max_batch` that leaves at least MIN_STEPS_PER_EPOCH steps an epoch."""
    batch = 1 << max(0, int(math.log2(max(1, max_batch))))
    while batch > MIN_BATCH and train_images / batch < MIN_STEPS_PER_EPOCH:
        batch //= 2
    return batch


def choose_tta(test_images: int, eval_per_second: float, budget_seconds: float) -> str:
    if not test_images:  # no test pass
        return "none"
    for tta in ("flip-translate", "flip", "none"):
        if test_images * TTA_VIEWS[tta] * TTA_EVAL_COST[tta] / eval_per_second <= TTA_SHARE * budget_seconds:
            return tta
    return "none"


def early_size_for(size: int) -> int | None:
    """Half the side (a multiple of 8) for sides of PROGRESSIVE_FROM px and more; small images keep theirs."""
    return max(16, (size // 2) // 8 * 8) if size >= PROGRESSIVE_FROM else None


def candidate_sizes(size: int) -> list[int]:
    """The data's side and, for larger images, cheaper ones (multiples of 8, not below 32), largest first.
    Images under 16 px are upscaled to 16: airbench's three poolings need at least that."""
    sizes = [max(size, 16)]
    for fraction in (0.75, 0.5):
        s = int(size * fraction) // 8 * 8
        if s >= 32 and s not in sizes and size > 48:
            sizes.append(s)
    return sizes


def required_epochs(model: str, size: int, smallest: int) -> float:
    """Epochs a setting must reach to be chosen over a smaller side: epochs before pixels.

    Measured on Imagenette (128-px photos, airbench93 with Muon, progressive resizing): 13 epochs at 64 px
    gave 88.0%, 8.5 at 128 px 86.7% (and, before Muon, 9 at 96 px 86.5%): a larger side pays only once
    the schedule is long enough. The probe also errs by side: the run's steps at 96-128 px took 1.3-2x the
    probed time, at 32-48 px 0.7-0.9x, so the margin grows with the side."""
    return TARGET_EPOCHS.get(model, DEFAULT_TARGET_EPOCHS) * (size / max(1, smallest)) ** EPOCHS_PER_PIXELS


def final_pass_images(test_images: int, val_images: int) -> int:
    """Images the final pass evaluates: test, and validation again for the temperature fit; none without a test
    pass (a tune's trial is ranked on the validation accuracy training already measured)."""
    return test_images + val_images if test_images else 0


def plan_budget(budget_seconds: float, spent_seconds: float, work: Workload, speeds: list[Speed],
                loop_seconds_per_step: float = LOOP_SECONDS_PER_STEP,
                checkpoint_seconds: float = 0.0) -> BudgetPlan:
    """Choose model, side, batch, TTA and the number of steps from measured speeds. Pure: no clock, no torch."""
    by_key = {(s.model, s.size): s for s in speeds}
    batch = work.batch_size or choose_batch(work.train_images, work.max_batch)
    steps_per_epoch = max(1, math.ceil(work.train_images / batch))
    write = WRITE_SECONDS + WRITE_SECONDS_PER_CLASS * work.num_classes
    reasons = []
    if work.batch_size is None:
        reasons.append(f"batch {batch} gives {steps_per_epoch} steps an epoch on {work.train_images:,} training images")

    def option(speed: Speed) -> dict:
        early = (work.early_size if work.early_size is not None else early_size_for(speed.size)) or None  # 0: off
        early_speed = by_key.get((speed.model, early)) if early else None
        if early and early_speed is None:  # not measured: scale by pixels (convolutions cost per pixel)
            early_speed = Speed(speed.model, early, speed.train * (speed.size / early) ** 2, speed.eval)
        f = work.early_fraction if early else 0.0
        step = batch / speed.train + loop_seconds_per_step
        early_step = batch / early_speed.train + loop_seconds_per_step if early else step
        tta = work.tta or choose_tta(work.test_images, speed.eval, budget_seconds)
        test = final_pass_images(work.test_images, work.val_images) * TTA_VIEWS[tta] * TTA_EVAL_COST[tta] / speed.eval
        val = work.val_images / speed.eval
        per_epoch = steps_per_epoch * (f * early_step + (1 - f) * step) + val + checkpoint_seconds
        available = budget_seconds * (1 - END_MARGIN) - spent_seconds - test - write
        epochs = max(available, 0.0) / per_epoch
        return dict(speed=speed, early=early, f=f, step=step, early_step=early_step, tta=tta, test=test, val=val,
                    epochs=epochs, per_epoch=per_epoch)

    options = [option(s) for s in speeds if s.size in candidate_sizes(work.image_size) or len(speeds) == 1]
    options = options or [option(s) for s in speeds]
    width = {name: i for i, name in enumerate(("airbench93", "airbench"))}
    smallest = min(o["speed"].size for o in options)
    for o in options:
        o["required"] = required_epochs(o["speed"].model, o["speed"].size, smallest)
    feasible = [o for o in options if o["epochs"] >= o["required"]]
    if feasible:
        best = max(feasible, key=lambda o: (o["speed"].size, width.get(o["speed"].model, 0), o["epochs"]))
    else:
        best = max(options, key=lambda o: o["epochs"])
    s = best["speed"]
    if len(options) > 1:
        others = ", ".join(f"{o['speed'].model} at {o['speed'].size} px {o['epochs']:.1f}" for o in options if o is not best)
        reasons.append(f"{s.model} at {s.size} px gets {best['epochs']:.1f} epochs ("
                       + (f"the largest setting that reaches the {best['required']:.0f} epochs its side needs"
                          if feasible else "none reaches the epochs a schedule needs: the most epochs")
                       + f"; measured {s.train:.0f} images/s; other candidates: {others})")
    epochs = min(best["epochs"], work.max_epochs)
    if best["epochs"] > work.max_epochs:
        reasons.append(f"{work.max_epochs} epochs is the most that pays on {work.train_images:,} images, so about "
                       f"{(best['epochs'] - work.max_epochs) * best['per_epoch']:.0f} s of the budget stay unused")
    steps = max(1, int(epochs * steps_per_epoch))
    if work.tta is None and best["tta"] != "flip-translate":
        reasons.append(f"six-view test-time augmentation would cost more than {TTA_SHARE:.0%} of the budget")
    f = best["f"]
    train_seconds = steps * (f * best["early_step"] + (1 - f) * best["step"])
    return BudgetPlan(budget_seconds, spent_seconds, s.model, s.size, best["early"], work.early_fraction,
                      batch, steps_per_epoch, steps, best["tta"], train_seconds, best["step"], best["early_step"],
                      best["val"], best["test"], write, reasons, max_steps=work.max_epochs * steps_per_epoch)


def replan_steps(plan: BudgetPlan, done: int, now: float, measured_ratio: float, val_passes_left: float) -> int:
    """Steps in all that fit before the deadline, with step times scaled by `measured_ratio` (actual / planned)."""
    left = plan.train_deadline - now - val_passes_left * plan.val_seconds
    per_step_early = plan.early_step_seconds * measured_ratio
    per_step = plan.step_seconds * measured_ratio
    early_left = max(0, plan.switch_step - done)
    if early_left * per_step_early >= left:
        steps = done + max(0, int(left / per_step_early))
    else:
        steps = max(done, plan.switch_step) + max(0, int((left - early_left * per_step_early) / per_step))
    return min(steps, plan.max_steps) if plan.max_steps else steps


# ---- measurement (the impure part) ---------------------------------------------------------------

def measure_speed(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, precision: str, size: int,
                  augment=None, steps: int = 3, warmup: int = 2, make_optimizer=None) -> tuple[float, float]:
    """(training, eval) images/s of a throw-away copy of `model` on real images resized to `size`, with the
    run's augmentation and optimizer step (`make_optimizer(params)`; default SGD), the run itself untouched.
    Warm-up steps pay for kernel selection.

    The median step counts, not the fastest: on a shared or virtualised CPU a slow-down lasts minutes and the
    run pays it too (measured here: the same step at 0.34 and 0.58 s a few seconds apart)."""
    probe = copy.deepcopy(model).train()
    trainable = [p for p in probe.parameters() if p.requires_grad]
    optimizer = (make_optimizer or (lambda params: torch.optim.SGD(params, lr=1e-9, momentum=0.9)))(trainable)
    device = next(probe.parameters()).device
    x, y = images.to(device), labels.to(device)
    channels_last = is_convolutional(probe)
    if channels_last:
        probe.to(memory_format=torch.channels_last)
    rng = torch.get_rng_state()
    gen = torch.Generator(device=device).manual_seed(0)

    def batch():
        b = augment(x, gen) if augment is not None else x
        if b.ndim == 5:  # a cached trunk's views: one each
            b = b[:, 0]
        if images.dtype == torch.uint8 and b.shape[-1] != size:  # images, not cached activations
            b = F.interpolate(b.float() / 255 if b.dtype == torch.uint8 else b, size=(size, size), mode="bilinear",
                              antialias=True, align_corners=False)
        return b.contiguous(memory_format=torch.channels_last) if channels_last else b

    def step() -> float:
        synchronize(device)
        start = time.perf_counter()
        with autocast(precision, device.type):
            loss = classification_loss(probe(batch()), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        synchronize(device)
        return time.perf_counter() - start

    warm = [step() for _ in range(warmup)]
    while len(warm) < warmup + 4 and not 0.8 < warm[-1] / warm[-2] < 1.25:  # kernel selection still settling
        warm.append(step())
    timings = [step() for _ in range(steps)]
    train = len(x) / statistics.median(timings)
    probe.eval()
    timings = []
    with torch.no_grad(), autocast(precision, device.type):
        for _ in range(3):
            synchronize(device)
            start = time.perf_counter()
            probe(batch())
            synchronize(device)
            timings.append(time.perf_counter() - start)
    torch.set_rng_state(rng)
    return train, len(x) / min(timings[1:])
