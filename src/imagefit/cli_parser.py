"""The argparse tree of `imagefit`: every command and its options. Each `train` option is a TrainConfig key
(`--batch-size` for `batch_size`), generated from the dataclass with its help text, so the two cannot drift apart."""
from __future__ import annotations

import argparse
from dataclasses import fields
from pathlib import Path

from .config import TrainConfig
from .config_values import CHOICES, LIST_CHOICES


def config_help(name: str) -> str:
    """The option's help, written on its TrainConfig field (config.py), plus the allowed values and the default,
    all read from the config, so they cannot drift."""
    from dataclasses import MISSING

    field = next(f for f in fields(TrainConfig) if f.name == name)
    parts = [field.metadata["help"]]
    if name in CHOICES:
        parts.append("one of " + ", ".join(CHOICES[name]))
    if name in LIST_CHOICES:
        parts.append("any of " + ", ".join(LIST_CHOICES[name]))
    default = field.default if field.default is not MISSING else None
    if field.default_factory is not MISSING:
        default = ",".join(field.default_factory()) or "none"
    if field.type in ("bool", bool) or (field.type == "bool | None" and default is not None):
        default = "on" if default else "off"
    parts.append("default: " + ("unset" if default is None else str(default)))
    return "; ".join(parts[:1]) + " (" + "; ".join(parts[1:]) + ")"


def add_model_options(p: argparse.ArgumentParser, batch_size: int) -> None:
    """How predict and evaluate run a model: batch, runtime, precision."""
    p.add_argument("--batch-size", type=int, default=batch_size, metavar="N",
                   help=f"images per forward pass (default: {batch_size})")
    p.add_argument("--backend", choices=("onnxruntime", "openvino"), metavar="RUNTIME",
                   help="the runtime of an exported .onnx file: onnxruntime or openvino (default: onnxruntime; an "
                        "OpenVINO .xml runs on openvino, a run folder on torch)")
    p.add_argument("--precision", choices=CHOICES["precision"], default="auto",
                   help="as in training: auto = bf16 where the hardware does it natively, else 32; one of "
                        + ", ".join(CHOICES["precision"]) + " (default: auto; exported models run as exported)")


def add_config_options(parser: argparse.ArgumentParser) -> None:
    for f in fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        kwargs = {"default": argparse.SUPPRESS, "dest": f.name,
                  "help": config_help(f.name).replace("%", "%%")}  # argparse reads % as a format
        if f.type in ("bool", bool, "bool | None"):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, **kwargs)
            continue
        if f.name in CHOICES and f.name != "strategy":  # old transfer values of 'strategy' are renamed later
            kwargs["choices"] = CHOICES[f.name]
        parser.add_argument(flag, metavar=f.name.upper(), **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="imagefit", description="Train, evaluate, compare and report image classifiers. "
        "'imagefit COMMAND --help' lists a command's options with their allowed values and defaults.",
        epilog="Example: imagefit train --dataset cifar10 --recipe fast --time-budget 10m")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("train", help="train a model and write runs/<name>/ with curves, metrics and a report")
    p.add_argument("--config", dest="config_file", metavar="FILE.yaml",
                   help="a config file of TrainConfig keys (e.g. runs/<name>/config.yaml); options given here override it")
    p.add_argument("--resume", dest="resume_dir", metavar="RUN_DIR", type=Path,
                   help="continue an interrupted run from its last checkpoint")
    add_config_options(p)

    p = sub.add_parser("lr-find", help="Lightning's learning-rate finder: runs/<name>/lr_find.png and the --lr to train with",
                       description="Run Lightning's learning-rate finder (a short training sweep with a growing rate, on "
                                   "the training split only) on the run that 'imagefit train' with the same options would "
                                   "make; write lr_find.png and lr_find.json into runs/<name>/ and print the suggested "
                                   "rate with the train command that uses it. ('imagefit train --lr find' does both.)")
    p.add_argument("--config", dest="config_file", metavar="FILE.yaml", help="a config file of TrainConfig keys")
    p.add_argument("--min-lr", dest="sweep_min_lr", type=float, default=1e-8, metavar="LR",
                   help="the sweep's first rate (default: 1e-8, Lightning's)")
    p.add_argument("--max-lr", dest="sweep_max_lr", type=float, default=1.0, metavar="LR",
                   help="the sweep's last rate (default: 1)")
    p.add_argument("--steps", dest="sweep_steps", type=int, default=100, metavar="N",
                   help="training steps in the sweep, one rate each (default: 100)")
    add_config_options(p)

    p = sub.add_parser("report", help="rebuild a run's report files from what the run saved")
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a run folder (runs/<name>)")

    p = sub.add_parser(
        "study", help="run several trainings (a YAML study, or 'seed' for the built-in one) and compare them",
        description="Run a study and write its comparison. STUDY is a YAML file with 'name', 'defaults' (keys "
                    "shared by every run), 'runs' (a list, each a 'name' plus the keys it changes) and an optional "
                    "'reference'; or 'seed': the course study (a CNN from scratch, transfer learning, transfer with "
                    "early stopping). Finished runs are skipped and interrupted ones resumed. The train options below "
                    "apply to every run; --name names the study and --runs-dir is where its folder goes.")
    p.add_argument("spec", metavar="STUDY", help="a study YAML file, or 'seed' for the built-in course study")
    p.add_argument("--rerun", action="store_true",
                   help="train every run again, even those already finished (default: skip finished runs)")
    p.add_argument("--seeds", type=int, metavar="N",
                   help="repeat every run with N seeds (seed, seed+1, ...) (default: the study file's 'seeds', else 1)")
    p.add_argument("--out", type=Path, metavar="DIR", help="where the comparison goes (default: the study folder)")
    p.add_argument("--reference", metavar="RUN", help="the run the others are compared with (default: the first)")
    add_config_options(p)

    p = sub.add_parser("tune", help="search hyperparameters with Optuna within --time-budget, then retrain the best",
                       description="Trials are short runs under runs/<name>/trials/ (Optuna: TPE, successive halving "
                                   "on validation accuracy) over the keys you do not pin; the best is retrained with "
                                   "the budget left into runs/<name>/best/, and all are compared. The same command "
                                   "resumes it. See docs/tune.md.")
    p.add_argument("--config", dest="config_file", metavar="FILE.yaml", help="TrainConfig keys, and an optional 'search:'")
    p.add_argument("--trials", type=int, metavar="N", help="at most N trials (default: as many as half the budget buys)")
    p.add_argument("--search", metavar="FILE.yaml", help="the search space: 'key: {low: .., high: .., log: true}' or "
                                                         "'key: [a, b]' a line (default: see docs/tune.md)")
    add_config_options(p)

    p = sub.add_parser("compare", help="compare finished runs and evaluations: comparison.md/.html/.csv/.png",
                       description="Compare runs from their folders' files (rerun it any time). An evaluation folder "
                                   "(RUN/evaluations/<data set>/, written by imagefit evaluate) is compared like a run, "
                                   "on the data it scored.")
    p.add_argument("run_dirs", nargs="+", type=Path, metavar="RUN_DIR",
                   help="two or more run folders or evaluation folders")
    p.add_argument("--out", type=Path, metavar="DIR", help="where to write (default: the runs' common parent folder)")
    p.add_argument("--reference", metavar="RUN", help="the run the others are compared with (default: the first)")

    p = sub.add_parser("predict", help="classify images with a trained run (or an exported model)",
                       description="Classify images, folders of images or .zip files with a run's model, decoded and "
                                   "resized the way its training data was. Unreadable files are listed, not fatal.")
    p.add_argument("model_path", type=Path, metavar="RUN_DIR|FILE",
                   help="a run folder (runs/<name>), or a file written by imagefit export (.onnx, .pt, .xml)")
    p.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="image files, folders of images, or .zip files")
    p.add_argument("--top-k", type=int, default=3, metavar="K", help="classes shown per image, most probable first (default: 3)")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print JSON on stdout instead of a table (default: a table)")
    out.add_argument("--csv", type=Path, metavar="FILE",
                     help="also write FILE.csv: one row per image and rank (path, rank, class, probability)")
    add_model_options(p, batch_size=64)

    p = sub.add_parser("evaluate", help="score a finished model on new labelled data: accuracy, per-class report, "
                                        "confusion matrix", description="Score a run's model (or an exported file) on "
                       "a labelled data set it was not trained on, without retraining: RUN/evaluations/<data set>/ gets "
                       "metrics.json, report.md, the classification report, the confusion matrix and each image's "
                       "prediction. Classes are matched by name; the data may hold fewer of them than the model knows.")
    p.add_argument("model_path", type=Path, metavar="RUN_DIR|FILE",
                   help="a finished run folder, or a file written by imagefit export (.onnx, .pt, .xml)")
    p.add_argument("--dataset", required=True, help="the labelled data: a named data set, an image folder or .zip of "
                                                     "class folders, or a label file (.csv, .tsv, .parquet)")
    for name in ("images", "image_column", "label_column", "data_dir", "cache_dir"):
        p.add_argument("--" + name.replace("_", "-"), metavar=name.upper(), help=config_help(name))
    p.add_argument("--ignore-unknown-classes", action="store_true",
                   help="leave out (and count) the images of classes the model never learned, instead of refusing the "
                        "data (default: off)")
    p.add_argument("--split", choices=("all", "train", "val", "test"), default="all",
                   help="which of the data's own splits to score: all, train, val or test (default: all, every image)")
    p.add_argument("--out", type=Path, metavar="DIR", help="where to write (default: RUN_DIR/evaluations/<data set>/)")
    add_model_options(p, batch_size=256)

    p = sub.add_parser("export", help="write a run's model as ONNX, TorchScript or OpenVINO (fp32 or INT8), with its "
                                      "class names and preprocessing",
                       description="Export a run's model with its class names and preprocessing in the file. The graph "
                                   "takes uint8 images of the run's size and returns logits. Then it measures what the "
                                   "export cost on the run's test images: accuracy against the fp32 PyTorch model and "
                                   "images/s of both on this machine.")
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a finished run folder (runs/<name>)")
    p.add_argument("--format", choices=("onnx", "torchscript", "openvino"), default="onnx",
                   help="onnx (onnxruntime and other runtimes), torchscript, or openvino (OpenVINO IR: model.xml and "
                        "model.bin) (default: onnx)")
    p.add_argument("--int8", action="store_true",
                   help="post-training INT8 quantization for CPUs (onnx, openvino), calibrated on the run's validation "
                        "images, never on test (default: fp32)")
    p.add_argument("--calibration-images", type=int, default=300, metavar="N",
                   help="validation images the INT8 calibration reads (default: 300)")
    p.add_argument("--no-measure", dest="measure", action="store_false",
                   help="skip the accuracy and speed check on the run's test images (default: measure)")
    p.add_argument("--out", type=Path, metavar="FILE",
                   help="where to write (default: RUN_DIR/model.onnx, model.pt or model.xml; model-int8.* with --int8)")

    p = sub.add_parser("models", help="list the architectures imagefit can train",
                       description="List the architectures; with --budget, also say which pretrained model "
                                   "the planner would pick for it, offline and with timm's hub, and why.")
    p.add_argument("--budget", metavar="DURATION", help="a time budget (90s, 15m, 1h): print the pretrained picks for it")
    p.add_argument("--image-size", type=int, default=32, metavar="N", help="the data's image side in px (default: 32)")
    p.add_argument("--train-images", type=int, default=50000, metavar="N",
                   help="the number of training images (default: 50000, CIFAR-10's training set)")
    sub.add_parser("datasets", help="list the named data sets")

    p = sub.add_parser("serve", help="a local web page of the runs and studies, with predictions on images you drop",
                       description="Serve a web page that lists the runs and studies of a runs folder (with links to "
                                   "their reports and comparisons) and shows a run's predictions and Grad-CAM map for "
                                   "images dropped on it. Nothing is fetched from the network; no file outside the "
                                   "runs folder is served. Needs pip install 'imagefit[serve]'.")
    p.add_argument("runs_dir", nargs="?", type=Path, default=Path("runs"), metavar="RUNS_DIR",
                   help="the runs folder (default: runs)")
    p.add_argument("--host", default="127.0.0.1",
                   help="the address to listen on (default: 127.0.0.1, this machine only; 0.0.0.0 opens it to others)")
    p.add_argument("--port", type=int, default=8000, metavar="N", help="the port (default: 8000; 0 picks a free one)")
    p.add_argument("--max-upload-mb", type=float, default=16, metavar="MB",
                   help="the largest image accepted, in MB (default: 16)")
    return parser
