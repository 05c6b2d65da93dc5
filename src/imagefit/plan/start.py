"""From scratch or from ImageNet weights: the budget planner's first choice (`--recipe auto`).

With `--time-budget` and no model, recipe or `--pretrained` named, the user asks for the best classifier the
time buys, and the start is the choice that matters most. Measured on this CPU (bench/README.md):

- small images (CIFAR-10, 32 px): `--recipe fast` from scratch 86.5% in 5 minutes, ImageNet transfer 82.8%
  (the pretrained net needs the images upscaled to 64-128 px, and 32 px photos carry little of what ImageNet
  features recognise);
- photos of 64 px and more (Imagenette, 128 px): from scratch 86.5% in 10 minutes, ImageNet transfer 95.5% in 5
  (optimistic: Imagenette's classes are ImageNet's); on 101 classes of ordinary 96 px photos (issue 10), from
  scratch 0.22 against transfer 0.89 in 15 minutes.

So transfer wins from PHOTO_SIDE up, unless the budget cannot even afford the frozen network's one pass over
the images at its smallest input side (then from scratch is all that fits).
"""
from __future__ import annotations

PHOTO_SIDE = 64  # images at least this large (shorter side, as decoded) start from ImageNet weights
SMALLEST_INPUT = 64  # the transfer planner's smallest input side (train.transfer_plan.input_sizes)
FORWARD_PIXELS_PER_SECOND = 6.5e6  # EfficientNet-Lite0 forward on this CPU: about 400 images/s at 128 px
PASS_SHARE = 0.5  # the one pass over every image (training ones twice: the mirror) may take this share
START_EVIDENCE = "Imagenette, 128 px: 86.5% from scratch in 10 minutes, 95.5% from ImageNet weights in 5"


def choose_start(side: int, train_images: int, eval_images: int, budget_seconds: float) -> tuple[bool, str]:
    """Whether to start from ImageNet weights, and why in one sentence (pure)."""
    if side < PHOTO_SIDE:
        return False, (f"images of {side} px are too small for ImageNet features to pay within a budget (CIFAR-10 "
                       "at 32 px: from scratch 86.5% in 5 minutes, transfer 82.8%): trained from scratch "
                       "with the fast recipe; --pretrained starts from ImageNet weights instead")
    pass_seconds = (2 * train_images + eval_images) * SMALLEST_INPUT**2 / FORWARD_PIXELS_PER_SECOND
    if pass_seconds > PASS_SHARE * budget_seconds:
        return False, (f"one pass of the pretrained network over the {train_images + eval_images:,} images would "
                       f"take about {pass_seconds:.0f} s, over half the budget: trained from scratch with the fast "
                       "recipe; a longer --time-budget or --pretrained starts from ImageNet weights")
    return True, (f"photos of {side} px: ImageNet features recognise far more in them than a network trained "
                  f"from scratch within the budget ({START_EVIDENCE}); --no-pretrained trains from scratch instead")
