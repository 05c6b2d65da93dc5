"""--logger csv,tensorboard,mlflow,wandb: what each tracker holds equals history.csv; progress lines off a terminal."""
import csv
import json
import os
import re

import pytest

import imagefit
from helpers import run_imagefit, wandb_records
from imagefit.train.loggers import EXPERIMENT, mlflow_uri

METRICS = ["train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds"]


@pytest.fixture(scope="module")
def tracked(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tracked")
    run = imagefit.train(dataset="digits", model="seed-cnn", epochs=2, batch_size=64, limit_train_batches=3,
                         runs_dir=str(tmp / "runs"), cache_dir=str(tmp / "cache"), data_dir=str(tmp / "data"),
                         progress=False, precision="32", logger="csv,tensorboard,mlflow")
    with open(run.dir / "history.csv") as f:
        history = {int(r["epoch"]): {k: float(r[k]) for k in METRICS} for r in csv.DictReader(f)}
    assert sorted(history) == [1, 2]
    return run, history


def test_csv_logger_equals_history(tracked):
    run, history = tracked
    with open(run.dir / "logs" / "csv" / "metrics.csv") as f:
        logged = {int(r["step"]): {k: float(r[k]) for k in METRICS} for r in csv.DictReader(f)}
    assert logged == history


def test_tensorboard_events_equal_history(tracked):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run, history = tracked
    events = EventAccumulator(str(run.dir / "logs" / "tensorboard"))
    events.Reload()
    for key in METRICS:
        logged = {e.step: e.value for e in events.Scalars(key)}
        assert logged.keys() == history.keys()
        assert all(logged[s] == pytest.approx(history[s][key], rel=1e-6) for s in history)  # stored as float32


def test_mlflow_run_has_params_metrics_and_the_run_folder(tracked):
    from mlflow.tracking import MlflowClient

    run, history = tracked
    client = MlflowClient(tracking_uri=mlflow_uri(run.dir.parent))
    (found,) = client.search_runs([client.get_experiment_by_name(EXPERIMENT).experiment_id])
    assert found.info.run_name == run.dir.name and found.info.status == "FINISHED"
    assert found.data.params["epochs"] == "2" and found.data.params["dataset"] == "digits"
    for key in METRICS:
        logged = {m.step: m.value for m in client.get_metric_history(found.info.run_id, key)}
        assert logged == {s: history[s][key] for s in history}
    artifacts = {a.path for a in client.list_artifacts(found.info.run_id)}
    assert {"metrics.json", "history.csv", "report.md", "model.safetensors", "config.yaml"} <= artifacts


@pytest.fixture(scope="module")
def wandb_runs(tmp_path_factory):
    """Two runs in one process with --logger wandb, no API key and nothing to reach: W&B must go offline by
    itself, and the second run must not log into the first one's W&B run."""
    pytest.importorskip("wandb")
    tmp = tmp_path_factory.mktemp("wandb")
    with pytest.MonkeyPatch.context() as mp:
        for key in ("WANDB_API_KEY", "WANDB_MODE", "WANDB_BASE_URL", "WANDB_PROJECT"):
            mp.delenv(key, raising=False)
        mp.setenv("NETRC", str(tmp / "no-netrc"))
        for key in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):  # wandb's own files, not ~/
            mp.setenv(key, str(tmp / key.lower()))
        runs = [imagefit.train(dataset="digits", model="seed-cnn", epochs=2, batch_size=64, limit_train_batches=3,
                               runs_dir=str(tmp / "runs"), cache_dir=str(tmp / "cache"), data_dir=str(tmp / "data"),
                               progress=False, precision="32", logger="wandb", name=name) for name in ("one", "two")]
        assert "WANDB_MODE" not in os.environ  # nothing set for the rest of the process
    return runs


def test_wandb_offline_writes_its_run_under_the_run_folder(wandb_runs):
    ids = []
    for run in wandb_runs:
        folders = list((run.dir / "wandb").glob("offline-run-*"))
        assert len(folders) == 1, folders  # offline, one W&B run per imagefit run
        (data,) = folders[0].glob("run-*.wandb")
        with open(run.dir / "history.csv") as f:
            history = {int(r["epoch"]): {k: float(r[k]) for k in METRICS} for r in csv.DictReader(f)}
        started, logged, config, exits = None, {}, {}, []
        for record in wandb_records(data):
            kind = record.WhichOneof("record_type")
            if kind == "run":
                started = record.run
            elif kind == "history":
                row = {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in record.history.item}
                logged[row["trainer/global_step"]] = {k: row[k] for k in METRICS}
            elif kind == "config":
                config.update({u.key: json.loads(u.value_json) for u in record.config.update if u.key})
            elif kind == "exit":
                exits.append(record.exit.exit_code)
        assert started.display_name == run.dir.name and started.project == "imagefit"
        assert logged == history
        assert config["epochs"] == 2 and config["dataset"] == "digits" and config["logger"] == ["wandb"]
        assert exits == [0]  # finished by imagefit, not left open
        ids.append(started.run_id)
    assert len(set(ids)) == 2


def test_progress_is_one_plain_line_per_epoch_off_a_terminal(tmp_path):
    proc = run_imagefit("train", "--dataset", "digits", "--epochs", "3", "--limit-train-batches", "2",
                        "--runs-dir", tmp_path / "runs", "--cache-dir", tmp_path / "cache", "--data-dir",
                        tmp_path / "data", "--precision", "32", cwd=tmp_path)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("epoch ")]
    assert [line.split(":")[0] for line in lines] == ["epoch 1/3", "epoch 2/3", "epoch 3/3"]
    assert all(re.search(r"train_loss \d\.\d{4}, train_acc .*val_acc \d\.\d{4}, \d+\.\d s$", line) for line in lines)
    assert "\r" not in proc.stdout + proc.stderr and "it/s" not in proc.stderr
