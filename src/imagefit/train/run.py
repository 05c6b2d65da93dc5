"""`train(config)`: one whole run, from data to report, into `runs/<name>/`.

Everything that can fail because of the user's input (data, model, config) is checked before the
run folder exists, so a mistake leaves nothing half-written under runs/.
"""
from __future__ import annotations

import json
import logging
import os
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities.exceptions import SIGTERMException

from ..config import TrainConfig
from ..data.pipeline import prepare_data
from ..errors import UserError
from ..evaluate.metrics import test_metrics
from ..evaluate.predict import forward_batch, predict_logits
from ..models import count_parameters, create_model
from ..data.resize import resize_data
from ..plan.probe import FAMILY, apply_plan, plan_run
from .clock import Stopwatch
from .balance import balanced_class_weights
from .before_fit import check_trainer_args, make_loaders, quiet_lightning, unique_run_dir
from ..data.sources import dataset_slug
from ..plan.budget import END_MARGIN, BudgetPlan, Speed, replan_steps
from .callbacks import (AtomicCheckpointIO, EarlyStoppingInEpochs, EpochSeeding, FollowPlan, GracefulInterrupt,
                        Lookahead, ShardByRank, StopOnNonFinite, read_checkpoint)
from .distributed import RUN_DIR_ENV, RankZeroDecisions, launched_rank, one_launch
from .frozen_inputs import probe_features, trunk_activations
from .history import HistoryWriter
from .loggers import Tracking, progress_callbacks
from .lr_find import Sweep, check_range, find_lr, read_sweep, write_sweep
from .module import ClassifierModule
from .outputs import finish_run
from ..runtime import compute_device, fp32_depthwise, resolve_precision
from .run_lock import run_folder_lock
from ..plan.start import choose_start
from .transfer import FreezeUnfreeze, default_input_size, parameter_groups
from ..plan.transfer import TransferChoice, plan_side, plan_transfer

# Set by the CLI to the moment the process started: the next run's wall time and time budget count from
# then, imports included, so `imagefit train --time-budget 10m` ends within 10 minutes of being typed.
CLOCK_STARTED: float | None = None
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


def train(config: TrainConfig | dict | None = None, **overrides) -> Run:
    """Train, evaluate on test and write every artifact. Returns the Run.

    `config` may be a TrainConfig, a dict of its keys, or None (defaults); keyword arguments override.
    """
    if config is None or isinstance(config, dict):
        cfg = TrainConfig.from_dict({**(config or {}), **overrides})
    else:
        cfg = config.replace(**overrides) if overrides else config
        cfg.validate()
    return _fit(cfg)


def resume(run_dir: str | Path, **overrides) -> Run:
    """Continue an interrupted run from its last checkpoint, with optimizer, schedule, RNG and
    early-stopping state as they were at the end of the last finished epoch."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"run folder not found: {run_dir}", "pass an existing folder under runs/ to --resume")
    if not (run_dir / "config.yaml").is_file():
        raise UserError(f"{run_dir} is not an imagefit run folder (no config.yaml)", "pass a folder under runs/")
    last = run_dir / "checkpoints" / "last.ckpt"
    if not last.is_file():
        raise UserError(f"{run_dir} has no checkpoint to resume from", f"start it again: imagefit train --config {run_dir / 'config.yaml'}")
    metrics = run_dir / "metrics.json"
    if metrics.is_file() and not json.loads(metrics.read_text()).get("interrupted"):
        raise UserError(f"run {run_dir} already finished", f"start a new one: imagefit train --config {run_dir / 'config.yaml'}")
    cfg = TrainConfig.load(run_dir / "config.yaml", overrides)
    return _fit(cfg, run_dir=run_dir, ckpt=last)


def lr_find(config: TrainConfig | dict | None = None, *, min_lr: float | None = None, max_lr: float | None = None,
            steps: int | None = None, **overrides) -> Sweep:
    """Lightning's learning-rate finder on the run that `train` with these keys would make (its data, model and
    loaders, training split only): writes lr_find.png and lr_find.json into runs/<name>/ and returns the Sweep.
    `train(lr="find")` does the same before training and trains at the suggestion."""
    if config is None or isinstance(config, dict):
        cfg = TrainConfig.from_dict({**(config or {}), **overrides, "lr": "find"})
    else:
        cfg = config.replace(**overrides, lr="find")
        cfg.validate()
    sweep_range = {k: v for k, v in (("min_lr", min_lr), ("max_lr", max_lr), ("steps", steps)) if v is not None}
    check_range(**sweep_range)
    return _fit(cfg, sweep_only=sweep_range)


def _fit(cfg: TrainConfig, run_dir: Path | None = None, ckpt: Path | None = None,
         sweep_only: dict | None = None) -> Run | Sweep:
    """The run; its folder is locked from the moment it is known (a resumed run's: at once) to the end."""
    with ExitStack() as held:
        if run_dir is not None and launched_rank() == 0:
            held.enter_context(run_folder_lock(run_dir))
        return _fit_holding(cfg, run_dir, ckpt, held, sweep_only)


def _fit_holding(cfg: TrainConfig, run_dir: Path | None, ckpt: Path | None, held: ExitStack,
                 sweep_only: dict | None) -> Run | Sweep:
    global CLOCK_STARTED
    started, CLOCK_STARTED = CLOCK_STARTED or time.perf_counter(), None
    watch = Stopwatch(started)
    quiet_lightning()
    # denormal floats (momentum buffers decaying at the end of a schedule) are 10-100x slower on x86 CPUs
    torch.set_flush_denormal(True)
    finding = cfg.lr == "find"  # the rate is the finder's, below; until then the optimizer's default stands in
    cfg = cfg.replace(lr=None) if finding else cfg
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    precision = resolve_precision(cfg.precision, cfg.accelerator)
    device = compute_device(cfg.accelerator)
    world_size = check_trainer_args(cfg, precision)  # before the data is decoded and before the run folder exists
    shared = RankZeroDecisions.join(Path(cfg.runs_dir).expanduser(), time.time() - (time.perf_counter() - started))
    if shared.worker:
        cfg = cfg.replace(audit=False)  # rank 0 audits the data
    watch.lap("start")
    checkpoint = read_checkpoint(ckpt) if ckpt else {}
    history_state = checkpoint.get("callbacks", {}).get("HistoryWriter", {})
    elapsed_before = history_state.get("elapsed", 0.0)

    def spent() -> float:
        return elapsed_before + time.perf_counter() - started

    # transfer: the data keeps its own size; the model resizes each batch to its input size
    data = prepare_data(cfg.replace(image_size=None) if cfg.transfer else cfg)
    if cfg.recipe == "auto":  # the budget's first choice: from scratch or from ImageNet weights
        transfer, why = shared.decide("start", lambda: choose_start(
            data.image_size, len(data.train), sum(len(s) for s in (data.val, data.test) if s is not None),
            cfg.budget_seconds - spent()))
        pinned_side, cfg = cfg.image_size, cfg.decide_start(transfer)
        if transfer and pinned_side:  # transfer decodes at the data's own side; the pinned one is the input
            data = prepare_data(cfg.replace(image_size=None))
        data.notes.append(f"Start: {'ImageNet transfer' if transfer else 'from scratch'}, because {why}.")
        log.info(data.notes[-1])
    if cfg.early_stopping and data.val is None:
        raise UserError("early stopping needs a validation split", "pass --val-fraction 0.1")
    watch.lap("decode")
    launch = 0.0
    if cfg.budget_seconds and world_size > 1 and "LOCAL_RANK" not in os.environ:  # Lightning starts the others at fit
        launch = watch.seconds["start"] + watch.seconds["decode"]
        data.notes.append(f"The {world_size - 1} other process(es) Lightning starts for training repeat the imports and "
                          f"data preparation: {launch:.0f} s of the budget were set aside for them.")

    def spent_planning() -> float:
        return spent() + launch
    input_size = None
    if cfg.transfer:
        input_size, why = (cfg.image_size, f"The pretrained network sees {cfg.image_size}x{cfg.image_size} px, "
                           "as configured.") if cfg.image_size else default_input_size(data.image_size)
        data.notes.append(why)

    def make_model(name: str, size: int | None = None):
        return create_model(name, data.num_classes, data.channels, size or data.image_size, data.mean, data.std,
                            pretrained=cfg.pretrained, weights=cfg.weights, input_size=input_size)

    def make_model_on_device(name: str, size: int | None = None):  # the probe measures where training runs
        return make_model(name, size).to(device)

    plan = BudgetPlan.from_dict(history_state["plan"]) if history_state.get("plan") else None
    if cfg.budget_seconds and plan is None and cfg.planned and not cfg.transfer and cfg.model in (None, *FAMILY):
        plan = shared.decide("plan", lambda: plan_run(cfg, data, precision, spent_planning, make_model_on_device),  # network and side are the planner's
                             BudgetPlan.to_dict, BudgetPlan.from_dict)
        cfg = apply_plan(cfg, plan)
        watch.lap("probe")
    if not cfg.transfer and cfg.image_size and cfg.image_size != data.image_size:
        data = resize_data(data, cfg.image_size)
    model = make_model(cfg.model)
    if precision == "bf16-mixed" and not cfg.on_cuda and fp32_depthwise(model):
        data.notes.append("Depthwise convolutions ran in fp32 under bf16 autocast: on this CPU their bf16 backward "
                          "pass is several times slower (measured, see train/precision.py).")
    if hasattr(model.net, "init_whitening") and not cfg.transfer:  # airbench: filters from the data's patches
        n = min(len(data.train), max(500, 5_000_000 // data.image_size**2))
        with torch.no_grad():
            model.net.init_whitening(model.prepare(data.train.take(0, n)), seed=cfg.seed)
    model.to(device)  # the transfer plan, features and trunk activations are computed where training runs
    transfer_choice = None
    planner = None
    if cfg.transfer and cfg.planned and (cfg.transfer_strategy is None or
                                         (cfg.transfer_strategy == "partial" and cfg.trainable_blocks is None)):
        planner = plan_transfer  # strategy, depth and side
    elif cfg.transfer and cfg.planned and cfg.transfer_strategy in ("fine-tune", "linear-probe") and not cfg.image_size:
        planner = plan_side  # the pinned strategy's side
    if planner is not None:
        transfer_choice = shared.decide("transfer", lambda: planner(
            cfg, data, model, precision, cfg.budget_seconds * (1 - END_MARGIN) - spent_planning()), asdict,
            lambda d: TransferChoice(**d))
        cfg = cfg.replace(transfer_strategy=transfer_choice.strategy, trainable_blocks=transfer_choice.trainable_blocks)
        if transfer_choice.input_size != input_size:
            input_size = transfer_choice.input_size  # the model already resizes to it
            data.notes.append(f"The pretrained network sees {input_size}x{input_size} px: the largest side the "
                              "budget affords (the transfer plan below).")
        data.notes.append(f"Transfer plan: {transfer_choice.strategy}, because {transfer_choice.reason}.")
        log.info(data.notes[-1])
        watch.lap("probe")
    if cfg.compile:
        model.net.compile()  # in place: the state dict keeps its keys
    total_params, _ = count_parameters(model)
    trainable, groups, probe = model, None, cfg.transfer and cfg.transfer_strategy == "linear-probe"
    cached = probe or (cfg.transfer and cfg.transfer_strategy == "partial")  # trains on cached activations
    if probe:
        data = probe_features(cfg, data, model, input_size, precision)
        trainable = model.head().train()  # the feature pass left the whole model in eval mode
    elif cached:
        data, trainable = trunk_activations(cfg, data, model, input_size, precision)
        trainable.train()
    elif cfg.transfer:
        groups = parameter_groups(model, cfg.learning_rate, cfg.backbone_lr_mult)
    trainable_params = count_parameters(trainable)[0]
    watch.lap("setup")

    if cfg.budget_seconds and plan is None:  # only the batch, TTA and steps are the planner's
        known = transfer_choice.speed if transfer_choice else None
        measured = Speed(cfg.model, input_size, *known) if known else None
        # a cached run's top sees activations, not images: its plan is stated at the side the network sees
        seen = cfg.replace(image_size=input_size) if cached else cfg
        plan = shared.decide("plan", lambda: plan_run(seen, data, precision, spent_planning, make_model_on_device, fixed_model=trainable,
                                                      augment=not cached, measured=measured, checkpoint_seconds=0.0),
                             BudgetPlan.to_dict, BudgetPlan.from_dict)
        cfg = apply_plan(cfg, plan)
    if plan is not None:
        if ckpt:  # a resumed run: the steps that fit in the time left
            plan.steps = shared.decide("resume steps", lambda: replan_steps(
                plan, checkpoint.get("global_step", 0), spent(), 1.0, max(0, plan.max_epochs - len(history_state.get("rows", [])))))
            plan.replans.append(f"resumed after {elapsed_before:.0f} s: {plan.steps} steps in all fit the time left")
        log.info(plan.sentence())
    else:
        cfg = cfg.with_defaults()
    watch.lap("probe")
    eval_side = input_size if cfg.transfer and not cached else 0  # 0: no cap (measured on pretrained nets only)
    train_loader, val_loader = make_loaders(cfg, data, eval_side)
    sweep = None
    if finding:  # a resumed run reads the sweep it made: the finder never runs twice
        if ckpt:
            sweep = read_sweep(run_dir)
        else:
            sweep = find_lr(cfg, trainable, data, train_loader, precision, groups, augment=not cached, **(sweep_only or {}))
            watch.lap("lr find")
        cfg = cfg.replace(lr=sweep.suggestion)
        groups = parameter_groups(model, cfg.learning_rate, cfg.backbone_lr_mult) if groups else None
        if sweep_only is not None:
            name = cfg.name or f"{dataset_slug(cfg.dataset)}-{cfg.model}-lr-find-{datetime.now():%Y%m%d-%H%M%S}"
            folder = unique_run_dir(Path(cfg.runs_dir).expanduser(), name)
            write_sweep(folder, sweep, cfg.replace(name=folder.name, image_size=input_size or data.image_size,
                                                   lr="find").to_dict())
            return sweep
        log.info(sweep.sentence())
    planned_epochs = plan.max_epochs if plan else cfg.epochs

    if run_dir is None and os.environ.get(RUN_DIR_ENV) and launched_rank() > 0:
        run_dir = Path(os.environ[RUN_DIR_ENV])  # a worker of a distributed launch: rank 0 owns the folder
        if ckpt is None and (run_dir / "checkpoints" / "last.ckpt").is_file():  # rank 0 resumes: so must we
            ckpt = run_dir / "checkpoints" / "last.ckpt"
    if run_dir is None:
        name = cfg.name or f"{dataset_slug(cfg.dataset)}-{cfg.model}-{datetime.now():%Y%m%d-%H%M%S}"
        run_dir = unique_run_dir(Path(cfg.runs_dir).expanduser(), name)
        held.enter_context(run_folder_lock(run_dir))
        cfg = cfg.replace(name=run_dir.name, image_size=input_size or data.image_size, lr=cfg.learning_rate)
        info = model.weights_info
        (cfg.replace(lr="find") if sweep else cfg).save(run_dir / "config.yaml", notes=[
            f"pretrained weights: {info['source']}, sha256 {info.get('sha256')}",
            f"transfer strategy {cfg.transfer_strategy}: {total_params - trainable_params:,} frozen and {trainable_params:,} trainable parameters",
        ] if info else None)
        if sweep:  # lr_find.png and .json: --config repeats the decision (lr: find), the folder shows its grounds
            write_sweep(run_dir, sweep, cfg.replace(lr="find").to_dict())
    if launched_rank() == 0:  # inherited by the processes a distributed launch starts (a resumed run's too)
        os.environ[RUN_DIR_ENV] = str(run_dir.resolve())
        pointer = shared.publish(run_dir, world_size)
        if pointer is not None:
            held.callback(pointer.unlink, missing_ok=True)
    log.info("run folder: %s", run_dir)
    if data.audit is not None and launched_rank() == 0:
        from ..report.audit_section import write_audit

        write_audit(run_dir, data.audit)  # data_audit.md, and the leak warning on the console

    class_weight = balanced_class_weights(data.train.labels, data.num_classes) if cfg.class_weights == "balanced" else None
    if class_weight is not None:
        present = class_weight[torch.bincount(data.train.labels, minlength=data.num_classes) > 0]
        data.notes.append(f"Class weights: balanced, from {float(present.min()):.2f} (the largest class) to "
                          f"{float(present.max()):.2f} (the rarest), on the training loss only.")
    if cfg.sampler == "balanced":
        data.notes.append("Sampler: balanced: each epoch drew its training images with replacement, every class "
                          "equally likely.")
    module = ClassifierModule(trainable, cfg, data.num_classes, groups, augment=not cached, plan=plan,
                              class_weight=class_weight, loader_flips=getattr(train_loader, "flip_bits", None) is not None)
    history = HistoryWriter(run_dir / "history.csv")
    history.planned_epochs = planned_epochs
    history.plan = plan
    has_val = val_loader is not None
    callbacks = [history, StopOnNonFinite(run_dir, cfg.learning_rate), EpochSeeding(cfg.seed, train_loader),
                 ShardByRank(train_loader, val_loader)]
    tracking = Tracking(cfg, run_dir, history) if cfg.logger else None
    progress, bar = progress_callbacks(cfg, history, planned_epochs)
    callbacks += ([tracking] if tracking else []) + progress
    checkpoints = ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="best", save_last=True,
                                  monitor=cfg.monitor if has_val else None, mode=cfg.monitor_mode,
                                  save_top_k=1, save_on_train_epoch_end=True, enable_version_counter=False)
    callbacks.append(checkpoints)
    if cfg.transfer and cfg.transfer_strategy == "freeze-unfreeze":
        callbacks.append(FreezeUnfreeze(model, cfg.freeze_epochs))
    stopper = None
    if cfg.early_stopping:
        stopper = EarlyStoppingInEpochs(cfg.monitor, cfg.monitor_mode, cfg.patience, cfg.val_every,
                                        cfg.min_delta, cfg.start_from_epoch)
        callbacks.append(stopper)
    if cfg.lookahead:
        callbacks.append(Lookahead())
    follow = None
    if plan:
        follow = FollowPlan(plan, spent, len(data.test), len(data.val) if data.val is not None else 0)
        callbacks.append(follow)
    trainer = L.Trainer(
        max_epochs=planned_epochs, accelerator=cfg.accelerator, devices=cfg.devices, num_nodes=cfg.num_nodes,
        strategy=cfg.strategy, precision=precision,
        callbacks=callbacks, logger=False, enable_model_summary=False, plugins=[AtomicCheckpointIO()],
        enable_progress_bar=bar, num_sanity_val_steps=0, default_root_dir=run_dir,
        limit_train_batches=cfg.limit_train_batches, limit_val_batches=None if has_val else 0,
        check_val_every_n_epoch=cfg.val_every,
    )
    with GracefulInterrupt() as interrupt, one_launch():
        interrupt.trainer = trainer
        try:
            trainer.fit(module, train_loader, val_loader, ckpt_path=ckpt)
        except SIGTERMException:  # Lightning's answer to `kill`, after the current batch: ends as a Ctrl-C does
            interrupt.interrupted = True
    if not trainer.is_global_zero:
        return Run(run_dir, cfg, {})
    fit_seconds = watch.lap("fit")
    del watch.seconds["fit"]
    watch.seconds.update(train=history.session_train_seconds, validate=history.session_val_seconds)
    watch.seconds["checkpoints and loop"] = max(0.0, fit_seconds - history.session_train_seconds - history.session_val_seconds)

    rows = history.rows
    stopped_early = bool(stopper and stopper.stopped_epoch > 0)
    by_budget = bool(follow and follow.stopped_by_deadline)
    # images the network resizes (a fine-tune at 128 px) go in small batches on a CPU; cached activations do not
    eval_batch = forward_batch(eval_side, cfg.batch_size * 2, cfg.on_cuda)
    final_logits, labels = predict_logits(module.model, data.test, eval_batch, precision, device, cfg.tta)
    final = test_metrics(final_logits, labels, data.class_names)
    logits, evaluated = final_logits, "final"
    best_path = checkpoints.best_model_path
    if cfg.early_stopping and cfg.restore_best and best_path and Path(best_path).is_file():
        state = read_checkpoint(best_path)["state_dict"]
        module.load_state_dict(state)
        logits, _ = predict_logits(module.model, data.test, eval_batch, precision, device, cfg.tta)
        evaluated = "best"
    val_logits = (predict_logits(module.model, data.val, eval_batch, precision, device, cfg.tta)[0]
                  if data.val is not None else None)  # temperature scaling is fitted on these, never on test
    watch.lap("test")
    extra = {
        "evaluated_model": evaluated,
        "final_model_test": {k: final[k] for k in ("test_accuracy", "test_loss", "f1_macro")},
        "stopped_early": stopped_early,
        "stop_epoch": len(rows) if stopped_early else None,
        "epochs_saved": planned_epochs - len(rows) if stopped_early else 0,
        "early_stopping": {"monitor": cfg.monitor, "patience": cfg.patience, "min_delta": cfg.min_delta,
                           "start_from_epoch": cfg.start_from_epoch, "restore_best": cfg.restore_best}
        if cfg.early_stopping else None,
        "time_budget_seconds": plan.budget_seconds if plan else None,
        "budget_epochs": round(plan.epochs, 2) if plan else None,
        "stopped_by_budget": by_budget,
        "budget_note": plan.sentence() if plan else None,
        "budget_plan": plan.to_dict() if plan else None,
        "steps_run": trainer.global_step,
        "transfer_plan": transfer_choice.to_dict() if transfer_choice else None,
        "lr_found": sweep.suggestion if sweep else None,
        "lr_find": sweep.summary() if sweep else None,
    }
    if model.weights_info:
        extra.update(transfer_strategy=cfg.transfer_strategy, input_size=input_size, weights_source=model.weights_info["source"],
                     weights_sha256=model.weights_info.get("sha256"),
                     weights_missing_keys=model.weights_info.get("missing_keys"),
                     weights_unexpected_keys=model.weights_info.get("unexpected_keys"),
                     frozen_params=total_params - trainable_params,
                     frozen_note=(f"backbone frozen for the first {cfg.freeze_epochs} epochs"
                                  if cfg.transfer_strategy == "freeze-unfreeze" else None))
    metrics = finish_run(run_dir, cfg, data, model, logits, labels, history, precision, total_params,
                         trainable_params, started, interrupted=interrupt.interrupted or trainer.interrupted,
                         extra=extra, watch=watch, val_logits=val_logits)
    if tracking:
        tracking.finish(run_dir, interrupted=metrics["interrupted"])
    return Run(run_dir, cfg, metrics)
