"""`imagefit evaluate` against `imagefit predict` on the same labelled images: images/s of each whole command.

    .venv/bin/python -m bench.evaluate_speed [--zip ../shared/data/cifar10/cifar10-jpg.zip] [--run RUN_DIR]

The test split of the zip (CIFAR-10-JPEG: 10,000 files in class folders) is unpacked into a folder once; both
commands read that folder. Without --run, one epoch of `--recipe fast` makes the model (its accuracy does not
matter here, its network does: the recipe's). Each command is timed whole, imports included, in a fresh process:
evaluate with an empty decode cache (it decodes every file, then scores), evaluate again (the decoded images come
from the cache), and predict (decodes every file each time, and writes one CSV row per image). Evaluate also writes
its report, confusion matrix, gallery of mistakes, reliability diagram and Grad-CAM, so part of its time is those.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

IMAGEFIT = [sys.executable, "-m", "imagefit.cli"]


def timed(args: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    subprocess.run(IMAGEFIT + args, cwd=cwd, check=True, stdout=subprocess.PIPE, text=True)
    return time.perf_counter() - start


def unpack_test(zip_path: Path, into: Path) -> int:
    with zipfile.ZipFile(zip_path) as z:
        names = [n for n in z.namelist() if n.startswith("test/") and not n.endswith("/")]
        z.extractall(into, names)
    return len(names)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--zip", type=Path, default=Path("../shared/data/cifar10/cifar10-jpg.zip"))
    p.add_argument("--run", type=Path, help="a finished run folder (default: one epoch of --recipe fast on --zip)")
    p.add_argument("--work", type=Path, help="scratch folder (default: a temporary one, removed at the end)")
    args = p.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="evaluate-speed-"))
    work.mkdir(parents=True, exist_ok=True)
    zip_path = args.zip.resolve()
    try:
        n = unpack_test(zip_path, work / "data")
        images = work / "data" / "test"
        run = args.run.resolve() if args.run else None
        if run is None:
            timed(["train", "--dataset", str(zip_path), "--recipe", "fast", "--epochs", "1", "--runs-dir",
                   str(work / "runs"), "--name", "model", "--cache-dir", str(work / "train-cache"), "--no-progress"], work)
            run = work / "runs" / "model"
        rows = []
        for label, cmd in (
            ("evaluate, empty decode cache", ["evaluate", str(run), "--dataset", str(images), "--out", str(work / "e1"),
                                              "--cache-dir", str(work / "cache")]),
            ("evaluate, decoded images cached", ["evaluate", str(run), "--dataset", str(images), "--out",
                                                 str(work / "e2"), "--cache-dir", str(work / "cache")]),
            ("predict", ["predict", str(run), str(images), "--csv", str(work / "predictions.csv")]),
        ):
            seconds = timed(cmd, work)
            rows.append((label, seconds, n / seconds))
        m = json.loads((work / "e2" / "metrics.json").read_text())
        print(f"{n:,} images ({images}), model {run} ({m['precision']} on {m['device']}); load {os.getloadavg()[0]:.2f}")
        print("| command | wall | images/s |\n|---|---|---|")
        for label, seconds, rate in rows:
            print(f"| {label} | {seconds:.1f} s | {rate:,.0f} |")
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
