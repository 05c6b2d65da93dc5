"""How the evaluation CSVs of both tasks are written: rows as CSV text, numbers with six decimals."""
from __future__ import annotations

import csv
import io


def csv_text(rows: list[list]) -> str:
    """Rows as CSV text (the evaluation files of both tasks)."""
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue()


def fixed6(x: float) -> str:
    """A number in an evaluation CSV: six decimals."""
    return f"{x:.6f}"
