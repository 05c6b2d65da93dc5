"""`train(config)`: one whole run, from data to report, into `runs/<name>/`.

A run is a few phases, each a function below, in the order `_run` calls them:

1. **prepare**: decode the data (recipe auto: choose from scratch or ImageNet weights on it);
2. **decide** the network and side (a from-scratch budget), then **build** the model, then **decide** the transfer
   plan (on the pretrained model), then **build** what trains (cached features or activations), then **decide**
   the steps (on what trains): each decision needs what the step before it built (imagefit.plan);
3. **fit**: Lightning's loop with the run's callbacks, into the run folder (created only now);
4. **evaluate** the final (or, with early stopping, the best) model on test, and **write** every artifact.

Everything that can fail because of the user's input (data, model, config) is checked before the run folder
exists, so a mistake leaves nothing half-written under runs/.
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

import torch

from ..config import TrainConfig
from ..data.pipeline import PreparedData, prepare_data
from ..data.resize import resize_data
from ..data.sources import dataset_slug
from ..errors import UserError
from ..models import count_parameters, create_model
from ..plan import Decisions
from ..plan.budget import END_MARGIN, BudgetPlan, Speed, for_ranks, replan_steps
from ..plan.probe import FAMILY, apply_plan, plan_run
from ..plan.start import choose_start
from ..plan.transfer import TransferChoice, plan_side, plan_transfer
from ..runtime import fp32_depthwise
from .before_fit import make_loaders, unique_run_dir
from .distributed import RUN_DIR_ENV, launched_rank
from .fit import Fitted, evaluate, fit, run_summary
from .frozen_inputs import probe_features, trunk_activations
from .optim import probe_optimizer
from .outputs import finish_run
from .rate_sweep import Sweep, check_range, find_lr, read_sweep, write_sweep
from .run_lock import run_folder_lock
from .state import Built, Session
from .transfer import default_input_size, keeps_statistics, parameter_groups

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


def train(config: TrainConfig | dict | None = None, *, started: float | None = None, callbacks: list | None = None,
          **overrides) -> Run:
    """Train, evaluate on test and write every artifact. Returns the Run.

    `config` may be a TrainConfig, a dict of its keys, or None (defaults); keyword arguments override.
    `started`: the `time.perf_counter()` the run's wall clock and time budget count from (the CLI passes the
    moment its process started, so `--time-budget 10m` ends within 10 minutes of being typed); default: now.
    `callbacks`: extra Lightning callbacks for the fit, after the run's own (imagefit tune reports to Optuna).
    """
    if config is None or isinstance(config, dict):
        cfg = TrainConfig.from_dict({**(config or {}), **overrides})
    else:
        cfg = config.decided("user", **overrides) if overrides else config
        cfg.validate()
    return _fit(cfg, started, callbacks=callbacks)


def resume(run_dir: str | Path, *, started: float | None = None, callbacks: list | None = None,
           **overrides) -> Run:
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
    return _fit(cfg, started, run_dir=run_dir, ckpt=last, callbacks=callbacks)


def lr_find(config: TrainConfig | dict | None = None, *, min_lr: float | None = None, max_lr: float | None = None,
            steps: int | None = None, started: float | None = None, **overrides) -> Sweep:
    """Lightning's learning-rate finder on the run that `train` with these keys would make (its data, model and
    loaders, training split only): writes lr_find.png and lr_find.json into runs/<name>/ and returns the Sweep.
    `train(lr="find")` does the same before training and trains at the suggestion."""
    if config is None or isinstance(config, dict):
        cfg = TrainConfig.from_dict({**(config or {}), **overrides, "lr": "find"})
    else:
        cfg = config.decided("user", **overrides, lr="find")
        cfg.validate()
    sweep_range = {k: v for k, v in (("min_lr", min_lr), ("max_lr", max_lr), ("steps", steps)) if v is not None}
    check_range(**sweep_range)
    return _fit(cfg, started, sweep_only=sweep_range)


def _fit(cfg: TrainConfig, started: float | None, run_dir: Path | None = None, ckpt: Path | None = None,
         sweep_only: dict | None = None, callbacks: list | None = None) -> Run | Sweep:
    """The run; its folder is locked from the moment it is known (a resumed run's: at once) to the end."""
    with ExitStack() as held:
        if run_dir is not None and launched_rank() == 0:
            held.enter_context(run_folder_lock(run_dir))
        session = Session.open(cfg, started or time.perf_counter(), ckpt)
        session.callbacks = list(callbacks or [])
        return _run(cfg, session, run_dir, ckpt, held, sweep_only)


def _run(cfg: TrainConfig, session: Session, run_dir: Path | None, ckpt: Path | None, held: ExitStack,
         sweep_only: dict | None) -> Run | Sweep:
    """The phases, in order."""
    finding = cfg.lr == "find"  # the rate is the finder's, below; until then the optimizer's default stands in
    cfg, data, decisions = prepare(cfg.replace(lr=None) if finding else cfg, session)
    cfg, data, decisions = decide_network(cfg, data, decisions, session)
    model = build_model(cfg, data, decisions, session)
    cfg, decisions = decide_transfer(cfg, data, model, decisions, session)
    built = build_trainable(cfg, data, model, decisions, session)
    cfg, decisions = decide_steps(cfg, built, decisions, session, resumed=ckpt is not None)
    loaders = make_loaders(cfg, built.data, built.eval_side)
    sweep = None
    if finding:
        cfg, built, sweep = find_rate(cfg, built, loaders[0], session, run_dir if ckpt else None, sweep_only)
        if sweep_only is not None:
            return write_sweep_only(cfg, built, decisions, sweep)
    cfg, run_dir, ckpt = open_run_folder(cfg, built, decisions, sweep, session, run_dir, ckpt, held)
    fitted = fit(cfg, built, decisions, loaders, run_dir, session, ckpt)
    if not fitted.trainer.is_global_zero:
        return Run(run_dir, cfg, {})
    return write_run(cfg, built, decisions, sweep, fitted, run_dir, session)


def prepare(cfg: TrainConfig, session: Session) -> tuple[TrainConfig, PreparedData, Decisions]:
    """Decode the data; recipe auto chooses from scratch or ImageNet weights on it."""
    if session.shared.worker:
        cfg = cfg.replace(audit=False)  # rank 0 audits the data
    # transfer: the data keeps its own size; the model resizes each batch to its input size
    data = prepare_data(cfg.replace(image_size=None) if cfg.transfer else cfg)
    decisions = Decisions()
    if cfg.recipe == "auto":
        evaluated = sum(len(s) for s in (data.val, data.test) if s is not None)
        transfer, why = session.shared.decide("start", lambda: choose_start(
            data.image_size, len(data.train), evaluated, cfg.budget_seconds - session.spent()))
        pinned_side, cfg = cfg.image_size, cfg.decide_start(transfer)
        if transfer and pinned_side:  # transfer decodes at the data's own side; the pinned one is the input
            data = prepare_data(cfg.replace(image_size=None))
        data.notes.append(f"Start: {'ImageNet transfer' if transfer else 'from scratch'}, because {why}.")
        log.info(data.notes[-1])
        decisions = decisions.but(start=why)
    if (cfg.mixup or cfg.cutmix) and data.train.multilabel:
        raise UserError("mixup and cutmix mix one label an image, and this data set has several",
                        "pass --mixup 0 --cutmix 0, or --task single")
    if cfg.early_stopping and data.val is None:
        raise UserError("early stopping needs a validation split", "pass --val-fraction 0.1")
    session.watch.lap("decode")
    if cfg.find_label_issues and not session.shared.worker:  # before training: its seconds count in the budget
        from .label_issues import find_label_issues

        data.label_issues = find_label_issues(cfg, data, session.precision, session.device)
        data.notes.append(data.label_issues.sentence())
        session.watch.lap("label issues")
    if cfg.budget_seconds and session.world_size > 1 and "LOCAL_RANK" not in os.environ:  # Lightning starts the others at fit
        session.launch = session.watch.seconds["start"] + session.watch.seconds["decode"]
        data.notes.append(f"The {session.world_size - 1} other process(es) Lightning starts for training repeat the "
                          f"imports and data preparation: {session.launch:.0f} s of the budget were set aside for them.")
    return cfg, data, decisions


def model_factory(cfg: TrainConfig, data: PreparedData, input_size: int | None, device: torch.device | None = None):
    """A fresh model of the run's kind by name (the probe measures candidates where training runs)."""
    def make(name: str, size: int | None = None):
        model = create_model(name, data.num_classes, data.channels, size or data.image_size, data.mean, data.std,
                             pretrained=cfg.pretrained, weights=cfg.weights, input_size=input_size)
        return model.to(device) if device is not None else model
    return make


def decide_network(cfg: TrainConfig, data: PreparedData, decisions: Decisions,
                   session: Session) -> tuple[TrainConfig, PreparedData, Decisions]:
    """From scratch with a budget: network, side, batch, TTA and steps; transfer: the side the network sees."""
    input_size = None
    if cfg.transfer:
        input_size, why = (cfg.image_size, f"The pretrained network sees {cfg.image_size}x{cfg.image_size} px, "
                           "as configured.") if cfg.image_size else default_input_size(data.image_size)
        data.notes.append(why)
    saved = session.history_state.get("plan")  # a resumed run keeps its plan
    plan = BudgetPlan.from_dict(saved) if saved else None
    if cfg.budget_seconds and plan is None and cfg.planned and not cfg.transfer and cfg.model in (None, *FAMILY):
        make = model_factory(cfg, data, input_size, session.device)
        plan = session.shared.decide("plan", lambda: plan_run(cfg, data, session.precision, session.spent_planning, make,
                                                              make_optimizer=probe_optimizer(cfg)),
                                     BudgetPlan.to_dict, BudgetPlan.from_dict)  # network and side are the planner's
        cfg = apply_plan(cfg, plan)
        session.watch.lap("probe")
    if not cfg.transfer and cfg.image_size and cfg.image_size != data.image_size:
        data = resize_data(data, cfg.image_size)
    return cfg, data, decisions.but(budget=plan, input_size=input_size)


def build_model(cfg: TrainConfig, data: PreparedData, decisions: Decisions, session: Session):
    """The run's network, on the device training runs on (the transfer plan and frozen inputs are computed there)."""
    model = model_factory(cfg, data, decisions.input_size)(cfg.model)
    if session.precision == "bf16-mixed" and not cfg.on_cuda and fp32_depthwise(model):
        data.notes.append("Depthwise convolutions ran in fp32 under bf16 autocast: on this CPU their bf16 backward "
                          "pass is several times slower (measured, see runtime.py).")
    if hasattr(model.net, "init_whitening") and not cfg.transfer:  # airbench: filters from the data's patches
        n = min(len(data.train), max(500, 5_000_000 // data.image_size**2))
        with torch.no_grad():
            model.net.init_whitening(model.prepare(data.train.take(0, n)), seed=cfg.seed)
    return model.to(session.device)


def decide_transfer(cfg: TrainConfig, data: PreparedData, model, decisions: Decisions,
                    session: Session) -> tuple[TrainConfig, Decisions]:
    """Transfer with a budget: strategy, depth and side (or a pinned strategy's side), measured on the model."""
    planner = None
    if cfg.transfer and cfg.planned and (cfg.transfer_strategy is None or
                                         (cfg.transfer_strategy == "partial" and cfg.trainable_blocks is None)):
        planner = plan_transfer  # strategy, depth and side
    elif cfg.transfer and cfg.planned and cfg.transfer_strategy in ("fine-tune", "linear-probe") and not cfg.image_size:
        planner = plan_side  # the pinned strategy's side
    if planner is None:
        return cfg, decisions
    seconds_left = cfg.budget_seconds * (1 - END_MARGIN) - session.spent_planning()
    choice = session.shared.decide("transfer", lambda: planner(cfg, data, model, session.precision, seconds_left),
                                   asdict, lambda d: TransferChoice(**d))
    chosen = {"transfer_strategy": choice.strategy, "trainable_blocks": choice.trainable_blocks}
    cfg = cfg.decided("planner", **{k: v for k, v in chosen.items() if getattr(cfg, k) != v})
    if choice.input_size != decisions.input_size:  # the model already resizes to it
        data.notes.append(f"The pretrained network sees {choice.input_size}x{choice.input_size} px: the largest side "
                          "the budget affords (the transfer plan below).")
    data.notes.append(f"Transfer plan: {choice.strategy}, because {choice.reason}.")
    log.info(data.notes[-1])
    session.watch.lap("probe")
    return cfg, decisions.but(transfer=choice, input_size=choice.input_size)


def build_trainable(cfg: TrainConfig, data: PreparedData, model, decisions: Decisions, session: Session) -> Built:
    """The trainable part and its data: a linear probe's features, partial fine-tuning's activations, or images."""
    if cfg.compile:
        model.net.compile()  # in place: the state dict keeps its keys
    total_params, _ = count_parameters(model)
    trainable, groups, probe = model, None, cfg.transfer and cfg.transfer_strategy == "linear-probe"
    cached = probe or (cfg.transfer and cfg.transfer_strategy == "partial")  # trains on cached activations
    if probe:
        data = probe_features(cfg, data, model, decisions.input_size, session.precision)
        trainable = model.head().train()  # the feature pass left the whole model in eval mode
    elif cached:
        data, trainable = trunk_activations(cfg, data, model, decisions.input_size, session.precision)
        trainable.train()
    elif cfg.transfer:
        groups = parameter_groups(model, cfg.learning_rate, cfg.backbone_lr_mult)
        if keeps_statistics(cfg, data):
            from ..models.freeze import keep_statistics

            n = keep_statistics(model.net)
            data.notes.append(f"BatchNorm statistics kept: the {n} BatchNorm layers normalised with their ImageNet "
                              "statistics while their weights trained (--bn-statistics).")
    session.watch.lap("setup")
    eval_side = decisions.input_size if cfg.transfer and not cached else 0  # 0: no cap (measured on pretrained nets only)
    return Built(model, trainable, groups, data, bool(cached), total_params, count_parameters(trainable)[0], eval_side)


def decide_steps(cfg: TrainConfig, built: Built, decisions: Decisions, session: Session,
                 resumed: bool) -> tuple[TrainConfig, Decisions]:
    """The batch, TTA and steps a budget buys for what trains (from scratch: already planned with the network);
    a resumed run re-plans the steps that fit in the time left. No budget: the defaults."""
    plan = decisions.budget
    if cfg.budget_seconds and plan is None:
        known = decisions.transfer.speed if decisions.transfer else None
        measured = Speed(cfg.model, decisions.input_size, *known) if known else None
        # a cached run's top sees activations, not images: its plan is stated at the side the network sees
        seen = cfg.replace(image_size=decisions.input_size) if built.cached else cfg
        make = model_factory(cfg, built.data, decisions.input_size, session.device)
        plan = session.shared.decide("plan", lambda: plan_run(
            seen, built.data, session.precision, session.spent_planning, make, fixed_model=built.trainable,
            augment=not built.cached, measured=measured, checkpoint_seconds=0.0,
            make_optimizer=probe_optimizer(cfg)), BudgetPlan.to_dict, BudgetPlan.from_dict)
        cfg = apply_plan(cfg, plan)
    if plan is None:
        cfg = cfg.with_defaults()
    else:
        plan = for_ranks(plan, session.world_size)  # DDP: each process's steps
        if resumed:
            state = session.history_state
            left = max(0, plan.max_epochs - len(state.get("rows", [])))
            plan.steps = session.shared.decide("resume steps", lambda: replan_steps(
                plan, session.checkpoint.get("global_step", 0), session.spent(), 1.0, left))
            plan.replans.append(f"resumed after {state.get('elapsed', 0.0):.0f} s: {plan.steps} steps in all fit the time left")
        log.info(plan.sentence())
    session.watch.lap("probe")
    return cfg, decisions.but(budget=plan)


def find_rate(cfg: TrainConfig, built: Built, train_loader, session: Session, resumed_dir: Path | None,
              sweep_only: dict | None) -> tuple[TrainConfig, Built, Sweep]:
    """`lr: find`: Lightning's finder on the training split (a resumed run reads the sweep it made: never twice)."""
    if resumed_dir is not None:
        sweep = read_sweep(resumed_dir)
    else:
        sweep = find_lr(cfg, built.trainable, built.data, train_loader, session.precision, built.groups,
                        augment=not built.cached, **(sweep_only or {}))
        session.watch.lap("lr find")
    cfg = cfg.decided("planner", lr=sweep.suggestion)
    if built.groups:
        built.groups = parameter_groups(built.model, cfg.learning_rate, cfg.backbone_lr_mult)
    if sweep_only is None:
        log.info(sweep.sentence())
    return cfg, built, sweep


def write_sweep_only(cfg: TrainConfig, built: Built, decisions: Decisions, sweep: Sweep) -> Sweep:
    """`imagefit lr-find`: the sweep's own folder, and no training."""
    name = cfg.name or f"{dataset_slug(cfg.dataset)}-{cfg.model}-lr-find-{datetime.now():%Y%m%d-%H%M%S}"
    folder = unique_run_dir(Path(cfg.runs_dir).expanduser(), name)
    side = decisions.input_size or built.data.image_size
    write_sweep(folder, sweep, cfg.replace(name=folder.name, image_size=side).decided(
        "user", lr="find").to_dict())
    return sweep


def open_run_folder(cfg: TrainConfig, built: Built, decisions: Decisions, sweep: Sweep | None, session: Session,
                    run_dir: Path | None, ckpt: Path | None, held: ExitStack) -> tuple[TrainConfig, Path, Path | None]:
    """The run folder (a new run's is created and locked here, its config.yaml written whole), published to the
    other processes of a distributed launch; the data audit written into it."""
    if run_dir is None and os.environ.get(RUN_DIR_ENV) and launched_rank() > 0:
        run_dir = Path(os.environ[RUN_DIR_ENV])  # a worker of a distributed launch: rank 0 owns the folder
        if ckpt is None and (run_dir / "checkpoints" / "last.ckpt").is_file():  # rank 0 resumes: so must we
            ckpt = run_dir / "checkpoints" / "last.ckpt"
    if run_dir is None:
        name = cfg.name or f"{dataset_slug(cfg.dataset)}-{cfg.model}-{datetime.now():%Y%m%d-%H%M%S}"
        run_dir = unique_run_dir(Path(cfg.runs_dir).expanduser(), name)
        held.enter_context(run_folder_lock(run_dir))
        cfg = resolved_config(cfg, built, decisions, run_dir.name)
        info = built.model.weights_info
        frozen = built.total_params - built.trainable_params
        (cfg.decided("user", lr="find") if sweep else cfg).save(run_dir / "config.yaml", notes=[
            f"pretrained weights: {info['source']}, sha256 {info.get('sha256')}",
            f"transfer strategy {cfg.transfer_strategy}: {frozen:,} frozen and {built.trainable_params:,} trainable parameters",
        ] if info else None)
        if sweep:  # lr_find.png and .json: --config repeats the decision (lr: find), the folder shows its grounds
            write_sweep(run_dir, sweep, cfg.decided("user", lr="find").to_dict())
    if launched_rank() == 0:  # inherited by the processes a distributed launch starts (a resumed run's too)
        os.environ[RUN_DIR_ENV] = str(run_dir.resolve())
        pointer = session.shared.publish(run_dir, session.world_size)
        if pointer is not None:
            held.callback(pointer.unlink, missing_ok=True)
    log.info("run folder: %s", run_dir)
    if built.data.audit is not None and launched_rank() == 0:
        from ..report.audit_section import write_audit

        write_audit(run_dir, built.data.audit)  # data_audit.md, and the leak warning on the console
    if built.data.label_issues is not None and launched_rank() == 0:
        from .label_issues import write_label_issues

        write_label_issues(run_dir, built.data.label_issues)  # label_issues.csv and .png
    return cfg, run_dir, ckpt


def resolved_config(cfg: TrainConfig, built: Built, decisions: Decisions, name: str) -> TrainConfig:
    """The configuration as it runs: its name, the side the network sees and the rate, written down."""
    cfg = cfg.replace(name=name, image_size=decisions.input_size or built.data.image_size, lr=cfg.learning_rate)
    if decisions.transfer and cfg.config_sources()["image_size"] != "user":
        cfg = cfg.decided("planner", image_size=decisions.transfer.input_size)
    return cfg


def write_run(cfg: TrainConfig, built: Built, decisions: Decisions, sweep: Sweep | None, fitted: Fitted,
              run_dir: Path, session: Session) -> Run:
    """Evaluate on test and write the model, predictions, metrics.json, plots and the report."""
    evaluation = evaluate(cfg, built, fitted, session)
    session.watch.lap("test")
    extra = run_summary(cfg, built, decisions, fitted, evaluation, sweep, session)
    metrics = finish_run(run_dir, cfg, built.data, built.model, evaluation.logits, evaluation.labels, fitted.history,
                         session.precision, built.total_params, built.trainable_params, session.started,
                         interrupted=fitted.interrupted, extra=extra, watch=session.watch,
                         val_logits=evaluation.val_logits)
    if fitted.tracking:
        fitted.tracking.finish(run_dir, interrupted=metrics["interrupted"])
    return Run(run_dir, cfg, metrics)
