"""Two processes on a CPU (Lightning's DDP over gloo), as a user starts them: one folder, one voice."""
import csv
import json
import os
import signal
import subprocess
import sys

import pytest

from helpers import assert_kept_to_its_plan, run_imagefit, start_cli, wait_for


def test_two_process_run_writes_one_folder_and_speaks_once(tmp_path):
    proc = run_imagefit("train", "--dataset", "digits", "--epochs", "2", "--accelerator", "cpu", "--devices", "2",
                        "--strategy", "ddp", "--batch-size", "32", "--precision", "32", "--name", "dd",
                        "--runs-dir", tmp_path / "runs", "--cache-dir", tmp_path / "cache",
                        "--data-dir", tmp_path / "data", cwd=tmp_path)
    assert [p.name for p in (tmp_path / "runs").iterdir()] == ["dd"]
    run = tmp_path / "runs" / "dd"
    with open(run / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    epoch_lines = [line for line in proc.stdout.splitlines() if line.startswith("epoch ")]
    assert len(epoch_lines) == 2 and proc.stdout.count("test accuracy") == 1
    assert proc.stderr.count("imagefit: run folder:") == 1  # rank 1 logs nothing
    m = json.loads((run / "metrics.json").read_text())
    # validation saw each image exactly once over both ranks: the accuracy is a count over val_images
    for r in rows:
        correct = float(r["val_acc"]) * m["val_images"]
        assert abs(correct - round(correct)) < 1e-3, (r["val_acc"], m["val_images"])
    # images/s counts both ranks' images: each epoch trains on the whole training split
    assert m["train_images_per_second"] * m["train_seconds"] == pytest.approx(2 * m["train_images"], rel=0.01)
    assert m["test_images"] > 300 and 0 <= m["test_accuracy"] <= 1


def two_process_args(tmp_path, name, *extra, devices=2, batch=32):
    return ["train", "--dataset", "digits", "--model", "seed-cnn", "--epochs", "6", "--batch-size", str(batch),
            "--accelerator", "cpu", "--devices", str(devices), "--strategy", "ddp" if devices > 1 else "auto",
            "--precision", "32", "--no-progress", "--no-audit", "--name", name, "--runs-dir", tmp_path / "runs",
            "--cache-dir", tmp_path / "cache", "--data-dir", tmp_path / "data", *extra]


def history(run_dir):
    with open(run_dir / "history.csv") as f:
        return [{k: v for k, v in row.items() if not k.endswith("seconds")} for row in csv.DictReader(f)]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """One 2-process run (32 images per process, a global batch of 64), shared by the tests below."""
    tmp_path = tmp_path_factory.mktemp("ddp")
    run_imagefit(*two_process_args(tmp_path, "u"), cwd=tmp_path)
    return tmp_path / "runs" / "u"


def test_two_processes_reach_the_accuracy_of_one_with_the_same_global_batch(tmp_path, uninterrupted):
    run_imagefit(*two_process_args(tmp_path, "one", devices=1, batch=64), cwd=tmp_path)
    one = json.loads((tmp_path / "runs" / "one" / "metrics.json").read_text())
    two = json.loads((uninterrupted / "metrics.json").read_text())
    assert one["test_accuracy"] > 0.6 and two["test_accuracy"] > 0.6  # both learned (chance is 0.1)
    # the same number of optimizer steps over the same images: within seed noise (measured: 0.75 and 0.77)
    assert abs(one["test_accuracy"] - two["test_accuracy"]) < 0.06, (one["test_accuracy"], two["test_accuracy"])
    assert len(history(uninterrupted)) == len(history(tmp_path / "runs" / "one")) == 6


def test_two_process_run_killed_with_kill_9_resumes_to_the_same_result(tmp_path, uninterrupted):
    killed = tmp_path / "runs" / "k"
    proc = start_cli(*two_process_args(tmp_path, "k"), cwd=tmp_path, new_session=True)
    wait_for(lambda: (killed / "history.csv").is_file() and len(history(killed)) >= 2
             and (killed / "checkpoints" / "last.ckpt").is_file())
    os.killpg(proc.pid, signal.SIGKILL)  # rank 0 and the worker it launched, at once
    proc.wait()
    assert not (killed / "metrics.json").exists()
    resumed = run_imagefit("train", "--resume", killed, cwd=tmp_path)
    assert resumed.stdout.count("test accuracy") == 1
    assert history(killed) == history(uninterrupted)  # gloo's reductions are deterministic on a CPU
    m, u = (json.loads((d / "metrics.json").read_text()) for d in (killed, uninterrupted))
    assert m["test_accuracy"] == u["test_accuracy"] and m["epochs_run"] == 6


def test_budgeted_two_process_run_follows_rank_0s_plan(tmp_path):
    """Each rank used to measure its own speeds and plan its own network and step count: different shapes or
    a rank waiting alone at the first all-reduce. Now rank 0 plans, and its decisions and clock hold for both."""
    proc = run_imagefit("train", "--dataset", "digits", "--time-budget", "30s", "--accelerator", "cpu",
                        "--devices", "2", "--strategy", "ddp", "--precision", "32", "--no-progress", "--name", "b",
                        "--runs-dir", tmp_path / "runs", "--cache-dir", tmp_path / "cache",
                        "--data-dir", tmp_path / "data", cwd=tmp_path)
    run = tmp_path / "runs" / "b"
    assert [p.name for p in (tmp_path / "runs").iterdir()] == ["b"]
    decided = json.loads((run / ".decisions.json").read_text())
    m = json.loads((run / "metrics.json").read_text())
    assert decided["plan"]["model"] == m["model"] and decided["start"][0] is False
    assert proc.stderr.count("Time budget") == 1
    assert m["epochs_run"] >= 1 and m["test_images"] > 300
    # the worker's start (imports, data) is set aside in the plan, and rank 0's plan is kept to
    assert "set aside for them" in (run / "report.md").read_text()
    assert_kept_to_its_plan(m)


def test_torchrun_ranks_share_rank_0s_folder(tmp_path):
    """torchrun starts every rank at once, with no folder to inherit: the workers wait for rank 0's."""
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port",
                str(29400 + os.getpid() % 500), "-m", "imagefit.cli"]
    proc = subprocess.run([*torchrun, *map(str, two_process_args(tmp_path, "t", "--epochs", "2"))], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["t"]  # no second folder, no pointer left
    assert [r["epoch"] for r in history(tmp_path / "runs" / "t")] == ["1", "2"]
    assert proc.stdout.count("test accuracy") == 1


def test_early_stopping_is_agreed_by_both_ranks(tmp_path):
    """Adam at 1e-2 without augmentation overfits digits within a few epochs: validation loss turns up and
    stopping fires. The synced validation loss is the same on both ranks, so both stop at the same epoch
    (a rank stopping alone would leave the other waiting at its next all-reduce until the timeout)."""
    run_imagefit(*two_process_args(tmp_path, "es", "--epochs", "15", "--optimizer", "adam", "--lr", "0.01",
                                   "--augment", "none", "--early-stopping", "--patience", "1"), cwd=tmp_path)
    m = json.loads((tmp_path / "runs" / "es" / "metrics.json").read_text())
    assert m["stopped_early"] is True and m["epochs_run"] == m["stop_epoch"] == m["best_epoch"] + 1 < 15
    assert len(history(tmp_path / "runs" / "es")) == m["epochs_run"]
