"""One typed configuration per run.

`TrainConfig` is the single source of truth for a run: the CLI builds it from `--config FILE.yaml`
plus command-line overrides, the run saves it whole as `config.yaml`, and
`imagefit train --config runs/<name>/config.yaml` repeats the run from that file alone.
"""
from __future__ import annotations

import dataclasses
import difflib
import logging
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from . import atomic
from .config_values import CHOICES, LIST_CHOICES, SOURCES, coerce, read_sources, read_yaml, rename_legacy_keys
from .errors import UserError

log = logging.getLogger("imagefit")

def option(default: Any = dataclasses.MISSING, help: str = "", *, default_factory: Any = dataclasses.MISSING) -> Any:
    """A TrainConfig field with its help, written once: the text `imagefit train --help` shows for the option
    (cli_parser.config_help appends the allowed values and the default, read from the field)."""
    return field(default=default, default_factory=default_factory, metadata={"help": help})


@dataclass
class TrainConfig:
    recipe: str = option("none", "a named set of defaults: fast = the airbench recipe (airbench net, SGD, triangle "
                                 "schedule, label smoothing, lookahead, flip-translate TTA); auto = with "
                                 "--time-budget, fast from scratch or ImageNet transfer, whichever the planner "
                                 "expects to be better on the data (the default for a budget with no model named); "
                                 "keys you pass override it")
    # data
    dataset: str = option("digits", "digits, cifar10, cifar100, mnist, fashion-mnist, a path to an image folder "
                                    "or .zip, a label file (.csv, .tsv, .parquet) naming each image and its class, or "
                                    "hf:NAME[:CONFIG] (a Hugging Face data set, or hf:FOLDER that save_to_disk wrote)")
    images: str | None = option(None, "with a label file as --dataset: the folder (or .zip) its image paths are "
                                      "relative to; unset: the label file's folder")
    image_column: str | None = option(None, "with a label file: the column naming each image; unset: the first "
                                            "usual name found (image, file, filename, path, id, image_id, ...)")
    label_column: str | None = option(None, "with a label file: the column naming each class; unset: the first "
                                            "usual name found (label, class, target, category, y, ...)")
    task: str = option("auto", "single = one class an image; multilabel = any number of labels an image (one sigmoid "
                               "output per class, binary cross-entropy); auto = multilabel when a label file has a "
                               "row with several labels or none")
    label_separator: str | None = option(None, "with a label file: what separates several labels in one cell; unset: "
                                               "|, ; or , when a cell holds one, else spaces when cells combine labels")
    threshold_policy: str = option("f1", "multi-label: f1 = each label's threshold is the one with the best F1 on "
                                         "validation; fixed = --threshold for every label")
    threshold: float = option(0.5, "multi-label: the probability above which a label is predicted, with "
                                   "--threshold-policy fixed (and for labels validation cannot decide)")
    find_label_issues: bool = option(False, "rank the training and validation images whose label is most likely "
                                            "wrong into label_issues.csv (cleanlab on out-of-sample probabilities of "
                                            "a model on ImageNet features; imagefit[clean])")
    exclude: str | None = option(None, "a CSV with a file column, such as a run's label_issues.csv: train without "
                                       "those images (they stay in no split; test images are never dropped)")
    data_dir: str = option("~/.cache/imagefit/data", "where named data sets are downloaded and kept")
    cache_dir: str = option("~/.cache/imagefit/cache", "where decoded images, linear-probe features and partial "
                                                       "fine-tuning's trunk activations are cached between runs")
    image_size: int | None = option(None, "side in pixels; unset: from the data, its median side capped at 128 (for "
                                          "a pretrained model the network input, 128 for images of 64 px or less)")
    early_size: int | None = option(None, "progressive resizing: train the first --early-fraction of the steps at "
                                          "this side, then at the full side; 0: off; unset: off, or with "
                                          "--time-budget half the side for images of 64 px and more")
    early_fraction: float = option(0.5, "the share of the training steps at --early-size")
    val_fraction: float = option(0.1, "share of the training images held out for validation (0 for none)")
    test_fraction: float = option(0.2, "share of the images held out for test when the source has no test split")
    augment: str = option("basic", "training augmentation: basic = random crop (1/8 of the side) + flip, light = "
                                   "1/16 shift + flip, trivial = kornia's TrivialAugment then basic, randaugment = "
                                   "kornia's RandAugment (2 ops, strength 9) then basic (imagefit[augment])")
    mixup: float = option(0.0, "mixup: blend pairs of training images and their labels with a Beta(a, a) share, a "
                               "= this value (0.2 to 1 are usual); 0: off")
    cutmix: float = option(0.0, "cutmix: paste a Beta(a, a) share of the area of one training image into another, "
                                "labels mixed by area; 0: off (with --mixup too, each batch takes one of the two)")
    random_erasing: float = option(0.0, "the probability that a training image gets a random rectangle blanked "
                                        "(0.25 is usual; imagefit[augment]); 0: off")
    flip: str = option("random", "how training images are mirrored: random (each batch, half of them), or "
                                 "alternating (airbench: each image mirrored in every other epoch, its first "
                                 "orientation random; in-memory loader only)")
    loader: str = option("auto", "memory = decoded uint8 tensor in RAM, stream = memory-mapped cache with "
                                 "DataLoader workers, auto = memory when it fits")
    num_workers: int = option(2, "DataLoader workers of the stream loader (and image decoding processes)")
    strict: bool = option(False, "refuse a data set with unreadable or non-image files instead of skipping and "
                                 "listing them")
    audit: bool = option(True, "audit the data before training (class counts, sizes, exact and near duplicates, "
                               "label conflicts, train/test leaks) into data_audit.md and the report; a few seconds "
                               "on 60,000 images")
    # model
    model: str | None = option(None, "seed-cnn, airbench, resnet9, resnet9-small or any timm architecture "
                                     "('imagefit models' lists them); unset: seed-cnn, or tf_efficientnet_lite0 with "
                                     "--pretrained/--weights")
    # transfer learning: with --pretrained or --weights the model starts from ImageNet weights
    pretrained: bool | None = option(None, "start from ImageNet weights (offline for "
                                           "tf_efficientnet_lite0/lite1/lite2 from their pip packages); unset: off, "
                                           "or with --time-budget and no model the planner's choice "
                                           "(--no-pretrained: from scratch)")
    weights: str | None = option(None, "a local safetensors file or torch state dict to start from (never "
                                       "unpickled)")
    transfer_strategy: str | None = option(None, "what trains from pretrained weights: fine-tune (all layers, the "
                                                 "backbone at a lower rate), partial (the last --trainable-blocks "
                                                 "blocks on the frozen trunk's cached activations), linear-probe (a "
                                                 "new head on frozen features) or freeze-unfreeze (head first); "
                                                 "unset: fine-tune, or with --time-budget the planner's choice")
    trainable_blocks: int | None = option(None, "partial: how many of the backbone's last blocks train "
                                                "(EfficientNet-Lite0 has 16); unset: 4, or with --time-budget the "
                                                "planner's choice")
    backbone_lr_mult: float = option(0.1, "fine-tune: the backbone's learning rate as a multiple of the head's")
    bn_statistics: str = option("auto", "fine-tune: keep = BatchNorm layers keep their ImageNet statistics while "
                                        "their weights train; update = they follow the new data; auto = keep below "
                                        "100 training images a class (measured: docs/transfer.md)")
    freeze_epochs: int = option(1, "freeze-unfreeze: epochs with the backbone frozen before all layers train")
    # optimisation
    epochs: int | None = option(None, "passes over the training data (an upper bound with early stopping); unset: "
                                      "10, or with --time-budget as many as the budget buys (planned in steps)")
    batch_size: int | None = option(None, "training images per step (evaluation uses twice as many); unset: 128 "
                                          "(recipe fast: 1024), or with --time-budget the planner's choice (at least "
                                          "25 steps an epoch)")
    optimizer: str = option("adam", "sgd (Nesterov with --momentum), adam, adamw, or muon (Muon on convolution "
                                    "filters, Nesterov SGD on the rest: airbench94_muon)")
    lr: float | str | None = option(None, "learning rate, or find: Lightning's learning-rate finder on the training "
                                          "split picks it (lr_find.png in the run folder; see imagefit lr-find); "
                                          "unset: 1e-3 for adam/adamw, 0.05 for sgd")
    weight_decay: float = option(0.0, "L2 penalty (decoupled for adamw)")
    momentum: float = option(0.9, "SGD momentum")
    label_smoothing: float = option(0.0, "soft targets: this share of the probability is spread over all classes")
    class_weights: str = option("none", "uneven classes: balanced = each class's training loss weighted by n / "
                                        "(classes x its count) (scikit-learn's 'balanced'); validation and test "
                                        "losses stay unweighted")
    sampler: str = option("shuffle", "how each epoch draws training images: shuffle = each once; balanced = with "
                                     "replacement, every class equally likely (torch's WeightedRandomSampler)")
    bias_lr_scale: float = option(1.0, "models with BatchNorm-shift groups (airbench): their rate as a multiple of "
                                       "--lr")
    lookahead: bool = option(False, "from 30% of training, every 5 steps move the weights to their running average")
    ema: bool = option(False, "evaluate and save an exponential moving average of the weights (Lightning's "
                              "EMAWeightAveraging); validation sees the average too")
    ema_decay: float | None = option(None, "with --ema: the average's decay per step; unset: its memory is a tenth "
                                           "of the run's steps (1 - 10 / steps, at most 0.9999)")
    tta: str | None = option(None, "test-time augmentation: average the test logits over the mirror (flip) and "
                                   "1-pixel shifts (flip-translate, 6 views); unset: none (recipe fast: "
                                   "flip-translate), or with --time-budget what 4 percent of the budget buys")
    compile: bool = option(False, "torch.compile the network (pays on GPUs; measured in bench/ for CPUs)")
    scheduler: str = option("none", "learning-rate schedule: cosine decay, onecycle (warm-up over a quarter of the "
                                    "steps, then linear decay), or triangle (airbench's); unset: none from scratch, "
                                    "onecycle for transfer")
    precision: str = option("auto", "auto = bf16-mixed on CUDA and on CPUs with native bf16 (16-mixed on older "
                                    "GPUs), else 32")
    seed: int = option(0, "random seed of the split, the initialisation and the augmentation")
    # stopping and checkpoints
    val_every: int = option(1, "validate every N epochs")
    early_stopping: bool = option(False, "stop when --monitor has not improved for --patience epochs")
    monitor: str = option("val_loss", "the validation metric that early stopping and the best checkpoint follow")
    patience: int = option(5, "early stopping: epochs without improvement before stopping, whatever --val-every is")
    min_delta: float = option(0.0, "early stopping: the smallest change that counts as an improvement")
    start_from_epoch: int = option(0, "epochs of warm-up before early stopping counts")
    restore_best: bool = option(True, "with early stopping: evaluate and save the best epoch's weights")
    test_pass: bool = option(True, "evaluate the final model on the test split and write the full report; "
                                   "--no-test-pass: validation only, and the pass's seconds go to training "
                                   "(imagefit tune's trials: the search never looks at test)")
    time_budget: str | None = option(None, "the best model this wall-clock budget buys, e.g. 90s, 10m, 1h: without "
                                           "--epochs the planner chooses what you leave unset (network, side, batch, "
                                           "TTA, steps); unset: no budget")
    # bookkeeping
    name: str | None = option(None, "run folder name under --runs-dir; unset: <dataset>-<model>-<time>")
    runs_dir: str = option("runs", "where run folders are written")
    accelerator: str = option("auto", "Lightning's accelerator: auto, cpu, gpu/cuda, mps")
    devices: int | str = option(1, "Lightning's devices: how many (or which, e.g. 0,1) of the accelerator's devices "
                                   "to use; auto takes every GPU of the host")
    num_nodes: int = option(1, "Lightning's num_nodes: machines in a multi-node run (SLURM, torchrun)")
    strategy: str = option("auto", "Lightning's distributed strategy, passed unchanged (before 0.2 this key was the "
                                   "transfer strategy: old values are read as --transfer-strategy)")
    progress: bool = option(True, "progress: Lightning's rich bar on a terminal, one plain line per epoch when "
                                  "output is not a terminal")
    logger: list[str] = option(default_factory=list,
                               help="experiment tracking, several comma-separated: csv "
                                    "(runs/<name>/logs/csv/metrics.csv), tensorboard (runs/<name>/logs/tensorboard), "
                                    "mlflow (store sqlite:///<runs-dir>/mlflow.db, the run folder as artifacts), wandb "
                                    "(Weights & Biases, runs/<name>/wandb/; offline without an API key or network)")
    limit_train_batches: int | None = option(None, "train on at most N batches per epoch (smoke tests, benchmarks); "
                                                   "unset: all")

    def __post_init__(self):
        if self.recipe == "auto":  # the start is open: from scratch or ImageNet transfer, decided after decoding
            return
        if self.model is None and not (self.planned and self.recipe == "fast"):  # else the planner's choice
            self.model = "tf_efficientnet_lite0" if self.transfer else "seed-cnn"
        if self.transfer_strategy is None and not (self.planned and self.transfer):
            self.transfer_strategy = "fine-tune"
        if self.trainable_blocks is None and self.transfer_strategy == "partial" and not self.planned:
            self.trainable_blocks = DEFAULT_TRAINABLE_BLOCKS

    # ---- construction -------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "config",
                  sources: dict[str, str] | None = None) -> "TrainConfig":
        """The typed config of `values` (the user's keys). `sources`: who set a key the user passes on (a run
        folder's config.yaml, a planner's decision); every other key given here is the user's."""
        known = {f.name for f in fields(cls)}
        values = rename_legacy_keys(values, source)
        set_by = {k: (sources or {}).get(k, "user") for k in values}  # what the user set, before recipes fill in theirs
        if _plans(values):  # a budget and no model: the best from-scratch recipe, or the planner's pick of a start
            values = {**values, "recipe": "auto" if values.get("pretrained") is None else "fast"}
        if (values.get("pretrained") or values.get("weights")) and values.get("scheduler") is None:
            values = {**values, "scheduler": TRANSFER_SCHEDULER}  # a fine-tune warms up, then anneals
        if values.get("recipe") not in (None, "none", "auto"):
            from .recipes import recipe_defaults

            defaults = recipe_defaults(str(values["recipe"]), values)
            if values.get("time_budget") and values.get("epochs") is None:
                defaults = {k: v for k, v in defaults.items() if k not in PLANNED}  # the planner's to choose
            set_by = {**{k: "recipe" for k in defaults}, **set_by}
            values = {**defaults, **values}
        for key in values:
            if key not in known:
                close = difflib.get_close_matches(key.replace("-", "_"), known, n=1)
                hint = f"did you mean '{close[0]}'?" if close else f"known keys: {', '.join(sorted(known))}"
                raise UserError(f"unknown config key '{key}' in {source}", hint)
        cfg = cls(**{k: coerce(cls, k, v, source) for k, v in values.items()})
        cfg.validate()
        object.__setattr__(cfg, "_sources", set_by)
        return cfg

    @classmethod
    def load(cls, path: str | Path, overrides: dict[str, Any] | None = None) -> "TrainConfig":
        path = Path(path)
        values = read_yaml(path, "config file", "check the path passed to --config") or {}
        if not isinstance(values, dict) or not all(isinstance(k, str) for k in values):
            raise UserError(f"config file {path} must be a mapping of keys to values", "write one 'key: value' a line")
        sources = {k: v for k, v in read_sources(path).items() if k in values and k not in (overrides or {})}
        values.update(overrides or {})
        return cls.from_dict(values, source=str(path), sources=sources)

    def decide_start(self, transfer: bool) -> "TrainConfig":
        """Recipe auto, decided: the same keys the user set, from scratch with the fast recipe or from ImageNet weights."""
        pinned = self.sources_of("user") | self.sources_of("tune")  # pins equal to a default are pins too
        given = {k: getattr(self, k) for k in pinned if k != "recipe"}
        cfg = TrainConfig.from_dict({**given, "pretrained": transfer}, sources={"pretrained": "planner"})
        return cfg.decided("planner", recipe=cfg.recipe)

    # ---- where each value came from ---------------------------------------------------------
    def replace(self, **changes: Any) -> "TrainConfig":
        """A copy with `changes`; each key keeps its source (a value derived from the same setting)."""
        new = dataclasses.replace(self, **changes)
        object.__setattr__(new, "_sources", {k: v for k, v in self.config_sources().items() if v != "default"})
        return new

    def decided(self, by: str, **changes: Any) -> "TrainConfig":
        """A copy with `changes`, each recorded as set by `by` (one of SOURCES)."""
        assert by in SOURCES, by
        new = self.replace(**changes)
        new._sources.update(dict.fromkeys(changes, by))
        return new

    def config_sources(self) -> dict[str, str]:
        """Every key and who set it: user, recipe, planner or default (metrics.json's config_sources)."""
        known = getattr(self, "_sources", None)
        if known is None:  # built as TrainConfig(...), not from_dict: what differs from a default was given
            known = {f.name: "user" for f in fields(self) if getattr(self, f.name) != _default(f)}
        return {f.name: known.get(f.name, "default") for f in fields(self)}

    def sources_of(self, by: str) -> set[str]:
        return {k for k, v in self.config_sources().items() if v == by}

    def validate(self) -> None:
        for key, allowed in CHOICES.items():
            value = str(getattr(self, key))
            if getattr(self, key) is not None and value not in allowed:
                raise UserError(f"{key} '{value}' is not one of {', '.join(allowed)}", f"pass --{key.replace('_', '-')} {allowed[0]}")
        for key, allowed in LIST_CHOICES.items():
            for value in getattr(self, key):
                if value not in allowed:
                    raise UserError(f"{key} '{value}' is not one of {', '.join(allowed)}",
                                    f"pass --{key} {','.join(allowed[:2])} (comma-separated)")
        if self.epochs is not None and self.epochs < 1:
            raise UserError(f"epochs must be at least 1, got {self.epochs}", "pass --epochs 10")
        if self.batch_size is not None and self.batch_size < 1:
            raise UserError(f"batch_size must be at least 1, got {self.batch_size}", "pass --batch-size 128")
        if not 0 <= self.val_fraction < 1:
            raise UserError(f"val_fraction must be in [0, 1), got {self.val_fraction}", "pass --val-fraction 0.1")
        if not 0 < self.test_fraction < 1:
            raise UserError(f"test_fraction must be in (0, 1), got {self.test_fraction}", "pass --test-fraction 0.2")
        if self.image_size is not None and self.image_size < 4:
            raise UserError(f"image_size must be at least 4 pixels, got {self.image_size}", "pass --image-size 32")
        if self.early_size is not None and (self.early_size < 0 or 0 < self.early_size < 4):
            raise UserError(f"early_size must be 0 (off) or at least 4 pixels, got {self.early_size}",
                            "pass --early-size 32, or 0 to train at one side throughout")
        if not 0 <= self.early_fraction < 1:
            raise UserError(f"early_fraction must be in [0, 1), got {self.early_fraction}", "pass --early-fraction 0.5")
        if self.val_every < 1:
            raise UserError(f"val_every must be at least 1, got {self.val_every}", "pass --val-every 1")
        if self.patience < 1:
            raise UserError(f"patience must be at least 1 epoch, got {self.patience}", "pass --patience 5")
        if self.time_budget is not None:
            self.budget_seconds  # raises a UserError when malformed
        if self.tta not in (None, "none") and self.transfer and self.transfer_strategy in ("linear-probe", "partial"):
            raise UserError(f"test-time augmentation needs images, but {self.transfer_strategy} evaluates cached activations",
                            "pass --tta none, or --transfer-strategy fine-tune")
        if self.trainable_blocks is not None and self.trainable_blocks < 0:
            raise UserError(f"trainable_blocks must be 0 or more, got {self.trainable_blocks}", "pass --trainable-blocks 4")
        if self.trainable_blocks is not None and self.transfer_strategy not in (None, "partial"):
            raise UserError(f"trainable_blocks applies to --transfer-strategy partial, not {self.transfer_strategy}",
                            "pass --transfer-strategy partial, or leave --trainable-blocks out")
        if self.num_nodes < 1:
            raise UserError(f"num_nodes must be at least 1, got {self.num_nodes}", "pass --num-nodes 1")
        if self.precision == "16-mixed" and not self.on_cuda:
            raise UserError("precision 16-mixed needs a CUDA GPU: on a CPU Lightning would train bf16 instead",
                            "pass --precision bf16-mixed, 32 or auto")
        if self.recipe == "auto" and not (self.planned and self.model is None and not self.transfer):
            raise UserError("recipe auto (from scratch or ImageNet transfer, the planner's pick) needs --time-budget "
                            "without --epochs, --model, --pretrained or --weights", "pin those, or leave --recipe out")
        if isinstance(self.lr, str):
            self._validate_lr_find()
        if not 0 < self.threshold < 1:
            raise UserError(f"threshold must be in (0, 1), got {self.threshold}", "pass --threshold 0.5")
        if self.monitor == "val_map" and self.task == "single":
            raise UserError("monitor val_map (mean average precision) is a multi-label metric",
                            "pass --monitor val_acc or val_loss, or --task multilabel")
        for key in ("mixup", "cutmix"):
            if getattr(self, key) < 0:
                raise UserError(f"{key} must be 0 (off) or a positive Beta parameter, got {getattr(self, key)}",
                                f"pass --{key} 0.2")
        if not 0 <= self.random_erasing <= 1:
            raise UserError(f"random_erasing is a probability, got {self.random_erasing}", "pass --random-erasing 0.25")
        if self.ema_decay is not None and not 0 < self.ema_decay < 1:
            raise UserError(f"ema_decay must be in (0, 1), got {self.ema_decay}", "pass --ema-decay 0.999, or leave it unset")
        if (self.mixup or self.cutmix) and self.task == "multilabel":
            raise UserError("mixup and cutmix mix one label an image, not several", "pass --mixup 0 --cutmix 0")
        if not 0 <= self.label_smoothing < 1:
            raise UserError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}", "pass --label-smoothing 0.1")

    def _validate_lr_find(self) -> None:
        """'find' is the only word --lr takes, and the finder runs on one device, outside any time budget."""
        if self.lr != "find":
            raise UserError(f"lr '{self.lr}' is not a number or 'find'",
                            "pass a rate such as --lr 0.001, or --lr find for Lightning's learning-rate finder")
        if self.time_budget is not None:
            raise UserError("lr find cannot be combined with a time budget: the budget's plan does not count the "
                            "finder's sweep", "run imagefit lr-find with the same options and no --time-budget, then "
                            "pass its suggestion as --lr")
        if str(self.devices) != "1" or self.num_nodes != 1:
            raise UserError(f"lr find runs the finder on one device, not --devices {self.devices} --num-nodes {self.num_nodes}",
                            "run imagefit lr-find with --devices 1, then pass its suggestion as --lr")

    # ---- derived values -----------------------------------------------------------------------
    @property
    def on_cuda(self) -> bool:
        """Whether the run's accelerator is a CUDA GPU (auto: when one is present)."""
        import torch

        return self.accelerator in ("cuda", "gpu") or (self.accelerator == "auto" and torch.cuda.is_available())

    @property
    def learning_rate(self) -> float:
        if self.lr == "find":
            raise ValueError("lr 'find' is decided when the run starts: read the run's lr_found")
        if self.lr is not None:
            return self.lr
        return 0.05 if self.optimizer in ("sgd", "muon") else 1e-3

    @property
    def planned(self) -> bool:
        """A time budget and no epoch count: the budget planner chooses what the user left unset."""
        return self.time_budget is not None and self.epochs is None

    def with_defaults(self) -> "TrainConfig":
        """The settings an unplanned run uses for the keys left to the planner."""
        return self.replace(epochs=self.epochs or 10, batch_size=self.batch_size or 128, tta=self.tta or "none")

    @property
    def transfer(self) -> bool:
        return bool(self.pretrained) or self.weights is not None

    @property
    def monitor_mode(self) -> str:
        return "min" if self.monitor.endswith("loss") else "max"

    @property
    def budget_seconds(self) -> float | None:
        """'90s', '10m', '1.5h' or a plain number of seconds."""
        if self.time_budget is None:
            return None
        text = str(self.time_budget).strip().lower()
        unit = {"s": 1, "m": 60, "h": 3600}.get(text[-1:], None)
        try:
            value = float(text[:-1] if unit else text) * (unit or 1)
        except ValueError:
            value = -1
        if value <= 0:
            raise UserError(f"time budget '{self.time_budget}' is not a duration", "write it like 90s, 10m or 1h")
        return value

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def save(self, path: str | Path, notes: list[str] | None = None) -> None:
        """YAML, preceded by comment lines (facts about the run that are not settings, such as weights' hashes);
        each key that a user, recipe or planner set ends with a comment naming which (`load` reads it back)."""
        header = "".join(f"# {line}\n" for line in ["imagefit run configuration: `imagefit train --config "
                                                     "<this file>` repeats the run.", *(notes or [])])
        sources = self.config_sources()
        lines = []
        for line in yaml.safe_dump(self.to_dict(), sort_keys=False).splitlines():
            key = line.split(":", 1)[0] if line[:1].isalpha() else None
            lines.append(f"{line}  # {sources[key]}" if key in sources and sources[key] != "default" else line)
        atomic.write_text(path, header + "\n".join(lines) + "\n")


DEFAULT_TRAINABLE_BLOCKS = 4  # partial fine-tuning without a budget: EfficientNet-Lite0's last 4 of 16 blocks
TRANSFER_SCHEDULER = "onecycle"  # transfer runs: warm-up over a quarter of the steps, then linear decay

# what the budget planner chooses when the user leaves it unset (the recipe's values are its candidates)
PLANNED = ("epochs", "batch_size", "lr", "tta", "model")


def _plans(values: dict[str, Any]) -> bool:
    """A budgeted run with no model and no recipe named: plan it with the fast recipe (pretrained: false), or let
    the planner choose between that and ImageNet transfer (pretrained unset: recipe auto)."""
    return (bool(values.get("time_budget")) and values.get("epochs") is None and values.get("model") is None
            and values.get("recipe") in (None, "none") and not values.get("pretrained") and not values.get("weights"))


def _default(f: dataclasses.Field) -> Any:
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
