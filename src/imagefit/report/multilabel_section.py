"""The test sections of a multi-label run's report: mean average precision first (the headline: it does not
depend on a threshold), then the F1 the thresholds chosen on validation give, each label's precision, recall and
AP, the labels missed or invented together, and the images the model got most wrong. Read from metrics.json and
the CSVs the evaluation wrote, like the rest of the page."""
from __future__ import annotations

from pathlib import Path

from ..evaluate.cells import number
from .markdown import duration, fixed, integer, literal, table
from .run_files import read_csv

SHOWN = 10  # labels in each per-label table of a long list (best and worst by AP)


def metric_rows(metrics: dict, has_val: bool) -> list[list[str]]:
    rows = [
        ["Mean average precision (macro, the headline)", fixed(metrics.get("test_map"))],
        ["Mean average precision (micro)", fixed(metrics.get("test_map_micro"))],
        ["F1 (macro) at the chosen thresholds", fixed(metrics.get("f1_macro"))],
        ["F1 (macro) at 0.5", fixed(metrics.get("f1_macro_at_half"))],
        ["F1 (micro) at the chosen thresholds", fixed(metrics.get("f1_micro"))],
        ["F1 (micro) at 0.5", fixed(metrics.get("f1_micro_at_half"))],
        ["Precision / recall (macro) at the chosen thresholds",
         f"{fixed(metrics.get('precision_macro'))} / {fixed(metrics.get('recall_macro'))}"],
        ["Subset accuracy (every label of the image right)", fixed(metrics.get("test_subset_accuracy"))],
        ["Hamming loss (share of wrong label decisions)", fixed(metrics.get("test_hamming_loss"))],
        ["Test loss (binary cross-entropy)", fixed(metrics.get("test_loss"))],
        ["Calibration error (ECE, mean over labels)", fixed(metrics.get("test_ece"))],
        ["Labels an image: truth / predicted",
         f"{fixed(metrics.get('label_cardinality_true'), 2)} / {fixed(metrics.get('label_cardinality_pred'), 2)}"],
        ["Test images", integer(metrics.get("test_images"))],
        ["Epochs run", f"{metrics.get('epochs_run', '–')} of {metrics.get('epochs', '–')}"],
        ["Best validation mAP", fixed(metrics.get("best_val_map"))],
        ["Best epoch (" + {"val_map": "highest validation mAP", "val_acc": "highest validation subset accuracy"}.get(
            metrics.get("monitor"), "lowest validation loss") + ")",
         str(metrics.get("best_epoch") or "–") if has_val else "– (no validation)"],
        ["Wall time", duration(metrics.get("wall_seconds"))],
        ["Training images/s", integer(metrics.get("train_images_per_second"))],
    ]
    return rows


def _label_rows(items: list[dict]) -> list[list[str]]:
    return [[literal(r["class"]), fixed(r.get("ap")), fixed(r.get("precision")), fixed(r.get("recall")),
             fixed(r.get("f1")), integer(r.get("support")), integer(r.get("predicted")), fixed(r.get("threshold"), 3)]
            for r in items]


def per_label_section(per_class: list[dict]) -> list[str]:
    if not per_class:
        return ["No per-label results: the run has no test predictions.", ""]
    header = ["Label", "AP", "Precision", "Recall", "F1", "Test images with it", "Predicted on", "Threshold"]
    ranked = sorted(per_class, key=lambda r: -(number(r.get("ap")) if number(r.get("ap")) is not None else -1.0))
    if len(ranked) <= 2 * SHOWN:
        return table(header, _label_rows(ranked))
    return ([f"The {SHOWN} labels with the highest AP:", ""] + table(header, _label_rows(ranked[:SHOWN]))
            + [f"The {SHOWN} with the lowest:", ""] + table(header, _label_rows(ranked[-SHOWN:][::-1]))
            + [f"All {len(ranked)} labels are in `per_class.csv`.", ""])


def _pairs(pairs: list[dict], what: str) -> list[str]:
    if not pairs:
        return [f"No two labels were {what} in the same test image.", ""]
    return table(["Labels", "Test images"], [[f"{literal(p['a'])} + {literal(p['b'])}", integer(p["count"])]
                                             for p in pairs[:5]])


def multilabel_sections(run_dir: Path, metrics: dict, has_val: bool, said: list[str]) -> list[str]:
    """Every test section of the page; `said` leads 'What the numbers say' (the run's own curve sentences)."""
    from ..evaluate.multilabel import multilabel_sentences

    lines = ["## Test metrics", ""] + table(["Metric", "Value"], metric_rows(metrics, has_val))
    if metrics.get("thresholds_from"):
        lines += [f"Thresholds: {literal(metrics['thresholds_from'])} (saved with the model; `imagefit predict`, "
                  "`evaluate` and `export` use them).", ""]
    lines += ["## Per-label results", ""] + per_label_section(metrics.get("per_class") or [])
    if (run_dir / "pr_curves.png").is_file():
        lines += ["## Precision-recall curves", "", "![precision-recall curves](pr_curves.png)", ""]
    confusion = read_csv(run_dir / "multilabel_confusion.csv")
    if confusion:
        lines += ["## Per-label confusion", ""]
        lines += table(["Label", "True negatives", "False positives", "False negatives", "True positives"],
                       [[literal(r["class"]), r["tn"], r["fp"], r["fn"], r["tp"]] for r in confusion[:2 * SHOWN]])
    lines += ["## Labels missed together", ""] + _pairs(metrics.get("missed_together") or [], "both missed")
    lines += ["## Labels invented together", ""] + _pairs(metrics.get("hallucinated_together") or [],
                                                          "both predicted without being there")
    worst = read_csv(run_dir / "largest_loss.csv")
    if worst:
        lines += ["## The images with the largest loss", ""]
        lines += ["![largest loss](largest_loss.png)", ""] if (run_dir / "largest_loss.png").is_file() else []
        lines += table(["Image", "Loss", "True labels", "Predicted"],
                       [[literal(r.get("file") or r.get("index")), fixed(r.get("loss"), 3), literal(r.get("true") or "–"),
                         literal(r.get("predicted") or "–")] for r in worst[:SHOWN]])
    sentences = said + multilabel_sentences(metrics)
    if sentences:
        lines += ["## What the numbers say", ""] + [" ".join(sentences), ""]
    return lines
