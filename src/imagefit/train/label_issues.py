"""The labelled images whose label is most likely wrong: `--find-label-issues` writes them (data/exclude.py:
`--exclude` trains without them).

A hand-made collection's commonest defect is a wrong label, and a model trained on it cannot point at its own
training mistakes (it learned them). The standard remedy (Northcutt et al., "Confident learning", cleanlab's
`find_label_issues`) needs out-of-sample probabilities for every labelled image. imagefit gets them cheaply and
the same way whatever the run trains: ImageNet features of every training and validation image (one forward pass
of a pretrained EfficientNet-Lite0, cached like a linear probe's), then a logistic regression cross-validated
over FOLDS folds (scikit-learn's `cross_val_predict`): each image is scored by a model that never saw it.
cleanlab ranks the issues by self-confidence (the probability of the given label) and suggests the most probable
class instead. Test images are never looked at: they judge the result.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import UserError

log = logging.getLogger("imagefit")

FOLDS = 5
FEATURE_MODEL = "tf_efficientnet_lite0"
SHOWN = 16  # images in label_issues.png
COLUMNS = ["file", "split", "given", "suggested", "self_confidence", "suggested_probability"]


@dataclass
class LabelIssues:
    """The flagged images, most likely wrong first, and how they were found."""

    rows: list[dict]  # COLUMNS
    images: int  # labelled images examined (train and validation)
    seconds: float
    how: str  # one sentence: what scored the images
    shown: torch.Tensor | None = None  # the first SHOWN flagged images (uint8), for label_issues.png

    def sentence(self) -> str:
        share = len(self.rows) / self.images if self.images else 0.0
        return (f"Label issues: {len(self.rows):,} of {self.images:,} training and validation images "
                f"({share:.1%}) probably carry a wrong label ({self.how}); label_issues.csv lists them, least "
                f"likely right first. Check them, then train without them: --exclude label_issues.csv.")


def out_of_sample_probabilities(features: np.ndarray, labels: np.ndarray, num_classes: int, seed: int,
                                folds: int = FOLDS) -> np.ndarray:
    """(N, classes) probabilities, each row from a logistic regression fitted on the other folds."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    smallest = np.bincount(labels, minlength=num_classes)
    smallest = smallest[smallest > 0].min()
    k = int(min(folds, smallest))
    if k < 2:
        raise UserError("finding label issues needs at least two images of every class (for cross-validation)",
                        "add images to the classes with one, or leave out --find-label-issues")
    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=300))
    probs = cross_val_predict(model, features, labels, cv=StratifiedKFold(k, shuffle=True, random_state=seed),
                              method="predict_proba")
    present = np.unique(labels)  # predict_proba's columns are the classes present: put them in their place
    out = np.zeros((len(labels), num_classes))
    out[:, present] = probs
    return out


def rank_issues(labels: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(indices of the images cleanlab flags, least likely right first; every image's self-confidence)."""
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    present = np.unique(labels)  # cleanlab wants every column a class with examples
    remap = np.full(probs.shape[1], -1)
    remap[present] = np.arange(len(present))
    sub = probs[:, present]
    sub = sub / sub.sum(1, keepdims=True).clip(min=1e-12)
    y = remap[labels]
    flagged = find_label_issues(y, sub, return_indices_ranked_by="self_confidence")
    return np.asarray(flagged, dtype=np.int64), get_label_quality_scores(y, sub, method="self_confidence")


def find_label_issues(cfg, data, precision: str, device) -> LabelIssues:
    """Score every training and validation image out of sample and return the flagged ones (data: PreparedData)."""
    from ..models import create_model
    from .transfer import cached_features, default_input_size
    from ..evaluate.predict import forward_batch

    try:
        import cleanlab  # noqa: F401
    except ImportError:
        raise UserError("--find-label-issues needs the cleanlab package", "pip install 'imagefit[clean]'") from None
    if data.train.multilabel:
        raise UserError("--find-label-issues ranks one label an image; this data set has several",
                        "leave out --find-label-issues for a multi-label run")
    started = time.perf_counter()
    parts = [("train", data.train)] + ([("val", data.val)] if data.val is not None else [])
    size, _ = default_input_size(data.image_size)
    model = create_model(FEATURE_MODEL, data.num_classes, data.channels, data.image_size, data.mean, data.std,
                         pretrained=True, input_size=size).to(device).eval()
    identity = {"model": FEATURE_MODEL, "weights": model.weights_info.get("sha256"), "size": size}
    features = [cached_features(model, part, Path(cfg.cache_dir), identity,
                                forward_batch(size, 256, cfg.on_cuda), precision)[0].images for _, part in parts]
    x = torch.cat(features).float().numpy()
    y = torch.cat([part.labels for _, part in parts]).numpy()
    probs = out_of_sample_probabilities(x, y, data.num_classes, cfg.seed)
    flagged, quality = rank_issues(y, probs)
    names = [(split, part.files[i] if part.files is not None else f"{split} #{i}")
             for split, part in parts for i in range(len(part))]
    rows = []
    for i in flagged.tolist():
        suggested = int(probs[i].argmax())
        rows.append({"file": names[i][1], "split": names[i][0], "given": data.class_names[y[i]],
                     "suggested": data.class_names[suggested], "self_confidence": round(float(quality[i]), 6),
                     "suggested_probability": round(float(probs[i, suggested]), 6)})
    how = (f"cleanlab's confident learning on out-of-sample probabilities: a logistic regression on "
           f"{FEATURE_MODEL}'s ImageNet features at {size} px, cross-validated over {min(FOLDS, len(y))} folds")
    where = [(part, i) for _, part in parts for i in range(len(part))]
    shown = [where[i][0].take(where[i][1], where[i][1] + 1)[0] for i in flagged[:SHOWN].tolist()]
    found = LabelIssues(rows, len(y), time.perf_counter() - started, how, torch.stack(shown) if shown else None)
    log.info(found.sentence())
    return found


def write_label_issues(run_dir: Path, issues: LabelIssues) -> Path:
    import csv
    import io

    from .. import atomic

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    w.writeheader()
    w.writerows(issues.rows)
    path = Path(run_dir) / "label_issues.csv"
    atomic.write_text(path, buf.getvalue())
    if issues.shown is not None:
        from ..evaluate.mistakes import plot_gallery

        titles = [f"{r['given']} → {r['suggested']}?\n{Path(r['file']).name} ({r['self_confidence']:.2f})"
                  for r in issues.rows[:len(issues.shown)]]
        plot_gallery(issues.shown, titles, Path(run_dir) / "label_issues.png",
                     "Labels most likely wrong: given → suggested (probability of the given label)")
    return path
