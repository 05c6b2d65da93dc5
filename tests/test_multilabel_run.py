"""A real multi-label run (several labels an image): binary cross-entropy, early stopping on validation mAP,
thresholds chosen on validation and saved with the model, then reused unchanged by `predict`, `evaluate` and an
exported ONNX file; every report file written."""
import csv
import json

import pytest
import torch
from safetensors import safe_open

from helpers import run_imagefit, write_mosaic_set

REPORT_FILES = ["report.md", "report.html", "metrics.json", "history.csv", "curves.png", "per_class.csv",
                "multilabel_confusion.csv", "pr_curves.png", "predictions.csv", "largest_loss.csv", "largest_loss.png",
                "model.safetensors", "predictions.safetensors", "config.yaml"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One run on 2x2 mosaics of colored tiles, 1 to 4 colors each, with a few images that have no label."""
    root = tmp_path_factory.mktemp("multilabel")
    labels = write_mosaic_set(root / "mosaics", n_train=240, n_test=60)
    rows = list(csv.DictReader(labels.open()))
    for row in rows[:6]:  # images with no label: kept, and learned as "none of these"
        row["labels"] = ""
    with labels.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["image", "labels", "split"])
        w.writeheader()
        w.writerows(rows)
    proc = run_imagefit("train", "--dataset", labels, "--model", "seed-cnn", "--epochs", "12", "--batch-size", "32",
                        "--early-stopping", "--monitor", "val_map", "--patience", "3", "--val-fraction", "0.2",
                        "--precision", "32", "--no-progress", "--name", "ml", "--runs-dir", root / "runs",
                        "--cache-dir", root / "cache", cwd=root)
    return root, root / "runs" / "ml", proc


def test_a_multilabel_run_writes_every_report_file_and_learns(run):
    root, folder, proc = run
    assert [f for f in REPORT_FILES if not (folder / f).is_file()] == []
    m = json.loads((folder / "metrics.json").read_text())
    assert m["task"] == "multilabel" and m["num_classes"] == 4
    assert m["test_map"] > 0.8, m["test_map"]  # colors: far above the ~0.6 of a model that learned nothing
    assert "test mAP" in proc.stdout and "macro F1" in proc.stdout
    assert any("Multi-label" in n and "6 images with none" in n for n in m["data_notes"])
    report = (folder / "report.md").read_text()
    for heading in ("Mean average precision (macro, the headline)", "## Per-label results", "## Precision-recall curves",
                    "## Labels missed together", "## The images with the largest loss", "## What the numbers say"):
        assert heading in report
    per_class = list(csv.DictReader((folder / "per_class.csv").open()))
    aps = [float(r["ap"]) for r in per_class]
    assert aps == sorted(aps, reverse=True) and len(per_class) == 4


def test_early_stopping_follows_validation_map(run):
    _, folder, _ = run
    m = json.loads((folder / "metrics.json").read_text())
    rows = list(csv.DictReader((folder / "history.csv").open()))
    maps = [float(r["val_map"]) for r in rows]
    assert m["monitor"] == "val_map" and m["best_epoch"] == 1 + maps.index(max(maps))
    assert m["best_val_map"] == pytest.approx(max(maps))
    if m["stopped_early"]:  # patience 3: the last three epochs did not beat the best
        assert len(rows) - m["best_epoch"] >= 3


def test_thresholds_come_from_validation_and_travel_with_the_model(run, tmp_path):
    root, folder, _ = run
    from imagefit.evaluate.multilabel import choose_thresholds

    m = json.loads((folder / "metrics.json").read_text())
    saved = load_tensors(folder / "predictions.safetensors")
    expected = choose_thresholds(torch.sigmoid(saved["val_logits"].double()), saved["val_labels"], "f1")
    assert m["thresholds"] == pytest.approx(expected, abs=1e-6)
    assert m["thresholds"] != [0.5] * 4  # chosen, not the default
    with safe_open(str(folder / "model.safetensors"), "pt") as f:
        meta = f.metadata()
    assert meta["task"] == "multilabel" and json.loads(meta["thresholds"]) == pytest.approx(m["thresholds"])

    import imagefit

    predictor = imagefit.load(folder, precision="32")
    test_images = sorted((root / "mosaics" / "images" / "test").iterdir())[:8]
    result = predictor.predict(test_images)
    for p in result:  # every label at or above its threshold, and no other
        assert {c for c, _ in p.labels} == {predictor.class_names[j] for j, t in enumerate(m["thresholds"])
                                            if float(p.probabilities[j]) >= t}
        assert abs(float(p.probabilities.sum()) - 1) > 1e-3 or len(p.labels) > 0  # sigmoids, not a softmax

    proc = run_imagefit("predict", folder, *test_images[:2], "--json", "--precision", "32", cwd=root)
    out = json.loads(proc.stdout)["predictions"]
    assert [[x["label"] for x in o["labels"]] for o in out] == [[c for c, _ in p.labels] for p in result[:2]]

    exported = tmp_path / "ml.onnx"
    run_imagefit("export", folder, "--format", "onnx", "--out", exported, cwd=root)
    onnx_model = imagefit.load(exported)
    assert onnx_model.thresholds == pytest.approx(m["thresholds"])
    onnx_result = onnx_model.predict(test_images)
    assert torch.allclose(torch.stack([p.probabilities for p in onnx_result]),
                          torch.stack([p.probabilities for p in result]), atol=1e-4)


def test_evaluate_reuses_the_runs_thresholds_and_reproduces_its_test_metrics(run):
    root, folder, _ = run
    m = json.loads((folder / "metrics.json").read_text())
    proc = run_imagefit("evaluate", folder, "--dataset", root / "mosaics" / "labels.csv", "--split", "test",
                        "--precision", "32", "--cache-dir", root / "cache", cwd=root)
    assert "mAP" in proc.stdout
    e = json.loads((folder / "evaluations" / "mosaics-labels-test" / "metrics.json").read_text())
    assert e["thresholds"] == pytest.approx(m["thresholds"])
    for key in ("test_map", "f1_macro", "test_subset_accuracy", "test_hamming_loss"):
        assert e[key] == pytest.approx(m[key], abs=1e-4), key
    assert (folder / "evaluations" / "mosaics-labels-test" / "report.md").is_file()


def test_comparison_ranks_multilabel_runs_on_map(run, tmp_path):
    root, folder, _ = run
    proc = run_imagefit("compare", folder, folder / "evaluations" / "mosaics-labels-test", "--out", tmp_path / "cmp", cwd=root,
                        check=False)
    if proc.returncode != 0:  # the evaluation folder is written by the test above; alone, compare the run twice
        proc = run_imagefit("compare", folder, folder, "--out", tmp_path / "cmp", cwd=root)
    page = (tmp_path / "cmp" / "comparison.md").read_text()
    assert "Test mAP (multi-label, macro)" in page and "F1 (macro)" in page


def load_tensors(path):
    from safetensors.torch import load_file

    return load_file(str(path))


def test_report_rebuilds_and_the_local_page_answers_with_labels(run):
    root, folder, _ = run
    m = json.loads((folder / "metrics.json").read_text())
    (folder / "per_class.csv").unlink()
    run_imagefit("report", folder, cwd=root)
    again = json.loads((folder / "metrics.json").read_text())
    assert (folder / "per_class.csv").is_file() and again["test_map"] == pytest.approx(m["test_map"])
    assert again["thresholds"] == m["thresholds"] and "## Per-label results" in (folder / "report.md").read_text()

    from imagefit.serve.predictions import Predictors

    image = sorted((root / "mosaics" / "images" / "test").iterdir())[0]
    answer = Predictors().predict(folder, image.read_bytes())
    above = [x["label"] for x in answer["labels"]]
    threshold = dict(zip(m["class_names"], m["thresholds"]))
    assert above == [x["class"] for x in answer["top"] if x["probability"] >= threshold[x["class"]]]


def test_two_processes_agree_on_validation_map_over_the_whole_split(tmp_path):
    """DDP: each rank validates a shard; the logged mAP is over the whole validation split (torchmetrics syncs the
    scores), so it equals the mAP of the final model's validation logits, computed once in one process."""
    from sklearn.metrics import average_precision_score

    labels = write_mosaic_set(tmp_path / "mosaics", n_train=160, n_test=40)
    run_imagefit("train", "--dataset", labels, "--model", "seed-cnn", "--epochs", "2", "--batch-size", "16",
                 "--accelerator", "cpu", "--devices", "2", "--strategy", "ddp", "--precision", "32",
                 "--val-fraction", "0.25", "--no-progress", "--name", "ddp", "--runs-dir", tmp_path / "runs",
                 "--cache-dir", tmp_path / "cache", cwd=tmp_path)
    folder = tmp_path / "runs" / "ddp"
    rows = list(csv.DictReader((folder / "history.csv").open()))
    saved = load_tensors(folder / "predictions.safetensors")
    y, scores = saved["val_labels"].numpy(), saved["val_logits"].double().numpy()
    present = [c for c in range(y.shape[1]) if y[:, c].any()]
    expected = sum(average_precision_score(y[:, c], scores[:, c]) for c in present) / len(present)
    assert len(rows) == 2 and float(rows[-1]["val_map"]) == pytest.approx(expected, abs=2e-3)
    assert json.loads((folder / "metrics.json").read_text())["task"] == "multilabel"
