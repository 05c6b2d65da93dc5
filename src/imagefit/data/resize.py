"""Every split of a prepared data set at a smaller side, once, in memory (the budget planner's choice of side).

A model trained on such images must see new ones the same way: decoded at the side the data was decoded at, then
made smaller by `resized`. The run's model file records that side (`decoded_size`); imagefit.inference reads it.
Decoding a file straight to the smaller side (bicubic) gives other pixels: 23 points less test accuracy for an
Imagenette run trained at 64 px from 128 px images."""
from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F

from .pipeline import PreparedData
from .types import ImageSet


def resize_data(data: PreparedData, size: int) -> PreparedData:
    """Every split at a smaller side, once, in memory: training, validation and test all see `size`."""
    splits = {name: ImageSet(resized(part.take(0, len(part)), size), part.labels.clone(), files=part.files)
              for name in ("train", "val", "test") if (part := getattr(data, name)) is not None}
    note = f"Images were resized from {data.image_size} px to {size} px in memory for training and evaluation."
    return dataclasses.replace(data, **splits, image_shape=(data.channels, size), notes=data.notes + [note],
                               decoded_side=data.decoded_side or data.image_size)


def resized(images: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 images at another side (antialiased), in chunks so that float copies stay small."""
    out = torch.empty((len(images), images.shape[1], size, size), dtype=torch.uint8)
    for start in range(0, len(images), 512):
        x = images[start:start + 512].float()
        out[start:start + 512] = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True,
                                               align_corners=False).round_().clamp_(0, 255).to(torch.uint8)
    return out
