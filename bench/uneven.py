"""Uneven classes, as in a real photo collection: 800 down to 30 training images a class, and broken files.

    .venv/bin/python -m bench.uneven [--budget 3m] [--out runs/bench-uneven]

Builds `imagenette-uneven.zip` from ../shared/data/imagenette (training images per class falling
geometrically from 800 to 30; the test split whole, so macro F1 and balanced accuracy are honest; a truncated
JPEG, an empty file and a text note among the training files), then runs one study of three runs with the
same time budget and nothing else pinned: plain, `--class-weights balanced`, `--sampler balanced`. Prints
each run's test accuracy, balanced accuracy, macro F1 and wall time (the study's comparison has the rest).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT.parent / "shared" / "data" / "imagenette" / "imagenette-128.zip"
MOST, FEWEST = 800, 30


def counts(classes: int) -> list[int]:
    return [round(MOST * (FEWEST / MOST) ** (i / (classes - 1))) for i in range(classes)]


def build(out: Path) -> Path:
    target = out / "imagenette-uneven.zip"
    if target.is_file():
        return target
    with zipfile.ZipFile(SOURCE) as src:
        names = sorted(n for n in src.namelist() if n.lower().endswith((".jpeg", ".jpg", ".png")))
        classes = sorted({n.split("/")[1] for n in names})
        keep = dict(zip(classes, counts(len(classes))))
        taken: dict[str, int] = {}
        tmp = target.with_suffix(".tmp")
        with zipfile.ZipFile(tmp, "w") as dst:
            for name in names:
                split, cls = name.split("/")[:2]
                if split == "train":
                    if taken.get(cls, 0) >= keep[cls]:
                        continue
                    taken[cls] = taken.get(cls, 0) + 1
                dst.writestr(name, src.read(name))
            first = next(n for n in names if n.startswith("train/"))
            dst.writestr(f"train/{classes[0]}/truncated.jpg", src.read(first)[:300])
            dst.writestr(f"train/{classes[1]}/empty.jpg", b"")
            dst.writestr(f"train/{classes[2]}/notes.jpg", b"photographed on a rainy day\n")
        tmp.rename(target)
    return target


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", default="3m")
    parser.add_argument("--out", default=str(ROOT / "runs" / "bench-uneven"))
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = build(out)
    study = out / "uneven.yaml"
    study.write_text(json.dumps({
        "name": "uneven", "defaults": {"dataset": str(data), "time_budget": args.budget},
        "runs": [{"name": "plain"}, {"name": "class-weights", "class_weights": "balanced"},
                 {"name": "sampler", "sampler": "balanced"}]}))
    subprocess.run([sys.executable, "-m", "imagefit.cli", "study", str(study), "--runs-dir", str(out / "runs")],
                   check=True, cwd=ROOT)
    print(f"training images per class: {counts(10)}")
    print("| run | test accuracy | balanced accuracy | macro F1 | wall |\n|---|---|---|---|---|")
    for name in ("plain", "class-weights", "sampler"):
        m = json.loads((out / "runs" / "uneven" / name / "metrics.json").read_text())
        print(f"| {name} | {m['test_accuracy']:.2%} | {m['test_balanced_accuracy']:.2%} | {m['f1_macro']:.3f} | "
              f"{m['wall_seconds']:.0f} s |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
