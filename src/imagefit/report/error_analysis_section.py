"""The report's error-analysis sections, the ones that explain mistakes: uneven classes, the worst errors,
where the model looked, calibration.

They render what imagefit.evaluate.error_analysis wrote. Like the rest of report.md, everything here is read
off the run folder's files (metrics.json, classification_report.csv, the PNGs), so `imagefit report`
rebuilds it, and the sentences come from the numbers by fixed rules. (The data audit's section is
audit_section.py; a run's shortfalls are shown by budget_section.py.)
"""
from __future__ import annotations

import csv
from pathlib import Path

from ..evaluate.cells import SUMMARY_ROWS, number
from .markdown import code, literal, table

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
        balance = ClassBalance([literal(r["class"]) for r in rows], counts, [number(r.get("f1-score")) or 0.0 for r in rows])
        said.append(balance.sentence())
    if not said:
        return []
    lines = ["## Uneven classes", "", " ".join(said), ""]
    if (run_dir / "class_balance.png").is_file():
        lines += ["![training images against test F1 per class](class_balance.png)", ""]
    return lines


def _read_rows(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def mistakes_section(run_dir: Path, metrics: dict, listed: int = 8) -> list[str]:
    if not (run_dir / "misclassified.csv").is_file():
        return []
    rows = _read_rows(run_dir / "misclassified.csv")
    if not rows:
        return ["## Mistakes", "", "No test image was misclassified.", ""]
    total = number(metrics.get("test_images"))
    shown = sum(1 for r in rows if r.get("in_gallery"))
    where = "its source file and " if any(r.get("file") for r in rows) else ""
    text = f"{len(rows):,} of {int(total):,} test images are misclassified" if total else f"{len(rows):,} test images are misclassified"
    if shown:
        text += f"; below, the {shown} with the highest loss (the model most sure of a wrong class)"
    lines = ["## Mistakes", "", f"{text}. Every one is in `misclassified.csv` with {where}its index in the test split.", ""]
    if (run_dir / "misclassified.png").is_file():
        lines += ["![misclassified test images with the highest loss](misclassified.png)", ""]
    listing = [[r["rank"], code(r["file"]) if r.get("file") else f"test image {r['index']}", literal(r["true_name"]),
                literal(r["predicted_name"]), f"{float(r['p_predicted']):.3f}", f"{float(r['p_true']):.3f}"]
               for r in rows[:listed]]
    return lines + table(["Rank", "Image", "True class", "Predicted", "P(predicted)", "P(true)"], listing)


def gradcam_section(run_dir: Path, metrics: dict) -> list[str]:
    """The Grad-CAM overlays (evaluate/saliency.py), or the one sentence that says why there are none."""
    note, shown, layer = metrics.get("gradcam_note"), metrics.get("gradcam_images"), metrics.get("gradcam_target_layer")
    if shown and layer and (run_dir / "gradcam.png").is_file():
        size = metrics.get("gradcam_map_size") or []
        what = ", ".join(([metrics["gradcam_target_kind"]] if metrics.get("gradcam_target_kind") else [])
                         + ([f"{size[0]}x{size[1]} positions"] if len(size) == 2 else []))
        said = [f"Grad-CAM for the {shown} misclassified test images with the highest loss, one column each (true "
                f"class → predicted class, its probability): the middle row marks where the evidence for the "
                f"predicted class lies, the bottom row where the evidence for the true class lies, red most; a map "
                f"that is blue all over found no place that raises that class's score.",
                f"The maps weight the channels of `{layer}`{f' ({what})' if what else ''}, the network's last feature "
                f"map that still has positions, chosen automatically, by the gradient of the class's score; they are "
                f"computed on the test images as the network took them at test time (through its own resizing and "
                f"normalisation), drawn over the original images and scaled each to its own maximum."]
        same = metrics.get("gradcam_same_prediction")
        if same is not None and same < shown:
            precision = str(metrics.get("precision") or "32")
            why = ("the evaluation's test-time flips (--tta), which the maps leave out" if metrics.get("tta") not in (None, "none")
                   else f"the evaluation's {precision} precision (the maps are fp32)" if not precision.startswith("32")
                   else "the evaluation's cached activations of the frozen layers"
                   if metrics.get("transfer_strategy") in ("linear-probe", "partial")
                   else "rounding differences between the batched evaluation and this pass")
            said.append(f"For {shown - same} of the {shown} images the network alone predicts another class than the "
                        f"evaluation did, because of {why}.")
        return ["## Where the model looked", "", " ".join(said), "",
                "![Grad-CAM of the misclassified test images](gradcam.png)", ""]
    if note:
        return ["## Where the model looked", "", f"No Grad-CAM overlays: {note}.", ""]
    return []


def calibration_sentences(m: dict) -> list[str]:
    ece = number(m.get("test_ece"))
    if ece is None:
        return []
    said = [f"Expected calibration error on test ({m.get('ece_bins', 15)} confidence bins) is {ece:.4f}: on average "
            f"the top probability is {100 * ece:.1f} points away from the accuracy of the images given it."]
    t = number(m.get("temperature"))
    if t is None:
        return said + ["The run has no validation split, so no temperature was fitted (it is never fitted on test)."]
    how = ("the model was overconfident" if t > 1.02 else "the model was underconfident" if t < 0.98
           else "the model was already about as confident as it is accurate")
    said.append(f"Temperature scaling, fitted on the validation split and never on test, divides the logits by "
                f"T = {t:.3f} ({how}): validation loss {number(m.get('val_nll')):.4f} → "
                f"{number(m.get('val_nll_scaled')):.4f}; on test, ECE {ece:.4f} → {number(m.get('test_ece_scaled')):.4f} "
                f"and loss {number(m.get('test_loss')):.4f} → {number(m.get('test_loss_scaled')):.4f}. Predictions do "
                f"not change; T is saved in `model.safetensors` (metadata \"temperature\").")
    return said


def calibration_section(run_dir: Path, metrics: dict) -> list[str]:
    said = calibration_sentences(metrics)
    if not said:
        return []
    lines = ["## Calibration", "", " ".join(said), ""]
    if (run_dir / "reliability.png").is_file():
        lines += ["![reliability diagram](reliability.png)", ""]
    return lines


def sections(run_dir: str | Path, metrics: dict) -> list[str]:
    """Markdown lines of every error-analysis section the run folder has the files for."""
    run_dir = Path(run_dir)
    return (imbalance_section(run_dir, metrics) + mistakes_section(run_dir, metrics) + gradcam_section(run_dir, metrics)
            + calibration_section(run_dir, metrics))
