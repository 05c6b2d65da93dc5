"""The folders a comparison reads, grouped by name: a run, the same run over several seeds, or an evaluation
(`imagefit evaluate`'s folder: a finished model scored on other data, read with its run's configuration)."""
from __future__ import annotations

import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config_values import rename_legacy_keys, transfer_strategy_of
from ..errors import UserError
from ..evaluate.cells import SUMMARY_ROWS, number
from .run_files import read_csv, read_history, read_json, read_yaml

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
    evaluation: dict | None = None  # an evaluation folder's own metrics.json; None for a run

    @property
    def data(self) -> str:
        """What the test numbers were measured on: `cifar10`'s test split, or `june.csv` (all)."""
        if self.evaluation is not None:
            return f"{self.evaluation.get('dataset')} ({self.evaluation.get('split')})"
        return f"{self.metrics.get('dataset') or self.config.get('dataset')} (test)"

    def value(self, key: str) -> Any:
        if key == "train_val_gap":
            train, val = number(self.metrics.get("final_train_acc")), number(self.metrics.get("final_val_acc"))
            return None if train is None or val is None else train - val
        return self.metrics.get(key)

    @property
    def seed(self) -> Any:
        return self.config.get("seed")


def is_evaluation(metrics: dict) -> bool:
    return metrics.get("kind") == "evaluation"


def evaluated_run(folder: Path, metrics: dict) -> Path | None:
    """The run folder an evaluation scored: RUN/evaluations/<name>/ sits in it; one written elsewhere (--out)
    names it in metrics.json (None for an exported model)."""
    for candidate in (folder.resolve().parent.parent, Path(str(metrics.get("model")))):
        if (candidate / "config.yaml").is_file() and (candidate / "model.safetensors").is_file():
            return candidate
    return None


def runs_in(folder: str | Path) -> list[Path]:
    """`folder` when it is a run (or evaluation) folder; else the finished runs it holds, two levels deep at most
    (a study's runs, a tune's trials/trial-000 and best), in name order; else `folder` (load_run says why not)."""
    folder = Path(folder)
    if (folder / "metrics.json").is_file() or not folder.is_dir():
        return [folder]
    found = []
    for child in sorted(p for p in folder.iterdir() if p.is_dir()):
        if (child / "metrics.json").is_file():
            found.append(child)
        else:
            found += sorted(g for g in child.iterdir() if g.is_dir() and (g / "metrics.json").is_file())
    return found or [folder]


def load_run(run_dir: str | Path) -> RunRecord:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"run folder not found: {run_dir}", "pass folders under runs/ that hold a finished run, or "
                                                            "evaluation folders written by imagefit evaluate")
    metrics = read_json(run_dir / "metrics.json")
    if not metrics:
        raise UserError(f"{run_dir} is not an imagefit run folder (no metrics.json)",
                        "pass folders under runs/ that hold a finished run, or evaluation folders")
    if is_evaluation(metrics):
        return load_evaluation(run_dir, metrics)
    config = rename_legacy_keys(read_yaml(run_dir / "config.yaml"), str(run_dir), note=False)
    label = run_dir.resolve().name
    return RunRecord(run_dir, label, SEED_SUFFIX.sub("", label), config, metrics, read_history(run_dir / "history.csv"),
                     _class_f1(run_dir))


def load_evaluation(folder: Path, metrics: dict) -> RunRecord:
    """An evaluation as a column of the comparison: its test numbers, its run's configuration (what the model
    is), no curves; named `<run> on <evaluation>` so two runs' evaluations on the same data stay apart."""
    run = evaluated_run(folder, metrics)
    config = rename_legacy_keys(read_yaml(run / "config.yaml"), str(run), note=False) if run else {}
    name = folder.resolve().name
    label = f"{run.name} on {name}" if run else name
    # "model" in an evaluation's metrics.json is the folder or file scored; the table's Model row wants the network
    trained = read_json(run / "metrics.json") if run else {}
    shown = {**metrics, "model": config.get("model") or Path(str(metrics.get("model"))).name,
             "test_images": metrics.get("images"),  # how the model was trained, not what this scoring did:
             **{k: trained[k] for k in ("early_stopping", "transfer_strategy") if k in trained}}
    return RunRecord(folder, label, label, config, shown, [], _class_f1(folder), evaluation=metrics)


def _class_f1(run_dir: Path) -> dict[str, float]:
    class_f1 = {}
    for row in read_csv(run_dir / "classification_report.csv"):
        f1 = number(row.get("f1-score"))
        if row.get("class") not in CLASS_ROWS_SKIPPED and f1 is not None:
            class_f1[row["class"]] = f1
    return class_f1


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
def is_transfer(config: dict) -> bool:
    return bool(config.get("pretrained")) or config.get("weights") is not None


def describe_model(r: RunRecord) -> str:
    """`seed-cnn, from scratch` / `tf_efficientnet_lite0, ImageNet weights, linear probe on frozen features`."""
    model = r.metrics.get("model") or r.config.get("model", "?")
    if r.evaluation is not None and not r.config:
        return f"the exported model {model}, evaluated on {r.data}, {r.evaluation.get('images')} images"
    if is_transfer(r.config):
        source = "ImageNet weights" if r.config.get("pretrained") else "weights from a file"
        strategy = transfer_strategy_of(r.metrics) or transfer_strategy_of(r.config) or "fine-tune"
        text = f"{model}, {source}, {STRATEGY_WORDS.get(strategy, strategy)}"
    else:
        text = f"{model}, from scratch"
    es = r.metrics.get("early_stopping")
    if es:
        text += f"; early stopping (patience {es.get('patience')} on {es.get('monitor')})"
    if r.evaluation is not None:
        text += f"; evaluated on {r.data}, {r.evaluation.get('images')} images"
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


def closest_partner(groups: list[Group], index: int, reference: Group) -> Group:
    """The earlier run this one differs from least: scratch -> transfer -> transfer with early stopping."""
    target = groups[index]
    earlier = [g for g in groups[:index] if g is not target] or [reference]
    return min(earlier, key=lambda g: (len(config_differences(g.first.config, target.first.config)),
                                       g is not reference))



def unique_labels(runs: list[RunRecord]) -> None:
    seen: dict[str, int] = {}
    for r in runs:
        seen[r.label] = seen.get(r.label, 0) + 1
    for r in runs:
        if seen[r.label] > 1:  # two folders of the same name under different parents
            r.label = f"{r.dir.resolve().parent.name}/{r.label}"
            r.group = SEED_SUFFIX.sub("", r.label)

