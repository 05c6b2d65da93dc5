"""The report's section on `label_issues.csv` (`--find-label-issues`): how many labels look wrong, the worst
ones with the class suggested instead, and the command that trains without them."""
from __future__ import annotations

from pathlib import Path

from .markdown import fixed, literal, table
from .run_files import read_csv

SHOWN = 10


def label_issue_lines(run_dir: Path, metrics: dict) -> list[str]:
    path = Path(run_dir) / "label_issues.csv"
    if not path.is_file():
        return []
    rows = read_csv(path)
    said = next((n for n in metrics.get("data_notes") or [] if n.startswith("Label issues:")), None)
    lines = ["## Labels most likely wrong", ""]
    lines += [literal(said), ""] if said else [f"{len(rows):,} images are listed in `label_issues.csv`.", ""]
    if not rows:
        return lines + ["No image was flagged.", ""]
    lines += ["![labels most likely wrong](label_issues.png)", ""] if (Path(run_dir) / "label_issues.png").is_file() else []
    lines += table(["Image", "Split", "Given label", "Suggested", "Probability of the given label"],
                   [[literal(r["file"]), r["split"], literal(r["given"]), literal(r["suggested"]),
                     fixed(r["self_confidence"], 3)] for r in rows[:SHOWN]])
    return lines + [f"All {len(rows):,} are in `label_issues.csv`. To train without them, from this folder: "
                    "`imagefit train --config config.yaml --exclude label_issues.csv` (or correct their labels).", ""]
