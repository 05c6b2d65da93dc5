"""Label files: a table whose rows name an image and its class (`--dataset train.csv`), as Kaggle, fastai's
`ImageDataLoaders.from_csv` and Hugging Face's image folders keep them.

The columns are found by their usual names (IMAGE_COLUMNS, LABEL_COLUMNS) unless `--image-column` and
`--label-column` name them. Paths are relative to the table's folder, or to `--images` (a folder or a zip); an
id without an extension (Kaggle's `id,label`) finds its file when exactly one image has that name. An optional
`split` column (`train`, `val`/`valid`/`validation`, `test`) gives the splits; without one they are carved as
for a folder. The rows become the same Layout a folder's class folders make, so decoding, the cache, skipped
files and the audit are the folder's own.

A row that cannot be used is skipped and listed, like an unreadable image (SKIPPED_ROWS); a table that cannot
be read as a whole (no header, no such column, an unknown split name, no rows) is one clear error.
"""
from __future__ import annotations

import csv
import io
from collections import Counter
from pathlib import Path, PurePosixPath

from ..errors import UserError
from .folder import IMAGE_EXTENSIONS, SPLITS, Layout, Tree, decode_layout, list_files, skip

IMAGE_COLUMNS = ("image", "file", "filename", "file_name", "path", "filepath", "image_path", "id", "image_id")
LABEL_COLUMNS = ("label", "class", "target", "category", "y", "labels", "class_name")
SPLIT_COLUMN = "split"


def read_table(path: Path) -> tuple[list[str], list[list[str]]]:
    """The header and the rows, every cell a string: CSV (comma or semicolon, found by csv.Sniffer), TSV, or
    Parquet through pyarrow when it is installed."""
    if path.suffix.lower() == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise UserError(f"reading {path.name} needs pyarrow",
                            "pip install 'imagefit[parquet]' (or pyarrow), or save the table as CSV") from None
        try:
            table = pq.read_table(path)
        except Exception as e:  # pyarrow's errors have no common base worth naming
            raise UserError(f"cannot read {path} as Parquet: {e}", "write the table again, or save it as CSV") from None
        columns = table.to_pydict()
        header = list(columns)
        return header, [["" if v is None else str(v) for v in row] for row in zip(*columns.values())]
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise UserError(f"{path} is not UTF-8 text", "save the label file as UTF-8 CSV") from None
    if path.suffix.lower() == ".tsv":
        delimiter = "\t"
    else:
        try:
            delimiter = csv.Sniffer().sniff(text[:4096], delimiters=",;\t").delimiter
        except csv.Error:
            delimiter = ","
    rows = [row for row in csv.reader(io.StringIO(text), delimiter=delimiter) if any(c.strip() for c in row)]
    if not rows:
        raise UserError(f"label file {path} is empty", "write a header row (image,label) and one row per image")
    return [c.strip() for c in rows[0]], [[c.strip() for c in row] for row in rows[1:]]


def find_column(header: list[str], given: str | None, usual: tuple[str, ...], what: str, flag: str, path: Path) -> int:
    """The index of the column named `given`, else of the first usual name (any case)."""
    lowered = [h.lower() for h in header]
    if given is not None:
        if given.lower() not in lowered:
            raise UserError(f"label file {path.name} has no column '{given}' (its columns: {', '.join(header)})",
                            f"pass {flag} with one of those")
        return lowered.index(given.lower())
    for name in usual:
        if name in lowered:
            return lowered.index(name)
    looks_like_data = any(Path(h).suffix.lower() in IMAGE_EXTENSIONS for h in header)
    why = (f"its first row ({', '.join(header)}) looks like data, not a header" if looks_like_data
           else f"its columns are {', '.join(header)}")
    raise UserError(f"label file {path.name} has no {what} column: {why}",
                    f"add a header row such as image,label, or pass {flag} NAME")


def class_order(names: set[str]) -> list[str]:
    """Class names sorted; numbers by value (2 before 10), as a reader of the table expects."""
    if all(n.lstrip("-").isdigit() for n in names):
        return sorted(names, key=int)
    return sorted(names)


def _index_by_stem(tree: Tree) -> dict[tuple[str, ...], list[tuple[str, ...]]]:
    by_stem: dict[tuple[str, ...], list[tuple[str, ...]]] = {}
    for parts in tree.files:
        if PurePosixPath(parts[-1]).suffix.lower() in IMAGE_EXTENSIONS:
            by_stem.setdefault(parts[:-1] + (PurePosixPath(parts[-1]).stem,), []).append(parts)
    return by_stem


def _resolve(cell: str, files: set[tuple[str, ...]], by_stem: dict) -> tuple[tuple[str, ...] | None, str | None]:
    """The image a cell names, as path parts inside the images folder, or why it names none."""
    posix = cell.replace("\\", "/")
    parts = tuple(p for p in PurePosixPath(posix).parts if p not in ("", "."))
    if posix.startswith("/") or ".." in parts or (parts and ":" in parts[0]):
        return None, "path outside the images folder (absolute or with '..'): not read"
    if parts in files:
        return parts, None
    if not PurePosixPath(posix).suffix or PurePosixPath(posix).suffix.lower() not in IMAGE_EXTENSIONS:
        found = by_stem.get(parts, [])
        if len(found) == 1:
            return found[0], None
        if len(found) > 1:
            return None, f"more than one image is named {posix} ({', '.join(f[-1] for f in sorted(found))})"
    return None, "no such image file"


SEPARATORS = ("|", ";", ",")  # tried in this order before whitespace (see detect_separator)


def detect_separator(cells: list[str], spaces: bool = True) -> str | None:
    """The separator of a multi-label column: `|`, `;` or `,` when any cell holds one; else whitespace when the
    cells combine words (fewer distinct words than distinct cells, and a word seen both alone and with others, or
    under half as many words as cells: 'cat dog', 'dog', 'cat bird'), not for class names that merely contain
    spaces ('golden retriever'); else None (one label a cell). `spaces` False (--task single): never whitespace."""
    for sep in SEPARATORS:
        if any(sep in c for c in cells):
            return sep
    if not spaces:
        return None
    distinct = set(cells)
    spaced = {c for c in distinct if len(c.split()) > 1}
    if spaced:
        words = {w for c in distinct for w in c.split()}
        alone_and_combined = {c.strip() for c in distinct - spaced} & {w for c in spaced for w in c.split()}
        # combinations: far fewer words than cells, or a label seen alone and with others ('dog', 'dog ball');
        # a grid of two-word class names ('small red', 'large red', 'small blue') has neither
        if len(words) < len(distinct) and (2 * len(words) <= len(distinct) or alone_and_combined):
            return " "
    return None


def split_cell(cell: str, separator: str | None) -> list[str]:
    """The distinct labels of one cell, sorted; an empty cell has none."""
    if separator is None:
        parts = [cell]
    elif separator.strip() == "":
        parts = cell.split()
    else:
        parts = cell.split(separator)
    return sorted({p.strip() for p in parts if p.strip()})


def _indicator_columns(header: list[str], rows: list[list[str]], taken: set[int]) -> list[int]:
    """Columns (not the image or split one) whose every cell is 0 or 1: one column per class, a label file's
    multi-hot form (Kaggle's, and what pandas.get_dummies writes)."""
    found = []
    for i in range(len(header)):
        if i in taken:
            continue
        values = {row[i] if i < len(row) else "" for row in rows}
        if values and values <= {"0", "1", "0.0", "1.0", "True", "False", "true", "false"}:
            found.append(i)
    return found if len(found) >= 2 else []


def _row_labels(header, rows, path, label_column, separator, image_at, split_at, task):
    """Each row's labels (a list) and how the file gave them: (labels per row, form, separator used)."""
    taken = {image_at} | ({split_at} if split_at is not None else set())
    lowered = [h.lower() for h in header]
    usual = next((n for n in LABEL_COLUMNS if n in lowered), None)
    if label_column is None and usual is None:
        columns = _indicator_columns(header, rows, taken)
        if columns:
            on = {"1", "1.0", "True", "true"}
            return ([[header[i] for i in columns if i < len(row) and row[i] in on] for row in rows],
                    f"one 0/1 column per class ({', '.join(header[i] for i in columns[:4])}"
                    f"{', ...' if len(columns) > 4 else ''})", None, [header[i] for i in columns])
    label_at = find_column(header, label_column, LABEL_COLUMNS, "label", "--label-column", path)
    cells = [row[label_at] if label_at < len(row) else "" for row in rows]
    sep = separator if separator is not None else detect_separator(cells, spaces=task != "single")
    return [split_cell(c, sep) for c in cells], f"column {header[label_at]}", sep, None


def label_layout(path: Path, tree: Tree, image_column: str | None, label_column: str | None,
                 task: str = "auto", separator: str | None = None) -> Layout:
    """The rows of a label file as a Layout: classes, per split (image path, label), and the rows skipped.

    A cell may hold several labels (`a|b`, `a;b`, `a,b`, `a b`: detect_separator, or `separator`), or the file may
    give one 0/1 column per class. `task` auto makes the layout multi-label when any row has several labels or
    none (an empty cell is then an image with no label); single skips such rows; multilabel pins it."""
    header, rows = read_table(path)
    image_at = find_column(header, image_column, IMAGE_COLUMNS, "image", "--image-column", path)
    split_at = [h.lower() for h in header].index(SPLIT_COLUMN) if SPLIT_COLUMN in [h.lower() for h in header] else None
    if not rows:
        raise UserError(f"label file {path} has a header but no rows", "add one row per image: its path and its class")
    row_labels, form, sep, columns = _row_labels(header, rows, path, label_column, separator, image_at, split_at,
                                                     task)
    multi_row = next((i for i, labels in enumerate(row_labels) if len(labels) != 1), None)
    multilabel = task == "multilabel" or (task == "auto" and multi_row is not None)
    files, by_stem = set(tree.files), _index_by_stem(tree)
    skipped, kept, seen = [], [], {}
    cell = lambda row, i: row[i] if i < len(row) else ""  # noqa: E731 (a short row's missing cells are empty)
    for number, (row, labels) in enumerate(zip(rows, row_labels), start=2):  # the header is line 1
        name = cell(row, image_at)
        where = f"{path.name} line {number}"
        if not name:
            skipped.append(skip(where, "row without an image"))
            continue
        if not multilabel and len(labels) != 1:
            skipped.append(skip(f"{name} ({where})", "row without a label" if not labels else
                                f"row with {len(labels)} labels ({' '.join(labels)}) in a single-label run"))
            continue
        label = " ".join(labels) if multilabel else labels[0]
        split = "train"
        if split_at is not None:
            given = cell(row, split_at).lower()
            if given not in SPLITS:
                raise UserError(f"{where}: unknown split '{cell(row, split_at)}'",
                                "use train, val (or valid, validation) or test in the split column")
            split = SPLITS[given]
        parts, why = _resolve(name, files, by_stem)
        if parts is None:
            skipped.append(skip(f"{name} ({where})", why))
            continue
        if parts in seen:
            first_label, first_split = seen[parts]
            reason = ("listed again with the same label: used once" if (first_label, first_split) == (label, split)
                      else f"listed again as {label}/{split}, first as {first_label}/{first_split}: the first row is used")
            skipped.append(skip(f"{name} ({where})", reason))
            continue
        seen[parts] = (label, split)
        kept.append((split, parts, tuple(labels) if multilabel else label))
    if not kept:
        example = f" (e.g. {skipped[0]['file']}: {skipped[0]['reason']})" if skipped else ""
        raise UserError(f"no row of {path} names a readable image{example}",
                        "check the image column and that the paths are relative to the label file's folder or --images")
    if multilabel:
        return _multilabel_layout(path, kept, skipped, form, sep, columns, multi_row, task, rows, row_labels)
    class_names = class_order({label for split, _, label in kept if split == "train"})
    if not class_names:
        raise UserError(f"label file {path} has no train rows", "mark rows train in the split column, or drop the column")
    index = {name: i for i, name in enumerate(class_names)}
    notes = []
    unknown = Counter(label for split, _, label in kept if label not in index)
    if unknown:
        raise UserError(f"label file {path} has classes in val or test rows that no train row has: "
                        f"{', '.join(sorted(unknown))}", "add train rows of those classes, or remove their rows")
    layout_files: dict[str, list] = {}
    for split in ("train", "val", "test"):
        part = sorted(((parts, index[label]) for s, parts, label in kept if s == split), key=lambda x: (x[1], x[0]))
        if part:
            layout_files[split] = part
    if all(n.lstrip("-").isdigit() for n in class_names):
        notes.append(f"the labels of {path.name} are numbers: classes {', '.join(class_names[:5])}"
                     f"{', ...' if len(class_names) > 5 else ''} (by value).")
    return Layout(class_names, layout_files, skipped, notes)


def _multilabel_layout(path, kept, skipped, form, sep, columns, multi_row, task, rows, row_labels) -> Layout:
    """A multi-label layout: every label of a train row is a class; each image's label is a tuple of indices."""
    train_labels = {label for split, _, labels in kept if split == "train" for label in labels}
    if not any(split == "train" for split, _, _ in kept):
        raise UserError(f"label file {path} has no train rows", "mark rows train in the split column, or drop the column")
    class_names = [c for c in columns if c in train_labels] if columns else class_order(train_labels)
    if columns and len(class_names) < len(columns):
        missing = [c for c in columns if c not in train_labels]
        raise UserError(f"label file {path}: no train image has the label(s) {', '.join(missing)}",
                        "add train images with those labels, or drop their columns")
    index = {name: i for i, name in enumerate(class_names)}
    unknown = sorted({label for split, _, labels in kept for label in labels if label not in index})
    if unknown:
        where = sorted({split for split, _, labels in kept if set(labels) & set(unknown)})
        raise UserError(f"label file {path} has labels in {' and '.join(where)} rows that no train row has: "
                        f"{', '.join(unknown[:10])}{' ...' if len(unknown) > 10 else ''}",
                        "add train rows with those labels, or remove them from the other rows")
    layout_files: dict[str, list] = {}
    for split in ("train", "val", "test"):
        part = sorted(((parts, tuple(sorted(index[label] for label in labels))) for s, parts, labels in kept
                       if s == split), key=lambda x: x[0])
        if part:
            layout_files[split] = part
    counts = [len(labels) for _, _, labels in kept]
    why = ("--task multilabel" if task == "multilabel" else
           f"line {multi_row + 2} has {'no label' if not row_labels[multi_row] else 'the labels ' + ', '.join(row_labels[multi_row])}")
    given = form + (f", labels separated by {'spaces' if sep == ' ' else repr(sep)}" if sep else "")
    notes = [f"Multi-label ({why}; --task single would keep one label an image): {path.name} gives labels as {given}; "
             f"{len(class_names)} labels, {sum(counts) / len(counts):.2f} an image on average, "
             f"{sum(1 for n in counts if n == 0):,} images with none."]
    return Layout(class_names, layout_files, skipped, notes, multilabel=True)


def load_label_file(path: Path, images: Path | None, image_column: str | None, label_column: str | None,
                    image_size: int | None, workers: int = 2, store=None, task: str = "auto",
                    separator: str | None = None):
    """A SourceData from a label file and the images it names (in `images`, else the file's own folder); `store`
    as for folder.load_folder."""
    root = Path(images).expanduser() if images else path.parent
    if not root.exists():
        raise UserError(f"images folder not found: {root}", "pass --images with the folder (or .zip) the label file's paths are in")
    tree = list_files(root.resolve())
    layout = label_layout(path, tree, image_column, label_column, task, separator)
    described = f"label file {path} (images in {root})"
    return decode_layout(tree, layout, described, path.stem, image_size, workers, "the label file has no split column",
                         store)
