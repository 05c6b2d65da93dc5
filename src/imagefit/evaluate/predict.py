"""Outputs of a model over a whole split, in batches, under the run's precision."""
from __future__ import annotations

from typing import Callable

import torch

from ..data.types import ImageSet
from ..train.precision import autocast, is_convolutional


@torch.no_grad()
def batched_outputs(model: torch.nn.Module, data: ImageSet, batch_size: int = 512, precision: str = "32",
                    device: str | torch.device = "cpu", forward: Callable | None = None) -> torch.Tensor:
    """`forward` (default: the model itself) over every item of `data`, as float32 on the CPU."""
    device = torch.device(device)
    model = model.to(device).eval()
    forward = forward or model
    channels_last = is_convolutional(model)
    outputs = []
    with autocast(precision, device.type):
        for start in range(0, len(data), batch_size):
            x = data.take(start, start + batch_size).to(device)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            outputs.append(forward(x).float().cpu())
    return torch.cat(outputs)


def predict_logits(model: torch.nn.Module, data: ImageSet, batch_size: int = 512, precision: str = "32",
                   device: str | torch.device = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    return batched_outputs(model, data, batch_size, precision, device), data.labels.clone()
