"""Stratified, seeded splits: the same seed always carves the same images, in every class."""
from __future__ import annotations

import torch

from .types import ImageSet


def stratified_split(labels: torch.Tensor, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (kept, carved): `fraction` of every class goes to the carved side.

    Each class with at least two images gives at least one to each side, so a small class never
    vanishes from either split; indices come back sorted so the split does not depend on order.
    """
    gen = torch.Generator().manual_seed(seed)
    if labels.ndim == 2:  # multi-label: no one class to stratify by; a seeded shuffle keeps each label's share
        order = torch.randperm(len(labels), generator=gen)  # in expectation (a rare label may miss a side)
        n = min(max(round(fraction * len(labels)), 1), len(labels) - 1) if len(labels) >= 2 else 0
        return order[n:].sort().values, order[:n].sort().values
    kept, carved = [], []
    for c in torch.unique(labels).tolist():
        idx = torch.nonzero(labels == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=gen)]
        n = round(fraction * len(idx))
        if len(idx) >= 2:
            n = min(max(n, 1), len(idx) - 1)
        else:
            n = 0
        carved.append(idx[:n])
        kept.append(idx[n:])
    return torch.cat(kept).sort().values, torch.cat(carved).sort().values


def carve(data: ImageSet, fraction: float, seed: int, lazy: bool = False) -> tuple[ImageSet, ImageSet]:
    kept, carved = stratified_split(data.labels, fraction, seed)
    return data.subset(kept, lazy), data.subset(carved, lazy)
