"""The learning-rate finder (`imagefit lr-find`, `--lr find`): real sweeps and short runs on digits."""
import csv
import json
import math
import re
import shlex
import shutil

import pytest
import torch
import yaml
from PIL import Image
from safetensors.torch import load_file

import imagefit
from imagefit.config import TrainConfig
from imagefit.errors import UserError
from imagefit.train.run_lock import LOCK_FILE
from helpers import run_imagefit


def cli_options(tmp_path):
    return ["--dataset", "digits", "--batch-size", "64", "--precision", "32", "--runs-dir", tmp_path / "runs",
            "--cache-dir", tmp_path / "cache", "--data-dir", tmp_path / "data", "--no-progress"]


def test_lr_find_writes_the_plot_and_json_and_prints_a_train_command_that_works(tmp_path):
    proc = run_imagefit("lr-find", *cli_options(tmp_path), "--epochs", "1", "--name", "sweep", "--min-lr", "1e-5",
                        "--steps", "40", cwd=tmp_path)
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1, proc.stdout
    said = re.fullmatch(r"suggested learning rate (\S+) \(plot: (.+)\); train with: (imagefit train .*)", lines[0])
    assert said, lines[0]
    folder = tmp_path / "runs" / "sweep"
    assert sorted(p.name for p in folder.rglob("*")) == ["lr_find.json", "lr_find.png"]  # no checkpoint, no temp file
    assert said.group(2) == str(folder / "lr_find.png")

    sweep = json.loads((folder / "lr_find.json").read_text())
    rate = sweep["suggestion"]
    assert math.isfinite(rate) and rate > 0 and float(said.group(1)) == rate
    assert sweep["min_lr"] == 1e-5 and sweep["max_lr"] == 1.0 and sweep["steps"] == 40
    assert 12 <= len(sweep["lrs"]) == len(sweep["losses"]) <= 40
    assert sweep["lrs"][0] == pytest.approx(1e-5) and sweep["lrs"] == sorted(sweep["lrs"])
    assert sweep["min_lr"] <= rate <= sweep["max_lr"]
    assert rate == pytest.approx(sweep["lrs"][sweep["index"]], rel=5e-3)  # the point it marks, to 3 digits
    assert sweep["config"]["lr"] == "find" and sweep["config"]["dataset"] == "digits"
    with Image.open(folder / "lr_find.png") as im:
        assert im.size[0] >= 600 and len(set(im.convert("L").getdata())) > 10

    command = shlex.split(said.group(3))
    assert command[command.index("--lr") + 1] == said.group(1) and "--name" not in command
    trained = run_imagefit(*command[1:], cwd=tmp_path)  # the printed command, as a user would paste it
    run_dir = next(p for p in (tmp_path / "runs").iterdir() if p.name != "sweep")
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["lr"] == rate, trained.stdout


@pytest.fixture(scope="module")
def found(tmp_path_factory):
    """`train(lr="find")` on digits, constant schedule so that every step's rate is the found one."""
    tmp = tmp_path_factory.mktemp("found")
    args = dict(dataset="digits", model="seed-cnn", epochs=2, batch_size=64, scheduler="none",
                runs_dir=str(tmp / "runs"), cache_dir=str(tmp / "cache"), progress=False, precision="32")
    return imagefit.train(lr="find", name="found", **args), args


def test_train_lr_find_trains_at_the_found_rate_and_records_it(found):
    run, _ = found
    m, folder = run.metrics, run.dir
    sweep = json.loads((folder / "lr_find.json").read_text())
    assert m["lr_found"] == sweep["suggestion"] > 0 and m["lr_find"]["steps_run"] == len(sweep["lrs"])
    rows = list(csv.DictReader(open(folder / "history.csv")))
    assert [float(r["lr"]) for r in rows] == [pytest.approx(m["lr_found"], rel=1e-5)] * 2  # the optimizer's rate
    assert yaml.safe_load((folder / "config.yaml").read_text())["lr"] == "find"
    assert TrainConfig.load(folder / "config.yaml").lr == "find"  # --config repeats the decision
    assert (folder / "lr_find.png").stat().st_size > 0 and m["time_breakdown"]["lr find"] > 0
    report = (folder / "report.md").read_text()
    assert f"lr {m['lr_found']:g}, found by Lightning's learning-rate finder" in report and "(lr_find.png)" in report
    assert not [p for p in folder.rglob("*") if "lr_find" in p.name and p.suffix not in (".json", ".png")]
    assert sorted(p.name for p in (folder / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]
    assert [p.name for p in folder.rglob(".*")] == [LOCK_FILE]  # no temporary files; the run-folder lock only


def test_a_found_rate_run_equals_a_run_at_that_rate(found):
    """The finder leaves the weights and the random state as they were: training starts from the same
    initialisation and draws the same batches as a run given the rate by hand."""
    run, args = found
    by_hand = imagefit.train(lr=run.metrics["lr_found"], name="by-hand", **args)
    ours, theirs = load_file(run.dir / "model.safetensors"), load_file(by_hand.dir / "model.safetensors")
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)


def test_the_finder_restores_the_weights_and_the_random_state(tmp_path):
    from imagefit.data.pipeline import prepare_data
    from imagefit.models import create_model
    from imagefit.train.rate_sweep import find_lr
    from imagefit.train.before_fit import make_loaders

    cfg = TrainConfig(dataset="digits", batch_size=64, cache_dir=str(tmp_path / "cache"), progress=False, precision="32")
    data = prepare_data(cfg)
    torch.manual_seed(0)
    model = create_model("seed-cnn", data.num_classes, data.channels, data.image_size, data.mean, data.std)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    loader, _ = make_loaders(cfg, data, 0)
    rng = torch.get_rng_state()
    sweep = find_lr(cfg, model, data, loader, "32", min_lr=1e-4, steps=30)
    assert len(set(sweep.losses)) > 10, "the sweep trained"
    after = model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert torch.equal(rng, torch.get_rng_state()) and loader.epoch == 0


def test_a_bad_lr_is_one_clear_line(tmp_path):
    proc = run_imagefit("train", *cli_options(tmp_path), "--lr", "fast", cwd=tmp_path, check=False)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "lr 'fast' is not a number or 'find'" in proc.stderr and "--lr find" in proc.stderr
    budget = run_imagefit("lr-find", *cli_options(tmp_path), "--time-budget", "1m", cwd=tmp_path, check=False)
    assert budget.returncode == 2 and len(budget.stderr.strip().splitlines()) == 1, budget.stderr
    assert "time budget" in budget.stderr and "no --time-budget" in budget.stderr
    assert not (tmp_path / "runs").exists()
    with pytest.raises(UserError, match="one device"):
        TrainConfig.from_dict({"lr": "find", "devices": 2})


def test_an_explicit_lr_find_wins_over_the_recipe():
    assert TrainConfig.from_dict({"recipe": "fast", "lr": "find"}).lr == "find"
    assert TrainConfig.from_dict({"recipe": "fast"}).lr == 1.5
    assert TrainConfig.from_dict({"lr": "1e-3"}).lr == 0.001  # YAML reads 1e-3 as text: still a number


def test_a_resumed_run_reads_its_sweep_instead_of_sweeping_again(found, tmp_path):
    run, _ = found
    copy = shutil.copytree(run.dir, tmp_path / "found")
    (copy / "metrics.json").unlink()  # killed after its last checkpoint, before the report
    sweep = json.loads((copy / "lr_find.json").read_text())
    sweep["suggestion"] = marked = run.metrics["lr_found"] * 1.5  # a value only the file holds
    (copy / "lr_find.json").write_text(json.dumps(sweep))
    resumed = imagefit.resume(copy, epochs=3)
    assert resumed.metrics["lr_found"] == marked and resumed.metrics["epochs_run"] == 3
    assert "lr find" not in resumed.metrics["time_breakdown"] and json.loads((copy / "lr_find.json").read_text()) == sweep
    rows = list(csv.DictReader(open(copy / "history.csv")))  # the optimizer's rate comes back from the checkpoint
    assert float(rows[-1]["lr"]) == pytest.approx(run.metrics["lr_found"], rel=1e-5)


def test_a_linear_probe_finds_its_rate_on_the_cached_features(quick, photos):
    run = imagefit.train(**{**quick, "dataset": photos, "model": "tf_efficientnet_lite0", "pretrained": True,
                            "image_size": 64, "batch_size": 8, "epochs": 1, "transfer_strategy": "linear-probe",
                            "scheduler": "none", "lr": "find"})
    m = run.metrics
    assert m["lr_found"] > 0 and m["lr_find"]["group_multipliers"] == [1.0] and m["trainable_params"] == 1280 * 3 + 3
    assert float(next(csv.DictReader(open(run.dir / "history.csv")))["lr"]) == pytest.approx(m["lr_found"], rel=1e-5)


def test_a_fine_tune_sweep_keeps_the_backbone_at_its_multiple_of_the_head_rate(tmp_path):
    """Lightning sets every parameter group to the swept rate; a fine-tune's backbone must stay at
    backbone_lr_mult times the head (timm's tiny test network: the same groups as a pretrained one)."""
    from imagefit.data.pipeline import prepare_data
    from imagefit.models import create_model
    from imagefit.train.rate_sweep import find_lr
    from imagefit.train.before_fit import make_loaders
    from imagefit.train.transfer import parameter_groups

    cfg = TrainConfig(dataset="digits", batch_size=64, cache_dir=str(tmp_path / "c"), precision="32")
    data = prepare_data(cfg)
    model = create_model("test_efficientnet", data.num_classes, data.channels, data.image_size, data.mean, data.std)
    loader, _ = make_loaders(cfg, data, 0)
    sweep = find_lr(cfg, model, data, loader, "32", parameter_groups(model, 1e-3, 0.1), min_lr=1e-4, steps=14)
    assert sweep.group_multipliers == [pytest.approx(0.1), 1.0]  # backbone, head: the sweep's rate is the head's
