"""Writes that do not fit (a full disk, simulated with a file-size limit) are one line and lose nothing."""
import hashlib
import json
import os
import resource
import signal
import subprocess
import sys

import pytest
import torch

import imagefit
from helpers import file_size_limit, leftovers, start_cli, wait_for
from imagefit import atomic
from imagefit.errors import UserError


def limited(*args, limit_bytes, cwd):
    """`imagefit ...` under `ulimit -f`: a write past the limit fails with EFBIG, as on a full disk."""
    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the error, not the kill
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))
    return subprocess.run([sys.executable, "-m", "imagefit.cli", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, preexec_fn=limit, timeout=300, env={**os.environ, "PYTHONWARNINGS": "ignore"})


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_checkpoint_that_does_not_fit_keeps_the_previous_one_and_the_run_resumes(tmp_path):
    run_dir = tmp_path / "runs" / "full"
    proc = start_cli("train", "--dataset", "digits", "--model", "seed-cnn", "--epochs", "50", "--batch-size", "64",
                     "--runs-dir", tmp_path / "runs", "--no-progress", "--name", "full", cwd=tmp_path)
    history = run_dir / "history.csv"
    wait_for(lambda: proc.poll() is not None or (history.is_file() and len(history.read_text().splitlines()) >= 2))
    assert proc.poll() is None, proc.stderr.read()
    proc.send_signal(signal.SIGINT)  # an interrupted run with a good last.ckpt
    assert proc.wait(timeout=120) == 0, proc.stderr.read()
    last = run_dir / "checkpoints" / "last.ckpt"
    before, epochs_run = digest(last), json.loads((run_dir / "metrics.json").read_text())["epochs_run"]
    assert last.stat().st_size > 1_000_000  # larger than the limit below: its next write cannot fit

    full = limited("train", "--resume", run_dir, limit_bytes=1_000_000, cwd=tmp_path)
    assert full.returncode == 2, full.stderr
    line = full.stderr.strip().splitlines()[-1]
    assert line.startswith("imagefit: error: could not write ") and ".ckpt" in line, full.stderr
    assert f"imagefit train --resume {run_dir}" in line and "Traceback" not in full.stderr
    assert digest(last) == before and not leftovers(run_dir)  # the old checkpoint, whole; no half-written file
    assert torch.load(last, weights_only=True)["epoch"] == epochs_run - 1  # and it still loads

    run = imagefit.resume(run_dir, epochs=epochs_run + 1)  # room again: the run goes on from that checkpoint
    assert run.metrics["epochs_run"] == epochs_run + 1 and not run.metrics["interrupted"]


def test_a_first_checkpoint_that_does_not_fit_says_to_start_again_not_to_resume(tmp_path):
    full = limited("train", "--dataset", "digits", "--model", "seed-cnn", "--epochs", "1", "--batch-size", "256",
                   "--runs-dir", tmp_path / "runs", "--no-progress", "--no-audit", "--name", "first",
                   limit_bytes=1_000_000, cwd=tmp_path)
    assert full.returncode == 2 and "Traceback" not in full.stderr, full.stderr
    line = full.stderr.strip().splitlines()[-1]
    run_dir = tmp_path / "runs" / "first"
    assert line.startswith(f"imagefit: error: could not write {run_dir / 'checkpoints'}"), line
    assert f"start the run again: imagefit train --config {run_dir / 'config.yaml'}" in line and "--resume" not in line
    assert not leftovers(run_dir) and not (run_dir / "checkpoints" / "last.ckpt").exists()


def test_a_report_that_does_not_fit_leaves_the_old_one(tmp_path, quick):
    run = imagefit.train(**{**quick, "runs_dir": str(tmp_path / "runs")})
    html = run.dir / "report.html"
    before = digest(html)
    assert html.stat().st_size > 100_000
    out = limited("report", run.dir, limit_bytes=100_000, cwd=tmp_path)
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert f"could not write {html}" in out.stderr and "File too large" in out.stderr
    assert digest(html) == before and not leftovers(run.dir)


def test_atomic_files_get_the_usual_permissions_whoever_wrote_them(tmp_path):
    from safetensors.torch import save_file

    with atomic.atomic_path(tmp_path / "w.safetensors") as tmp:  # safetensors replaces the temp file (0600)
        save_file({"w": torch.zeros(2)}, str(tmp))
    atomic.write_text(tmp_path / "t.txt", "x")
    mask = os.umask(0)
    os.umask(mask)
    expected = 0o666 & ~mask
    assert (tmp_path / "w.safetensors").stat().st_mode & 0o777 == expected
    assert (tmp_path / "t.txt").stat().st_mode & 0o777 == expected


def test_a_safetensors_file_that_does_not_fit_is_one_line(tmp_path):
    """safetensors (Rust) reports a full disk as its own error type, not an OSError: still no_room's line."""
    from safetensors.torch import save_file

    with file_size_limit(10_000), pytest.raises(UserError, match=r"could not write .*model.safetensors .*limit"):
        with atomic.atomic_path(tmp_path / "model.safetensors") as tmp:
            save_file({"w": torch.zeros(10_000)}, str(tmp))
    assert list(tmp_path.iterdir()) == []
