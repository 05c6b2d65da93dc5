"""Test-set metrics and the evaluation files of a run, computed from saved logits alone.

Everything here depends only on (logits, labels, class names), so `imagefit report` can rebuild
the files from `predictions.safetensors` without the model, and the numbers in `metrics.json`, the
text report and the CSVs always agree because they come from the same arrays.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import (balanced_accuracy_score, classification_report, confusion_matrix,
                             precision_recall_fscore_support)

from .. import atomic
from ..errors import UserError
from .tables import csv_text, fixed6

TOP_CONFUSIONS = 10


def _check(logits: torch.Tensor, labels: torch.Tensor, class_names: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    logits = torch.as_tensor(logits).detach().cpu()
    labels = torch.as_tensor(labels).detach().cpu().long()
    if logits.ndim != 2 or labels.ndim != 1 or len(logits) != len(labels):
        raise ValueError(f"expected logits (N, K) and labels (N,), got {tuple(logits.shape)} and {tuple(labels.shape)}")
    if logits.shape[1] != len(class_names):
        raise ValueError(f"logits have {logits.shape[1]} classes but there are {len(class_names)} class names")
    if len(labels) == 0:
        raise UserError("there are no test predictions to evaluate", "check that the test split is not empty")
    if labels.min() < 0 or labels.max() >= len(class_names):
        raise ValueError(f"labels must lie in [0, {len(class_names)}), got {int(labels.min())}..{int(labels.max())}")
    return logits, labels


def _confusion(y_true: np.ndarray, y_pred: np.ndarray, k: int) -> np.ndarray:
    return confusion_matrix(y_true, y_pred, labels=list(range(k)))


def _top_confusions(cm: np.ndarray, class_names: list[str], n: int = TOP_CONFUSIONS) -> list[dict]:
    rows = cm.sum(axis=1)
    cells = [(int(cm[i, j]), i, j) for i in range(len(cm)) for j in range(len(cm)) if i != j and cm[i, j] > 0]
    cells.sort(key=lambda c: (-c[0], c[1], c[2]))  # ties in a stable, readable order
    return [
        {"true": class_names[i], "predicted": class_names[j], "count": count, "share_of_true": float(count / rows[i])}
        for count, i, j in cells[:n]
    ]


def balanced_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """The mean of per-class recalls (scikit-learn's): what accuracy would be if every class were equally common.

    On uneven classes plain accuracy is mostly the big classes' recall; this is the number that drops when a
    rare class is never recognised. Classes absent from the test labels are left out, as scikit-learn does.
    """
    with warnings.catch_warnings():  # "y_pred contains classes not in y_true": expected on small test sets
        warnings.simplefilter("ignore", UserWarning)
        return float(balanced_accuracy_score(y_true, y_pred))


def test_metrics(logits: torch.Tensor, labels: torch.Tensor, class_names: list[str]) -> dict:
    """Plain floats and ints only, so the dict merges straight into metrics.json. Multi-hot labels (N, K): the
    multi-label metrics at 0.5 (a run's thresholds are chosen later, on validation)."""
    if torch.as_tensor(labels).ndim == 2:
        from .multilabel import multilabel_metrics

        return multilabel_metrics(logits, labels, class_names, [0.5] * len(class_names))
    logits, labels = _check(logits, labels, class_names)
    k = len(class_names)
    y_true = labels.numpy()
    y_pred = logits.argmax(dim=1).numpy()
    every = list(range(k))
    out: dict = {
        "test_accuracy": float((y_true == y_pred).mean()),
        "test_balanced_accuracy": balanced_accuracy(y_true, y_pred),
        # float64: a float16/bf16 or large-K float32 sum loses digits the report prints
        "test_loss": float(F.cross_entropy(logits.double(), labels)),
    }
    if k > 5:
        top5 = logits.topk(5, dim=1).indices
        out["test_top5_accuracy"] = float((top5 == labels[:, None]).any(dim=1).double().mean())
    for average in ("macro", "weighted"):
        p, r, f, _ = precision_recall_fscore_support(y_true, y_pred, labels=every, average=average, zero_division=0)
        out[f"precision_{average}"] = float(p)
        out[f"recall_{average}"] = float(r)
        out[f"f1_{average}"] = float(f)
    out["test_images"] = int(len(y_true))
    out["top_confusions"] = _top_confusions(_confusion(y_true, y_pred, k), class_names)
    return out


test_metrics.__test__ = False  # its name would make pytest collect it wherever a test imports it


def write_evaluation(run_dir: Path, logits: torch.Tensor, labels: torch.Tensor, class_names: list[str]) -> dict:
    """Write every evaluation file of a run and return the metrics they were built from."""
    from .plots import plot_confusion  # matplotlib is slow to import; only pay for it when writing

    run_dir = Path(run_dir)
    logits, labels = _check(logits, labels, class_names)
    k = len(class_names)
    every = list(range(k))
    y_true = labels.numpy()
    predicted = logits.argmax(dim=1)  # the same argmax as test_metrics, so ties break the same way
    confidence = torch.softmax(logits.double(), dim=1).gather(1, predicted[:, None])[:, 0]
    y_pred = predicted.numpy()
    names = [str(n) for n in class_names]

    text = classification_report(y_true, y_pred, labels=every, target_names=names, digits=4, zero_division=0)
    balanced = balanced_accuracy(y_true, y_pred)
    width = max(len(line) - len(line.lstrip()) + len("accuracy") for line in text.splitlines() if "accuracy" in line)
    text = text.rstrip("\n") + f"\n{'balanced accuracy':>{width}}  {balanced:.4f}\n"
    atomic.write_text(run_dir / "classification_report.txt", text)

    # Per-class rows from the arrays, not the dict, so duplicate class names cannot collapse rows.
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=every, zero_division=0)
    report = classification_report(y_true, y_pred, labels=every, target_names=names, zero_division=0, output_dict=True)
    rows = [["class", "precision", "recall", "f1-score", "support"]]
    rows += [[names[i], fixed6(p[i]), fixed6(r[i]), fixed6(f[i]), int(s[i])] for i in every]
    rows.append(["accuracy", "", "", fixed6(report["accuracy"]), int(s.sum())])
    rows.append(["balanced accuracy", "", "", fixed6(balanced), int(s.sum())])
    for avg in ("macro avg", "weighted avg"):
        d = report[avg]
        rows.append([avg, fixed6(d["precision"]), fixed6(d["recall"]), fixed6(d["f1-score"]), int(d["support"])])
    atomic.write_text(run_dir / "classification_report.csv", csv_text(rows))

    cm = _confusion(y_true, y_pred, k)
    cm_rows = [["true\\predicted", *names]] + [[names[i], *map(int, cm[i])] for i in every]
    atomic.write_text(run_dir / "confusion_matrix.csv", csv_text(cm_rows))
    plot_confusion(cm, names, run_dir / "confusion_matrix.png")

    metrics = test_metrics(logits, labels, names)
    conf_rows = [["true", "predicted", "count", "share_of_true"]]
    conf_rows += [[c["true"], c["predicted"], c["count"], fixed6(c["share_of_true"])] for c in metrics["top_confusions"]]
    atomic.write_text(run_dir / "top_confusions.csv", csv_text(conf_rows))

    pred_rows = [["index", "label", "label_name", "predicted", "predicted_name", "confidence"]]
    pred_rows += [
        [i, int(t), names[t], int(q), names[q], fixed6(float(c))]
        for i, (t, q, c) in enumerate(zip(y_true.tolist(), y_pred.tolist(), confidence.tolist()))
    ]
    atomic.write_text(run_dir / "predictions.csv", csv_text(pred_rows))
    return metrics
