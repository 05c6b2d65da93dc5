"""The search space of `imagefit tune`: which TrainConfig keys a trial varies, and over what.

The default space is the keys the user did not pin (on the command line or in --config), among:

- `lr_scale`: the learning rate as a multiple (0.2x to 5x, log) of the rate the run would use by itself, the
  reference rate. A budgeted run's rate is the recipe's for its batch size (fast: 1.5 per 1024 images), and the
  planner picks the batch; so the tune pins the batch its first trial ran with for every later trial and for the
  final run (see study/tune.py), and a scale means the same rate in a 20-second trial and in the final hour;
- `weight_decay` (log: a tenth to ten times the configured value, or 1e-5 to 1e-2 when that is 0);
- `label_smoothing` (0 to 0.3), `augment` (every value TrainConfig offers);
- `mixup` (off, 0.2 or 0.8), `cutmix` (off or 1.0), `random_erasing` (off or 0.25) and `ema` (off or on), when
  TrainConfig has those keys: off or a usual strength, since a range from 0 would switch them on in every trial;
- `model` (the airbench widths: airbench93 or airbench) with the fast recipe from scratch, no model named and
  --epochs pinned (with a budget the planner chooses the width for the final run's length, from measured speeds:
  a short trial would always favour the narrow net).

A key TrainConfig lacks is skipped, so the space follows the config. A YAML mapping (`imagefit tune --search
FILE.yaml`, or a `search:` section in --config) changes it: `lr: {low: 1e-4, high: 0.1, log: true}` (an absolute
rate, in place of lr_scale), `augment: [basic, light]` (a list: categorical), `label_smoothing: {low: 0, high:
0.3}`; `key: null` drops a key. A pinned key never enters the space, even when the YAML names it.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, get_type_hints

from ..config import TrainConfig
from ..config_values import CHOICES, read_yaml
from ..errors import UserError
from ..plan.probe import FAMILY

LR_SCALE = (0.2, 5.0)  # the learning rate as a multiple of the reference rate: the default range, log
FLOAT_RANGES = {"label_smoothing": (0.0, 0.3)}
# off, or a usual strength: a range from 0 would leave them on in every trial (a sampled float is never exactly 0)
SWITCHES = {"mixup": [0.0, 0.2, 0.8], "cutmix": [0.0, 1.0], "random_erasing": [0.0, 0.25]}


@dataclass
class Dim:
    """One searched key: a float or int range (log or not), or a list of choices."""

    key: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: list | None = None

    def suggest(self, trial) -> Any:
        if self.choices is not None:
            return trial.suggest_categorical(self.key, self.choices)
        if isinstance(self.low, int) and isinstance(self.high, int) and not isinstance(self.low, bool):
            return trial.suggest_int(self.key, self.low, self.high, log=self.log)
        return trial.suggest_float(self.key, float(self.low), float(self.high), log=self.log)

    def to_dict(self) -> Any:
        return list(self.choices) if self.choices is not None else {"low": self.low, "high": self.high, "log": self.log}


def config_keys() -> set[str]:
    return {f.name for f in fields(TrainConfig)}


def default_space(base: TrainConfig, pinned: set[str]) -> dict[str, Dim]:
    """The default dimensions for a base configuration, leaving out what the user pinned and what TrainConfig lacks."""
    keys, space = config_keys(), {}
    if "lr" not in pinned:
        space["lr_scale"] = Dim("lr_scale", *LR_SCALE, log=True)
    if "weight_decay" not in pinned:
        wd = base.weight_decay
        space["weight_decay"] = Dim("weight_decay", wd / 10, wd * 10, log=True) if wd > 0 else Dim("weight_decay", 1e-5, 1e-2, log=True)
    for key, (low, high) in FLOAT_RANGES.items():
        if key in keys and key not in pinned:
            space[key] = Dim(key, low, high)
    for key, values in SWITCHES.items():
        if key in keys and key not in pinned:
            space[key] = Dim(key, choices=list(values))
    if "augment" not in pinned:
        space["augment"] = Dim("augment", choices=list(CHOICES["augment"]))
    if "ema" in keys and "ema" not in pinned:
        space["ema"] = Dim("ema", choices=[False, True])
    from_scratch = not base.transfer and base.recipe == "fast" and (base.model is None or base.model in FAMILY)
    if from_scratch and "model" not in pinned and not base.planned:  # with a budget, the width is the planner's
        space["model"] = Dim("model", choices=list(FAMILY))
    return space


def parse_dim(key: str, value: Any, source: str) -> Dim:
    """A YAML entry as a Dim; every mistake is one UserError line naming the key and the file."""
    fix = f"write {key}: {{low: 0.0, high: 0.3}}, {key}: {{low: 1e-4, high: 0.1, log: true}} or {key}: [a, b]"
    if isinstance(value, list):
        if not value:
            raise UserError(f"search key '{key}' in {source} lists no values", fix)
        allowed = CHOICES.get(key)
        bad = [v for v in value if allowed is not None and str(v) not in allowed]
        if bad:
            raise UserError(f"search key '{key}' in {source}: {bad[0]!r} is not one of {', '.join(allowed)}",
                            f"list values among {', '.join(allowed)}")
        if key in config_keys():  # each value must be one the config takes
            for v in value:
                TrainConfig.from_dict({key: v}, source=f"{source}, search key '{key}'")
        return Dim(key, choices=list(value))
    if not isinstance(value, dict) or set(value) - {"low", "high", "log"} or not {"low", "high"} <= set(value):
        raise UserError(f"search key '{key}' in {source} must be a range (low, high, optional log) or a list", fix)
    low, high, log = value["low"], value["high"], value.get("log", False)
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high))
    if not numbers or not isinstance(log, bool) or not low < high or (log and low <= 0):
        raise UserError(f"search key '{key}' in {source} has a bad range: low {low!r}, high {high!r}, log {log!r}",
                        "low < high, both numbers, and low > 0 with log: true")
    hint = get_type_hints(TrainConfig).get(key)
    if key in config_keys() and float not in getattr(hint, "__args__", (hint,)) and int not in getattr(hint, "__args__", (hint,)):
        raise UserError(f"search key '{key}' in {source} takes a list of values, not a range", f"write {key}: [a, b]")
    if key in config_keys():  # the ends must be values the config takes (label_smoothing below 1, ...)
        for end in (low, high):
            TrainConfig.from_dict({key: end}, source=f"{source}, search key '{key}'")
    return Dim(key, low, high, log)


def build_space(base: TrainConfig, pinned: set[str], search: dict | None, source: str = "the search space") -> dict[str, Dim]:
    """The default space, changed by the user's YAML mapping; pinned keys are removed whatever it says."""
    space = default_space(base, pinned)
    if search is None:
        return space
    if not isinstance(search, dict):
        raise UserError(f"the search space in {source} must be a mapping of keys to ranges or lists",
                        "write one 'key: {low: ..., high: ...}' or 'key: [a, b]' a line")
    known = config_keys() | {"lr_scale"}
    for key, value in search.items():
        if key not in known:
            import difflib

            close = difflib.get_close_matches(str(key), known, n=1)
            raise UserError(f"unknown search key '{key}' in {source}",
                            f"did you mean '{close[0]}'?" if close else "name TrainConfig keys, or lr_scale")
        if key in ("lr", "lr_scale"):
            space.pop("lr", None), space.pop("lr_scale", None)  # one of the two spellings of the rate
        if value is None:
            space.pop(key, None)
            continue
        space[key] = parse_dim(key, value, source)
    return {k: v for k, v in space.items() if k not in pinned and not (k == "lr_scale" and "lr" in pinned)}


def read_search(path: str, section: bool = False) -> dict | None:
    """The mapping of a search YAML file, or the `search:` section of a --config file (None when it has none)."""
    data = read_yaml(path, "config file" if section else "search file",
                     "pass a YAML file of 'key: range' lines to --search") or {}
    if section:
        return data.get("search") if isinstance(data, dict) else None
    return data.get("search", data) if isinstance(data, dict) else data
