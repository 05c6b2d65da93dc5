"""Mosaics: a multi-label image set of 2x2 mosaics built from a single-label one, for a multi-label benchmark.

    .venv/bin/python -m bench.mosaics --out /tmp/mosaics [--source ../shared/data/imagenette/imagenette-128.zip]
        [--train 10000] [--test 2000] [--tile 64] [--seed 0] [--separator " "] [--overwrite]

The source is a zip or a folder of class folders: `train/<class>/*` and `test/<class>/*` (Imagenette's zip,
read straight from the zip), or class folders alone, whose images are then split 80/20 by the seed. Every
image becomes a tile: RGB, centre-cropped to a square (a no-op for Imagenette's 128x128 photos) and resized
to --tile px with Lanczos. Each mosaic holds k distinct classes, k uniform in 1..4: k classes are drawn, each
fills one of the 4 cells, the other cells repeat drawn classes, and the cells are shuffled. Training mosaics
take tiles from training images only, test mosaics from test images only. The same seed gives the same files.

Writes <out>/images/{train,test}/000001.jpg ... (JPEG quality 90) and <out>/labels.csv with the columns
`image,labels,split`: the image's path relative to the csv, its distinct class names sorted and joined by
--separator, and `train` or `test`. `write_mosaics` does the work from arrays in memory, for tests.
"""
from __future__ import annotations

import argparse
import csv
import io
import shutil
import sys
import time
import zipfile
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT.parent / "shared" / "data" / "imagenette" / "imagenette-128.zip"
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff")
SPLITS = ("train", "test")
CELLS = 4
QUALITY = 90


def _tile(image: Image.Image | np.ndarray, tile: int) -> np.ndarray:
    """An image as a tile x tile x 3 uint8 array: RGB, centre-cropped to a square, resized with Lanczos."""
    if isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.shape == (tile, tile, 3):
        return image  # already a tile (load_tiles made it)
    im = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image, np.uint8).squeeze())
    im = im.convert("RGB")
    w, h = im.size
    if w != h:
        s = min(w, h)
        im = im.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s))
    if im.size != (tile, tile):
        im = im.resize((tile, tile), Image.LANCZOS)
    return np.asarray(im)


def write_mosaics(tiles_by_split: dict[str, dict[str, list[np.ndarray]]], out: Path, n: dict[str, int],
                  tile: int, seed: int, separator=" ") -> Path:
    """Write n[split] mosaics of each split under out/images/<split>/ and out/labels.csv; return the csv's path.

    tiles_by_split[split][class] is that split's images of the class (uint8, HxWx3 or HxW, any size: each is
    made a tile x tile RGB tile). A split's mosaics draw only on its own images.
    """
    out = Path(out)
    names = {c for classes in tiles_by_split.values() for c in classes}
    if bad := sorted(c for c in names if separator in c):
        raise ValueError(f"class names {bad} contain the separator {separator!r}: choose another separator")
    rows = []
    for split, count in n.items():
        if count <= 0:
            continue
        pools = {c: [_tile(a, tile) for a in images] for c, images in sorted(tiles_by_split.get(split, {}).items())
                 if len(images)}
        if not pools:
            raise ValueError(f"no images for the {split} split")
        classes = list(pools)
        rng = np.random.default_rng([seed, *split.encode()])  # each split's draws: its own stream
        folder = out / "images" / split
        folder.mkdir(parents=True, exist_ok=True)
        width = max(6, len(str(count)))
        for i in range(1, count + 1):
            k = int(rng.integers(1, min(CELLS, len(classes)) + 1))
            chosen = rng.choice(len(classes), size=k, replace=False)
            cells = np.concatenate([chosen, rng.choice(chosen, size=CELLS - k)])
            rng.shuffle(cells)
            picks: list[np.ndarray] = [None] * CELLS  # type: ignore[list-item]
            for c in np.unique(cells):  # distinct images within a mosaic where the class has enough
                where = np.flatnonzero(cells == c)
                pool = pools[classes[c]]
                for cell, j in zip(where, rng.choice(len(pool), size=len(where), replace=len(pool) < len(where))):
                    picks[cell] = pool[j]
            grid = np.concatenate([np.concatenate(picks[:2], axis=1), np.concatenate(picks[2:], axis=1)], axis=0)
            path = folder / f"{i:0{width}d}.jpg"
            Image.fromarray(grid).save(path, "JPEG", quality=QUALITY)
            labels = separator.join(sorted(classes[c] for c in chosen))
            rows.append((path.relative_to(out).as_posix(), labels, split))
    target = out / "labels.csv"
    with open(target, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["image", "labels", "split"])
        writer.writerows(rows)
    return target


def _files(source: Path) -> list[tuple[PurePosixPath, object]]:
    """(relative path, how to open it) of every image file in a zip or a folder, sorted by path."""
    if source.is_dir():
        found = [(PurePosixPath(p.relative_to(source).as_posix()), p) for p in source.rglob("*") if p.is_file()]
    else:
        with zipfile.ZipFile(source) as z:
            found = [(PurePosixPath(name), name) for name in z.namelist() if not name.endswith("/")]
    return sorted((p, o) for p, o in found
                  if p.suffix.lower() in IMAGE_EXTENSIONS and len(p.parts) >= 2 and not p.name.startswith("."))


def load_tiles(source: Path, tile: int, seed: int) -> dict[str, dict[str, list[np.ndarray]]]:
    """The source's images as tiles, by split and class: its own train/test split, else 80/20 by the seed."""
    files = _files(source)
    with_split = [(p.parts[-3], p.parts[-2], o) for p, o in files if len(p.parts) >= 3 and p.parts[-3] in SPLITS]
    has_splits = {s for s, _, _ in with_split} == set(SPLITS)
    entries = with_split if has_splits else [(None, p.parts[-2], o) for p, o in files]
    if not entries:
        raise SystemExit(f"no images in class folders under {source}")
    archive = None if source.is_dir() else zipfile.ZipFile(source)
    tiles: dict[str, dict[str, list[np.ndarray]]] = {s: {} for s in SPLITS}
    try:
        for split, cls, opener in entries:
            data = opener.read_bytes() if archive is None else archive.read(opener)
            with Image.open(io.BytesIO(data)) as im:
                tiles[split or "train"].setdefault(cls, []).append(_tile(im, tile))
    finally:
        if archive is not None:
            archive.close()
    if not has_splits:  # class folders alone: 80% of each class's images train, 20% test
        rng = np.random.default_rng(seed)
        for cls, images in sorted(tiles["train"].items()):
            order = rng.permutation(len(images))
            cut = min(len(images) - 1, max(1, round(0.8 * len(images)))) if len(images) > 1 else 1
            tiles["train"][cls] = [images[j] for j in order[:cut]]
            tiles["test"][cls] = [images[j] for j in order[cut:]]
    return tiles


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.mosaics", description=__doc__.split("\n")[0])
    parser.add_argument("--source", type=Path, default=SOURCE,
                        help="zip or folder of class folders (default: %(default)s)")
    parser.add_argument("--out", type=Path, required=True, help="folder for images/ and labels.csv")
    parser.add_argument("--train", type=int, default=10000, help="training mosaics (default: %(default)s)")
    parser.add_argument("--test", type=int, default=2000, help="test mosaics (default: %(default)s)")
    parser.add_argument("--tile", type=int, default=64,
                        help="tile side in px; mosaics are twice it (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="(default: %(default)s)")
    parser.add_argument("--separator", default=" ", help="between class names in the labels cell (default: a space)")
    parser.add_argument("--overwrite", action="store_true", help="replace <out>/images and <out>/labels.csv")
    args = parser.parse_args(argv)
    if args.train < 0 or args.test < 0 or args.tile < 1 or not args.separator:
        parser.error("--train and --test must be >= 0, --tile >= 1, --separator not empty")
    if not args.source.exists():
        parser.error(f"no such source: {args.source}")
    images = args.out / "images"
    if images.exists() and any(images.iterdir()):
        if not args.overwrite:
            parser.error(f"{images} is not empty: pass --overwrite or another --out")
        shutil.rmtree(images)
    start = time.perf_counter()
    tiles = load_tiles(args.source, args.tile, args.seed)
    try:
        csv_path = write_mosaics(tiles, args.out, {"train": args.train, "test": args.test}, args.tile, args.seed,
                                 args.separator)
    except ValueError as e:
        parser.error(str(e))
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    mean = np.mean([len(r["labels"].split(args.separator)) for r in rows]) if rows else 0.0
    n_classes = len(set(tiles["train"]) | set(tiles["test"]))
    print(f"mosaics: {sum(r['split'] == 'train' for r in rows)} train, {sum(r['split'] == 'test' for r in rows)} test, "
          f"{mean:.2f} labels per mosaic, {n_classes} classes, {args.tile * 2} px, "
          f"{time.perf_counter() - start:.1f} s -> {csv_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
