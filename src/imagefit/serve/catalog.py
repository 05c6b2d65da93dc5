"""What `imagefit serve` shows of a runs folder, and the one gate every path taken from a URL goes through.

A run is a folder with metrics.json and config.yaml (what `imagefit train` writes, at any depth: a study's
runs sit in runs/<study>/<run>/); a study, or any comparison, is a folder with comparison.html. The walk
never follows a symbolic link and never enters a run's own subfolders (checkpoints, logs, wandb) except its
evaluations. Everything here reads files only: nothing is loaded or written.
"""
from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path, PurePosixPath
from urllib.parse import quote

from ..errors import UserError
from ..report.run_files import read_json
from ..report.runs import is_evaluation

MAX_DEPTH = 4  # runs/<study>/<run> is 2; deeper folders are not runs imagefit writes
SKIPPED = {"checkpoints", "logs", "wandb", "mlruns", "evaluations", "__pycache__"}


class NotFound(Exception):
    """A URL path that names nothing servable: outside the runs folder, through a link out, or absent."""


def inside(root: Path, rel: str) -> Path:
    """root/rel, when it lies inside root (resolved: every symbolic link followed); else NotFound. `root` must be
    resolved. A `..`, an absolute path, a backslash or a NUL never gets as far as the file system."""
    if not rel or "\x00" in rel or "\\" in rel or rel.startswith("/"):
        raise NotFound(rel)
    parts = PurePosixPath(rel).parts
    if ".." in parts:
        raise NotFound(rel)
    try:
        path = root.joinpath(*parts).resolve()
    except (OSError, RuntimeError):  # a symlink loop
        raise NotFound(rel) from None
    if path != root and root not in path.parents:
        raise NotFound(rel)
    return path


def is_run(folder: Path) -> bool:
    return (folder / "metrics.json").is_file() and (folder / "config.yaml").is_file()


def run_folder(root: Path, name: str) -> Path:
    """The run folder a URL names, inside root, with a model to predict with; else NotFound."""
    folder = inside(root, name)
    if not (is_run(folder) and (folder / "model.safetensors").is_file()):
        raise NotFound(name)
    return folder


def file_url(root: Path, path: Path) -> str | None:
    """The /files/ URL of a file inside root, when it exists."""
    return "/files/" + quote(path.relative_to(root).as_posix()) if path.is_file() else None


def _date(path: Path) -> str:
    return datetime.fromtimestamp(path.stat().st_mtime).astimezone().isoformat(timespec="seconds")


def _evaluations(root: Path, folder: Path) -> list[dict]:
    found = []
    for sub in sorted((folder / "evaluations").glob("*/metrics.json")):
        if not sub.is_symlink() and not sub.parent.is_symlink():
            metrics = _metrics(sub)
            found.append({"name": sub.parent.name, "accuracy": metrics.get("test_accuracy"),
                          "report": file_url(root, sub.parent / "report.html")})
    return found


def _metrics(path: Path) -> dict:
    try:
        return read_json(path)
    except UserError:  # a half-written or hand-edited file: the run is listed with what is known
        return {}


def run_entry(root: Path, folder: Path, metrics: dict) -> dict:
    name = folder.relative_to(root).as_posix()
    return {"name": name, "dataset": metrics.get("dataset"), "model": metrics.get("model"),
            "test_accuracy": metrics.get("test_accuracy"), "classes": metrics.get("num_classes"),
            "interrupted": bool(metrics.get("interrupted")), "date": _date(folder / "metrics.json"),
            "report": file_url(root, folder / "report.html"),
            "predicts": (folder / "model.safetensors").is_file(), "evaluations": _evaluations(root, folder),
            "predict_url": "/api/runs/" + quote(name) + "/predict"}


def study_entry(root: Path, folder: Path, runs: int) -> dict:
    page = folder / "comparison.html"
    return {"name": folder.relative_to(root).as_posix() if folder != root else ".", "runs": runs,
            "date": _date(page), "comparison": file_url(root, page)}


def scan(root: Path) -> dict:
    """{"runs": [...], "studies": [...]}: every run folder and comparison under root, newest first."""
    runs, studies = [], []
    for dirpath, dirnames, filenames in os.walk(root):  # followlinks=False: a link out is never listed
        folder = Path(dirpath)
        depth = len(folder.relative_to(root).parts)
        if "comparison.html" in filenames:
            studies.append(folder)
        if "metrics.json" in filenames and "config.yaml" in filenames:
            metrics = _metrics(folder / "metrics.json")
            if not is_evaluation(metrics):
                runs.append(run_entry(root, folder, metrics))
                dirnames[:] = []  # a run's subfolders are its own files (evaluations: listed with it)
                continue
        dirnames[:] = sorted(d for d in dirnames if d not in SKIPPED and not d.startswith(".")) \
            if depth < MAX_DEPTH else []
    listed = [{**s, "runs": sum(1 for r in runs if r["name"].startswith(s["name"] + "/") or s["name"] == ".")}
              for s in (study_entry(root, f, 0) for f in studies)]
    runs.sort(key=lambda r: r["date"], reverse=True)
    listed.sort(key=lambda s: s["date"], reverse=True)
    return {"runs": runs, "studies": listed}
