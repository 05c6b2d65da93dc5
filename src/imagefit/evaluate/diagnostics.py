"""The files that explain a run's mistakes, beyond the classification report: written once at the run's end.

`write_diagnostics` is the one call `finish_run` makes; it returns the numbers for metrics.json.
`rebuild_diagnostics` redoes the parts that need only saved files (predictions.safetensors and
metrics.json), for `imagefit report`; the gallery of mistakes needs the images and is kept as written.
"""
from __future__ import annotations

from pathlib import Path

import torch

from .imbalance import ClassBalance, class_counts, class_f1, plot_counts_vs_f1


def write_balance(run_dir: Path, class_names: list[str], train_counts: list[int], logits: torch.Tensor,
                  labels: torch.Tensor) -> dict:
    balance = ClassBalance(list(map(str, class_names)), train_counts, class_f1(logits, labels, len(class_names)))
    plot_counts_vs_f1(balance, Path(run_dir) / "class_balance.png")
    return {"train_class_counts": train_counts, "rare_poor_classes": [balance.names[i] for i in balance.rare_and_poor()]}


def write_diagnostics(run_dir: Path, data, logits: torch.Tensor, labels: torch.Tensor) -> dict:
    """`data` is the run's PreparedData; `logits` and `labels` are the evaluated model's on test."""
    counts = class_counts(data.train.labels, data.num_classes)
    return write_balance(run_dir, data.class_names, counts, logits, labels)


def rebuild_diagnostics(run_dir: Path, metrics: dict, logits: torch.Tensor, labels: torch.Tensor) -> dict:
    out = {}
    names = metrics.get("class_names") or [str(i) for i in range(logits.shape[1])]
    counts = metrics.get("train_class_counts")
    if counts and len(counts) == len(names):
        out.update(write_balance(run_dir, names, counts, logits, labels))
    return out
