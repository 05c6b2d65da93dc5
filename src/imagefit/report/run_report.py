"""`report.md` and `report.html`: one readable page per run, built only from the files in the run folder.

Reading files rather than live objects means the report can be rebuilt at any time, by
`imagefit report runs/<name>`, and that every number on the page can be traced to an artifact. The
"What the numbers say" sentences are computed from those numbers with fixed thresholds, never
written by hand, so two runs are described by the same rules (observations.py writes them).
"""
from __future__ import annotations

import csv
from pathlib import Path

from .. import atomic
from ..config import TrainConfig
from ..config_values import rename_legacy_keys, transfer_strategy_of
from ..errors import UserError
from ..evaluate.cells import SUMMARY_ROWS, number
from .audit_section import audit_lines
from .error_analysis_section import sections as error_analysis_sections
from .html import write_html
from .budget_section import diagnosis_lines, time_breakdown_section
from .markdown import duration, fixed, integer, literal, percent, table
from .observations import observations, stopping_sentences
from .run_files import read_csv, read_history, read_json, read_yaml

ARTIFACTS = {
    "config.yaml": "the full configuration; `imagefit train --config` repeats the run",
    "history.csv": "per-epoch losses, accuracies, learning rate and time",
    "metrics.json": "every number on this page",
    "curves.png": "learning curves",
    "model.safetensors": "the trained weights, with class names and image size in its metadata",
    "predictions.safetensors": "test-set logits and labels",
    "predictions.csv": "one row per test image: label, prediction, confidence",
    "classification_report.txt": "scikit-learn's per-class report",
    "classification_report.csv": "the same, as a table",
    "confusion_matrix.csv": "counts, true class by row",
    "confusion_matrix.png": "the confusion matrix, row-normalized",
    "top_confusions.csv": "the most frequent mistakes",
    "class_balance.png": "training images against test F1, one dot per class",
    "misclassified.csv": "every misclassified test image: source file or index, true and predicted class, probabilities, loss",
    "misclassified.png": "the misclassified test images with the highest loss",
    "data_audit.md": "the data audit before training: class counts per split, image sizes and modes, duplicates, label conflicts, test leaks",
    "reliability.png": "reliability diagram: test accuracy against confidence, before and after temperature scaling",
    "lr_find.png": "the learning-rate finder's sweep: training loss against the rate, the suggestion marked",
    "lr_find.json": "the finder's rates, losses and suggestion",
    "label_issues.csv": "--find-label-issues: the images whose label is most likely wrong, with a suggested class",
    "label_issues.png": "the first of them",
    "per_class.csv": "multi-label: each label's AP, precision, recall, F1, support and threshold, by AP",
    "multilabel_confusion.csv": "multi-label: each label's true and false positives and negatives",
    "pr_curves.png": "multi-label: precision-recall curves of the best and worst labels, thresholds marked",
    "largest_loss.csv": "multi-label: the test images with the largest loss, their true and predicted labels",
    "largest_loss.png": "multi-label: those images",
}


# ---- the page ----------------------------------------------------------------------------------
def _confusion_rows(run_dir: Path, top: list[dict]) -> dict[str, dict[str, int]]:
    """true -> predicted -> count, from the full matrix when present, else the top confusions."""
    path = run_dir / "confusion_matrix.csv"
    if path.is_file():
        with path.open(newline="", encoding="utf-8") as f:
            table = list(csv.reader(f))
        if table:
            names = table[0][1:]
            return {row[0]: {n: int(c) for n, c in zip(names, row[1:])} for row in table[1:] if row}
    out: dict[str, dict[str, int]] = {}
    for c in top:
        out.setdefault(c["true"], {})[c["predicted"]] = int(number(c["count"]) or 0)
    return out


def _setup_rows(config: dict, metrics: dict) -> list[list[str]]:
    dataset = metrics.get("dataset") or config.get("dataset", "–")
    sizes = ", ".join(f"{integer(metrics.get(f'{s}_images'))} {s}" for s in ("train", "val", "test")
                      if metrics.get(f"{s}_images") is not None)
    k = metrics.get("num_classes") or len(metrics.get("class_names") or [])
    data = literal(dataset) + (f" ({sizes}; {k} classes)" if sizes else f" ({k} classes)" if k else "")
    size = metrics.get("image_size") or config.get("image_size")
    optimizer = config.get("optimizer")
    lr = config.get("lr")
    if lr == "find" and number(metrics.get("lr_found")) is not None:  # lr_find.png shows the sweep
        lr_text = f"{metrics['lr_found']:g}, found by Lightning's learning-rate finder (lr_find.png)"
    elif optimizer and lr is None and optimizer in ("sgd", "adam", "adamw"):
        lr_text = f"{TrainConfig(optimizer=optimizer).learning_rate:g} (the optimizer's default)"
    else:
        lr_text = f"{number(lr):g}" if number(lr) is not None else "–"
    params = metrics.get("params")
    trainable = metrics.get("trainable_params")
    model = metrics.get("model") or config.get("model", "–")
    if params is not None:
        model += f" ({integer(params)} parameters" + (
            f", {integer(trainable)} trainable)" if trainable is not None and trainable != params else ")")
    epochs = f"{metrics.get('epochs', config.get('epochs', '–'))} configured"
    if metrics.get("epochs_run") is not None:
        epochs += f", {metrics['epochs_run']} run"
    rows = [
        ["Data set", data],
        ["Image size", f"{size}×{size} px" if size else "–"],
        ["Model", model],
        ["Optimizer", f"{optimizer or '–'}, lr {lr_text}, weight decay {config.get('weight_decay', '–')}"],
        ["Scheduler", config.get("scheduler", "–")],
        ["Augmentation", augmentation_text(config)],
        ["Label smoothing", config.get("label_smoothing", "–")],
        ["Epochs", epochs],
        ["Batch size", config.get("batch_size", "–")],
        ["Precision", metrics.get("precision") or config.get("precision", "–")],
        ["Seed", config.get("seed", "–")],
    ]
    if metrics.get("weights_source"):
        strategy = transfer_strategy_of(metrics) or transfer_strategy_of(config) or "–"
        if strategy == "partial":
            strategy += (f": the last {config.get('trainable_blocks')} blocks and the head trained on the frozen "
                         "trunk's cached activations")
        elif strategy != "linear-probe":
            strategy += f", backbone at {config.get('backbone_lr_mult')}× the head's learning rate"
        if (metrics.get("transfer_plan") or {}).get("reason"):
            strategy += f" (the time budget's choice: {metrics['transfer_plan']['reason']})"
        if metrics.get("frozen_note"):
            strategy += f"; {metrics['frozen_note']}"
        rows[3:3] = [
            ["Transfer strategy", strategy],
            ["Pretrained weights", f"{literal(metrics['weights_source'])} (sha256 {str(metrics.get('weights_sha256'))[:16]}…)"],
            ["Network input", f"{metrics.get('input_size')}×{metrics.get('input_size')} px, resized in batches"],
            ["Frozen / trainable parameters", f"{integer(metrics.get('frozen_params'))} / {integer(trainable)}"],
        ]
    sources = metrics.get("config_sources") or {}
    return [[a, str(b), set_by(SETUP_KEYS.get(a, ()), sources)] for a, b in rows]


def augmentation_text(config: dict) -> str:
    """The policy, then whichever of mixup, cutmix, random erasing and the weights' average are on."""
    extra = [f"{k.replace('_', ' ')} {config[k]}" for k in ("mixup", "cutmix", "random_erasing") if config.get(k)]
    if config.get("ema"):
        extra.append("weights averaged (EMA)")
    return ", ".join([str(config.get("augment", "–")), *extra])


# the configuration keys behind each row of the set-up table (metrics.json's config_sources says who set each)
SETUP_KEYS = {"Data set": ("dataset",), "Image size": ("image_size",), "Model": ("model",),
              "Optimizer": ("optimizer", "lr", "weight_decay"), "Scheduler": ("scheduler",),
              "Augmentation": ("augment", "mixup", "cutmix", "random_erasing", "ema"), "Label smoothing": ("label_smoothing",), "Epochs": ("epochs",),
              "Batch size": ("batch_size",), "Precision": ("precision",), "Seed": ("seed",),
              "Transfer strategy": ("transfer_strategy", "trainable_blocks"), "Pretrained weights": ("pretrained", "weights"),
              "Network input": ("image_size",)}


def set_by(keys: tuple[str, ...], sources: dict) -> str:
    """Who set a row's values, when not a default: 'planner', or per key ('recipe: optimizer; user: lr')."""
    named = {k: sources[k] for k in keys if sources.get(k, "default") != "default"}
    if not named:
        return ""
    if len(set(named.values())) == 1 and len(named) == len(keys):
        return next(iter(named.values()))
    by: dict[str, list[str]] = {}
    for key, source in named.items():
        by.setdefault(source, []).append(key)
    return "; ".join(f"{source}: {', '.join(keys)}" for source, keys in by.items())


def _metric_rows(metrics: dict, has_val: bool) -> list[list[str]]:
    rows = _test_rows(metrics) if metrics.get("test_pass") is not False else []
    rows += [
        ["Test images", integer(metrics.get("test_images"))],
        ["Epochs run", f"{metrics.get('epochs_run', '–')} of {metrics.get('epochs', '–')}"],
        [f"Best epoch ({'highest validation accuracy' if metrics.get('monitor') == 'val_acc' else 'lowest validation loss'})",
         str(metrics.get("best_epoch") or "–") if has_val else "– (no validation)"],
        ["Final validation accuracy", fixed(metrics.get("final_val_acc"))],
        ["Best validation accuracy", fixed(metrics.get("best_val_acc"))],
        ["Wall time", duration(metrics.get("wall_seconds"))],
        ["Training time", duration(metrics.get("train_seconds"))],
        ["Training images/s", integer(metrics.get("train_images_per_second"))],
    ]
    return rows


def _test_rows(metrics: dict) -> list[list[str]]:
    rows = [["Test accuracy", fixed(metrics.get("test_accuracy"))]]
    if metrics.get("test_balanced_accuracy") is not None:
        rows.append(["Test balanced accuracy (mean per-class recall)", fixed(metrics["test_balanced_accuracy"])])
    rows.append(["Test loss", fixed(metrics.get("test_loss"))])
    if metrics.get("test_top5_accuracy") is not None:
        rows.append(["Test top-5 accuracy", fixed(metrics["test_top5_accuracy"])])
    for avg in ("macro", "weighted"):
        for m in ("precision", "recall", "f1"):
            label = "F1" if m == "f1" else m.capitalize()
            rows.append([f"{label} ({avg} average)", fixed(metrics.get(f"{m}_{avg}"))])
    return rows


def _class_section(class_rows: list[dict]) -> list[str]:
    per_class = [r for r in class_rows if r.get("class") not in SUMMARY_ROWS]
    if not per_class:
        return ["No classification report: the run has no test predictions.", ""]

    def rows(items):
        return [[literal(r["class"]), fixed(r.get("precision")), fixed(r.get("recall")), fixed(r.get("f1-score")), integer(r.get("support"))]
                for r in items]

    header = ["Class", "Precision", "Recall", "F1", "Test images"]
    if len(per_class) <= 10:
        return table(header, rows(per_class))
    ranked = sorted(per_class, key=lambda r: -(number(r.get("f1-score")) or 0.0))
    return (["The 5 best classes by F1:", ""] + table(header, rows(ranked[:5]))
            + ["The 5 worst classes by F1:", ""] + table(header, rows(ranked[-5:][::-1]))
            + [f"All {len(per_class)} classes are in `classification_report.txt`.", ""])


def _confusion_section(top: list[dict]) -> list[str]:
    if not top:
        return ["No test image was misclassified.", ""]
    rows = [[f"{literal(c['true'])} → {literal(c['predicted'])}", integer(c["count"]),
             f"{percent(c.get('share_of_true'))} of {literal(c['true'])}"]
            for c in top]
    return table(["True → predicted", "Images", "Share of the true class"], rows)


def skipped_section(metrics: dict) -> list[str]:
    """The data set's files that were not used, from metrics.json (count always whole, names capped)."""
    info = metrics.get("skipped_files") or {}
    count, files = int(number(info.get("count")) or 0), info.get("files") or []
    if not count:
        return []
    lines = ["## Skipped files", "",
             f"{count:,} file{'s' if count != 1 else ''} of the data set could not be used and "
             f"{'were' if count != 1 else 'was'} skipped (`--strict` refuses such a data set instead):", ""]
    lines += table(["File", "Why"], [[literal(f.get("file", "?")), literal(f.get("reason", "?"))] for f in files])
    if count > len(files):
        lines += [f"The first {len(files)} are listed; {count - len(files):,} more were skipped.", ""]
    return lines


def write_run_report(run_dir: Path) -> Path:
    """Write report.md (and report.html) from the run folder's files; missing files shrink the page instead of failing."""
    run_dir = Path(run_dir)
    config = rename_legacy_keys(read_yaml(run_dir / "config.yaml"), str(run_dir), note=False)
    metrics = read_json(run_dir / "metrics.json")
    history = read_history(run_dir / "history.csv")
    class_rows = read_csv(run_dir / "classification_report.csv")
    top = metrics.get("top_confusions") or read_csv(run_dir / "top_confusions.csv")
    name = config.get("name") or run_dir.name
    model = metrics.get("model") or config.get("model", "unknown model")
    dataset = metrics.get("dataset") or config.get("dataset", "unknown data")

    audit_top, audit_section = audit_lines(run_dir, metrics)
    lines = [f"# Run {literal(name)}: {model} on {literal(dataset)}", ""] + audit_top
    epochs_run, epochs = metrics.get("epochs_run", len(history) or None), metrics.get("epochs", config.get("epochs"))
    if metrics.get("interrupted"):
        lines += [f"> **Interrupted run.** Training was stopped after {epochs_run or 0} of {epochs} epochs; the "
                  f"numbers below describe the model as it stood then.", ""]
    elif metrics.get("stopped_early"):
        lines += [f"> Early stopping ended training after {epochs_run} of {epochs} epochs.", ""]
    lines += diagnosis_lines(metrics)
    if metrics.get("test_pass") is False:
        lines += ["> No test pass (`test_pass: false`, as in a tune's trials): this run is judged on its validation "
                  "split; its test split was never read.", ""]
    elif metrics.get("test_accuracy") is None:
        lines += ["> No test metrics: `predictions.safetensors` was not written or not evaluated.", ""]
    has_val = any(r.get("val_loss") is not None for r in history) or metrics.get("best_val_loss") is not None
    if not has_val:
        lines += ["> This run had no validation split.", ""]

    setup = _setup_rows(config, metrics)
    if any(row[2] for row in setup):  # a column of who set what: user, recipe or planner (blank: a default)
        lines += ["## Set-up", ""] + table(["Setting", "Value", "Set by"], setup)
    else:
        lines += ["## Set-up", ""] + table(["Setting", "Value"], [row[:2] for row in setup])
    notes = metrics.get("data_notes") or []
    if notes:
        lines += ["## Data notes", ""] + [f"- {literal(n)}" for n in notes] + [""]  # plain text, names in it
    lines += skipped_section(metrics) + audit_section
    from .label_issues_section import label_issue_lines

    lines += label_issue_lines(run_dir, metrics)
    if (metrics.get("lr_find") or {}).get("sentence"):  # train --lr find: the sweep that chose the rate
        lines += ["## Learning rate", "", metrics["lr_find"]["sentence"], ""]
        lines += ["![learning-rate finder](lr_find.png)", ""] if (run_dir / "lr_find.png").is_file() else []
    stopping = stopping_sentences(metrics)
    if stopping:
        lines += ["## Stopping", ""] + [" ".join(stopping), ""]
    lines += time_breakdown_section(metrics)
    lines += ["## Training curves", ""]
    lines += ["![curves](curves.png)", ""] if (run_dir / "curves.png").is_file() else ["No curves: history.csv is empty or missing.", ""]
    if metrics.get("task") == "multilabel":
        from .multilabel_section import multilabel_sections

        said = observations({**metrics, "test_accuracy": None, "best_val_acc": None}, history, [], {})
        lines += multilabel_sections(run_dir, metrics, has_val, said)
    elif metrics.get("test_pass") is False:
        lines += ["## Metrics", ""] + table(["Metric", "Value"], _metric_rows(metrics, has_val))
    else:
        lines += ["## Test metrics", ""] + table(["Metric", "Value"], _metric_rows(metrics, has_val))
        lines += ["## Per-class results", ""] + _class_section(class_rows)
        lines += ["## Top confusions", ""] + _confusion_section(top)
        if (run_dir / "confusion_matrix.png").is_file():
            lines += ["## Confusion matrix", "", "![confusion matrix](confusion_matrix.png)", ""]
        lines += error_analysis_sections(run_dir, metrics)
        said = observations(metrics, history, class_rows, _confusion_rows(run_dir, top))
        if said:
            lines += ["## What the numbers say", ""] + [" ".join(said), ""]
    present = sorted(p.name for p in run_dir.iterdir() if p.is_file() and not p.name.startswith(".")
                     and p.name not in ("report.md", "report.html"))
    if present:
        lines += ["## Files in this folder", ""]
        lines += [f"- `{f}`" + (f": {ARTIFACTS[f]}" if f in ARTIFACTS else "") for f in present]
        lines += ["- `report.md` and `report.html`: this page, the HTML one file with its pictures embedded", ""]
    path = run_dir / "report.md"
    atomic.write_text(path, "\n".join(lines))
    write_html(path)  # report.html beside it, self-contained
    return path


def rebuild_report(run_dir: Path) -> Path:
    """Regenerate every derived file from the run's saved outputs, so old runs pick up report fixes."""
    from safetensors.torch import load_file

    from ..evaluate import plot_curves, write_evaluation
    from ..evaluate.error_analysis import rebuild_error_analysis

    run_dir = Path(run_dir)
    if not (run_dir / "metrics.json").is_file() or not (run_dir / "config.yaml").is_file():
        raise UserError(f"{run_dir} is not an imagefit run folder", "pass a folder under runs/ that holds metrics.json")
    metrics = read_json(run_dir / "metrics.json")
    config = read_yaml(run_dir / "config.yaml")
    predictions = run_dir / "predictions.safetensors"
    if predictions.is_file():
        tensors = load_file(str(predictions))
        logits, labels = tensors["logits"], tensors["labels"]
        names = metrics.get("class_names") or [str(i) for i in range(logits.shape[1])]
        if len(names) != logits.shape[1]:
            raise UserError(f"{predictions} has {logits.shape[1]} classes but metrics.json names {len(names)}",
                            "rerun training to write a consistent run folder")
        if labels.ndim == 2:  # multi-label: at the thresholds the run chose on validation
            from ..evaluate.multilabel import write_multilabel_evaluation

            thresholds = metrics.get("thresholds") or [0.5] * len(names)
            metrics.update(write_multilabel_evaluation(run_dir, logits, labels, names, thresholds))
        else:
            metrics.update(write_evaluation(run_dir, logits, labels, names))
            metrics.update(rebuild_error_analysis(run_dir, metrics, tensors))
        atomic.write_json(run_dir / "metrics.json", metrics)
    history = read_history(run_dir / "history.csv")
    if history:
        model = metrics.get("model") or config.get("model", "")
        dataset = metrics.get("dataset") or config.get("dataset", "")
        plot_curves(history, run_dir / "curves.png", best_epoch=metrics.get("best_epoch"),
                    stop_epoch=metrics.get("stop_epoch"), title=f"{model} on {dataset}")
    return write_run_report(run_dir)
