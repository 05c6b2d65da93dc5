"""Image folders and zips: `train/<class>/*` (+ optional `val/`, `test/`) or just `<class>/*`.

Decoding is the slow part of any folder data set, so it runs in a process pool over chunks, each
worker opening the zip itself (a shared file offset across forked processes would corrupt reads).
Worker functions import only PIL and numpy so that pool start-up stays cheap.
"""
from __future__ import annotations

import io
import multiprocessing as mp
import os
import statistics
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

import numpy as np

from ..errors import UserError

if TYPE_CHECKING:
    from .types import SourceData

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
SPLITS = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}
MAX_AUTO_SIZE = 128
_SIZE_SAMPLE = 2000  # header reads for the automatic size: the median of a sample is as good and O(1)
_IGNORED_PARTS = {"__MACOSX", "Thumbs.db", "desktop.ini"}


def _visible(parts: tuple[str, ...]) -> bool:
    return not any(p.startswith(".") or p in _IGNORED_PARTS for p in parts)


@dataclass
class _Tree:
    """The listing of a folder or zip as relative POSIX paths, so both layouts share one code path."""

    root: Path
    is_zip: bool
    files: list[tuple[str, ...]]
    dirs: set[tuple[str, ...]]
    members: dict[tuple[str, ...], str]  # zip member names as stored ("./a/b.png", "a\\b.png")

    def rel(self, parts: tuple[str, ...]) -> str:
        return self.members.get(parts, "/".join(parts))


def _list(path: Path) -> _Tree:
    files, dirs, members = [], set(), {}
    if path.is_dir():
        for dirpath, dirnames, filenames in os.walk(path, followlinks=True):
            rel = Path(dirpath).relative_to(path).parts
            dirnames[:] = sorted(d for d in dirnames if _visible((d,)))
            for d in dirnames:
                dirs.add(rel + (d,))
            files.extend(rel + (f,) for f in filenames if _visible((f,)))
        return _Tree(path, False, files, dirs, {})
    if not zipfile.is_zipfile(path):
        raise UserError(f"{path} is neither a folder nor a zip file", "pass a folder of class folders or a .zip of one")
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
    except (zipfile.BadZipFile, OSError) as e:
        raise UserError(f"cannot read zip {path}: {e}", "re-create the zip or unpack it and pass the folder") from e
    for name in names:
        parts = tuple(p for p in PurePosixPath(name.replace("\\", "/")).parts if p not in ("", ".", "/"))
        if not parts or not _visible(parts):
            continue
        dirs.update(parts[:i] for i in range(1, len(parts)))
        if name.endswith(("/", "\\")):
            dirs.add(parts)
        else:
            files.append(parts)
            members[parts] = name
    return _Tree(path, True, files, dirs, members)


def _unwrap(tree: _Tree) -> tuple[str, ...]:
    """A prefix to strip when everything sits in one wrapper folder (typical of zips made by hand)."""
    prefix: tuple[str, ...] = ()
    while True:
        tops = {f[len(prefix)] for f in tree.files if len(f) > len(prefix) + 1 and f[: len(prefix)] == prefix}
        loose = [f for f in tree.files if f[: len(prefix)] == prefix and len(f) == len(prefix) + 1 and _is_image(f)]
        top_dirs = {d[len(prefix)] for d in tree.dirs if len(d) > len(prefix) and d[: len(prefix)] == prefix}
        if len(top_dirs) != 1 or len(tops) != 1 or loose:
            return prefix
        (only,) = top_dirs
        if only.lower() in SPLITS:
            return prefix
        # one folder holding class folders directly with images is a one-class data set, not a wrapper
        deeper = [f for f in tree.files if f[: len(prefix) + 1] == prefix + (only,) and len(f) > len(prefix) + 2]
        if not deeper:
            return prefix
        prefix = prefix + (only,)


def _is_image(parts: tuple[str, ...]) -> bool:
    return PurePosixPath(parts[-1]).suffix.lower() in IMAGE_EXTENSIONS


def _classes_in(tree: _Tree, base: tuple[str, ...]) -> dict[str, list[tuple[str, ...]]]:
    n = len(base)
    classes: dict[str, list[tuple[str, ...]]] = {d[n]: [] for d in tree.dirs if len(d) == n + 1 and d[:n] == base}
    for f in tree.files:
        if len(f) > n + 1 and f[:n] == base and _is_image(f):
            classes.setdefault(f[n], []).append(f)
    return {c: sorted(v) for c, v in sorted(classes.items())}


def _display(tree: _Tree, parts: tuple[str, ...]) -> str:
    return f"{tree.root}!/{'/'.join(parts)}" if tree.is_zip else str(tree.root.joinpath(*parts))


def _layout(tree: _Tree) -> tuple[list[str], dict[str, list[tuple[tuple[str, ...], int]]]]:
    """Return class names and, per split present, (image path, label) ordered by class then name."""
    prefix = _unwrap(tree)
    top = _classes_in(tree, prefix)
    split_dirs = {name: SPLITS[name.lower()] for name in top if name.lower() in SPLITS}
    where = _display(tree, prefix) if prefix else str(tree.root)
    if split_dirs:
        if "train" not in split_dirs.values():
            raise UserError(f"{where} has {', '.join(sorted(split_dirs))}/ but no train/ folder", "add train/<class>/ folders with images")
        per_split = {}
        for dirname, split in split_dirs.items():
            if split in per_split:
                raise UserError(f"{where} has two {split} folders", f"keep only one of {', '.join(d for d, s in split_dirs.items() if s == split)}")
            per_split[split] = (dirname, _classes_in(tree, prefix + (dirname,)))
    else:
        per_split = {"train": (None, top)}

    train_dir, train_classes = per_split["train"]
    train_where = _display(tree, prefix + ((train_dir,) if train_dir else ()))
    if not train_classes:
        raise UserError(f"no class folders in {train_where}", "put images in one folder per class, e.g. cats/*.jpg and dogs/*.jpg")
    class_names = list(train_classes)
    files: dict[str, list[tuple[tuple[str, ...], int]]] = {}
    for split, (dirname, classes) in per_split.items():
        if split != "train":
            missing = sorted(set(class_names) - set(classes))
            extra = sorted(set(classes) - set(class_names))
            if missing or extra:
                detail = "; ".join(x for x in (f"missing {', '.join(missing)}" if missing else "", f"extra {', '.join(extra)}" if extra else "") if x)
                raise UserError(f"{dirname}/ class folders differ from train/ in {where}: {detail}", f"give {dirname}/ the same class folders as train/")
        for name, paths in classes.items():
            if not paths:
                raise UserError(f"class folder {_display(tree, prefix + ((dirname,) if dirname else ()) + (name,))} has no images", f"add images ({', '.join(sorted(IMAGE_EXTENSIONS))}) or remove the folder")
        files[split] = [(p, label) for label, name in enumerate(class_names) for p in classes[name]]
    return class_names, files


# ---- workers: PIL and numpy only ------------------------------------------------------------------
_ZIPS: dict[tuple[int, str], zipfile.ZipFile] = {}


def _read(root: str, is_zip: bool, rel: str) -> bytes:
    if not is_zip:
        with open(os.path.join(root, rel), "rb") as f:
            return f.read()
    key = (os.getpid(), root)
    if key not in _ZIPS:
        _ZIPS[key] = zipfile.ZipFile(root)
    return _ZIPS[key].read(rel)


def _header_size(args) -> tuple[int, int] | str:
    from PIL import Image

    root, is_zip, rel = args
    try:
        with Image.open(io.BytesIO(_read(root, is_zip, rel))) as im:
            return im.size
    except (OSError, ValueError, SyntaxError, EOFError, KeyError, zipfile.BadZipFile) as e:
        return f"{type(e).__name__}: {e}"


def _to_rgb(im):
    from PIL import Image

    if im.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        a = np.asarray(im, dtype=np.float64)
        peak = 65535.0 if a.max() > 255 else 255.0
        im = Image.fromarray(np.clip(a * (255.0 / peak), 0, 255).astype(np.uint8), "L")
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    if im.mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        im = im.convert("RGBA")
        background = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(background, im)
    return im.convert("RGB") if im.mode != "RGB" else im


def _center_square(im, size: int):
    """ImageOps.fit's centre crop, but with resize's reducing_gap: big photos shrink in a fraction of the time."""
    from PIL import Image

    w, h = im.size
    side = min(w, h)
    box = ((w - side) / 2, (h - side) / 2, (w + side) / 2, (h + side) / 2)
    gap = 3.0 if side > 3 * size else None
    return im.resize((size, size), Image.Resampling.BICUBIC, box=box, reducing_gap=gap)


def _open(data: bytes, size: int):
    """Decode fully here, so a corrupt file fails now and is blamed on the file, not on our code."""
    from PIL import Image, ImageOps

    im = Image.open(io.BytesIO(data))
    if im.format == "JPEG" and min(im.size) >= 2 * size:
        im.draft("RGB", (size, size))  # DCT-domain downscale: much faster, result still >= size
    im.load()
    # phone photos are often stored sideways with an EXIF orientation tag; most files have no EXIF at all
    return ImageOps.exif_transpose(im) if "exif" in im.info or im.format == "TIFF" else im


def _decode_chunk(args) -> tuple[int, np.ndarray | None, str | None]:
    """Decode images to (n, 3, size, size) uint8; on a bad file return its name and the reason instead."""
    from PIL import Image

    start, root, is_zip, rels, size = args
    out = np.empty((len(rels), size, size, 3), dtype=np.uint8)
    for i, rel in enumerate(rels):
        try:
            im = _open(_read(root, is_zip, rel), size)
        except (OSError, ValueError, SyntaxError, EOFError, KeyError, zipfile.BadZipFile, Image.DecompressionBombError) as e:
            return start, None, f"{rel}|{type(e).__name__}: {e}"
        im = _to_rgb(im)
        if im.size != (size, size):
            im = _center_square(im, size)
        out[i] = np.asarray(im)
    return start, np.ascontiguousarray(out.transpose(0, 3, 1, 2)), None


def _pool(workers: int):
    # fork starts in milliseconds and the workers touch only PIL/numpy; elsewhere spawn is the safe default
    method = "fork" if sys.platform.startswith("linux") else "spawn"
    return mp.get_context(method).Pool(workers)


def _run(fn, tasks: list, workers: int, ordered: bool):
    if workers <= 1 or len(tasks) <= 1:
        yield from map(fn, tasks)
        return
    with _pool(min(workers, len(tasks))) as pool:
        yield from (pool.imap if ordered else pool.imap_unordered)(fn, tasks)


def _auto_size(tree: _Tree, paths: list[tuple[str, ...]], workers: int) -> tuple[int, str]:
    step = max(1, len(paths) // _SIZE_SAMPLE)
    sample = paths[::step]
    tasks = [(str(tree.root), tree.is_zip, tree.rel(p)) for p in sample]
    sides = []
    for p, size in zip(sample, _run(_header_size, tasks, workers, ordered=True)):
        if isinstance(size, str):
            _raise_bad_image(tree, p, size)
        sides.append(min(size))
    median = int(statistics.median(sides))
    size = max(1, min(median, MAX_AUTO_SIZE))
    counted = f"{len(sides):,} images" if len(sides) == len(paths) else f"{len(sides):,} of {len(paths):,} images, evenly spaced"
    why = f"the median shorter side over {counted} is {median}px"
    note = f"image size {size}x{size} chosen from the data: {why}" + (f", capped at {MAX_AUTO_SIZE}." if median > MAX_AUTO_SIZE else ".")
    return size, note


def _raise_bad_image(tree: _Tree, parts: tuple[str, ...], error: str):
    raise UserError(f"cannot read image {_display(tree, parts)} ({error})", "remove or replace that file")


def decode(tree: _Tree, paths: list[tuple[str, ...]], size: int, workers: int) -> np.ndarray:
    out = np.empty((len(paths), 3, size, size), dtype=np.uint8)
    chunk = max(16, min(1024, -(-len(paths) // max(1, workers * 8))))
    tasks = [(s, str(tree.root), tree.is_zip, [tree.rel(p) for p in paths[s : s + chunk]], size) for s in range(0, len(paths), chunk)]
    for start, images, error in _run(_decode_chunk, tasks, workers, ordered=False):
        if error is not None:
            rel, message = error.split("|", 1)
            _raise_bad_image(tree, tuple(rel.replace("\\", "/").split("/")), message)
        out[start : start + len(images)] = images
    return out


def load_folder(path: Path, image_size: int | None, test_fraction: float, seed: int, workers: int = 2) -> SourceData:
    """test_fraction and seed are accepted for the caller's symmetry; carving the test split is not done here
    (so the decoded result, and its cache entry, do not depend on them)."""
    import torch

    from .types import ImageSet, SourceData

    path = Path(path).expanduser()
    if not path.exists():
        raise UserError(f"image folder not found: {path}", "check the path, or pass a data set name such as digits")
    tree = _list(path.resolve())
    class_names, files = _layout(tree)
    notes = []
    if image_size is None:
        image_size, note = _auto_size(tree, [p for p, _ in files["train"]], workers)
        notes.append(note)
    elif image_size < 1:
        raise UserError(f"image size must be positive, got {image_size}", "pass an image size such as 32 or 64")
    everything = [item for paths in files.values() for item in paths]  # one pool for all splits
    images = torch.from_numpy(decode(tree, [p for p, _ in everything], image_size, workers))
    labels = torch.from_numpy(np.asarray([label for _, label in everything], dtype=np.int64))
    out, start = {}, 0
    for split, paths in files.items():
        out[split] = ImageSet(images[start : start + len(paths)], labels[start : start + len(paths)],
                              files=["/".join(p) for p, _ in paths])  # the path inside the folder or zip
        start += len(paths)
    sizes = ", ".join(f"{len(out[s]):,} {s}" for s in ("train", "val", "test") if s in out)
    notes.insert(0, f"image folder {path}: {len(class_names)} classes, {sizes} images, center-cropped and resized to {image_size}x{image_size} RGB.")
    if "test" not in out:
        notes.append("the folder has only class folders, no train/ and test/ split: every image is in train, the test split is carved from it later.")
    return SourceData(name=path.name, class_names=class_names, train=out["train"], val=out.get("val"), test=out.get("test"), notes=notes)
