"""The course report's plain CNN: the baseline everything else is compared with.

conv32-conv32-pool, conv64-conv64-pool, dense 512, dropout: the Keras CIFAR-10 example that
course reports train "from scratch". Kept plain on purpose (no BatchNorm, no residuals).
"""
from __future__ import annotations

import torch.nn as nn


def seed_cnn(num_classes: int, in_chans: int = 3, image_size: int = 32, dropout: float = 0.5) -> nn.Module:
    side = image_size // 4
    return nn.Sequential(
        nn.Conv2d(in_chans, 32, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(inplace=True),
        nn.MaxPool2d(2), nn.Dropout(0.25),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(inplace=True),
        nn.MaxPool2d(2), nn.Dropout(0.25),
        nn.Flatten(),
        nn.Linear(64 * side * side, 512), nn.ReLU(inplace=True), nn.Dropout(dropout),
        nn.Linear(512, num_classes),
    )
