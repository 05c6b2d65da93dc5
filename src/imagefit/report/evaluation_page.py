"""The page of `imagefit evaluate` (evaluate/new_data.py): what was scored on what, the headline numbers, the
confusion matrix, the worst mistakes, calibration with the run's temperature, Grad-CAM, and the files beside it;
report.md and report.html with its pictures embedded."""
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
    if m.get("task") == "multilabel":
        return multilabel_markdown(m, missing)
    lines = [f"# {code(m['model'])} on {code(m['dataset'])}", "",
             f"{integer(m['images'])} labelled images ({m['split']}){missing}; "
             f"{integer(m['skipped_files']['count'])} files skipped.", "",
             "| metric | value |", "|---|---|",
             f"| accuracy | {fixed(m['test_accuracy'])} |", f"| balanced accuracy | {fixed(m['test_balanced_accuracy'])} |",
             f"| loss | {fixed(m['test_loss'])} |"] + scaled_loss_row(m) + [f"| macro F1 | {fixed(m['f1_macro'])} |", "",
             "Per class: `classification_report.txt`; each image's prediction: `predictions.csv` (its file in "
             "`files.csv`).", "", "![confusion matrix](confusion_matrix.png)", ""]
    if m["top_confusions"]:
        lines += ["Most confused: " + "; ".join(f"{c['true']} as {c['predicted']} ({c['count']})"
                                                for c in m["top_confusions"][:5]) + ".", ""]
    return "\n".join(lines + mistakes_section(m) + calibration_section(m) + gradcam_section(m))


def multilabel_markdown(m: dict, missing: str) -> str:
    """A multi-label model's evaluation: the run's own test tables, at the thresholds it chose on validation."""
    from .multilabel_section import metric_rows, per_label_section
    from ..evaluate.multilabel import multilabel_sentences

    rows = [r for r in metric_rows(m, True) if r[0].split(" (")[0] not in
            ("Epochs run", "Best validation mAP", "Best epoch", "Wall time", "Training images/s")]
    lines = [f"# {code(m['model'])} on {code(m['dataset'])}", "",
             f"{integer(m['images'])} labelled images ({m['split']}){missing.replace('classes', 'labels')}; "
             f"{integer(m['skipped_files']['count'])} files skipped. Thresholds: the run's, chosen on its validation "
             "split.", "", "| metric | value |", "|---|---|"] + [f"| {a} | {b} |" for a, b in rows] + [""]
    lines += ["## Per label", ""] + per_label_section(m.get("per_class") or [])
    lines += ["![precision-recall curves](pr_curves.png)", ""]
    lines += ["## The images with the largest loss", "", "Every image's labels and probabilities: `predictions.csv`; "
              "the worst: `largest_loss.csv`.", "", "![largest loss](largest_loss.png)", ""]
    return "\n".join(lines + [" ".join(multilabel_sentences(m)), ""])


def scaled_loss_row(m: dict) -> list[str]:
    if m.get("test_loss_scaled") is None:
        return []
    return [f"| loss with the run's temperature {m['temperature']:.3f} | {fixed(m['test_loss_scaled'])} |"]


def mistakes_section(m: dict) -> list[str]:
    if not m.get("misclassified"):
        return ["## Mistakes", "", "No image was misclassified.", ""]
    lines = ["## Mistakes", "", f"{integer(m['misclassified'])} of {integer(m['images'])} images misclassified, every one "
             "in `misclassified.csv` (highest loss first: the model most confidently wrong, where mislabelled files "
             "show up first)."]
    if m.get("misclassified_shown"):
        lines += ["", "![the misclassified images with the highest loss](misclassified.png)"]
    return lines + [""]


def calibration_section(m: dict) -> list[str]:
    t = m.get("temperature")
    if t:
        said = (f"The run's temperature {t:.3f} (fitted on its validation split) divides the model's logits in "
                f"every probability it reports (predictions.csv, `imagefit predict`): expected calibration error "
                f"{fixed(m['test_ece_scaled'])} with it, {fixed(m['test_ece'])} as trained. Left: as trained; right: "
                "with the temperature.")
    else:
        said = f"The model has no fitted temperature: expected calibration error {fixed(m['test_ece'])}."
    return ["## Calibration", "", said + " A bar under the diagonal is a confidence the model did not earn.", "",
            "![reliability diagram](reliability.png)", ""]


def gradcam_section(m: dict) -> list[str]:
    if m.get("gradcam_images"):
        return ["## Where the model looked", "", f"Grad-CAM at `{m['gradcam_target_layer']}` on the "
                f"{m['gradcam_images']} worst mistakes: the evidence for the predicted class and for the true one.", "",
                "![Grad-CAM of the worst mistakes](gradcam.png)", ""]
    return ["## Where the model looked", "", f"No Grad-CAM: {m['gradcam_note']}.", ""] if m.get("gradcam_note") else []
