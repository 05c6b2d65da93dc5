"""`imagefit` on the command line: a thin layer over the Python API, one function a command.

The options are cli_parser.py's: every `train` option is a TrainConfig key (`--batch-size` for `batch_size`),
generated from the dataclass; `--config FILE.yaml` gives the same keys and the command line overrides the file.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings
from pathlib import Path

from . import IMPORTED_AT as PROCESS_STARTED  # imagefit's first line: a run's wall clock starts there
from .cli_parser import build_parser
from .config import TrainConfig
from .errors import UserError


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
