"""A timm EfficientNet/MobileNet-style network cut in two: a frozen trunk (stem and lower blocks) and the top
that trains (the last K blocks, the head). Partial fine-tuning trains the top on the trunk's cached
activations (train/cached_trunk.py); the transfer planner times each part (plan/transfer.py)."""
from __future__ import annotations

import torch
import torch.nn as nn

from ..errors import UserError
from .freeze import freeze
from .registry import ImageClassifier

STEM = ("conv_stem", "bn1")


def blocks_of(net: nn.Module) -> list[nn.Module]:
    """The blocks of an EfficientNet/MobileNet-style timm net, in order (stages flattened)."""
    if not all(hasattr(net, name) for name in (*STEM, "blocks")) or not hasattr(net, "forward_head"):
        raise UserError(f"partial fine-tuning needs an EfficientNet or MobileNet-style timm model, not {type(net).__name__}",
                        "pass --transfer-strategy fine-tune, or --model tf_efficientnet_lite0")
    return [block for stage in net.blocks for block in (stage if isinstance(stage, nn.Sequential) else [stage])]


class Trunk(nn.Module):
    """The frozen lower part: prepare (resize, normalise), stem and the first `cut` blocks."""

    def __init__(self, model: ImageClassifier, cut: int):
        super().__init__()
        object.__setattr__(self, "classifier_input", model)  # not a submodule: only its prepare() is used
        self.stem = nn.Sequential(model.net.conv_stem, model.net.bn1)
        self.blocks = nn.Sequential(*blocks_of(model.net)[:cut])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # channels-last after the resize: convolutions on a CPU run about twice as fast that way
        return self.blocks(self.stem(self.classifier_input.prepare(x).contiguous(memory_format=torch.channels_last)))


class Top(nn.Module):
    """The trainable upper part: the last K blocks, whatever follows them in the net, and the head."""

    def __init__(self, model: ImageClassifier, cut: int):
        super().__init__()
        net = model.net
        self.blocks = nn.Sequential(*blocks_of(net)[cut:])
        self.after = nn.ModuleDict({name: m for name, m in net.named_children() if name not in (*STEM, "blocks")})
        # EfficientNet's forward_features ends with conv_head and bn2; MobileNetV3 keeps them in forward_head
        self._features_tail = [name for name in ("conv_head", "bn2") if name in self.after and
                               not hasattr(net, "norm_head")]
        object.__setattr__(self, "_forward_head", net.forward_head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(x)
        for name in self._features_tail:
            x = self.after[name](x)
        return self._forward_head(x)

    def head(self) -> nn.Module:
        return self.after["classifier"]


def split_model(model: ImageClassifier, trainable_blocks: int) -> tuple[Trunk, Top]:
    """Cut `model` so that its last `trainable_blocks` blocks (plus head) train; the trunk is frozen."""
    n = len(blocks_of(model.net))
    if not 0 <= trainable_blocks <= n:
        raise UserError(f"trainable_blocks must be between 0 and {n} for {type(model.net).__name__}, got {trainable_blocks}",
                        f"pass --trainable-blocks {min(3, n)}")
    cut = n - trainable_blocks
    trunk, top = Trunk(model, cut), Top(model, cut)
    freeze(trunk)
    return trunk, top
