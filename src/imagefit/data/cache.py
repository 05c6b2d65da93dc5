"""Decoded data kept on disk, keyed by what it was made from, so a second run starts in seconds.

An entry is a folder of plain .npy files plus meta.json. It is built in a temp folder beside its
final name and renamed into place, so readers see a whole entry or none; when two processes race,
the loser drops its copy and uses the winner's. An entry that fails to load is rebuilt.

A folder or label file decodes straight into the temp folder's .npy files (`into_files`, data/rows.py): the
decoded set is never held in memory whole, so a folder of any size decodes in the same memory; the run then
reads the entry back, memory-mapped for the streaming loader, into RAM for the in-memory one.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .. import atomic
from .rows import FileStore
from .types import ImageSet, SourceData

FORMAT = 4  # 2: meta.json lists the skipped files; 3: and the source file name of every image; 4: and the files' sizes and modes
SPLITS = ("train", "val", "test")


def entry_dir(cache_dir: Path, key: dict) -> Path:
    blob = json.dumps(key, sort_keys=True, default=str)
    digest = hashlib.sha256(blob.encode()).hexdigest()[:16]
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", str(key.get("dataset", "data")).rsplit("/", 1)[-1])[:40].strip("-.") or "data"
    return Path(cache_dir).expanduser() / f"{slug}-{digest}"


def _write(folder: Path, source: SourceData, key: dict, store: FileStore | None = None) -> None:
    sizes, files = {}, {}
    for split in SPLITS:
        part = getattr(source, split)
        if part is None:
            continue
        if store is None or not store.holds(split, part.images.numpy()):  # else the decode wrote the file already
            np.save(folder / f"{split}_images.npy", part.images.numpy())
        np.save(folder / f"{split}_labels.npy", part.labels.numpy())
        sizes[split] = len(part)
        if part.files is not None:
            files[split] = part.files
    meta = {"format": FORMAT, "name": source.name, "class_names": source.class_names, "notes": source.notes, "key": key,
            "sizes": sizes, "files": files,
            "skipped": source.skipped, "originals": source.originals}
    (folder / "meta.json").write_text(json.dumps(meta, indent=1, default=str), encoding="utf-8")


def _read(folder: Path, key: dict, mmap: bool) -> SourceData:
    meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
    if meta.get("format") != FORMAT or meta.get("key") != json.loads(json.dumps(key, default=str)):
        raise ValueError("cache entry does not match its key")
    splits = {}
    for split, n in meta["sizes"].items():
        # mmap_mode="c": copy-on-write pages, so torch gets a writable array and the file is never changed
        images = np.load(folder / f"{split}_images.npy", mmap_mode="c" if mmap else None)
        labels = np.load(folder / f"{split}_labels.npy")
        if images.dtype != np.uint8 or images.ndim != 4 or len(images) != n or labels.shape[:1] != (n,) or labels.ndim not in (1, 2) or labels.dtype != np.int64:
            raise ValueError(f"cache entry split {split} has the wrong shape")
        splits[split] = ImageSet(torch.from_numpy(images), torch.from_numpy(labels), files=meta["files"].get(split))
    return SourceData(name=meta["name"], class_names=meta["class_names"], train=splits["train"], val=splits.get("val"), test=splits.get("test"), notes=meta["notes"], skipped=meta["skipped"],
                      originals=meta["originals"])


def _remove(folder: Path) -> None:
    # Rename first so no reader can see a half-deleted entry.
    trash = folder.with_name(f".trash-{folder.name}-{uuid.uuid4().hex[:8]}")
    with contextlib.suppress(OSError):
        os.rename(folder, trash)
        shutil.rmtree(trash, ignore_errors=True)


def _not_cached(final: Path, e: OSError, source: SourceData) -> SourceData:
    reason = atomic.room_reason(e) if atomic.is_no_room(e) else e.strerror or str(e)
    note = f"decoded data not cached in {final.parent} ({reason}): decoded again next time."
    logging.getLogger("imagefit").warning(note)
    source.notes.append(note)
    return source


def cached_source(cache_dir: Path, key: dict, build: Callable[..., SourceData], mmap: bool = False,
                  into_files: bool = False) -> SourceData:
    """The entry for `key`, built by `build()` when there is none (or it fails to load).

    With `into_files`, `build(store)` decodes straight into the new entry's files through `store` (a
    rows.FileStore); when those files cannot be made (a full disk) the store falls back to RAM and the run goes
    on uncached, as when the entry cannot be written."""
    final = entry_dir(cache_dir, key)
    if final.is_dir():
        try:
            return _read(final, key, mmap)
        except Exception:  # truncated, half-deleted or foreign: rebuild it
            _remove(final)
    store = None
    if into_files:
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
        try:
            store = FileStore(tmp)
            source = build(store)
        except BaseException:
            if store is not None:
                store.close()
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    else:
        source = build()
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    os.chmod(tmp, 0o755)  # mkdtemp's 0700 would hide a shared cache from other users
    try:
        if store is not None and store.failed is not None:
            return _not_cached(final, store.failed, source)  # the images are in RAM: the run goes on with them
        try:
            _write(tmp, source, key, store)
        except OSError as e:  # a full or read-only cache disk costs speed next time, not this run
            return _not_cached(final, e, source)
        try:
            os.rename(tmp, final)
        except OSError:  # another process finished first
            if not final.is_dir():
                raise
    finally:
        if store is not None:
            store.close()
        shutil.rmtree(tmp, ignore_errors=True)
    # what the decode wrote into files is read back as any entry is: memory-mapped, or into RAM
    return _read(final, key, mmap) if (mmap or store is not None) else source
