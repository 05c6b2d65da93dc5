"""Multi-label evaluation: several labels an image, one sigmoid output per class.

Accuracy means little here (an image is "right" only when its whole set of labels is), so the headline is
mean average precision over the classes that have a positive test image: it ranks images per class and needs
no threshold. The thresholded numbers (F1, precision, recall, the sets an image is given) use one threshold
per class, chosen on validation by `choose_thresholds`, never on test. Like metrics.py, everything depends
only on (logits, labels, class names, thresholds), so the files can be rebuilt from saved logits.

The rule everywhere is "positive when the probability is >= the threshold" (scikit-learn's
precision_recall_curve's), and probabilities are the sigmoid of the logits in float64.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import (accuracy_score, average_precision_score, f1_score, hamming_loss,
                             multilabel_confusion_matrix, precision_recall_curve, precision_recall_fscore_support)
from torchmetrics.functional.classification import binary_calibration_error

from .. import atomic
from ..errors import UserError
from .tables import csv_text, fixed6

N_BINS = 15  # as calibration.py
CUT_MIN, CUT_MAX = 0.01, 0.99  # where choose_thresholds may put a cut (see there)
TOP_PAIRS = 10
LARGEST_LOSS = 20
LOW_AP = 0.5  # multilabel_sentences names the classes under it
PER_CLASS_COLUMNS = ["class", "ap", "precision", "recall", "f1", "support", "threshold", "ece", "predicted"]


def _matrix(x, what: str) -> np.ndarray:
    x = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    if x.ndim != 2:
        raise UserError(f"{what} must be a 2-D array (images, classes), got shape {tuple(x.shape)}",
                        "pass one row per image and one column per class")
    return x


def _labels(labels, n: int, c: int) -> np.ndarray:
    y = _matrix(labels, "multi-label labels")
    if y.shape != (n, c):
        raise UserError(f"labels have shape {tuple(y.shape)} but the scores have {(n, c)}",
                        "give labels and scores for the same images and classes, in the same order")
    if y.size and not np.isin(y, (0, 1)).all():
        raise UserError("multi-label labels must be multi-hot: every entry 0 or 1",
                        "encode each image's labels as a row with 1 in the column of every class it has")
    return y.astype(np.int64)


def _scores(x, what: str, class_names: list[str] | None = None) -> np.ndarray:
    x = _matrix(x, what).astype(np.float64)
    if x.shape[0] == 0:
        raise UserError(f"there are no {what} to evaluate (0 images)", "check that the split is not empty")
    if class_names is not None and x.shape[1] != len(class_names):
        raise UserError(f"{what} have {x.shape[1]} classes but there are {len(class_names)} class names",
                        "pass the class names of the model that made the outputs, in its output order")
    if x.shape[1] == 0:
        raise UserError(f"{what} have no classes", "a multi-label model needs at least one output")
    if not np.isfinite(x).all():
        raise UserError(f"{what} contain NaN or infinite values",
                        "the model diverged: train again with a lower learning rate")
    return x


def _thresholds(thresholds, c: int) -> np.ndarray:
    t = np.asarray(thresholds.detach().cpu() if isinstance(thresholds, torch.Tensor) else thresholds, dtype=float)
    if t.shape != (c,) or not ((t >= 0) & (t <= 1)).all():
        got = f"{t.size} values" if t.shape != (c,) else f"values outside it: {t[~((t >= 0) & (t <= 1))].tolist()[:5]}"
        raise UserError(f"expected {c} thresholds in [0, 1] (one per class), got {got}",
                        "pass the list choose_thresholds returned for these classes")
    return t


def choose_thresholds(probs, labels, policy: str = "f1", fixed: float = 0.5) -> list[float]:
    """One threshold per class, from VALIDATION probabilities (sigmoid of the logits): never pass test data.

    "fixed": `fixed` for every class. "f1": per class, the cut in [0.01, 0.99] with the best F1 on these
    images. The cut is an exact score value (no midpoint), so F1 at the cut is exactly the F1 measured here
    (compute the probabilities as multilabel_metrics does, torch.sigmoid(logits.double()), and an image at
    the cut falls on the same side). The range keeps a cut off one saturated score (a cut at 0.9999 would
    miss a test positive at 0.98); when the best cut lies outside it, the best cut inside is taken, which
    can beat clipping the outside one. Ties go to the lowest cut (more recall). A class with no positive
    here gets `fixed`: there is nothing to fit.
    """
    if not 0 <= fixed <= 1:
        raise UserError(f"the fixed threshold must lie in [0, 1], got {fixed}", "use a probability such as 0.5")
    p = _scores(probs, "validation probabilities")
    y = _labels(labels, *p.shape)
    if not ((p >= 0) & (p <= 1)).all():
        raise UserError("the validation probabilities are not in [0, 1]",
                        "pass torch.sigmoid(logits), not the logits")
    if policy == "fixed":
        return [float(fixed)] * p.shape[1]
    if policy != "f1":
        raise UserError(f"unknown threshold policy {policy!r}", "use 'f1' (per class, on validation) or 'fixed'")
    out = []
    for c in range(p.shape[1]):
        if not y[:, c].any():
            out.append(float(fixed))
            continue
        precision, recall, cuts = precision_recall_curve(y[:, c], p[:, c])  # cuts: every distinct score, rising
        precision, recall = precision[:-1], recall[:-1]  # drop the (recall 0, precision 1) end: no cut gives it
        f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros_like(precision),
                       where=precision + recall > 0)
        # a cut t predicts what the smallest score >= t predicts: the candidates are the scores inside the
        # range and the range's ends; a cut above every score predicts nothing (F1 0)
        candidates = np.unique(np.clip(cuts, CUT_MIN, CUT_MAX))
        at = np.searchsorted(cuts, candidates)
        scores = np.where(at < len(cuts), f1[np.minimum(at, len(cuts) - 1)], 0.0)
        out.append(float(candidates[int(np.argmax(scores))]))
    return out


def _predict(probs: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    return (probs >= thresholds[None, :]).astype(np.int64)


def _pairs(hits: np.ndarray, names: list[str]) -> list[dict]:
    """Pairs of classes both hit (missed, or falsely predicted) in the same image, most often first."""
    together = hits.T @ hits  # (C, C): images where both classes of a pair are hit
    a, b = np.triu_indices(len(names), k=1)
    counts = together[a, b]
    order = [k for k in np.lexsort((b, a, -counts)) if counts[k] > 0][:TOP_PAIRS]  # ties in class order
    return [{"a": names[a[k]], "b": names[b[k]], "count": int(counts[k])} for k in order]


def _ap(y: np.ndarray, p: np.ndarray) -> float | None:
    return float(average_precision_score(y, p)) if y.any() else None  # undefined without a positive


def multilabel_metrics(logits, labels, class_names: list[str], thresholds) -> dict:
    """Plain floats, ints, lists and None only, so the dict merges straight into metrics.json."""
    names = [str(n) for n in class_names]
    z = _scores(logits, "test logits", names)
    y = _labels(labels, *z.shape)
    t = _thresholds(thresholds, len(names))
    probs = torch.sigmoid(torch.from_numpy(z)).numpy()
    pred = _predict(probs, t)
    half = _predict(probs, np.full(len(names), 0.5))
    support = y.sum(axis=0)
    present = [c for c in range(len(names)) if support[c] > 0]
    aps = [_ap(y[:, c], probs[:, c]) for c in range(len(names))]
    ece = [float(binary_calibration_error(torch.from_numpy(probs[:, c].copy()), torch.from_numpy(y[:, c].copy()),
                                          n_bins=N_BINS, norm="l1")) for c in range(len(names))]  # copy: contiguous
    p, r, f, _ = precision_recall_fscore_support(y, pred, average=None, zero_division=0)
    out: dict = {"task": "multilabel", "test_map": float(np.mean([aps[c] for c in present])) if present else None,
                 "test_map_micro": float(average_precision_score(y, probs, average="micro")) if present else None}
    # Macro averages over the classes with a test positive, as test_map: a class absent from test has no
    # recall or F1, and counting it as 0 would lower the mean by the split's luck, not the model's.
    for key, (y_pred, average) in {"f1_macro": (pred, "macro"), "f1_micro": (pred, "micro"),
                                   "f1_macro_at_half": (half, "macro"), "f1_micro_at_half": (half, "micro")}.items():
        if average == "macro" and not present:
            out[key] = None
        else:  # micro counts every class: a label predicted where no test image has it is a false positive
            out[key] = float(f1_score(y, y_pred, labels=present if average == "macro" else None,
                                      average=average, zero_division=0))
    if present:
        mp, mr, _, _ = precision_recall_fscore_support(y, pred, labels=present, average="macro", zero_division=0)
        out["precision_macro"], out["recall_macro"] = float(mp), float(mr)
    else:
        out["precision_macro"] = out["recall_macro"] = None
    subset = float(accuracy_score(y, pred))  # on multi-hot arrays scikit-learn's accuracy is the exact-match ratio
    out.update({
        "test_subset_accuracy": subset,
        "test_accuracy": subset,  # readers of single-label runs look for this key
        "test_hamming_loss": float(hamming_loss(y, pred)),
        # float64: a float16/bf16 or large-C float32 sum loses digits the report prints
        "test_loss": float(F.binary_cross_entropy_with_logits(torch.from_numpy(z), torch.from_numpy(y).double())),
        "label_cardinality_true": float(y.sum(axis=1).mean()),
        "label_cardinality_pred": float(pred.sum(axis=1).mean()),
        "test_ece": float(np.mean(ece)),
        "test_images": len(y),
        "per_class": [
            {"class": names[c], "ap": aps[c], "precision": float(p[c]),
             "recall": float(r[c]) if support[c] else None, "f1": float(f[c]) if support[c] else None,
             "support": int(support[c]), "threshold": float(t[c]), "ece": ece[c], "predicted": int(pred[:, c].sum())}
            for c in range(len(names))
        ],
        "thresholds": [float(x) for x in t],
        "classes_without_test_positives": [names[c] for c in range(len(names)) if not support[c]],
        "missed_together": _pairs(((y == 1) & (pred == 0)).astype(np.int64), names),
        "hallucinated_together": _pairs(((y == 0) & (pred == 1)).astype(np.int64), names),
    })
    return out


def _cell(x) -> str | int:
    return "" if x is None else fixed6(x) if isinstance(x, float) else x


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else text[:width - 1] + "…"


def _joined(row: np.ndarray, names: list[str]) -> str:
    return " ".join(names[c] for c in np.flatnonzero(row))


def _by_ap(per_class: list[dict]) -> list[dict]:
    """Highest AP first, classes without a test positive last; ties keep class order."""
    return sorted(per_class, key=lambda row: (row["ap"] is None, -(row["ap"] or 0.0)))


def _plot_pr_curves(y: np.ndarray, probs: np.ndarray, metrics: dict, path: Path) -> Path:
    """The 3 best and 3 worst classes by AP, each with its threshold as a dot where it sits on the test curve."""
    from .plots import plt, save_figure

    # by index, not name, so that two classes with one name keep their own columns; ties keep class order
    ranked = sorted(((c, row) for c, row in enumerate(metrics["per_class"]) if row["ap"] is not None),
                    key=lambda cr: (-cr[1]["ap"], cr[0]))
    panels = [("Labels with a test positive", ranked)] if len(ranked) <= 6 else \
             [("The 3 best labels by AP", ranked[:3]), ("The 3 worst labels by AP", ranked[-3:])]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.4 * len(panels), 4.6), dpi=100, squeeze=False)
    colors = plt.get_cmap("tab10").colors
    for ax, (title, rows) in zip(axes[0], panels):
        for k, (c, row) in enumerate(rows):
            precision, recall, _ = precision_recall_curve(y[:, c], probs[:, c])
            color = colors[k % len(colors)]
            ax.plot(recall, precision, drawstyle="steps-post", color=color, linewidth=1.6,
                    label=f"{_short(row['class'], 24)} (AP {row['ap']:.3f})")
            # predicting nothing is the curve's (recall 0, precision 1) end, where scikit-learn puts it
            dot = (row["recall"], row["precision"]) if row["predicted"] else (0.0, 1.0)
            ax.plot(*dot, marker="o", markersize=7, color=color, markeredgecolor="black", linestyle="none")
        if rows:
            ax.plot([], [], marker="o", color="white", markeredgecolor="black", linestyle="none",
                    label="the label's threshold")
            ax.legend(loc="lower left", fontsize=8)
        else:
            ax.text(0.5, 0.5, "no label has a positive test image", ha="center", va="center",
                    transform=ax.transAxes, color="0.4")
        ax.set_title(title, fontsize=10)
        ax.set_xlim(-0.02, 1.02)
        ax.set_ylim(-0.02, 1.05)
        ax.set_xlabel("recall")
        ax.set_ylabel("precision")
        ax.grid(True, alpha=0.3)
    fig.suptitle(f"Test precision-recall curves (mean AP {metrics['test_map']:.3f})"
                 if metrics["test_map"] is not None else "Test precision-recall curves", fontsize=11)
    return save_figure(fig, path)


def write_multilabel_evaluation(run_dir, logits, labels, class_names: list[str], thresholds,
                                files: list[str] | None = None, images: torch.Tensor | None = None) -> dict:
    """Write the multi-label evaluation files of a run and return the metrics they were built from."""
    run_dir = Path(run_dir)
    metrics = multilabel_metrics(logits, labels, class_names, thresholds)
    names = [str(n) for n in class_names]
    z = _scores(logits, "test logits", names)
    y = _labels(labels, *z.shape)
    n = len(y)
    if files is not None and len(files) != n:
        raise UserError(f"there are {len(files)} file names for {n} test images",
                        "pass one file name per test image, in test order, or none")
    if images is not None and (not isinstance(images, torch.Tensor) or images.dtype != torch.uint8
                               or images.ndim != 4 or len(images) != n):
        raise UserError("images must be a uint8 tensor (N, C, H, W) with one image per test row",
                        "pass the decoded test images as uint8, or no images")
    probs = torch.sigmoid(torch.from_numpy(z)).numpy()
    pred = _predict(probs, np.asarray(metrics["thresholds"]))

    rows = [PER_CLASS_COLUMNS] + [[_cell(row[k]) for k in PER_CLASS_COLUMNS] for row in _by_ap(metrics["per_class"])]
    atomic.write_text(run_dir / "per_class.csv", csv_text(rows))
    cm = multilabel_confusion_matrix(y, pred)  # (C, 2, 2): [[tn, fp], [fn, tp]] per class
    rows = [["class", "tn", "fp", "fn", "tp"]] + [[names[c], *map(int, cm[c].ravel())] for c in range(len(names))]
    atomic.write_text(run_dir / "multilabel_confusion.csv", csv_text(rows))
    _plot_pr_curves(y, probs, metrics, run_dir / "pr_curves.png")

    head = ["index"] + (["file"] if files is not None else []) + ["true", "predicted"] + [f"p_{m}" for m in names]
    rows = [head] + [[i] + ([files[i]] if files is not None else []) + [_joined(y[i], names), _joined(pred[i], names)]
                     + [fixed6(float(x)) for x in probs[i]] for i in range(n)]
    atomic.write_text(run_dir / "predictions.csv", csv_text(rows))

    loss = F.binary_cross_entropy_with_logits(torch.from_numpy(z), torch.from_numpy(y).double(), reduction="none")
    loss = loss.mean(dim=1)  # per image, so the mean of this column over all images is test_loss
    worst = torch.sort(-loss, stable=True).indices[:LARGEST_LOSS].tolist()  # equal losses keep test order
    missed, extra = (y == 1) & (pred == 0), (y == 0) & (pred == 1)
    rows = [["index", "file", "loss", "true", "predicted", "missed", "hallucinated"]]
    rows += [[i, files[i] if files is not None else "", fixed6(float(loss[i])), _joined(y[i], names),
              _joined(pred[i], names), _joined(missed[i], names), _joined(extra[i], names)] for i in worst]
    atomic.write_text(run_dir / "largest_loss.csv", csv_text(rows))
    path = run_dir / "largest_loss.png"
    if images is not None:
        from .mistakes import plot_gallery

        titles = [f"true: {_short(_joined(y[i], names) or '(none)', 22)}\n"
                  f"pred: {_short(_joined(pred[i], names) or '(none)', 22)}" for i in worst]  # two lines fit a tile
        plot_gallery(images[worst], titles, path, f"The {len(worst)} test images with the highest loss "
                                                  f"(true labels, labels predicted at the thresholds)")
    elif path.exists():  # a gallery from an earlier evaluation would no longer match the CSV
        path.unlink()
    return metrics


def _names(names: list[str], most: int = 8) -> str:
    shown = ", ".join(names[:most])
    return shown + (f" and {len(names) - most} more" if len(names) > most else "")


def _count(x: float) -> str:
    return f"{x:.1f}" if x >= 1 else f"{x:.2f}"


def multilabel_sentences(metrics: dict) -> list[str]:
    """Plain sentences for the report, each read off a number in `metrics` (as multilabel_metrics returns it)."""
    per_class = metrics.get("per_class") or []
    classes = len(per_class)
    scored = [row for row in per_class if row.get("ap") is not None]
    out = []
    if metrics.get("test_map") is None:
        out.append(f"No test image has any of the {classes} labels, so average precision is undefined.")
    else:
        over = f"{classes} label{'s' * (classes != 1)}" if len(scored) == classes else \
            f"the {len(scored)} of {classes} labels with a positive test image"
        t = sorted(set(metrics.get("thresholds") or []))
        at = f"at the threshold {t[0]:.2g}" if len(t) == 1 else "at the per-label thresholds" + (
            " chosen on validation" if (metrics.get("thresholds_from") or "").startswith("the F1-best") else "")
        f1 = ""
        if metrics.get("f1_macro") is not None:
            f1 = f" (macro F1 {metrics['f1_macro']:.2f} {at}"
            f1 += ")" if t == [0.5] else f", {metrics['f1_macro_at_half']:.2f} at 0.5)"
        out.append(f"Mean average precision {metrics['test_map']:.3f} over {over}{f1}.")
        low = sorted((row for row in scored if row["ap"] < LOW_AP), key=lambda row: row["ap"])
        if low:
            out.append(f"{len(low)} of {len(scored)} labels {'has' if len(low) == 1 else 'have'} AP under {LOW_AP}: "
                       f"{_names([row['class'] for row in low])}.")
    images = metrics.get("test_images")
    if images and metrics.get("test_subset_accuracy") is not None:
        exact = round(metrics["test_subset_accuracy"] * images)
        out.append(f"{exact} of {images} test images ({metrics['test_subset_accuracy']:.0%}) get exactly their "
                   f"set of labels.")
    true, predicted = metrics.get("label_cardinality_true"), metrics.get("label_cardinality_pred")
    if true is not None and predicted is not None:
        if _count(true) == _count(predicted):
            out.append(f"The model predicts about as many labels an image as the truth has ({_count(true)}).")
        else:
            out.append(f"The model predicts {_count(predicted)} labels an image where the truth has {_count(true)}.")
    for key, what in (("missed_together", "missed"), ("hallucinated_together", "wrongly predicted")):
        pairs = metrics.get(key) or []
        if pairs:
            a, b, count = pairs[0]["a"], pairs[0]["b"], pairs[0]["count"]
            where = f"{count} test image{'s' * (count != 1)}"
            tied = sum(pair["count"] == count for pair in pairs)  # the list holds the top TOP_PAIRS only
            if tied == 1:
                out.append(f"{a} and {b} are most often {what} together: in {where}.")
            else:
                out.append(f"{'At least ' if tied == TOP_PAIRS else ''}{tied} pairs of labels are each {what} "
                           f"together in {where}, such as {a} and {b}.")
    absent = metrics.get("classes_without_test_positives") or []
    if absent:
        out.append(f"{len(absent)} label{'s have' if len(absent) != 1 else ' has'} no positive test image, so "
                   f"{'they are' if len(absent) != 1 else 'it is'} left out of the mean AP and the macro averages: "
                   f"{_names(absent)}.")
    return out
