"""Reading a run folder's files: the run report and the comparison are built from these alone."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import yaml

from ..errors import UserError
from ..evaluate.cells import number


def read_json(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise UserError(f"{path} is not valid JSON ({e.msg})", "rerun `imagefit report` or the training run") from None
    return data if isinstance(data, dict) else {}


def read_yaml(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError:
        raise UserError(f"{path} is not valid YAML", "restore it from the run's original config") from None
    return data if isinstance(data, dict) else {}


def read_csv(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def read_history(path: Path) -> list[dict]:
    """history.csv with numbers as floats and empty cells (no validation split) as None."""
    rows = []
    for row in read_csv(path):
        parsed = {k: number(v) for k, v in row.items()}
        if parsed.get("epoch") is not None:
            parsed["epoch"] = int(parsed["epoch"])
            rows.append(parsed)
    return rows
