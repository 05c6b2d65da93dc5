"""`--ema`: an exponential moving average of the weights, evaluated and saved in their place.

Lightning's `EMAWeightAveraging` keeps the average (torch.optim.swa_utils.AveragedModel, BatchNorm statistics
averaged too), swaps it in for every validation, writes it as the checkpoint's `state_dict` (the raw weights ride
along for a resume) and copies it into the model when training ends. What is imagefit's: the decay, read off the
run's length, because a fixed 0.999 remembers 1,000 steps and a 10-minute CPU run may take fewer than that.
"""
from __future__ import annotations

from lightning.pytorch.callbacks import EMAWeightAveraging

MEMORY_SHARE = 0.1  # the average's memory, 1 / (1 - decay), as a share of the run's steps


def ema_decay(steps: int, share: float = MEMORY_SHARE) -> float:
    """The decay whose memory is `share` of `steps` (from 0.5 for a handful of steps to 0.9999)."""
    return min(0.9999, max(0.5, 1 - 1 / max(share * steps, 1e-9)))


def ema_callback(decay: float) -> EMAWeightAveraging:
    return EMAWeightAveraging(decay=decay, use_buffers=True)
