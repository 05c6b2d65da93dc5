"""Draws docs/run-phases.svg: the phases of one `imagefit train` run, for docs/architecture.md.

    python tools/run_phases_diagram.py [--out docs/run-phases.svg]

Only matplotlib. Text is drawn as paths and the file carries no date, so the same script writes the same
file and the page needs nothing from a network.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

# (phase, package that does it, what it does, what it hands on)
PHASES = [
    ("prepare", "data/, plan/start.py", "decode once into the cache, split, audit; recipe auto: scratch or transfer",
     "data"),
    ("decide the network", "plan/probe.py, budget.py", "a budget from scratch: network, side, batch, TTA, steps",
     "Decisions"),
    ("build the model", "models/, runtime.py", "the network and its pretrained weights, on the training device",
     "model"),
    ("decide the transfer", "plan/transfer.py", "a budget with weights: strategy, depth and side, timed on the model",
     "Decisions"),
    ("build what trains", "train/frozen_inputs.py", "the whole net, or its head or top on cached activations",
     "Built"),
    ("decide the steps", "plan/probe.py", "batch, TTA and steps for what trains; no budget: the defaults",
     "Decisions"),
    ("fit", "train/fit.py", "Lightning: the module, callbacks, history, loggers, checkpoints", "trained weights"),
    ("evaluate", "train/fit.py, evaluate/", "the final (or best) model on test", "logits"),
    ("write", "train/outputs.py, report/", "model, metrics.json (with config_sources), plots, report.md/.html", ""),
]


def draw(out: Path) -> None:
    plt.rcParams.update({"svg.fonttype": "path", "svg.hashsalt": "imagefit", "font.family": "DejaVu Sans"})
    width, height = 8.6, 0.98 * len(PHASES) + 1.2
    fig = plt.figure(figsize=(width, height))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, width)
    ax.set_ylim(0, height)
    ax.axis("off")
    ax.text(width / 2, height - 0.3, "One run: train/run.py calls its phases in order", ha="center", va="center",
            fontsize=13)
    box_h, step, left, right, top = 0.62, 0.98, 0.15, width - 0.15, height - 0.65
    for i, (phase, package, does, hands) in enumerate(PHASES):
        y = top - i * step - box_h
        ax.add_patch(FancyBboxPatch((left, y), right - left, box_h, boxstyle="round,pad=0.02,rounding_size=0.08",
                                    facecolor="#eef3fb", edgecolor="#3b6ea8", linewidth=1.4))
        ax.text(left + 0.15, y + box_h * 0.66, f"{i + 1}. {phase}", ha="left", va="center", fontsize=12.5,
                weight="bold")
        ax.text(left + 0.15, y + box_h * 0.25, package, ha="left", va="center", fontsize=10,
                family="DejaVu Sans Mono", color="#3b6ea8")
        ax.text(left + 2.75, y + box_h / 2, does, ha="left", va="center", fontsize=10)
        if hands:
            x = left + 0.9
            ax.add_patch(FancyArrowPatch((x, y - 0.02), (x, y - (step - box_h) + 0.02), arrowstyle="-|>",
                                         mutation_scale=13, color="#444444", linewidth=1.3))
            ax.text(x + 0.15, y - (step - box_h) / 2, hands, ha="left", va="center", fontsize=9.5, color="#444444",
                    style="italic")
    ax.text(width / 2, 0.22, "cli.py is thin over the Python API; the start time is a parameter, not a global.",
            ha="center", va="center", fontsize=10, color="#444444")
    fig.savefig(out, format="svg", metadata={"Date": None})
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "run-phases.svg")
    args = parser.parse_args()
    draw(args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
