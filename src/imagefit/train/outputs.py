"""What a finished run leaves behind: the model, its predictions, metrics.json, plots and the report."""
from __future__ import annotations

import json
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

from .. import atomic
from ..config import TrainConfig
from ..data.audit import summary as audit_summary
from ..data.pipeline import SKIPPED_SHOWN, PreparedData
from ..data.sources import dataset_slug
from .clock import Stopwatch
from .history import HistoryWriter


def multilabel_thresholds(cfg: TrainConfig, data: PreparedData, val_logits: torch.Tensor | None) -> dict:
    """One threshold per label, chosen on validation (never on test): the F1-best of each label, or --threshold."""
    from ..evaluate.multilabel import choose_thresholds

    k = data.num_classes
    if cfg.threshold_policy == "f1" and val_logits is not None and len(val_logits):
        probs = torch.sigmoid(val_logits.double())
        thresholds = choose_thresholds(probs, data.val.labels, policy="f1", fixed=cfg.threshold)
        source = f"the F1-best of each label on the {len(val_logits):,} validation images"
    else:
        thresholds = [float(cfg.threshold)] * k
        source = (f"--threshold {cfg.threshold:g} for every label" if cfg.threshold_policy == "fixed" else
                  f"{cfg.threshold:g} for every label: no validation split to choose them on")
    return {"thresholds": [round(float(t), 6) for t in thresholds], "threshold_policy": cfg.threshold_policy,
            "thresholds_from": source}


def finish_run(run_dir: Path, cfg: TrainConfig, data: PreparedData, model: torch.nn.Module,
               logits: torch.Tensor | None, labels: torch.Tensor | None, history: HistoryWriter, precision: str,
               total_params: int, trainable_params: int, started: float, interrupted: bool,
               extra: dict | None = None, watch: Stopwatch | None = None,
               val_logits: torch.Tensor | None = None) -> dict:
    from ..evaluate.error_analysis import write_error_analysis
    from ..evaluate.metrics import write_evaluation
    from ..evaluate.plots import plot_curves
    from ..evaluate.shortfalls import diagnose
    from ..report.run_report import write_run_report

    rows = history.rows
    with_val = [r for r in rows if r["val_loss"] != ""]
    sign = 1 if cfg.monitor_mode == "min" else -1
    best = min(with_val, key=lambda r: sign * r[cfg.monitor]) if with_val else (rows[-1] if rows else None)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    meta = {"class_names": json.dumps(data.class_names), "model": cfg.model, "image_size": str(data.image_size),
            "channels": str(data.channels), "input_size": str(getattr(model, "input_size", None) or data.image_size),
            "format": "imagefit-1"}
    if data.decoded_side and data.decoded_side != data.image_size:  # new images go the same way (data/resize.py)
        meta["decoded_size"] = str(data.decoded_side)
    if data.train.multilabel:  # multi-label: thresholds chosen on validation travel with the model
        analysis = multilabel_thresholds(cfg, data, val_logits)
        meta.update(task="multilabel", thresholds=json.dumps(analysis["thresholds"]))
    elif labels is not None:
        analysis = write_error_analysis(run_dir, data, logits, labels, val_logits, model=model)
    else:  # --no-test-pass: nothing was predicted; the model is saved as it trained
        analysis = {}
    if analysis.get("temperature") is not None:  # fitted on validation: a later predict divides by it
        meta["temperature"] = repr(analysis["temperature"])
    with atomic.atomic_path(run_dir / "model.safetensors") as tmp:
        save_file(state, str(tmp), metadata=meta)
    if labels is not None:
        saved = {"logits": logits.contiguous(), "labels": labels.contiguous()}
        if val_logits is not None:
            saved.update(val_logits=val_logits.contiguous(), val_labels=data.val.labels.contiguous())
        with atomic.atomic_path(run_dir / "predictions.safetensors") as tmp:
            save_file(saved, str(tmp))
    if labels is None:
        test = {"test_pass": False, **analysis, **({"task": "multilabel"} if data.train.multilabel else {})}
    elif labels.ndim == 2:
        from ..evaluate.multilabel import write_multilabel_evaluation

        pictures = data.test_pictures
        test = {**analysis, **write_multilabel_evaluation(run_dir, logits, labels, data.class_names,
                                                          analysis["thresholds"], files=pictures.files,
                                                          images=pictures.take(0, len(pictures)))}
    else:
        test = {**write_evaluation(run_dir, logits, labels, data.class_names), **analysis}
    epochs_run = len(rows)
    metrics = {
        "dataset": cfg.dataset, "model": cfg.model, "params": total_params, "trainable_params": trainable_params,
        "num_classes": data.num_classes, "class_names": data.class_names, "image_size": data.image_size,
        "channels": data.channels,
        "train_images": len(data.train), "val_images": len(data.val) if data.val else 0, "test_images": data.test_count,
        "epochs": cfg.epochs or history.planned_epochs, "epochs_run": epochs_run, "monitor": cfg.monitor,
        "best_epoch": best["epoch"] if best else None,
        "wall_seconds": round(history.elapsed_before + time.perf_counter() - started, 2),
        "train_seconds": round(history.train_seconds, 2),
        "train_images_per_second": round(history.train_images / history.train_seconds, 1) if history.train_seconds else None,
        "precision": precision, "loader": data.loader, "tta": cfg.tta, "recipe": cfg.recipe,
        "final_train_acc": rows[-1]["train_acc"] if rows else None,
        "final_val_acc": rows[-1]["val_acc"] if rows and rows[-1]["val_acc"] != "" else None,
        "best_val_loss": min(r["val_loss"] for r in with_val) if with_val else None,
        "best_val_acc": max(r["val_acc"] for r in with_val) if with_val else None,
        "best_val_map": max(r["val_map"] for r in with_val) if with_val and "val_map" in with_val[0] else None,
        "data_notes": data.notes, "interrupted": bool(interrupted), "frozen_inputs_from_cache": data.frozen_from_cache,
        "predicted_classes": int(logits.argmax(1).unique().numel())
        if labels is not None and len(logits) and labels.ndim == 1 else None,
        "skipped_files": {"count": len(data.skipped), "files": data.skipped[:SKIPPED_SHOWN]},
        "data_audit": audit_summary(data.audit) if data.audit is not None else None,
        **(extra or {}),
        **test,
    }
    plot_curves(rows, run_dir / "curves.png", best_epoch=metrics["best_epoch"], stop_epoch=metrics.get("stop_epoch"),
                title=f"{cfg.model} on {dataset_slug(cfg.dataset)}")
    metrics["diagnosis"] = diagnose(rows, metrics, cfg)
    if watch is not None:
        watch.lap("write")
        metrics["time_breakdown"] = {k: round(v, 2) for k, v in watch.seconds.items()}
    metrics["wall_seconds"] = round(history.elapsed_before + time.perf_counter() - started, 2)
    atomic.write_json(run_dir / "metrics.json", metrics)  # a NaN loss is written as null, never as bare NaN
    write_run_report(run_dir)
    return metrics
