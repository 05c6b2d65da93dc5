"""A real small run's diagnostic files, recomputed from what the run saved."""
import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from sklearn.metrics import balanced_accuracy_score

import imagefit
from imagefit.config import TrainConfig
from imagefit.data.pipeline import prepare_data
from imagefit.evaluate.calibration import fit_temperature, nll, saved_temperature
from imagefit.evaluate.mistakes import GALLERY_SIZE
from imagefit.models import create_model
from imagefit.report import rebuild_report

CLASSES = ("ant", "bee", "cow")


def write_noise_folder(root, per_class=16, size=12, seed=0):
    """Class folders of random-noise PNGs: nothing to learn, so most test images are misclassified."""
    rng = np.random.default_rng(seed)
    for name in CLASSES:
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(root / name / f"{name}{i:02d}.png")
    return root


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


def _mistakes(run):
    return list(csv.DictReader(open(run.dir / "misclassified.csv", newline="")))


def test_misclassified_rows_are_the_highest_loss_test_images(digits_run):
    saved = load_file(str(digits_run.dir / "predictions.safetensors"))
    logits, labels = saved["logits"].double(), saved["labels"]
    loss = torch.nn.functional.cross_entropy(logits, labels, reduction="none")
    wrong = [i for i in range(len(labels)) if logits[i].argmax() != labels[i]]
    expected = sorted(wrong, key=lambda i: (-loss[i].item(), i))
    rows = _mistakes(digits_run)
    assert wrong and [int(r["index"]) for r in rows] == expected
    assert all(r["file"] == "" for r in rows)  # digits has no files: the index identifies the image
    gallery = [int(r["index"]) for r in rows if r["in_gallery"]]
    assert gallery == expected[:GALLERY_SIZE]
    assert (digits_run.dir / "misclassified.png").stat().st_size > 5000
    md = (digits_run.dir / "report.md").read_text()
    assert f"{len(wrong)} of {len(labels)} test images are misclassified" in md
    assert f"| 1 | test image {expected[0]} |" in md and "![misclassified test images with the highest loss]" in md


def test_misclassified_csv_names_the_real_files_of_a_folder(tmp_path):
    folder = write_noise_folder(tmp_path / "noise")
    kwargs = dict(dataset=str(folder), model="seed-cnn", epochs=1, batch_size=16, runs_dir=str(tmp_path / "runs"),
                  cache_dir=str(tmp_path / "cache"), progress=False, precision="32", num_workers=1, name="n")
    run = imagefit.train(**kwargs)
    rows = _mistakes(run)
    assert len(rows) >= 3
    cfg = TrainConfig.load(run.dir / "config.yaml")
    data = prepare_data(cfg)
    again = prepare_data(cfg)  # read back from the decode cache: the file names survive it
    assert again.test.files == data.test.files and len(set(data.test.files)) == len(data.test)
    for r in rows:
        path = folder / r["file"]
        assert path.is_file() and path.parent.name == r["true_name"]
        decoded = torch.from_numpy(np.asarray(Image.open(path).convert("RGB"))).permute(2, 0, 1)
        assert torch.equal(data.test.images[int(r["index"])], decoded)  # the row's index is that very image
    md = (run.dir / "report.md").read_text()
    assert f"`{rows[0]['file']}`" in md


def test_temperature_is_fitted_on_validation_and_lowers_its_loss(digits_run):
    m = _metrics(digits_run)
    t = saved_temperature(digits_run.dir / "model.safetensors")
    assert t == m["temperature"] and t != 1.0
    saved = load_file(str(digits_run.dir / "predictions.safetensors"))
    # the saved validation logits are the model's on the validation split ...
    cfg = TrainConfig.load(digits_run.dir / "config.yaml")
    data = prepare_data(cfg)
    model = create_model(cfg.model, 10, 1, 8)
    model.load_state_dict(load_file(str(digits_run.dir / "model.safetensors")))
    with torch.no_grad():
        val_logits = model.eval()(data.val.images)
    assert torch.equal(saved["val_labels"], data.val.labels)
    assert torch.allclose(saved["val_logits"], val_logits, atol=1e-4)
    # ... T is the fit on them, not on test, and lowers validation loss
    assert t == fit_temperature(saved["val_logits"], saved["val_labels"])
    assert abs(t - fit_temperature(saved["logits"], saved["labels"])) > 1e-3
    assert nll(val_logits, data.val.labels, t) < nll(val_logits, data.val.labels) - 1e-4
    assert m["val_nll_scaled"] < m["val_nll"]
    assert m["test_loss_scaled"] == pytest.approx(nll(saved["logits"], saved["labels"], t))
    md = (digits_run.dir / "report.md").read_text()
    assert "## Calibration" in md and f"T = {t:.3f}" in md and "![reliability diagram](reliability.png)" in md
