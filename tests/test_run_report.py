import csv
import json
import re

import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from imagefit.config import TrainConfig
from imagefit.errors import UserError
from imagefit.evaluate import metrics as M
from imagefit.report import rebuild_report, write_run_report
from imagefit.report.observations import overfitting_sentence, compare_test_val_sentence, val_loss_sentence

# val loss lowest at epoch 3 (0.5000), then rises to 0.8000 at epoch 6
HISTORY = [
    # epoch, train_loss, train_acc, val_loss, val_acc
    (1, 1.9, 0.40, 1.2000, 0.45),
    (2, 1.2, 0.60, 0.7000, 0.62),
    (3, 0.8, 0.75, 0.5000, 0.70),
    (4, 0.5, 0.85, 0.6000, 0.69),
    (5, 0.3, 0.92, 0.7000, 0.70),
    (6, 0.2, 0.95, 0.8000, 0.70),
]
EVALUATION_FILES = ["classification_report.txt", "classification_report.csv", "confusion_matrix.csv",
                    "confusion_matrix.png", "top_confusions.csv", "predictions.csv"]


def make_run(root, k=12, n_per_class=20, history=HISTORY, with_val=True, interrupted=False, name="demo"):
    """A run folder written by hand, the way the training code writes it: only for the sentences that need
    numbers a short real run does not produce (validation loss lowest at epoch 3 of 6 and rising after it, a
    weakest class with a known confusion, no validation split, an interrupted run). Tests about reporting a
    real run use the `real_run` fixture (conftest.py) instead."""
    run = root / name
    run.mkdir()
    TrainConfig(name=name, dataset="shapes", model="seed-cnn", epochs=10, optimizer="adamw", lr=0.003,
                scheduler="cosine", batch_size=64, seed=7, image_size=32).save(run / "config.yaml")
    with open(run / "history.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds"])
        for e, tl, ta, vl, va in history:
            w.writerow([e, tl, ta, vl if with_val else "", va if with_val else "", 0.003, 2.5])
    names = [f"shape{i}" for i in range(k)]
    labels = torch.arange(k).repeat_interleave(n_per_class)
    predicted = labels.clone()
    for i in range(k):  # class i loses i images (capped) to the next class: shape{k-1} is the weakest
        lost = min(i, n_per_class - 1)
        predicted[i * n_per_class : i * n_per_class + lost] = (i + 1) % k
    logits = 4.0 * torch.nn.functional.one_hot(predicted, k).float()
    save_file({"logits": logits, "labels": labels}, str(run / "predictions.safetensors"))
    last = history[-1]
    best = min(history, key=lambda r: r[3])
    metrics = {
        "dataset": "shapes", "model": "seed-cnn", "params": 123456, "trainable_params": 123456, "num_classes": k,
        "class_names": names, "image_size": 32, "train_images": 1000, "val_images": 120 if with_val else 0,
        "test_images": len(labels), "epochs": 10, "epochs_run": len(history), "best_epoch": best[0] if with_val else None,
        "wall_seconds": 75.5, "train_seconds": 60.0, "train_images_per_second": 1234.5, "precision": "bf16-mixed",
        "final_train_acc": last[2], "final_val_acc": last[4] if with_val else None,
        "best_val_loss": best[3] if with_val else None, "best_val_acc": best[4] if with_val else None,
        "data_notes": ["Images were resized to 32x32.", "Validation was carved from train (10%)."],
        "interrupted": interrupted,
        "stopped_early": len(history) < 10 and not interrupted, "stop_epoch": len(history), "epochs_saved": 10 - len(history),
        "early_stopping": {"monitor": "val_loss", "patience": 2, "min_delta": 0.0, "start_from_epoch": 0,
                           "restore_best": True},
    }
    (run / "metrics.json").write_text(json.dumps(metrics))
    return run, logits, labels, names


def test_rebuild_regenerates_every_file(real_run):
    from safetensors.torch import load_file

    tensors = load_file(real_run / "predictions.safetensors")
    trained = json.loads((real_run / "metrics.json").read_text())
    expected = M.test_metrics(tensors["logits"], tensors["labels"], trained["class_names"])
    assert trained["test_accuracy"] == pytest.approx(expected["test_accuracy"])  # what training wrote

    # stale or deleted files come back from predictions.safetensors alone
    for f in EVALUATION_FILES + ["curves.png", "report.md", "report.html"]:
        (real_run / f).unlink()
    (real_run / "metrics.json").write_text(json.dumps({**trained, "test_accuracy": 0.0}))
    assert rebuild_report(real_run) == real_run / "report.md"
    for f in EVALUATION_FILES + ["curves.png", "report.md", "report.html"]:
        assert (real_run / f).is_file(), f
    for png in ("curves.png", "confusion_matrix.png"):
        with Image.open(real_run / png) as im:
            assert im.format == "PNG" and im.size[0] >= 800
    metrics = json.loads((real_run / "metrics.json").read_text())
    assert metrics["test_accuracy"] == trained["test_accuracy"]
    assert metrics["dataset"] == "digits" and metrics["params"] == trained["params"]  # training keys survive
    text = (real_run / "classification_report.txt").read_text()
    accuracy_line = next(line for line in text.splitlines() if line.strip().startswith("accuracy"))
    assert accuracy_line.split()[1] == f"{trained['test_accuracy']:.4f}"
    assert f"| Test accuracy | {trained['test_accuracy']:.4f} |" in (real_run / "report.md").read_text()
    assert not list(real_run.glob(".*.tmp")) and not list(real_run.glob("*.tmp"))  # no temporary file left


def test_the_report_of_a_real_run_shows_its_files_numbers(real_run):
    rebuild_report(real_run)
    md = (real_run / "report.md").read_text()
    m = json.loads((real_run / "metrics.json").read_text())
    assert md.startswith("# Run real: seed-cnn on digits\n")
    for piece in ["| Seed | 0 |", "| Batch size | 64 |", "| Epochs | 2 configured, 2 run |", "| Precision | 32 |",
                  f"| Test images | {m['test_images']:,} |", f"| Test loss | {m['test_loss']:.4f} |",
                  f"| F1 (macro average) | {m['f1_macro']:.4f} |", "| Epochs run | 2 of 2 |",
                  f"{m['train_images']:,} train, {m['val_images']:,} val, {m['test_images']:,} test; 10 classes"]:
        assert piece in md, piece
    rows = list(csv.DictReader(open(real_run / "classification_report.csv")))
    for r in rows[:10]:  # the 10 digits, each a row of the per-class table
        assert (f"| {r['class']} | {float(r['precision']):.4f} | {float(r['recall']):.4f} | "
                f"{float(r['f1-score']):.4f} | {int(float(r['support']))} |") in md, r["class"]
    for top in m["top_confusions"][:3]:
        assert f"| {top['true']} → {top['predicted']} | {top['count']} |" in md
    pictures = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert {"curves.png", "confusion_matrix.png"} <= set(pictures) and all((real_run / p).is_file() for p in pictures)
    listed = re.findall(r"^- `([^`]+)`", md.split("## Files in this folder")[1], re.M)
    files = {p.name for p in real_run.iterdir() if p.is_file() and p.name != ".imagefit.lock"}  # the run's lock: bookkeeping
    assert set(listed) == files - {"report.html"} and "metrics.json" in listed
    said = md.split("## What the numbers say")[1]
    assert f"train accuracy was {m['final_train_acc']:.3f} and validation accuracy {m['final_val_acc']:.3f}" in said


def test_report_content(tmp_path):
    run, logits, labels, _ = make_run(tmp_path)
    md = rebuild_report(run).read_text()
    acc = M.test_metrics(logits, labels, [str(i) for i in range(12)])["test_accuracy"]
    assert md.startswith("# Run demo: seed-cnn on shapes")
    for piece in ["123,456 parameters", "32×32 px", "adamw, lr 0.003", "cosine", "bf16-mixed", "| Seed | 7 |",
                  "1,000 train, 120 val, 240 test", "Images were resized to 32x32.", "![curves](curves.png)",
                  "![confusion matrix](confusion_matrix.png)", f"| Test accuracy | {acc:.4f} |", "Test top-5 accuracy",
                  "F1 (macro average)", "6 of 10", "1 min 16 s", "1,234", "The 5 best classes by F1",
                  "The 5 worst classes by F1", "shape11 → shape0", "55.0% of shape11", "`predictions.csv`",
                  "`history.csv`", "`metrics.json`", "Early stopping ended training after 6 of 10 epochs",
                  "Early stopping (patience 2 epochs on val_loss) ended training at epoch 6 of 10, saving 4 epochs"]:
        assert piece in md, piece
    said = md.split("## What the numbers say")[1]
    assert "train accuracy was 0.950 and validation accuracy 0.700: a gap of 0.250 points, a sign of heavy overfitting" in said
    assert "lowest at epoch 3 (0.5000) and rose by 0.3000 to 0.8000 by epoch 6" in said
    assert "training past epoch 3 did not help validation loss" in said
    assert f"Test accuracy {acc:.3f}" in said and "best validation accuracy 0.700" in said
    assert "The weakest class is shape11" in said and "mistaken for shape0 (11 times" in said


def test_ten_classes_are_listed_each(real_run):
    md = write_run_report(real_run).read_text()
    section = md.split("## Per-class results")[1].split("\n## ")[0]
    assert [line.split("|")[1].strip() for line in section.splitlines() if line.startswith("| ")][1:] == \
        [str(i) for i in range(10)]
    assert "5 best" not in md


def test_no_validation_split(tmp_path):
    run, *_ = make_run(tmp_path, with_val=False)
    md = rebuild_report(run).read_text()
    assert "no validation split" in md
    assert "compare the last train accuracy 0.950 with the test accuracy" in md and "(a gap of" in md
    assert "– (no validation)" in md and "sign of" not in md.split("What the numbers say")[1] and "Validation loss was lowest" not in md


def test_one_epoch_interrupted(tmp_path):
    run, *_ = make_run(tmp_path, history=HISTORY[:1], interrupted=True)
    md = rebuild_report(run).read_text()
    assert "**Interrupted run.** Training was stopped after 1 of 10 epochs" in md
    assert "Only one epoch ran (validation loss 1.2000)" in md


def test_missing_predictions_still_reports(real_run):
    (real_run / "predictions.safetensors").unlink()
    (real_run / "curves.png").unlink()
    metrics = json.loads((real_run / "metrics.json").read_text())
    (real_run / "metrics.json").write_text(json.dumps({k: v for k, v in metrics.items() if not k.startswith("test_")}))
    md = rebuild_report(real_run).read_text()
    assert "No test metrics" in md and "## Set-up" in md and (real_run / "curves.png").is_file()


def test_write_run_report_on_bare_folder(tmp_path):
    md = write_run_report(tmp_path).read_text()
    assert md.startswith(f"# Run {tmp_path.name}")


@pytest.mark.parametrize("folder", ["missing", "empty", "only_config"])
def test_not_a_run_folder(tmp_path, folder):
    path = tmp_path / folder
    if folder != "missing":
        path.mkdir()
    if folder == "only_config":
        TrainConfig().save(path / "config.yaml")
    with pytest.raises(UserError, match="is not an imagefit run folder") as err:
        rebuild_report(path)
    assert "metrics.json" in err.value.fix


@pytest.mark.parametrize("train,val,verdict", [
    (0.80, 0.79, "no sign of overfitting"),
    (0.80, 0.771, "no sign of overfitting"),
    (0.80, 0.769, "mild overfitting"),
    (0.80, 0.71, "mild overfitting"),
    (0.80, 0.699, "heavy overfitting"),
    (0.80, 0.38, "heavy overfitting"),
    (0.90, 0.93, "no sign of overfitting"),
])
def test_overfitting_thresholds(train, val, verdict):
    assert verdict in overfitting_sentence(train, val)


def test_overfitting_sentence_wording():
    assert overfitting_sentence(0.80, 0.38) == (
        "At the last epoch train accuracy was 0.800 and validation accuracy 0.380: a gap of 0.420 points, "
        "a sign of heavy overfitting.")
    assert "validation was 0.030 points higher" in overfitting_sentence(0.90, 0.93)


def test_val_loss_and_test_sentences():
    rows = [{"epoch": e, "val_loss": v} for e, v in [(1, 0.9), (2, 0.6), (3, 0.5)]]
    assert "lowest at the last epoch, 3" in val_loss_sentence(rows, 3)
    assert val_loss_sentence([{"epoch": 1, "val_loss": None}], None) is None
    assert "close to" in compare_test_val_sentence(0.905, 0.917)
    assert "0.067 below" in compare_test_val_sentence(0.850, 0.917, 100)
    assert "above" in compare_test_val_sentence(0.95, 0.90)
