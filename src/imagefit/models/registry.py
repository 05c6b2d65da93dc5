"""`create_model(name, ...)`: imagefit's own small nets by name, and any timm architecture.

Every model comes wrapped in `ImageClassifier`, which carries the data's per-channel mean and std
as buffers: a saved model takes raw uint8 images, with no preprocessing code to keep in sync.
"""
from __future__ import annotations

import difflib
from typing import Callable

import torch
import torch.nn as nn

from ..errors import UserError
from .resnet9 import ResNet9
from .seed_cnn import seed_cnn

OWN_MODELS: dict[str, tuple[Callable[..., nn.Module], str]] = {
    "seed-cnn": (lambda k, c, s: seed_cnn(k, c, s), "plain CNN of the course report: conv-conv-pool x2, dense 512, dropout"),
    "resnet9": (lambda k, c, s: ResNet9(k, c, width=64), "ResNet-9 of the DAWNBench CIFAR records, 6.6M parameters"),
    "resnet9-small": (lambda k, c, s: ResNet9(k, c, width=32), "ResNet-9 at half width, 1.6M parameters: 4x cheaper on a CPU"),
}


class ImageClassifier(nn.Module):
    """Normalisation + network: takes uint8 (or [0, 1] float) images, returns logits."""

    def __init__(self, net: nn.Module, mean: list[float], std: list[float]):
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.uint8:
            x = x.float().div_(255)
        return self.net((x - self.mean) / self.std)


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
                 mean: list[float] | None = None, std: list[float] | None = None) -> ImageClassifier:
    net = build_net(name, num_classes, in_chans, image_size)
    mean = mean or [0.5] * in_chans
    std = std or [0.5] * in_chans
    model = ImageClassifier(net, mean, std)
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
