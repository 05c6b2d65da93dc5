"""Recipes: named sets of TrainConfig defaults that work well together. Explicit keys override them.

`--recipe fast` is airbench (Keller Jordan, 2024: 94% on CIFAR-10 in 3.3 s on an A100) brought to a CPU
and to imagefit's data pipeline. Every trick, and why it pays on a small-image from-scratch run:

- **Network** (`--model airbench`, see `imagefit.models.airbench`): patch-whitened first layer, pool
  before BatchNorm, identity-initialised convolutions, BatchNorm shifts only. 0.24 GFLOPs per image,
  a tenth of a ResNet-18, yet 94% on CIFAR-10 in 10 epochs.
- **Muon on the convolution filters** (`--optimizer muon`, airbench94_muon: 94% in 8 epochs instead of 10):
  each filter bank's update is its Nesterov momentum orthogonalised by Newton-Schulz (rate 0.24, momentum
  0.6), and the bank is renormalised every step. Measured here, everything else the recipe's, one seed each:
  CIFAR-10-JPEG airbench93 3 epochs 84.7% against SGD's 82.0%; Imagenette at 64 px, batch 256, 4 epochs
  84.4% against 81.7%; with a 10-minute budget 89.2% against 88.6-88.9%. Its Newton-Schulz steps cost about
  30 ms a step (bf16 matmuls). `--optimizer sgd` is the original airbench94.
- **Nesterov SGD at a very high rate** on the rest (BatchNorm shifts and the head; everything with
  `--optimizer sgd`: `lr` 1.5 per 1024 images, momentum 0.85): the whitened, normalised network tolerates
  it, and large steps are what make 10 epochs enough. Rates here are for a mean loss; the learning rate
  scales with the batch size, so `--batch-size 512` alone halves it.
- **BatchNorm shifts at 64x the rate** (`bias_lr_scale`), with the same absolute decay per step: these
  few parameters otherwise learn too slowly for a 10-epoch run.
- **Weight decay** 0.002 per step at the peak rate, decoupled from the BatchNorm-shift boost.
- **Triangle schedule** (`--scheduler triangle`): warm up from 0.2x to the peak over the first 23% of the
  steps, then fall linearly to 0.07x. A short warm-up protects the early, large-gradient steps.
- **Label smoothing 0.2**: soft targets regularise a net that sees each image only a few times.
- **Light augmentation** (`--augment light`): flips and 2-pixel translations, airbench's choice for short
  schedules, where the net has little time to learn invariance to stronger (4 px) crops.
- **Alternating flip** (`--flip alternating`, airbench): each image is mirrored in every other epoch instead
  of at random, so no epoch repeats the last one's view of it. Free; measured here within noise (CIFAR-10-JPEG,
  airbench93 with Muon, 4 epochs: 86.3% against 86.2% test, 86.1% against 85.1% validation); kept for the
  gain airbench published and its zero cost.
- **Lookahead** (`--lookahead`): from 30% of training, every 5 steps the weights move to an exponential
  average of themselves, whose memory grows towards the end: the benefit of weight averaging for free.
- **Test-time augmentation** (`--tta flip-translate`): test logits averaged over 6 views (mirror, and a
  1-pixel shift either way). Costs six forward passes over the test set, under half an epoch's compute.
- **bf16 autocast and channels-last** (`--precision auto`, always on for convolutional nets): the CPU's
  bf16 matrix units run the convolutions about twice as fast as fp32.
- **Batch 1024**: fewer optimizer steps, the same arithmetic; on a CPU each step is already compute-bound.

With `--time-budget` and no `--epochs`, the keys above that the user did not set are the budget planner's
(`imagefit.plan.budget`): it measures airbench94 and the narrower **airbench93** (widths 64/128/128, a
quarter of the FLOPs, 93% in 11 epochs on a GPU) at the data's side and smaller ones, and takes the largest
setting whose schedule still gets about 10 epochs (more at larger sides: epochs before pixels); it lowers
the batch so that a small data set still gets 25 steps an epoch (the rate follows the batch, as above),
trains larger images at half their side for the first half of the steps (**progressive resizing**), keeps
test-time augmentation to what 4% of the budget buys, and plans the schedule in steps so that the whole budget goes to training. Measured on CIFAR-10-JPEG
with 10 minutes (bench/results.md): airbench93 for 11 epochs beat airbench94 for 4.
"""
from __future__ import annotations

from typing import Any

from .errors import UserError

FAST_BATCH = 1024
FAST_LR_PER_1024 = 1.5
FAST = {
    "model": "airbench",
    "augment": "light",
    "epochs": 8,
    "batch_size": FAST_BATCH,
    "optimizer": "muon",
    "flip": "alternating",
    "momentum": 0.85,
    "weight_decay": 0.002 / FAST_LR_PER_1024,  # x lr = 0.002 per step at the peak
    "bias_lr_scale": 64.0,
    "scheduler": "triangle",
    "label_smoothing": 0.2,
    "lookahead": True,
    "tta": "flip-translate",
}


def recipe_defaults(name: str, values: dict[str, Any] | None = None) -> dict[str, Any]:
    """The recipe's defaults, adjusted to the keys the user did set (the rate follows their batch size)."""
    values = values or {}
    if name != "fast":
        raise UserError(f"unknown recipe '{name}'", "pass --recipe fast, or leave it out")
    defaults = dict(FAST)
    batch = int(values.get("batch_size") or FAST_BATCH)
    defaults["lr"] = FAST_LR_PER_1024 * batch / 1024
    return defaults
