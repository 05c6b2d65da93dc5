"""Transfer learning: which parameters train, at which rate, and the linear probe's feature cache.

- fine-tune: everything trains; the pretrained backbone at `backbone_lr_mult` times the head's rate,
  so the new head can catch up without wrecking the features it sits on.
- freeze-unfreeze (fastai's fine_tune): the head alone for `freeze_epochs`, then everything with the
  same discriminative rates. While frozen, the backbone's BatchNorm layers stay in eval mode so their
  running statistics do not drift (the trap Keras and Lightning users keep falling into).
- linear-probe: the backbone never trains, so its features are computed once per split, cached on
  disk, and the head trains on them: an epoch takes seconds. Features come from unaugmented images.
"""
from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import lightning as L
import torch
from safetensors.torch import load_file, save_file

from .. import atomic
from ..data.types import ImageSet
from ..evaluate.predict import batched_outputs
from ..models.freeze import freeze, unfreeze
from ..models.registry import ImageClassifier

log = logging.getLogger("imagefit")

SMALL_IMAGE_INPUT = 128  # see default_input_size


def default_input_size(data_size: int) -> tuple[int, str]:
    """The network input size for a pretrained model when --image-size is not given.

    ImageNet nets are trained at 224 px, but on a CPU the cost grows with the square of the side:
    upscaling small images (CIFAR's 32 px) to 128 px costs a third of 224 px per image.
    """
    if data_size <= 64:
        return SMALL_IMAGE_INPUT, (f"The pretrained network sees {SMALL_IMAGE_INPUT}x{SMALL_IMAGE_INPUT} px: the "
                                   f"{data_size} px images are upscaled in batches on tensors; {SMALL_IMAGE_INPUT} px "
                                   f"costs a third of ImageNet's 224 px per image on a CPU.")
    return data_size, f"The pretrained network sees the data's own {data_size}x{data_size} px."


SMALL_DATA = 100  # training images a class under which --bn-statistics auto keeps BatchNorm's ImageNet statistics


def keeps_statistics(cfg, data) -> bool:
    """Whether a fine-tune keeps its BatchNorm statistics (--bn-statistics; auto: on small data)."""
    if cfg.bn_statistics != "auto":
        return cfg.bn_statistics == "keep"
    return len(data.train) < SMALL_DATA * data.num_classes


def split_parameters(model: ImageClassifier) -> tuple[list, list]:
    head = {id(p) for p in model.head().parameters()}
    params = list(model.net.parameters())
    return [p for p in params if id(p) not in head], [p for p in params if id(p) in head]


def parameter_groups(model: ImageClassifier, lr: float, backbone_lr_mult: float) -> list[dict]:
    backbone, head = split_parameters(model)
    return [{"params": backbone, "lr": lr * backbone_lr_mult, "name": "backbone"},
            {"params": head, "lr": lr, "name": "head"}]


class FreezeUnfreeze(L.Callback):
    """Backbone frozen (parameters and BatchNorm statistics) for the first `freeze_epochs` epochs."""

    def __init__(self, model: ImageClassifier, freeze_epochs: int, keep_statistics: bool = False):
        self.model = model
        self.freeze_epochs = freeze_epochs
        self.keep_statistics = keep_statistics  # --bn-statistics keep: BatchNorm stays in eval mode once unfrozen

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch < self.freeze_epochs:
            freeze(self.model.net)
            unfreeze(self.model.head())
        else:
            unfreeze(self.model.net)
            if self.keep_statistics:
                from ..models.freeze import keep_statistics

                keep_statistics(self.model.net)


def extract_features(model: ImageClassifier, data: ImageSet, batch_size: int, precision: str) -> torch.Tensor:
    return batched_outputs(model, data, batch_size, precision, next(model.parameters()).device, model.features)


def content_key(data: ImageSet) -> str:
    h = hashlib.sha256()
    for start in range(0, len(data), 8192):
        h.update(data.take(start, start + 8192).contiguous().numpy().tobytes())
    h.update(data.labels.numpy().tobytes())
    return h.hexdigest()[:24]


def cached_features(model: ImageClassifier, data: ImageSet, cache_dir: Path, identity: dict, batch_size: int,
                    precision: str) -> tuple[ImageSet, bool]:
    """Features of one split, from the disk cache when the same images, model, weights and size met before."""
    key = hashlib.sha256(repr(sorted({**identity, "images": content_key(data), "precision": precision}.items()))
                         .encode()).hexdigest()[:24]
    path = Path(cache_dir).expanduser() / "features" / f"{identity.get('model', 'model')}-{key}.safetensors"
    if path.is_file():
        try:
            return ImageSet(load_file(str(path))["features"], data.labels.clone()), True
        except Exception:  # a damaged entry is recomputed
            log.info("feature cache entry %s unreadable: recomputing", path)
    features = extract_features(model, data, batch_size, precision)
    with atomic.atomic_path(path, hint=atomic.CACHE_HINT) as tmp:  # a full disk: one line, no half entry
        save_file({"features": features.contiguous()}, str(tmp))
    return ImageSet(features, data.labels.clone()), False
