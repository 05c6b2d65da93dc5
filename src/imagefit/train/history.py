"""`history.csv`, one row per epoch, rewritten atomically at the end of every epoch."""
from __future__ import annotations

import csv
import io
import time
from pathlib import Path

import lightning as L

from .. import atomic

COLUMNS = ["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds"]
MULTILABEL_COLUMNS = ["val_map"]  # written when the run logs them (a multi-label run's validation mAP)


class HistoryWriter(L.Callback):
    def __init__(self, path: Path):
        self.path = path
        self.rows: list[dict] = []
        self.train_seconds = 0.0  # time in training batches only: what images/s is measured on
        self.train_images = 0  # images trained on (batch limits and sharding make it differ from the data size)
        self.elapsed_before = 0.0  # wall seconds of earlier sessions of a resumed run
        self.planned_epochs: int | None = None
        self.plan = None  # the time-budget plan (BudgetPlan), saved so a resumed run re-plans from it
        self.session_train_seconds = 0.0  # this process's share (the time breakdown)
        self.session_val_seconds = 0.0
        self._val_start: float | None = None
        self._epoch_start = 0.0
        self._train_start: float | None = None
        self._lr: float | None = None
        self._session_start = time.perf_counter()

    # saved in every checkpoint, so a resumed run keeps its history and its clock
    def state_dict(self) -> dict:
        return {"rows": self.rows, "train_seconds": self.train_seconds, "train_images": self.train_images,
                "planned_epochs": self.planned_epochs, "plan": self.plan.to_dict() if self.plan else None,
                "elapsed": self.elapsed_before + time.perf_counter() - self._session_start}

    def load_state_dict(self, state: dict) -> None:
        self.rows = list(state["rows"])
        self.train_seconds = state["train_seconds"]
        self.train_images = state.get("train_images", 0)
        self.planned_epochs = state.get("planned_epochs")
        self.elapsed_before = state.get("elapsed", 0.0)

    @property
    def elapsed(self) -> float:
        return self.elapsed_before + time.perf_counter() - self._session_start

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self._lr = trainer.optimizers[0].param_groups[0]["lr"]  # the rate this step uses

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.train_images += len(batch[1])

    def on_train_epoch_start(self, trainer, pl_module):
        self._images_at_epoch_start = self.train_images
        self._epoch_start = self._train_start = time.perf_counter()

    def _end_training_part(self) -> None:
        if self._train_start is not None:
            seconds = time.perf_counter() - self._train_start
            self.train_seconds += seconds
            self.session_train_seconds += seconds
            self._train_start = None

    def on_validation_epoch_start(self, trainer, pl_module):
        self._end_training_part()  # validation inside fit: the training part of the epoch ends here
        self._val_start = time.perf_counter()

    def on_validation_epoch_end(self, trainer, pl_module):
        if self._val_start is not None:
            self.session_val_seconds += time.perf_counter() - self._val_start
            self._val_start = None

    def on_train_epoch_end(self, trainer, pl_module):
        if trainer.world_size > 1:  # images/s counts every rank's images, not rank 0's shard alone
            import torch

            mine = self.train_images - self._images_at_epoch_start
            total = trainer.strategy.reduce(torch.tensor(float(mine), device=pl_module.device), reduce_op="sum")
            self.train_images = self._images_at_epoch_start + int(total.item())
        self._end_training_part()  # no validation this epoch
        m = trainer.callback_metrics

        def value(key):
            return round(float(m[key]), 6) if key in m else ""

        lr = self._lr if self._lr is not None else ""
        self.rows.append({
            "epoch": trainer.current_epoch + 1,
            "train_loss": value("train_loss"), "train_acc": value("train_acc"),
            "val_loss": value("val_loss"), "val_acc": value("val_acc"),
            "lr": f"{lr:.6g}" if lr != "" else "", "seconds": round(time.perf_counter() - self._epoch_start, 3),
            **{k: value(k) for k in MULTILABEL_COLUMNS if getattr(pl_module, "multilabel", False)},
        })
        if trainer.is_global_zero:
            write_history(self.path, self.rows)


def write_history(path: Path, rows: list[dict]) -> None:
    buf = io.StringIO()
    extra = [k for k in MULTILABEL_COLUMNS if any(k in r for r in rows)]
    writer = csv.DictWriter(buf, fieldnames=COLUMNS + extra, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic.write_text(path, buf.getvalue(), run_dir=path.parent)  # a full disk: one line naming the run to resume
