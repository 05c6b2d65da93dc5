"""The two pictures of a run: learning curves and the confusion matrix.

Both must stay readable at the extremes a user will hit (one epoch, no validation split, two
classes, a hundred classes), because the report embeds them without anyone checking them first.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on servers and in CI; must precede pyplot
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import Normalize, PowerNorm  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from .. import atomic  # noqa: E402
from .cells import number  # noqa: E402

TRAIN_COLOR, VAL_COLOR, BEST_COLOR, STOP_COLOR = "#1f77b4", "#d62728", "#2ca02c", "#7f7f7f"


def _series(rows: list[dict], key: str) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    for i, row in enumerate(rows):
        y = number(row.get(key))
        if y is not None:
            x = number(row.get("epoch"))
            xs.append(x if x is not None else i + 1)
            ys.append(y)
    return xs, ys


def plot_curves(
    history_rows: list[dict],
    path: str | Path,
    best_epoch: int | None = None,
    stop_epoch: int | None = None,
    title: str = "",
) -> Path:
    """Accuracy and loss side by side, so over-fitting shows as the two panels diverging together."""
    path = Path(path)
    epochs = [e for e in (number(r.get("epoch")) for r in history_rows) if e is not None]
    has_val = bool(_series(history_rows, "val_loss")[0] or _series(history_rows, "val_acc")[0])
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), dpi=100)
    for ax, metric, label in ((axes[0], "acc", "accuracy"), (axes[1], "loss", "loss")):
        drawn = False
        for split, color, name in (("train", TRAIN_COLOR, "train"), ("val", VAL_COLOR, "validation")):
            xs, ys = _series(history_rows, f"{split}_{metric}")
            if xs:
                # markers so a one-epoch run still shows its points
                ax.plot(xs, ys, color=color, marker="o", markersize=4 if len(xs) < 40 else 0, linewidth=1.8, label=name)
                drawn = True
        if best_epoch is not None and has_val:  # "best" means lowest validation loss; without it, no claim
            ax.axvline(best_epoch, color=BEST_COLOR, linestyle="--", linewidth=1.2)
            bx, by = _series(history_rows, f"val_{metric}")
            point = dict(zip(bx, by)).get(float(best_epoch))
            if point is not None:
                ax.plot([best_epoch], [point], marker="*", markersize=14, color=BEST_COLOR, linestyle="none",
                        label=f"best epoch {best_epoch}")
            else:
                ax.plot([], [], color=BEST_COLOR, linestyle="--", label=f"best epoch {best_epoch}")
        if stop_epoch is not None:  # early stopping fired: the last epoch is where it stopped
            ax.axvline(stop_epoch, color=STOP_COLOR, linestyle=":", linewidth=1.5, label=f"stopped at epoch {stop_epoch}")
        if not drawn:
            ax.text(0.5, 0.5, f"no {label} recorded", ha="center", va="center", transform=ax.transAxes, color="0.4")
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.set_title(label.capitalize() + ("" if has_val or not history_rows else " (no validation split)"))
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.margins(x=0.04, y=0.12)  # keep points off the frame, which matters most with one epoch
        if epochs and min(epochs) == max(epochs):
            ax.set_xlim(min(epochs) - 1, max(epochs) + 1)
            ax.set_xticks([min(epochs)])
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="best", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=12)
    fig.tight_layout()
    with atomic.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path


def _short(name: str, width: int) -> str:
    # keep both ends: class names often differ only in a numeric suffix
    return name if len(name) <= width else name[: width // 2] + "…" + name[-(width - width // 2 - 1):]


def plot_confusion(cm: np.ndarray, class_names: list[str], path: str | Path, normalize: bool = True) -> Path:
    """Colors are row shares so a rare class's errors are as visible as a common class's."""
    path = Path(path)
    cm = np.asarray(cm)
    k = len(class_names)
    rows = cm.sum(axis=1, keepdims=True)
    shares = np.divide(cm, rows, out=np.zeros(cm.shape, dtype=float), where=rows > 0)
    values = shares if normalize else cm
    annotate = k <= 20
    side = 4.5 + 0.45 * k if k <= 20 else 4.0 + 0.16 * k  # inches; ~0.16 in a cell still fits a 5pt label
    tick_size = 10 if k <= 10 else 8 if k <= 20 else 6 if k <= 120 else 4
    text_size = 10 if k <= 20 else 14  # the big figure is shown scaled down
    fig, ax = plt.subplots(figsize=(side + 1.2, side), dpi=100)
    vmax = 1 if normalize else max(1, values.max())
    # Without numbers in the cells, a square-root scale keeps the few-percent errors visible.
    norm = PowerNorm(0.5, vmin=0, vmax=vmax) if not annotate else Normalize(vmin=0, vmax=vmax)
    image = ax.imshow(values, cmap="Blues", norm=norm, interpolation="nearest")
    bar = fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    bar.set_label(("share of the true class" if normalize else "count") + ("" if annotate else " (square-root scale)"),
                  fontsize=text_size)
    names = [_short(str(n), 18 if k > 20 else 24) for n in class_names]
    ax.set_xticks(range(k))
    ax.set_yticks(range(k))
    ax.set_xticklabels(names, rotation=90 if k > 8 else 45, ha="center" if k > 8 else "right", fontsize=tick_size)
    ax.set_yticklabels(names, fontsize=tick_size)
    ax.set_xlabel("predicted class", fontsize=text_size)
    ax.set_ylabel("true class", fontsize=text_size)
    ax.set_title(f"Confusion matrix ({k} classes, {int(cm.sum())} test images)", fontsize=text_size + 2)
    if annotate:
        cell_size = 11 if k <= 6 else 9 if k <= 12 else 7
        for i in range(k):
            for j in range(k):
                text = f"{int(cm[i, j])}" + (f"\n{shares[i, j]:.0%}" if k <= 10 and cm[i, j] else "")
                dark = (shares[i, j] if normalize else values[i, j] / max(1, values.max())) > 0.5
                ax.text(j, i, text, ha="center", va="center", fontsize=cell_size, color="white" if dark else "black")
    fig.tight_layout()
    with atomic.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path


def save_figure(fig, path: str | Path) -> Path:
    """Lay out, write atomically as PNG and close: the end of every figure a run writes."""
    path = Path(path)
    fig.tight_layout()
    with atomic.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path
