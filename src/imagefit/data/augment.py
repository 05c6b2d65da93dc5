"""Batched augmentation: one vectorised op per batch, no per-image PIL calls.

Runs wherever the batch already is (CPU or GPU), after it reached the device. Crops and flips are written here
(on uint8, a few lines each); the stronger policies, random erasing, mixup and cutmix come from kornia and
torchvision.transforms.v2.
"""
from __future__ import annotations

from contextlib import contextmanager
from functools import lru_cache

import torch
import torch.nn.functional as F

from ..errors import UserError


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


# ---- stronger augmentation: batch-level libraries (kornia, torchvision.transforms.v2), seeded by the run ----------
# Both draw from torch's global generator. `seeded` forks it and seeds it from the run's augmentation generator, so
# a batch's draws follow --seed and the epoch (resume and DDP ranks included) and nothing outside is disturbed.
# Measured in bench/README.md (B9) before any of them became a default.


@contextmanager
def seeded(gen: torch.Generator, device: torch.device):
    seed = int(torch.randint(0, 2**62, (1,), generator=gen, device=gen.device))
    with torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        yield


def to_unit(x: torch.Tensor) -> torch.Tensor:
    """uint8 pixels as [0, 1] floats (the models take either); floats stay as they are."""
    return x.float().div_(255) if x.dtype == torch.uint8 else x


def kornia_module(name: str, **kwargs):
    try:
        import kornia.augmentation as K
        from kornia.augmentation import auto
    except ImportError:
        raise UserError(f"--augment {name} and --random-erasing need kornia",
                        "pip install 'imagefit[augment]' (or pip install kornia)") from None
    if name == "trivial":
        return auto.TrivialAugment()  # Müller & Hutter 2021: one op a batch at a random strength, nothing to tune
    if name == "randaugment":
        return auto.RandAugment(n=2, m=9)  # Cubuk et al. 2020, the ImageNet setting timm calls rand-m9-n2
    return K.RandomErasing(**kwargs)  # Zhong et al. 2020: a random rectangle of each image blanked


POLICY_GROUP = 32  # images that share one draw of a policy's ops


class Policy:
    """`--augment trivial|randaugment`: kornia's TrivialAugment or RandAugment, then `basic`'s crop and flip.
    kornia draws one op (and strength) for everything it is given; called on groups of POLICY_GROUP images, a
    batch of 1,024 sees 32 draws instead of one, at about 1.4x the cost of a single call (measured on 2 cores)."""

    def __init__(self, name: str):
        self.name, self.op = name, None

    def __call__(self, x: torch.Tensor, gen: torch.Generator, flip: bool = True) -> torch.Tensor:
        self.op = self.op or kornia_module(self.name)
        with seeded(gen, x.device):
            x = torch.cat([self.op(group) for group in to_unit(x).split(POLICY_GROUP)])
        return basic(x, gen, flip)


@lru_cache(maxsize=8)
def erasing_module(p: float):
    """One kornia module a probability, built once (not on every batch)."""
    return kornia_module("erasing", p=p)


def random_erasing(x: torch.Tensor, p: float, gen: torch.Generator) -> torch.Tensor:
    """`--random-erasing P`: each image, with probability P, gets one random rectangle (2-33% of it) set to 0."""
    with seeded(gen, x.device):
        return erasing_module(p)(to_unit(x))


class Mixing:
    """`--mixup A` / `--cutmix A` (torchvision.transforms.v2.MixUp, CutMix): each batch blends every image with its
    neighbour in the batch, with a Beta(A, A) share of pixels (mixup) or of area (cutmix); the targets become the
    same blend of the two one-hot labels (each row sums to 1). With both, each batch takes one of the two."""

    def __init__(self, mixup: float, cutmix: float, num_classes: int):
        from torchvision.transforms import v2

        ops = ([v2.MixUp(alpha=mixup, num_classes=num_classes)] if mixup > 0 else []) + \
              ([v2.CutMix(alpha=cutmix, num_classes=num_classes)] if cutmix > 0 else [])
        self.op = ops[0] if len(ops) == 1 else v2.RandomChoice(ops)

    def __call__(self, x: torch.Tensor, y: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        with seeded(gen, x.device):
            return self.op(to_unit(x), y)


AUGMENTATIONS.update(trivial=Policy("trivial"), randaugment=Policy("randaugment"))
