"""Test-set logits from a model, in batches, under the run's precision."""
from __future__ import annotations

import contextlib

import torch

from ..data.types import ImageSet


@torch.no_grad()
def predict_logits(model: torch.nn.Module, data: ImageSet, batch_size: int = 512, precision: str = "32",
                   device: str | torch.device = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    device = torch.device(device)
    model = model.to(device).eval()
    autocast = (torch.autocast(device.type, dtype=torch.bfloat16 if precision.startswith("bf16") else torch.float16)
                if precision in ("bf16-mixed", "16-mixed") else contextlib.nullcontext())
    outputs = []
    with autocast:
        for start in range(0, len(data), batch_size):
            x = data.take(start, start + batch_size).to(device)
            if any(isinstance(m, torch.nn.Conv2d) for m in model.modules()):
                x = x.contiguous(memory_format=torch.channels_last)
            outputs.append(model(x).float().cpu())
    return torch.cat(outputs), data.labels.clone()
