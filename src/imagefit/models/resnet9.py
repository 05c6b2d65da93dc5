"""ResNet-9: the small residual net of the DAWNBench CIFAR-10 speed records (Page, 2018).

prep conv, then three stages (conv-BN-ReLU + 2x max-pool), the first and last with a residual
block of two more convs; a global max-pool and a linear head scaled by 1/8, which keeps the
initial logits small so training starts stable at high learning rates. `width` scales all
channels: 64 is the published net, 32 a four-times-cheaper one for CPUs.
"""
from __future__ import annotations

import torch
import torch.nn as nn


def conv_bn(c_in: int, c_out: int, pool: bool = False) -> nn.Sequential:
    layers = [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
    if pool:
        layers.append(nn.MaxPool2d(2, ceil_mode=True))
    return nn.Sequential(*layers)


class Residual(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.body = nn.Sequential(conv_bn(c, c), conv_bn(c, c))

    def forward(self, x):
        return x + self.body(x)


class ResNet9(nn.Module):
    def __init__(self, num_classes: int, in_chans: int = 3, width: int = 64, head_scale: float = 0.125):
        super().__init__()
        w = width
        self.features = nn.Sequential(
            conv_bn(in_chans, w),
            conv_bn(w, 2 * w, pool=True), Residual(2 * w),
            conv_bn(2 * w, 4 * w, pool=True),
            conv_bn(4 * w, 8 * w, pool=True), Residual(8 * w),
            nn.AdaptiveMaxPool2d(1), nn.Flatten(),
        )
        self.head = nn.Linear(8 * w, num_classes, bias=False)
        self.head_scale = head_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x)) * self.head_scale
