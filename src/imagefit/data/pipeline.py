"""From a config to the three splits the loop needs, with every choice written down.

Validation is carved from train (stratified, seeded) unless the source has its own; test is
carved only when the source has none, and never used for any choice. Per-channel mean and std
are measured on train alone and travel with the model, so a saved model takes raw uint8 images.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import torch

from ..config import TrainConfig
from ..runtime import available_memory
from .split import carve
from .types import ImageSet, SourceData

log = logging.getLogger("imagefit")


@dataclass
class PreparedData:
    name: str
    class_names: list[str]
    train: ImageSet
    val: ImageSet | None
    test: ImageSet | None  # None in a run without a test pass (--no-test-pass: a tune's trial)
    mean: list[float]
    std: list[float]
    loader: str  # "memory" or "stream"
    notes: list[str] = field(default_factory=list)
    image_shape: tuple[int, int] | None = None  # (channels, side) of the images, kept when splits become features
    skipped: list[dict] = field(default_factory=list)  # files of the source that could not be used (SourceData.skipped)
    test_images: ImageSet | None = None  # the test images themselves when `test` became features (linear probe)
    frozen_from_cache: bool | None = None  # linear probe / partial: whether every split's frozen pass was a cache read
    audit: dict | None = None  # the data audit of the images (data/audit.py), made before any split became features
    decoded_side: int | None = None  # the side the images were decoded at, when the planner resized them after
    label_issues: object | None = None  # --find-label-issues: train/label_issues.LabelIssues

    def __post_init__(self):
        if self.image_shape is None:
            self.image_shape = (int(self.train.shape[1]), int(self.train.shape[-1]))

    @property
    def test_pictures(self) -> ImageSet:
        """The test split as images (with their file names), whatever the model trained on."""
        return self.test_images if self.test_images is not None else self.test

    @property
    def test_count(self) -> int:
        """Images the final pass evaluates (0 in a run without a test pass)."""
        return len(self.test) if self.test is not None else 0

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def channels(self) -> int:
        return self.image_shape[0]

    @property
    def image_size(self) -> int:
        return self.image_shape[1]


def choose_loader(cfg: TrainConfig, nbytes: int) -> tuple[str, str]:
    """Memory when the decoded uint8 data fits in half of the free RAM, else stream from disk."""
    free = available_memory()
    if cfg.loader != "auto":
        return cfg.loader, f"loader '{cfg.loader}' as configured ({nbytes / 2**20:.0f} MiB of decoded images)"
    if nbytes <= free // 2:
        return "memory", f"in-memory tensor loader: {nbytes / 2**20:.0f} MiB of decoded images fit in RAM ({free / 2**30:.1f} GiB free)"
    return "stream", (f"streaming from a memory-mapped cache with {cfg.num_workers} DataLoader workers: "
                      f"{nbytes / 2**30:.1f} GiB of decoded images exceed half the free RAM ({free / 2**30:.1f} GiB)")


def channel_stats(data: ImageSet, chunk: int = 4096) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of the images scaled to 0..1, from each channel's count of its 256 levels: one
    pass over the uint8 pixels with no float copy of them (the float64 sums this replaced took 7x as long: a
    minute of a 300,000-image run's start-up, bench/README.md's scale section)."""
    c = data.images.shape[1]
    counts = torch.zeros(c, 256, dtype=torch.int64)
    for start in range(0, len(data), chunk):
        x = data.take(start, start + chunk)
        for k in range(c):
            counts[k] += torch.bincount(x[:, k].reshape(-1), minlength=256)
    levels = torch.arange(256, dtype=torch.float64) / 255
    n = counts.sum(1).double()
    mean = (counts.double() @ levels) / n
    std = ((counts.double() @ (levels * levels)) / n - mean**2).clamp_min(1e-12).sqrt().clamp_min(1e-3)
    return [round(float(v), 6) for v in mean], [round(float(v), 6) for v in std]


def prepare_data(cfg: TrainConfig) -> PreparedData:
    import time

    from .sources import load_source  # heavy imports (PIL, pools) only when data is needed

    started = time.perf_counter()
    source: SourceData = load_source(cfg.dataset, data_dir=cfg.data_dir, cache_dir=cfg.cache_dir,
                                     image_size=cfg.image_size, test_fraction=cfg.test_fraction,
                                     seed=cfg.seed, mmap=True, workers=cfg.num_workers,
                                     images=cfg.images, image_column=cfg.image_column, label_column=cfg.label_column,
                                     task=cfg.task, label_separator=cfg.label_separator)
    count = sum(len(s) for s in (source.train, source.val, source.test) if s is not None)
    log.info("data: %s images ready in %.1f s (a decode with %d processes, or a cache read)", f"{count:,}",
             time.perf_counter() - started, max(1, cfg.num_workers))
    check_skipped(cfg, source)
    if len(source.class_names) < 2:
        from ..errors import UserError

        raise UserError(f"data set {cfg.dataset} has a single class ({', '.join(source.class_names)}): "
                        "a classifier needs at least two", "add a second class folder of images")
    notes = list(source.notes)
    if cfg.exclude:  # e.g. a run's label_issues.csv: those images train in no split
        from .exclude import exclude_files, read_exclude

        notes += exclude_files(source, read_exclude(cfg.exclude), cfg.exclude)
    train, val, test = source.train, source.val, source.test
    nbytes = sum(s.images.numel() for s in (train, val, test) if s is not None)
    mode, why = choose_loader(cfg, nbytes)
    log.info(why)
    lazy = mode == "stream"
    # carved as index views in both modes: the in-memory loader then copies each split into RAM once
    # (materialize), instead of copying the carved splits and then copying them again (3x the set at 300,000)
    train, val, test, carved = carve_splits(train, val, test, cfg.test_fraction, cfg.val_fraction, cfg.seed, lazy=True)
    notes += carved
    if val is not None and len(val) == 0:
        val = None
        notes.append("No class has two training images to spare: this run has no validation split.")
    if len(train) == 0:
        raise_empty(cfg)
    found = None
    if cfg.audit:  # on the images as carved, before training and before a linear probe turns them into features
        from .audit import audit

        found = audit({"train": train, "val": val, "test": test}, source.class_names, source.originals, len(source.skipped))
        log.info("data audit: %s images in %.1f s", f"{found['images']:,}", found["seconds"])
    if not cfg.test_pass:  # a tune's trial: ranked on validation, its test split never read
        test = None
        notes.append("No test pass (--no-test-pass): the run is judged on its validation split, and the seconds a "
                     "test pass takes went to training.")
    if not lazy:  # one private in-memory copy per split; the memory map is dropped
        train, val, test = (s.materialize() if s is not None else None for s in (train, val, test))
    notes.append(why[0].upper() + why[1:] + ".")
    mean, std = channel_stats(train)
    return PreparedData(source.name, source.class_names, train, val, test, mean, std, mode, notes,
                        skipped=list(source.skipped), audit=found)


def carve_splits(train: ImageSet, val: ImageSet | None, test: ImageSet | None, test_fraction: float,
                 val_fraction: float, seed: int, lazy: bool = False) -> tuple[ImageSet, ImageSet | None, ImageSet, list[str]]:
    """The splits a source lacks, carved from train as every run carves them (test first with seed + 1, then
    validation with seed), and the notes that say so: `imagefit evaluate --split test` carves a run's own test
    split again with the same call."""
    notes = []
    how = "a random" if train.multilabel else "a stratified"  # several labels an image: no one class to stratify by
    if test is None:
        train, test = carve(train, test_fraction, seed=seed + 1, lazy=lazy)
        notes.append(f"The source has no test split: {how} {test_fraction:.0%} of its images "
                     f"({len(test)}) was set aside as test with seed {seed + 1}, before anything else.")
    if val is None and val_fraction > 0:
        train, val = carve(train, val_fraction, seed=seed, lazy=lazy)
        notes.append(f"Validation: {how} {val_fraction:.0%} of train ({len(val)} images), seed {seed}.")
    elif val is not None:
        notes.append(f"Validation: the source's own split ({len(val)} images).")
    return train, val, test, notes


SKIPPED_SHOWN = 20  # skipped files named in a log line, metrics.json and the report; the count is always whole


def skipped_summary(skipped: list[dict], shown: int = 5) -> str:
    """'3 files: cat/a.jpg (OSError: ...), ...' with at most `shown` named."""
    named = "; ".join(f"{s['file']} ({s['reason']})" for s in skipped[:shown])
    more = f"; and {len(skipped) - shown:,} more" if len(skipped) > shown else ""
    return f"{len(skipped):,} file{'s' if len(skipped) != 1 else ''}: {named}{more}"


def check_skipped(cfg: TrainConfig, source: SourceData) -> None:
    """Bad files in a data set: one log line and on with the rest, or with --strict one clear error.

    Runs after the decode cache, so a cached source is judged by the same list as a fresh decode.
    """
    if not source.skipped:
        return
    if cfg.strict:
        from ..errors import UserError

        raise UserError(f"--strict: data set {cfg.dataset} has {skipped_summary(source.skipped, 3)} that cannot be used",
                        "remove or replace those files, or drop --strict to skip them")
    log.warning("skipped %s (listed in metrics.json and report.md; --strict refuses instead)",
                skipped_summary(source.skipped, 3))


def raise_empty(cfg: TrainConfig):
    from ..errors import UserError

    raise UserError(f"data set '{cfg.dataset}' has no training images left after the splits",
                    "add images or lower --val-fraction/--test-fraction")
