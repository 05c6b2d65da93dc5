"""A real small run's diagnostic files, recomputed from what the run saved."""
import json

import pytest
import torch
from safetensors.torch import load_file
from sklearn.metrics import balanced_accuracy_score

import imagefit
from imagefit.config import TrainConfig
from imagefit.data.pipeline import prepare_data
from imagefit.report import rebuild_report


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("diag")
    return imagefit.train(dataset="digits", model="seed-cnn", epochs=3, batch_size=64, runs_dir=str(tmp / "runs"),
                          cache_dir=str(tmp / "cache"), progress=False, precision="32", name="d")


def _metrics(run):
    return json.loads((run.dir / "metrics.json").read_text())


def test_balanced_accuracy_and_class_counts(digits_run):
    m = _metrics(digits_run)
    saved = load_file(str(digits_run.dir / "predictions.safetensors"))
    expected = balanced_accuracy_score(saved["labels"].numpy(), saved["logits"].argmax(1).numpy())
    assert m["test_balanced_accuracy"] == pytest.approx(expected, abs=1e-12)
    data = prepare_data(TrainConfig.load(digits_run.dir / "config.yaml"))
    assert m["train_class_counts"] == torch.bincount(data.train.labels, minlength=10).tolist()
    assert sum(m["train_class_counts"]) == m["train_images"]
    md = (digits_run.dir / "report.md").read_text()
    assert "| Test balanced accuracy (mean per-class recall) | " + f"{expected:.4f} |" in md
    assert "## Uneven classes" in md and "No class is rare" in md  # digits: 118 to 127 images a class
    assert "![training images against test F1 per class](class_balance.png)" in md
    assert (digits_run.dir / "class_balance.png").stat().st_size > 5000


def test_report_rebuild_keeps_the_diagnostics(digits_run):
    (digits_run.dir / "class_balance.png").unlink()
    before = _metrics(digits_run)
    rebuild_report(digits_run.dir)
    after = _metrics(digits_run)
    assert (digits_run.dir / "class_balance.png").is_file()
    assert after["train_class_counts"] == before["train_class_counts"]
    assert after["test_balanced_accuracy"] == before["test_balanced_accuracy"]
