"""One process per run folder: a second `--resume` and a study's redo are refused while a run writes."""
import signal

import pytest

from helpers import run_imagefit, start_cli, wait_for
from imagefit.errors import UserError
from imagefit.study.runner import clear_run_folder
from imagefit.train.run_lock import LOCK_FILE, run_folder_lock


def test_a_folder_being_written_is_refused_to_others_and_freed_by_kill_9(tmp_path):
    runs = tmp_path / "runs"
    run_dir = runs / "held"
    proc = start_cli("train", "--dataset", "digits", "--model", "seed-cnn", "--epochs", "1000", "--batch-size", "64",
                     "--runs-dir", runs, "--cache-dir", tmp_path / "cache", "--no-progress", "--name", "held")
    try:
        wait_for(lambda: (run_dir / "checkpoints" / "last.ckpt").is_file() or proc.poll() is not None)
        assert proc.poll() is None, proc.stderr.read()
        second = run_imagefit("train", "--resume", run_dir, cwd=tmp_path, check=False)
        assert second.returncode == 2
        lines = second.stderr.strip().splitlines()
        assert len(lines) <= 2 and f"run folder {run_dir} is in use by another imagefit process" in lines[0], lines
        with pytest.raises(UserError, match="in use by another imagefit process"):
            clear_run_folder(run_dir)  # a study redoing this run would have deleted it under the writer
        assert (run_dir / "config.yaml").is_file()
        assert proc.poll() is None  # the first run is untouched and still training
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    with run_folder_lock(run_dir):  # the kernel dropped the dead process's lock: no stale lock to clean up
        assert (run_dir / LOCK_FILE).exists()
    clear_run_folder(run_dir)
    assert not run_dir.exists()


def test_a_folder_left_with_only_its_lock_file_is_cleared(tmp_path):
    run_dir = tmp_path / "crashed-before-config"
    run_dir.mkdir()
    with run_folder_lock(run_dir):
        pass
    clear_run_folder(run_dir)
    assert not run_dir.exists()
    stranger = tmp_path / "not-a-run"
    stranger.mkdir()
    (stranger / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="is not an imagefit run folder"):
        clear_run_folder(stranger)
