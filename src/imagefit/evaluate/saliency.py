"""Where the model looked when it was wrong: Grad-CAM overlays of the worst test mistakes, `gradcam.png`.

Grad-CAM (Selvaraju et al., 2017) weights each channel of a convolutional feature map by the mean gradient
of a class score over it; the positive part of the weighted sum marks the places whose features raise that
score. For the misclassified test images with the highest loss (the gallery's first `SHOWN`, see
mistakes.py) the figure shows each image, the map for the predicted class (what drew the model to the wrong
class) and the map for the true class (where its evidence for the right class lay). The maps come from
torchcam's `GradCAM` (a light library: torch, numpy, pillow, matplotlib); this module picks the layer,
feeds the images and draws.

**Which network.** The run's whole image-to-logits model. A fine-tune trains it end to end; a
cached-trunk partial run trains the top blocks and head that are the network's own modules, and a
linear probe the network's own classifier (train/cached_trunk.py, train/frozen_inputs.py), so after
training those too are the whole network and Grad-CAM applies to them. The images go in as uint8, exactly
as at test time: the model resizes and normalises them itself (`ImageClassifier.prepare`), airbench
whitens them in its first layer. The overlays are drawn on the original test images. Test-time flips
(`--tta`) are not applied: the maps are for the image itself.

**Target layer, chosen automatically** (`find_target_layer`): the output of the last module, in forward
order, that is a 4-D feature map (N, C, H, W) with H x W > 1: the last place the network still knows
*where* before it pools or flattens (torchcam's own rule for picking a layer). Modules that pass their input
through unchanged (Dropout and Identity in eval mode) are skipped, and so are modules called more than once
per forward pass (a shared activation), whose stored output would be ambiguous, and 4-D outputs whose
last two sides do not have the image's aspect ratio (a channels-last (N, H, W, C) tensor, as Swin passes
them, is not an (N, C, H, W) map). On seed-cnn that is the
last max-pool, on ResNet-9 the last block that keeps more than one pixel, on airbench its last conv group,
on EfficientNet the activated head convolution (`bn2`). Skipped, with the reason as the report's sentence:
a network without a convolution, one whose every map is 1x1 before the head, and one that turns its map
into tokens (a vision transformer, where the last map is the patch embedding).

**The model is left as it was.** The pass runs in eval mode (every module's mode restored afterwards), in
fp32 without autocast (a bf16-trained model's weights are fp32; a model stored in another dtype is copied
to fp32 first), eager even when the run compiled the network, and the gradient is taken with
`torch.autograd.grad` with respect to the target's output only: no parameter's `.grad` is written and, in
eval mode, no BatchNorm statistic moves. The gradient path is cut below the target layer (its output is
re-rooted as a new leaf), so frozen layers need no gradient and the pass costs one forward and a partial
backward: well under a second on a CPU for 8 images of 128 px on EfficientNet-Lite0.

**Never breaks a run.** Any failure becomes the report's sentence (`gradcam_note` in metrics.json).
"""
from __future__ import annotations

import contextlib
import copy
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from PIL import Image

from ..data.types import ImageSet
from .mistakes import ranked_mistakes

SHOWN = 8
DISPLAY_SIDE = 128  # images smaller than this are enlarged (nearest) so the overlay's colours are visible
log = logging.getLogger("imagefit")


class NoSaliency(Exception):
    """Grad-CAM does not apply to this model or run; the message is the report's reason."""


@contextlib.contextmanager
def evaluating(model: nn.Module, device: torch.device):
    """Eval mode (no Dropout, BatchNorm on its running statistics) for the pass, fp32 (no autocast), eager;
    each module's own mode restored afterwards, set directly so that frozen BatchNorms (models/pretrained.py)
    stay as they were."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    stance = getattr(torch.compiler, "set_stance", None)  # torch >= 2.6: run a compiled network eagerly
    try:
        with (stance("force_eager") if stance else contextlib.nullcontext()), \
                torch.autocast(device.type, enabled=False):
            yield model
    finally:
        for m, training in modes:
            m.training = training


def find_target_layer(model: nn.Module, images: torch.Tensor) -> tuple[str, tuple[int, int]]:
    """(name of the target module, its map's (H, W)) by the rule in the module docstring; raises NoSaliency."""
    if not any(isinstance(m, nn.Conv2d) for m in model.modules()):
        raise NoSaliency("the network has no convolutional layer, so there is no feature map to weight")
    events, calls, hooks = [], {}, []

    def record(name):
        def hook(module, args, output):
            calls[name] = calls.get(name, 0) + 1
            if isinstance(output, torch.Tensor):
                # Dropout and Identity in eval mode hand on their input; an in-place activation does too, but changes it
                same = bool(args) and output is args[0] and not getattr(module, "inplace", False)
                events.append((name, tuple(output.shape), same))
        return hook

    for name, module in model.named_modules():
        if name:
            hooks.append(module.register_forward_hook(record(name)))
    try:
        with torch.no_grad():
            out = model(images[:1])
    except Exception as e:  # a model that takes features (a bare head) or another input
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise NoSaliency(f"the evaluated model does not take the test images as input ({first[:120]})") from None
    finally:
        for h in hooks:
            h.remove()
    if not (isinstance(out, torch.Tensor) and out.ndim == 2):
        raise NoSaliency("the model's output is not one row of class scores per image")
    height, width = images.shape[-2:]
    spatial = [i for i, (name, shape, same) in enumerate(events)
               if len(shape) == 4 and shape[2] * shape[3] > 1 and not same and calls[name] == 1
               and abs(shape[2] * width - shape[3] * height) <= max(height, width)]  # (N, H, W, C) is not a map
    if not spatial:
        raise NoSaliency("every feature map of the network is 1x1 before the classifier, so a map would have one pixel")
    last = spatial[-1]
    if any(len(shape) == 3 for _, shape, _ in events[last + 1:]):
        raise NoSaliency("the network turns its last feature map into a sequence of tokens (a vision transformer), "
                         "where Grad-CAM on the patch embedding would only show the input's gradient")
    name, shape, _ = events[last]
    return name, (shape[2], shape[3])


def _reroot(module, args, output):
    """Forward hook on the target: its output continues as a new graph root (a clone of a detached leaf, so
    in-place activations after it are allowed), so the backward pass stops there and works on frozen layers."""
    return output.detach().requires_grad_(True).clone()


@dataclass
class GradCams:
    layer: str  # the target module's name in the model
    kind: str  # its class, e.g. MaxPool2d, BatchNormAct2d
    size: tuple[int, int]  # the map's (h, w)
    maps: list[torch.Tensor]  # one (N, h, w) per class set, on the CPU
    scores: torch.Tensor  # the model's fp32 logits for the images, as the maps saw them (N, classes)


def gradcam_maps(model: nn.Module, images: torch.Tensor, class_sets: list[list[int]],
                 normalized: bool = True) -> GradCams:
    """Grad-CAM of `images` (uint8 or float (N, C, H, W), as the model takes them) for each list of class
    indices in `class_sets` (one index per image). Maps are scaled to [0, 1] per image when `normalized`,
    else raw ReLU(sum_k w_k A_k)."""
    try:
        from torchcam.methods import GradCAM
    except ImportError:
        raise NoSaliency("the torchcam package is not installed (pip install 'torchcam>=0.5', Python 3.11 or later)") from None
    params = list(model.parameters())
    if any(p.dtype != torch.float32 for p in params if p.is_floating_point()):
        model = copy.deepcopy(model).float()  # fp32 maps; the run's model is not touched
    device = params[0].device if params else torch.device("cpu")
    x = images.to(device)
    with evaluating(model, device):
        name, size = find_target_layer(model, x)
        target = dict(model.named_modules())[name]
        handle = target.register_forward_hook(_reroot)  # before torchcam's own hooks, which see its output
        try:
            with torch.enable_grad(), GradCAM(model, name) as cam:
                scores = model(x).float()
                maps = [cam(class_idx=[int(c) for c in classes], scores=scores, normalized=normalized,
                            retain_graph=i + 1 < len(class_sets))[0].detach().float().cpu()
                        for i, classes in enumerate(class_sets)]
        finally:
            handle.remove()
    return GradCams(name, type(target).__name__, size, maps, scores.detach().cpu())


def enlarged(picture: torch.Tensor) -> Image.Image:
    """A uint8 (C, H, W) picture as an RGB image, enlarged (nearest) to DISPLAY_SIDE when smaller."""
    array = picture.permute(1, 2, 0).numpy()
    image = Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array[:, :, :3]).convert("RGB")
    if max(image.size) < DISPLAY_SIDE:
        scale = DISPLAY_SIDE / max(image.size)
        image = image.resize((round(image.size[0] * scale), round(image.size[1] * scale)), Image.Resampling.NEAREST)
    return image


def overlay(picture: torch.Tensor, cam: torch.Tensor) -> np.ndarray:
    """The map (h, w) in [0, 1] over a uint8 (C, H, W) picture (torchcam's jet overlay)."""
    from torchcam.utils import overlay_mask

    mask = Image.fromarray(cam.clamp(0, 1).numpy().astype(np.float32), mode="F")
    return np.asarray(overlay_mask(enlarged(picture), mask, alpha=0.5))


def plot_gradcam(pictures: torch.Tensor, pred_maps: torch.Tensor, true_maps: torch.Tensor, titles: list[str],
                 pred_names: list[str], true_names: list[str], path: Path, layer: str) -> Path:
    """Three rows: the images, the map for the predicted class, the map for the true class. Each row is one
    strip of tiles in one axes (24 axes took matplotlib twice as long as the maps and the rest of the row)."""
    from .plots import plt, save_figure

    n = len(pictures)
    rows = [[np.asarray(enlarged(p)) for p in pictures], [overlay(p, m) for p, m in zip(pictures, pred_maps)],
            [overlay(p, m) for p, m in zip(pictures, true_maps)]]
    h, w = rows[0][0].shape[:2]
    gap = max(2, w // 8)
    captions = [titles, [f"for {c[:18]} (pred.)" for c in pred_names], [f"for {c[:18]} (true)" for c in true_names]]
    fig, axes = plt.subplots(3, 1, figsize=(1.8 * n + 0.4, 6.6), dpi=100)
    for ax, tiles, texts in zip(axes, rows, captions):
        strip = np.full((h, n * (w + gap) - gap, 3), 255, dtype=np.uint8)
        for j, tile in enumerate(tiles):
            strip[:, j * (w + gap):j * (w + gap) + w] = tile
        ax.imshow(strip, interpolation="antialiased")
        for j, text in enumerate(texts):
            ax.text(j * (w + gap) + w / 2, -h * 0.03, text, ha="center", va="bottom", fontsize=7)
        ax.axis("off")
    fig.suptitle(f"Grad-CAM at {layer}\nmiddle row: evidence for the predicted class;\n"
                 f"bottom row: for the true class (red = most)", fontsize=8)
    return save_figure(fig, path)


def write_gradcam(run_dir: Path, test: ImageSet, logits: torch.Tensor, labels: torch.Tensor, class_names: list[str],
                  model: nn.Module, shown: int = SHOWN) -> dict:
    """`gradcam.png` for the `shown` highest-loss mistakes, or a reason (`gradcam_note`) and no file."""
    path = Path(run_dir) / "gradcam.png"
    out = {"gradcam_images": 0, "gradcam_target_layer": None, "gradcam_map_size": None, "gradcam_note": None}
    started = time.perf_counter()
    try:
        ranked, _, probs = ranked_mistakes(logits, labels)
        picked = ranked[:shown].tolist()
        if not picked:
            raise NoSaliency("no test image was misclassified")
        if test.images.dtype != torch.uint8:
            raise NoSaliency("the test split holds no images to draw on")
        pictures = torch.cat([test.take(i, i + 1) for i in picked])
        predicted = [int(logits[i].argmax()) for i in picked]
        true = [int(labels[i]) for i in picked]
        cams = gradcam_maps(model, pictures, [predicted, true])
        names = [str(c) for c in class_names]
        titles = [f"{names[t][:18]} →\n{names[p][:18]} ({float(probs[i, p]):.2f})" for i, t, p in zip(picked, true, predicted)]
        plot_gradcam(pictures, *cams.maps, titles, [names[p] for p in predicted], [names[t] for t in true], path,
                     f"{cams.layer} ({cams.kind})")
        # the evaluation's class again, from the images as fed here: a check that they went in as at test time
        same = sum(int(a) == b for a, b in zip(cams.scores.argmax(1), predicted))
        out.update(gradcam_images=len(picked), gradcam_target_layer=cams.layer, gradcam_target_kind=cams.kind,
                   gradcam_map_size=list(cams.size), gradcam_same_prediction=same)
    except NoSaliency as e:
        out["gradcam_note"] = str(e)
    except Exception as e:  # a diagnostic must never cost the run: the failure becomes the report's sentence
        first = (str(e).strip().splitlines() or [""])[0][:160]
        log.warning("Grad-CAM failed: %s: %s", type(e).__name__, first)
        out["gradcam_note"] = f"computing the maps failed ({type(e).__name__}: {first})"
    if out["gradcam_note"] and path.exists():
        path.unlink()
    out["gradcam_seconds"] = round(time.perf_counter() - started, 2)
    return out
