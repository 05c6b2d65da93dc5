"""A study: a named list of runs sharing defaults, read from YAML or built in.

    name: lr-sweep                # the folder under runs_dir (default: the file's name)
    reference: slow               # optional: the run the others are compared with (default: the first)
    seeds: 1                      # optional: repeat every run with seeds seed, seed+1, ... (--seeds overrides)
    defaults:                     # TrainConfig keys shared by every run
      dataset: digits
      epochs: 20
    runs:                         # each a name plus the TrainConfig keys it changes
      - name: slow
        lr: 0.001
      - name: fast
        lr: 0.01

Every run's configuration is checked before anything trains, so a typo in the last run costs nothing.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import TrainConfig
from ..config_values import read_yaml
from ..data.sources import dataset_slug
from ..errors import UserError

STUDY_KEYS = ("name", "description", "reference", "seeds", "defaults", "runs")
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
# bookkeeping the study decides for each run: where it goes and what it is called
STUDY_OWNED = ("name", "runs_dir")

SEED_EPOCHS = 30  # all three runs of the built-in study: `make run` on digits takes about 2 minutes on 2 cores


@dataclass
class RunSpec:
    name: str
    values: dict[str, Any] = field(default_factory=dict)


@dataclass
class StudySpec:
    name: str
    runs: list[RunSpec]
    defaults: dict[str, Any] = field(default_factory=dict)
    reference: str | None = None
    seeds: int = 1
    description: str | None = None
    source: str = "study"

    def config(self, run: RunSpec, overrides: dict[str, Any] | None = None) -> TrainConfig:
        """The run's TrainConfig: defaults, then the run's own keys, then command-line overrides."""
        values = {**self.defaults, **run.values, **(overrides or {})}
        return _config({k: v for k, v in values.items() if k not in STUDY_OWNED}, f"{self.source}, run '{run.name}'")

    def validate(self, overrides: dict[str, Any] | None = None) -> None:
        _check_name(self.name, f"study name in {self.source}")
        if not self.runs:
            raise UserError(f"{self.source} lists no runs", "add a 'runs:' list, each item a mapping with a 'name'")
        seen = set()
        for run in self.runs:
            _check_name(run.name, f"run name in {self.source}")
            if re.search(r"-seed\d+$", run.name):
                raise UserError(f"run name '{run.name}' in {self.source} ends like a seed suffix",
                                "drop the '-seed<k>' ending: --seeds adds it")
            if run.name in seen:
                raise UserError(f"run name '{run.name}' appears twice in {self.source}", "give every run its own name")
            seen.add(run.name)
        if self.reference is not None and self.reference not in seen:
            raise UserError(f"reference '{self.reference}' in {self.source} is not one of its runs",
                            f"use one of: {', '.join(r.name for r in self.runs)}")
        if not isinstance(self.seeds, int) or isinstance(self.seeds, bool) or self.seeds < 1:
            raise UserError(f"seeds must be a whole number of at least 1, got {self.seeds!r}", "pass --seeds 3")
        for key in ("runs_dir",):
            for run in self.runs:
                if key in run.values:
                    raise UserError(f"run '{run.name}' in {self.source} sets {key}", f"set {key} under 'defaults:'")
        _config({k: v for k, v in self.defaults.items() if k not in STUDY_OWNED}, f"{self.source}, defaults")
        for run in self.runs:
            self.config(run, overrides)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name}
        if self.description:
            out["description"] = self.description
        if self.reference:
            out["reference"] = self.reference
        out["seeds"] = self.seeds
        out["defaults"] = dict(self.defaults)
        out["runs"] = [{"name": r.name, **r.values} for r in self.runs]
        return out


def _config(values: dict[str, Any], source: str) -> TrainConfig:
    """TrainConfig.from_dict, its mistakes naming the study file and run."""
    try:
        return TrainConfig.from_dict(values, source=source)
    except UserError as e:
        if source in e.problem:
            raise
        raise UserError(f"{e.problem} in {source}", e.fix) from None


def _check_name(name: Any, what: str) -> None:
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise UserError(f"{what} must be letters, digits, '.', '_' or '-', got {name!r}", "rename it, e.g. 'scratch'")


def _mapping(value: Any, what: str, source: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise UserError(f"'{what}' in {source} must be a mapping of keys to values", f"write '{what}:' then 'key: value' lines")
    return dict(value)


def spec_from_dict(data: Any, source: str, default_name: str | None = None) -> StudySpec:
    if not isinstance(data, dict):
        raise UserError(f"{source} must be a mapping with 'runs:' (and optional 'name:', 'defaults:')",
                        "see `imagefit study --help` for the format")
    for key in data:
        if key not in STUDY_KEYS:
            import difflib

            close = difflib.get_close_matches(str(key), STUDY_KEYS, n=1)
            hint = f"did you mean '{close[0]}'?" if close else f"a study has {', '.join(STUDY_KEYS)}"
            raise UserError(f"unknown study key '{key}' in {source}", hint)
    runs_raw = data.get("runs")
    if not isinstance(runs_raw, list):
        raise UserError(f"{source} has no 'runs:' list", "add 'runs:' with one '- name: ...' item per run")
    runs = []
    for i, item in enumerate(runs_raw, 1):
        if not isinstance(item, dict) or "name" not in item:
            raise UserError(f"run {i} in {source} has no 'name'", "start each run with '- name: <run name>'")
        values = dict(item)
        runs.append(RunSpec(str(values.pop("name")), values))
    seeds = data.get("seeds", 1)
    spec = StudySpec(name=data.get("name") or default_name or "study", runs=runs,
                     defaults=_mapping(data.get("defaults"), "defaults", source), reference=data.get("reference"),
                     seeds=seeds, description=data.get("description"), source=source)
    return spec


def load_study(path: str | Path) -> StudySpec:
    """Read and check a study file; every mistake is one UserError line."""
    path = Path(path)
    data = read_yaml(path, "study file", "pass a YAML file, or 'seed' for the built-in study")
    return spec_from_dict(data, str(path), default_name=path.stem)


def seed_study(dataset: str = "digits", epochs: int = SEED_EPOCHS) -> StudySpec:
    """The course report's study: a plain CNN from scratch, transfer learning, transfer with early stopping.

    All three runs share the data, optimizer (Adam at 1e-3, batch 128), epochs and seed; no augmentation,
    as in the course. Transfer is the Keras way with a frozen base: tf_efficientnet_lite0's ImageNet
    features, computed once and cached, under a new linear head (weights offline from pip).
    """
    transfer = {"model": "tf_efficientnet_lite0", "pretrained": True, "transfer_strategy": "linear-probe"}
    return StudySpec(
        name=f"seed-{dataset_slug(dataset)}",
        description=("The course study: a CNN from scratch, transfer learning from ImageNet, and transfer "
                     "learning with early stopping, on the same data with the same epochs."),
        defaults={"dataset": dataset, "epochs": epochs, "augment": "none", "optimizer": "adam", "lr": 1e-3,
                  "scheduler": "none",  # the course's constant rate, for all three (transfer alone would warm up)
                  "batch_size": 128, "seed": 0},
        runs=[RunSpec("scratch", {"model": "seed-cnn"}),
              RunSpec("transfer", dict(transfer)),
              RunSpec("transfer-early-stopping", {**transfer, "early_stopping": True, "patience": 5,
                                                  "monitor": "val_loss", "restore_best": True})],
        reference="scratch", source="the built-in seed study")


BUILTIN = {"seed": seed_study}
