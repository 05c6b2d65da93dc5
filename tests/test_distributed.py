"""Two processes on a CPU (Lightning's DDP over gloo), as a user starts them: one folder, one voice."""
import csv
import json

import pytest

from cli_process import run_imagefit


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
