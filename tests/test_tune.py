"""`imagefit tune` on real, short runs on digits: the folder it writes, the comparison, pinned keys, resume after
kill -9, and its mistakes as one line."""
import json
import os
import signal
import subprocess
import sys

import pytest
import yaml

import optuna

import imagefit
from imagefit.errors import UserError
from imagefit.study.search_space import build_space
from imagefit.study.trial_budget import cold_start, label_issues_option, short_trial_note

from helpers import run_imagefit, wait_for

# short trials: 3 epochs of 4 batches each (the budget is not spent: pinned epochs decide each run's length)
QUICK = ["--dataset", "digits", "--epochs", 3, "--limit-train-batches", 4, "--no-find-label-issues"]


def dirs(tmp):
    return ["--runs-dir", tmp / "runs", "--cache-dir", tmp / "cache", "--data-dir", tmp / "data", "--no-progress",
            "--precision", "32"]


def config_of(run_dir):
    return yaml.safe_load((run_dir / "config.yaml").read_text())


def some_finished(tune_dir):
    """At least one trial finished (the storage may be mid-write, or not yet created, while the tune runs)."""
    try:
        return len(finished(tune_dir)[0]) >= 1
    except Exception:  # sqlite 'database is locked', or no study yet
        return False


def finished(tune_dir):
    study = optuna.load_study(study_name="tune", storage=f"sqlite:///{tune_dir / 'optuna.db'}")
    return [t for t in study.get_trials(deepcopy=False) if t.state.name in ("COMPLETE", "PRUNED")], study


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """3 trials on digits with lr pinned by the user, through the Python API."""
    tmp = tmp_path_factory.mktemp("tune")
    lines = []
    tuned = imagefit.tune(dataset="digits", time_budget="120s", trials=3, epochs=3, limit_train_batches=4, lr=0.01,
                          find_label_issues=False, runs_dir=str(tmp / "runs"), cache_dir=str(tmp / "cache"),
                          data_dir=str(tmp / "data"), progress=False, precision="32", name="tiny", echo=lines.append)
    return tmp, tuned, lines


def test_tiny_tune_writes_trials_best_run_and_a_comparison(tiny):
    tmp, tuned, lines = tiny
    d = tuned.dir
    assert sorted(p.name for p in (d / "trials").iterdir()) == ["trial-000", "trial-001", "trial-002"]
    for run in [*(d / "trials").iterdir(), d / "best"]:
        assert (run / "metrics.json").is_file(), run
    for name in ("optuna.db", "tune.yaml", "comparison.md", "comparison.html", "comparison.csv", "comparison.png",
                 "history.png"):
        assert (d / name).is_file(), name
    page = (d / "comparison.md").read_text()
    assert "history.png" in page and "## The search (Optuna)" in page
    complete = [t for t in tuned.trials if t.state.name == "COMPLETE"]
    if len(complete) >= 2:  # fANOVA needs two finished trials (a pruned one does not count)
        assert (d / "importance.png").is_file() and "importance.png" in page
    assert sum(line.startswith("trial ") for line in lines) == 3
    assert tuned.trials[0].params == {}  # the reference trial: the run as `imagefit train` makes it, untuned
    tuned_keys = [line for line in (d / "trials" / "trial-000" / "config.yaml").read_text().splitlines()
                  if line.endswith("# tune")]
    assert tuned_keys == ["test_pass: false  # tune"]  # trials are ranked on validation; the test split stays unread
    for trial in (d / "trials").iterdir():
        assert json.loads((trial / "metrics.json").read_text())["test_pass"] is False, trial
        assert not (trial / "predictions.safetensors").exists()
    best = json.loads((d / "best" / "metrics.json").read_text())
    assert 0 < best["test_accuracy"] <= 1 and (d / "best" / "predictions.safetensors").is_file()
    assert all(t.params for t in tuned.trials[1:])
    assert [line.split(":")[0] for line in lines[3:]] == ["best", "best run", "comparison"]
    # the tune folder is a study that imagefit compare reads: every trial and the best run
    comparison = imagefit.compare([d], out=tmp / "again")
    assert sorted(r.label for r in comparison.runs) == ["best", "trial-000", "trial-001", "trial-002"]
    assert len((tmp / "again" / "comparison.csv").read_text().strip().splitlines()) == 5


def test_best_run_holds_the_best_params_and_pinned_keys_stay_out(tiny):
    _, tuned, _ = tiny
    saved = yaml.safe_load((tuned.dir / "tune.yaml").read_text())
    best = saved["best"]
    assert best["params"] == tuned.best_params and best["run"] == "best"
    config = config_of(tuned.dir / "best")
    for key, value in tuned.best_params.items():
        assert config[key] == value, key
    sources = (tuned.dir / "best" / "config.yaml").read_text()
    assert all(f"{key}: " in sources for key in tuned.best_params) and "# tune" in sources
    assert "lr" not in saved["space"] and "lr_scale" not in saved["space"]  # the user pinned lr
    for t in tuned.trials:
        assert not {"lr", "lr_scale"} & set(t.params)
        assert config_of(tuned.dir / t.user_attrs["run"])["lr"] == 0.01
    assert config["lr"] == 0.01 and config["batch_size"] == saved["reference"]["batch_size"]


def test_resumes_after_kill_9_without_repeating_finished_trials(tmp_path):
    args = ["tune", *QUICK, "--trials", 4, "--time-budget", "10m", "--name", "r", *dirs(tmp_path)]
    tune_dir = tmp_path / "runs" / "r"
    log = open(tmp_path / "first.log", "w")  # a file, not a pipe: nobody reads a pipe here, and a full one blocks
    proc = subprocess.Popen([sys.executable, "-m", "imagefit.cli", *map(str, args)], cwd=tmp_path, stdout=log,
                            stderr=subprocess.STDOUT, env={**os.environ, "PYTHONWARNINGS": "ignore"},
                            start_new_session=True)
    try:
        # the storage is read only once a trial has written its metrics: opening it earlier, while the tune creates
        # its tables, can race with that (both would create them), and the tune dies of it
        wait_for(lambda: any((tune_dir / "trials").glob("*/metrics.json")) and some_finished(tune_dir), timeout=240)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        log.close()
    done, _ = finished(tune_dir)
    stamps = {t.number: (tune_dir / t.user_attrs["run"] / "metrics.json").stat().st_mtime_ns for t in done}
    assert not (tune_dir / "best").exists()
    again = run_imagefit(*args, cwd=tmp_path)
    done_after, study = finished(tune_dir)
    assert len(done_after) == 4 and "best run: test accuracy" in again.stdout
    for number, stamp in stamps.items():  # finished trials were not trained again
        assert (tune_dir / f"trials/trial-{number:03d}/metrics.json").stat().st_mtime_ns == stamp
    printed = [int(line.split(":")[0].split()[1]) for line in again.stdout.splitlines() if line.startswith("trial ")]
    assert printed and min(printed) > max(stamps)  # trial numbers continue
    failed = [t.number for t in study.trials if t.state.name == "FAIL"]
    for number in failed:  # the trial the kill cut short: marked failed, its folder gone
        assert not (tune_dir / f"trials/trial-{number:03d}").exists()
    assert (tune_dir / "best" / "metrics.json").is_file()
    assert yaml.safe_load((tune_dir / "tune.yaml").read_text())["spent_seconds"] > 0


def test_search_space_yaml_pinned_keys_and_mistakes(tmp_path):
    base = imagefit.TrainConfig.from_dict({"dataset": "digits", "lr": 0.01})
    space = build_space(base, {"dataset", "lr"}, {"lr": {"low": 1e-4, "high": 0.1, "log": True},
                                                  "augment": ["basic", "light"], "weight_decay": None})
    assert "lr" not in space and "lr_scale" not in space and "weight_decay" not in space  # pinned, or dropped
    assert space["augment"].choices == ["basic", "light"]
    space = build_space(base, {"dataset"}, {"lr": {"low": 1e-4, "high": 0.1, "log": True}})
    assert "lr_scale" not in space and space["lr"].log
    for bad, words in [({"lrr": [1]}, "unknown search key 'lrr'"), ({"label_smoothing": {"low": 0.3, "high": 0.1}}, "bad range"),
                       ({"augment": ["basic", "heavy"]}, "'heavy' is not one of"),
                       ({"lr": {"low": 0, "high": 1, "log": True}}, "bad range")]:
        with pytest.raises(UserError, match=words):
            build_space(base, {"dataset"}, bad)
    assert label_issues_option({"find_label_issues": False}) == {}
    assert label_issues_option({}) == {"find_label_issues": True}  # in the final run (cleanlab: imagefit[test])
    assert label_issues_option({}, 3000, 50_000) == {"find_label_issues": True}  # 278 s of 3000: under a tenth
    assert label_issues_option({}, 330, 50_000) == {}  # most of a 330-s final run: left out, with a note
    budgeted = imagefit.TrainConfig.from_dict({"dataset": "digits", "recipe": "fast", "time_budget": "20s"})
    assert "model" not in build_space(budgeted, {"dataset", "recipe", "time_budget"}, None)  # the planner's width
    fixed = imagefit.TrainConfig.from_dict({"dataset": "digits", "recipe": "fast", "epochs": 2})
    assert build_space(fixed, {"dataset", "recipe", "epochs"}, None)["model"].choices == ["airbench93", "airbench"]


def test_tune_without_budget_or_trials_and_a_bad_search_file_are_one_line(tmp_path):
    proc = run_imagefit("tune", "--dataset", "digits", cwd=tmp_path, check=False)
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0 and "time budget" in proc.stderr
    (tmp_path / "space.yaml").write_text("label_smoothing: {low: 0, high: 2}\n")
    proc = run_imagefit("tune", "--dataset", "digits", "--trials", 2, "--search", tmp_path / "space.yaml",
                        *dirs(tmp_path), cwd=tmp_path, check=False)
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0 and "label_smoothing" in proc.stderr
    assert not (tmp_path / "runs").exists()


def test_a_first_trial_spent_on_caches_is_cold():
    """Time breakdowns of a real 10-minute tune on Imagenette (30-s trials, ImageNet transfer): the first trial
    spent 24 s caching the trunk's activations and trained 1 step (validation 14.8%); the second, on the warm
    cache, trained 387 steps. Only the first is cold, and no trial is cold without a trial budget."""
    first = {"decode": 2.19, "probe": 5.27, "setup": 23.59, "train": 0.06, "test": 0.2, "write": 2.09}
    second = {"decode": 1.96, "probe": 2.86, "setup": 0.71, "train": 20.04, "test": 0.22, "write": 2.56}
    assert cold_start({"time_breakdown": first}, 30.0)
    assert not cold_start({"time_breakdown": second}, 30.0)
    assert not cold_start({"time_breakdown": first}, 60.0)  # the same costs in a longer trial: under half
    assert not cold_start({"time_breakdown": first}, None) and not cold_start({}, 30.0)


def test_a_trial_under_an_epoch_says_what_budget_would_give_it_one():
    """A 30-s trial of a 10-minute tune on CIFAR-10 (measured): 15.7 s of training for 0.25 epochs, so one epoch
    needs 14.3 s of fixed costs and 62.6 s of training, 2.6 times the budget."""
    short = {"budget_epochs": 0.25, "time_breakdown": {"decode": 1.74, "probe": 1.52, "train": 15.66, "test": 9.66}}
    note = short_trial_note(short, 30.0)
    assert "0.25 epochs" in note and "2.6 times" in note
    assert short_trial_note({**short, "budget_epochs": 5.8}, 30.0) is None  # Imagenette's trials: epochs enough
    assert short_trial_note({"budget_epochs": None}, 30.0) is None and short_trial_note(short, None) is None


def test_trials_keep_the_reference_transfer_plan_and_skip_what_cached_inputs_ignore():
    """On Imagenette at 30 minutes, trials left to plan their own transfer chose 5, 8 or 11 blocks at 96 or 128 px
    (each new cut re-cached the trunk: 28-48 s of a 90-s trial), and sampled augmentations that cached activations
    never see. Trials now keep the reference's plan, and those keys leave the search; the final run plans its own."""
    from imagefit.config import TrainConfig
    from imagefit.study.trial_config import reference_of, run_config, trial_options

    partial = TrainConfig.from_dict({"dataset": "digits", "pretrained": True, "transfer_strategy": "partial",
                                     "trainable_blocks": 5, "image_size": 96, "batch_size": 128, "lr": 0.002})
    space = build_space(partial, set(), None, "test")
    ref = reference_of(partial, space, 1)
    assert ref["transfer"] == {"transfer_strategy": "partial", "trainable_blocks": 5, "image_size": 96}
    assert ref["inert"] == [k for k in ("augment", "mixup", "cutmix", "random_erasing") if k in space]
    assert set(ref["inert"]) >= {"augment", "mixup"} and ref["batch_size"] == 128 and ref["pretrained"]
    given = {"dataset": "digits", "time_budget": "60s"}
    options = trial_options(given, ref)
    assert options == {"test_pass": False, "transfer_strategy": "partial", "trainable_blocks": 5, "image_size": 96}
    trial = run_config(given, {}, {"lr_scale": 2.0}, ref, by_tune=options)
    assert (trial.transfer_strategy, trial.trainable_blocks, trial.image_size, trial.lr) == ("partial", 5, 96, 0.004)
    assert trial.config_sources()["trainable_blocks"] == "tune" and trial.test_pass is False
    final = run_config(given, {}, {"lr_scale": 2.0}, ref)  # the final run: its own plan, a test pass
    assert final.transfer_strategy is None and final.image_size is None and final.test_pass is True
    # a user's pin of any part of the plan leaves the rest to each trial's planner; their test_pass stands
    assert trial_options({"image_size": 128, "test_pass": True}, ref) == {}
    fine = reference_of(partial.replace(transfer_strategy="fine-tune", trainable_blocks=None), space, 1)
    assert "inert" not in fine and fine["transfer"]["transfer_strategy"] == "fine-tune"
    scratch = reference_of(TrainConfig.from_dict({"dataset": "digits", "batch_size": 64, "lr": 0.1}), space, 0)
    assert "transfer" not in scratch and "inert" not in scratch
    assert trial_options({}, scratch) == {"test_pass": False}
