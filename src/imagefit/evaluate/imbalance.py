"""Uneven classes: which classes had few training images, and whether those are the ones the model gets wrong.

A run on uneven classes can report a high accuracy while its rare classes are barely recognised, because
accuracy is mostly the big classes' recall. These helpers put the two numbers a reader needs side by side
per class (training images, test F1) and name the classes that are both rare and poorly recognised, with
fixed thresholds so every run is described by the same rule.
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import f1_score

# A class is rare when it has at most this share of the median class's training images ...
RARE_SHARE = 0.5
# ... and poorly recognised when its test F1 is at least this far below the macro-average F1.
POOR_F1_GAP = 0.05


def class_counts(labels: torch.Tensor, num_classes: int) -> list[int]:
    return [int(c) for c in torch.bincount(torch.as_tensor(labels).long(), minlength=num_classes)]


def class_f1(logits: torch.Tensor, labels: torch.Tensor, num_classes: int) -> list[float]:
    """Per-class test F1 from the saved logits (the argmax the classification report uses)."""
    y_pred = torch.as_tensor(logits).argmax(dim=1).numpy()
    scores = f1_score(torch.as_tensor(labels).numpy(), y_pred, labels=list(range(num_classes)), average=None,
                      zero_division=0)
    return [float(x) for x in scores]


@dataclass
class ClassBalance:
    names: list[str]
    train_counts: list[int]
    f1: list[float]

    @property
    def median_count(self) -> float:
        return float(statistics.median(self.train_counts))

    @property
    def rare_limit(self) -> float:
        return RARE_SHARE * self.median_count

    @property
    def macro_f1(self) -> float:
        return float(np.mean(self.f1))

    def rare(self) -> list[int]:
        return [i for i, n in enumerate(self.train_counts) if n <= self.rare_limit]

    def rare_and_poor(self) -> list[int]:
        """Rare classes whose F1 is well below the macro average, worst F1 first."""
        poor = [i for i in self.rare() if self.f1[i] <= self.macro_f1 - POOR_F1_GAP]
        return sorted(poor, key=lambda i: (self.f1[i], self.train_counts[i]))

    def sentence(self, limit: int = 10) -> str:
        counts = self.train_counts
        spread = (f"training images per class range from {min(counts):,} to {max(counts):,} "
                  f"(median {self.median_count:g})")
        rare = self.rare()
        if not rare:
            return f"No class is rare: {spread}; none has at most {RARE_SHARE:.0%} of the median."
        worst = self.rare_and_poor()
        rule = (f"at most {self.rare_limit:g} training images ({RARE_SHARE:.0%} of the median) and a test F1 at "
                f"least {POOR_F1_GAP:.2f} below the macro average {self.macro_f1:.3f}")
        if not worst:
            return (f"{len(rare)} class{'es are' if len(rare) > 1 else ' is'} rare ({spread}), but none is also "
                    f"poorly recognised ({rule}).")
        named = ", ".join(f"{self.names[i]} ({counts[i]:,} images, F1 {self.f1[i]:.3f})" for i in worst[:limit])
        more = f", and {len(worst) - limit} more" if len(worst) > limit else ""
        verb = "classes are" if len(worst) > 1 else "class is"
        return (f"{len(worst)} {verb} both rare and poorly recognised ({rule}): {named}{more}. More images of "
                f"{'these' if len(worst) > 1 else 'this'}, `--class-weights balanced` or `--sampler balanced` may help.")


def plot_counts_vs_f1(balance: ClassBalance, path: str | Path) -> Path:
    """One dot per class: training images (x) against test F1 (y); the rare-and-poor corner is shaded."""
    from .plots import plt, save_figure  # matplotlib only when drawing

    path = Path(path)
    counts, f1, k = np.asarray(balance.train_counts, dtype=float), np.asarray(balance.f1), len(balance.names)
    flagged = set(balance.rare_and_poor())
    fig, ax = plt.subplots(figsize=(7.5, 5), dpi=100)
    colors = ["#d62728" if i in flagged else "#1f77b4" for i in range(k)]
    ax.scatter(np.maximum(counts, 0.8), f1, c=colors, s=30 if k <= 50 else 14, zorder=3)
    if counts.max() > 8 * max(counts.min(), 1):
        ax.set_xscale("log")
    ax.axhline(balance.macro_f1, color="0.4", linestyle="--", linewidth=1, label=f"macro F1 {balance.macro_f1:.3f}")
    ax.axvline(max(balance.rare_limit, 0.8), color="#ff7f0e", linestyle=":", linewidth=1.2,
               label=f"rare: ≤ {balance.rare_limit:g} images ({RARE_SHARE:.0%} of the median)")
    for i in range(k):
        if k <= 30 or i in flagged:
            ax.annotate(str(balance.names[i])[:20], (max(counts[i], 0.8), f1[i]), fontsize=8 if k <= 15 else 6,
                        xytext=(3, 3), textcoords="offset points", color=colors[i])
    ax.set_ylim(-0.03, 1.05)
    ax.set_xlabel("training images of the class")
    ax.set_ylabel("test F1 of the class")
    ax.set_title(f"Training images against test F1 ({k} classes; red: rare and poorly recognised)", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    return save_figure(fig, path)
