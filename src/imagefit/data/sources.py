"""One entry point from a data set name or path to decoded uint8 tensors, cached where it pays."""
from __future__ import annotations

import difflib
import hashlib
import os
from pathlib import Path

import torch
import torch.nn.functional as F

from ..errors import UserError
from .cache import cached_source
from .types import ImageSet, SourceData

LABEL_FILE_SUFFIXES = (".csv", ".tsv", ".parquet")  # data/labels.py reads these
DATASETS = {
    "digits": "scikit-learn's 8x8 handwritten digits, 1,797 images, 10 classes; bundled, no download",
    "mnist": "MNIST handwritten digits, 28x28 grayscale, 60,000 train + 10,000 test, 10 classes",
    "fashion-mnist": "Fashion-MNIST clothing, 28x28 grayscale, 60,000 train + 10,000 test, 10 classes",
    "cifar10": "CIFAR-10 photos, 32x32 RGB, 50,000 train + 10,000 test, 10 classes",
    "cifar100": "CIFAR-100 photos, 32x32 RGB, 50,000 train + 10,000 test, 100 fine classes",
}
CACHE_FORMAT = 1
_RESIZE_CHUNK = 2048


def dataset_slug(dataset: str) -> str:
    """A data set's short name, for run and study folder names: a built-in name as given, a path's last part
    without .zip; a label file's folder and name (kaggle/train.csv: kaggle-train)."""
    if dataset.startswith("hf:"):  # hf:uoft-cs/cifar100 -> cifar100, hf:/data/beans -> beans
        from .huggingface import parse

        return Path(parse(dataset)[0]).name
    path = Path(dataset)
    if path.suffix.lower() in LABEL_FILE_SUFFIXES:
        return f"{path.resolve().parent.name}-{path.stem}" if path.resolve().parent.name else path.stem
    return path.name.removesuffix(".zip") if ("/" in dataset or dataset.endswith(".zip")) else dataset


def resize_images(images: torch.Tensor, size: int) -> torch.Tensor:
    """Resize uint8 (N,C,H,W) in chunks, so the float copy never holds a whole data set."""
    out = torch.empty((len(images), images.shape[1], size, size), dtype=torch.uint8)
    for s in range(0, len(images), _RESIZE_CHUNK):
        x = images[s : s + _RESIZE_CHUNK].float()
        y = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        out[s : s + _RESIZE_CHUNK] = y.round_().clamp_(0, 255).to(torch.uint8)
    return out


def _resized(source: SourceData, size: int | None) -> SourceData:
    if size is None or size == source.image_size:
        return source
    old = source.image_size
    for split in ("train", "val", "test"):
        part = getattr(source, split)
        if part is not None:
            setattr(source, split, ImageSet(resize_images(part.images, size), part.labels, files=part.files))
    source.notes.append(f"{source.name}: images resized from {old}x{old} to {size}x{size} (bilinear, antialiased).")
    return source


def _fingerprint(path: Path) -> str:
    """Changes when any file is added, removed, resized or touched; cheap next to decoding: one stat per file,
    no file read (300,000 files: 1.4 s, bench/README.md's scale section)."""
    if path.is_file():
        st = path.stat()
        return f"{st.st_size}-{st.st_mtime_ns}"
    h = hashlib.sha256()
    rows = []
    from .folder import walk  # symlinks followed, each real folder once (a cycle ends)

    for dirpath, _, filenames in walk(path):
        rel = os.path.relpath(dirpath, path)  # once per folder: relpath per file was half the time
        prefix = "" if rel == "." else rel + os.sep
        for name in filenames:
            try:
                st = os.stat(os.path.join(dirpath, name))
            except OSError:  # a broken link or an unreadable file: decoding skips and lists it
                rows.append(f"{prefix}{name}\0unreadable\n")
                continue
            rows.append(f"{prefix}{name}\0{st.st_size}\0{st.st_mtime_ns}\n")
    rows.sort()
    for row in rows:
        h.update(row.encode("utf-8", "surrogateescape"))
    return h.hexdigest()


def load_source(
    dataset: str,
    data_dir: str | Path,
    cache_dir: str | Path,
    image_size: int | None,
    test_fraction: float = 0.2,
    seed: int = 0,
    mmap: bool = False,
    download: bool = True,
    workers: int = 2,
    images: str | Path | None = None,
    image_column: str | None = None,
    label_column: str | None = None,
    task: str = "auto",
    label_separator: str | None = None,
) -> SourceData:
    if image_size is not None and image_size < 1:
        raise UserError(f"image size must be positive, got {image_size}", "pass an image size such as 32 or 64")
    data_dir = Path(data_dir).expanduser()
    cache_dir = Path(cache_dir).expanduser()
    name = str(dataset).strip().lower()
    hub, label_file = name.startswith("hf:"), name.endswith(LABEL_FILE_SUFFIXES)
    if (images and not label_file) or ((image_column or label_column) and not (label_file or hub)):
        raise UserError(f"--images, --image-column and --label-column go with a label file (.csv, .tsv, .parquet) "
                        f"(the columns also with hf:), not with {dataset}",
                        "pass the label file as --dataset, or drop those options")
    if hub:
        from .huggingface import load_hf, parse

        hf_name, config = parse(str(dataset).strip())
        local = Path(hf_name).expanduser()
        key = {"format": CACHE_FORMAT, "dataset": str(dataset).strip(), "kind": "huggingface",
               "path": str(local.resolve()) if local.is_dir() else None,
               "fingerprint": _fingerprint(local) if local.is_dir() else None, "data_dir": str(data_dir.resolve()),
               "columns": [image_column, label_column], "image_size": image_size}
        return cached_source(cache_dir, key, lambda: load_hf(str(dataset).strip(), data_dir, image_size, image_column,
                                                             label_column, workers), mmap=mmap)

    if name == "digits":  # decodes in milliseconds: not worth a cache entry
        from .digits import load_digits

        return _resized(load_digits(), image_size)

    if name in DATASETS:
        if name.startswith("cifar"):
            from .cifar import load_cifar

            build = lambda: load_cifar(name, data_dir, download)  # noqa: E731
        else:
            from .mnist import load_mnist

            build = lambda: load_mnist(name, data_dir, download)  # noqa: E731
        key = {"format": CACHE_FORMAT, "dataset": name, "data_dir": str(data_dir.resolve()), "image_size": image_size}
        return cached_source(cache_dir, key, lambda: _resized(build(), image_size), mmap=mmap)

    path = Path(str(dataset)).expanduser()
    if not path.exists():
        looks_like_path = any(c in str(dataset) for c in "/\\~") or name.endswith(".zip") or str(dataset).startswith(".")
        if looks_like_path:
            raise UserError(f"data set path not found: {path}", "check the path to the image folder or .zip")
        close = difflib.get_close_matches(name, list(DATASETS), n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise UserError(f"unknown data set '{dataset}'", f"{hint}use one of {', '.join(DATASETS)}, a path to an image "
                        "folder or .zip, a label file (.csv, .tsv), or hf:NAME for a Hugging Face data set")

    from .folder import load_folder
    from .labels import load_label_file

    path = path.resolve()
    if path.is_file() and label_file:
        root = Path(images).expanduser().resolve() if images else path.parent
        key = {"format": CACHE_FORMAT, "dataset": path.name, "kind": "labels", "path": str(path),
               "fingerprint": _fingerprint(path), "images": str(root),
               "images_fingerprint": _fingerprint(root) if root.exists() else None,
               "columns": [image_column, label_column], "image_size": image_size, "task": task,
               "label_separator": label_separator}
        return cached_source(cache_dir, key, lambda store: load_label_file(path, root, image_column, label_column,
                                                                           image_size, workers, store, task,
                                                                           label_separator),
                             mmap=mmap, into_files=True)
    key = {
        "format": CACHE_FORMAT,
        "dataset": path.name,
        "kind": "folder",
        "path": str(path),
        "fingerprint": _fingerprint(path),
        "image_size": image_size,
    }  # not test_fraction or seed: the test split is carved after the cache, so changing them re-decodes nothing
    return cached_source(cache_dir, key, lambda store: load_folder(path, image_size, test_fraction, seed, workers, store),
                         mmap=mmap, into_files=True)
