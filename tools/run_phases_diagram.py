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
    ("prepare", "data/", "read the source,\ndecode once into\nthe cache, split,\naudit, loaders", "data"),
    ("decide", "plan/", "scratch or transfer,\nbudget plan\n(probe times the\ncandidates),\ntransfer plan", "Decisions"),
    ("build", "models/, runtime.py", "create the network,\nload pretrained\nweights; device\nand precision", "model"),
    ("fit", "train/", "Lightning module,\ncallbacks, history,\nloggers,\ncheckpoints", "weights"),
    ("evaluate", "evaluate/", "test predictions,\nmetrics, calibration,\nmistakes", "results"),
    ("write", "report/", "config.yaml,\nmetrics.json, plots,\nreport.md and\nreport.html", ""),
]


def draw(out: Path) -> None:
    plt.rcParams.update({"svg.fonttype": "path", "svg.hashsalt": "imagefit", "font.family": "DejaVu Sans"})
    width, height = 14.3, 3.4
    fig = plt.figure(figsize=(width, height))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, width)
    ax.set_ylim(0, height)
    ax.axis("off")
    box_w, box_h, gap, top = 1.95, 2.3, 0.48, 2.7
    for i, (phase, package, does, hands) in enumerate(PHASES):
        x = 0.1 + i * (box_w + gap)
        ax.add_patch(FancyBboxPatch((x, top - box_h), box_w, box_h, boxstyle="round,pad=0.02,rounding_size=0.08",
                                    facecolor="#eef3fb", edgecolor="#3b6ea8", linewidth=1.4))
        ax.text(x + box_w / 2, top - 0.25, f"{i + 1}. {phase}", ha="center", va="center", fontsize=11, weight="bold")
        ax.text(x + box_w / 2, top - 0.55, package, ha="center", va="center", fontsize=8, family="DejaVu Sans Mono",
                color="#3b6ea8")
        ax.text(x + box_w / 2, top - 1.4, does, ha="center", va="center", fontsize=8.5, linespacing=1.35)
        if hands:
            ax.add_patch(FancyArrowPatch((x + box_w + 0.02, top - box_h / 2), (x + box_w + gap - 0.02, top - box_h / 2),
                                         arrowstyle="-|>", mutation_scale=12, color="#444444", linewidth=1.2))
            ax.text(x + box_w + gap / 2, top - box_h / 2 + 0.17, hands, ha="center", va="bottom", fontsize=7,
                    color="#444444")
    ax.text(width / 2, 3.1, "One run: train/run.py calls the phases in order; each is a named function",
            ha="center", va="center", fontsize=11)
    ax.text(width / 2, 0.18, "cli.py is thin over the Python API (imagefit.train), which runs train/run.py; the start time is a parameter. "
            "Every config key records its source (user, recipe, planner, default) in metrics.json: config_sources.",
            ha="center", va="center", fontsize=8, color="#444444")
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
