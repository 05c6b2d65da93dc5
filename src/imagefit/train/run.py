"""`train(config)`: one whole run, from data to report, into `runs/<name>/`.

Everything that can fail because of the user's input (data, model, config) is checked before the
run folder exists, so a mistake leaves nothing half-written under runs/.
"""
from __future__ import annotations

import json
import logging
import time
import warnings
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import lightning as L
import torch
from safetensors.torch import save_file

from .. import atomic
from ..config import TrainConfig
from ..data.loader import TensorLoader, stream_loader
from ..data.pipeline import PreparedData, prepare_data
from ..evaluate.predict import predict_logits
from ..models import count_parameters, create_model
from .history import HistoryWriter
from .module import ClassifierModule
from .precision import resolve_precision

log = logging.getLogger("imagefit")


@dataclass
class Run:
    """A finished run: where it lives and what it measured."""

    dir: Path
    config: TrainConfig
    metrics: dict

    @property
    def test_accuracy(self) -> float:
        return self.metrics["test_accuracy"]

    def __repr__(self) -> str:
        return f"Run({str(self.dir)!r}, test_accuracy={self.test_accuracy:.4f})"


def dataset_slug(dataset: str) -> str:
    return Path(dataset).name.removesuffix(".zip") if ("/" in dataset or dataset.endswith(".zip")) else dataset


def unique_run_dir(runs_dir: Path, name: str) -> Path:
    """runs/<name>, or runs/<name>-2, -3 ... : a new run never overwrites an old one."""
    candidate, n = runs_dir / name, 1
    while candidate.exists():
        n += 1
        candidate = runs_dir / f"{name}-{n}"
    return candidate


def make_loaders(cfg: TrainConfig, data: PreparedData, rank: int = 0, world_size: int = 1):
    if data.loader == "stream":
        train = stream_loader(data.train, cfg.batch_size, True, cfg.seed, cfg.num_workers)
        val = stream_loader(data.val, cfg.batch_size * 2, False, cfg.seed, cfg.num_workers) if data.val else None
        return train, val
    train = TensorLoader(data.train, cfg.batch_size, shuffle=True, seed=cfg.seed, rank=rank, world_size=world_size)
    val = TensorLoader(data.val, cfg.batch_size * 2, shuffle=False, rank=rank, world_size=world_size) if data.val else None
    return train, val


def quiet_lightning() -> None:
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.pytorch.accelerators.cuda", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*`IterableDataset` has `__len__` defined.*")
    warnings.filterwarnings("ignore", message=".*The number of training batches.*")


def train(config: TrainConfig | dict | None = None, **overrides) -> Run:
    """Train, evaluate on test and write every artifact. Returns the Run.

    `config` may be a TrainConfig, a dict of its keys, or None (defaults); keyword arguments override.
    """
    if config is None or isinstance(config, dict):
        cfg = TrainConfig.from_dict({**(config or {}), **overrides})
    else:
        cfg = config.replace(**overrides) if overrides else config
        cfg.validate()
    started = time.perf_counter()
    quiet_lightning()
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    precision = resolve_precision(cfg.precision, cfg.accelerator)

    data = prepare_data(cfg)
    model = create_model(cfg.model, data.num_classes, data.channels, data.image_size, data.mean, data.std)
    total_params, trainable_params = count_parameters(model)

    name = cfg.name or f"{dataset_slug(cfg.dataset)}-{cfg.model}-{datetime.now():%Y%m%d-%H%M%S}"
    run_dir = unique_run_dir(Path(cfg.runs_dir).expanduser(), name)
    cfg = cfg.replace(name=run_dir.name, image_size=data.image_size, lr=cfg.learning_rate)
    run_dir.mkdir(parents=True)
    cfg.save(run_dir / "config.yaml")
    log.info("run folder: %s", run_dir)

    train_loader, val_loader = make_loaders(cfg, data)
    steps = len(train_loader) if cfg.limit_train_batches is None else min(len(train_loader), cfg.limit_train_batches)
    module = ClassifierModule(model, cfg, data.num_classes, steps)
    history = HistoryWriter(run_dir / "history.csv")
    trainer = L.Trainer(
        max_epochs=cfg.epochs, accelerator=cfg.accelerator, devices=cfg.devices, precision=precision,
        callbacks=[history], logger=False, enable_checkpointing=False, enable_model_summary=False,
        enable_progress_bar=cfg.progress, num_sanity_val_steps=0, default_root_dir=run_dir,
        limit_train_batches=cfg.limit_train_batches, limit_val_batches=None if val_loader else 0,
    )
    trainer.fit(module, train_loader, val_loader)
    if not trainer.is_global_zero:
        return Run(run_dir, cfg, {})

    logits, labels = predict_logits(module.model, data.test, cfg.batch_size * 2, precision, module.device)
    metrics = finish_run(run_dir, cfg, data, module.model, logits, labels, history, precision,
                         total_params, trainable_params, started, interrupted=trainer.interrupted)
    return Run(run_dir, cfg, metrics)


def finish_run(run_dir: Path, cfg: TrainConfig, data: PreparedData, model: torch.nn.Module,
               logits: torch.Tensor, labels: torch.Tensor, history: HistoryWriter, precision: str,
               total_params: int, trainable_params: int, started: float, interrupted: bool) -> dict:
    from ..evaluate.metrics import write_evaluation
    from ..evaluate.plots import plot_curves
    from ..report.run_report import write_run_report

    rows = history.rows
    with_val = [r for r in rows if r["val_loss"] != ""]
    best = min(with_val, key=lambda r: r["val_loss"]) if with_val else (rows[-1] if rows else None)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    meta = {"class_names": json.dumps(data.class_names), "model": cfg.model, "image_size": str(data.image_size),
            "channels": str(data.channels), "format": "imagefit-1"}
    with atomic.atomic_path(run_dir / "model.safetensors") as tmp:
        save_file(state, str(tmp), metadata=meta)
    with atomic.atomic_path(run_dir / "predictions.safetensors") as tmp:
        save_file({"logits": logits.contiguous(), "labels": labels.contiguous()}, str(tmp))
    test = write_evaluation(run_dir, logits, labels, data.class_names)
    epochs_run = len(rows)
    metrics = {
        "dataset": cfg.dataset, "model": cfg.model, "params": total_params, "trainable_params": trainable_params,
        "num_classes": data.num_classes, "class_names": data.class_names, "image_size": data.image_size,
        "channels": data.channels,
        "train_images": len(data.train), "val_images": len(data.val) if data.val else 0, "test_images": len(data.test),
        "epochs": cfg.epochs, "epochs_run": epochs_run, "best_epoch": best["epoch"] if best else None,
        "wall_seconds": round(time.perf_counter() - started, 2),
        "train_seconds": round(history.train_seconds, 2),
        "train_images_per_second": round(len(data.train) * epochs_run / history.train_seconds, 1) if history.train_seconds else None,
        "precision": precision, "loader": data.loader,
        "final_train_acc": rows[-1]["train_acc"] if rows else None,
        "final_val_acc": rows[-1]["val_acc"] if rows and rows[-1]["val_acc"] != "" else None,
        "best_val_loss": best["val_loss"] if with_val else None,
        "best_val_acc": max(r["val_acc"] for r in with_val) if with_val else None,
        "data_notes": data.notes, "interrupted": bool(interrupted),
        **test,
    }
    atomic.write_text(run_dir / "metrics.json", json.dumps(metrics, indent=2))
    plot_curves(rows, run_dir / "curves.png", best_epoch=metrics["best_epoch"],
                title=f"{cfg.model} on {dataset_slug(cfg.dataset)}")
    write_run_report(run_dir)
    return metrics
