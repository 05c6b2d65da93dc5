"""Reading numbers back from CSV and JSON cells."""
from __future__ import annotations

import math
from typing import Any

# rows of classification_report.csv that summarise the whole test set rather than one class
SUMMARY_ROWS = ("accuracy", "balanced accuracy", "macro avg", "weighted avg")


def number(value: Any) -> float | None:
    """A float, or None for an empty cell (history.csv of a run without validation), junk or NaN."""
    if value is None or value == "":
        return None
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(x) else x
