"""`imagefit compare`: several runs side by side, read from their folders' files only. An evaluation folder
(`imagefit evaluate`) is a column like a run's, its test numbers those of the data it scored: "the model on last
year's test set against this year's" is one page.

Like `report.md`, the comparison is built from what the runs saved (metrics.json, history.csv,
classification_report.csv, config.yaml), so it can be rebuilt at any time and every number traces
back to a run's own files. It writes, into one folder:

- `comparison.csv`: one row per run, numbers at full precision (the same floats as metrics.json);
  with repeated seeds also `comparison_groups.csv`, the mean and standard deviation per run name;
- `comparison.png`: validation accuracy and loss curves overlaid, train curves dashed, one color per run;
- `comparison.md` and a self-contained `comparison.html`: the table, the picture, per-class F1 gains and
  losses against the reference run, and sentences computed from the numbers.

Runs named `<name>-seed<k>` are the same run with different seeds: they are grouped, and the
comparison speaks of means and spreads, and of whether a difference exceeds the spread.
"""
from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .. import atomic
from ..config_values import transfer_strategy_of
from ..errors import UserError
from ..evaluate.cells import number
from .findings import epochs_text, per_class_changes, per_class_sentence, sentences
from .markdown import code, duration, fixed, integer, link, literal, plain, table
from .runs import (BOOKKEEPING, Group, RunRecord, config_differences, describe_model, group_runs, is_transfer,
                   load_run, runs_in, unique_labels)

# how many gains and losses per run the per-class section lists when there are too many classes to list all
PER_CLASS_ALL, PER_CLASS_TOP = 12, 5

# the columns of comparison.csv after the run's name: metrics.json keys, and train_val_gap computed from two
CSV_METRICS = ["test_accuracy", "test_balanced_accuracy", "test_loss", "test_top5_accuracy", "test_ece",
               "test_ece_scaled", "temperature", "precision_macro", "recall_macro", "f1_macro",
               "precision_weighted", "recall_weighted", "f1_weighted", "epochs", "epochs_run", "best_epoch",
               "stopped_early", "stop_epoch", "final_train_acc", "final_val_acc", "train_val_gap", "best_val_acc",
               "best_val_loss", "wall_seconds", "train_seconds", "train_images_per_second", "trainable_params",
               "params", "test_images", "interrupted"]
GROUP_METRICS = [k for k in CSV_METRICS if k not in ("stopped_early", "interrupted", "stop_epoch")]

# ---- the comparison --------------------------------------------------------------------------------
@dataclass
class Comparison:
    """What `compare` wrote and what it found."""

    dir: Path
    runs: list[RunRecord]
    groups: list[Group]
    reference: str
    sentences: list[str]
    files: dict[str, Path]

    @property
    def html(self) -> Path:
        return self.files["html"]

    @property
    def markdown(self) -> Path:
        return self.files["md"]

    def __repr__(self) -> str:
        return f"Comparison({str(self.files['md'])!r}, runs={[r.label for r in self.runs]})"


def compare(run_dirs: list[str | Path], out: str | Path | None = None, reference: str | None = None,
            title: str | None = None, notes: list[str] | None = None, sections: list[str] | None = None) -> Comparison:
    """Compare finished runs; write comparison.csv/.md/.png/.html into `out` (default: the runs' common parent).
    A folder that is no run but holds runs (a study's or a tune's) stands for them. `sections`: markdown lines the
    caller adds to the page before the list of runs (a tune's Optuna plots), their images beside comparison.md."""
    run_dirs = [d for folder in run_dirs for d in runs_in(folder)]
    if not run_dirs:
        raise UserError("no run folders to compare", "pass one or more folders under runs/")
    runs = [load_run(d) for d in run_dirs]
    unique_labels(runs)
    if out is None:
        out = Path(os.path.commonpath([str(r.dir.resolve().parent) for r in runs]))
    out = Path(out)
    groups = group_runs(runs)
    ref = groups[0]
    if reference is not None:
        matches = [g for g in groups if reference in (g.name, *(r.label for r in g.runs))]
        if not matches:
            raise UserError(f"reference run '{reference}' is not among the compared runs",
                            f"pass one of: {', '.join(g.name for g in groups)}")
        ref = matches[0]
    out.mkdir(parents=True, exist_ok=True)
    said = sentences(groups, ref)
    files = {"csv": out / "comparison.csv", "md": out / "comparison.md", "png": out / "comparison.png",
             "html": out / "comparison.html"}
    atomic.write_text(files["csv"], _runs_csv(runs))
    if any(g.n > 1 for g in groups):
        files["groups_csv"] = out / "comparison_groups.csv"
        atomic.write_text(files["groups_csv"], _groups_csv(groups))
    plot_comparison(groups, files["png"])
    atomic.write_text(files["md"], _markdown(groups, ref, said, out, title, notes, sections))
    from .html import write_html

    write_html(files["md"], files["html"])
    return Comparison(out, runs, groups, ref.name, [plain(s) for s in said], files)  # console text: no escapes


# ---- files ---------------------------------------------------------------------------------------
def _csv_cell(v: Any) -> Any:
    if v is None:
        return ""
    if isinstance(v, bool):
        return str(v).lower()
    return v  # floats as repr: they read back equal to metrics.json's


def _runs_csv(runs: list[RunRecord]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["run", "group", "seed", "model", "pretrained", "transfer_strategy", "dir", *CSV_METRICS])
    for r in runs:
        w.writerow([r.label, r.group, _csv_cell(r.seed), r.metrics.get("model") or r.config.get("model"),
                    _csv_cell(is_transfer(r.config)), (transfer_strategy_of(r.metrics) or "") if is_transfer(r.config) else "",
                    str(r.dir), *(_csv_cell(r.value(k)) for k in CSV_METRICS)])
    return buf.getvalue()


def _groups_csv(groups: list[Group]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["group", "seeds", *(f"{k}_{s}" for k in GROUP_METRICS for s in ("mean", "std")), "stopped_early_runs"])
    for g in groups:
        row = [g.name, g.n]
        for k in GROUP_METRICS:
            row += [_csv_cell(g.mean(k)), _csv_cell(g.std(k))]
        w.writerow(row + [sum(bool(r.metrics.get("stopped_early")) for r in g.runs)])
    return buf.getvalue()


def _cell(g: Group, key: str, fmt: Callable[[Any], str]) -> str:
    if g.n == 1:
        return fmt(g.first.value(key))
    mean, std = g.mean(key), g.std(key)
    if mean is None:
        return "–"
    if std is None or std == 0:
        return fmt(mean)
    return f"{fmt(mean)} ± {fmt(std)}"


def _fmt4(x: Any) -> str:
    return fixed(x, 4)


def _fmt3(x: Any) -> str:
    return fixed(x, 3)


# (label, key, format, which way is better or None)
TABLE_ROWS = [
    ("Test mAP (multi-label, macro)", "test_map", _fmt4, max),
    ("F1 (macro) at 0.5 (multi-label)", "f1_macro_at_half", _fmt4, max),
    ("Test accuracy", "test_accuracy", _fmt4, max),
    ("Test balanced accuracy", "test_balanced_accuracy", _fmt4, max),
    ("Test loss", "test_loss", _fmt4, min),
    ("Test top-5 accuracy", "test_top5_accuracy", _fmt4, max),
    ("Test ECE (15 bins)", "test_ece", _fmt4, min),
    ("Test ECE, temperature-scaled", "test_ece_scaled", _fmt4, min),
    ("Precision (macro)", "precision_macro", _fmt4, max),
    ("Recall (macro)", "recall_macro", _fmt4, max),
    ("F1 (macro)", "f1_macro", _fmt4, max),
    ("Precision (weighted)", "precision_weighted", _fmt4, max),
    ("Recall (weighted)", "recall_weighted", _fmt4, max),
    ("F1 (weighted)", "f1_weighted", _fmt4, max),
    ("Best validation accuracy", "best_val_acc", _fmt4, max),
    ("Train − val accuracy, last epoch", "train_val_gap", _fmt3, None),
    ("Epochs run", "epochs_run", epochs_text, None),
    ("Best epoch", "best_epoch", epochs_text, None),
    ("Wall time", "wall_seconds", duration, min),
    ("Training images/s", "train_images_per_second", integer, None),  # a linear probe's are features: no ranking
    ("Trainable parameters", "trainable_params", integer, None),
    ("Total parameters", "params", integer, None),
]


def _start(r: RunRecord) -> str:
    if not is_transfer(r.config):
        return "from scratch"
    strategy = transfer_strategy_of(r.metrics) or transfer_strategy_of(r.config) or "fine-tune"
    return ("ImageNet" if r.config.get("pretrained") else "weights file") + ", " + strategy.replace("-", " ")


def _stopping_rule(r: RunRecord) -> str:
    es = r.metrics.get("early_stopping")
    return f"patience {es.get('patience')} on {es.get('monitor')}" if es else "off"


def _stopped_cell(g: Group) -> str:
    if g.first.evaluation is not None:
        return "–"
    if g.n == 1:
        m = g.first.metrics
        if m.get("stopped_early"):
            return f"yes, at epoch {m.get('stop_epoch')} of {m.get('epochs')}"
        return "no" + (" (interrupted)" if m.get("interrupted") else "")
    at = [str(r.metrics.get("stop_epoch")) for r in g.runs if r.metrics.get("stopped_early")]
    return f"{len(at)} of {g.n} seeds (at epochs {', '.join(at)})" if at else "no"


def comparison_table(groups: list[Group]) -> list[str]:
    header = ["", *(literal(g.name) + (f" ({g.n} seeds)" if g.n > 1 else "") for g in groups)]
    rows = [["Model", *(str(g.first.metrics.get("model") or g.first.config.get("model")) for g in groups)],
            ["Start", *(_start(g.first) for g in groups)],
            ["Early stopping", *(_stopping_rule(g.first) for g in groups)]]
    if any(g.first.evaluation for g in groups) or len({g.first.data for g in groups}) > 1:
        rows.insert(0, ["Scored on", *(literal(g.first.data) for g in groups)])
    for label, key, fmt, better in TABLE_ROWS:
        if all(g.mean(key) is None for g in groups):
            continue
        cells = [_cell(g, key, fmt) for g in groups]
        means = [g.mean(key) for g in groups]
        known = [m for m in means if m is not None]
        shown = [fmt(m) if m is not None else None for m in means]  # ties as the reader sees them
        if better and len(known) >= 2 and len({s for s in shown if s is not None}) > 1:
            best = fmt(better(known))
            cells = [f"**{c}**" if s == best else c for c, s in zip(cells, shown)]
        rows.append([label, *cells])
        if key == "best_epoch":
            rows.append(["Stopped early", *(_stopped_cell(g) for g in groups)])
    return table(header, rows)


def _signed(d: float | None) -> str:
    return "–" if d is None else "0.000" if abs(d) < 0.0005 else f"{d:+.3f}"


def _per_class_section(groups: list[Group], reference: Group) -> list[str]:
    others = [g for g in groups if g is not reference]
    changes = {g.name: per_class_changes(reference, g) for g in others}
    if not others or not any(changes.values()):
        return []
    lines = [f"## Per-class F1 against {literal(reference.name)}", ""]
    said = [s for s in (per_class_sentence(reference, g) for g in others) if s]
    if said:
        lines += [" ".join(said), ""]
    classes = list(reference.class_f1())
    if len(classes) <= PER_CLASS_ALL:
        header = ["Class", f"{literal(reference.name)} F1"]
        for g in others:
            header += [f"{literal(g.name)} F1", "change"]
        body = []
        by_class = {g.name: {c: (f, d) for c, _, f, d in changes[g.name]} for g in others}
        for c in classes:
            row = [literal(c), f"{reference.class_f1()[c]:.3f}"]
            for g in others:
                f, d = by_class[g.name].get(c, (None, None))
                row += [fixed(f, 3), _signed(d)]
            body.append(row)
        return lines + table(header, body)
    for g in others:
        rows = changes[g.name]
        gains = [r for r in rows if r[3] > 0][:PER_CLASS_TOP]
        losses = [r for r in rows if r[3] < 0][-PER_CLASS_TOP:][::-1]
        head = ["Class", f"{literal(reference.name)} F1", f"{literal(g.name)} F1", "change"]
        lines += [f"### {literal(g.name)}: the {PER_CLASS_TOP} largest gains and losses", ""]
        fmt = [[literal(c), f"{a:.3f}", f"{b:.3f}", _signed(d)] for c, a, b, d in gains + losses]
        lines += table(head, fmt) if fmt else ["No class changed.", ""]
    return lines


def _runs_section(groups: list[Group], out: Path) -> list[str]:
    lines = ["## The runs", ""]
    for g in groups:
        links = []
        for r in g.runs:
            rel = Path(os.path.relpath(r.dir.resolve(), out.resolve()))
            label = f"seed {r.seed}" if g.n > 1 else "report"
            target = (rel / "report.md").as_posix() if (r.dir / "report.md").is_file() else rel.as_posix()
            links.append(link(label, target))
        dataset = g.first.metrics.get("dataset") or g.first.config.get("dataset")
        if g.first.evaluation is not None:
            lines.append(f"- **{literal(g.name)}**: {describe_model(g.first)}; " + ", ".join(links))
            continue
        lines.append(f"- **{literal(g.name)}**: {describe_model(g.first)}; {g.first.metrics.get('epochs')} epochs on "
                     f"{code(dataset)}; " + ", ".join(links))
    return lines + [""]


def _markdown(groups: list[Group], reference: Group, said: list[str], out: Path, title: str | None,
              notes: list[str] | None, sections: list[str] | None = None) -> str:
    first = groups[0].first.metrics
    datasets = sorted({str(r.metrics.get("dataset")) for g in groups for r in g.runs})
    n_runs = sum(g.n for g in groups)
    scored = sum(1 for g in groups for r in g.runs if r.evaluation is not None)
    counted = f"{n_runs} runs" if not scored else (
        f"{n_runs - scored} run{'s' * (n_runs - scored != 1)} and {scored} evaluation{'s' * (scored != 1)}")
    title = literal(title) if title else f"Comparison of {counted}"  # a study's name: plain text
    lines = [f"# {title}", ""]
    data = code(datasets[0]) if len(datasets) == 1 else "different data sets: " + ", ".join(map(code, datasets))
    size = ""
    if len(datasets) == 1 and first.get("test_images"):
        size = (f" ({integer(first.get('train_images'))} train, {integer(first.get('val_images'))} validation and "
                f"{integer(first.get('test_images'))} test images; {first.get('num_classes')} classes)")
    lines += [f"{counted[0].upper() + counted[1:]} on {data}{size}. Reference run: **{literal(reference.name)}**. "
              "Written by `imagefit compare` "
              "from the run folders' files; rerunning it rebuilds this page.", ""]
    if len(datasets) > 1:
        lines += ["> The runs used different data sets: their test numbers are not directly comparable.", ""]
    for note in notes or []:
        lines += [f"> {literal(note)}", ""]
    lines += ["## What the comparison says", ""] + [f"- {s}" for s in said] + [""]
    lines += ["## Test metrics and training", ""] + comparison_table(groups)
    lines += ["Bold marks the best value in a row (highest accuracy, lowest loss, shortest time). "
              "The train − validation gap is the last epoch's; a large gap means overfitting.", ""]
    lines += ["## Curves", "", "![validation and train curves](comparison.png)", ""]
    lines += _per_class_section(groups, reference)
    if any(g.n > 1 for g in groups):
        rows = [[literal(r.label), fixed(number(r.seed), 0) if r.seed is not None else "–", _fmt4(r.value("test_accuracy")),
                 _fmt4(r.value("test_loss")), _fmt4(r.value("f1_macro")), epochs_text(r.value("epochs_run")),
                 duration(r.value("wall_seconds"))] for g in groups for r in g.runs]
        lines += ["## Every run", ""] + table(["Run", "Seed", "Test accuracy", "Test loss", "F1 (macro)",
                                                 "Epochs run", "Wall time"], rows)
    lines += list(sections or [])
    lines += _runs_section(groups, out)
    files = ["`comparison.csv`: one row per run, every number at full precision"]
    if any(g.n > 1 for g in groups):
        files.append("`comparison_groups.csv`: mean and standard deviation per run over its seeds")
    files += ["`comparison.png`: the curves above", "`comparison.html`: this page, self-contained"]
    lines += ["## Files", ""] + [f"- {f}" for f in files] + [""]
    return "\n".join(lines)


# ---- the picture -----------------------------------------------------------------------------------
def _series(history: list[dict], key: str) -> tuple[list[float], list[float]]:
    points = [(row["epoch"], row[key]) for row in history if row.get(key) is not None]
    return [p[0] for p in points], [p[1] for p in points]


def plot_comparison(groups: list[Group], path: str | Path) -> Path:
    """Validation accuracy and loss per epoch, one color per run, train curves dashed in the same color."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    path = Path(path)
    colors = plt.get_cmap("tab10").colors
    has_val = any(_series(r.history, "val_loss")[0] for g in groups for r in g.runs)
    stopped = any(r.metrics.get("stopped_early") for g in groups for r in g.runs)
    epochs = {row["epoch"] for g in groups for r in g.runs for row in r.history}
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), dpi=100)
    for ax, metric, label in ((axes[0], "acc", "accuracy"), (axes[1], "loss", "loss")):
        for i, g in enumerate(groups):
            color, alpha = colors[i % len(colors)], 1.0 if g.n == 1 else 0.7  # seeds: overlapping lines show
            for r in g.runs:
                for split, style, width in (("val", "-", 2.0), ("train", "--", 1.3)):
                    xs, ys = _series(r.history, f"{split}_{metric}")
                    if xs:  # a marker when there is one point only, so a one-epoch run still shows
                        ax.plot(xs, ys, style, color=color, alpha=alpha, linewidth=width,
                                marker="o" if len(xs) == 1 else None)
                xs, ys = _series(r.history, f"val_{metric}")
                if r.metrics.get("stopped_early") and xs:
                    ax.plot(xs[-1:], ys[-1:], marker="X", markersize=9, color=color, linestyle="none")
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.set_title(f"Validation {label} (train dashed)" if has_val else f"Train {label} (no validation split)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if len(epochs) == 1:  # one epoch everywhere: a point in the middle, not a tick every 0.015
            ax.set_xlim(min(epochs) - 1, max(epochs) + 1)
            ax.set_xticks(sorted(epochs))
        ax.grid(True, alpha=0.3)
        keys = [Line2D([], [], color=colors[i % len(colors)], linewidth=2.0, label=g.name) for i, g in enumerate(groups)]
        keys += [Line2D([], [], color="0.35", linewidth=2.0, label="validation"),
                 Line2D([], [], color="0.35", linewidth=1.3, linestyle="--", label="train")]
        if stopped:
            keys.append(Line2D([], [], color="0.35", marker="X", linestyle="none", label="stopped early"))
        ax.legend(handles=keys, loc="best", fontsize=9)
    if any(g.n > 1 for g in groups):
        fig.suptitle("one line per seed, one color per run", fontsize=10, color="0.35")
    fig.tight_layout()
    with atomic.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path


__all__ = ["BOOKKEEPING", "Comparison", "Group", "RunRecord", "compare", "config_differences", "load_run",
           "plot_comparison"]
