"""The report's sections that explain mistakes: uneven classes, errors, calibration, the data audit.

Like the rest of report.md, everything here is read off the run folder's files (metrics.json,
classification_report.csv, the PNGs), so `imagefit report` rebuilds it, and the sentences come from
the numbers by fixed rules.
"""
from __future__ import annotations

import csv
from pathlib import Path

from ..evaluate.cells import SUMMARY_ROWS, number

# accuracy minus balanced accuracy above which the report says the small classes fare worse
BALANCED_GAP = 0.02


def _class_rows(run_dir: Path) -> list[dict]:
    path = run_dir / "classification_report.csv"
    if not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8") as f:
        return [r for r in csv.DictReader(f) if r.get("class") not in SUMMARY_ROWS]


def balanced_sentence(accuracy: float | None, balanced: float | None) -> str | None:
    if accuracy is None or balanced is None:
        return None
    gap = accuracy - balanced
    if gap >= BALANCED_GAP:
        return (f"Balanced accuracy (the mean of per-class recalls) is {balanced:.3f}, {gap:.3f} below the accuracy "
                f"{accuracy:.3f}: accuracy counts the common classes most, and the smaller classes are recognised "
                f"less well.")
    if gap <= -BALANCED_GAP:
        return (f"Balanced accuracy (the mean of per-class recalls) is {balanced:.3f}, {-gap:.3f} above the accuracy "
                f"{accuracy:.3f}: the common classes are recognised less well than the small ones.")
    return (f"Balanced accuracy (the mean of per-class recalls) is {balanced:.3f}, close to the accuracy "
            f"{accuracy:.3f}: no class size dominates the accuracy.")


def imbalance_section(run_dir: Path, metrics: dict) -> list[str]:
    from ..evaluate.imbalance import ClassBalance

    said = []
    sentence = balanced_sentence(number(metrics.get("test_accuracy")), number(metrics.get("test_balanced_accuracy")))
    if sentence:
        said.append(sentence)
    counts, rows = metrics.get("train_class_counts"), _class_rows(run_dir)
    if counts and len(counts) == len(rows):
        balance = ClassBalance([r["class"] for r in rows], counts, [number(r.get("f1-score")) or 0.0 for r in rows])
        said.append(balance.sentence())
    if not said:
        return []
    lines = ["## Uneven classes", "", " ".join(said), ""]
    if (run_dir / "class_balance.png").is_file():
        lines += ["![training images against test F1 per class](class_balance.png)", ""]
    return lines


def sections(run_dir: str | Path, metrics: dict) -> list[str]:
    """Markdown lines of every diagnostic section the run folder has the files for."""
    run_dir = Path(run_dir)
    return imbalance_section(run_dir, metrics)
