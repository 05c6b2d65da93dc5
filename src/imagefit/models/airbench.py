"""The airbench network (Keller Jordan, "94% on CIFAR-10 in 3.29 seconds on a single GPU", 2024), for
`--recipe fast`: the most accuracy per FLOP we know of for small images trained from scratch.

What each part buys, and why it is here:
- **Patch whitening.** The first layer is a 2x2 convolution whose filters are the eigenvectors of the
  training patches' covariance, scaled to unit variance (and their negatives, so a GELU keeps both signs).
  It is computed from data before training and frozen: the network starts from decorrelated inputs, which
  is worth about a third of the epochs at these short schedules. Only its bias trains, and only for the
  first 30% of the epochs (`set_epoch`).
- **Pool before normalise.** Each group is conv, 2x max-pool, BatchNorm, GELU, conv, BatchNorm, GELU: the
  BatchNorm and activation run on a quarter of the pixels.
- **Identity initialisation.** Each 3x3 convolution starts as a Dirac delta on its first input channels,
  an implicit residual connection without the cost of a residual branch.
- **BatchNorm without scale.** Only the BatchNorm shift trains (the scale stays 1, so weight decay cannot
  shrink it); the recipe gives those biases a much higher learning rate (`bias_lr_scale`).
- **A scaled-down head.** The logits are multiplied by 1/9, which keeps the first steps stable at the
  high learning rates the schedule uses.
The defaults are the published widths (64, 256, 256): 0.24 GFLOPs per 32x32 image forward. airbench93's
widths (64, 128, 128) cost a quarter of that and reach 93% in 11 epochs: when a budget buys only a few
epochs of the wide net, the narrow one trained for more epochs is the better model (the planner's choice).
Every layer is resolution-agnostic (the head pools globally), so the same net trains at 24 px early and
at the full size late (progressive resizing).
"""
from __future__ import annotations

import torch
import torch.nn as nn

AIRBENCH94_WIDTHS = (64, 256, 256)
AIRBENCH93_WIDTHS = (64, 128, 128)
WHITENING_PATCHES = 400_000  # enough for a 12x12 covariance; more only costs memory and time


class BatchNormNoScale(nn.BatchNorm2d):
    def __init__(self, channels: int, momentum: float = 0.4):
        super().__init__(channels, eps=1e-12, momentum=momentum)
        self.weight.requires_grad_(False)


class DiracConv(nn.Conv2d):
    def __init__(self, c_in: int, c_out: int):
        super().__init__(c_in, c_out, 3, padding="same", bias=False)

    def reset_parameters(self) -> None:
        super().reset_parameters()
        nn.init.dirac_(self.weight.data[: min(self.in_channels, self.out_channels)])


class ConvGroup(nn.Module):
    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv1 = DiracConv(c_in, c_out)
        self.pool = nn.MaxPool2d(2)
        self.norm1 = BatchNormNoScale(c_out)
        self.conv2 = DiracConv(c_out, c_out)
        self.norm2 = BatchNormNoScale(c_out)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.norm1(self.pool(self.conv1(x))))
        return self.act(self.norm2(self.conv2(x)))


class Airbench(nn.Module):
    def __init__(self, num_classes: int, in_chans: int = 3, widths: tuple[int, int, int] = AIRBENCH94_WIDTHS,
                 whiten_kernel: int = 2, head_scale: float = 1 / 9):
        super().__init__()
        whiten_width = 2 * in_chans * whiten_kernel**2
        self.whiten = nn.Conv2d(in_chans, whiten_width, whiten_kernel, bias=True)
        self.whiten.weight.requires_grad_(False)
        nn.init.zeros_(self.whiten.bias)
        self.act = nn.GELU()
        self.groups = nn.Sequential(ConvGroup(whiten_width, widths[0]), ConvGroup(widths[0], widths[1]),
                                    ConvGroup(widths[1], widths[2]))
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.head = nn.Linear(widths[2], num_classes, bias=False)
        self.head_scale = head_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.groups(self.act(self.whiten(x)))
        return self.head(self.pool(x).flatten(1)) * self.head_scale

    def set_epoch(self, epoch: int, max_epochs: int) -> None:
        """The whitening bias trains for the first 30% of the epochs (3 of airbench's 10), then freezes."""
        self.whiten_bias_trains = epoch < max(1, round(0.3 * max_epochs))

    def frozen_parameters(self) -> list[nn.Parameter]:
        """Parameters whose gradient is dropped before this step's update (the optimizer then skips them, as it
        skips a parameter without `requires_grad`). Not `requires_grad_(False)`: DDP fails on a parameter that
        stops receiving gradients after it was wrapped."""
        return [] if getattr(self, "whiten_bias_trains", True) else [self.whiten.bias]

    @torch.no_grad()
    def init_whitening(self, images: torch.Tensor, eps: float = 5e-4, seed: int = 0) -> None:
        """`images`: normalised float (N, C, H, W) training images. The covariance comes from a random
        sample of WHITENING_PATCHES patches, image by image: large photos would otherwise unfold into
        gigabytes (5,000 images of 128 px are 80M patches)."""
        c, k = self.whiten.in_channels, self.whiten.kernel_size[0]
        n, _, h, w = images.shape
        per_image = max(1, min((h - k + 1) * (w - k + 1), WHITENING_PATCHES // max(1, n)))
        gen = torch.Generator().manual_seed(seed)
        covariance, count = torch.zeros(c * k * k, c * k * k, dtype=torch.float64), 0
        for start in range(0, n, 256):
            x = images[start:start + 256].float()
            patches = x.unfold(2, k, 1).unfold(3, k, 1).permute(0, 2, 3, 1, 4, 5).reshape(len(x), -1, c * k * k)
            if patches.shape[1] > per_image:
                pick = torch.randint(0, patches.shape[1], (len(x), per_image), generator=gen)
                patches = torch.gather(patches, 1, pick[..., None].expand(-1, -1, c * k * k))
            patches = patches.reshape(-1, c * k * k).double()
            covariance += patches.T @ patches
            count += len(patches)
        covariance /= count
        eigenvalues, eigenvectors = torch.linalg.eigh(covariance)
        order = eigenvalues.argsort(descending=True)
        filters = (eigenvectors[:, order].T / torch.sqrt(eigenvalues[order, None] + eps)).reshape(-1, c, k, k)
        self.whiten.weight.copy_(torch.cat([filters, -filters]).to(self.whiten.weight.dtype))

    def optimizer_groups(self, lr: float, weight_decay: float, bias_lr_scale: float) -> list[dict]:
        """BatchNorm shifts at `bias_lr_scale` times the rate, with the same absolute decay per step."""
        norm = [p for n, p in self.named_parameters() if "norm" in n and p.requires_grad]
        other = [p for n, p in self.named_parameters() if "norm" not in n and p.requires_grad]
        return [{"params": other, "lr": lr, "weight_decay": weight_decay},  # first: the rate history.csv shows
                {"params": norm, "lr": lr * bias_lr_scale, "weight_decay": weight_decay / bias_lr_scale}]
