"""What a run sets up before Lightning's fit: its folder, a check of the Trainer's arguments (before anything
is created), the loaders, and Lightning's log levels."""
from __future__ import annotations

import logging
import warnings
from pathlib import Path

import lightning as L
from lightning.fabric.utilities.exceptions import MisconfigurationException

from ..config import TrainConfig
from ..data.loader import TensorLoader, stream_loader
from ..data.pipeline import PreparedData
from ..errors import UserError
from ..evaluate.predict import forward_batch
from .balance import balanced_sample_weights


log = logging.getLogger("imagefit")


def unique_run_dir(runs_dir: Path, name: str) -> Path:
    """Create and return runs/<name>, or runs/<name>-2, -3 ... : a new run never overwrites an old one.

    mkdir without exist_ok is the claim, so two runs started at once with one name get two folders.
    """
    runs_dir.mkdir(parents=True, exist_ok=True)
    candidate, n = runs_dir / name, 1
    while True:
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            n += 1
            candidate = runs_dir / f"{name}-{n}"


def check_trainer_args(cfg: TrainConfig, precision: str) -> int:
    """Build a throwaway Trainer with the run's accelerator, devices and precision, before the run folder
    exists, so a bad --accelerator or --devices is one clear line and leaves nothing behind. Returns the
    number of processes the run trains on."""
    try:
        return L.Trainer(accelerator=cfg.accelerator, devices=cfg.devices, num_nodes=cfg.num_nodes, precision=precision,
                         logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False).world_size
    except (MisconfigurationException, ValueError, RuntimeError, ImportError, TypeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"cannot train with --accelerator {cfg.accelerator} --devices {cfg.devices}: {first}",
                        "pass --accelerator auto --devices auto (or cpu, gpu and a device count this machine has)") from None


def make_loaders(cfg: TrainConfig, data: PreparedData, eval_side: int):
    """Loaders for rank 0 of 1; ShardByRank tells the tensor loaders their share once the Trainer knows it."""
    val_batch = forward_batch(eval_side, cfg.batch_size * 2, cfg.on_cuda)
    weights = balanced_sample_weights(data.train.labels, data.num_classes) if cfg.sampler == "balanced" else None
    if cfg.batch_size > len(data.train):
        data.notes.append(f"The batch size {cfg.batch_size} is larger than the {len(data.train):,} training images: each "
                          f"epoch was one optimizer step on all of them.")
        log.warning("batch size %d is larger than the %s training images: each epoch is one step (fix: pass "
                    "--batch-size %d or less for several steps an epoch)", cfg.batch_size, f"{len(data.train):,}",
                    max(1, len(data.train) // 4))
    # --flip alternating needs each image's index: the in-memory loader has it, the stream loader's DataLoader
    # workers do not (there flips stay random). Cached features or activations are not flipped.
    alternating = cfg.flip == "alternating" and cfg.augment != "none" and not data.train.images.is_floating_point()
    if alternating:
        data.notes.append("Flips: alternating, each training image mirrored in every other epoch." if data.loader == "memory"
                          else "Flips: random (alternating flips need the in-memory loader; this run streams from disk).")
    if data.loader == "stream":
        train = stream_loader(data.train, cfg.batch_size, True, cfg.seed, cfg.num_workers, weights)
        val = stream_loader(data.val, val_batch, False, cfg.seed, cfg.num_workers) if data.val else None
        return train, val
    train = TensorLoader(data.train, cfg.batch_size, shuffle=True, seed=cfg.seed, sample_weights=weights,
                         alternating_flip=alternating)
    val = TensorLoader(data.val, val_batch, shuffle=False) if data.val else None
    return train, val


def quiet_lightning() -> None:
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.pytorch.accelerators.cuda", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*`IterableDataset` has `__len__` defined.*")
    warnings.filterwarnings("ignore", message=".*The number of training batches.*")
    warnings.filterwarnings("ignore", message=".*Checkpoint directory .* exists and is not empty.*")  # a resume's
