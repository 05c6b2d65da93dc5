"""The LightningModule: loss, accuracy, augmentation and optimizer wiring around an ImageClassifier."""
from __future__ import annotations

import lightning as L
import torch
import torch.nn.functional as F
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy, MultilabelAveragePrecision, MultilabelExactMatch

from ..config import TrainConfig
from ..data.augment import AUGMENTATIONS, Mixing, random_erasing
from ..models.loss import classification_loss
from .optim import build_optimizer, build_scheduler
from ..runtime import is_convolutional


class ClassifierModule(L.LightningModule):
    def __init__(self, model: torch.nn.Module, cfg: TrainConfig, num_classes: int, param_groups=None,
                 augment: bool = True, plan=None, class_weight: torch.Tensor | None = None,
                 loader_flips: bool = False, multilabel: bool = False):
        super().__init__()
        self.model = model
        self.plan = plan  # a time budget's plan: the schedule's length and the progressive-resizing switch
        self.cfg = cfg
        self.param_groups = param_groups  # None: every parameter at the configured rate
        self.augment = AUGMENTATIONS[cfg.augment] if augment else None
        self.loader_flips = loader_flips  # --flip alternating: the training loader mirrors, the augmentation not
        self.multilabel = multilabel
        self.erasing = cfg.random_erasing if augment else 0.0
        self.mixing = Mixing(cfg.mixup, cfg.cutmix, num_classes) if augment and (cfg.mixup or cfg.cutmix) else None
        if multilabel:  # accuracy: every label of the image right at 0.5 (subset accuracy); val_map: the headline
            self.train_acc = MultilabelExactMatch(num_classes)
            self.val_acc = MultilabelExactMatch(num_classes)
            self.val_map = MultilabelAveragePrecision(num_classes, average="macro")
        else:
            self.train_acc = MulticlassAccuracy(num_classes, average="micro")
            self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        # a weighted mean synced as (sum, count): exact over ranks whose validation shards differ in size.
        # A NaN stays in the mean (the default drops it with a warning printed before imagefit's own line):
        # a diverged epoch must read as one, and StopOnNonFinite says so.
        self.val_loss = MeanMetric(nan_strategy="disable")
        self.aug_gen: torch.Generator | None = None
        # --class-weights balanced: the training loss only (validation and test losses stay comparable)
        self.register_buffer("class_weight", class_weight, persistent=False)
        self.channels_last = is_convolutional(model)
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)

    def on_train_epoch_start(self) -> None:
        net = getattr(self.model, "net", None)
        if hasattr(net, "set_epoch"):  # airbench: the whitening bias trains early only
            net.set_epoch(self.current_epoch, self.trainer.max_epochs)

    def on_before_optimizer_step(self, optimizer) -> None:
        for p in getattr(getattr(self.model, "net", None), "frozen_parameters", list)():
            p.grad = None  # after the gradients were reduced over ranks: the optimizer leaves it as it is

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.model(x)

    def reseed_augmentation(self, epoch: int) -> None:
        self.aug_gen = torch.Generator(device=self.device)
        self.aug_gen.manual_seed(self.cfg.seed * 1_000_003 + 7919 * self.global_rank + epoch)

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        x, y = batch
        if self.trainer.training and self.aug_gen is None:
            self.reseed_augmentation(self.current_epoch)
        if x.ndim == 5:  # cached activations of several views (image, mirror): one view per image
            if self.trainer.training:
                view = torch.randint(0, x.shape[1], (len(x),), generator=self.aug_gen, device=x.device)
                x = x[torch.arange(len(x), device=x.device), view]
            else:
                x = x[:, 0]
        if self.trainer.training and self.augment is not None:
            x = self.augment(x, self.aug_gen, flip=not self.loader_flips)
        size = self.train_size() if self.trainer.training else None
        if size and x.ndim == 4 and size < x.shape[-1]:  # progressive resizing
            x = F.interpolate(x.float() / 255 if x.dtype == torch.uint8 else x, size=(size, size), mode="bilinear",
                              antialias=True, align_corners=False)
        if self.trainer.training and self.erasing:
            x = random_erasing(x, self.erasing, self.aug_gen)
        if self.trainer.training and self.mixing is not None:  # last: it blends the images as they will be seen
            x, y = self.mixing(x, y, self.aug_gen)
        return x, y

    def train_size(self) -> int | None:
        """The side this step trains at: early_size for the first early_fraction of the steps, then the data's."""
        if self.plan is not None:
            return self.plan.size_at(self.global_step)
        if self.cfg.early_size and self.global_step < self.cfg.early_fraction * self.total_steps():
            return self.cfg.early_size
        return None

    def total_steps(self) -> int:
        return self.plan.steps if self.plan is not None else int(self.trainer.estimated_stepping_batches)

    def training_step(self, batch, batch_idx):
        x, y = batch
        logits = self(x)
        weight = None if self.class_weight is None else self.class_weight.to(logits.dtype)
        loss = classification_loss(logits, y, weight, self.cfg.label_smoothing, self.multilabel)
        # mixed targets: accuracy against each image's larger share (the image mostly seen)
        self.train_acc(logits.detach(), y.argmax(1) if y.is_floating_point() else y)
        self.log("train_loss", loss.detach(), on_step=False, on_epoch=True, batch_size=len(y), sync_dist=True)
        self.log("train_acc", self.train_acc, on_step=False, on_epoch=True, batch_size=len(y))
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits = self(x)
        loss = classification_loss(logits, y)
        self.val_acc(logits, y)
        if self.multilabel:
            self.val_map(logits.float(), y)
            self.log("val_map", self.val_map, on_step=False, on_epoch=True, batch_size=len(y))
        self.val_loss.update(loss.float(), weight=len(y))
        self.log("val_loss", self.val_loss, on_step=False, on_epoch=True, batch_size=len(y))
        self.log("val_acc", self.val_acc, on_step=False, on_epoch=True, batch_size=len(y), prog_bar=True)

    def predict_step(self, batch, batch_idx):
        x, y = batch
        return self(x).float(), y

    def configure_optimizers(self):
        params = self.param_groups
        net = getattr(self.model, "net", None)
        if params is None and hasattr(net, "optimizer_groups"):
            params = net.optimizer_groups(self.cfg.learning_rate, self.cfg.weight_decay, self.cfg.bias_lr_scale)
        optimizer = build_optimizer(self.cfg, params or self.model.parameters())
        # Lightning's count covers max_epochs, batch limits and sharding by rank; a budget's plan counts its own
        scheduler = build_scheduler(self.cfg, optimizer, self.total_steps)  # re-read: a plan may change it
        if scheduler is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
