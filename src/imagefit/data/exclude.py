"""`--exclude FILE`: train without the images a table lists (a run's label_issues.csv, or any CSV with a file
column). They leave the train and validation splits; test images are never dropped, so runs stay comparable."""
from __future__ import annotations

from pathlib import Path

import torch

from ..errors import UserError


def read_exclude(path: str | Path) -> set[str]:
    """The file names of an --exclude table: its `file` column (or the first usual image column)."""
    from .labels import IMAGE_COLUMNS, find_column, read_table

    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"--exclude file not found: {path}", "pass a CSV with a file column, such as a run's "
                        "label_issues.csv")
    header, rows = read_table(path)
    at = find_column(header, None, ("file",) + IMAGE_COLUMNS, "file", "--exclude (a file column)", path)
    return {row[at] for row in rows if at < len(row) and row[at]}


def exclude_files(source, names: set[str], path: str) -> list[str]:
    """Drop the listed files from the source's train and val splits (never test); notes that say what was dropped."""
    dropped = 0
    for split in ("train", "val"):
        part = getattr(source, split)
        if part is None:
            continue
        if part.files is None:
            raise UserError(f"--exclude lists files, but {source.name} has none (a named data set)",
                            "use --exclude with an image folder, a zip or a label file")
        keep = torch.tensor([f not in names for f in part.files])
        if not bool(keep.all()):
            index = keep.nonzero()[:, 0]
            setattr(source, split, part.subset(index, lazy=True))  # a view: a memory-mapped set stays on disk
            dropped += int((~keep).sum())
    unmatched = len(names) - dropped
    notes = [f"--exclude {path}: {dropped:,} training and validation images left out"
             + (f"; {unmatched:,} listed names are not training or validation images of this data set" if unmatched
                else "") + "."]
    return notes
