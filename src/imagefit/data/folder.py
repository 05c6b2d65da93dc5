"""Image folders and zips: `train/<class>/*` (+ optional `val/`, `test/`) or just `<class>/*`.

This module lists a folder or zip and recognises its layout; turning the listed files into arrays is
data/decode.py's (`decode_layout` below hands the files to it and gathers the result into a SourceData).

A bad file inside a data set (truncated, empty, not an image, a decompression or zip bomb, an unsafe zip
member name) is skipped and counted, not fatal: one unreadable photo among 10,000 should not stop a run.
The skipped files travel with the data (`SourceData.skipped`) into metrics.json and report.md, and
`--strict` turns them back into an error. Hidden files (`.DS_Store`, `__MACOSX/`, `Thumbs.db`,
dotfiles) are not data at all and are ignored silently.
"""
from __future__ import annotations

import functools
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Callable

import numpy as np

from ..errors import UserError
from .decode import auto_size, decode_images, read

if TYPE_CHECKING:
    from .types import SourceData

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
SPLITS = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}
_IGNORED_PARTS = {"__MACOSX", "Thumbs.db", "desktop.ini"}


def _visible(parts: tuple[str, ...]) -> bool:
    return not any(p.startswith(".") or p in _IGNORED_PARTS for p in parts)


def walk(path: Path):
    """os.walk(followlinks=True) that visits each real directory once, so a symlink cycle ends."""
    seen: set[tuple[int, int]] = set()
    for dirpath, dirnames, filenames in os.walk(path, followlinks=True):
        st = os.stat(dirpath)
        if (st.st_dev, st.st_ino) in seen:
            dirnames[:] = []
            continue
        seen.add((st.st_dev, st.st_ino))
        yield dirpath, dirnames, filenames


def skip(file: str, reason: str) -> dict:
    """One skipped file as it is listed in metrics.json: its path inside the data set and why."""
    return {"file": file, "reason": reason}


@dataclass
class Tree:
    """The listing of a folder or zip as relative POSIX paths, so both layouts share one code path."""

    root: Path
    is_zip: bool
    files: list[tuple[str, ...]]
    dirs: set[tuple[str, ...]]
    members: dict[tuple[str, ...], str]  # zip member names as stored ("./a/b.png", "a\\b.png")
    unsafe: list[str] = field(default_factory=list)  # zip members named "../x" or "/x": never read

    def rel(self, parts: tuple[str, ...]) -> str:
        return self.members.get(parts, "/".join(parts))

    def display(self, parts: tuple[str, ...]) -> str:
        return f"{self.root}!/{'/'.join(parts)}" if self.is_zip else str(self.root.joinpath(*parts))


def list_files(path: Path) -> Tree:
    """Every visible file of a folder or zip, as relative path parts."""
    files, dirs, members = [], set(), {}
    if path.is_dir():
        for dirpath, dirnames, filenames in walk(path):
            rel = Path(dirpath).relative_to(path).parts
            dirnames[:] = sorted(d for d in dirnames if _visible((d,)))
            for d in dirnames:
                dirs.add(rel + (d,))
            files.extend(rel + (f,) for f in filenames if _visible((f,)))
        return Tree(path, False, files, dirs, {})
    if not zipfile.is_zipfile(path):
        if path.suffix.lower() == ".zip":  # named a zip: damaged, cut short by a download, or something else renamed
            raise UserError(f"{path} is not a readable zip file (no zip directory at its end: cut short, damaged, "
                            "or not a zip)", "download or create the zip again (`unzip -t` tests one), or unpack it "
                            "and pass the folder")
        raise UserError(f"{path} is neither a folder nor a zip file", "pass a folder of class folders or a .zip of one")
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
    except (zipfile.BadZipFile, OSError) as e:
        raise UserError(f"cannot read zip {path}: {e}", "re-create the zip or unpack it and pass the folder") from e
    unsafe = []
    for name in names:
        posix = name.replace("\\", "/")
        parts = tuple(p for p in PurePosixPath(posix).parts if p not in ("", ".", "/"))
        if posix.startswith("/") or ".." in parts or (parts and ":" in parts[0]):
            if not name.endswith(("/", "\\")):
                unsafe.append(name)
            continue
        if not parts or not _visible(parts):
            continue
        dirs.update(parts[:i] for i in range(1, len(parts)))
        if name.endswith(("/", "\\")):
            dirs.add(parts)
        else:
            files.append(parts)
            members[parts] = name
    return Tree(path, True, files, dirs, members, unsafe)


def _unwrap(tree: Tree) -> tuple[str, ...]:
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


def _classes_in(tree: Tree, base: tuple[str, ...]) -> dict[str, list[tuple[str, ...]]]:
    """Class folder -> its image files, nested subfolders included (a class may be organised in folders)."""
    n = len(base)
    classes: dict[str, list[tuple[str, ...]]] = {d[n]: [] for d in tree.dirs if len(d) == n + 1 and d[:n] == base}
    for f in tree.files:
        if len(f) > n + 1 and f[:n] == base and _is_image(f):
            classes.setdefault(f[n], []).append(f)
    return {c: sorted(v) for c, v in sorted(classes.items())}


def _other_files(tree: Tree, base: tuple[str, ...], classes: list[str]) -> list[tuple[str, ...]]:
    """Files inside class folders that are not images by their extension (notes, annotations, stray files)."""
    n, wanted = len(base), set(classes)
    return sorted(f for f in tree.files if len(f) > n + 1 and f[:n] == base and f[n] in wanted and not _is_image(f))


@dataclass
class Layout:
    """What the listing says before any decoding: classes, per split (image path, label), what is skipped."""

    class_names: list[str]
    files: dict[str, list[tuple[tuple[str, ...], int]]]  # multi-label: (path, tuple of label indices)
    skipped: list[dict]
    notes: list[str]
    multilabel: bool = False


def _case_clash(names: list[str], where: str) -> None:
    seen: dict[str, str] = {}
    for name in names:
        other = seen.setdefault(name.casefold(), name)
        if other != name:
            raise UserError(f"class folders '{other}' and '{name}' in {where} differ only in case "
                            "(on macOS and Windows they are one folder)", "merge them or rename one")


def layout_of(tree: Tree) -> Layout:
    """Class names and, per split present, (image path, label) ordered by class then name.

    A class folder without images is ignored with a note; a test/ or val/ class that train/ lacks (or the
    reverse) is refused, since the model could not learn it or its metrics would be empty.
    """
    prefix = _unwrap(tree)
    top = _classes_in(tree, prefix)
    split_dirs = {name: SPLITS[name.lower()] for name in top if name.lower() in SPLITS}
    where = tree.display(prefix) if prefix else str(tree.root)
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

    skipped = [skip(name, "unsafe zip member name (absolute or with '..'): not read") for name in tree.unsafe]
    notes = []
    for split, (dirname, classes) in per_split.items():
        base = prefix + ((dirname,) if dirname else ())
        skipped += [skip("/".join(f), f"not an image file ({PurePosixPath(f[-1]).suffix or 'no extension'})")
                    for f in _other_files(tree, base, list(classes))]
        empty = [name for name, paths in classes.items() if not paths]
        if empty:
            notes.append(f"class folder{'s' if len(empty) > 1 else ''} {', '.join(empty)} in {tree.display(base)} "
                         f"ha{'ve' if len(empty) > 1 else 's'} no images ({', '.join(sorted(IMAGE_EXTENSIONS))}): ignored.")
        for name in empty:
            del classes[name]
        _case_clash(list(classes), tree.display(base))

    train_dir, train_classes = per_split["train"]
    train_where = tree.display(prefix + ((train_dir,) if train_dir else ()))
    if not train_classes:
        raise UserError(f"no class folders with images in {train_where} ({', '.join(sorted(IMAGE_EXTENSIONS))})",
                        "put images in one folder per class, e.g. cats/*.jpg and dogs/*.jpg")
    class_names = list(train_classes)
    files: dict[str, list[tuple[tuple[str, ...], int]]] = {}
    for split, (dirname, classes) in per_split.items():
        if split != "train":
            missing = sorted(set(class_names) - set(classes))
            extra = sorted(set(classes) - set(class_names))
            if missing or extra:
                detail = "; ".join(x for x in (f"missing {', '.join(missing)}" if missing else "", f"extra {', '.join(extra)}" if extra else "") if x)
                raise UserError(f"{dirname}/ class folders differ from train/ in {where}: {detail}", f"give {dirname}/ the same class folders as train/")
        files[split] = [(p, label) for label, name in enumerate(class_names) for p in classes[name]]
    return Layout(class_names, files, skipped, notes)


def image_files(path: Path) -> list[tuple[str, Callable[[], bytes]]]:
    """Every image file under a folder or in a zip (or `path` itself when it is a file that is not a zip),
    in name order, as (display name, a function that reads its bytes)."""
    path = Path(path).expanduser()
    if not path.exists():
        raise UserError(f"not found: {path}", "pass image files, folders of images or .zip files")
    if path.is_file() and not zipfile.is_zipfile(path):
        return [(str(path), path.read_bytes)]
    tree = list_files(path.resolve())
    root = str(tree.root)
    return [(tree.display(p), functools.partial(read, root, tree.is_zip, tree.rel(p)))
            for p in sorted(tree.files) if _is_image(p)]


def load_folder(path: Path, image_size: int | None, test_fraction: float, seed: int, workers: int = 2,
                store=None) -> SourceData:
    """test_fraction and seed are accepted for the caller's symmetry; carving the test split is not done here
    (so the decoded result, and its cache entry, do not depend on them). Unreadable files are skipped and
    listed in the result's `skipped`; a class left with no readable image is an error. `store` (data/rows.py)
    says where the decoded images go: RAM by default, a cache entry's files when the cache passes one."""
    path = Path(path).expanduser()
    if not path.exists():
        raise UserError(f"image folder not found: {path}", "check the path, or pass a data set name such as digits")
    tree = list_files(path.resolve())
    return decode_layout(tree, layout_of(tree), f"image folder {path}", path.name, image_size, workers,
                         "the folder has only class folders, no train/ and test/ split", store)


def decode_layout(tree: Tree, layout: Layout, described: str, name: str, image_size: int | None, workers: int,
                  no_test: str, store=None) -> SourceData:
    """Decode what a layout lists (a folder's class folders, a label file's rows) into a SourceData: the images
    of every split in one pool, unreadable ones skipped and listed; `described` starts the first note and
    `no_test` says why there is no test split when there is none.

    Each split's images are written where `store` puts them (data/rows.py: RAM, or straight into the files of the
    cache entry being built), chunk by chunk as the pool returns them, and the rows of unreadable files are then
    squeezed out in place: the whole set is never held, nor copied, in memory."""
    import torch

    from .rows import MemoryStore
    from .types import ImageSet, SourceData

    class_names, files = layout.class_names, layout.files
    notes = []
    if image_size is None:
        image_size, note = auto_size(tree, [p for p, _ in files["train"]], workers)
        notes.append(note)
    elif image_size < 1:
        raise UserError(f"image size must be positive, got {image_size}", "pass an image size such as 32 or 64")
    everything = [item for paths in files.values() for item in paths]  # one pool for all splits
    store = store if store is not None else MemoryStore()
    rows = {split: store.rows(split, (len(paths), 3, image_size, image_size)) for split, paths in files.items()}
    infos: list[list] = []
    _, bad = decode_images(tree, [p for p, _ in everything], image_size, workers, infos, into=list(rows.values()))
    skipped = sorted(layout.skipped + [skip("/".join(everything[i][0]), reason) for i, reason in bad.items()],
                     key=lambda s: s["file"])
    keep = np.ones(len(everything), dtype=bool)
    keep[list(bad)] = False
    labels = torch.from_numpy(label_array([label for _, label in everything], len(class_names), layout.multilabel))
    out, start = {}, 0
    for split, paths in files.items():
        kept = np.flatnonzero(keep[start : start + len(paths)])
        rows[split].keep(kept)
        names = ["/".join(p) for p, _ in paths]  # the path inside the folder or zip
        out[split] = ImageSet(torch.from_numpy(rows[split].images()), labels[torch.from_numpy(kept + start)],
                              files=[names[int(j)] for j in kept])
        start += len(paths)
        _check_readable(tree, split, out[split], class_names, skipped)
    sizes = ", ".join(f"{len(out[s]):,} {s}" for s in ("train", "val", "test") if s in out)
    notes.insert(0, f"{described}: {len(class_names)} classes, {sizes} images, center-cropped and resized to {image_size}x{image_size} RGB.")
    notes += layout.notes
    if skipped:
        notes.append(f"{len(skipped):,} file{'s' if len(skipped) > 1 else ''} skipped (unreadable or not images): "
                     "listed under skipped_files in metrics.json.")
    if "test" not in out:
        notes.append(f"{no_test}: every image is in train, the test split is carved from it later.")
    return SourceData(name=name, class_names=class_names, train=out["train"], val=out.get("val"), test=out.get("test"),
                      notes=notes, skipped=skipped, originals=originals_summary([i for i in infos if i]))


def label_array(labels: list, num_classes: int, multilabel: bool) -> np.ndarray:
    """int64 class indices (N,), or for a multi-label layout a multi-hot (N, classes) array of 0 and 1."""
    if not multilabel:
        return np.asarray(labels, dtype=np.int64)
    out = np.zeros((len(labels), num_classes), dtype=np.int64)
    for i, indices in enumerate(labels):
        out[i, list(indices)] = 1
    return out


def originals_summary(infos: list[list]) -> dict:
    """The files' own sizes and modes, summed up for the data audit: {images, width and height (min, median,
    max), common (the 5 most frequent [w, h, count]), modes ({mode: count})}."""
    from collections import Counter

    if not infos:
        return {}
    w = np.array([i[0] for i in infos])
    h = np.array([i[1] for i in infos])
    stats = lambda a: {"min": int(a.min()), "median": int(np.median(a)), "max": int(a.max())}  # noqa: E731
    common = Counter((int(i[0]), int(i[1])) for i in infos).most_common(5)
    return {"images": len(infos), "width": stats(w), "height": stats(h),
            "common": [[cw, ch, n] for (cw, ch), n in common], "modes": dict(Counter(str(i[2]) for i in infos))}


def _check_readable(tree: Tree, split: str, part, class_names: list[str], skipped: list[dict]) -> None:
    """After skipping, a class with no readable image left cannot be learned or tested: say so."""
    if part.labels.ndim == 2:  # multi-label: every label needs a train image; val or test may lack one
        if split != "train":
            return
        counts = part.labels.sum(0).numpy()
    else:
        counts = np.bincount(part.labels.numpy(), minlength=len(class_names))
    empty = [name for name, n in zip(class_names, counts) if n == 0]
    if empty:
        example = f" (e.g. {skipped[-1]['file']}: {skipped[-1]['reason']})" if skipped else ""
        raise UserError(f"no readable image of class {', '.join(empty)} in the {split} split of {tree.root}: "
                        f"{len(skipped):,} files could not be decoded{example}", "replace the unreadable files")
