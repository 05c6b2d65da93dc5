"""Lightning callbacks and plugins for the cases where the popular tools get stopping and resuming wrong.

- `EpochSeeding`: every random draw of an epoch (shuffle, augmentation, dropout) comes from
  (seed, epoch), so a run resumed at an epoch boundary replays exactly what the uninterrupted run did.
- `EarlyStoppingInEpochs`: Lightning's EarlyStopping counts validation checks; ours counts epochs
  whatever --val-every is, and adds Keras's start_from_epoch.
- `Lookahead`: airbench's weight averaging, checkpointed with the run so a resumed run averages on.
- `AtomicCheckpointIO`: write then rename, and load with weights_only=True (no arbitrary unpickling).
- `GracefulInterrupt`: the first Ctrl-C or SIGTERM asks the trainer to stop after the current batch, so
  the run saves, evaluates and reports; a second one stops at once.
"""
from __future__ import annotations

import math
import pickle
import signal
import threading
import time
import warnings
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import EarlyStopping
from lightning.pytorch.plugins.io import TorchCheckpointIO

from .. import atomic
from ..errors import UserError
from .distributed import agree


class EpochSeeding(L.Callback):
    def __init__(self, seed: int, loader=None):
        self.seed = seed
        self.loader = loader

    def on_train_epoch_start(self, trainer, pl_module):
        epoch = trainer.current_epoch
        torch.manual_seed(self.seed * 1_000_003 + epoch)
        if self.loader is not None and hasattr(self.loader, "set_epoch"):
            self.loader.set_epoch(epoch)
        if hasattr(pl_module, "reseed_augmentation"):
            pl_module.reseed_augmentation(epoch)


class StopOnNonFinite(L.Callback):
    """A NaN or infinite epoch loss stops the run with one clear line, before the checkpoint of that epoch.

    Lightning runs checkpoint callbacks last, so raising here keeps last.ckpt at the last good epoch. The
    check reads the epoch's logged mean (no per-step device sync).
    """

    def __init__(self, run_dir, lr: float):
        self.run_dir, self.lr = run_dir, lr

    def on_train_epoch_end(self, trainer, pl_module):
        from ..errors import UserError

        for key in ("train_loss", "val_loss"):
            value = trainer.callback_metrics.get(key)
            if value is not None and not math.isfinite(float(value)):
                kept = self.run_dir / "checkpoints" / "last.ckpt"
                kept = f"the last good epoch's checkpoint is kept in {kept}" if kept.is_file() else "no epoch finished cleanly"
                raise UserError(f"the {key.replace('_', ' ')} became {float(value)} in epoch {trainer.current_epoch + 1}: "
                                f"training diverged ({kept})", f"lower the learning rate, e.g. --lr {self.lr / 10:g}")


class ShardByRank(L.Callback):
    """Tell imagefit's tensor loaders which share of the data this process trains on."""

    def __init__(self, *loaders):
        self.loaders = [loader for loader in loaders if hasattr(loader, "world_size")]

    def setup(self, trainer, pl_module, stage):
        for loader in self.loaders:
            loader.rank, loader.world_size = trainer.global_rank, trainer.world_size


class EarlyStoppingInEpochs(EarlyStopping):
    def __init__(self, monitor: str, mode: str, patience_epochs: int, val_every: int = 1,
                 min_delta: float = 0.0, start_from_epoch: int = 0):
        super().__init__(monitor=monitor, mode=mode, patience=math.ceil(patience_epochs / val_every),
                         min_delta=min_delta, check_finite=True, verbose=False)
        self.start_from_epoch = start_from_epoch

    def _run_early_stopping_check(self, trainer) -> None:
        if trainer.current_epoch < self.start_from_epoch:  # warm-up: neither best nor wait counts
            return
        super()._run_early_stopping_check(trainer)


class Lookahead(L.Callback):
    """From `start` (a fraction of the steps), every `every` steps: average <- lerp(average, weights, 1 - rho),
    then weights <- average. rho grows as (step / total)^power, so the average moves fast early and holds
    strongly at the end; the weights at each epoch's end (validated and checkpointed) are the average."""

    def __init__(self, every: int = 5, start: float = 0.3, decay: float = 0.95, power: float = 3.0):
        self.every, self.start, self.decay, self.power = every, start, decay, power
        self.average: list[torch.Tensor] | None = None

    @staticmethod
    def _tensors(pl_module) -> list[torch.Tensor]:
        return [t for t in pl_module.state_dict(keep_vars=True).values() if t.is_floating_point()]

    @torch.no_grad()
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        step, total = trainer.global_step, max(1, trainer.estimated_stepping_batches)
        if step < self.start * total or step % self.every:
            return
        tensors = self._tensors(pl_module)
        if self.average is None:
            self.average = [t.detach().clone() for t in tensors]
            return
        rho = self.decay**self.every * (step / total) ** self.power
        for average, t in zip(self.average, tensors):
            average.lerp_(t.detach(), 1 - rho)
            t.copy_(average)

    @torch.no_grad()
    def on_train_epoch_end(self, trainer, pl_module):
        if self.average is not None:
            for average, t in zip(self.average, self._tensors(pl_module)):
                t.copy_(average)

    def state_dict(self) -> dict:
        return {"average": self.average}

    def load_state_dict(self, state_dict: dict) -> None:
        self.average = state_dict.get("average")


def read_checkpoint(path: str | Path, map_location=None) -> dict:
    """A checkpoint loaded without unpickling code (`weights_only`); anything else is one line, and nothing in it ran."""
    try:
        with warnings.catch_warnings():  # torch's note about pickle protocols would print before our one line
            warnings.simplefilter("ignore")
            return torch.load(path, map_location=map_location or "cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as e:
        text = str(e).split("WeightsUnpickler error:", 1)[-1]  # torch's own reason, after its advice
        advice = ("Weights only load failed", "Check the documentation", "Please file an issue")
        reason = next((line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith(advice)),
                      type(e).__name__)
        run_dir = Path(path).parent.parent
        raise UserError(f"{path} is not a checkpoint imagefit wrote ({reason[:160]}); it was refused and none of its "
                        "contents ran", f"start the run again: imagefit train --config {run_dir / 'config.yaml'}") from None


class AtomicCheckpointIO(TorchCheckpointIO):
    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        try:
            with atomic.atomic_path(path) as tmp:
                torch.save(checkpoint, tmp)
        except RuntimeError as e:  # torch's zip writer reports a short write (a full disk) as "unexpected pos"
            if "unexpected pos" in str(e) or "file write failed" in str(e):
                run_dir = Path(path).parent.parent
                # no checkpoint yet (the first epoch's): nothing to resume from, the run starts again
                again = None if (Path(path).parent / "last.ckpt").is_file() else (
                    "free disk space (or raise the file-size limit), then start the run again: "
                    f"imagefit train --config {run_dir / 'config.yaml'}")
                raise atomic.no_room(Path(path), "the disk is full or a file-size limit was reached",
                                     run_dir=run_dir, hint=again) from None
            raise

    def load_checkpoint(self, path, map_location=None, weights_only=None):
        return read_checkpoint(path, map_location)


class GracefulInterrupt:
    """Context manager: the first Ctrl-C (SIGINT) or `kill` (SIGTERM) sets trainer.should_stop instead of
    killing the process, so the run saves, evaluates and reports as "interrupted"; a second one stops at once.

    Lightning's own SIGTERM handler runs first during fit (it keeps ours in its chain) and raises
    SIGTERMException after the current batch: `run.py` catches that and goes on as for Ctrl-C."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.trainer = None
        self.interrupted = False
        self._previous: dict = {}

    def _handle(self, signum, frame):
        self.interrupted = True
        if self.trainer is not None:
            self.trainer.should_stop = True
        for sig, previous in self._previous.items():  # a second signal: at once
            default = signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL
            signal.signal(sig, previous if callable(previous) and previous is not self._handle else default)

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = {sig: signal.signal(sig, self._handle) for sig in self.SIGNALS}
        return self

    def __exit__(self, *exc):
        if threading.current_thread() is threading.main_thread():
            for sig, previous in self._previous.items():
                signal.signal(sig, previous if previous is not None else signal.SIG_DFL)
        return False


class FollowPlan(L.Callback):
    """Keep a budgeted run on its plan, on measurements rather than the probe's first guess:

    - step times are smoothed (an exponential average over about `window` steps) and compared with the plan
      every `window` steps; a drift of more than DRIFT re-plans the remaining steps (a busy machine);
    - each validation pass is timed, and the plan's validation and test costs follow it (the test pass
      counts its test-time-augmentation views), so the training deadline moves with what evaluation really costs;
    - training stops after the planned step (mid-epoch if need be: validation and the checkpoint still run),
      or at the deadline if the plan was still optimistic (`stopped_by_deadline`)."""

    def __init__(self, plan, spent, test_images: int, val_images: int, window: int = 8, max_notes: int = 4):
        self.plan, self.spent, self.window, self.max_notes = plan, spent, window, max_notes
        self.test_images, self.val_images = test_images, val_images
        self._last: float | None = None
        self._ema: dict[int, float] = {}  # smoothed step seconds by training side
        self._since_check = 0
        self._val_start: float | None = None
        self.count = 0
        self.earlier = list(plan.replans)  # notes of an earlier session of a resumed run stay as they are
        self.stopped_by_deadline = False

    def epoch_cap(self, trainer, done_this_epoch: int) -> int:
        """The epochs it takes to run the plan's steps from where training is. Without a resume this is the
        plan's own cap; after a resume from the middle of an epoch the epochs no longer line up with the steps,
        and the plan's cap stopped resumed runs 1 and 14 steps short of their planned steps, their schedule
        unfinished. The steps end the run; the cap only keeps Lightning from ending it first."""
        left = max(0, self.plan.steps - trainer.global_step + done_this_epoch)  # counted from this epoch's start
        return max(1, trainer.current_epoch + math.ceil(left / self.plan.steps_per_epoch))

    def on_train_epoch_start(self, trainer, pl_module):
        trainer.fit_loop.max_epochs = self.epoch_cap(trainer, 0)
        self._last = None  # the first step of an epoch follows validation: not a step time

    def on_validation_epoch_start(self, trainer, pl_module):
        self._val_start = time.perf_counter()

    def on_validation_epoch_end(self, trainer, pl_module):
        from ..plan.budget import TTA_EVAL_COST, TTA_VIEWS, final_pass_images

        if self._val_start is None or not self.val_images:
            return
        seconds = time.perf_counter() - self._val_start
        per_image = seconds / self.val_images
        plan = self.plan
        plan.val_seconds = seconds
        plan.test_seconds = (per_image * final_pass_images(self.test_images, self.val_images)
                             * TTA_VIEWS[plan.tta] * TTA_EVAL_COST[plan.tta])

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        from ..plan.budget import DRIFT, replan_steps

        now = time.perf_counter()
        step, plan = trainer.global_step, self.plan
        side = plan.size_at(step - 1)
        if self._last is not None and side == plan.size_at(max(0, step - 2)):
            seconds = now - self._last
            ema = self._ema.get(side)
            self._ema[side] = seconds if ema is None else ema + (seconds - ema) * 2 / (self.window + 1)
            self._since_check += 1
        self._last = now
        if self._since_check >= self.window:
            self._since_check = 0
            planned = plan.step_seconds if side == plan.image_size else plan.early_step_seconds
            ratio = self._ema[side] / planned
            if abs(ratio - 1) > DRIFT:
                epochs_left = math.ceil(max(0.0, (plan.steps - step) / plan.steps_per_epoch))
                steps = replan_steps(plan, step, self.spent(), ratio, epochs_left)
                steps = max(steps, min(step + 1, plan.max_steps or step + 1))
                plan.step_seconds *= ratio
                plan.early_step_seconds *= ratio
                if steps != plan.steps:
                    self.note(f"step {step}: steps took {ratio:.2f}x the planned time, so {steps} steps in all "
                              f"instead of {plan.steps}")
                    plan.steps = steps
                    trainer.fit_loop.max_epochs = self.epoch_cap(trainer, batch_idx + 1)
        done = step >= plan.steps
        late = not done and self.spent() + self._ema.get(side, 0.0) >= plan.train_deadline  # the next step would end too late
        if trainer.world_size > 1:  # rank 0's plan and clock decide: a rank stopping alone would hang the others
            steps, done, late = agree(trainer, (plan.steps, int(done), int(late)))
            if steps != plan.steps:
                plan.steps = steps
                trainer.fit_loop.max_epochs = self.epoch_cap(trainer, batch_idx + 1)
        if done:
            trainer.should_stop = True
        elif late:
            self.stopped_by_deadline = trainer.should_stop = True
            self.note(f"step {step}: the training deadline came before the planned {plan.steps} steps")

    def note(self, text: str) -> None:
        self.count += 1
        mine = self.plan.replans[len(self.earlier):]
        if self.count < self.max_notes:
            mine.append(text)
        else:
            mine[self.max_notes - 1:] = [f"{self.count} re-plans in all, the last at {text}"]
        self.plan.replans[len(self.earlier):] = mine
