"""scikit-learn's bundled 8x8 digits: a data set that needs no download, for first runs and tests."""
from __future__ import annotations

import numpy as np
import torch

from .types import ImageSet, SourceData


def load_digits() -> SourceData:
    from sklearn.datasets import load_digits as _sk_load_digits

    bunch = _sk_load_digits()
    # Values are 0..16; scale to the full uint8 range so every source shares one pixel scale.
    images = np.rint(bunch.images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)[:, None, :, :]
    labels = bunch.target.astype(np.int64)
    return SourceData(
        name="digits",
        class_names=[str(i) for i in range(10)],
        train=ImageSet(torch.from_numpy(np.ascontiguousarray(images)), torch.from_numpy(labels)),
        notes=["digits: scikit-learn's bundled 8x8 handwritten digits (1,797 images; values 0..16 scaled to 0..255)."],
    )
