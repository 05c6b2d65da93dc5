"""Batches for the training loop.

`TensorLoader` serves batches straight from a uint8 tensor in memory: a random permutation per
epoch, sliced into batches (no Dataset, no collate, no worker processes: at 32 px these cost more
than the model). It shards by rank (`rank::world_size`, equal length on every rank) so distributed
training sees disjoint data. `stream_loader` is the fallback for data sets larger than memory:
a memory-mapped array behind a DataLoader with worker processes (Lightning adds its
DistributedSampler there).

`alternating_flip` (airbench's "alternating flip"): each training image gets one random orientation for
epoch 0 and is mirrored in every other epoch after it, so any two consecutive epochs show it both ways.
Random flips show an image the same way twice in a row half the time; at 10 epochs that redundancy costs
accuracy. It needs each image's index, so it lives here and not in the batched augmentation.
"""
from __future__ import annotations

import math

import torch
from torch.utils.data import DataLoader, Dataset, WeightedRandomSampler

from .types import ImageSet


class TensorLoader:
    def __init__(self, data: ImageSet, batch_size: int, shuffle: bool, seed: int = 0,
                 rank: int = 0, world_size: int = 1, drop_last: bool = False,
                 sample_weights: torch.Tensor | None = None, alternating_flip: bool = False):
        self.data = data
        # each image's orientation in even epochs; the same on every rank (a function of the seed alone)
        self.flip_bits = (torch.rand(len(data), generator=torch.Generator().manual_seed(seed * 7_919 + 17)) < 0.5
                          if alternating_flip else None)
        self.sample_weights = sample_weights  # each epoch draws len(data) images with replacement by these
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.rank, self.world_size = rank, world_size
        self.drop_last = drop_last
        self.epoch = 0  # advanced by set_epoch (Lightning calls it) or by each full pass

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _indices(self) -> torch.Tensor:
        n = len(self.data)
        if self.shuffle and self.sample_weights is not None:  # the same draw on every rank, then sharded
            gen = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            order = torch.multinomial(self.sample_weights.double(), n, replacement=True, generator=gen)  # as torch's sampler draws
        elif self.shuffle:
            gen = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            order = torch.randperm(n, generator=gen)
        else:
            order = torch.arange(n)
        if self.world_size > 1:
            per_rank = n // self.world_size if self.shuffle else math.ceil(n / self.world_size)
            order = order[self.rank::self.world_size][:per_rank]
        return order

    def __len__(self) -> int:
        n = len(self._indices()) if self.world_size > 1 else len(self.data)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self):
        order = self._indices()
        stop = len(self) * self.batch_size
        for start in range(0, min(stop, len(order)), self.batch_size):
            index = order[start:start + self.batch_size]
            if self.shuffle or self.world_size > 1 or self.data.index is not None:
                images = self.data.images[index] if self.data.index is None else self.data.images[self.data.index[index]]
                if self.flip_bits is not None:
                    mirror = self.flip_bits[index] ^ bool(self.epoch % 2)
                    images = torch.where(mirror[:, None, None, None], images.flip(-1), images)
                yield images, self.data.labels[index]
            else:  # contiguous slices are views: no copy
                yield self.data.images[index[0]:index[-1] + 1], self.data.labels[index[0]:index[-1] + 1]
        self.epoch += 1


class _ArrayDataset(Dataset):
    def __init__(self, data: ImageSet):
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i):
        j = i if self.data.index is None else int(self.data.index[i])
        return self.data.images[j], self.data.labels[i]


def stream_loader(data: ImageSet, batch_size: int, shuffle: bool, seed: int, num_workers: int,
                  sample_weights: torch.Tensor | None = None) -> DataLoader:
    gen = torch.Generator().manual_seed(seed)
    sampler = WeightedRandomSampler(sample_weights, len(data), generator=gen) if sample_weights is not None else None
    return DataLoader(_ArrayDataset(data), batch_size=batch_size, shuffle=shuffle and sampler is None, sampler=sampler,
                      generator=gen, num_workers=num_workers, persistent_workers=num_workers > 0)
