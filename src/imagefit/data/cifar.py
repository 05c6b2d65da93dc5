"""CIFAR-10/100 from the official python-pickle releases, read without executing anything in them.

The release files are pickles, and a plain pickle.load of a file from the internet (or a shared
folder) can run arbitrary code. `_SafeUnpickler` admits only the handful of globals the official
files name (numpy array reconstruction, and bytes as protocol-2 pickles spell them) and refuses
everything else.
"""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch

from ..errors import UserError
from .types import ImageSet, SourceData

_SPECS = {
    "cifar10": {
        "folder": "cifar-10-batches-py",
        "train": [f"data_batch_{i}" for i in range(1, 6)],
        "test": ["test_batch"],
        "meta": "batches.meta",
        "label_key": b"labels",
        "names_key": b"label_names",
        "url": "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        "md5": "c58f30108f718f92721af3b95e74349a",
    },
    "cifar100": {
        "folder": "cifar-100-python",
        "train": ["train"],
        "test": ["test"],
        "meta": "meta",
        "label_key": b"fine_labels",
        "names_key": b"fine_label_names",
        "url": "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
        "md5": "eb9058c3a382ffc7106e4002c42a8d85",
    },
}

_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    # Python 3 writes bytes under protocol 2 as _codecs.encode(str, "latin1").
    ("_codecs", "encode"),
    ("builtins", "bytes"),
    ("builtins", "bytearray"),
    ("builtins", "list"),
    ("builtins", "dict"),
    ("builtins", "tuple"),
    ("builtins", "set"),
    ("builtins", "frozenset"),
}


class _SafeUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"global '{module}.{name}' is not allowed in a CIFAR file")


def safe_load(path: Path):
    """Unpickle an official CIFAR file; anything but arrays, lists, dicts and bytes is refused."""
    try:
        with open(path, "rb") as f:
            return _SafeUnpickler(f, encoding="bytes").load()
    except pickle.UnpicklingError as e:
        raise UserError(
            f"refused to load {path}: {e}; it is not an official CIFAR file",
            "delete it and fetch the official archive again",
        ) from e
    except (EOFError, ValueError, TypeError, KeyError, IndexError, AttributeError) as e:
        raise UserError(f"{path} is damaged or not a CIFAR file ({type(e).__name__})", "delete it and fetch the official archive again") from e


def _missing(folder: Path, spec: dict) -> list[str]:
    names = spec["train"] + spec["test"] + [spec["meta"]]
    return [n for n in names if not (folder / n).is_file()]


def _download(data_dir: Path, spec: dict) -> Exception | None:
    try:
        from torchvision.datasets.utils import download_and_extract_archive

        download_and_extract_archive(spec["url"], str(data_dir), filename=spec["url"].rsplit("/", 1)[1], md5=spec["md5"])
        return None
    except Exception as e:  # offline, proxy, bad checksum: all end in the same one-line advice
        return e


def _read_split(folder: Path, files: list[str], label_key: bytes) -> ImageSet:
    images, labels = [], []
    for name in files:
        path = folder / name
        batch = safe_load(path)
        try:
            data = np.asarray(batch[b"data"], dtype=np.uint8)
            images.append(data.reshape(len(data), 3, 32, 32))
            labels.append(np.asarray(batch[label_key], dtype=np.int64))
        except (KeyError, ValueError, TypeError) as e:
            raise UserError(f"{path} is not a CIFAR batch ({type(e).__name__}: {e})", "delete it and fetch the official archive again") from e
        if len(labels[-1]) != len(images[-1]):
            raise UserError(f"{path} has {len(images[-1])} images but {len(labels[-1])} labels", "delete it and fetch the official archive again")
    x = torch.from_numpy(np.ascontiguousarray(np.concatenate(images)))
    y = torch.from_numpy(np.concatenate(labels))
    return ImageSet(x, y)


def load_cifar(name: str, data_dir: Path, download: bool = True) -> SourceData:
    if name not in _SPECS:
        raise ValueError(f"not a CIFAR data set: {name!r}")
    spec = _SPECS[name]
    data_dir = Path(data_dir).expanduser()
    folder = data_dir / spec["folder"]
    note_src, error = f"{name}: official python release read from {folder}", None
    if _missing(folder, spec) and download:
        error = _download(data_dir, spec)
        note_src = f"{name}: official python release downloaded from {spec['url']} to {folder}"
        if error is not None and not _missing(folder, spec):
            error = None
    missing = _missing(folder, spec)
    if missing:
        why = "download disabled" if not download else f"download failed: {type(error).__name__}, offline?"
        raise UserError(
            f"{name} files missing in {folder} ({why}): {', '.join(missing)}",
            f"fetch {spec['url']} and unpack it in {data_dir} so that {folder}/ holds {', '.join(spec['train'] + spec['test'] + [spec['meta']])}",
        )

    meta = safe_load(folder / spec["meta"])
    try:
        class_names = [n.decode() if isinstance(n, bytes) else str(n) for n in meta[spec["names_key"]]]
    except (KeyError, TypeError) as e:
        raise UserError(f"{folder / spec['meta']} has no {spec['names_key'].decode()}", "delete it and fetch the official archive again") from e
    train = _read_split(folder, spec["train"], spec["label_key"])
    test = _read_split(folder, spec["test"], spec["label_key"])
    notes = [f"{note_src} ({len(train):,} train, {len(test):,} test images, 32x32 RGB)."]
    if name == "cifar100":
        n_coarse = len(meta.get(b"coarse_label_names", [])) if isinstance(meta, dict) else 0
        notes.append(f"cifar100: trained on the {len(class_names)} fine labels; the {n_coarse} coarse superclass labels are not used.")
    return SourceData(name=name, class_names=class_names, train=train, test=test, notes=notes)
