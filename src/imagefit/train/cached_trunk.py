"""Partial fine-tuning on a cached trunk: the frozen lower blocks run once, the top K blocks train for many epochs.

A fine-tune on a CPU spends most of its time in the lower blocks of the backbone (high resolution,
depthwise convolutions at a few percent of the CPU's peak), yet those are the layers transfer learning
changes least. Here the network is cut after block `n - K`:

- the **trunk** (stem and the lower blocks) is frozen, parameters and BatchNorm statistics alike, and
  runs once per image and per view: the image and its mirror for training (so the top still trains on
  flipped data), the image alone for validation and test. Its activations are cached on disk (a raw
  memory-mapped file, so a cache larger than RAM still works: the OS pages it in) under a key of the
  images, the weights, the input size, the cut and the precision, and reused by later runs;
- the **top** (the last K blocks, the head convolution and a new classifier) trains on them, an epoch
  costing a small part of a full fine-tune's.

The trained top's modules are the network's own, so the saved model is the whole network: `predict`
and `export` need nothing special.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import torch
import torch.nn as nn

from .. import atomic
from ..data.types import ImageSet
from ..errors import UserError
from ..models.freeze import freeze
from ..models.registry import ImageClassifier
from .precision import autocast
from .transfer import content_key

log = logging.getLogger("imagefit")
STEM = ("conv_stem", "bn1")


def blocks_of(net: nn.Module) -> list[nn.Module]:
    """The blocks of an EfficientNet/MobileNet-style timm net, in order (stages flattened)."""
    if not all(hasattr(net, name) for name in (*STEM, "blocks")) or not hasattr(net, "forward_head"):
        raise UserError(f"partial fine-tuning needs an EfficientNet or MobileNet-style timm model, not {type(net).__name__}",
                        "pass --transfer-strategy fine-tune, or --model tf_efficientnet_lite0")
    return [block for stage in net.blocks for block in (stage if isinstance(stage, nn.Sequential) else [stage])]


class Trunk(nn.Module):
    """The frozen lower part: prepare (resize, normalise), stem and the first `cut` blocks."""

    def __init__(self, model: ImageClassifier, cut: int):
        super().__init__()
        object.__setattr__(self, "classifier_input", model)  # not a submodule: only its prepare() is used
        self.stem = nn.Sequential(model.net.conv_stem, model.net.bn1)
        self.blocks = nn.Sequential(*blocks_of(model.net)[:cut])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # channels-last after the resize: convolutions on a CPU run about twice as fast that way
        return self.blocks(self.stem(self.classifier_input.prepare(x).contiguous(memory_format=torch.channels_last)))


class Top(nn.Module):
    """The trainable upper part: the last K blocks, whatever follows them in the net, and the head."""

    def __init__(self, model: ImageClassifier, cut: int):
        super().__init__()
        net = model.net
        self.blocks = nn.Sequential(*blocks_of(net)[cut:])
        self.after = nn.ModuleDict({name: m for name, m in net.named_children() if name not in (*STEM, "blocks")})
        # EfficientNet's forward_features ends with conv_head and bn2; MobileNetV3 keeps them in forward_head
        self._features_tail = [name for name in ("conv_head", "bn2") if name in self.after and
                               not hasattr(net, "norm_head")]
        object.__setattr__(self, "_forward_head", net.forward_head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(x)
        for name in self._features_tail:
            x = self.after[name](x)
        return self._forward_head(x)

    def head(self) -> nn.Module:
        return self.after["classifier"]


def split_model(model: ImageClassifier, trainable_blocks: int) -> tuple[Trunk, Top]:
    """Cut `model` so that its last `trainable_blocks` blocks (plus head) train; the trunk is frozen."""
    n = len(blocks_of(model.net))
    if not 0 <= trainable_blocks <= n:
        raise UserError(f"trainable_blocks must be between 0 and {n} for {type(model.net).__name__}, got {trainable_blocks}",
                        f"pass --trainable-blocks {min(3, n)}")
    cut = n - trainable_blocks
    trunk, top = Trunk(model, cut), Top(model, cut)
    freeze(trunk)
    return trunk, top


@torch.no_grad()
def trunk_activations(trunk: Trunk, data: ImageSet, path: Path, views: int, batch_size: int,
                      precision: str) -> torch.Tensor:
    """Activations of every image (and, with views=2, of its mirror) as (N, views, C, H, W), or (N, C, H, W)
    for one view, appended chunk by chunk to a temporary file (plain sequential writes: writing through a
    shared memory map costs more in page faults than the network's forward pass) and renamed into place
    when complete, so an interrupted pass never leaves an entry that a later run would read."""
    trunk.eval().to(memory_format=torch.channels_last)
    dtype = torch.bfloat16 if precision == "bf16-mixed" else torch.float16 if precision == "16-mixed" else torch.float32
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    shape = None
    try:
        device = next(trunk.parameters()).device
        with open(tmp, "wb") as f, autocast(precision, device.type):
            for start in range(0, len(data), batch_size):
                x = data.take(start, start + batch_size).to(device)
                outs = [trunk(x), *([trunk(x.flip(-1))] if views > 1 else [])]
                chunk = (torch.stack(outs, 1) if views > 1 else outs[0]).to(dtype).cpu().contiguous()
                shape = shape or (len(data), *chunk.shape[1:])
                f.write(chunk.view(-1).view(torch.uint8).numpy().data)
            f.flush()
            os.fsync(f.fileno())
        # the shape first, the data renamed into place last: an entry is readable only once both are whole
        with atomic.atomic_path(path.with_suffix(".json"), hint=atomic.CACHE_HINT) as meta:
            meta.write_text(json.dumps({"shape": shape, "dtype": str(dtype).removeprefix("torch.")}))
        os.replace(tmp, path)
    except OSError as e:  # a full disk: one line with the size needed, and nothing half-written left behind
        if not atomic.is_no_room(e):
            raise
        nbytes = torch.Size(shape).numel() * dtype.itemsize if shape else 0
        need = f"{nbytes / 1e6:.1f} MB" if nbytes >= 100_000 else f"{nbytes / 1e3:.0f} KB" if nbytes else "room"
        raise UserError(f"could not write the frozen trunk's activations to {path.parent} ({atomic.room_reason(e)}); "
                        f"partial fine-tuning caches them on disk and needs {need} there for this split",
                        atomic.CACHE_HINT) from None
    finally:
        tmp.unlink(missing_ok=True)
    return read_activations(path)


def read_activations(path: Path) -> torch.Tensor | None:
    """A cache entry: read into RAM when it takes under half the memory available, else memory-mapped
    (the OS pages it in). None when it is missing, incomplete or damaged."""
    meta = path.with_suffix(".json")
    if not (path.is_file() and meta.is_file()):
        return None
    try:
        info = json.loads(meta.read_text())
        dtype = getattr(torch, info["dtype"])
        shape = torch.Size(info["shape"])
        nbytes = shape.numel() * dtype.itemsize
        if path.stat().st_size != nbytes:
            return None
        if nbytes < available_memory() // 2:
            out = torch.empty(shape, dtype=dtype)
            with open(path, "rb") as f:
                if f.readinto(out.view(-1).view(torch.uint8).numpy()) != nbytes:
                    return None
            return out
        return torch.from_file(str(path), shared=False, size=shape.numel(), dtype=dtype).view(shape)
    except (ValueError, KeyError, AttributeError, RuntimeError, OSError):
        return None


def available_memory() -> int:
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 4 << 30


def cache_path(cache_dir: str | Path, identity: dict, data: ImageSet, views: int) -> Path:
    key = hashlib.sha256(repr(sorted({**identity, "images": content_key(data), "views": views}.items()))
                         .encode()).hexdigest()[:24]
    return Path(cache_dir).expanduser() / "trunk" / f"{identity.get('model', 'model')}-cut{identity['cut']}-{key}.bin"


def cached_trunk_split(trunk: Trunk, data: ImageSet, cache_dir: str | Path, identity: dict, views: int,
                       batch_size: int, precision: str) -> tuple[ImageSet, bool]:
    """One split's trunk activations (from the cache when the same images, weights, size and cut met before)."""
    path = cache_path(cache_dir, identity, data, views)
    acts = read_activations(path)
    hit = acts is not None
    if acts is None:
        acts = trunk_activations(trunk, data, path, views, batch_size, precision)
    return ImageSet(acts, data.labels.clone(), files=data.files), hit
