"""Partial fine-tuning on a cached trunk (the cut itself: models/split.py): the frozen lower blocks run once, the top K blocks train for many epochs.

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

from .. import atomic
from ..data.types import ImageSet
from ..errors import UserError
from ..models.split import Trunk
from ..runtime import autocast, available_memory
from .transfer import content_key

log = logging.getLogger("imagefit")


@torch.no_grad()
def compute_activations(trunk: Trunk, data: ImageSet, path: Path, views: int, batch_size: int,
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
        acts = compute_activations(trunk, data, path, views, batch_size, precision)
    return ImageSet(acts, data.labels.clone(), files=data.files), hit
