"""The training loss of either task: cross-entropy over classes (one label an image), or binary cross-entropy
with one sigmoid output per label (multi-label: any number of labels an image, fastai's `BCEWithLogitsLossFlat`,
Hugging Face's `multi_label_classification`). The labels' shape says which: class indices (N,) or multi-hot (N, K),
unless the caller says: mixup and cutmix turn one label an image into class probabilities (N, K)."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def classification_loss(logits: torch.Tensor, y: torch.Tensor, weight: torch.Tensor | None = None,
                        label_smoothing: float = 0.0, multilabel: bool | None = None) -> torch.Tensor:
    """Mean loss of a batch. `weight`: per-class weights (single label) or per-label positive weights (multi-label,
    --class-weights balanced). Multi-label smoothing moves each 0/1 target `label_smoothing / 2` toward 1/2.
    `multilabel` None: (N, K) labels are multi-label; False with (N, K): mixed class probabilities."""
    if multilabel if multilabel is not None else y.ndim == 2:
        target = y.to(logits.dtype)
        if label_smoothing:
            target = target * (1 - label_smoothing) + label_smoothing / 2
        return F.binary_cross_entropy_with_logits(logits, target, pos_weight=weight)
    if y.ndim == 2:  # class probabilities: torch smooths them too, toward the uniform distribution
        y = y.to(logits.dtype)
    return F.cross_entropy(logits, y, weight=weight, label_smoothing=label_smoothing)


def positive_weights(labels: torch.Tensor) -> torch.Tensor:
    """Multi-label 'balanced' weights: each label's positives weighted by negatives / positives (clamped to 1..100),
    so a rare label's few positives count as much as its many negatives."""
    positives = labels.double().sum(0)
    negatives = len(labels) - positives
    return (negatives / positives.clamp(min=1)).clamp(1.0, 100.0).float()
