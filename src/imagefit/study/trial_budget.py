"""How a tune spends its budget: the search's share and each trial's length, when a trial said too little to count
(it spent its budget on caches, or trained under an epoch), and whether the final run can afford the label pass.
Pure functions of the budget and of finished runs' metrics; study/tune.py runs the search with them."""
from __future__ import annotations

import json
import logging
from pathlib import Path

log = logging.getLogger("imagefit")

SEARCH_SHARE = 0.5  # of the budget, for the trials; the rest is the final run's
DEFAULT_TRIALS = 10  # without --trials, the search share is cut into this many trial budgets
MIN_TRIAL_SECONDS = 20.0  # decoding, the planner's probe and a few epochs
# the comparison, Optuna's plots and the exit after the final run (with 1.0, a 10-minute tune ended 2 s late)
REPORT_SECONDS = 3.0
REPORT_SECONDS_PER_RUN = 0.1
COLD_SHARE = 0.5  # of a trial's budget: a first trial that spent more on one-time work runs again


def cold_start(metrics: dict, trial_seconds: float | None) -> bool:
    """Whether a trial spent over COLD_SHARE of its budget on work later trials skip: decoding (the decode cache)
    and set-up (a transfer run's cached trunk activations). The probe is not counted: every trial repeats it."""
    spent = metrics.get("time_breakdown") or {}
    return bool(trial_seconds) and spent.get("decode", 0.0) + spent.get("setup", 0.0) > COLD_SHARE * trial_seconds


def short_trial_note(metrics: dict, trial_seconds: float | None) -> str | None:
    """When the untuned trial trains under an epoch, a sentence with the budget that would give each trial one:
    trials that short rank settings by their first steps (bench/README.md, B10)."""
    epochs, train = metrics.get("budget_epochs"), (metrics.get("time_breakdown") or {}).get("train")
    if not trial_seconds or not epochs or not train or epochs >= 1:
        return None
    per_trial = trial_seconds - train + train / epochs  # the trial's fixed costs, then one epoch
    return (f"each {trial_seconds:.0f}-s trial trains {epochs:.2f} epochs, too few to rank settings as the final run "
            f"uses them: at 10 minutes `imagefit train` alone scored higher (bench/README.md, B10); a budget "
            f"{per_trial / trial_seconds:.1f} times this one gives each trial an epoch")


LABEL_ISSUES_IMAGES_PER_SECOND = 180  # the label pass on 2 cores: 50,000 CIFAR-10 images in 274 s (features + CV)
LABEL_ISSUES_SHARE = 0.1  # the most of the final run's budget the pass may take by default


def labelled_images(trial_dir: Path) -> int | None:
    """Training and validation images of a finished trial (what the label pass scores), from its metrics.json."""
    path = trial_dir / "metrics.json"
    if not path.is_file():
        return None
    m = json.loads(path.read_text())
    return (m.get("train_images") or 0) + (m.get("val_images") or 0) or None


def label_issues_option(given: dict, seconds: float | None = None, images: int | None = None) -> dict:
    """Label issues are in the final run (unless the user set find_label_issues), when cleanlab is there and,
    with a budget, when their pass takes at most LABEL_ISSUES_SHARE of the final run's `seconds`: on 50,000
    images it takes 4.6 minutes on 2 cores, which a 5-minute final run would otherwise lose to it."""
    if "find_label_issues" in given:
        return {}
    try:
        import cleanlab  # noqa: F401
    except ImportError:
        log.info("note: the final run looks for no label issues: pip install 'imagefit[clean]' for them")
        return {}
    cost = (images or 0) / LABEL_ISSUES_IMAGES_PER_SECOND
    if seconds is not None and cost > LABEL_ISSUES_SHARE * seconds:
        log.info("note: the final run looks for no label issues: on %d images they would take about %.0f s of its "
                 "%.0f s; pass --find-label-issues to have them anyway", images, cost, seconds)
        return {}
    return {"find_label_issues": True}
