"""Experiment tracking (`--logger csv,tensorboard,mlflow,wandb`) and progress lines, through Lightning.

The trackers get exactly what history.csv gets: one set of numbers per epoch, logged from the row
HistoryWriter has just written (step = the epoch), so a dashboard and the run folder never disagree.
Everything is written under the run folder, except MLflow's store, which is shared by all runs of a
runs folder so that `mlflow ui --backend-store-uri sqlite:///runs/mlflow.db` shows them side by side;
the run folder's files become the MLflow run's artifacts when the run has finished. Weights & Biases writes
runs/<name>/wandb/ and runs offline (`wandb sync` uploads it later) unless an API key is set up and the W&B
host answers, or WANDB_MODE says otherwise: a run never waits on, or fails for, a network it does not have.
Only rank 0 tracks and prints.
"""
from __future__ import annotations

import os
import socket
import sys
from pathlib import Path
from urllib.parse import urlparse

import lightning as L

from ..config import TrainConfig
from ..errors import UserError
from .history import HistoryWriter

LOGGERS = ("csv", "tensorboard", "mlflow", "wandb")
MLFLOW_DB = "mlflow.db"
EXPERIMENT = "imagefit"  # MLflow's experiment and W&B's project (WANDB_PROJECT overrides the latter)
WANDB_HOST = "https://api.wandb.ai"
UNTRACKED = {"checkpoints", "logs", "wandb"}  # the trackers' own folders, never uploaded as MLflow artifacts


def mlflow_uri(runs_dir: Path) -> str:
    return f"sqlite:///{(Path(runs_dir) / MLFLOW_DB).resolve()}"


def wandb_api_key(host: str) -> bool:
    """Whether W&B has a key here: WANDB_API_KEY, or the netrc entry `wandb login` writes."""
    import netrc

    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc(os.environ.get("NETRC")).authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def wandb_mode() -> str:
    """WANDB_MODE when set; else online only with a key and a W&B host that answers within 2 s, else offline
    (no key means no connection is even tried)."""
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    url = urlparse(os.environ.get("WANDB_BASE_URL") or WANDB_HOST)
    if not url.hostname or not wandb_api_key(url.hostname):
        return "offline"
    try:
        socket.create_connection((url.hostname, url.port or (80 if url.scheme == "http" else 443)), timeout=2).close()
    except OSError:
        return "offline"
    return "online"


def wandb_logger(run_dir: Path):
    """Lightning's WandbLogger writing runs/<name>/wandb/. The mode goes to wandb.init, not through Lightning's
    `offline=True`, which sets WANDB_MODE for the rest of the process (every later run of a study)."""
    from lightning.pytorch.loggers import WandbLogger

    try:
        import wandb  # noqa: F401
    except ImportError:
        raise UserError("--logger wandb needs the wandb package", "pip install 'imagefit[wandb]'") from None
    mode = wandb_mode()
    return WandbLogger(name=run_dir.name, save_dir=str(run_dir), project=os.environ.get("WANDB_PROJECT") or EXPERIMENT,
                       mode=mode)


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
        elif name == "wandb":
            made.append(wandb_logger(run_dir))
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
        """After the run's files are written: close each logger and give MLflow the folder's files. A W&B run is
        finished here (Lightning leaves it open, and the next run in this process would log into it)."""
        from lightning.pytorch.loggers import MLFlowLogger, WandbLogger

        for logger in self.loggers:
            if isinstance(logger, MLFlowLogger):
                for path in sorted(p for p in run_dir.rglob("*") if p.is_file()
                                   and not UNTRACKED & set(p.relative_to(run_dir).parts)):
                    rel = path.parent.relative_to(run_dir)
                    logger.experiment.log_artifact(logger.run_id, str(path), None if rel == Path(".") else str(rel))
            logger.finalize("failed" if interrupted else "success")
            if isinstance(logger, WandbLogger):  # wandb prints where the run is and, offline, how to sync it
                logger.experiment.finish(exit_code=1 if interrupted else 0)


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
