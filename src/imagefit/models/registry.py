"""`create_model(name, ...)`: imagefit's own small nets by name, and any timm architecture.

Every model comes wrapped in `ImageClassifier`, which carries the data's per-channel mean and std
as buffers: a saved model takes raw uint8 images, with no preprocessing code to keep in sync.
"""
from __future__ import annotations

import difflib
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import UserError
from .airbench import AIRBENCH93_WIDTHS, Airbench
from .resnet9 import ResNet9
from .seed_cnn import seed_cnn

OWN_MODELS: dict[str, tuple[Callable[..., nn.Module], str]] = {
    "seed-cnn": (lambda k, c, s: seed_cnn(k, c, s), "plain CNN of the course report: conv-conv-pool x2, dense 512, dropout"),
    "airbench": (lambda k, c, s: Airbench(k, c), "airbench94's whitened conv net (--recipe fast): 94% on CIFAR-10 in 10 epochs, 2.0M parameters"),
    "airbench93": (lambda k, c, s: Airbench(k, c, AIRBENCH93_WIDTHS), "airbench93's narrower widths: 93% on CIFAR-10 in 11 epochs at a quarter of the FLOPs, 0.5M parameters"),
    "resnet9": (lambda k, c, s: ResNet9(k, c, width=64), "ResNet-9 of the DAWNBench CIFAR records, 6.6M parameters"),
    "resnet9-small": (lambda k, c, s: ResNet9(k, c, width=32), "ResNet-9 at half width, 1.6M parameters: 4x cheaper on a CPU"),
}


class ImageClassifier(nn.Module):
    """Resize + normalisation + network: takes uint8 (or [0, 1] float) images, returns logits.

    `input_size` set: every batch is resized on the tensor to the size the network wants (a pretrained
    net at 128 px from 32 px CIFAR images), so the data stays small in memory and augmentation runs at
    the data's own size. Grayscale batches are repeated to three channels for RGB-pretrained nets.
    """

    def __init__(self, net: nn.Module, mean: list[float], std: list[float], input_size: int | None = None):
        super().__init__()
        self.net = net
        self.input_size = input_size
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))
        self.resize = None  # (input_size, side) matrix once resize_with_matrices(side) is called: for exporters

    def resize_with_matrices(self, side: int) -> None:
        """Resize images of `side` px as two matrix products with constant matrices (resize_matrix): the same
        numbers as the antialiased interpolation, in a form every graph format has (ONNX has no antialiased
        resize at opset 17). The export calls it on its own copy of the model."""
        self.resize = resize_matrix(side, self.input_size)

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.uint8:
            x = x.float().div_(255)
        if x.shape[1] == 1 and self.mean.shape[1] == 3:
            x = x.expand(-1, 3, -1, -1)
        if self.resize is not None:
            x = torch.matmul(torch.matmul(self.resize, x), self.resize.T)
        elif self.input_size and x.shape[-1] != self.input_size:
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear", align_corners=False,
                              antialias=x.shape[-1] > self.input_size)
        return (x - self.mean) / self.std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.prepare(x))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled backbone features (timm nets): what a linear probe trains on."""
        return self.net.forward_head(self.net.forward_features(self.prepare(x)), pre_logits=True)

    def head(self) -> nn.Module:
        return self.net.get_classifier()


def resize_matrix(side: int, size: int) -> torch.Tensor:
    """(size, side): ImageClassifier's bilinear resize along one axis (antialiased when shrinking) as a matrix R,
    so that resizing an image X is R @ X @ R.T. Read off F.interpolate's answer to each unit impulse."""
    impulses = torch.eye(side).view(1, 1, side, side)  # row i: an impulse at column i
    out = F.interpolate(impulses, size=(side, size), mode="bilinear", align_corners=False, antialias=side > size)
    return out[0, 0].T.contiguous()


def build_net(name: str, num_classes: int, in_chans: int, image_size: int) -> nn.Module:
    if name in OWN_MODELS:
        return OWN_MODELS[name][0](num_classes, in_chans, image_size)
    import timm

    if not timm.is_model(name):
        known = list(OWN_MODELS) + timm.list_models()
        close = difflib.get_close_matches(name, known, n=3)
        hint = f"did you mean {', '.join(close)}?" if close else "run 'imagefit models' to list them"
        raise UserError(f"unknown model '{name}'", hint)
    try:
        return timm.create_model(name, pretrained=False, num_classes=num_classes, in_chans=in_chans)
    except Exception as e:  # timm rejects some sizes or options with assorted exceptions
        raise UserError(f"timm could not build '{name}' for {num_classes} classes, {in_chans} channels: {e}",
                        "choose another --model") from None


def create_model(name: str, num_classes: int, in_chans: int = 3, image_size: int = 32,
                 mean: list[float] | None = None, std: list[float] | None = None,
                 pretrained: bool = False, weights: str | None = None, input_size: int | None = None) -> ImageClassifier:
    """A model for `num_classes`; with `pretrained` or `weights`, an ImageNet-pretrained one whose new head
    fits the classes, normalised with its own pretraining mean and std (`model.weights_info` says whence)."""
    info = None
    if pretrained or weights:
        from .pretrained import PRETRAINED_CFG, load_pretrained, pretrained_cfg

        net, info = load_pretrained(name, num_classes, weights=weights, pretrained=pretrained)
        cfg = PRETRAINED_CFG.get(name) or pretrained_cfg(name)
        mean, std = list(cfg["mean"]), list(cfg["std"])
    else:
        net = build_net(name, num_classes, in_chans, image_size)
        mean = mean or [0.5] * in_chans
        std = std or [0.5] * in_chans
    model = ImageClassifier(net, mean, std, input_size)
    model.weights_info = info
    with torch.no_grad():  # fail here, with a clear line, rather than mid-epoch
        try:
            model.eval()(torch.zeros(2, in_chans, image_size, image_size, dtype=torch.uint8))
        except RuntimeError as e:
            raise UserError(f"model '{name}' does not accept {image_size}x{image_size} images: {str(e).splitlines()[0]}",
                            "choose a larger --image-size or another --model") from None
    return model.train()


def count_parameters(model: nn.Module) -> tuple[int, int]:
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return total, trainable
