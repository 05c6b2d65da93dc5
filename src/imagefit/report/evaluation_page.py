"""The page of `imagefit evaluate` (evaluate/new_data.py): what was scored on what, the headline numbers, the
confusion matrix, and the files beside it; report.md and report.html with its picture embedded."""
from __future__ import annotations

from pathlib import Path

from .. import atomic
from .html import write_html
from .markdown import code, fixed, integer


def write_evaluation_page(folder: str | Path, metrics: dict) -> Path:
    """report.md and report.html in `folder`, from the evaluation's metrics.json."""
    md = Path(folder) / "report.md"
    atomic.write_text(md, evaluation_markdown(metrics))
    write_html(md)
    return md


def evaluation_markdown(m: dict) -> str:
    """A short page: what was scored on what, the headline numbers, and the files beside it."""
    missing = f" ({len(m['classes_present'])} of the model's {len(m['classes_present']) + len(m['classes_absent'])} classes)"
    if m["classes_absent"]:
        missing += f"; absent: {', '.join(m['classes_absent'][:10])}"
    if m["unknown_classes_left_out"]:
        missing += "; left out, of classes the model never learned: " + ", ".join(
            f"{n} ({c})" for n, c in m["unknown_classes_left_out"].items())
    lines = [f"# {code(m['model'])} on {code(m['dataset'])}", "",
             f"{integer(m['images'])} labelled images ({m['split']}){missing}; "
             f"{integer(m['skipped_files']['count'])} files skipped.", "",
             "| metric | value |", "|---|---|",
             f"| accuracy | {fixed(m['test_accuracy'])} |", f"| balanced accuracy | {fixed(m['test_balanced_accuracy'])} |",
             f"| loss (calibrated probabilities) | {fixed(m['test_loss'])} |", f"| macro F1 | {fixed(m['f1_macro'])} |", "",
             "Per class: `classification_report.txt`; each image's prediction: `predictions.csv` (its file in "
             "`files.csv`).", "", "![confusion matrix](confusion_matrix.png)", ""]
    if m["top_confusions"]:
        lines += ["Most confused: " + "; ".join(f"{c['true']} as {c['predicted']} ({c['count']})"
                                                for c in m["top_confusions"][:5]) + ".", ""]
    return "\n".join(lines)
