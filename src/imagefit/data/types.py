"""The shapes data takes on its way from a source to the training loop."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class ImageSet:
    """Decoded images of one split: uint8 (N, C, H, W) and int64 labels: class indices (N,), or for a
    multi-label set a multi-hot (N, classes) array of 0 and 1.

    With `index` set, the set is a lazy view: item i is images[index[i]]. That keeps a memory-mapped
    data set on disk when it is split, instead of copying it into RAM.

    `files`, when the source has files, names item i's source file (its path inside the folder or zip),
    so a misclassified test image can be traced back to the file a user can open. Data sets without
    files (digits, the CIFAR and MNIST arrays) leave it None and are traced by index.
    """

    images: torch.Tensor
    labels: torch.Tensor
    index: torch.Tensor | None = None
    files: list[str] | None = None

    def __post_init__(self):
        # uint8 images (N, C, H, W); float features (N, F) that a linear probe trains on; or a cached trunk's
        # activations (N, C, H, W), or (N, views, C, H, W) with one entry per augmentation view
        assert (self.images.dtype == torch.uint8 and self.images.ndim == 4) or \
            (self.images.is_floating_point() and self.images.ndim in (2, 4, 5)), (self.images.dtype, self.images.shape)
        n = len(self.images) if self.index is None else len(self.index)
        assert self.labels.dtype == torch.int64 and self.labels.ndim in (1, 2) and len(self.labels) == n
        assert self.files is None or len(self.files) == n, (len(self.files), n)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def multilabel(self) -> bool:
        return self.labels.ndim == 2

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self),) + tuple(self.images.shape[1:])

    def subset(self, index: torch.Tensor, lazy: bool = False) -> "ImageSet":
        files = [self.files[i] for i in index.tolist()] if self.files is not None else None
        if self.index is not None:
            return ImageSet(self.images, self.labels[index], self.index[index], files)
        if lazy:
            return ImageSet(self.images, self.labels[index], index, files)
        return ImageSet(self.images[index], self.labels[index], files=files)

    def take(self, start: int, stop: int) -> torch.Tensor:
        """Images start..stop as a real tensor, whatever the storage."""
        if self.index is None:
            return self.images[start:stop]
        return self.images[self.index[start:stop]]

    def materialize(self) -> "ImageSet":
        """A plain in-memory copy (reads a memory-mapped set into RAM once)."""
        images = self.images[self.index] if self.index is not None else self.images.clone()
        return ImageSet(images, self.labels.clone(), files=self.files)


@dataclass
class SourceData:
    """What a data source yields: its own splits, before imagefit carves validation or test from train.

    `val` and `test` are None when the source has no such split. `notes` are plain sentences for
    the report (where the files came from, how images were resized, what was carved out). `skipped`
    lists the files of the source that could not be used, each {"file": path inside the data set,
    "reason": why}; it is kept in the decode cache so a cached run reports the same files. `originals`
    sums up the files' own sizes and modes before decoding (for the data audit), also kept in the cache.
    """

    name: str
    class_names: list[str]
    train: ImageSet
    val: ImageSet | None = None
    test: ImageSet | None = None
    notes: list[str] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)
    originals: dict = field(default_factory=dict)  # a folder's own sizes and modes (folder.originals_summary); {} otherwise

    @property
    def image_size(self) -> int:
        return int(self.train.images.shape[-1])

    @property
    def multilabel(self) -> bool:
        return self.train.multilabel

    @property
    def channels(self) -> int:
        return int(self.train.images.shape[1])
