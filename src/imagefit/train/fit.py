"""The fit and the test evaluation of a run: Lightning's Trainer with the run's callbacks, then the final (or
best) model on test, and the summary of both that joins metrics.json."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities.exceptions import SIGTERMException

from ..config import TrainConfig
from ..evaluate.metrics import test_metrics
from ..evaluate.predict import forward_batch, predict_logits
from ..plan import Decisions
from .averaging import ema_callback, ema_decay
from .balance import balanced_class_weights
from .callbacks import (AtomicCheckpointIO, EarlyStoppingInEpochs, EpochSeeding, FollowPlan, GracefulInterrupt,
                        Lookahead, ShardByRank, StopOnNonFinite, read_checkpoint)
from .distributed import one_launch
from .history import HistoryWriter
from .loggers import Tracking, progress_callbacks
from .rate_sweep import Sweep
from .module import ClassifierModule
from .state import Built, Session
from .transfer import FreezeUnfreeze, keeps_statistics


@dataclass
class Fitted:
    """What the fit left: the trained module and the callbacks that watched it."""

    trainer: L.Trainer
    module: ClassifierModule
    history: HistoryWriter
    checkpoints: ModelCheckpoint
    stopper: EarlyStoppingInEpochs | None
    follow: FollowPlan | None
    tracking: Tracking | None
    interrupted: bool
    planned_epochs: int


@dataclass
class Evaluation:
    logits: torch.Tensor | None  # test logits of the evaluated model (None: no test pass)
    labels: torch.Tensor | None
    final: dict  # the final model's test metrics (the evaluated one may be the best epoch's); {}: no test pass
    evaluated: str  # "final" or "best"
    val_logits: torch.Tensor | None  # temperature scaling is fitted on these, never on test
    device: str  # where the test predictions ran (a silent fall-back to the CPU shows here)


def loss_notes(cfg: TrainConfig, built: Built) -> torch.Tensor | None:
    """The balanced class weights of the training loss (or None), and the notes on how classes were evened."""
    data = built.data
    class_weight = balanced_class_weights(data.train.labels, data.num_classes) if cfg.class_weights == "balanced" else None
    if class_weight is not None and data.train.multilabel:
        data.notes.append(f"Class weights: balanced: each label's positives weighted by its negatives / positives, "
                          f"from {float(class_weight.min()):.2f} to {float(class_weight.max()):.2f}, on the training "
                          "loss only.")
    elif class_weight is not None:
        present = class_weight[torch.bincount(data.train.labels, minlength=data.num_classes) > 0]
        data.notes.append(f"Class weights: balanced, from {float(present.min()):.2f} (the largest class) to "
                          f"{float(present.max()):.2f} (the rarest), on the training loss only.")
    strong = [f"--{k.replace('_', '-')}" for k in ("mixup", "cutmix", "random_erasing") if getattr(cfg, k)]
    if built.cached and (strong or cfg.augment in ("trivial", "randaugment")):
        data.notes.append(f"Augmentation: {', '.join(strong + [f'--augment {cfg.augment}'])} did not apply: "
                          f"{cfg.transfer_strategy} trains on cached activations, not on images.")
    if cfg.sampler == "balanced":
        data.notes.append("Sampler: balanced: each epoch drew its training images with replacement, every class "
                          "equally likely.")
    return class_weight


def callbacks_of(cfg: TrainConfig, built: Built, decisions: Decisions, loaders, run_dir: Path, session: Session,
                 history: HistoryWriter, planned_epochs: int):
    """The run's callbacks, in the order they act: history, guards, tracking and progress, checkpoints, stopping."""
    train_loader, val_loader = loaders
    plan, data = decisions.budget, built.data
    callbacks = [history, StopOnNonFinite(run_dir, cfg.learning_rate), EpochSeeding(cfg.seed, train_loader),
                 ShardByRank(train_loader, val_loader)]
    tracking = Tracking(cfg, run_dir, history) if cfg.logger else None
    progress, bar = progress_callbacks(cfg, history, planned_epochs)
    callbacks += ([tracking] if tracking else []) + progress
    checkpoints = ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="best", save_last=True,
                                  monitor=cfg.monitor if val_loader is not None else None, mode=cfg.monitor_mode,
                                  save_top_k=1, save_on_train_epoch_end=True, enable_version_counter=False)
    callbacks.append(checkpoints)
    if cfg.transfer and cfg.transfer_strategy == "freeze-unfreeze":
        callbacks.append(FreezeUnfreeze(built.model, cfg.freeze_epochs, keeps_statistics(cfg, data)))
    stopper = None
    if cfg.early_stopping:
        stopper = EarlyStoppingInEpochs(cfg.monitor, cfg.monitor_mode, cfg.patience, cfg.val_every,
                                        cfg.min_delta, cfg.start_from_epoch)
        callbacks.append(stopper)
    if cfg.lookahead:
        callbacks.append(Lookahead())
    if cfg.ema:
        steps = plan.steps if plan else planned_epochs * min(len(train_loader), cfg.limit_train_batches or len(train_loader))
        decay = cfg.ema_decay or ema_decay(steps)
        callbacks.append(ema_callback(decay))
        data.notes.append(f"Weights: the exponential moving average was validated, tested and saved (decay {decay:.4f} a "
                          f"step{'' if cfg.ema_decay else f', a memory of a tenth of the {steps} steps'}).")
    follow = None
    if plan:
        follow = FollowPlan(plan, session.spent, data.test_count, len(data.val) if data.val is not None else 0)
        callbacks.append(follow)
    return callbacks, bar, checkpoints, stopper, follow, tracking


def fit(cfg: TrainConfig, built: Built, decisions: Decisions, loaders, run_dir: Path, session: Session,
        ckpt: Path | None) -> Fitted:
    """Lightning's fit, ended early by the plan, early stopping, Ctrl-C or `kill` (after the current batch)."""
    train_loader, val_loader = loaders
    plan = decisions.budget
    class_weight = loss_notes(cfg, built)
    module = ClassifierModule(built.trainable, cfg, built.data.num_classes, built.groups, augment=not built.cached,
                              plan=plan, class_weight=class_weight,
                              loader_flips=getattr(train_loader, "flip_bits", None) is not None,
                              multilabel=built.data.train.multilabel)
    planned_epochs = plan.max_epochs if plan else cfg.epochs
    history = HistoryWriter(run_dir / "history.csv")
    history.planned_epochs = planned_epochs
    history.plan = plan
    callbacks, bar, checkpoints, stopper, follow, tracking = callbacks_of(
        cfg, built, decisions, loaders, run_dir, session, history, planned_epochs)
    trainer = L.Trainer(
        max_epochs=planned_epochs, accelerator=cfg.accelerator, devices=cfg.devices, num_nodes=cfg.num_nodes,
        strategy=cfg.strategy, precision=session.precision,
        callbacks=callbacks + session.callbacks, logger=False, enable_model_summary=False, plugins=[AtomicCheckpointIO()],
        enable_progress_bar=bar, num_sanity_val_steps=0, default_root_dir=run_dir,
        limit_train_batches=cfg.limit_train_batches, limit_val_batches=None if val_loader is not None else 0,
        check_val_every_n_epoch=cfg.val_every,
    )
    with GracefulInterrupt() as interrupt, one_launch():
        interrupt.trainer = trainer
        try:
            trainer.fit(module, train_loader, val_loader, ckpt_path=ckpt)
        except SIGTERMException:  # Lightning's answer to `kill`, after the current batch: ends as a Ctrl-C does
            interrupt.interrupted = True
    if trainer.is_global_zero:
        watch = session.watch
        fit_seconds = watch.lap("fit")
        del watch.seconds["fit"]
        watch.seconds.update(train=history.session_train_seconds, validate=history.session_val_seconds)
        watch.seconds["checkpoints and loop"] = max(0.0, fit_seconds - history.session_train_seconds
                                                    - history.session_val_seconds)
    return Fitted(trainer, module, history, checkpoints, stopper, follow, tracking,
                  interrupt.interrupted or trainer.interrupted, planned_epochs)


def evaluate(cfg: TrainConfig, built: Built, fitted: Fitted, session: Session) -> Evaluation:
    """The final model on test; with early stopping and restore_best, the best epoch's model is the one evaluated."""
    data, module, device = built.data, fitted.module, session.device
    # images the network resizes (a fine-tune at 128 px) go in small batches on a CPU; cached activations do not
    batch = forward_batch(built.eval_side, cfg.batch_size * 2, cfg.on_cuda)
    ran_on = str(next(module.model.parameters()).device)
    best_path = fitted.checkpoints.best_model_path
    restore = bool(cfg.early_stopping and cfg.restore_best and best_path and Path(best_path).is_file())
    if data.test is None:  # --no-test-pass: the model saved is still the one a test pass would have evaluated
        if restore:
            module.load_state_dict(read_checkpoint(best_path)["state_dict"])
        return Evaluation(None, None, {}, "best" if restore else "final", None, ran_on)
    final_logits, labels = predict_logits(module.model, data.test, batch, session.precision, device, cfg.tta)
    final = test_metrics(final_logits, labels, data.class_names)
    logits, evaluated = final_logits, "final"
    if restore:
        module.load_state_dict(read_checkpoint(best_path)["state_dict"])
        logits, _ = predict_logits(module.model, data.test, batch, session.precision, device, cfg.tta)
        evaluated = "best"
    val_logits = (predict_logits(module.model, data.val, batch, session.precision, device, cfg.tta)[0]
                  if data.val is not None else None)
    return Evaluation(logits, labels, final, evaluated, val_logits, ran_on)


def run_summary(cfg: TrainConfig, built: Built, decisions: Decisions, fitted: Fitted, evaluation: Evaluation,
                sweep: Sweep | None, session: Session) -> dict:
    """metrics.json's account of how the run was decided, stopped and evaluated (beside its test metrics)."""
    plan, choice, rows = decisions.budget, decisions.transfer, fitted.history.rows
    stopped_early = bool(fitted.stopper and fitted.stopper.stopped_epoch > 0)
    extra = {
        "evaluated_model": evaluation.evaluated,
        "final_model_test": {k: evaluation.final[k] for k in ("test_accuracy", "test_loss", "f1_macro")}
        if evaluation.final else None,
        "stopped_early": stopped_early,
        "stop_epoch": len(rows) if stopped_early else None,
        "epochs_saved": fitted.planned_epochs - len(rows) if stopped_early else 0,
        "early_stopping": {"monitor": cfg.monitor, "patience": cfg.patience, "min_delta": cfg.min_delta,
                           "start_from_epoch": cfg.start_from_epoch, "restore_best": cfg.restore_best}
        if cfg.early_stopping else None,
        "time_budget_seconds": plan.budget_seconds if plan else None,
        "budget_epochs": round(plan.epochs, 2) if plan else None,
        "stopped_by_budget": bool(fitted.follow and fitted.follow.stopped_by_deadline),
        "budget_note": plan.sentence() if plan else None,
        "budget_plan": plan.to_dict() if plan else None,
        "steps_run": fitted.trainer.global_step,
        "transfer_plan": choice.to_dict() if choice else None,
        "lr_found": sweep.suggestion if sweep else None,
        "lr_find": sweep.summary() if sweep else None,
        "config_sources": cfg.config_sources(),
        # the device each stage ran on: the plan's measurements (None without one), training, the test predictions
        "devices": {"plan": str(session.device) if plan or choice else None,
                    "fit": str(fitted.trainer.strategy.root_device), "evaluate": evaluation.device},
    }
    info = built.model.weights_info
    if info:
        extra.update(transfer_strategy=cfg.transfer_strategy, input_size=decisions.input_size,
                     weights_source=info["source"], weights_sha256=info.get("sha256"),
                     weights_missing_keys=info.get("missing_keys"), weights_unexpected_keys=info.get("unexpected_keys"),
                     frozen_params=built.total_params - built.trainable_params,
                     frozen_note=(f"backbone frozen for the first {cfg.freeze_epochs} epochs"
                                  if cfg.transfer_strategy == "freeze-unfreeze" else None))
    return extra
