"""Experiment tracking (`--logger csv,tensorboard,mlflow`) and progress lines, through Lightning.

The trackers get exactly what history.csv gets: one set of numbers per epoch, logged from the row
HistoryWriter has just written (step = the epoch), so a dashboard and the run folder never disagree.
Everything is written under the run folder, except MLflow's store, which is shared by all runs of a
runs folder so that `mlflow ui --backend-store-uri sqlite:///runs/mlflow.db` shows them side by side;
the run folder's files become the MLflow run's artifacts when the run has finished.
Only rank 0 tracks and prints.
"""
from __future__ import annotations

import sys
from pathlib import Path

import lightning as L

from ..config import TrainConfig
from .history import HistoryWriter

LOGGERS = ("csv", "tensorboard", "mlflow")
MLFLOW_DB = "mlflow.db"
EXPERIMENT = "imagefit"


def mlflow_uri(runs_dir: Path) -> str:
    return f"sqlite:///{(Path(runs_dir) / MLFLOW_DB).resolve()}"


def make_loggers(cfg: TrainConfig, run_dir: Path) -> list:
    """Lightning logger objects for cfg.logger, each writing under the run folder (MLflow: runs/mlflow.db)."""
    from lightning.pytorch import loggers

    made = []
    for name in cfg.logger:
        if name == "csv":
            made.append(loggers.CSVLogger(run_dir, name="logs", version="csv"))
        elif name == "tensorboard":
            made.append(loggers.TensorBoardLogger(run_dir, name="logs", version="tensorboard", default_hp_metric=False))
        elif name == "mlflow":
            made.append(loggers.MLFlowLogger(experiment_name=EXPERIMENT, run_name=run_dir.name,
                                             tracking_uri=mlflow_uri(run_dir.parent),
                                             artifact_location=(run_dir.parent / "mlruns").resolve().as_uri()))
    return made


class Tracking(L.Callback):
    """Logs the config once, then each history row as it is written, to every configured logger."""

    def __init__(self, cfg: TrainConfig, run_dir: Path, history: HistoryWriter):
        self.cfg, self.run_dir, self.history = cfg, run_dir, history
        self.loggers = []
        self._logged = 0

    def on_fit_start(self, trainer, pl_module):
        if not trainer.is_global_zero:
            return
        self.loggers = make_loggers(self.cfg, self.run_dir)
        params = {k: ("" if v is None else v) for k, v in self.cfg.to_dict().items()}
        for logger in self.loggers:
            logger.log_hyperparams(params)
        self._logged = len(self.history.rows)  # a resumed run: earlier epochs were logged before

    def on_train_epoch_end(self, trainer, pl_module):
        if not trainer.is_global_zero:
            return
        for row in self.history.rows[self._logged:]:
            values = {k: float(v) for k, v in row.items() if k != "epoch" and v != ""}
            for logger in self.loggers:
                logger.log_metrics(values, step=row["epoch"])
                logger.save()
        self._logged = len(self.history.rows)

    def finish(self, run_dir: Path, interrupted: bool = False) -> None:
        """After the run's files are written: close each logger and give MLflow the folder's files."""
        from lightning.pytorch.loggers import MLFlowLogger

        for logger in self.loggers:
            if isinstance(logger, MLFlowLogger):
                for path in sorted(p for p in run_dir.rglob("*") if p.is_file() and "checkpoints" not in p.parts
                                   and "logs" not in p.parts):
                    rel = path.parent.relative_to(run_dir)
                    logger.experiment.log_artifact(logger.run_id, str(path), None if rel == Path(".") else str(rel))
            logger.finalize("failed" if interrupted else "success")


class EpochLines(L.Callback):
    """Progress when stdout is not a terminal: one plain line per epoch, no bar redraws in a log file."""

    def __init__(self, history: HistoryWriter, epochs: int):
        self.history, self.epochs = history, epochs

    def on_train_epoch_end(self, trainer, pl_module):
        if not trainer.is_global_zero or not self.history.rows:
            return
        row = self.history.rows[-1]
        parts = [f"{k} {row[k]:.4f}" for k in ("train_loss", "train_acc", "val_loss", "val_acc") if row[k] != ""]
        planned = trainer.max_epochs or self.epochs  # a time budget's re-plan may have changed it
        print(f"epoch {row['epoch']}/{planned}: {', '.join(parts)}, {row['seconds']:.1f} s", flush=True)


def progress_callbacks(cfg: TrainConfig, history: HistoryWriter, epochs: int) -> tuple[list, bool]:
    """(callbacks, whether Lightning's own bar is on): the rich bar on a terminal, plain lines elsewhere."""
    if not cfg.progress:
        return [], False
    if sys.stdout.isatty():
        from lightning.pytorch.callbacks import RichProgressBar

        return [RichProgressBar()], True
    return [EpochLines(history, epochs)], False
