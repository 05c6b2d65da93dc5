"""Freezing that really freezes: no gradients, and BatchNorm running statistics that stay as they were."""
from __future__ import annotations

import functools

import torch.nn as nn

_BN = nn.modules.batchnorm._BatchNorm  # BatchNorm1d/2d/3d, SyncBatchNorm, timm's BatchNormAct2d
_FROZEN = "_imagefit_frozen"


def _frozen_train(module: nn.Module, mode: bool = True) -> nn.Module:
    """`train()` of a frozen BatchNorm: stays in eval mode, whatever mode is asked for."""
    nn.Module.train(module, False)
    return module


def _force_eval(module: nn.Module, args):
    """Forward pre-hook of a frozen BatchNorm: catches code that sets `.training` directly (Lightning's
    _ModuleMode.restore does), so the forward pass never uses or updates batch statistics."""
    if module.training:
        module.training = False


def freeze(module: nn.Module) -> None:
    """Freeze `module`: no parameter takes gradients, and every BatchNorm keeps its running statistics.

    requires_grad=False alone is not enough: a BatchNorm in train mode normalises with the batch's
    statistics and overwrites running_mean/running_var (and counts num_batches_tracked) on every
    forward pass, with or without gradients. Lightning calls `model.train()` at the start of every
    epoch (and resets `.training` of each module after validation), so a one-off `bn.eval()` is undone
    and the "frozen" backbone's statistics drift towards the new data; the classic transfer-learning
    bug that Keras answers with `trainable=False` putting BN in inference mode. Here each BatchNorm
    gets an instance-level `train` that keeps it in eval mode, plus a forward pre-hook that resets
    `.training` if something sets it directly. Both pickle and deepcopy (they are module-level
    functions). `unfreeze` undoes all of it.
    """
    for p in module.parameters():
        p.requires_grad_(False)
    keep_statistics(module)


def keep_statistics(module: nn.Module) -> int:
    """Every BatchNorm of `module` keeps its running statistics (eval mode, as in `freeze`) while its scale and shift
    still train: Keras' advice for fine-tuning on little data, where a few batches' statistics would replace the
    ImageNet ones the features were learned with. Returns how many BatchNorms were kept."""
    kept = 0
    for m in module.modules():
        if isinstance(m, _BN) and not getattr(m, _FROZEN, False):
            object.__setattr__(m, "train", functools.partial(_frozen_train, m))
            m.register_forward_pre_hook(_force_eval)
            object.__setattr__(m, _FROZEN, True)
            nn.Module.train(m, False)
            kept += 1
    return kept


def unfreeze(module: nn.Module) -> None:
    """Undo `freeze`: every parameter takes gradients again and the BatchNorms follow `module`'s mode."""
    for p in module.parameters():
        p.requires_grad_(True)
    for m in module.modules():
        if isinstance(m, _BN) and getattr(m, _FROZEN, False):
            m.__dict__.pop("train", None)
            m.__dict__.pop(_FROZEN, None)
            for key, hook in list(m._forward_pre_hooks.items()):
                if hook is _force_eval:
                    del m._forward_pre_hooks[key]
            nn.Module.train(m, module.training)


def is_frozen(module: nn.Module) -> bool:
    """True when no parameter of `module` takes gradients and all its BatchNorms are frozen."""
    return (all(not p.requires_grad for p in module.parameters())
            and all(getattr(m, _FROZEN, False) for m in module.modules() if isinstance(m, _BN)))
