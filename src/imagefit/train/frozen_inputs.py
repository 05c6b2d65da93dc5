"""What a run with a frozen part of the network trains on, instead of images.

- linear probe: the frozen backbone's pooled features of every split (`probe_features`);
- partial fine-tuning: the frozen trunk's activations, training images with their mirrors
  (`trunk_activations`), and the top that trains on them.

Both come from disk caches keyed by the images, the weights, the input size (and the cut), so a second
run on the same data skips the expensive forward pass. The test images themselves are kept
(`test_images`) for the report's gallery of mistakes.
"""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from ..config import TrainConfig
from ..data.pipeline import PreparedData
from ..evaluate.predict import forward_batch
from ..models.split import split_model
from .cached_trunk import cached_trunk_split
from .transfer import cached_features

log = logging.getLogger("imagefit")


def unused_augmentation(cfg: TrainConfig) -> str:
    """A sentence naming the image augmentations asked for that cached inputs cannot apply ('' when none)."""
    asked = [f"--augment {cfg.augment}"] if cfg.augment not in ("none", "basic", "light") else []
    asked += [f"--{k.replace('_', '-')} {getattr(cfg, k):g}" for k in ("mixup", "cutmix", "random_erasing")
              if getattr(cfg, k)]
    if not asked:
        return ""
    said = (f"{', '.join(asked)} {'does' if len(asked) == 1 else 'do'} not apply: training sees the frozen part's "
            "cached outputs, not images (--transfer-strategy fine-tune trains on images).")
    log.warning(said)
    return " " + said


def probe_features(cfg: TrainConfig, data: PreparedData, model, input_size: int, precision: str) -> PreparedData:
    """The linear probe's data: backbone features of every split, from the disk cache when possible."""
    identity = {"model": cfg.model, "weights": model.weights_info.get("sha256"), "size": input_size}
    splits, hits = {}, 0
    for split in ("train", "val", "test"):
        part = getattr(data, split)
        if part is not None:
            splits[split], hit = cached_features(model, part, Path(cfg.cache_dir), identity,
                                                 forward_batch(input_size, (cfg.batch_size or 128) * 2, cfg.on_cuda), precision)
            hits += hit
    note = ("Linear probe: the frozen backbone's features of unaugmented images were "
            + ("read from the feature cache" if hits == len(splits) else "computed once and cached")
            + f" ({splits['train'].images.shape[1]} per image); augmentation does not apply."
            + unused_augmentation(cfg))
    return dataclasses.replace(data, notes=data.notes + [note], test_images=data.test,
                               frozen_from_cache=hits == len(splits), **splits)


def trunk_activations(cfg: TrainConfig, data: PreparedData, model, input_size: int, precision: str):
    """Partial fine-tuning's data: the frozen trunk's activations of every split (training: the image and
    its mirror), from the disk cache when possible; and the top that trains on them."""
    trunk, top = split_model(model, cfg.trainable_blocks)
    identity = {"model": cfg.model, "weights": model.weights_info.get("sha256") or f"random-{cfg.seed}",
                "size": input_size, "cut": len(trunk.blocks), "precision": precision}
    splits, hits = {}, 0
    for split in ("train", "val", "test"):
        part = getattr(data, split)
        if part is not None:
            splits[split], hit = cached_trunk_split(trunk, part, cfg.cache_dir, identity, 2 if split == "train" else 1,
                                                    forward_batch(input_size, (cfg.batch_size or 128) * 2, cfg.on_cuda),
                                                    precision)
            hits += hit
    shape = "x".join(map(str, splits["train"].images.shape[-3:]))
    note = (f"Partial fine-tuning: the last {cfg.trainable_blocks} blocks and the head trained on the frozen trunk's "
            f"activations ({shape} per image; training images and their mirrors), "
            + ("read from the trunk cache." if hits == len(splits) else "computed once and cached.")
            + unused_augmentation(cfg))
    return dataclasses.replace(data, notes=data.notes + [note], test_images=data.test,
                               frozen_from_cache=hits == len(splits), **splits), top
