"""The transfer planner: which part of a pretrained network a time budget can afford to train.

On a CPU a whole-network fine-tune of an EfficientNet runs at tens of images per second (depthwise
convolutions at high resolution), while the top blocks alone, on activations of the frozen trunk
cached once, run at hundreds. `choose_transfer` (pure: measured speeds in, a choice out) weighs:

- **fine-tune** (everything trains) when FULL_TARGET_EPOCHS whole-network epochs fit: from ImageNet
  weights a few epochs of a full fine-tune beat any frozen trunk;
- else **partial** with the deepest top (the most trainable blocks, cut at a stage boundary) whose
  trunk pass (training images and their mirrors, validation and test) takes at most CACHE_SHARE of the
  time left and still leaves TARGET_TOP_EPOCHS epochs for the top;
- else the cheapest top that gets MIN_TOP_EPOCHS;
- else a **linear probe** (one pass for features, a head that trains in seconds), said to be cut short.

A strategy the user pins (fine-tune or linear-probe) with a budget and no --image-size still gets its input
side chosen (`choose_side`): a fine-tune the largest side that gives it FULL_TARGET_EPOCHS, a linear probe
the largest side, up to ImageNet's 224 px, whose one feature pass fits in PROBE_SHARE of the budget (its head
then trains in seconds on the cached features).

`measure_transfer` measures what it needs on a few real images in seconds: one block-by-block forward pass
gives the trunk's speed at every cut and each top's cost; the run then measures the chosen top's real steps.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from ..models.freeze import unfreeze
from .budget import measure_speed
from ..models.split import blocks_of, split_model
from ..runtime import autocast, is_convolutional, synchronize

FULL_TARGET_EPOCHS = 5.0
# Measured on CIFAR-10-JPEG with 15 minutes (bench/README.md): the last 8 blocks for 1.1 epochs reached 89.6%,
# the last block alone for 10 epochs 87.0% (it overfits from the 4th): from ImageNet weights, depth pays
# more than epochs, so a top needs only a couple of passes over the data.
TARGET_TOP_EPOCHS = 2.0
MIN_TOP_EPOCHS = 1.0
CACHE_SHARE = 0.6
CACHE_BYTES = 8 << 30  # the trunk cache may hold this much (2 bytes a value in bf16): memory-mapped, but paged in
EVAL_SPEEDUP = 3.0  # a forward pass costs about a third of a training step
PROBE_SHARE = 0.7  # a pinned linear probe's feature pass may take this much of the time left (a margin:
# the pass ran 1.5-1.6x slower than measured in two of six runs on this shared CPU)
PROBE_SIDES = (224, 192, 160)  # beyond the default side: ImageNet features are trained at 224 px


@dataclass
class TransferSpeeds:
    """Images/s measured on this machine at the run's input size."""

    blocks: int  # the backbone's blocks
    trunk: dict[int, float]  # cut (blocks run) -> forward images/s from the image to that cut
    top: dict[int, float] = field(default_factory=dict)  # trainable blocks K -> training images/s on cached activations
    full_train: float | None = None  # whole-network training images/s (None: not measured, too slow to matter)
    full_eval: float | None = None
    values: dict[int, int] = field(default_factory=dict)  # cut -> activation values per image
    bytes_per_value: int = 2


@dataclass
class TransferChoice:
    strategy: str
    trainable_blocks: int | None
    epochs: float  # the epochs it should get (estimated)
    cache_seconds: float
    reason: str
    speed: tuple[float, float] | None = None  # a fine-tune's measured (train, eval) images/s, for the step plan
    meets_target: bool = False  # a fine-tune, or a top with its target epochs: no need to try a smaller side
    input_size: int | None = None

    def to_dict(self) -> dict:
        return {"strategy": self.strategy, "trainable_blocks": self.trainable_blocks, "epochs": round(self.epochs, 1),
                "cache_seconds": round(self.cache_seconds, 1), "input_size": self.input_size, "reason": self.reason}


def stage_cuts(stage_lengths: list[int]) -> list[int]:
    """Candidate K (trainable blocks) at stage boundaries, smallest first: [1, 5, 8, ...] for EfficientNet-Lite0."""
    ks, total = [], 0
    for n in reversed(stage_lengths):
        total += n
        ks.append(total)
    return ks


def choose_transfer(seconds_left: float, train: int, val: int, test: int, speeds: TransferSpeeds,
                    strategy: str | None = None, max_cache_bytes: int = CACHE_BYTES) -> TransferChoice:
    """Strategy and trainable depth for the seconds left. `strategy` pinned to partial: only K is chosen."""
    n = speeds.blocks
    views = 2 * train + val + test  # training images and their mirrors; validation and test once

    def partial(k: int) -> tuple[float, float]:  # (trunk pass seconds, epochs the top then gets)
        cache = views / speeds.trunk[n - k]
        per_epoch = train / speeds.top[k] + val / (EVAL_SPEEDUP * speeds.top[k])
        return cache, max(0.0, seconds_left - cache) / per_epoch

    if strategy is None and speeds.full_train:
        full_eval = EVAL_SPEEDUP * speeds.full_train
        per_epoch = train / speeds.full_train + val / full_eval
        epochs = max(0.0, seconds_left - (val + test) / full_eval) / per_epoch
        if epochs >= FULL_TARGET_EPOCHS:
            return TransferChoice("fine-tune", None, epochs, 0.0, meets_target=True, reason=
                                  f"{epochs:.1f} epochs of a whole-network fine-tune fit (measured "
                                  f"{speeds.full_train:.0f} images/s): from ImageNet weights, training every layer pays")
    def fits_memory(k: int) -> bool:
        return views * speeds.values.get(n - k, 0) * speeds.bytes_per_value <= max_cache_bytes

    options = {k: partial(k) for k in sorted(speeds.top) if fits_memory(k)}
    described = "; ".join(f"K={k}: trunk pass {c:.0f} s, {e:.1f} epochs" for k, (c, e) in options.items())
    good = [k for k, (c, e) in options.items() if c <= CACHE_SHARE * seconds_left and e >= TARGET_TOP_EPOCHS]
    if good:
        k = max(good)
        return TransferChoice("partial", k, options[k][1], options[k][0], meets_target=True, reason=
                              f"the last {k} of {n} blocks train on cached trunk activations: the deepest top whose "
                              f"trunk pass takes at most {CACHE_SHARE:.0%} of the {seconds_left:.0f} s left and that still "
                              f"gets {TARGET_TOP_EPOCHS:.0f} epochs ({described})")
    if options and (strategy == "partial" or max(e for _, e in options.values()) >= MIN_TOP_EPOCHS):
        k = max(options, key=lambda k: options[k][1])
        return TransferChoice("partial", k, options[k][1], options[k][0],
                              f"no top reaches {TARGET_TOP_EPOCHS:.0f} epochs in the {seconds_left:.0f} s left, so the "
                              f"one that gets the most, the last {k} blocks ({described})")
    cache = (train + val + test) / speeds.trunk[n]
    return TransferChoice("linear-probe", None, 0.0, cache,
                          f"even the cheapest top would get under {MIN_TOP_EPOCHS:.0f} epochs in the {seconds_left:.0f} s "
                          f"left ({described}); one feature pass takes about {cache:.0f} s: more time or a smaller "
                          "--image-size would buy more")


@torch.no_grad()
def blockwise_times(model, sample: torch.Tensor, precision: str, repeats: int = 3) -> tuple[list[float], list[int]]:
    """Seconds of each stage of one forward pass over `sample` (the stem, every block, then the rest of the net
    to the logits: the median of `repeats` passes after a warm-up one), and the activation values per image
    after the stem and after each block."""
    net = model.net
    model.eval()
    runs: list[list[float]] = []
    values: list[int] = []
    _, rest = split_model(model, 0)  # what follows the last block: head convolution, pooling, classifier
    device = next(model.parameters()).device
    sample = sample.to(device)

    def clock() -> float:
        synchronize(device)
        return time.perf_counter()

    with autocast(precision, device.type):
        for _ in range(repeats + 1):  # the first pass pays for kernel selection
            start = clock()
            h = net.bn1(net.conv_stem(model.prepare(sample).contiguous(memory_format=torch.channels_last)))
            times, values = [clock() - start], [h[0].numel()]
            for block in blocks_of(net):
                start = clock()
                h = block(h)
                times.append(clock() - start)
                values.append(h[0].numel())
            start = clock()
            rest(h)
            times.append(clock() - start)
            runs.append(times)
    # the median of each stage over the timed passes (the first paid for kernel selection)
    return [sorted(stage)[len(stage) // 2] for stage in zip(*runs[1:])], values


@torch.no_grad()
def forward_speed(model, sample: torch.Tensor, precision: str, batch: int, repeats: int = 3) -> float:
    """Forward images/s of the whole network over all of `sample` in batches of `batch` (the median of `repeats`
    passes after a warm-up): at large sides a batch is a few images, and one such pass is too short to time."""
    model.eval()
    device = next(model.parameters()).device
    sample, seconds = sample.to(device), []
    if is_convolutional(model):
        sample = sample.contiguous(memory_format=torch.channels_last)
    with autocast(precision, device.type):
        for _ in range(repeats + 1):
            synchronize(device)
            start = time.perf_counter()
            for i in range(0, len(sample), batch):
                model(sample[i:i + batch])
            synchronize(device)
            seconds.append(time.perf_counter() - start)
    return len(sample) / max(sorted(seconds[1:])[len(seconds[1:]) // 2], 1e-9)


def measure_transfer(model, sample: torch.Tensor, labels: torch.Tensor, precision: str, seconds_left: float,
                     train: int, val: int, test: int, augment=None) -> TransferSpeeds:
    """Block-by-block forward passes give the trunk's speed at every cut and each top's forward cost; one top's
    training steps give the ratio of a training step to a forward pass (measuring every top would cost more
    than it tells). The whole network's training speed is measured only where a fine-tune could fit."""
    n = len(blocks_of(model.net))
    times, values = blockwise_times(model, sample, precision)
    unfreeze(model.net)  # the timing pass cut the net once: the run decides what is frozen
    b = len(sample)
    trunk = {cut: b / max(sum(times[:cut + 1]), 1e-9) for cut in range(n + 1)}
    stages = [len(s) if isinstance(s, torch.nn.Sequential) else 1 for s in model.net.blocks]
    ks = stage_cuts(stages)[:-1]
    # a training step of a top costs a multiple of its forward pass (backward passes of depthwise convolutions
    # are slow on CPUs): measured once, on a middle candidate, and applied to all
    reference = ks[len(ks) // 2]
    trunk_part, top_part = split_model(model, reference)
    device = next(model.parameters()).device
    with torch.no_grad(), autocast(precision, device.type):
        acts = trunk_part(sample.to(device)).float()
    train_speed = measure_speed(top_part, acts, labels, precision, acts.shape[-1], steps=2)[0]
    unfreeze(model.net)
    ratio = max(1.0, (b / train_speed) / max(sum(times[n - reference + 1:]), 1e-9))
    top = {k: b / max(ratio * sum(times[n - k + 1:]), 1e-9) for k in ks}
    speeds = TransferSpeeds(n, trunk, top, values=dict(enumerate(values)),
                            bytes_per_value=2 if precision != "32" else 4)
    rough_full = b / (ratio * sum(times))
    if (train / rough_full) * FULL_TARGET_EPOCHS < 1.5 * seconds_left:
        speeds.full_train, speeds.full_eval = measure_speed(model, sample, labels, precision,
                                                            model.input_size or sample.shape[-1], augment, steps=2)
    return speeds


def choose_side(strategy: str, seconds_left: float, train: int, val: int, test: int,
                speeds: dict[int, tuple[float, float]]) -> TransferChoice:
    """The input side for a pinned fine-tune or linear probe. `speeds`: side -> the whole network's (training,
    forward) images/s measured at that side."""
    sides = sorted(speeds, reverse=True)
    if strategy == "linear-probe":
        cost = {s: (train + val + test) / speeds[s][1] for s in sides}
        fits = [s for s in sides if cost[s] <= PROBE_SHARE * seconds_left]
        side = fits[0] if fits else sides[-1]
        described = "; ".join(f"{s} px {cost[s]:.0f} s" for s in sides)
        why = (f"the largest side whose feature pass takes at most {PROBE_SHARE:.0%} of the {seconds_left:.0f} s left"
               if fits else f"no side's feature pass fits in {PROBE_SHARE:.0%} of the {seconds_left:.0f} s left, so the "
               "cheapest")
        return TransferChoice("linear-probe", None, 0.0, cost[side], f"{why} ({described})", meets_target=bool(fits),
                              input_size=side)
    epochs = {}
    for s in sides:
        fit, forward = speeds[s]
        epochs[s] = max(0.0, seconds_left - (val + test) / forward) / (train / fit + val / forward)
    fits = [s for s in sides if epochs[s] >= FULL_TARGET_EPOCHS]
    side = fits[0] if fits else max(sides, key=epochs.get)
    described = "; ".join(f"{s} px {epochs[s]:.1f} epochs at {speeds[s][0]:.0f} images/s" for s in sides)
    why = (f"the largest side that gives a whole-network fine-tune {FULL_TARGET_EPOCHS:.0f} epochs" if fits else
           f"no side gives a whole-network fine-tune {FULL_TARGET_EPOCHS:.0f} epochs, so the one that gives the most")
    return TransferChoice("fine-tune", None, epochs[side], 0.0, f"{why} ({described})", speed=speeds[side],
                          meets_target=bool(fits), input_size=side)


def input_sizes(size: int) -> list[int]:
    """Input sides the planner tries, largest first: the default one, then 3/4 and 1/2 of it (multiples of 16,
    not below 64 px, where ImageNet features fade)."""
    sizes = [size]
    for fraction in (0.75, 0.5):
        side = int(size * fraction) // 16 * 16
        if side >= 64 and side not in sizes:
            sizes.append(side)
    return sizes


def side_candidates(strategy: str, size: int) -> list[int]:
    """Sides tried for a pinned strategy, largest first: a linear probe may also look at larger ones (its feature
    pass is its only cost), a fine-tune only at the default side or smaller."""
    if strategy == "linear-probe":
        return sorted({s for s in (*PROBE_SIDES, *input_sizes(size)) if s <= max(size, PROBE_SIDES[0])}, reverse=True)
    return input_sizes(size)


def plan_side(cfg, data, model, precision: str, seconds_left: float) -> TransferChoice:
    """A pinned fine-tune's or linear probe's input side, from the whole network's speeds measured on the run's
    own images at each candidate side."""
    from ..data.augment import AUGMENTATIONS
    from ..evaluate.predict import forward_batch

    strategy = cfg.transfer_strategy
    sample = data.train.take(0, min(len(data.train), 32))
    labels = data.train.labels[:len(sample)]
    val = len(data.val) if data.val is not None else 0
    speeds: dict[int, tuple[float, float]] = {}
    for size in side_candidates(strategy, model.input_size):
        model.input_size = size
        if strategy == "linear-probe":  # the feature pass: forward only, in the batches it will run in
            speeds[size] = (0.0, forward_speed(model, sample, precision, forward_batch(size, len(sample))))
        else:
            speeds[size] = measure_speed(model, sample, labels, precision, size, AUGMENTATIONS[cfg.augment], steps=2)
    choice = choose_side(strategy, seconds_left, len(data.train), val, data.test_count, speeds)
    model.input_size = choice.input_size
    return choice


def plan_transfer(cfg, data, model, precision: str, seconds_left: float) -> TransferChoice:
    """The run's transfer strategy, depth and (unless --image-size is set) input side from speeds measured on its
    own images: the largest side at which a fine-tune, or a top with its target epochs, fits; else the largest
    side's best. Nets that cannot be cut into trunk and top (not EfficientNet or MobileNet-style) fine-tune."""
    from ..errors import UserError
    from ..data.augment import AUGMENTATIONS

    try:
        blocks_of(model.net)
    except UserError:
        return TransferChoice("fine-tune", None, 0.0, 0.0, f"{cfg.model} cannot be cut into a cached trunk and a top",
                              input_size=model.input_size)
    sample = data.train.take(0, min(len(data.train), 32))  # the batch of the trunk pass at 128 px (forward_batch)
    labels = data.train.labels[:len(sample)]
    val = len(data.val) if data.val is not None else 0
    tried: list[TransferChoice] = []
    for size in ([model.input_size] if cfg.image_size else input_sizes(model.input_size)):
        model.input_size = size
        speeds = measure_transfer(model, sample, labels, precision, seconds_left, len(data.train), val,
                                  data.test_count, AUGMENTATIONS[cfg.augment])
        choice = choose_transfer(seconds_left, len(data.train), val, data.test_count, speeds, cfg.transfer_strategy)
        choice.input_size = size
        if choice.strategy == "fine-tune" and speeds.full_train:
            choice.speed = (speeds.full_train, speeds.full_eval)
        tried.append(choice)
        if choice.meets_target:
            break
    best = next((c for c in tried if c.meets_target), None) or \
        next((c for c in tried if c.strategy != "linear-probe"), tried[-1])
    if len(tried) > 1:
        best.reason = (f"at {best.input_size} px, {best.reason}; larger sides fit less: "
                       + "; ".join(f"{c.input_size} px {c.strategy}" for c in tried if c is not best))
    model.input_size = best.input_size
    return best
