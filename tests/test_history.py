"""history.csv: one row per epoch, rewritten whole; a write that does not fit is one line and keeps the old file."""
import csv

import pytest

from imagefit.errors import UserError
from imagefit.train.history import COLUMNS, write_history
from helpers import file_size_limit, leftovers


def rows(n):
    return [{"epoch": i + 1, "train_loss": 0.5, "train_acc": 0.75, "val_loss": 0.25, "val_acc": 0.875, "lr": "0.001",
             "seconds": 1.5} for i in range(n)]


def test_history_is_rewritten_whole_each_epoch(tmp_path):
    path = tmp_path / "run" / "history.csv"
    write_history(path, rows(2))
    write_history(path, rows(3))
    read = list(csv.DictReader(path.open()))
    assert list(read[0]) == COLUMNS and [r["epoch"] for r in read] == ["1", "2", "3"]


def test_a_history_that_does_not_fit_keeps_the_old_one_and_names_the_run_to_resume(tmp_path):
    run_dir = tmp_path / "run"
    path = run_dir / "history.csv"
    write_history(path, rows(3))
    before = path.read_text()
    with file_size_limit(len(before) + 10), pytest.raises(UserError) as e:
        write_history(path, rows(30))
    assert e.value.problem.startswith(f"could not write {path} (File too large)"), str(e.value)
    assert f"imagefit train --resume {run_dir}" in e.value.fix
    assert path.read_text() == before and not leftovers(run_dir)
