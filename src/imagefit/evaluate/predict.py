"""Outputs of a model over a whole split, in batches, under the run's precision."""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from ..data.types import ImageSet
from ..runtime import autocast, is_convolutional


CPU_FORWARD_PIXELS = 32 * 128 * 128  # images x side^2 per forward batch on a CPU


def forward_batch(side: int, batch: int, on_cuda: bool = False) -> int:
    """The batch for a forward-only pass at `side` px. On a CPU large batches of large images run at half the
    speed (EfficientNet-Lite0 at 128 px: 357-443 images/s in batches of 32, 247 in batches of 256, `python -m
    bench.transfer_speed`; the difference is kernel time, allocating and faulting in the large activations), so
    the batch is capped at CPU_FORWARD_PIXELS; GPUs keep theirs."""
    return batch if on_cuda else max(8, min(batch, CPU_FORWARD_PIXELS // max(1, side * side)))


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


def with_tta(model: torch.nn.Module, tta: str = "none") -> Callable:
    """Test-time augmentation: logits averaged over views the model was trained to be invariant to.

    flip: the image and its mirror. flip-translate (airbench's): half that, plus half the mean over the
    mirrored pair shifted one pixel up-left and one down-right (reflect-padded): six views in all.
    """
    def mirror(x):
        return 0.5 * (model(x) + model(x.flip(-1)))

    if tta == "none":
        return model
    if tta == "flip":
        return mirror

    def mirror_translate(x):
        h, w = x.shape[-2:]
        padded = F.pad(x.float() if x.dtype == torch.uint8 else x, (1, 1, 1, 1), mode="reflect").to(x.dtype)
        shifted = [padded[..., :h, :w], padded[..., 2:, 2:]]
        return 0.5 * mirror(x) + 0.25 * (mirror(shifted[0]) + mirror(shifted[1]))

    return mirror_translate


def predict_logits(model: torch.nn.Module, data: ImageSet, batch_size: int = 512, precision: str = "32",
                   device: str | torch.device = "cpu", tta: str = "none") -> tuple[torch.Tensor, torch.Tensor]:
    return batched_outputs(model, data, batch_size, precision, device, forward=with_tta(model, tta)), data.labels.clone()
