"""`imagefit tune`: a budgeted hyperparameter search with Optuna, then the best setting retrained.

Optuna does the search (TPE sampler seeded with the run's seed, successive-halving pruner on validation
accuracy, `timeout=`); each trial is an ordinary run, and the tune folder is a study that `imagefit compare` reads:

    runs/<tune>/trials/trial-000/ ...  every trial, a whole run folder (a pruned one stops early, still evaluated)
    runs/<tune>/best/                  the best setting retrained with the budget left
    runs/<tune>/optuna.db              Optuna's RDB storage (SQLite): trials, params, values, states
    runs/<tune>/tune.yaml              what was asked, the space, the reference batch and rate, the best params
    runs/<tune>/comparison.*           the trials and the best run compared, with importance.png and history.png

**Budget.** Half of `time_budget` goes to the search, each trial an ordinary run with a short budget of its own
(the search half over --trials, else over 10, at least 20 s), with no test pass (ranked on validation: the
search never reads test, and the seconds go to training); Optuna starts no trial that would end past the
search half. The final run gets what is left, less a margin for the comparison written after it, and, as every
budgeted run, ends within 95-100% of its own budget, so the command ends within 95-100% of the whole. With
--epochs pinned the runs are not budgeted (their epochs decide): the budget then only bounds the search.

**Same meaning in trials and final run.** The planner picks the batch for the budget (smaller data, smaller
batch), and the fast recipe's rate follows the batch. So the first trial is the run itself, untuned (it samples
nothing: the recipe and the planner choose), and its batch, its rate (the reference rate) and its start
(from scratch or ImageNet transfer) are pinned for every later trial and for the final run; the rate is searched
as a multiple of the reference rate. The planner still chooses what is not tuned (epochs, network width, TTA) for each budget.
From ImageNet weights the first trial's transfer plan is pinned for the trials too (not the final run), and the
image augmentations leave the search when that plan trains on cached activations (reference_of, trial_options).
Tuned values are recorded with the source `tune` in each run's config.yaml.

**Resume.** Run the same command again (after Ctrl-C or kill -9): finished trials (complete or pruned) stay, a
trial left running by a dead process is marked failed and its folder removed, the seconds spent before count
(kept in the Optuna study's user attributes after each trial, plus a killed trial's time up to its last file),
and an interrupted final run is resumed from its checkpoint.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .. import atomic
from ..config import TrainConfig
from ..config_values import read_sources, rename_legacy_keys
from ..data.sources import dataset_slug
from ..errors import UserError
from .search_space import Dim, build_space, read_search
from .trial_config import reference_of, run_config, trial_options
from .trial_budget import (DEFAULT_TRIALS, MIN_TRIAL_SECONDS, REPORT_SECONDS, REPORT_SECONDS_PER_RUN, SEARCH_SHARE,
                           cold_start, label_issues_option, labelled_images, short_trial_note)

log = logging.getLogger("imagefit")

STARTUP_TRIALS = 4  # random trials before TPE models the results (Optuna's default 10 would be all of them)
OWNED = ("name", "runs_dir", "time_budget")  # the tune's, not the runs'


@dataclass
class Tuned:
    """A tune that ran: its folder, the best trial's params, the final run and the comparison."""

    dir: Path
    best_params: dict
    best_value: float | None
    best_run: Any  # train.run.Run, or None when no budget was left to retrain
    comparison: Any
    trials: list  # optuna FrozenTrials

    def __repr__(self) -> str:
        return f"Tuned({str(self.dir)!r}, best_params={self.best_params})"


class ReportToTrial:
    """Lightning callback: each validation accuracy goes to the trial; when the pruner says so the fit stops after
    this epoch (the run still evaluates and writes its folder, then the objective raises TrialPruned).
    optuna_integration's PyTorchLightningPruningCallback is not installed with optuna 5 and raises inside fit."""

    def __new__(cls, trial):
        from lightning.pytorch.callbacks import Callback

        class _Report(Callback):
            def __init__(self, trial):
                self.trial, self.pruned = trial, False

            def on_validation_epoch_end(self, trainer, pl_module):
                value = trainer.callback_metrics.get("val_acc")
                if trainer.sanity_checking or value is None or not trainer.is_global_zero:
                    return
                self.trial.report(float(value), trainer.current_epoch)
                if self.trial.should_prune():
                    self.pruned, trainer.should_stop = True, True

        return _Report(trial)


def _optuna():
    try:
        import optuna
    except ImportError:
        raise UserError("imagefit tune needs Optuna", "pip install 'imagefit[tune]'") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def user_options(config: str | Path | None, options: dict) -> tuple[dict, dict, dict | None]:
    """The user's keys (a --config file's, then the options), who set them, and a `search:` section."""
    values, sources, search = {}, {}, None
    if config is not None:
        path = Path(config)
        search = read_search(str(path), section=True)
        values = yaml.safe_load(path.read_text()) or {}
        values.pop("search", None)
        sources = {k: v for k, v in read_sources(path).items() if k in values and k not in options}
    values = rename_legacy_keys({**values, **options}, "the tune's options")
    return values, sources, search


def tune(config: str | Path | None = None, *, time_budget: str | float | None = None, trials: int | None = None,
         search: dict | str | Path | None = None, name: str | None = None, runs_dir: str | Path | None = None,
         started: float | None = None, echo=None, **options: Any) -> Tuned:
    """Search the unpinned keys with Optuna in short runs, retrain the best with the budget left, compare.

    `config`: a YAML file of TrainConfig keys (optionally a `search:` section); `options`: TrainConfig keys, pinned
    for every trial; `search`: a mapping or YAML file that changes the space (search_space.py); `echo`: called with
    one line per finished trial. Run it again with the same arguments to resume."""
    started = time.perf_counter() if started is None else started
    if time_budget is None and trials is None:
        raise UserError("imagefit tune needs a time budget or a number of trials", "pass --time-budget 30m or --trials 20")
    optuna = _optuna()
    values, sources, section = user_options(config, options)
    search = read_search(str(search)) if isinstance(search, (str, Path)) else (search if search is not None else section)
    budget = TrainConfig.from_dict({"time_budget": time_budget}).budget_seconds if time_budget else None
    if trials is not None and trials < 1:
        raise UserError(f"--trials must be at least 1, got {trials}", "pass --trials 10")
    given = {k: v for k, v in values.items() if k not in OWNED}
    pinned = set(given)
    budgeted = budget is not None and given.get("epochs") is None
    trial_seconds = max(MIN_TRIAL_SECONDS, budget * SEARCH_SHARE / (trials or DEFAULT_TRIALS)) if budgeted else None
    base = TrainConfig.from_dict({**given, **({"time_budget": f"{trial_seconds:.0f}s"} if budgeted else {})},
                                 source="the tune's options", sources=sources)
    space = build_space(base, pinned, search, "the search space")
    if base.val_fraction <= 0:
        raise UserError("tune ranks trials by validation accuracy, and val_fraction is 0", "pass --val-fraction 0.1")
    name = name or values.get("name") or f"tune-{dataset_slug(base.dataset)}"
    tune_dir = Path(runs_dir or values.get("runs_dir") or TrainConfig.runs_dir).expanduser() / name
    tune_dir.mkdir(parents=True, exist_ok=True)
    from ..train.run_lock import run_folder_lock

    with run_folder_lock(tune_dir):
        asked = _asked(base, given, space, time_budget, trials)
        _check_same(tune_dir, asked)
        return _tune(optuna, tune_dir, base, given, sources, space, asked, budget, trials, trial_seconds, started,
                     echo or (lambda line: None))


def _asked(base: TrainConfig, given: dict, space: dict[str, Dim], time_budget, trials) -> dict:
    return {"time_budget": None if time_budget is None else str(time_budget), "trials": trials,
            "options": {k: getattr(base, k) for k in sorted(given)}, "space": {k: d.to_dict() for k, d in space.items()}}


def _check_same(tune_dir: Path, asked: dict) -> None:
    path = tune_dir / "tune.yaml"
    before = yaml.safe_load(path.read_text()) if path.is_file() else None
    if before and {k: before.get(k) for k in ("options", "space")} != {k: asked[k] for k in ("options", "space")}:
        raise UserError(f"{tune_dir} holds a tune with other options or another search space",
                        "run it with the same ones to resume it, or pass --name for a new tune")


def _tune(optuna, tune_dir, base, given, sources, space, asked, budget, trials, trial_seconds, started, echo) -> Tuned:
    from optuna.trial import TrialState

    study = optuna.create_study(study_name="tune", storage=f"sqlite:///{(tune_dir / 'optuna.db').resolve()}",
                                load_if_exists=True, direction="maximize",
                                sampler=optuna.samplers.TPESampler(seed=base.seed, n_startup_trials=STARTUP_TRIALS),
                                pruner=optuna.pruners.SuccessiveHalvingPruner())
    lost = 0.0
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):  # its process died (kill -9)
        folder = _trial_dir(tune_dir, t.number)
        if folder.exists() and t.datetime_start:
            last = max((p.stat().st_mtime for p in folder.rglob("*")), default=t.datetime_start.timestamp())
            lost += max(0.0, last - t.datetime_start.timestamp())
        study.tell(t.number, state=TrialState.FAIL)
        log.info("tune: trial %d was left running by a process that stopped; marked failed", t.number)
        _remove(folder)
    for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,)):  # Ctrl-C'ed or crashed: never reused
        _remove(_trial_dir(tune_dir, t.number))
    before = float(study.user_attrs.get("spent_seconds", 0.0)) + lost
    clock = _Clock(study, before, started)
    clock.save()
    _write_yaml(tune_dir, asked, study)
    objective = _Objective(tune_dir, base, given, sources, space, study, trial_seconds, clock)
    finished = [t for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    left = None if trials is None else max(0, trials - len(finished))
    timeout = None
    if budget is not None:  # start no trial that would end past the search share (Optuna checks between trials)
        timeout = max(0.0, budget * SEARCH_SHARE - clock.spent() - (trial_seconds or 0.0))

    def after_trial(study, trial) -> None:
        clock.save()
        echo(_trial_line(trial))
        if budget is not None and clock.spent() + _expected_trial(study, trial_seconds) > budget * SEARCH_SHARE:
            study.stop()  # the next trial would not end within the search share

    if left != 0 and (timeout is None or timeout > 0):
        try:
            study.optimize(objective, n_trials=left, timeout=timeout, catch=(), gc_after_trial=True,
                           callbacks=[after_trial])
        finally:  # Ctrl-C too: the seconds spent count when the tune resumes
            clock.save()
    else:
        log.info("tune: the search is done (%d trials)", len(finished))
    return _finish(tune_dir, study, base, given, sources, space, asked, budget, clock, echo)


def _expected_trial(study, trial_seconds: float | None) -> float:
    """A trial's expected length: its budget, or (pinned epochs) the mean of the finished trials' wall times."""
    from optuna.trial import TrialState

    times = [(t.datetime_complete - t.datetime_start).total_seconds() for t in study.get_trials(
        deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)) if t.datetime_complete and t.datetime_start]
    return max(trial_seconds or 0.0, sum(times) / len(times) if times else 0.0)


class _Clock:
    """Seconds of the budget spent: those of the sessions before a resume, plus this one's."""

    def __init__(self, study, before: float, started: float):
        self.study, self.before, self.started = study, before, started

    def spent(self) -> float:
        return self.before + time.perf_counter() - self.started

    def save(self) -> None:
        self.study.set_user_attr("spent_seconds", self.spent())


class _Objective:
    def __init__(self, tune_dir, base, given, sources, space, study, trial_seconds, clock):
        self.tune_dir, self.base, self.given, self.sources, self.space = tune_dir, base, given, sources, space
        self.study, self.trial_seconds, self.clock = study, trial_seconds, clock

    def __call__(self, trial) -> float:
        import optuna

        from ..train.run import train

        # the reference trial (the first to finish) samples nothing: it is `imagefit train` with the user's options,
        # its recipe's and planner's choices untouched (recipe auto decides its start only once the data is read)
        ref = self.study.user_attrs.get("reference")
        reference = not ref
        inert = set(ref.get("inert", ())) if ref else set()
        params = {} if reference else {k: d.suggest(trial) for k, d in self.space.items() if k not in inert}
        folder = _trial_dir(self.tune_dir, trial.number)
        _remove(folder)
        budget = {"time_budget": f"{self.trial_seconds:.0f}s"} if self.trial_seconds else {}
        cfg = run_config(self.given, self.sources, params, ref, by_tune=trial_options(self.given, ref),
                         name=folder.name, runs_dir=str(folder.parent), **budget)
        report = ReportToTrial(trial)
        run = train(cfg, callbacks=[report])
        self.clock.save()
        if reference and cold_start(run.metrics, self.trial_seconds) and not self.study.user_attrs.get("cold"):
            # the first trial decoded the images or cached the trunk's activations for every later trial: its
            # score says little of the untuned setting, so that setting runs once more, warm
            self.study.set_user_attr("cold", trial.number)
            log.info("tune: trial %d spent most of its %.0f s on decoding and caches that later trials reuse; "
                     "the untuned setting runs again", trial.number, self.trial_seconds)
        elif not self.study.user_attrs.get("reference"):
            ref = reference_of(run.config, self.space, trial.number)
            self.study.set_user_attr("reference", ref)
            if ref.get("inert"):
                log.info("tune: the trials train on the frozen part's cached %s, where %s do nothing: left out "
                         "of the search (the final run keeps their configured values)",
                         "features" if ref["transfer"]["transfer_strategy"] == "linear-probe" else "activations",
                         ", ".join(ref["inert"]))
            note = short_trial_note(run.metrics, self.trial_seconds)
            if note:
                log.warning("tune: %s", note)
        if run.metrics.get("interrupted"):
            raise KeyboardInterrupt  # Ctrl-C inside the run: stop the search (the trial is marked failed)
        value = run.metrics.get("final_val_acc")
        trial.set_user_attr("run", str(folder.relative_to(self.tune_dir)))
        trial.set_user_attr("test_accuracy", run.metrics.get("test_accuracy"))
        trial.set_user_attr("lr", float(run.config.lr))
        if report.pruned:
            raise optuna.TrialPruned()
        if value is None:
            raise RuntimeError(f"trial {trial.number} has no validation accuracy")
        return float(value)


def _trial_dir(tune_dir: Path, number: int) -> Path:
    return tune_dir / "trials" / f"trial-{number:03d}"


def _remove(folder: Path) -> None:
    """A failed trial's or an unfinished final run's folder: only ever one that imagefit wrote."""
    if folder.exists():
        from .runner import clear_run_folder

        clear_run_folder(folder)


def _trial_line(t) -> str:
    params = ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in t.params.items())
    value = f"validation accuracy {t.value:.4f}" if t.value is not None else (
        f"pruned at epoch {t.last_step + 1}" if t.last_step is not None else t.state.name.lower())
    if t.state.name == "PRUNED" and t.last_step is not None:
        value = f"pruned after epoch {t.last_step + 1} (validation accuracy {t.intermediate_values[t.last_step]:.4f})"
    return f"trial {t.number:3d}: {value}; {params}"


def _write_yaml(tune_dir: Path, asked: dict, study, best: dict | None = None) -> None:
    data = {**asked, "reference": study.user_attrs.get("reference"), "spent_seconds": study.user_attrs.get("spent_seconds")}
    if best:
        data["best"] = best
    atomic.write_text(tune_dir / "tune.yaml", "# imagefit tune: run the same command again to resume it\n"
                      + yaml.safe_dump(data, sort_keys=False))


def _finish(tune_dir, study, base, given, sources, space, asked, budget, clock, echo) -> Tuned:
    """Retrain the best setting with what is left, then compare the trials and the best run."""
    from optuna.trial import TrialState

    done = [t for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    complete = [t for t in done if t.state == TrialState.COMPLETE]
    if not complete:
        raise UserError(f"no trial of {tune_dir} finished", "give the tune a larger --time-budget, or more --trials")
    best = study.best_trial
    echo(f"best: trial {best.number}, validation accuracy {best.value:.4f}")
    best_dir = tune_dir / "best"
    margin = REPORT_SECONDS + REPORT_SECONDS_PER_RUN * (len(done) + 1)
    left = None if budget is None else budget - clock.spent() - margin
    run = _final_run(best_dir, best, given, sources, study, left, clock)
    from .tune_report import write_comparison

    _write_yaml(tune_dir, asked, study, {"trial": best.number, "validation_accuracy": best.value,
                                         "params": dict(best.params), "lr": best.user_attrs.get("lr"),
                                         "run": "best" if run else best.user_attrs.get("run")})
    comparison = write_comparison(tune_dir, study, [tune_dir / t.user_attrs["run"] for t in done if "run" in t.user_attrs]
                                  + ([best_dir] if run else []), has_best=run is not None)
    clock.save()
    _write_yaml(tune_dir, asked, study, {"trial": best.number, "validation_accuracy": best.value,
                                         "params": dict(best.params), "lr": best.user_attrs.get("lr"),
                                         "run": "best" if run else best.user_attrs.get("run")})
    if run is not None:
        echo(f"best run: test accuracy {run.metrics['test_accuracy']:.4f}; {run.dir}")
    echo(f"comparison: {comparison.html}\ntune: {tune_dir}")
    return Tuned(tune_dir, dict(best.params), best.value, run, comparison, study.trials)


def _final_run(best_dir: Path, best, given, sources, study, left: float | None, clock):
    """The best setting, retrained with the budget left (resumed when a kill interrupted it); label issues on."""
    import json

    from ..train.run import Run, resume, train

    metrics = best_dir / "metrics.json"
    if metrics.is_file() and not json.loads(metrics.read_text()).get("interrupted"):
        log.info("tune: the final run already finished in %s", best_dir)
        return Run(best_dir, TrainConfig.load(best_dir / "config.yaml"), json.loads(metrics.read_text()))
    if (best_dir / "checkpoints" / "last.ckpt").is_file():
        log.info("tune: resuming the final run in %s", best_dir)
        return resume(best_dir)
    _remove(best_dir)
    if left is not None and left < MIN_TRIAL_SECONDS and given.get("epochs") is None:
        log.info("tune: %.0f s left, too little to retrain: the best trial is the result (trials skip the test "
                 "pass: imagefit evaluate %s --dataset <data> --split test scores it)", max(0.0, left),
                 best_dir.parent / best.user_attrs.get("run", ""))
        return None
    extra = {"name": best_dir.name, "runs_dir": str(best_dir.parent)}
    if left is not None and given.get("epochs") is None:
        extra["time_budget"] = f"{left:.1f}s"
    cfg = run_config(given, sources, dict(best.params), study.user_attrs.get("reference"),
                     by_tune=label_issues_option(given, left if "time_budget" in extra else None,
                                                 labelled_images(best_dir.parent / best.user_attrs.get("run", ""))),
                     **extra)
    log.info("tune: retraining trial %d's setting in %s%s", best.number, best_dir,
             f" with {left:.0f} s" if "time_budget" in extra else "")
    study.set_user_attr("final_started", True)
    clock.save()
    return train(cfg)
