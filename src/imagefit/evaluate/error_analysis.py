"""Error analysis: the files that explain a run's mistakes, beyond the classification report, written once at
the run's end (per-class training counts against F1, the gallery of the worst mistakes, Grad-CAM, calibration).

The analyses themselves live in imbalance.py, mistakes.py, saliency.py and calibration.py; this module is the
one place that knows which of them a finished run gets, so training and `imagefit report` cannot disagree.
`write_error_analysis` is the one call `finish_run` (train/outputs.py) makes; it returns the numbers for
metrics.json. `rebuild_error_analysis` redoes the parts that need only saved files (predictions.safetensors
and metrics.json), for `imagefit report`; the gallery of mistakes and the Grad-CAM overlays need the images
(and the model) and are kept as written. report/error_analysis_section.py turns the files into report.md's
sections.
"""
from __future__ import annotations

from pathlib import Path

import torch

from .calibration import calibrate, plot_reliability
from .imbalance import ClassBalance, class_counts, class_f1, plot_counts_vs_f1
from .mistakes import write_mistakes
from .saliency import write_gradcam


def write_balance(run_dir: Path, class_names: list[str], train_counts: list[int], logits: torch.Tensor,
                  labels: torch.Tensor) -> dict:
    balance = ClassBalance(list(map(str, class_names)), train_counts, class_f1(logits, labels, len(class_names)))
    plot_counts_vs_f1(balance, Path(run_dir) / "class_balance.png")
    return {"train_class_counts": train_counts, "rare_poor_classes": [balance.names[i] for i in balance.rare_and_poor()]}


def write_calibration(run_dir: Path, logits: torch.Tensor, labels: torch.Tensor, val_logits: torch.Tensor | None,
                      val_labels: torch.Tensor | None) -> dict:
    out = calibrate(logits, labels, val_logits, val_labels)
    plot_reliability(logits, labels, Path(run_dir) / "reliability.png", out["temperature"])
    return out


def write_error_analysis(run_dir: Path, data, logits: torch.Tensor, labels: torch.Tensor,
                      val_logits: torch.Tensor | None = None, model: torch.nn.Module | None = None) -> dict:
    """`data` is the run's PreparedData; `logits` and `labels` are the evaluated model's on test, and
    `val_logits` the same model's on validation (None without a validation split). `model`, the whole
    image-to-logits network, is for the Grad-CAM overlays (none without it)."""
    counts = class_counts(data.train.labels, data.num_classes)
    out = write_balance(run_dir, data.class_names, counts, logits, labels)
    out.update(write_mistakes(run_dir, data.test_pictures, logits, labels, data.class_names))
    if model is not None:
        out.update(write_gradcam(run_dir, data.test_pictures, logits, labels, data.class_names, model))
    val_labels = data.val.labels if data.val is not None else None
    out.update(write_calibration(run_dir, logits, labels, val_logits, val_labels))
    return out


def rebuild_error_analysis(run_dir: Path, metrics: dict, saved: dict[str, torch.Tensor]) -> dict:
    """From predictions.safetensors' tensors (test logits and labels, and validation's when there was one)."""
    logits, labels = saved["logits"], saved["labels"]
    out = write_calibration(run_dir, logits, labels, saved.get("val_logits"), saved.get("val_labels"))
    names = metrics.get("class_names") or [str(i) for i in range(logits.shape[1])]
    counts = metrics.get("train_class_counts")
    if counts and len(counts) == len(names):
        out.update(write_balance(run_dir, names, counts, logits, labels))
    return out
