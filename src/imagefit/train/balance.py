"""Uneven classes: `--class-weights balanced` (loss weights) and `--sampler balanced` (resampling).

Photo collections are uneven (30 to 800 images a class): a plain loss learns the large classes and starves
the rare ones, which shows as macro F1 well below accuracy. Two standard remedies, both Keras/scikit-learn's
"balanced": weight each class's loss by n / (k * count) (training loss only: validation and test losses stay
comparable across runs), or draw each epoch's images with replacement, every class equally likely (torch's
WeightedRandomSampler). Which one pays depends on the data: compare them in a study (README).
"""
from __future__ import annotations

import numpy as np
import torch
from sklearn.utils.class_weight import compute_class_weight

from ..errors import UserError


def balanced_class_weights(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """scikit-learn's 'balanced' weights, n / (k * count); a class absent from training gets weight 1. Multi-label:
    each label's positive weight, negatives / positives (loss.positive_weights)."""
    if torch.as_tensor(labels).ndim == 2:
        from ..models.loss import positive_weights

        return positive_weights(torch.as_tensor(labels))
    y = np.asarray(torch.as_tensor(labels).long())
    present = np.unique(y)
    if len(present) < 2:
        raise UserError("class weights need at least two classes in the training split", "leave --class-weights out")
    weights = np.ones(num_classes, dtype=np.float32)
    weights[present] = compute_class_weight("balanced", classes=present, y=y)
    return torch.from_numpy(weights)


def balanced_sample_weights(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """One weight per training image, 1 / its class's count: every class is drawn equally often."""
    if torch.as_tensor(labels).ndim == 2:
        raise UserError("--sampler balanced draws every class equally often: a multi-label image has several",
                        "pass --class-weights balanced instead (each label's positives weighted by its rarity)")
    y = torch.as_tensor(labels).long()
    counts = torch.bincount(y, minlength=num_classes).clamp(min=1).double()
    return (1.0 / counts)[y]
