"""MNIST and Fashion-MNIST from the official IDX files, wherever a usual layout already has them.

Looking in torchvision's layout, a plain `<data_dir>/<name>/` folder and Debian's
`dataset-fashion-mnist` package means most machines that already have the files never download.
"""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import torch

from ..errors import UserError
from .types import ImageSet, SourceData

FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

_SPECS = {
    "mnist": {
        "torchvision": "MNIST",
        "class_names": [str(i) for i in range(10)],
        "mirrors": ["https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"],
        "md5": {
            "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
            "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
            "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
        },
        "system": [],
    },
    "fashion-mnist": {
        "torchvision": "FashionMNIST",
        "class_names": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"],
        "mirrors": ["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"],
        "md5": {
            "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
            "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
            "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
        },
        "system": [Path("/usr/share/datasets/fashion-mnist")],  # Debian: apt install dataset-fashion-mnist
    },
}

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


def read_idx(path: Path) -> np.ndarray:
    """Parse one IDX file (plain or .gz); a wrong magic number or size is the user's file, not a bug."""
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError) as e:
        raise UserError(f"cannot read {path}: {e}", "delete it and fetch the official file again") from e
    bad = UserError(f"{path} is not a valid IDX file", "delete it and fetch the official file again")
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES or raw[3] == 0:
        raise bad
    ndim, dtype = raw[3], np.dtype(_IDX_DTYPES[raw[2]])
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise bad
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    if len(raw) != header + int(np.prod(shape)) * dtype.itemsize:
        raise bad
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)


def _find(folder: Path) -> dict[str, Path] | None:
    found = {}
    for key, stem in FILES.items():
        for candidate in (folder / stem, folder / f"{stem}.gz"):
            if candidate.is_file():
                found[key] = candidate
                break
        else:
            return None
    return found


def _download(raw_dir: Path, spec: dict) -> bool:
    from torchvision.datasets.utils import download_and_extract_archive

    for filename, md5 in spec["md5"].items():
        for mirror in spec["mirrors"]:
            try:
                download_and_extract_archive(mirror + filename, str(raw_dir), filename=filename, md5=md5)
                break
            except Exception:  # offline or a dead mirror: try the next one
                continue
        else:
            return False
    return True


def load_mnist(name: str, data_dir: Path, download: bool = True) -> SourceData:
    if name not in _SPECS:
        raise ValueError(f"not an MNIST-style data set: {name!r}")
    spec = _SPECS[name]
    data_dir = Path(data_dir).expanduser()
    raw_dir = data_dir / spec["torchvision"] / "raw"
    folders = [raw_dir, data_dir / name, *spec["system"]]
    files = next((f for f in map(_find, folders) if f), None)
    where = "read from"
    if files is None and download:
        if _download(raw_dir, spec):
            files, where = _find(raw_dir), "downloaded to"
    if files is None:
        why = "download disabled" if not download else "download failed, offline?"
        raise UserError(
            f"{name} files not found ({why}); looked in {', '.join(map(str, folders))}",
            f"put {', '.join(FILES.values())} (each may be .gz) in {raw_dir}/, from {spec['mirrors'][0]}",
        )

    arrays = {key: read_idx(path) for key, path in files.items()}
    splits = {}
    for split in ("train", "test"):
        x, y = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y) or x.dtype != np.uint8:
            raise UserError(
                f"{files[f'{split}_images']} and {files[f'{split}_labels']} do not match ({x.shape} images, {y.shape} labels)",
                "delete them and fetch the official files again",
            )
        splits[split] = ImageSet(torch.from_numpy(x[:, None].copy()), torch.from_numpy(y.astype(np.int64)))
    h, w = splits["train"].images.shape[-2:]
    note = f"{name}: official IDX files {where} {files['train_images'].parent} ({len(splits['train']):,} train, {len(splits['test']):,} test images, {h}x{w} grayscale)."
    return SourceData(name=name, class_names=list(spec["class_names"]), train=splits["train"], test=splits["test"], notes=[note])
