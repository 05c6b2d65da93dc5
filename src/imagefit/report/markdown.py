"""Markdown building blocks shared by the run report, its sections and the comparison."""
from __future__ import annotations

from typing import Any

from ..evaluate.cells import number


def cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return lines + [""]


# ---- numbers as a reader sees them ----------------------------------------------------------
def fixed(x: Any, digits: int = 4) -> str:
    x = number(x)
    return "–" if x is None else f"{x:.{digits}f}"


def integer(x: Any) -> str:
    x = number(x)
    return "–" if x is None else f"{int(x):,}"


def percent(x: Any) -> str:
    x = number(x)
    return "–" if x is None else f"{100 * x:.1f}%"


def duration(seconds: Any) -> str:
    s = number(seconds)
    if s is None:
        return "–"
    if s < 60:
        return f"{s:.1f} s"
    m, s = divmod(round(s), 60)
    h, m = divmod(m, 60)
    return f"{h} h {m} min {s} s" if h else f"{m} min {s} s"
