"""Each stronger augmentation and the weights' average, with and without, at the epochs a time budget buys.

    .venv/bin/python -m bench.augmentations --out /tmp/aug -- --dataset ../shared/data/cifar10/cifar10-jpg.zip \\
        --recipe fast --model airbench93 --epochs 6 --tta flip

Everything after `--` is the base command (`imagefit train ...`); each variant adds its options to it and runs as
its own `imagefit train` process, one after the other. Fixed epochs, not a budget: accuracy at a fixed number of
steps does not depend on what else the machine runs, so the variants can be compared on a busy machine. The
epochs are those the planner gives the budget in question (bench/README.md B3: CIFAR-10-JPEG with 5 minutes is
airbench93 for 5.6 epochs); each variant's cost per step is printed beside it, from its own history.csv, so what it
would cost within a budget can be read off (a busy machine inflates all of them alike).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

VARIANTS = {
    "baseline": [],
    "ema": ["--ema"],
    "trivial": ["--augment", "trivial"],
    "randaugment": ["--augment", "randaugment"],
    "mixup": ["--mixup", "0.2"],
    "cutmix": ["--cutmix", "1.0"],
    "erasing": ["--random-erasing", "0.25"],
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    base = argv[argv.index("--") + 1:] if "--" in argv else []
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="the runs folder")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated, of: " + ", ".join(VARIANTS))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv[:argv.index("--")] if "--" in argv else argv)
    print("| variant | options | test accuracy | test loss | train seconds |\n|---|---|---|---|---|", flush=True)
    for name in args.variants.split(","):
        run = Path(args.out) / f"{name}-seed{args.seed}"
        if not (run / "metrics.json").is_file():
            cmd = [sys.executable, "-m", "imagefit.cli", "train", *base, *VARIANTS[name], "--seed", str(args.seed),
                   "--runs-dir", args.out, "--name", run.name, "--no-progress"]
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        m = json.loads((run / "metrics.json").read_text())
        print(f"| {name} | `{' '.join(VARIANTS[name]) or '–'}` | {m['test_accuracy']:.4f} | {m['test_loss']:.4f} | "
              f"{m['train_seconds']:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
