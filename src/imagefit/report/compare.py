"""`imagefit compare`: several runs side by side, read from their folders' files only.

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
import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .. import atomic
from ..config import rename_legacy_keys, transfer_strategy_of
from ..errors import UserError
from ..evaluate.cells import SUMMARY_ROWS, number
from .run_report import (GAP_MILD, GAP_NONE, _duration, _f, _int, _read_csv, _read_json, _read_yaml, _table,
                         read_history)

SEED_SUFFIX = re.compile(r"-seed(\d+)$")
# settings that do not change what a run learns: never named as "the difference" between two runs
BOOKKEEPING = {"name", "runs_dir", "progress", "cache_dir", "data_dir", "num_workers", "accelerator", "devices",
               "num_nodes", "strategy", "logger",
               "loader", "limit_train_batches", "compile"}
STOPPING_KEYS = {"early_stopping", "patience", "monitor", "min_delta", "start_from_epoch", "restore_best"}
STRATEGY_WORDS = {"linear-probe": "linear probe on frozen features", "fine-tune": "fine-tuned",
                  "partial": "top blocks fine-tuned on a cached frozen trunk",
                  "freeze-unfreeze": "head first, then every layer"}
CLASS_ROWS_SKIPPED = SUMMARY_ROWS
# how many gains and losses per run the per-class section lists when there are too many classes to list all
PER_CLASS_ALL, PER_CLASS_TOP = 12, 5

# the columns of comparison.csv after the run's name: metrics.json keys, and train_val_gap computed from two
CSV_METRICS = ["test_accuracy", "test_balanced_accuracy", "test_loss", "test_top5_accuracy", "precision_macro", "recall_macro", "f1_macro",
               "precision_weighted", "recall_weighted", "f1_weighted", "epochs", "epochs_run", "best_epoch",
               "stopped_early", "stop_epoch", "final_train_acc", "final_val_acc", "train_val_gap", "best_val_acc",
               "best_val_loss", "wall_seconds", "train_seconds", "train_images_per_second", "trainable_params",
               "params", "test_images", "interrupted"]
GROUP_METRICS = [k for k in CSV_METRICS if k not in ("stopped_early", "interrupted", "stop_epoch")]


# ---- reading -----------------------------------------------------------------------------------
@dataclass
class RunRecord:
    """One run folder, as its files describe it."""

    dir: Path
    label: str
    group: str
    config: dict
    metrics: dict
    history: list[dict]
    class_f1: dict[str, float]

    def value(self, key: str) -> Any:
        if key == "train_val_gap":
            train, val = number(self.metrics.get("final_train_acc")), number(self.metrics.get("final_val_acc"))
            return None if train is None or val is None else train - val
        return self.metrics.get(key)

    @property
    def seed(self) -> Any:
        return self.config.get("seed")


def load_run(run_dir: str | Path) -> RunRecord:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"run folder not found: {run_dir}", "pass folders under runs/ that hold a finished run")
    metrics = _read_json(run_dir / "metrics.json")
    if not metrics:
        raise UserError(f"{run_dir} is not an imagefit run folder (no metrics.json)",
                        "pass folders under runs/ that hold a finished run")
    config = rename_legacy_keys(_read_yaml(run_dir / "config.yaml"), str(run_dir), note=False)
    class_f1 = {}
    for row in _read_csv(run_dir / "classification_report.csv"):
        f1 = number(row.get("f1-score"))
        if row.get("class") not in CLASS_ROWS_SKIPPED and f1 is not None:
            class_f1[row["class"]] = f1
    label = run_dir.resolve().name
    return RunRecord(run_dir, label, SEED_SUFFIX.sub("", label), config, metrics,
                     read_history(run_dir / "history.csv"), class_f1)


@dataclass
class Group:
    """The runs of one name: one run, or the same run with several seeds."""

    name: str
    runs: list[RunRecord] = field(default_factory=list)

    @property
    def first(self) -> RunRecord:
        return self.runs[0]

    @property
    def n(self) -> int:
        return len(self.runs)

    def values(self, key: str) -> list[float]:
        out = []
        for r in self.runs:
            v = r.value(key)
            if isinstance(v, bool):
                v = float(v)
            v = number(v)
            if v is not None:
                out.append(v)
        return out

    def mean(self, key: str) -> float | None:
        v = self.values(key)
        return statistics.fmean(v) if v else None

    def std(self, key: str) -> float | None:
        v = self.values(key)
        return statistics.stdev(v) if len(v) >= 2 else None

    def class_f1(self) -> dict[str, float]:
        names = [c for c in self.first.class_f1 if all(c in r.class_f1 for r in self.runs)]
        return {c: statistics.fmean(r.class_f1[c] for r in self.runs) for c in names}


def group_runs(runs: list[RunRecord]) -> list[Group]:
    groups: dict[str, Group] = {}
    for r in runs:
        groups.setdefault(r.group, Group(r.group)).runs.append(r)
    return list(groups.values())


# ---- describing runs and their differences -----------------------------------------------------
def _transfer(config: dict) -> bool:
    return bool(config.get("pretrained")) or config.get("weights") is not None


def describe_model(r: RunRecord) -> str:
    """`seed-cnn, from scratch` / `tf_efficientnet_lite0, ImageNet weights, linear probe on frozen features`."""
    model = r.metrics.get("model") or r.config.get("model", "?")
    if _transfer(r.config):
        source = "ImageNet weights" if r.config.get("pretrained") else "weights from a file"
        strategy = transfer_strategy_of(r.metrics) or transfer_strategy_of(r.config) or "fine-tune"
        text = f"{model}, {source}, {STRATEGY_WORDS.get(strategy, strategy)}"
    else:
        text = f"{model}, from scratch"
    es = r.metrics.get("early_stopping")
    if es:
        text += f"; early stopping (patience {es.get('patience')} on {es.get('monitor')})"
    return text


def config_differences(a: dict, b: dict, ignore: set[str] = BOOKKEEPING | {"seed"}) -> dict[str, tuple]:
    """key -> (value in a, value in b) for the settings that differ."""
    out = {}
    for key in sorted(set(a) | set(b)):
        if key in ignore:
            continue
        if a.get(key) != b.get(key):
            out[key] = (a.get(key), b.get(key))
    return out


def _closest_partner(groups: list[Group], index: int, reference: Group) -> Group:
    """The earlier run this one differs from least: scratch -> transfer -> transfer with early stopping."""
    target = groups[index]
    earlier = [g for g in groups[:index] if g is not target] or [reference]
    return min(earlier, key=lambda g: (len(config_differences(g.first.config, target.first.config)),
                                       g is not reference))


# ---- sentences -----------------------------------------------------------------------------------
def _x(x: float | None, digits: int = 3) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def _spread(a: Group, b: Group, key: str) -> str:
    """With several seeds: does the difference of means exceed the seed-to-seed spread?"""
    if a.n < 2 and b.n < 2:
        return ""
    ma, mb, sa, sb = a.mean(key), b.mean(key), a.std(key) or 0.0, b.std(key) or 0.0
    if ma is None or mb is None:
        return ""
    seeds = f"means over {a.n} and {b.n} seeds" if a.n != b.n else f"means over {a.n} seeds"
    if abs(mb - ma) > sa + sb:
        return (f" ({seeds}; the difference exceeds the seed-to-seed spread: the mean ± std ranges "
                f"{ma - sa:.3f}–{ma + sa:.3f} and {mb - sb:.3f}–{mb + sb:.3f} do not overlap)")
    return (f" ({seeds}; the difference is within the seed-to-seed spread, std {sa:.3f} and {sb:.3f}: "
            f"these seeds cannot tell it from noise)")


def raised(what: str, a: float | None, b: float | None) -> str | None:
    """'raised test accuracy from 0.360 to 0.510 (+0.150)': the verb phrase after the change's name."""
    if a is None or b is None:
        return None
    d = b - a
    if abs(d) < 0.0005:
        return f"left {what} unchanged at {b:.3f}"
    return f"{'raised' if d > 0 else 'lowered'} {what} from {a:.3f} to {b:.3f} ({d:+.3f})"


def moved(what: str, a: float | None, b: float | None) -> str | None:
    """'test loss fell from 2.410 to 1.940 (-0.470)': a clause of its own."""
    if a is None or b is None:
        return None
    d = b - a
    if abs(d) < 0.0005:
        return f"{what} stayed at {b:.3f}"
    return f"{what} {'rose' if d > 0 else 'fell'} from {a:.3f} to {b:.3f} ({d:+.3f})"


def _what_changed(partner: Group, g: Group) -> tuple[str, str]:
    """(kind, phrase): what the run changes against its partner, in words, read from the configs."""
    a, b = partner.first.config, g.first.config
    diffs = config_differences(a, b)
    if not _transfer(a) and _transfer(b):
        strategy = b.get("transfer_strategy", "fine-tune")
        source = "ImageNet weights" if b.get("pretrained") else "weights from a file"
        return "transfer", f"Transfer learning ({b.get('model')} from {source}, {STRATEGY_WORDS.get(strategy, strategy)})"
    if _transfer(a) and not _transfer(b):
        return "scratch", f"Training {b.get('model')} from scratch instead of transfer learning"
    if diffs and set(diffs) <= STOPPING_KEYS | {"epochs"} and b.get("early_stopping") and not a.get("early_stopping"):
        return "early", "Early stopping"
    if not diffs:
        return "same", "The same configuration"
    shown = [f"{k} {_setting(v[0])} → {_setting(v[1])}" for k, v in list(diffs.items())[:3]]
    more = f" and {len(diffs) - 3} more settings" if len(diffs) > 3 else ""
    return "other", f"Changing {', '.join(shown)}{more}"


def _setting(v: Any) -> str:
    return "none" if v is None else str(v).lower() if isinstance(v, bool) else str(v)


def _early_stopping_sentence(partner: Group, g: Group) -> str:
    es = g.first.metrics.get("early_stopping") or {}
    rule = f"patience {es.get('patience')} on {es.get('monitor')}" + (
        ", best weights restored" if es.get("restore_best") else "")
    stopped = [r for r in g.runs if r.metrics.get("stopped_early")]
    epochs = g.first.metrics.get("epochs")
    partner_runs = partner.mean("epochs_run")
    partner_ran = (f"which ran all {int(partner_runs)}" if partner_runs is not None and partner_runs == epochs
                   else f"which ran {_fmt_epoch(partner_runs)}")
    acc = raised("test accuracy", partner.mean("test_accuracy"), g.mean("test_accuracy"))
    loss = moved("test loss", partner.mean("test_loss"), g.mean("test_loss"))
    wp, wg = partner.mean("wall_seconds"), g.mean("wall_seconds")
    wall = f"; wall time went from {_duration(wp)} to {_duration(wg)}{cache_note(partner, g)}" if wp and wg else ""
    if g.n == 1:
        r = g.first
        if stopped and r.metrics.get("epochs_saved"):
            head = (f"Early stopping ({rule}) ended {g.name} at epoch {r.metrics.get('stop_epoch')} of {epochs}, "
                    f"saving {r.metrics.get('epochs_saved')} epochs (best epoch {r.metrics.get('best_epoch')})")
        elif stopped:
            head = (f"Early stopping ({rule}) fired in {g.name} only at its last epoch, {r.metrics.get('stop_epoch')} "
                    f"of {epochs}, saving no epochs (best epoch {r.metrics.get('best_epoch')})")
        else:
            best, ran = r.metrics.get("best_epoch"), r.metrics.get("epochs_run")
            why = ("validation loss was still improving at the last epoch" if best == ran and best is not None
                   else f"the best epoch was {best}, but patience never ran out")
            head = f"Early stopping ({rule}) did not fire in {g.name}: all {ran} epochs ran ({why})"
    else:
        if stopped:
            at = ", ".join(str(r.metrics.get("stop_epoch")) for r in stopped)
            head = (f"Early stopping ({rule}) ended {len(stopped)} of {g.n} seeds of {g.name} early (at epochs {at} "
                    f"of {epochs}; {g.mean('epochs_run'):.1f} epochs run on average)")
        else:
            head = f"Early stopping ({rule}) did not fire in any of the {g.n} seeds of {g.name}"
    if not acc:
        return head + "."
    return (f"{head}. Against {partner.name}, {partner_ran}, it {acc}" + _spread(partner, g, "test_accuracy")
            + (f", and {loss}" if loss else "") + wall + ".")


def _comparison_sentence(partner: Group, g: Group) -> str:
    kind, phrase = _what_changed(partner, g)
    if kind == "early":
        return _early_stopping_sentence(partner, g)
    acc = raised("test accuracy", partner.mean("test_accuracy"), g.mean("test_accuracy"))
    loss = moved("test loss", partner.mean("test_loss"), g.mean("test_loss"))
    f1 = moved("macro F1", partner.mean("f1_macro"), g.mean("f1_macro"))
    subject = f"{g.name} against {partner.name}: {phrase[0].lower()}{phrase[1:]}"
    if kind == "same":
        subject = f"{g.name}, with {partner.name}'s configuration,"
    text = f"{subject} {acc or 'could not be compared on test accuracy'}" + _spread(partner, g, "test_accuracy")
    extras = [s for s in (loss, f1) if s]
    if extras:
        text += "; " + " and ".join(extras)
    tp, tg = partner.mean("trainable_params"), g.mean("trainable_params")
    wp, wg = partner.mean("wall_seconds"), g.mean("wall_seconds")
    if kind in ("transfer", "scratch") and tp and tg and tp != tg:
        text += f". It trained {_int(tg)} parameters (against {_int(tp)})"
        if wp and wg:
            text += f" in {_duration(wg)} of wall time (against {_duration(wp)}){cache_note(partner, g)}"
    size, seen = number(g.first.metrics.get("image_size")), number(g.first.metrics.get("input_size"))
    if kind == "transfer" and size and seen and seen >= 2 * size:
        text += f"; the pretrained network saw the {int(size)} px images upscaled to {int(seen)} px"
    return text + "."


def _overfitting_sentence(groups: list[Group]) -> str | None:
    parts = []
    for g in groups:
        gap = g.mean("train_val_gap")
        if gap is None:
            continue
        verdict = "no sign of overfitting" if gap < GAP_NONE else "mild overfitting" if gap < GAP_MILD else "heavy overfitting"
        parts.append(f"{g.name} {gap:.3f} ({verdict})")
    if not parts:
        return None
    worst = max((g for g in groups if g.mean("train_val_gap") is not None), key=lambda g: g.mean("train_val_gap"))
    text = "Train minus validation accuracy at the last epoch: " + "; ".join(parts)
    if len(parts) > 1 and worst.mean("train_val_gap") >= GAP_NONE:
        text += f". The run that overfits most is {worst.name}"
    return text + "."


def _best_sentence(groups: list[Group]) -> str | None:
    scored = [g for g in groups if g.mean("test_accuracy") is not None]
    if len(scored) < 2:
        return None
    best_acc = max(scored, key=lambda g: g.mean("test_accuracy"))
    best_loss = min((g for g in scored if g.mean("test_loss") is not None), key=lambda g: g.mean("test_loss"))
    mean = "mean " if any(g.n > 1 for g in groups) else ""
    text = f"The highest {mean}test accuracy is {best_acc.name}'s {best_acc.mean('test_accuracy'):.3f}"
    if best_loss is best_acc:
        text += f", which also has the lowest {mean}test loss ({best_loss.mean('test_loss'):.3f})"
    else:
        text += f"; the lowest {mean}test loss is {best_loss.name}'s {best_loss.mean('test_loss'):.3f}"
    timed = [g for g in groups if g.mean("wall_seconds") is not None]
    if len(timed) >= 2:
        fast = min(timed, key=lambda g: g.mean("wall_seconds"))
        slow = max(timed, key=lambda g: g.mean("wall_seconds"))
        if _duration(fast.mean("wall_seconds")) == _duration(slow.mean("wall_seconds")):
            text += f". Every run took about {_duration(fast.mean('wall_seconds'))} of wall time"
        else:
            text += (f". Wall time ranged from {_duration(fast.mean('wall_seconds'))} ({fast.name}) to "
                     f"{_duration(slow.mean('wall_seconds'))} ({slow.name})")
    return text + "."


def _noise_sentence(groups: list[Group]) -> str:
    counts = sorted({g.n for g in groups})
    if counts == [1]:
        return ("Each run used a single seed, so every difference above mixes the effect of the change with "
                "seed-to-seed noise that one run cannot measure; repeat the runs with several seeds "
                "(`imagefit study ... --seeds 3`) to see the spread.")
    seeds = sorted({str(r.seed) for g in groups for r in g.runs})
    n = "/".join(str(c) for c in counts)
    return (f"Numbers are means over {n} seeds ({', '.join(seeds)}); ± is the standard deviation between seeds. "
            "A difference counts as larger than the spread when the mean ± std ranges do not overlap.")


def per_class_changes(reference: Group, g: Group) -> list[tuple[str, float, float, float]]:
    """(class, reference F1, run F1, change) for the classes both have, largest gain first."""
    ref, run = reference.class_f1(), g.class_f1()
    rows = [(c, ref[c], run[c], run[c] - ref[c]) for c in ref if c in run]
    return sorted(rows, key=lambda r: (-r[3], r[0]))


def _per_class_sentence(reference: Group, g: Group) -> str | None:
    rows = per_class_changes(reference, g)
    if not rows:
        return None
    up = [r for r in rows if r[3] > 0.0005]
    down = [r for r in rows if r[3] < -0.0005]
    text = f"Against {reference.name}, {g.name}'s F1 rose on {len(up)} of {len(rows)} classes and fell on {len(down)}"
    if up:
        text += f"; the largest gain is {up[0][0]} ({up[0][3]:+.3f}, {up[0][1]:.3f} → {up[0][2]:.3f})"
    if down:
        text += f"; the largest loss is {down[-1][0]} ({down[-1][3]:+.3f}, {down[-1][1]:.3f} → {down[-1][2]:.3f})"
    return text + "."


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


def _unique_labels(runs: list[RunRecord]) -> None:
    seen: dict[str, int] = {}
    for r in runs:
        seen[r.label] = seen.get(r.label, 0) + 1
    for r in runs:
        if seen[r.label] > 1:  # two folders of the same name under different parents
            r.label = f"{r.dir.resolve().parent.name}/{r.label}"
            r.group = SEED_SUFFIX.sub("", r.label)


def sentences(groups: list[Group], reference: Group) -> list[str]:
    said = []
    for i, g in enumerate(groups):
        if g is reference:
            continue
        partner = _closest_partner(groups, i, reference) if i > 0 else reference
        said.append(_comparison_sentence(partner, g))
    for s in (_best_sentence(groups), _overfitting_sentence(groups)):
        if s:
            said.append(s)
    for g in groups:
        for r in g.runs:
            if r.metrics.get("interrupted"):
                said.append(f"{r.label} was interrupted after {r.metrics.get('epochs_run')} of "
                            f"{r.metrics.get('epochs')} epochs: its numbers describe an unfinished model.")
    said.append(_noise_sentence(groups))
    return said


def compare(run_dirs: list[str | Path], out: str | Path | None = None, reference: str | None = None,
            title: str | None = None, notes: list[str] | None = None) -> Comparison:
    """Compare finished runs; write comparison.csv/.md/.png/.html into `out` (default: the runs' common parent)."""
    if not run_dirs:
        raise UserError("no run folders to compare", "pass one or more folders under runs/")
    runs = [load_run(d) for d in run_dirs]
    _unique_labels(runs)
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
    atomic.write_text(files["md"], _markdown(groups, ref, said, out, title, notes))
    from .html import write_html

    write_html(files["md"], files["html"])
    return Comparison(out, runs, groups, ref.name, said, files)


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
                    _csv_cell(_transfer(r.config)), (transfer_strategy_of(r.metrics) or "") if _transfer(r.config) else "",
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
    return _f(x, 4)


def _fmt3(x: Any) -> str:
    return _f(x, 3)


def _fmt_epoch(x: Any) -> str:
    x = number(x)
    return "–" if x is None else (f"{int(x)}" if float(x).is_integer() else f"{x:.1f}")


# (label, key, format, which way is better or None)
TABLE_ROWS = [
    ("Test accuracy", "test_accuracy", _fmt4, max),
    ("Test balanced accuracy", "test_balanced_accuracy", _fmt4, max),
    ("Test loss", "test_loss", _fmt4, min),
    ("Test top-5 accuracy", "test_top5_accuracy", _fmt4, max),
    ("Precision (macro)", "precision_macro", _fmt4, max),
    ("Recall (macro)", "recall_macro", _fmt4, max),
    ("F1 (macro)", "f1_macro", _fmt4, max),
    ("Precision (weighted)", "precision_weighted", _fmt4, max),
    ("Recall (weighted)", "recall_weighted", _fmt4, max),
    ("F1 (weighted)", "f1_weighted", _fmt4, max),
    ("Best validation accuracy", "best_val_acc", _fmt4, max),
    ("Train − val accuracy, last epoch", "train_val_gap", _fmt3, None),
    ("Epochs run", "epochs_run", _fmt_epoch, None),
    ("Best epoch", "best_epoch", _fmt_epoch, None),
    ("Wall time", "wall_seconds", _duration, min),
    ("Training images/s", "train_images_per_second", _int, None),  # a linear probe's are features: no ranking
    ("Trainable parameters", "trainable_params", _int, None),
    ("Total parameters", "params", _int, None),
]


def _start(r: RunRecord) -> str:
    if not _transfer(r.config):
        return "from scratch"
    strategy = transfer_strategy_of(r.metrics) or transfer_strategy_of(r.config) or "fine-tune"
    return ("ImageNet" if r.config.get("pretrained") else "weights file") + ", " + strategy.replace("-", " ")


def _stopping_rule(r: RunRecord) -> str:
    es = r.metrics.get("early_stopping")
    return f"patience {es.get('patience')} on {es.get('monitor')}" if es else "off"


def _stopped_cell(g: Group) -> str:
    if g.n == 1:
        m = g.first.metrics
        if m.get("stopped_early"):
            return f"yes, at epoch {m.get('stop_epoch')} of {m.get('epochs')}"
        return "no" + (" (interrupted)" if m.get("interrupted") else "")
    at = [str(r.metrics.get("stop_epoch")) for r in g.runs if r.metrics.get("stopped_early")]
    return f"{len(at)} of {g.n} seeds (at epochs {', '.join(at)})" if at else "no"


def comparison_table(groups: list[Group]) -> list[str]:
    header = ["", *(g.name + (f" ({g.n} seeds)" if g.n > 1 else "") for g in groups)]
    rows = [["Model", *(str(g.first.metrics.get("model") or g.first.config.get("model")) for g in groups)],
            ["Start", *(_start(g.first) for g in groups)],
            ["Early stopping", *(_stopping_rule(g.first) for g in groups)]]
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
    return _table(header, rows)


def _signed(d: float | None) -> str:
    return "–" if d is None else "0.000" if abs(d) < 0.0005 else f"{d:+.3f}"


def _per_class_section(groups: list[Group], reference: Group) -> list[str]:
    others = [g for g in groups if g is not reference]
    changes = {g.name: per_class_changes(reference, g) for g in others}
    if not others or not any(changes.values()):
        return []
    lines = [f"## Per-class F1 against {reference.name}", ""]
    said = [s for s in (_per_class_sentence(reference, g) for g in others) if s]
    if said:
        lines += [" ".join(said), ""]
    classes = list(reference.class_f1())
    if len(classes) <= PER_CLASS_ALL:
        header = ["Class", f"{reference.name} F1"]
        for g in others:
            header += [f"{g.name} F1", "change"]
        body = []
        by_class = {g.name: {c: (f, d) for c, _, f, d in changes[g.name]} for g in others}
        for c in classes:
            row = [c, f"{reference.class_f1()[c]:.3f}"]
            for g in others:
                f, d = by_class[g.name].get(c, (None, None))
                row += [_x(f), _signed(d)]
            body.append(row)
        return lines + _table(header, body)
    for g in others:
        rows = changes[g.name]
        gains = [r for r in rows if r[3] > 0][:PER_CLASS_TOP]
        losses = [r for r in rows if r[3] < 0][-PER_CLASS_TOP:][::-1]
        head = ["Class", f"{reference.name} F1", f"{g.name} F1", "change"]
        lines += [f"### {g.name}: the {PER_CLASS_TOP} largest gains and losses", ""]
        fmt = [[c, f"{a:.3f}", f"{b:.3f}", _signed(d)] for c, a, b, d in gains + losses]
        lines += _table(head, fmt) if fmt else ["No class changed.", ""]
    return lines


def cache_note(a: Group, b: Group) -> str:
    """Why two wall times differ when one run read the frozen network's pass from the cache and the other made it."""
    flags = [a.first.metrics.get("frozen_inputs_from_cache"), b.first.metrics.get("frozen_inputs_from_cache")]
    if None in flags or flags[0] == flags[1]:
        return ""
    cached, computed = (a, b) if flags[0] else (b, a)
    return (f", but {cached.name} read the frozen network's features from the cache while {computed.name} "
            "computed them, so most of that difference is the cache, not the change")


def _runs_section(groups: list[Group], out: Path) -> list[str]:
    lines = ["## The runs", ""]
    for g in groups:
        links = []
        for r in g.runs:
            rel = Path(os.path.relpath(r.dir.resolve(), out.resolve()))
            label = f"seed {r.seed}" if g.n > 1 else "report"
            target = (rel / "report.md").as_posix() if (r.dir / "report.md").is_file() else rel.as_posix()
            links.append(f"[{label}]({target})")
        dataset = g.first.metrics.get("dataset") or g.first.config.get("dataset")
        lines.append(f"- **{g.name}**: {describe_model(g.first)}; {g.first.metrics.get('epochs')} epochs on "
                     f"`{dataset}`; " + ", ".join(links))
    return lines + [""]


def _markdown(groups: list[Group], reference: Group, said: list[str], out: Path, title: str | None,
              notes: list[str] | None) -> str:
    first = groups[0].first.metrics
    datasets = sorted({str(r.metrics.get("dataset")) for g in groups for r in g.runs})
    n_runs = sum(g.n for g in groups)
    title = title or f"Comparison of {n_runs} runs"
    lines = [f"# {title}", ""]
    data = f"`{datasets[0]}`" if len(datasets) == 1 else "different data sets: " + ", ".join(f"`{d}`" for d in datasets)
    size = ""
    if len(datasets) == 1 and first.get("test_images"):
        size = (f" ({_int(first.get('train_images'))} train, {_int(first.get('val_images'))} validation and "
                f"{_int(first.get('test_images'))} test images; {first.get('num_classes')} classes)")
    lines += [f"{n_runs} runs on {data}{size}. Reference run: **{reference.name}**. Written by `imagefit compare` "
              "from the run folders' files; rerunning it rebuilds this page.", ""]
    if len(datasets) > 1:
        lines += ["> The runs used different data sets: their test numbers are not directly comparable.", ""]
    for note in notes or []:
        lines += [f"> {note}", ""]
    lines += ["## What the comparison says", ""] + [f"- {s}" for s in said] + [""]
    lines += ["## Test metrics and training", ""] + comparison_table(groups)
    lines += ["Bold marks the best value in a row (highest accuracy, lowest loss, shortest time). "
              "The train − validation gap is the last epoch's; a large gap means overfitting.", ""]
    lines += ["## Curves", "", "![validation and train curves](comparison.png)", ""]
    lines += _per_class_section(groups, reference)
    if any(g.n > 1 for g in groups):
        rows = [[r.label, _x(number(r.seed), 0) if r.seed is not None else "–", _fmt4(r.value("test_accuracy")),
                 _fmt4(r.value("test_loss")), _fmt4(r.value("f1_macro")), _fmt_epoch(r.value("epochs_run")),
                 _duration(r.value("wall_seconds"))] for g in groups for r in g.runs]
        lines += ["## Every run", ""] + _table(["Run", "Seed", "Test accuracy", "Test loss", "F1 (macro)",
                                                 "Epochs run", "Wall time"], rows)
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


__all__ = ["Comparison", "RunRecord", "compare", "config_differences", "load_run", "plot_comparison"]
