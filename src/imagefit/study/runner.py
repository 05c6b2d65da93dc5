"""Run a study: every run into `<runs_dir>/<study>/<run>[-seed<k>]/`, then the comparison beside them.

A study can be run again at any time and does only what is missing:

- a run whose folder holds a finished metrics.json with the same configuration is skipped;
- an interrupted run (Ctrl-C, or a kill that left a checkpoint) is resumed from its last checkpoint;
- a run whose configuration changed, or any run with `rerun=True`, is trained afresh in its folder.

The study writes `study.yaml` (the resolved study: `imagefit study runs/<study>/study.yaml` repeats it)
and, after the runs, `comparison.md/.html/.csv/.png` into the study folder.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .. import atomic
from ..config import TrainConfig
from ..config_values import rename_legacy_keys
from ..errors import UserError
from ..report.compare import Comparison, compare
from ..report.runs import BOOKKEEPING, config_differences
from ..train.run_lock import LOCK_FILE, run_folder_lock
from .spec import BUILTIN, STUDY_OWNED, StudySpec, load_study

log = logging.getLogger("imagefit")

# settings resolved when a run starts (None in the study means "choose"): compared only when set
RESOLVED_AT_RUN = ("image_size", "lr", "epochs", "batch_size", "tta", "model", "early_size",
                   "transfer_strategy", "trainable_blocks")  # None: the run's choice


@dataclass
class StudyRun:
    name: str  # the folder name: the run's name, plus -seed<k> with several seeds
    run: str  # the run's name in the study
    config: TrainConfig
    dir: Path
    status: str = "pending"  # trained, resumed, skipped, interrupted
    metrics: dict = field(default_factory=dict)


@dataclass
class Study:
    """A study that ran (or partly ran, when `interrupted`)."""

    name: str
    dir: Path
    spec: StudySpec
    runs: list[StudyRun]
    comparison: Comparison | None = None
    interrupted: bool = False

    def __repr__(self) -> str:
        return f"Study({str(self.dir)!r}, runs={[r.name for r in self.runs]})"


def resolve_spec(spec: StudySpec | str | Path, overrides: dict[str, Any] | None = None) -> StudySpec:
    """A StudySpec from a spec, a built-in study's name ('seed') or a YAML path."""
    if isinstance(spec, StudySpec):
        return spec
    text = str(spec)
    if text in BUILTIN and not Path(text).is_file():
        dataset = (overrides or {}).get("dataset", "digits")
        return BUILTIN[text](dataset=dataset)
    return load_study(text)


def plan(spec: StudySpec, overrides: dict[str, Any] | None = None, seeds: int | None = None) -> tuple[Path, list[StudyRun]]:
    """Every run's folder and configuration, checked before anything trains."""
    overrides = dict(overrides or {})
    spec.name = overrides.pop("name", None) or spec.name
    runs_dir = overrides.pop("runs_dir", None) or spec.defaults.get("runs_dir") or TrainConfig.runs_dir
    if seeds is not None:
        spec.seeds = seeds
    spec.validate(overrides)
    study_dir = Path(runs_dir).expanduser() / spec.name
    planned = []
    for run in spec.runs:
        base = spec.config(run, overrides)
        for k in range(spec.seeds):
            name = run.name if spec.seeds == 1 else f"{run.name}-seed{base.seed + k}"
            cfg = base.replace(seed=base.seed + k, name=name, runs_dir=str(study_dir))
            planned.append(StudyRun(name, run.name, cfg, study_dir / name))
    return study_dir, planned


def _resolved_spec(spec: StudySpec, overrides: dict[str, Any], typed: TrainConfig) -> dict:
    """study.yaml: the study as it ran, command-line overrides folded into its defaults (typed, as they ran)."""
    data = spec.to_dict()
    extra = {k: getattr(typed, k) for k in overrides if k not in STUDY_OWNED}
    data["defaults"] = {**data["defaults"], **extra}
    data["runs"] = [{k: v for k, v in r.items() if k not in extra} for r in data["runs"]]
    return data


def differences(saved: dict, wanted: TrainConfig) -> dict[str, tuple]:
    """The settings in which a run folder's config.yaml differs from what the study asks for."""
    if wanted.recipe == "auto" and saved.get("recipe") != "auto":  # the run decided its start: compare with that
        wanted = wanted.decide_start(bool(saved.get("pretrained")))
    want = wanted.to_dict()
    defaults = TrainConfig().to_dict()
    saved = rename_legacy_keys(saved, "a saved config.yaml", note=False)
    saved = {**{k: v for k, v in defaults.items() if k not in saved}, **saved}
    for key in RESOLVED_AT_RUN:
        if want.get(key) is None:
            want[key] = saved.get(key)
    if wanted.lr is None:
        want["lr"] = wanted.learning_rate
    return config_differences(saved, want, ignore=BOOKKEEPING)


def _read(path: Path, kind: str) -> dict:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text()) if kind == "json" else yaml.safe_load(path.read_text())
    except (json.JSONDecodeError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}


def clear_run_folder(run_dir: Path) -> None:
    """Remove a run folder the study is about to redo; never a folder that is not an imagefit run."""
    if not run_dir.exists():
        return
    own = {"config.yaml", LOCK_FILE}  # a run that crashed before its config was written leaves the lock file
    if not run_dir.is_dir() or (any(p.name not in own for p in run_dir.iterdir()) and not (run_dir / "config.yaml").is_file()):
        raise UserError(f"{run_dir} exists and is not an imagefit run folder", "move it out of the study folder")
    with run_folder_lock(run_dir):  # never delete a folder another process is still writing
        shutil.rmtree(run_dir)


def _describe(diffs: dict[str, tuple]) -> str:
    shown = [f"{k} {a} → {b}" for k, (a, b) in list(diffs.items())[:3]]
    return ", ".join(shown) + (f" and {len(diffs) - 3} more" if len(diffs) > 3 else "")


def run_one(r: StudyRun, rerun: bool) -> StudyRun:
    from ..train import resume, train

    if rerun:
        clear_run_folder(r.dir)
    if r.dir.exists():
        saved = _read(r.dir / "config.yaml", "yaml")
        metrics = _read(r.dir / "metrics.json", "json")
        diffs = differences(saved, r.config) if saved else {"config.yaml": ("missing", "")}
        if diffs:
            log.info("study: %s: the configuration changed (%s); training it again", r.name, _describe(diffs))
            clear_run_folder(r.dir)
        elif metrics and not metrics.get("interrupted"):
            log.info("study: %s already finished in %s (test accuracy %.4f); skipped, --rerun trains it again",
                     r.name, r.dir, metrics.get("test_accuracy", float("nan")))
            r.status, r.metrics = "skipped", metrics
            return r
        elif (r.dir / "checkpoints" / "last.ckpt").is_file():
            log.info("study: %s was interrupted; resuming it from %s", r.name, r.dir / "checkpoints" / "last.ckpt")
            run = resume(r.dir, progress=r.config.progress)
            r.status, r.metrics = "resumed", run.metrics
            if run.metrics.get("interrupted"):
                r.status = "interrupted"
            return r
        else:
            log.info("study: %s has no checkpoint to resume from; training it again", r.name)
            clear_run_folder(r.dir)
    log.info("study: training %s", r.name)
    run = train(r.config)
    if run.dir.resolve() != r.dir.resolve():  # cannot happen while the folder was cleared, but never lose a run
        raise RuntimeError(f"run went to {run.dir} instead of {r.dir}")
    r.status, r.metrics = ("interrupted" if run.metrics.get("interrupted") else "trained"), run.metrics
    return r


def distributed_worker_run(planned: list[StudyRun]) -> Study | None:
    """In a process that Lightning's DDP launcher started (rank > 0) with the study's own command line: train
    only the run rank 0 is training (its folder is in IMAGEFIT_RUN_DIR), then stop. Planning, skipping and
    clearing are rank 0's: a worker that ran the whole study would delete rank 0's fresh folder (no checkpoint
    yet) and carry the first run's folder into the next runs."""
    from ..train.distributed import RUN_DIR_ENV, launched_rank
    from ..train.run import train

    if launched_rank() == 0 or not os.environ.get(RUN_DIR_ENV):
        return None
    target = Path(os.environ[RUN_DIR_ENV]).resolve()
    mine = [r for r in planned if r.dir.resolve() == target]
    if not mine:
        raise RuntimeError(f"rank {launched_rank()}: {target} is not a run of this study")
    train(mine[0].config)
    return Study(mine[0].name, target.parent, None, mine)


def study(spec: StudySpec | str | Path, *, seeds: int | None = None, rerun: bool = False,
          out: str | Path | None = None, reference: str | None = None, **overrides: Any) -> Study:
    """Run a study (a spec, a YAML path, or 'seed' for the built-in one) and compare its runs.

    Keyword arguments are TrainConfig keys applied to every run (`name` names the study, `runs_dir` is
    where its folder goes). Returns the Study, with the comparison's files in `study.comparison`.
    """
    spec = resolve_spec(spec, overrides)
    study_dir, planned = plan(spec, overrides, seeds)
    worker = distributed_worker_run(planned)
    if worker is not None:
        return worker
    reference = reference or spec.reference
    if reference is not None and reference not in {r.run for r in planned} | {r.name for r in planned}:
        raise UserError(f"reference run '{reference}' is not in study {spec.name}",
                        f"use one of: {', '.join(r.name for r in spec.runs)}")
    study_dir.mkdir(parents=True, exist_ok=True)
    atomic.write_text(study_dir / "study.yaml",
                      "# imagefit study: `imagefit study <this file>` runs what is missing and compares again\n"
                      + yaml.safe_dump(_resolved_spec(spec, overrides, planned[0].config), sort_keys=False))
    log.info("study %s: %d runs in %s", spec.name, len(planned), study_dir)
    result = Study(spec.name, study_dir, spec, planned)
    for r in planned:
        run_one(r, rerun)
        if r.status == "interrupted":
            result.interrupted = True
            log.info("study: %s was interrupted; run the same command again to resume it", r.name)
            break
    done = [r.dir for r in planned if r.metrics]
    if done:
        notes = [spec.description] if spec.description else []
        if result.interrupted:
            notes.append(f"The study was interrupted: {len(done)} of {len(planned)} runs are compared here.")
        result.comparison = compare(done, out=out or study_dir,
                                    reference=reference if any(reference in (r.run, r.name) for r in planned
                                                               if r.metrics) else None,
                                    title=f"Study {spec.name}", notes=notes)
    return result
