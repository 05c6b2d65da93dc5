"""Label noise: flip a share of a class-folder data set's training labels, then score `--find-label-issues`.

    .venv/bin/python -m bench.label_noise write --out /tmp/noise [--source ../shared/data/imagenette/imagenette-128.zip]
        [--fraction 0.05] [--seed 0]
    .venv/bin/python -m bench.label_noise score /tmp/noise runs/<run>/label_issues.csv

`write` lists the source's images (a zip or folder with train/<class>/ and test/<class>/) in two label files
beside each other, `clean.csv` and `noisy.csv` (`image,label,split`, paths inside the source: pass the source as
--images), where noisy.csv gives --fraction of the training images a different class drawn at random (seeded;
test is never touched), and `flipped.csv` lists those (file, true, given). `score` says how many flipped images
are among the first 5% (of the training images) of a run's label_issues.csv, and among all of it.
"""
from __future__ import annotations

import argparse
import csv
import sys
import zipfile
from pathlib import Path, PurePosixPath

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT.parent / "shared" / "data" / "imagenette" / "imagenette-128.zip"
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")


def listing(source: Path) -> list[tuple[str, str, str]]:
    """(path inside the source, class, split) of every image, sorted."""
    if source.suffix == ".zip":
        with zipfile.ZipFile(source) as z:
            names = [n for n in z.namelist() if PurePosixPath(n).suffix.lower() in IMAGE_EXTENSIONS]
    else:
        names = [p.relative_to(source).as_posix() for p in source.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS]
    out = []
    for n in sorted(names):
        parts = PurePosixPath(n).parts
        if len(parts) >= 3 and parts[-3] in ("train", "test"):
            out.append((n, parts[-2], parts[-3]))
    return out


def write(out: Path, source: Path, fraction: float, seed: int) -> None:
    rows = listing(source)
    classes = sorted({c for _, c, _ in rows})
    train = [i for i, (_, _, s) in enumerate(rows) if s == "train"]
    rng = np.random.default_rng(seed)
    flip = set(rng.choice(train, round(fraction * len(train)), replace=False).tolist())
    out.mkdir(parents=True, exist_ok=True)
    noisy, flipped = [], []
    for i, (name, c, split) in enumerate(rows):
        given = c
        if i in flip:
            given = classes[(classes.index(c) + 1 + int(rng.integers(len(classes) - 1))) % len(classes)]
            flipped.append((name, c, given))
        noisy.append((name, given, split))
    for file, table in (("clean.csv", rows), ("noisy.csv", noisy)):
        with (out / file).open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["image", "label", "split"])
            w.writerows(table)
    with (out / "flipped.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file", "true", "given"])
        w.writerows(flipped)
    print(f"{len(rows):,} images, {len(train):,} train; {len(flipped):,} training labels flipped ({fraction:.0%}, "
          f"seed {seed}): {out}/noisy.csv, clean.csv, flipped.csv")


def score(folder: Path, issues: Path) -> None:
    flipped = {r["file"] for r in csv.DictReader((folder / "flipped.csv").open())}
    train = sum(1 for r in csv.DictReader((folder / "noisy.csv").open()) if r["split"] == "train")
    ranked = [r["file"] for r in csv.DictReader(issues.open())]
    top = ranked[:round(0.05 * train)]
    hit_top, hit_all = sum(f in flipped for f in top), sum(f in flipped for f in ranked)
    print(f"{hit_top} of {len(flipped)} flipped images ({hit_top / len(flipped):.1%}) are among the first "
          f"{len(top)} rows (5% of {train:,} training images) of {issues}; {hit_all} ({hit_all / len(flipped):.1%}) "
          f"among all {len(ranked):,} rows, which are {hit_all / max(1, len(ranked)):.1%} flipped images.")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.label_noise", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    w = sub.add_parser("write")
    w.add_argument("--out", type=Path, required=True)
    w.add_argument("--source", type=Path, default=SOURCE)
    w.add_argument("--fraction", type=float, default=0.05)
    w.add_argument("--seed", type=int, default=0)
    s = sub.add_parser("score")
    s.add_argument("folder", type=Path)
    s.add_argument("issues", type=Path)
    args = p.parse_args(argv)
    if args.command == "write":
        write(args.out, args.source, args.fraction, args.seed)
    else:
        score(args.folder, args.issues)
    return 0


if __name__ == "__main__":
    sys.exit(main())
