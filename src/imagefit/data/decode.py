"""Image decoding: encoded bytes to (size, size, 3) uint8 RGB arrays, whatever layout the images came in.

A folder's or zip's class folders and a label file's rows (data/folder.py, data/labels.py), a Hugging Face
data set (data/huggingface.py) and `imagefit predict` and `evaluate` (inference.py) all decode here, so an
image is seen the same way in training and in prediction. Which files a data set holds is not decided here.

Decoding is the slow part of any folder data set, so it runs in a process pool over chunks, each worker
opening the zip itself (a shared file offset across forked processes would corrupt reads). Worker functions
import only PIL and numpy so that pool start-up stays cheap. A file that cannot be decoded is returned with
its reason (`failure_reason`); the caller decides to skip it or to refuse.

data/folder.py imports this module, so this one does not import it back: a listing reaches it as anything
with a Tree's `root`, `is_zip`, `rel()` and `display()` (`Listing` below).
"""
from __future__ import annotations

import io
import multiprocessing as mp
import os
import statistics
import sys
import warnings
import zipfile
from pathlib import Path
from typing import Protocol

import numpy as np

from ..errors import UserError

MAX_AUTO_SIZE = 128
GRAY = np.array([0.299, 0.587, 0.114])  # RGB to gray for a grayscale model: ITU-R 601, as PIL's convert("L")
_SIZE_SAMPLE = 2000  # header reads for the automatic size: the median of a sample is as good and O(1)
# A zip member whose declared size is over this is skipped unread (a zip bomb); zipfile never inflates
# more than the declared size, so the declaration is binding. No real image comes near it.
MAX_MEMBER_BYTES = 512 << 20


class Listing(Protocol):
    """What decoding needs of a folder's or zip's listing (data/folder.py's Tree)."""

    root: Path
    is_zip: bool

    def rel(self, parts: tuple[str, ...]) -> str: ...

    def display(self, parts: tuple[str, ...]) -> str: ...


# ---- workers: PIL and numpy only ------------------------------------------------------------------
_ZIPS: dict[tuple[int, str], zipfile.ZipFile] = {}


def read(root: str, is_zip: bool, rel: str) -> bytes:
    """The bytes of a file in a folder or of a zip member (each process opens a zip once); a member that
    declares over MAX_MEMBER_BYTES unpacked is refused unread."""
    if not is_zip:
        with open(os.path.join(root, rel), "rb") as f:
            return f.read()
    key = (os.getpid(), root)
    if key not in _ZIPS:
        _ZIPS[key] = zipfile.ZipFile(root)
    info = _ZIPS[key].getinfo(rel)
    if info.file_size > MAX_MEMBER_BYTES:
        raise ValueError(f"zip member of {info.file_size:,} bytes unpacked, over the {MAX_MEMBER_BYTES:,}-byte limit (a zip bomb?)")
    return _ZIPS[key].read(rel)


def failure_reason(e: BaseException) -> str:
    """Why a file could not be decoded, in one short line for the list of skipped files."""
    from PIL import UnidentifiedImageError

    if isinstance(e, UnidentifiedImageError):
        return "UnidentifiedImageError: not an image format Pillow can read"
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text[:200]}" if text else type(e).__name__


def _header_size(args) -> tuple[int, int] | str:
    """An image's size from its header; a string (the reason) when the file cannot be read."""
    from PIL import Image

    root, is_zip, rel = args
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(read(root, is_zip, rel))) as im:
                return im.size
    except Exception as e:  # noqa: BLE001 - a bad file is the file's problem: Pillow's plugins raise many types
        return failure_reason(e)


# The full range of each high-bit-depth mode, by the mode and never by the pixels: a dark 16-bit image must
# stay dark. "I" is what Pillow gives for 16-bit PGM/TIFF files, so it is read as 16-bit too; float ("F")
# images are taken as 0..1 (the convention of scientific and HDR tools).
_MODE_PEAK = {"I;16": 65535.0, "I;16B": 65535.0, "I;16L": 65535.0, "I;16N": 65535.0, "I": 65535.0, "F": 1.0}


def _to_rgb(im):
    """Any Pillow image as 8-bit RGB.

    High-bit-depth grayscale is scaled by its mode's range (see _MODE_PEAK). Transparency (RGBA, LA, a
    palette with a transparent colour) is composited on white, as a viewer shows it on a white page,
    rather than dropped (which would reveal whatever colour the hidden pixels happen to hold).
    CMYK, YCbCr, 1-bit and the rest go through Pillow's own conversion.
    """
    from PIL import Image

    if im.mode in _MODE_PEAK:
        a = np.asarray(im, dtype=np.float64)
        a = np.nan_to_num(a, nan=0.0, posinf=_MODE_PEAK[im.mode], neginf=0.0)
        im = Image.fromarray(np.clip(np.rint(a * (255.0 / _MODE_PEAK[im.mode])), 0, 255).astype(np.uint8), "L")
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


def _open(data: bytes, size: int, info: list | None = None):
    """Decode fully here, so a corrupt file fails now and is blamed on the file, not on our code.

    An animated GIF or multi-page TIFF gives its first frame. Pillow's decompression-bomb limit applies:
    an image over twice MAX_IMAGE_PIXELS raises (and is skipped); one between the limit and twice it
    decodes without Pillow's warning text (large panoramas are real photos).
    """
    from PIL import Image, ImageOps

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        im = Image.open(io.BytesIO(data))
    if info is not None:  # the file's own size and mode, before the draft below shrinks it (the data audit)
        info[:] = [im.size[0], im.size[1], im.mode]
    if im.format == "JPEG" and min(im.size) >= 2 * size:
        im.draft("RGB", (size, size))  # DCT-domain downscale: much faster, result still >= size
    im.load()
    # phone photos are often stored sideways with an EXIF orientation tag; most files have no EXIF at all
    return ImageOps.exif_transpose(im) if "exif" in im.info or im.format == "TIFF" else im


def to_square_rgb(im, size: int) -> np.ndarray:
    """A PIL image as training sees it: RGB (alpha on white, 16-bit scaled), centre square, size x size;
    returned (size, size, 3) uint8. `imagefit predict` calls this too, so a run's inputs match its data."""
    im = _to_rgb(im)
    if im.size != (size, size):
        im = _center_square(im, size)
    return np.asarray(im)


def decode_image(data: bytes, size: int) -> np.ndarray:
    """Encoded image bytes -> (size, size, 3) uint8, exactly as the training data was decoded (_decode_one
    is the same steps, keeping the file's own size and mode). Raises what PIL raises on a bad file (see DECODE_ERRORS)."""
    if not data:
        raise ValueError("empty file (0 bytes)")
    return to_square_rgb(_open(data, size), size)


DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, KeyError, zipfile.BadZipFile)


def _decode_one(root: str, is_zip: bool, rel: str, size: int, info: list | None = None) -> np.ndarray:
    data = read(root, is_zip, rel)
    if not data:
        raise ValueError("empty file (0 bytes)")
    return to_square_rgb(_open(data, size, info), size)


def _decode_chunk(args) -> tuple[int, np.ndarray, list[tuple[int, str]], list[list]]:
    """Decode images to (n, 3, size, size) uint8; a bad file leaves its row zero and is returned as (row, reason).
    Also each file's own [width, height, mode] ([] for a bad file), for the data audit."""
    start, root, is_zip, rels, size = args
    out = np.zeros((len(rels), size, size, 3), dtype=np.uint8)
    bad, infos = [], []
    for i, rel in enumerate(rels):
        infos.append([])
        try:
            out[i] = _decode_one(root, is_zip, rel, size, infos[-1])
        except Exception as e:  # noqa: BLE001 - Pillow, zlib and zipfile raise many types for one bad file
            bad.append((i, failure_reason(e)))
    return start, np.ascontiguousarray(out.transpose(0, 3, 1, 2)), bad, infos


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


def auto_size(tree: Listing, paths: list[tuple[str, ...]], workers: int) -> tuple[int, str]:
    """The median shorter side of a sample; unreadable files are left out here and skipped by the decode."""
    step = max(1, len(paths) // _SIZE_SAMPLE)
    sample = paths[::step]
    tasks = [(str(tree.root), tree.is_zip, tree.rel(p)) for p in sample]
    sides, first_bad = [], None
    for p, size in zip(sample, _run(_header_size, tasks, workers, ordered=True)):
        if isinstance(size, str):
            first_bad = first_bad or (p, size)
            continue
        sides.append(min(size))
    if not sides:
        _raise_bad_image(tree, *first_bad)
    counted = f"{len(sides):,} images" if len(sides) == len(paths) else f"{len(sides):,} of {len(paths):,} images, evenly spaced"
    return size_from_sides(sides, counted)


def size_from_sides(sides: list[int], counted: str) -> tuple[int, str]:
    """The automatic image size: the median shorter side, capped at MAX_AUTO_SIZE, and the note that says so."""
    median = int(statistics.median(sides))
    size = max(1, min(median, MAX_AUTO_SIZE))
    why = f"the median shorter side over {counted} is {median}px"
    note = f"image size {size}x{size} chosen from the data: {why}" + (f", capped at {MAX_AUTO_SIZE}." if median > MAX_AUTO_SIZE else ".")
    return size, note


def _raise_bad_image(tree: Listing, parts: tuple[str, ...], error: str):
    raise UserError(f"cannot read image {tree.display(parts)} ({error})", "remove or replace that file")


def decode_images(tree: Listing, paths: list[tuple[str, ...]], size: int, workers: int,
                  infos: list | None = None, into: list | None = None) -> tuple[np.ndarray | None, dict[int, str]]:
    """(n, 3, size, size) uint8 for every path, and {index: reason} for those that could not be decoded.
    `infos`, when given, is filled with each file's own [width, height, mode] ([] where it could not be read).
    `into`, when given, is a list of row writers (data/rows.py: in RAM or a cache entry's files) whose lengths add
    up to len(paths), in order: each decoded chunk goes straight to its place there and the array returned is None."""
    from .rows import MemoryRows

    single = into is None
    if single:
        into = [MemoryRows((len(paths), 3, size, size))]
    bounds = np.cumsum([0] + [len(r) for r in into])
    assert bounds[-1] == len(paths), (bounds[-1], len(paths))
    chunk = max(16, min(1024, -(-len(paths) // max(1, workers * 8))))
    tasks = [(s, str(tree.root), tree.is_zip, [tree.rel(p) for p in paths[s : s + chunk]], size) for s in range(0, len(paths), chunk)]
    bad: dict[int, str] = {}
    if infos is not None:
        infos[:] = [[] for _ in paths]
    for start, images, errors, chunk_infos in _run(_decode_chunk, tasks, workers, ordered=False):
        stop = start + len(images)
        for k, rows in enumerate(into):  # a chunk may straddle two splits
            lo, hi = max(start, int(bounds[k])), min(stop, int(bounds[k + 1]))
            if lo < hi:
                rows.write(lo - int(bounds[k]), images[lo - start : hi - start])
        bad.update((start + i, reason) for i, reason in errors)
        if infos is not None:
            infos[start : start + len(chunk_infos)] = chunk_infos
    return (into[0].images() if single else None), bad


def decode(tree: Listing, paths: list[tuple[str, ...]], size: int, workers: int) -> np.ndarray:
    """Every image decoded, or a UserError naming the first that cannot be."""
    out, bad = decode_images(tree, paths, size, workers)
    if bad:
        first = min(bad)
        _raise_bad_image(tree, paths[first], bad[first])
    return out
