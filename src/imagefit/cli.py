"""`imagefit` on the command line: a thin layer over the Python API.

Every `train` option is a TrainConfig key (`--batch-size` for `batch_size`), generated from the
dataclass so the two can never drift apart; `--config FILE.yaml` gives the same keys and the
command line overrides the file.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings
from dataclasses import fields
from pathlib import Path

from . import IMPORTED_AT as PROCESS_STARTED  # imagefit's first line: a run's wall clock starts there
from .config import CHOICES, LIST_CHOICES, TrainConfig
from .errors import UserError


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


def result_head(m: dict, top5: bool = True) -> str:
    """A finished run's result in one line's head: its test numbers, or its validation accuracy without a test pass."""
    if m.get("test_pass") is False:
        val = m.get("final_val_acc")
        return f"no test pass; validation accuracy {val:.4f}" if val is not None else "no test pass, no validation"
    if m.get("task") == "multilabel":
        head = f"test mAP {m['test_map']:.4f}, macro F1 {m['f1_macro']:.4f} at the validation thresholds"
    else:
        head = f"test accuracy {m['test_accuracy']:.4f}"
        head += f", top-5 {m['test_top5_accuracy']:.4f}" if top5 and "test_top5_accuracy" in m else ""
    return f"{head}, test loss {m['test_loss']:.4f}"


def cmd_train(args: argparse.Namespace) -> int:
    overrides = {k: v for k, v in vars(args).items() if k not in ("command", "config_file", "resume_dir")}
    if args.resume_dir:
        from .train import resume

        run = resume(args.resume_dir, started=PROCESS_STARTED, **overrides)
    else:  # the configuration is checked before torch and Lightning are imported: a mistake is told at once
        cfg = (TrainConfig.load(args.config_file, overrides) if args.config_file
               else TrainConfig.from_dict(overrides, source="the command line"))
        from .train import train

        run = train(cfg, started=PROCESS_STARTED)
    if run.metrics:
        m = run.metrics
        state = " (interrupted)" if m.get("interrupted") else ""
        print(f"{result_head(m)}{state}; {m['epochs_run']} epochs in {m['wall_seconds']:.0f} s")
        if m.get("lr_found"):
            print(f"learning rate {m['lr_found']:g}, from the learning-rate finder: {run.dir / 'lr_find.png'}")
        for sentence in m.get("diagnosis") or []:
            print(sentence)
        print(f"report: {run.dir / 'report.md'}")
    return 0


def cmd_lr_find(args: argparse.Namespace) -> int:
    import shlex

    from .train import lr_find

    sweep_keys = ("sweep_min_lr", "sweep_max_lr", "sweep_steps")
    overrides = {k: v for k, v in vars(args).items() if k not in ("command", "config_file", *sweep_keys)}
    if overrides.get("lr") is not None:
        raise UserError(f"lr-find chooses the learning rate, so --lr {overrides['lr']} has no use here", "leave --lr out")
    sweep_range = dict(min_lr=args.sweep_min_lr, max_lr=args.sweep_max_lr, steps=args.sweep_steps)
    cfg = (TrainConfig.load(args.config_file, {**overrides, "lr": "find"}) if args.config_file
           else TrainConfig.from_dict({**overrides, "lr": "find"}, source="the command line"))
    sweep = lr_find(cfg, started=PROCESS_STARTED, **sweep_range)
    command = ["imagefit", "train"] + (["--config", args.config_file] if args.config_file else [])
    for key, value in overrides.items():
        if key == "name":  # the name was the sweep's folder
            continue
        flag = "--" + key.replace("_", "-")
        command += ([flag if value else "--no-" + flag[2:]] if isinstance(value, bool) else [flag, str(value)])
    command += ["--lr", f"{sweep.suggestion:g}"]
    print(f"suggested learning rate {sweep.suggestion:g} (plot: {sweep.dir / 'lr_find.png'}); train with: "
          f"{shlex.join(command)}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from .report.run_report import rebuild_report

    print(f"report: {rebuild_report(args.run_dir)}")
    return 0


def cmd_study(args: argparse.Namespace) -> int:
    from .study import study

    if args.seeds is not None and args.seeds < 1:
        raise UserError(f"--seeds must be at least 1, got {args.seeds}", "pass --seeds 3")
    overrides = {k: v for k, v in vars(args).items()
                 if k not in ("command", "spec", "rerun", "seeds", "out", "reference")}
    try:
        result = study(args.spec, seeds=args.seeds, rerun=args.rerun, out=args.out, reference=args.reference,
                       **overrides)
    except KeyboardInterrupt:  # between runs (inside one, training stops cleanly and the study returns)
        print("study interrupted: run the same command again to resume it", file=sys.stderr)
        return 130
    for r in result.runs:
        m = r.metrics
        if m:
            print(f"{r.name:28s} {r.status:11s} {result_head(m, top5=False)}; {m['epochs_run']} epochs, "
                  f"{m['wall_seconds']:.0f} s")
    if result.comparison:
        print(f"comparison: {result.comparison.html}")
        print(f"            {result.comparison.markdown}")
    if result.interrupted:
        print("study interrupted: run the same command again to resume it", file=sys.stderr)
        return 130
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    from .study.tune import tune

    options = {k: v for k, v in vars(args).items() if k not in ("command", "config_file", "trials", "search")}
    try:  # tune prints a line per trial, then the best run's and the comparison's paths
        tune(args.config_file, trials=args.trials, search=args.search, started=PROCESS_STARTED, echo=print, **options)
    except KeyboardInterrupt:
        print("tune interrupted: run the same command again to resume it", file=sys.stderr)
        return 130
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from .report.compare import compare

    result = compare(args.run_dirs, out=args.out, reference=args.reference)
    for line in result.sentences:
        print(f"- {line}")
    print(f"comparison: {result.html}")
    print(f"            {result.markdown}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    import csv
    import io
    import json

    from . import atomic
    from .inference import load

    predictor = load(args.model_path, precision=args.precision, backend=args.backend)
    result = predictor.predict(args.paths, top_k=args.top_k, batch_size=args.batch_size)
    speed = (f"{len(result)} images in {result.seconds:.2f} s ({result.images_per_second:.0f} images/s, "
             f"{predictor.precision} on {predictor.device}); {len(result.unreadable)} unreadable")
    if args.json:
        print(json.dumps({"model": str(args.model_path), "class_names": predictor.class_names,
                          "predictions": [{"path": p.source, "top": [{"class": c, "probability": round(v, 6)}
                                                                    for c, v in p.top],
                                           **({"labels": [{"label": c, "probability": round(v, 6)} for c, v in p.labels]}
                                              if p.labels is not None else {})} for p in result],
                          "unreadable": [{"path": n, "error": e} for n, e in result.unreadable],
                          "images_per_second": round(result.images_per_second, 1)}, indent=1))
    else:
        for p in result:
            if p.labels is not None:  # multi-label: every label at or above its threshold
                print(f"{p.source}: " + (", ".join(f"{c} {v:.3f}" for c, v in p.labels) or "no label above its "
                      f"threshold (most probable: {p.top[0][0]} {p.top[0][1]:.3f})"))
            else:
                print(f"{p.source}: " + ", ".join(f"{c} {v:.3f}" for c, v in p.top))
    for name, error in result.unreadable:
        print(f"unreadable: {name} ({error})", file=sys.stderr)
    if args.csv:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["path", "rank", "class", "probability"])
        for p in result:
            w.writerows([p.source, rank, c, f"{v:.6f}"] for rank, (c, v) in enumerate(p.top, 1))
        atomic.write_text(args.csv, buf.getvalue())
        print(f"predictions: {args.csv}", file=sys.stderr if args.json else sys.stdout)
    print(speed, file=sys.stderr if args.json else sys.stdout)
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .inference import load

    options = {k: getattr(args, k) for k in ("images", "image_column", "label_column", "data_dir", "cache_dir")
               if getattr(args, k) is not None}
    predictor = load(args.model_path, precision=args.precision, backend=args.backend)
    m = predictor.evaluate(args.dataset, args.out, split=args.split, batch_size=args.batch_size,
                           ignore_unknown_classes=args.ignore_unknown_classes, **options)
    if m.get("task") == "multilabel":
        print(f"mAP {m['test_map']:.4f}, macro F1 {m['f1_macro']:.4f} at the run's thresholds, subset accuracy "
              f"{m['test_subset_accuracy']:.4f} on {m['images']:,} images of {args.dataset}; "
              f"{m['skipped_files']['count']} skipped")
    else:
        print(f"accuracy {m['test_accuracy']:.4f}, balanced accuracy {m['test_balanced_accuracy']:.4f}, loss "
              f"{m['test_loss']:.4f} on {m['images']:,} images of {args.dataset}; {m['skipped_files']['count']} skipped")
    print(f"report: {Path(m['folder']) / 'report.md'}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from .export import export, file_size, measure

    path = export(args.run_dir, args.format, args.out, int8=args.int8, calibration_images=args.calibration_images)
    print(f"exported: {path} ({file_size(path) / 2**20:.1f} MiB)")
    if args.measure:
        m = measure(args.run_dir, path)
        what, same = (("subset accuracy", "the same labels at the run's thresholds") if m["multilabel"]
                      else ("test accuracy", "the same top class"))
        print(f"{what} {m['exported_accuracy']:.4f} against {m['fp32_accuracy']:.4f} for the fp32 PyTorch model "
              f"({m['exported_accuracy'] - m['fp32_accuracy']:+.4f}; {same} on {m['agreement']:.1%} of "
              f"{m['test_images']:,} test images); {m['exported_images_per_second']:,.0f} images/s against "
              f"{m['fp32_images_per_second']:,.0f} at batch {m['batch_size']} on this machine")
    print(f"predict with: imagefit predict {path} IMAGES...")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    import timm

    from .models import OWN_MODELS
    from .models.recommend import DEFAULT_GFLOPS, recommend
    from .models.weight_sources import available_offline

    where = available_offline()
    picks = []
    if args.budget:
        seconds = TrainConfig(time_budget=args.budget).budget_seconds  # --time-budget's parser
        here = [name for name, source in where.items() if not source.endswith("(online only)")]
        picks = [(label, recommend(seconds, args.image_size, args.train_images, offline, here))
                 for label, offline in (("offline", True), ("online", False))]
    print("From scratch (--model NAME):")
    for name, (_, about) in OWN_MODELS.items():
        print(f"  {name:24s} {about}")
    print(f"  {'<any timm name>':24s} {len(timm.list_models())} architectures, e.g. resnet18, convnext_atto, vit_tiny_patch16_224")
    print("Pretrained on ImageNet (--model NAME --pretrained), and where the weights come from on this machine:")
    for name, source in where.items():
        print(f"  {name:24s} offline: {source}")
    print(f"  {'<any timm name>':24s} timm's hub when online ({len(timm.list_models(pretrained=True))} weight sets), "
          "or --weights FILE (safetensors or a torch state dict)")
    if picks:
        print(f"Pretrained pick for a {args.budget} budget ({args.train_images} training images of {args.image_size} px, "
              f"a CPU at {DEFAULT_GFLOPS:.0f} GFLOP/s):")
        for label, pick in picks:
            print(f"  {label + ':':9s}{pick.model}: {pick.why}")
    return 0


def cmd_datasets(args: argparse.Namespace) -> int:
    from .data.sources import DATASETS

    for name, about in DATASETS.items():
        print(f"{name:14s} {about}")
    print(f"{'PATH':14s} a folder or .zip of images: train/<class>/* (optional val/, test/) or <class>/* at the top")
    print(f"{'FILE.csv':14s} a label file (.csv, .tsv, .parquet): one row per image, its path and class (--images, "
          "--image-column, --label-column)")
    print(f"{'hf:NAME':14s} a Hugging Face data set (hf:NAME[:CONFIG], or hf:FOLDER written by save_to_disk); "
          "pip install 'imagefit[hf]'")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from .serve import serve

    return serve(args.runs_dir, host=args.host, port=args.port, max_upload_mb=args.max_upload_mb)


def main(argv: list[str] | None = None) -> int:
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")  # lightning's own, about torch's pytree
    # a class named in a script the plot font lacks (犬): matplotlib draws a box and warns, in lines not imagefit's;
    # the names stay readable in report.md's tables
    warnings.filterwarnings("ignore", message=r"Glyph \d+ .* missing from")
    args = build_parser().parse_args(argv)
    # only rank 0 of a distributed launch speaks (the rank as train.run.launched_rank reads it, without its imports)
    rank = int(os.environ.get("RANK", os.environ.get("SLURM_PROCID", os.environ.get("LOCAL_RANK", 0))))
    logging.basicConfig(level=logging.INFO if rank == 0 else logging.WARNING, format="imagefit: %(message)s")
    commands = {"train": cmd_train, "lr-find": cmd_lr_find, "report": cmd_report, "study": cmd_study, "tune": cmd_tune, "compare": cmd_compare,
                "models": cmd_models, "datasets": cmd_datasets, "predict": cmd_predict, "export": cmd_export,
                "evaluate": cmd_evaluate, "serve": cmd_serve}
    try:
        return commands[args.command](args)
    except UserError as e:
        print(f"imagefit: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
