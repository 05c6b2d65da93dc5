"""The "What the numbers say" and "Stopping" sentences of a run's report, apart from the page that shows them.

Each sentence is computed from the run's numbers with fixed thresholds, never written by hand, so that two runs
are described by the same rules; the comparison of runs (findings.py) reads the same overfitting thresholds.
run_report.py assembles the page and calls these; they read no files.
"""
from __future__ import annotations

from typing import Any

from ..evaluate.cells import number
from .budget_section import budget_sentences
from .markdown import fixed, integer, literal, percent

# Train-minus-validation accuracy gaps (as fractions) that separate the overfitting verdicts.
GAP_NONE, GAP_MILD = 0.03, 0.10
# How far test accuracy may sit from the best validation accuracy and still count as "close".
TEST_VAL_CLOSE = 0.02


def overfitting_sentence(train_acc: float, val_acc: float) -> str:
    gap = train_acc - val_acc
    if gap < GAP_NONE:
        verdict = "no sign of overfitting"
    elif gap < GAP_MILD:
        verdict = "a sign of mild overfitting"
    else:
        verdict = "a sign of heavy overfitting"
    head = f"At the last epoch train accuracy was {train_acc:.3f} and validation accuracy {val_acc:.3f}"
    if gap <= -GAP_NONE:
        return (f"{head}: validation was {-gap:.3f} points higher, {verdict} (train accuracy is averaged over "
                f"the epoch while the model was still improving, and augmentation or dropout make it harder).")
    if gap < 0:
        return f"{head}: validation was {-gap:.3f} points higher, {verdict}."
    return f"{head}: a gap of {gap:.3f} points, {verdict}."


def val_loss_sentence(history: list[dict], best_epoch: int | None) -> str | None:
    points = [(r["epoch"], r["val_loss"]) for r in history if r.get("val_loss") is not None]
    if not points:
        return None
    if len(points) == 1:
        return f"Only one epoch ran (validation loss {points[0][1]:.4f}), so the curves show no trend yet."
    losses = dict(points)
    if best_epoch not in losses:
        best_epoch = min(points, key=lambda p: (p[1], p[0]))[0]
    best, (last_epoch, last) = losses[best_epoch], points[-1]
    if best_epoch == last_epoch:
        return (f"Validation loss was lowest at the last epoch, {last_epoch} ({best:.4f}): "
                f"it was still falling, so more epochs may help.")
    rise = last - best
    if rise <= 0:
        return (f"Validation loss was lowest at epoch {best_epoch} ({best:.4f}) and was {last:.4f} "
                f"at the last epoch, {last_epoch}.")
    return (f"Validation loss was lowest at epoch {best_epoch} ({best:.4f}) and rose by {rise:.4f} to {last:.4f} "
            f"by epoch {last_epoch}: training past epoch {best_epoch} did not help validation loss.")


def compare_test_val_sentence(test_acc: float, best_val_acc: float, val_images: Any = None) -> str:
    diff = test_acc - best_val_acc
    head = f"Test accuracy {test_acc:.3f}"
    if abs(diff) < TEST_VAL_CLOSE:
        return (f"{head} is close to the best validation accuracy {best_val_acc:.3f} ({diff:+.3f}), "
                f"so validation was a fair guide to unseen images.")
    size = f" ({integer(val_images)} images)" if number(val_images) else ""
    if diff < 0:
        return (f"{head} is {-diff:.3f} below the best validation accuracy {best_val_acc:.3f}: validation flattered "
                f"the model (it was used to choose the epoch), or it is too small a sample{size}.")
    return (f"{head} is {diff:.3f} above the best validation accuracy {best_val_acc:.3f}: the validation split "
            f"was harder than the test set, or too small to measure finely{size}.")


def weakest_class_sentence(class_rows: list[dict], confusion_rows: dict[str, dict[str, int]]) -> str | None:
    scored = [(r, number(r.get("f1-score"))) for r in class_rows]
    scored = [(r, f) for r, f in scored if f is not None]
    if len(scored) < 2:
        return None
    row, f1 = min(scored, key=lambda rf: rf[1])
    name = row["class"]
    text = (f"The weakest class is {literal(name)} (F1 {f1:.3f}: precision {fixed(row.get('precision'), 3)}, "
            f"recall {fixed(row.get('recall'), 3)}, {integer(row.get('support'))} test images)")
    mistakes = {p: c for p, c in confusion_rows.get(name, {}).items() if p != name and c > 0}
    if mistakes:
        other, count = max(mistakes.items(), key=lambda pc: pc[1])
        support = number(row.get("support")) or sum(confusion_rows[name].values())
        text += (f"; it is most often mistaken for {literal(other)} ({count} times, {percent(count / support)} of "
                 f"{literal(name)})")
    return text + "."


def observations(metrics: dict, history: list[dict], class_rows: list[dict], confusions: dict) -> list[str]:
    """The plain-language reading of the numbers, in the order a reader asks the questions."""
    out = []
    last = history[-1] if history else {}
    train_acc = number(metrics.get("final_train_acc"))
    train_acc = train_acc if train_acc is not None else last.get("train_acc")
    val_acc = number(metrics.get("final_val_acc"))
    val_acc = val_acc if val_acc is not None else last.get("val_acc")
    test_acc = number(metrics.get("test_accuracy"))
    if train_acc is not None and val_acc is not None:
        out.append(overfitting_sentence(train_acc, val_acc))
    elif train_acc is not None:
        tail = (f" with the test accuracy {test_acc:.3f} instead (a gap of {train_acc - test_acc:.3f} points)"
                if test_acc is not None else " with accuracy on held-out images")
        out.append(f"This run had no validation split, so overfitting cannot be read from the curves: "
                   f"compare the last train accuracy {train_acc:.3f}{tail}.")
    best_epoch = number(metrics.get("best_epoch"))
    by_loss = metrics.get("monitor", "val_loss") == "val_loss"  # else the loss's own lowest epoch is found
    sentence = val_loss_sentence(history, int(best_epoch) if best_epoch is not None and by_loss else None)
    if sentence:
        out.append(sentence)
    best_val = number(metrics.get("best_val_acc"))
    if test_acc is not None and best_val is not None:
        out.append(compare_test_val_sentence(test_acc, best_val, metrics.get("val_images")))
    k = number(metrics.get("num_classes")) or len(class_rows)
    if test_acc is not None and k and k >= 2 and test_acc < 2 / k:
        out.append(f"Test accuracy {test_acc:.3f} is less than twice chance level ({1 / k:.3f} for {int(k)} "
                   f"classes): the model has learned little.")
    sentence = weakest_class_sentence(class_rows, confusions)
    if sentence:
        out.append(sentence)
    return out


def stopping_sentences(metrics: dict) -> list[str]:
    """Early stopping and time budget, read off metrics.json: what fired, what it saved, what it cost."""
    said = []
    epochs, run, best = metrics.get("epochs"), metrics.get("epochs_run"), metrics.get("best_epoch")
    es = metrics.get("early_stopping")
    if es:
        rule = f"patience {es['patience']} epochs on {es['monitor']}"
        if es.get("min_delta"):
            rule += f", min-delta {es['min_delta']}"
        if es.get("start_from_epoch"):
            rule += f", counting from epoch {es['start_from_epoch'] + 1}"
        if metrics.get("stopped_early"):
            said.append(f"Early stopping ({rule}) ended training at epoch {metrics['stop_epoch']} of {epochs}, "
                        f"saving {metrics['epochs_saved']} epochs; the best epoch was {best}.")
        else:
            said.append(f"Early stopping ({rule}) did not fire: all {run} epochs ran; the best epoch was {best}.")
    final = metrics.get("final_model_test")
    if final and metrics.get("evaluated_model") == "best" and metrics.get("test_accuracy") is not None:
        said.append(f"The best epoch's weights were restored and are the ones evaluated and saved: test accuracy "
                    f"{metrics['test_accuracy']:.4f} and test loss {metrics['test_loss']:.4f}, against "
                    f"{final['test_accuracy']:.4f} and {final['test_loss']:.4f} for the final-epoch model.")
    return said + budget_sentences(metrics)
