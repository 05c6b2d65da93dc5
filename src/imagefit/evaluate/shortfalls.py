"""A run's shortfalls: honest sentences about a run that did not get what it needed (undertrained, not
learned, or collapsed onto a few classes), read off its learning curve and test metrics.

A short budget on a hard data set can end with a model that predicts a handful of classes: accuracy can
look passable while macro F1 is near zero. The report and the CLI's last lines say so, computed from the
numbers, with what to try. The sentences are computed once, by `finish_run` (train/outputs.py), into
metrics.json's "diagnosis"; the CLI and the report (report/budget_section.py) only read them back, so the
two always say the same.
"""
from __future__ import annotations

STILL_FALLING = 0.05  # validation loss fell by more than 5% over the last epoch: training was cut short
GOOD_ENOUGH = 0.97  # above this test accuracy, a still-falling loss is not worth a warning
CHANCE_FACTOR = 1.5  # accuracy under 1.5x chance: nothing was learned
COLLAPSE_F1_RATIO = 0.5  # macro F1 under half the accuracy
COLLAPSE_UNPREDICTED = 0.5  # more than half the classes never predicted


def diagnose(rows: list[dict], metrics: dict, cfg) -> list[str]:
    """Plain sentences (empty when nothing is wrong) from history rows and test metrics."""
    said = []
    tries = _what_to_try(cfg, metrics)
    with_val = [r for r in rows if r.get("val_loss") not in ("", None)]
    if len(with_val) >= 2 and (metrics.get("test_accuracy") or 0) < GOOD_ENOUGH:
        before, last = float(with_val[-2]["val_loss"]), float(with_val[-1]["val_loss"])
        if before > 0 and (before - last) / before > STILL_FALLING:
            said.append(f"Undertrained: validation loss was still falling steeply at the end ({before:.3f} to "
                        f"{last:.3f} over the last epoch), so more training would very likely help: {tries}.")
    accuracy, f1 = metrics.get("test_accuracy"), metrics.get("f1_macro")
    classes = metrics.get("num_classes") or 0
    if metrics.get("task") == "multilabel":  # chance: a random ranking's AP is each label's share of the images
        chance = (metrics.get("label_cardinality_true") or 0) / max(classes, 1)
        if metrics.get("test_map") is not None and chance and metrics["test_map"] <= min(0.99, CHANCE_FACTOR * chance):
            said.append(f"Not learned: test mAP {metrics['test_map']:.3f} is close to what a random ranking gets "
                        f"({chance:.3f}, the labels' mean share of the images): {tries}.")
        return said
    predicted = metrics.get("predicted_classes")
    if accuracy is not None and classes >= 2 and accuracy <= CHANCE_FACTOR / classes:
        said.append(f"Not learned: test accuracy {accuracy:.3f} is close to chance ({1 / classes:.3f} for {classes} "
                    f"classes): {tries}.")
        return said
    if accuracy and f1 is not None and classes > 2:
        unpredicted = 1 - predicted / classes if predicted is not None else 0.0
        if f1 < COLLAPSE_F1_RATIO * accuracy or unpredicted > COLLAPSE_UNPREDICTED:
            which = (f"it predicts only {predicted} of the {classes} classes" if predicted is not None
                     else f"macro F1 {f1:.3f} against accuracy {accuracy:.3f}")
            said.append(f"Collapsed: {which} (macro F1 {f1:.3f}, accuracy {accuracy:.3f}): the model has not "
                        f"learned most classes; {tries}.")
    return said


def _what_to_try(cfg, metrics: dict) -> str:
    options = []
    if cfg.time_budget:
        options.append("a longer --time-budget")
    else:
        options.append("more --epochs")
    if not cfg.transfer:
        size = metrics.get("image_size") or 0
        if size > 32:
            options.append(f"a smaller --image-size (e.g. {max(32, size // 2)})")
        options.append("transfer learning (--pretrained)")
    return ", ".join(options[:-1]) + (" or " if len(options) > 1 else "") + options[-1]
