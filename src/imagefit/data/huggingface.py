"""Hugging Face data sets: `--dataset hf:NAME[:CONFIG]` (`beans`, `uoft-cs/cifar100`, ...) or `hf:PATH` (a folder
written by `save_to_disk`), through the `datasets` library (`pip install 'imagefit[hf]'`), as timm's `hfds/` names.

The image column is the data set's `Image` feature and the label column its `ClassLabel` (whose names become the
classes), unless `--image-column`/`--label-column` name them; the data set's own splits are kept (`validation` is
imagefit's val). Each image's encoded bytes are decoded by a folder's function (data/decode.py), so an image
reads as the same file in a folder would, and an unreadable one is skipped and listed. Downloads go under `--data-dir`;
offline, `datasets` reads what it has cached (HF_DATASETS_OFFLINE=1 skips the network).
"""
from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ..errors import UserError
from .decode import DECODE_ERRORS, decode_image, failure_reason, size_from_sides
from .folder import SPLITS, skip

PREFIX = "hf:"


def parse(dataset: str) -> tuple[str, str | None]:
    """`hf:NAME[:CONFIG]` -> (NAME, CONFIG); a local folder is a NAME too (a Windows drive letter is not a CONFIG)."""
    rest = dataset[len(PREFIX):]
    if ":" not in rest or Path(rest).expanduser().exists():
        return rest, None
    name, _, config = rest.rpartition(":")
    return name, config or None


def open_dataset(name: str, config: str | None, data_dir: Path):
    """The DatasetDict (or Dataset) of a local save_to_disk folder or of the Hub, or one clear line."""
    try:
        import datasets
    except ImportError:
        raise UserError("Hugging Face data sets need the datasets library",
                        "pip install 'imagefit[hf]' (or datasets)") from None
    path = Path(name).expanduser()
    if path.is_dir():
        try:
            return datasets.load_from_disk(str(path))
        except (FileNotFoundError, ValueError) as e:
            raise UserError(f"{path} is not a folder written by save_to_disk ({e})",
                            "pass hf:NAME for the Hub, or a folder that Dataset.save_to_disk wrote") from None
    try:
        return datasets.load_dataset(name, config, cache_dir=str(data_dir / "huggingface"))
    except Exception as e:  # offline, unknown name, gated: datasets raises many types
        why = " ".join(str(e).split())[:200]
        raise UserError(f"cannot get the Hugging Face data set '{name}'{f' ({config})' if config else ''}: {why}",
                        "connect once so datasets caches it, or save_to_disk a copy and pass hf:/that/folder") from None


def columns(features, image_column: str | None, label_column: str | None, where: str) -> tuple[str, str]:
    """The image and label columns: the ones named, else the first Image feature and the first ClassLabel."""
    import datasets

    image = image_column or next((k for k, v in features.items() if isinstance(v, datasets.Image)), None)
    label = label_column or next((k for k, v in features.items() if isinstance(v, datasets.ClassLabel)), None)
    for given, kind, flag in ((image, "Image", "--image-column"), (label, "ClassLabel", "--label-column")):
        if given is None or given not in features:
            raise UserError(f"{where} has no {kind} column{f' {given!r}' if given else ''} (its columns: "
                            f"{', '.join(features)})", f"pass {flag} with one of those")
    if not isinstance(features[label], datasets.ClassLabel):
        raise UserError(f"{where}'s column {label!r} is not a ClassLabel (class names unknown)",
                        "pass --label-column naming a ClassLabel column, or use a label file")
    return image, label


def _encoded(cell) -> bytes:
    """An image cell read without decoding: {'bytes': ..., 'path': ...}."""
    if cell.get("bytes"):
        return cell["bytes"]
    return Path(cell["path"]).read_bytes() if cell.get("path") else b""


def load_hf(dataset: str, data_dir: Path, image_size: int | None, image_column: str | None = None,
            label_column: str | None = None, workers: int = 2):
    import datasets
    import torch

    from .types import ImageSet, SourceData

    name, config = parse(dataset)
    found = open_dataset(name, config, Path(data_dir).expanduser())
    parts = dict(found) if isinstance(found, datasets.DatasetDict) else {"train": found}
    unknown = [s for s in parts if s.lower() not in SPLITS]
    if unknown or "train" not in {SPLITS.get(s.lower()) for s in parts}:
        raise UserError(f"{dataset} has splits {', '.join(parts)}; imagefit needs train (and takes validation, test)",
                        "save_to_disk a DatasetDict with a train split")
    first = parts[next(s for s in parts if SPLITS[s.lower()] == "train")]
    image_col, label_col = columns(first.features, image_column, label_column, dataset)
    class_names = [str(n) for n in first.features[label_col].names]
    raw = {SPLITS[s.lower()]: ds.cast_column(image_col, datasets.Image(decode=False)) for s, ds in parts.items()}
    notes = []
    if image_size is None:
        sample = raw["train"].select(range(min(2000, len(raw["train"]))))
        image_size, note = _auto_size(list(sample[image_col]))
        notes.append(note)
    out, skipped = {}, []
    with ThreadPoolExecutor(max(1, workers)) as pool:  # PIL decodes with the GIL released
        for split, ds in raw.items():
            cells, labels = list(ds[image_col]), list(ds[label_col])  # (datasets 4+ returns lazy columns)
            arrays = list(pool.map(lambda c: _decode(c, image_size), cells))
            keep = [i for i, a in enumerate(arrays) if not isinstance(a, str)]
            skipped += [skip(f"{split}[{i}]", a) for i, a in enumerate(arrays) if isinstance(a, str)]
            stack = np.stack([arrays[i] for i in keep]) if keep else np.zeros((0, image_size, image_size, 3), np.uint8)
            images = torch.from_numpy(np.ascontiguousarray(stack.transpose(0, 3, 1, 2)))
            out[split] = ImageSet(images, torch.tensor([labels[i] for i in keep], dtype=torch.int64),
                                  files=[f"{split}[{i}]" for i in keep])
    sizes = ", ".join(f"{len(out[s]):,} {s}" for s in ("train", "val", "test") if s in out)
    notes.insert(0, f"Hugging Face data set {name}{f' ({config})' if config else ''}: {len(class_names)} classes, {sizes} "
                    f"images (its own splits), center-cropped and resized to {image_size}x{image_size} RGB.")
    if skipped:
        notes.append(f"{len(skipped):,} image{'s' if len(skipped) > 1 else ''} skipped (unreadable): listed under "
                     "skipped_files in metrics.json.")
    return SourceData(name=Path(name).name, class_names=class_names, train=out["train"], val=out.get("val"),
                      test=out.get("test"), notes=notes, skipped=skipped)


def _decode(cell, size: int) -> np.ndarray | str:
    try:
        return decode_image(_encoded(cell), size)
    except DECODE_ERRORS as e:
        return failure_reason(e)


def _auto_size(cells) -> tuple[int, str]:
    from PIL import Image

    sides = []
    for cell in cells:
        try:
            with Image.open(io.BytesIO(_encoded(cell))) as im:
                sides.append(min(im.size))
        except DECODE_ERRORS:
            continue
    if not sides:
        raise UserError("no readable image among the first training rows", "check the data set's image column")
    return size_from_sides(sides, f"{len(sides):,} images")
