"""The whole benchmark, one run after another, into `bench/results.md` and `bench/accuracy_vs_time.png`.

    python -m bench.run                      # everything, on ../shared/data/cifar10/cifar10-jpg.zip (about an hour)
    python -m bench.run --only B4,B5         # some parts
    python -m bench.run --smoke --out /tmp/b # every part on digits with tiny budgets (a test runs this)

B1  from scratch: the plain CNN with Adam (imagefit), the same CNN in Keras 3 (torch backend), and
    imagefit `--recipe fast`; accuracy reached at 2, 5 and 10 minutes of wall time.
B2  transfer with the offline ImageNet EfficientNet-Lite0: linear probe, fine-tune and the planner's choice at 5, 10, 15 min.
B3  precision: the fast recipe in fp32 and in bf16, everything else equal.
B4  loop overhead: imagefit's training images/s against a hand-written PyTorch loop (`bench.hand_loop`),
    same model, batch, optimizer, augmentation and precision; and torch.compile.
B5  throughput as a fraction of this machine's bf16 matmul and 3x3-convolution peaks, measured in the same run.
B6  larger photos from scratch (Imagenette, 10 classes at 128 px): `--recipe fast --time-budget {5,10,15}m`
    as typed, beside the recipe's fixed settings (airbench94, batch 1024, full size, 6-view TTA) in 10 minutes.

Every imagefit run is the real command (`python -m imagefit.cli train ...`) in its own process, and its
wall time is that whole command, imports included. Runs go to `<out>/out/`; nothing else is written.
Parts run one after another, never side by side: two runs sharing 2 cores would halve each other.
"""
from __future__ import annotations

import argparse
import csv
import json
import platform
import shutil
import statistics
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = HERE.parent.parent / "shared" / "data" / "cifar10" / "cifar10-jpg.zip"
PHOTO_DATA = HERE.parent.parent / "shared" / "data" / "imagenette" / "imagenette-128.zip"
MINUTES = (2, 5, 10)


class Bench:
    def __init__(self, out: Path, dataset: str, smoke: bool, repeats: int):
        self.out, self.runs = out, out / "out"
        self.dataset, self.smoke, self.repeats = dataset, smoke, repeats
        self.runs.mkdir(parents=True, exist_ok=True)
        saved = out / "results.json"  # parts measured by earlier invocations (`--only`) are kept
        self.results: dict[str, list[dict]] = json.loads(saved.read_text()) if saved.is_file() else {}

    # ---- running things ------------------------------------------------------------------------
    def imagefit(self, name: str, *args: str, dataset: str | None = None) -> dict:
        """`imagefit train` in a fresh process; its metrics.json and history.csv, and the command's wall time."""
        run_dir = self.runs / name
        if run_dir.exists():
            shutil.rmtree(run_dir)
        cmd = [sys.executable, "-m", "imagefit.cli", "train", "--dataset", dataset or self.dataset, *args,
               "--runs-dir", str(self.runs), "--name", name, "--no-progress"]
        started = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.perf_counter() - started
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
        metrics = json.loads((run_dir / "metrics.json").read_text())
        with (run_dir / "history.csv").open() as f:
            history = list(csv.DictReader(f))
        offset = wall - metrics["wall_seconds"]  # imports and start-up before the run's own clock
        curve, elapsed = [], offset
        for row in history:
            elapsed += float(row["seconds"])
            if row["val_acc"]:
                curve.append((round(elapsed, 1), float(row["val_acc"])))
        return {"command": "imagefit train " + " ".join(args), "wall_seconds": round(wall, 1), "curve": curve,
                "metrics": metrics, "epochs_run": metrics["epochs_run"], "test_accuracy": metrics["test_accuracy"],
                "test_loss": metrics["test_loss"], "precision": metrics["precision"],
                "images_per_second": metrics["train_images_per_second"]}

    def script(self, module: str, *args: str) -> dict:
        cmd = [sys.executable, "-m", module, "--dataset", self.dataset, *args]
        started = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=HERE.parent)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        result["command"] = f"python -m {module} " + " ".join(args)
        result["command_wall_seconds"] = round(time.perf_counter() - started, 1)
        return result

    def record(self, part: str, row: dict) -> dict:
        row["measured"] = str(date.today())
        self.results.setdefault(part, []).append(row)
        print(f"{part} {row['run']}: " + ", ".join(f"{k} {row[k]}" for k in ("test_accuracy", "wall_seconds",
              "images_per_second") if row.get(k) is not None), flush=True)
        (self.out / "results.json").write_text(json.dumps(self.results, indent=1))
        return row

    # ---- the parts -----------------------------------------------------------------------------
    def b1(self) -> None:
        budgets = [8, 12, 16] if self.smoke else [60 * m for m in MINUTES]
        size = ["--image-size", "16"] if self.smoke else []
        plain = ["--model", "seed-cnn", "--optimizer", "adam", "--lr", "1e-3", "--batch-size", "128",
                 "--augment", "none", "--epochs", "100", "--time-budget", f"{budgets[-1]}s", *size]
        row = self.imagefit("b1-plain-cnn", *plain)
        self.record("B1", {"run": "plain CNN, Adam (imagefit)", **row,
                           "at": at_minutes(row["curve"], row["test_accuracy"], row["wall_seconds"], budgets)})
        keras = self.script("bench.keras_cnn", "--budget", str(budgets[-1]), *size)
        curve = [(h["elapsed"], h["val_acc"]) for h in keras["history"]]
        self.record("B1", {"run": f"plain CNN, Adam (Keras {keras['keras']}, {keras['backend']} backend)",
                           "command": keras["command"], "wall_seconds": keras["wall_seconds"], "curve": curve,
                           "epochs_run": keras["epochs_run"], "test_accuracy": keras["test_accuracy"],
                           "test_loss": keras["test_loss"], "precision": keras["dtype_policy"],
                           "at": at_minutes(curve, keras["test_accuracy"], keras["wall_seconds"], budgets)})
        fast = {}
        for budget in budgets:
            fast[budget] = self.imagefit(f"b1-fast-{budget}s", "--recipe", "fast", "--time-budget", f"{budget}s", *size)
        last = fast[budgets[-1]]
        self.record("B1", {"run": "imagefit --recipe fast", **last,
                           "command": last["command"].replace(f"{budgets[-1]}s", "{2m,5m,10m}"),
                           "curve": [(fast[b]["wall_seconds"], fast[b]["test_accuracy"]) for b in budgets],
                           "at": [fast[b]["test_accuracy"] for b in budgets],
                           "epochs_at": [fast[b]["epochs_run"] for b in budgets]})

    def b2(self) -> None:
        """Issue 11's table: a linear probe, a whole-network fine-tune and the planner's choice (partial at these
        budgets), each given a budget and nothing else (a pinned strategy's input side is chosen too)."""
        size = ["--image-size", "32"] if self.smoke else []
        for strategy in ("linear-probe", "fine-tune", None):
            for budget in ([30] if self.smoke else [300, 600, 900]):
                pinned = ["--transfer-strategy", strategy] if strategy else []
                row = self.imagefit(f"b2-{strategy or 'planned'}-{budget}s", "--pretrained", *pinned,
                                    "--time-budget", f"{budget}s", *size)
                m = row["metrics"]
                plan = m.get("transfer_plan") or {}
                depth = f", last {plan['trainable_blocks']} blocks" if plan.get("trainable_blocks") else ""
                typed = " ".join(["--pretrained", *pinned, "--time-budget", f"{budget // 60}m" if budget >= 60 else f"{budget}s"])
                self.record("B2", {"run": f"{typed}: {m.get('transfer_strategy')}{depth}, {m.get('input_size')} px", **row})

    def b3(self) -> None:
        limit = ["--epochs", "1", "--limit-train-batches", "1", "--image-size", "16", "--batch-size", "64"] if self.smoke \
            else ["--epochs", "4", "--limit-train-batches", "11"]
        for precision in ("bf16-mixed", "32"):
            row = self.imagefit(f"b3-fast-{precision}", "--recipe", "fast", "--precision", precision, *limit)
            self.record("B3", {"run": f"--recipe fast, {precision}", **row})

    def b4(self) -> None:
        cases = {
            "seed-cnn": (["--model", "seed-cnn", "--augment", "basic"], 2 if self.smoke else 60),
            "airbench": (["--recipe", "fast", "--tta", "none"], 2 if self.smoke else 12),
            # issue 11: a whole-network fine-tune of a pretrained net (CIFAR's 32 px upscaled to 128 in the model)
            "tf_efficientnet_lite0 fine-tune": (["--model", "tf_efficientnet_lite0", "--pretrained", "--transfer-strategy",
                                                 "fine-tune", "--batch-size", "64"], 2 if self.smoke else 20),
        }
        size = ["--image-size", "16"] if self.smoke else []
        for model, (args, batches) in cases.items():
            limit = ["--epochs", "2", "--limit-train-batches", str(batches)] + ([] if "--pretrained" in args else size)
            imagefit_rates, hand_rates = [], []
            for _ in range(self.repeats):  # alternate, so drifts of the machine hit both alike
                imagefit_rates.append(self.imagefit(f"b4-{model}", *args, *limit)["images_per_second"])
                hand_args = [a for a in args if a not in ("--tta", "none")] + limit
                hand_rates.append(self.script("bench.hand_loop", *hand_args)["train_images_per_second"])
            ours, theirs = statistics.median(imagefit_rates), statistics.median(hand_rates)
            self.record("B4", {"run": model, "images_per_second": ours, "hand_loop_images_per_second": theirs,
                               "overhead": round(1 - ours / theirs, 4), "samples": [imagefit_rates, hand_rates],
                               "command": f"imagefit train {' '.join(args + limit)} / python -m bench.hand_loop {' '.join(hand_args)}"})
        bare = hand_args[:]  # the last case's, as a bare timm loop runs it: depthwise convolutions left in bf16
        plain = self.script("bench.hand_loop", *bare, "--plain-depthwise")["train_images_per_second"]
        self.record("B4", {"run": "tf_efficientnet_lite0 fine-tune, bare loop (bf16 depthwise)",
                           "images_per_second": ours, "hand_loop_images_per_second": plain,
                           "overhead": round(1 - ours / plain, 4),
                           "command": f"python -m bench.hand_loop {' '.join(bare)} --plain-depthwise"})
        if self.smoke:  # compiling takes a minute or more: not for a smoke test
            return
        compiled = self.imagefit("b4-airbench-compile", *cases["airbench"][0], "--compile", "--epochs", "2",
                                 "--limit-train-batches", str(cases["airbench"][1]))
        self.record("B4", {"run": "airbench with --compile", "images_per_second": compiled["images_per_second"],
                           "wall_seconds": compiled["wall_seconds"], "command": compiled["command"]})

    def b6(self) -> None:
        dataset = self.dataset if self.smoke else str(PHOTO_DATA)
        budgets = ["10s", "15s"] if self.smoke else ["5m", "10m", "15m"]
        for budget in budgets:
            row = self.imagefit(f"b6-planned-{budget}", "--recipe", "fast", "--time-budget", budget, dataset=dataset)
            plan = row["metrics"].get("budget_plan") or {}
            self.record("B6", {"run": f"--recipe fast --time-budget {budget} (the planner's choice)", **row,
                               "plan": plan.get("model") and f"{plan['model']}, {plan.get('early_size') or '-'}/"
                               f"{plan['image_size']} px, batch {plan['batch_size']}, {plan['epochs']:.1f} epochs, TTA {plan['tta']}"})
        for budget in (budgets[:1] if self.smoke else ["5m", "15m"]):  # nothing pinned: the start is the planner's too
            row = self.imagefit(f"b6-auto-{budget}", "--time-budget", budget, dataset=dataset)
            notes = row["metrics"].get("data_notes", [])
            start = "ImageNet transfer" if any(n.startswith("Start: ImageNet") for n in notes) else "from scratch"
            plan = row["metrics"].get("transfer_plan") or row["metrics"].get("budget_plan") or {}
            self.record("B6", {"run": f"--time-budget {budget}, nothing pinned (the planner's start)", **row,
                               "plan": f"{start}; {plan.get('strategy') or plan.get('model')}"})
        fixed = ["--recipe", "fast", "--model", "airbench", "--batch-size", "1024", "--tta", "flip-translate",
                 "--image-size", "16" if self.smoke else "128", "--early-size", "0", "--time-budget", budgets[1]]
        row = self.imagefit("b6-fixed", *fixed, dataset=dataset)
        self.record("B6", {"run": f"the recipe's fixed settings, {budgets[1]}", **row,
                           "plan": f"airbench at the full side throughout, batch 1024, {row['metrics'].get('budget_epochs')} epochs, "
                                   "TTA 6 views"})

    def b5(self) -> None:
        peak = bf16_matmul_peak(512 if self.smoke else 4096)
        conv_peak = bf16_conv_peak(64 if self.smoke else 256)
        rows = {r["run"]: r for r in self.results.get("B4", [])}
        for model in ("seed-cnn", "airbench"):
            flops = train_flops_per_image(model, 16 if self.smoke else 32)
            rate = rows[model]["images_per_second"] if model in rows else None
            achieved = flops * rate / 1e9 if rate else None
            self.record("B5", {"run": model, "train_gflops_per_image": round(flops / 1e9, 4), "images_per_second": rate,
                               "achieved_gflops": round(achieved, 1) if achieved else None, "peak_gflops": round(peak, 1),
                               "fraction_of_peak": round(achieved / peak, 3) if achieved else None,
                               "conv_peak_gflops": round(conv_peak, 1),
                               "fraction_of_conv_peak": round(achieved / conv_peak, 3) if achieved else None,
                               "command": "python -m bench.run --only B4,B5"})

    def run(self, parts: list[str]) -> None:
        for part in parts:
            self.results[part] = []
            getattr(self, part.lower())()
        write_results(self)


# ---- measurements that need no training run ---------------------------------------------------
def bf16_matmul_peak(n: int = 4096, repeats: int = 5) -> float:
    """GFLOP/s of the best of `repeats` n x n bf16 matmuls: the ceiling any bf16 training here works under."""
    a, b = torch.randn(n, n, dtype=torch.bfloat16), torch.randn(n, n, dtype=torch.bfloat16)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2 * n**3 / best / 1e9


def bf16_conv_peak(channels: int = 256, side: int = 16, batch: int = 64, repeats: int = 5) -> float:
    """GFLOP/s of the best forward 3x3 bf16 convolution, channels-last, at airbench's widest layer shape."""
    conv = torch.nn.Conv2d(channels, channels, 3, padding=1, bias=False).to(torch.bfloat16).to(memory_format=torch.channels_last)
    x = torch.randn(batch, channels, side, side, dtype=torch.bfloat16).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        conv(x)
        best = min(_timed(lambda: conv(x)) for _ in range(repeats))
    return 2 * batch * side * side * channels * channels * 9 / best / 1e9


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def train_flops_per_image(model_name: str, side: int) -> float:
    """Forward and backward FLOPs of one 32x32 image, counted by torch's FlopCounterMode."""
    from torch.utils.flop_counter import FlopCounterMode

    from imagefit.models import create_model

    model = create_model(model_name, 10, 3, side).train()
    x = torch.randint(0, 255, (8, 3, side, side), dtype=torch.uint8)
    with FlopCounterMode(display=False) as counter:
        model(x).sum().backward()
    return counter.get_total_flops() / len(x)


def at_minutes(curve: list[tuple[float, float]], final: float, wall: float, budgets: list[int]) -> list:
    """The validation accuracy of the last epoch finished by each budget; the test accuracy at the end."""
    out = []
    for budget in budgets:
        if wall <= budget * 1.05:
            out.append(final)
            continue
        done = [acc for t, acc in curve if t <= budget]
        out.append(done[-1] if done else None)
    return out


# ---- writing ------------------------------------------------------------------------------------
def machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    from imagefit.runtime import cpu_has_native_bf16

    import lightning
    import timm

    versions = f"torch {torch.__version__}, Lightning {lightning.__version__}, timm {timm.__version__}"
    try:
        import keras

        versions += f", Keras {keras.__version__}"
    except ImportError:
        pass
    return (f"{cpu}, {torch.get_num_threads()} threads, native bf16: {'yes' if cpu_has_native_bf16() else 'no'}; "
            f"Python {platform.python_version()}, {versions}")


def pct(x) -> str:
    return "-" if x is None else f"{100 * x:.2f}%"


def write_results(bench: Bench) -> None:
    r = bench.results
    lines = ["# Benchmark results", "",
             f"Measured {date.today()} by `python -m bench.run{' --smoke' if bench.smoke else ''}` on: {machine()}.",
             f"Data: `{bench.dataset}`. Wall time is the whole command, imports included; runs ran one at a time.", ""]
    if "B1" in r:
        lines += ["## B1: from scratch, accuracy reached at 2, 5 and 10 minutes", "",
                  "The plain CNNs train once under the longest budget; at the shorter budgets their column gives the "
                  "validation accuracy of the last epoch finished by then. `--recipe fast` runs once per budget "
                  "(its schedule is fitted to each) and every column is a test accuracy.", "",
                  "| run | " + " | ".join(f"{m} min" for m in MINUTES) + " | test accuracy at the end | epochs | test loss | wall | "
                  "train images/s | precision | command |",
                  "|---|" + "---|" * (len(MINUTES) + 7)]
        for row in r["B1"]:
            lines.append(f"| {row['run']} | " + " | ".join(pct(a) for a in row["at"]) + f" | {pct(row['test_accuracy'])}"
                         f" | {row.get('epochs_at') or row['epochs_run']} | {row['test_loss']:.3f} | {row['wall_seconds']:.0f} s"
                         f" | {row.get('images_per_second') or '-'} | {row['precision']} | `{row['command']}` |")
        lines.append("")
    for part, title in (("B2", "B2: transfer learning (EfficientNet-Lite0, ImageNet weights, offline)"),
                        ("B3", "B3: precision, the same recipe in bf16 and fp32")):
        if part in r:
            lines += [f"## {title}", "", "| run | test accuracy | test loss | epochs | wall | train images/s | precision | command |",
                      "|---|---|---|---|---|---|---|---|"]
            for row in r[part]:
                lines.append(f"| {row['run']} | {pct(row['test_accuracy'])} | {row['test_loss']:.3f} | {row['epochs_run']} | "
                             f"{row['wall_seconds']:.0f} s | {row['images_per_second']} | {row['precision']} | `{row['command']}` |")
            lines.append("")
    if "B4" in r:
        lines += ["## B4: loop overhead against a hand-written PyTorch loop", "",
                  f"Training images/s over training batches only, median of {bench.repeats} alternating runs each.", "",
                  "| model | imagefit | hand-written loop | overhead | commands |", "|---|---|---|---|---|"]
        for row in r["B4"]:
            if "overhead" in row:
                lines.append(f"| {row['run']} | {row['images_per_second']} | {row['hand_loop_images_per_second']} | "
                             f"{100 * row['overhead']:.1f}% | `{row['command']}` |")
            else:
                lines.append(f"| {row['run']} | {row['images_per_second']} (compile time included; wall "
                             f"{row['wall_seconds']:.0f} s) | | | `{row['command']}` |")
        lines.append("")
    if "B5" in r:
        lines += ["## B5: throughput against the bf16 matmul peak", "",
                  "| model | training GFLOPs per image | imagefit images/s | achieved GFLOP/s | bf16 matmul peak GFLOP/s | "
                  "fraction | bf16 3x3 conv peak GFLOP/s | fraction |", "|---|---|---|---|---|---|---|---|"]
        for row in r["B5"]:
            lines.append(f"| {row['run']} | {row['train_gflops_per_image']} | {row['images_per_second'] or '-'} | "
                         f"{row['achieved_gflops'] or '-'} | {row['peak_gflops']} | {pct(row['fraction_of_peak'])} | "
                         f"{row.get('conv_peak_gflops', '-')} | {pct(row.get('fraction_of_conv_peak'))} |")
        lines.append("")
    if "B6" in r:
        lines += ["## B6: larger photos from scratch (Imagenette, 10 classes, 128 px)", "",
                  "| run | what ran | test accuracy | macro F1 | wall | budget used | command |", "|---|---|---|---|---|---|---|"]
        for row in r["B6"]:
            m = row["metrics"]
            budget = m.get("time_budget_seconds")
            lines.append(f"| {row['run']} | {row.get('plan', '')} | {pct(row['test_accuracy'])} | {m.get('f1_macro', 0):.3f} | "
                         f"{row['wall_seconds']:.0f} s | {row['wall_seconds'] / budget:.0%} | `{row['command']}` |"
                         if budget else f"| {row['run']} | | {pct(row['test_accuracy'])} | | {row['wall_seconds']:.0f} s | | |")
        lines.append("")
    (bench.out / "results.md").write_text("\n".join(lines))
    plot(bench)


def plot(bench: Bench) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for part in ("B1", "B2"):
        for row in bench.results.get(part, []):
            curve = row.get("curve") or []
            if curve:
                ts, accs = zip(*curve)
                ax.plot([t / 60 for t in ts], accs, marker="o", ms=3, label=f"{row['run']} (validation per epoch)"
                        if "fast" not in row["run"] else f"{row['run']} (test, one run per budget)")
            ax.scatter([row["wall_seconds"] / 60], [row["test_accuracy"]], marker="*", s=90, zorder=3)
    ax.set_xlabel("wall time (minutes)")
    ax.set_ylabel("accuracy")
    ax.set_title("Accuracy against wall time (stars: test accuracy at the end of each run)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(bench.out / "accuracy_vs_time.png", dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default=str(DEFAULT_DATA))
    p.add_argument("--out", type=Path, default=HERE)
    p.add_argument("--only", default="B1,B2,B3,B4,B5,B6")
    p.add_argument("--repeats", type=int, default=3, help="runs per B4 measurement (the median is reported)")
    p.add_argument("--smoke", action="store_true", help="digits and tiny budgets: checks the benchmark, measures nothing")
    args = p.parse_args(argv)
    if args.smoke and args.dataset == str(DEFAULT_DATA):
        args.dataset = "digits"
    if not args.smoke and not Path(args.dataset).exists():
        print(f"bench: error: data set not found: {args.dataset} (fix: pass --dataset PATH/cifar10-jpg.zip)", file=sys.stderr)
        return 2
    bench = Bench(args.out, args.dataset, args.smoke, 1 if args.smoke else args.repeats)
    bench.run([part.strip().upper() for part in args.only.split(",") if part.strip()])
    print(f"results: {args.out / 'results.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
