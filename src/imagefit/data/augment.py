"""Batched augmentation on uint8 tensors: one vectorised op per batch, no per-image PIL calls.

Runs wherever the batch already is (CPU or GPU), after it reached the device.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def random_crop(x: torch.Tensor, pad: int, gen: torch.Generator) -> torch.Tensor:
    """Pad by reflection, then cut each image at its own random offset (translation by up to `pad`)."""
    if pad <= 0:
        return x
    b, _, h, w = x.shape
    padded = F.pad(x.float() if x.dtype == torch.uint8 else x, (pad, pad, pad, pad), mode="reflect").to(x.dtype)
    dy = torch.randint(0, 2 * pad + 1, (b,), generator=gen, device=gen.device).to(x.device)
    dx = torch.randint(0, 2 * pad + 1, (b,), generator=gen, device=gen.device).to(x.device)
    rows = (dy[:, None] + torch.arange(h, device=x.device))[:, :, None]  # (B, H, 1)
    cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, :]  # (B, 1, W)
    batch = torch.arange(b, device=x.device)[:, None, None]
    return padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2).contiguous()


def random_flip(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Mirror a random half of the batch left to right."""
    mask = (torch.rand(x.shape[0], generator=gen, device=gen.device) < 0.5).to(x.device)
    return torch.where(mask[:, None, None, None], x.flip(-1), x)


def basic(x: torch.Tensor, gen: torch.Generator, flip: bool = True) -> torch.Tensor:
    """`--augment basic`: random crop with padding of 1/8 of the side (4 px at 32 px), then flip (unless the
    loader already flipped: `--flip alternating`)."""
    x = random_crop(x, max(1, x.shape[-1] // 8), gen)
    return random_flip(x, gen) if flip else x


def light(x: torch.Tensor, gen: torch.Generator, flip: bool = True) -> torch.Tensor:
    """`--augment light`: translation by up to 1/16 of the side (2 px at 32 px), then flip: what short
    schedules can still learn from (airbench's choice)."""
    x = random_crop(x, max(1, x.shape[-1] // 16), gen)
    return random_flip(x, gen) if flip else x


AUGMENTATIONS = {"none": None, "basic": basic, "light": light}
