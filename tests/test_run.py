"""Real training runs of a few seconds, checked artifact by artifact."""
import csv
import json
import re

import pytest
import yaml
from PIL import Image
from safetensors import safe_open

from helpers import write_cifar100, write_image_folder
import imagefit
from imagefit.config import TrainConfig
from imagefit.errors import UserError

ARTIFACTS = ["config.yaml", "history.csv", "curves.png", "metrics.json", "classification_report.txt",
             "classification_report.csv", "confusion_matrix.csv", "confusion_matrix.png", "top_confusions.csv",
             "model.safetensors", "predictions.safetensors", "report.md", "data_audit.md"]


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("digits")
    return imagefit.train(dataset="digits", model="resnet9-small", epochs=3, batch_size=64, optimizer="adamw",
                          lr=0.01, scheduler="onecycle", label_smoothing=0.1, runs_dir=str(tmp / "runs"),
                          cache_dir=str(tmp / "cache"), progress=False, name="d")


def test_every_artifact_is_written(digits_run):
    for name in ARTIFACTS:
        assert (digits_run.dir / name).stat().st_size > 0, name
    assert not list(digits_run.dir.glob(".*.tmp")), "no temp files left behind"


def test_history_has_one_row_per_epoch(digits_run):
    rows = list(csv.DictReader(open(digits_run.dir / "history.csv")))
    assert list(rows[0]) == ["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds"]
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert all(0 <= float(r["val_acc"]) <= 1 and float(r["seconds"]) > 0 for r in rows)
    lrs = [float(r["lr"]) for r in rows]
    assert lrs[-1] < lrs[0], "one-cycle anneals the learning rate"


def test_classification_report_agrees_with_metrics(digits_run):
    m = json.loads((digits_run.dir / "metrics.json").read_text())
    text = (digits_run.dir / "classification_report.txt").read_text()
    accuracy = float(re.search(r"^\s*accuracy\s+([\d.]+)", text, re.M).group(1))
    assert accuracy == pytest.approx(m["test_accuracy"], abs=5e-5)
    for line in ("macro avg", "weighted avg"):
        assert line in text
    rows = list(csv.DictReader(open(digits_run.dir / "classification_report.csv")))
    assert len(rows) == m["num_classes"] + 4  # + accuracy, balanced accuracy, macro and weighted avg
    by_class = {r["class"]: r for r in rows}
    for name in m["class_names"]:  # digits' classes are "0".."9": each must be a row of numbers, not any digit
        row = re.search(rf"^\s*{re.escape(name)}\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+(\d+)\s*$", text, re.M)
        assert row, f"no row for class {name}"
        expected = by_class[name]
        for value, key in zip(row.groups(), ("precision", "recall", "f1-score", "support")):
            assert float(value) == pytest.approx(float(expected[key]), abs=5e-5), (name, key)
    cm = list(csv.reader(open(digits_run.dir / "confusion_matrix.csv")))
    counts = [[int(v) for v in r[1:]] for r in cm[1:]]
    assert sum(counts[i][i] for i in range(10)) / sum(map(sum, counts)) == pytest.approx(m["test_accuracy"])
    assert m["test_images"] == sum(map(sum, counts)) == 359
    # a real model learned something: 3 epochs of ResNet-9 on digits is far above chance
    assert m["test_accuracy"] > 0.8


def test_metrics_json_has_what_the_report_needs(digits_run):
    m = json.loads((digits_run.dir / "metrics.json").read_text())
    for key in ["test_accuracy", "test_loss", "precision_macro", "recall_macro", "f1_macro", "precision_weighted",
                "recall_weighted", "f1_weighted", "test_top5_accuracy", "epochs_run", "best_epoch", "wall_seconds",
                "train_images_per_second", "dataset", "model", "params"]:
        assert m[key] is not None, key
    assert m["epochs_run"] == 3 and 1 <= m["best_epoch"] <= 3
    from imagefit.models import count_parameters, create_model
    assert m["params"] == count_parameters(create_model("resnet9-small", 10, 1, 8))[0]
    report = (digits_run.dir / "report.md").read_text()
    assert f"{m['test_accuracy']:.4f}" in report and "overfitting" in report


def test_pngs_are_real_images(digits_run):
    for name, min_size in [("curves.png", (600, 250)), ("confusion_matrix.png", (300, 300))]:
        with Image.open(digits_run.dir / name) as im:
            im.verify()
        with Image.open(digits_run.dir / name) as im:
            assert im.size[0] >= min_size[0] and im.size[1] >= min_size[1], (name, im.size)
            assert len(set(im.convert("L").getdata())) > 10, "not a blank picture"


def test_saved_model_reproduces_the_test_predictions(digits_run):
    from imagefit.data.pipeline import prepare_data
    from imagefit.models import create_model

    cfg = TrainConfig.load(digits_run.dir / "config.yaml")
    with safe_open(str(digits_run.dir / "model.safetensors"), "pt") as f:
        meta = f.metadata()
        state = {k: f.get_tensor(k) for k in f.keys()}
    assert json.loads(meta["class_names"]) == [str(i) for i in range(10)]
    data = prepare_data(cfg)
    model = create_model(cfg.model, 10, 1, 8)
    model.load_state_dict(state)
    logits = model.eval()(data.test.images).argmax(1)
    with safe_open(str(digits_run.dir / "predictions.safetensors"), "pt") as f:
        saved = f.get_tensor("logits").argmax(1)
    assert (logits == saved).float().mean() > 0.97  # bf16 autocast at test time vs fp32 here


def test_config_yaml_reruns_to_the_same_metrics(digits_run, tmp_path):
    cfg = TrainConfig.load(digits_run.dir / "config.yaml")
    assert cfg.image_size == 8 and cfg.lr == 0.01
    again = imagefit.train(cfg)
    assert again.dir != digits_run.dir and again.dir.name == "d-2"  # never overwrites
    first = json.loads((digits_run.dir / "metrics.json").read_text())
    second = json.loads((again.dir / "metrics.json").read_text())
    for key in ["test_accuracy", "test_loss", "f1_macro", "best_epoch", "final_train_acc"]:
        assert first[key] == second[key], key
    assert (digits_run.dir / "history.csv").read_text().split("\n")[1].rsplit(",", 1)[0] == \
        (again.dir / "history.csv").read_text().split("\n")[1].rsplit(",", 1)[0]


CLOCK_KEYS = {"time_breakdown", "train_images_per_second"}  # and every "...seconds": the machine's, not the run's


def without_clock(value):
    if isinstance(value, dict):
        return {k: without_clock(v) for k, v in value.items() if k not in CLOCK_KEYS and not k.endswith("seconds")}
    return value


# seed-cnn as the course runs it, and `--recipe fast` (airbench: whitening, bf16 autocast where the CPU has it,
# light augmentation, Lookahead, six-view TTA) for a few steps at its own precision
SEEDED = {"seed-cnn": {}, "recipe-fast": dict(recipe="fast", model="airbench", image_size=16, epochs=2,
                                              batch_size=256, precision="auto")}


@pytest.mark.parametrize("settings", SEEDED.values(), ids=SEEDED.keys())
def test_same_seed_same_files_different_seed_differs(quick, settings):
    """Same seed, same machine: history.csv (but its seconds) and metrics.json (but its clock readings) are identical."""
    quick = {**quick, **settings}
    a = imagefit.train(**quick, seed=5)
    b = imagefit.train(**quick, seed=5)
    c = imagefit.train(**quick, seed=6)

    def files(run):
        history = [row.rsplit(",", 1)[0] for row in (run.dir / "history.csv").read_text().splitlines()]
        metrics = json.loads((run.dir / "metrics.json").read_text())
        metrics["data_notes"] = [n for n in metrics["data_notes"] if "GiB free" not in n]  # the machine's free RAM
        return history, without_clock(metrics)

    assert files(a) == files(b)
    assert (a.dir / "predictions.csv").read_text() == (b.dir / "predictions.csv").read_text()
    assert a.metrics["test_loss"] != c.metrics["test_loss"] and files(a)[0] != files(c)[0]


def test_a_run_without_a_test_pass_never_reads_test_and_says_so(quick, tmp_path):
    """--no-test-pass (a tune's trials): judged on validation; no test predictions, figures or temperature."""
    run = imagefit.train(**quick, test_pass=False, name="nt")
    m = run.metrics
    assert m["test_pass"] is False and m["test_images"] == 0 and m.get("test_accuracy") is None
    assert 0 < m["final_val_acc"] <= 1 and m["tta"] == "none"
    files = {p.name for p in run.dir.iterdir()}
    assert {"model.safetensors", "metrics.json", "config.yaml", "curves.png", "report.md", "report.html"} <= files
    assert not files & {"predictions.safetensors", "confusion_matrix.csv", "classification_report.csv",
                        "misclassified.png", "reliability.png"}
    report = (run.dir / "report.md").read_text()
    assert "No test pass" in report and "## Test metrics" not in report and "Final validation accuracy" in report
    assert "test_pass: false  # user" in (run.dir / "config.yaml").read_text()
    with safe_open(str(run.dir / "model.safetensors"), "pt") as f:  # still a model predict can load
        assert "temperature" not in f.metadata() and json.loads(f.metadata()["class_names"]) == m["class_names"]


def test_user_errors_leave_nothing_under_runs(quick, tmp_path):
    with pytest.raises(UserError, match="unknown model"):
        imagefit.train(**{**quick, "model": "no-such-net"})
    with pytest.raises(UserError, match="unknown data set"):
        imagefit.train(**{**quick, "dataset": "no-such-set"})
    assert not (tmp_path / "runs").exists()


def test_config_yaml_is_the_whole_resolved_configuration(quick):
    run = imagefit.train(**quick)
    saved = yaml.safe_load((run.dir / "config.yaml").read_text())
    assert set(saved) == {f for f in TrainConfig.__dataclass_fields__}
    assert saved["name"] == run.dir.name and saved["image_size"] == 8 and saved["lr"] == 1e-3


@pytest.mark.parametrize("kind", ["folder", "zip", "cifar100"])
def test_trains_on_every_kind_of_source(quick, tmp_path, kind):
    import shutil

    args = dict(quick, epochs=1, batch_size=16)
    if kind == "cifar100":
        write_cifar100(tmp_path / "data")
        args.update(dataset="cifar100", data_dir=str(tmp_path / "data"))
    else:
        write_image_folder(tmp_path / "photos")
        dataset = tmp_path / "photos"
        if kind == "zip":
            dataset = shutil.make_archive(str(tmp_path / "photos"), "zip", tmp_path / "photos")
        args.update(dataset=str(dataset))
    run = imagefit.train(**args)
    m = run.metrics
    for name in ARTIFACTS:
        assert (run.dir / name).stat().st_size > 0, name
    text = (run.dir / "classification_report.txt").read_text()
    assert float(re.search(r"^\s*accuracy\s+([\d.]+)", text, re.M).group(1)) == pytest.approx(m["test_accuracy"], abs=5e-5)
    if kind == "cifar100":
        assert m["num_classes"] == 100 and "test_top5_accuracy" in m and m["test_images"] == 100
        with Image.open(run.dir / "confusion_matrix.png") as im:
            assert min(im.size) >= 1000  # readable at 100 classes
    else:
        assert m["image_size"] in (19, 20)  # the median shorter side: heights 18..22, width 22
        assert m["channels"] == 3 and m["num_classes"] == 3
        assert any("test" in note for note in m["data_notes"])  # the carved test split is recorded


def test_streaming_loader_trains_to_the_same_artifacts(quick):
    run = imagefit.train(**quick, loader="stream", num_workers=1)
    assert run.metrics["loader"] == "stream"
    assert any("loader 'stream' as configured" in n.lower() for n in run.metrics["data_notes"])
    assert run.metrics["train_images"] + run.metrics["val_images"] + run.metrics["test_images"] == 1797
    for name in ARTIFACTS:
        assert (run.dir / name).stat().st_size > 0, name


def _claim(args):
    from imagefit.train.before_fit import unique_run_dir

    return str(unique_run_dir(*args))


def test_runs_started_at_once_with_one_name_get_their_own_folders(tmp_path):
    import multiprocessing as mp
    from pathlib import Path

    args = [(tmp_path / "runs", "same")] * 8
    with mp.get_context("fork").Pool(8) as pool:
        claimed = pool.map(_claim, args)
    assert len(set(claimed)) == 8 and all(Path(p).is_dir() for p in claimed)
    assert sorted(Path(p).name for p in claimed) == sorted(["same"] + [f"same-{n}" for n in range(2, 9)])


def test_alternating_flip_is_said_and_falls_back_to_random_when_streaming(quick):
    run = imagefit.train(**{**quick, "epochs": 1}, augment="light", flip="alternating")
    assert "Flips: alternating, each training image mirrored in every other epoch." in run.metrics["data_notes"]
    assert yaml.safe_load((run.dir / "config.yaml").read_text())["flip"] == "alternating"
    streamed = imagefit.train(**{**quick, "epochs": 1}, augment="light", flip="alternating", loader="stream",
                              num_workers=0)
    assert any(n.startswith("Flips: random (alternating flips need the in-memory loader")
               for n in streamed.metrics["data_notes"])
