"""Config values as files and command lines give them: the allowed choices, YAML files, the sources a saved
config.yaml names in its comments, old key spellings, and each value's type checked and converted."""
from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any, get_type_hints

import yaml

from .errors import UserError

log = logging.getLogger("imagefit")

CHOICES = {
    "augment": ("none", "basic", "light", "trivial", "randaugment"),
    "flip": ("random", "alternating"),
    "optimizer": ("sgd", "adam", "adamw", "muon"),
    "scheduler": ("none", "cosine", "onecycle", "triangle"),
    "precision": ("auto", "32", "bf16-mixed", "16-mixed"),
    "loader": ("auto", "memory", "stream"),
    "monitor": ("val_loss", "val_acc", "val_map"),
    "task": ("auto", "single", "multilabel"),
    "threshold_policy": ("f1", "fixed"),
    "bn_statistics": ("auto", "keep", "update"),
    "transfer_strategy": ("fine-tune", "partial", "linear-probe", "freeze-unfreeze"),
    "strategy": ("auto", "ddp", "ddp_spawn", "ddp_find_unused_parameters_true", "fsdp"),
    "tta": ("none", "flip", "flip-translate"),
    "recipe": ("none", "fast", "auto"),
    "class_weights": ("none", "balanced"),
    "sampler": ("shuffle", "balanced"),
}
LIST_CHOICES = {"logger": ("csv", "tensorboard", "mlflow", "wandb")}  # keys that take several values


def read_yaml(path: str | Path, what: str, fix_missing: str) -> Any:
    """A YAML file's data; a missing file or bad YAML is one UserError line naming `what` it is."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{what} not found: {path}", fix_missing)
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise UserError(f"{what} {path} is not valid YAML: {str(e).splitlines()[0]}", "fix its syntax") from None


SOURCES = ("user", "tune", "recipe", "planner", "default")  # who set a value (tune: imagefit tune's search)
_SOURCE_COMMENT = re.compile(r"^([a-z_]+):.*  # (" + "|".join(SOURCES) + r")$")


def read_sources(path: Path) -> dict[str, str]:
    """The sources a run's config.yaml names in its line comments (its other keys are defaults); {} for a file
    written by hand, whose every key is the user's."""
    lines = path.read_text().splitlines()
    if not (lines and lines[0].startswith("# imagefit run configuration")):
        return {}
    named = {m[1]: m[2] for line in lines if (m := _SOURCE_COMMENT.match(line))}
    keys = [line.split(":", 1)[0] for line in lines if line[:1].isalpha() and ":" in line]
    return {k: named.get(k, "default") for k in keys}


def transfer_strategy_of(config: dict[str, Any]) -> str | None:
    """The transfer strategy in a saved config.yaml or metrics.json, old ('strategy') or new spelling."""
    if config.get("transfer_strategy"):
        return config["transfer_strategy"]
    old = config.get("strategy")
    return old if old in CHOICES["transfer_strategy"] else None


def rename_legacy_keys(values: dict[str, Any], source: str, note: bool = True) -> dict[str, Any]:
    """'strategy: linear-probe' from before the rename (config files, study YAML, old run folders) is the
    transfer strategy: read it as transfer_strategy, with a note, so old files keep working."""
    if values.get("strategy") in CHOICES["transfer_strategy"]:
        values = dict(values)
        value = values.pop("strategy")
        values.setdefault("transfer_strategy", value)
        if note:
            log.info("note: 'strategy: %s' in %s is read as transfer_strategy (now 'strategy' is Lightning's "
                     "distributed strategy: auto, ddp, ...)", value, source)
    return values


TYPE_WORDS = {int: "whole number", float: "number", str: "text", bool: "true or false", list: "list"}


def type_words(hint: Any) -> str:
    kinds = [k for k in getattr(hint, "__args__", (hint,)) if k is not type(None)]
    return " or ".join(TYPE_WORDS.get(getattr(k, "__origin__", k), getattr(k, "__name__", str(k))) for k in kinds)


def coerce(cls: type, key: str, value: Any, source: str) -> Any:
    """Accept what YAML or a command line gives ('3' for an int, '1e-3' for a float) and check the type."""
    hint = get_type_hints(cls)[key]
    if value is None:
        if type(None) in getattr(hint, "__args__", ()):
            return None
        raise UserError(f"config key '{key}' in {source} has no value", f"give it a {type_words(hint)}, or remove the line")
    if getattr(hint, "__origin__", None) is list:  # a YAML list, or 'a,b' from a command line
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)):
            raise UserError(f"config key '{key}' in {source} must be a list, got {value!r}", f"write {key}: [a, b] or a,b")
        return [str(v).strip() for v in items if str(v).strip() not in ("", "none")]
    kinds = getattr(hint, "__args__", (hint,))
    if isinstance(value, bool) and bool not in kinds:
        raise UserError(f"config key '{key}' in {source} must be a {type_words(hint)}, got {value!r}", f"give '{key}' a value of that type")
    for kind in kinds:
        if kind is type(None):
            continue
        if kind is bool:
            if isinstance(value, bool):
                return value
            if str(value).lower() in ("true", "yes", "1", "on", "false", "no", "0", "off"):
                return str(value).lower() in ("true", "yes", "1", "on")
            continue
        try:
            if kind is int and isinstance(value, float) and not value.is_integer():
                continue
            return kind(value)
        except (TypeError, ValueError):
            continue
    raise UserError(f"config key '{key}' in {source} must be a {type_words(hint)}, got {value!r}", f"give '{key}' a value of that type")
