"""The benchmark's smoke version: every part of `python -m bench.run` on digits with tiny budgets.

It checks that the benchmark runs end to end and that results.md reports what results.json measured;
the numbers themselves mean nothing at this size (bench/README.md has the real ones).
"""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def test_benchmark_smoke_writes_every_part(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "bench.run", "--smoke", "--out", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    assert set(results) == {"B1", "B2", "B3", "B4", "B5", "B6"}
    assert all(r["conv_peak_gflops"] > 0 for r in results["B5"]) and len(results["B6"]) == 4
    assert [r["run"] for r in results["B1"]][1].startswith("plain CNN, Adam (Keras 3")
    md = (tmp_path / "results.md").read_text()
    for part in results.values():
        for row in part:
            assert row["run"] in md
            if row.get("test_accuracy") is not None:
                assert f"{100 * row['test_accuracy']:.2f}%" in md
    for row in results["B4"][:2]:
        assert row["images_per_second"] > 0 and row["hand_loop_images_per_second"] > 0
        assert f"{100 * row['overhead']:.1f}%" in md
    peak = results["B5"][0]["peak_gflops"]
    assert peak > 0 and all(r["fraction_of_peak"] and 0 < r["fraction_of_peak"] for r in results["B5"])
    fast = results["B1"][2]
    assert len(fast["at"]) == 3 and all(0 <= a <= 1 for a in fast["at"])
    image = np.asarray(Image.open(tmp_path / "accuracy_vs_time.png").convert("L"), dtype=float)
    assert image.std() > 5  # a drawn plot, not a blank canvas


def test_benchmark_refuses_a_missing_data_set(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "bench.run", "--dataset", str(tmp_path / "nope.zip"), "--out", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "data set not found" in proc.stderr


def test_step_profile_quick_prints_every_row(tmp_path):
    """`python -m bench.step_profile --quick`: tiny batches, one repetition; the table's rows, not its numbers."""
    from bench.step_profile import CATEGORIES

    out = tmp_path / "step.md"
    proc = subprocess.run([sys.executable, "-m", "bench.step_profile", "--quick", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = proc.stdout.strip()
    assert out.read_text().strip() == table
    lines = table.splitlines()
    assert lines[1] == "|---|---|---|---|---|" and all(line.startswith("| ") for line in lines[:1] + lines[2:])
    assert all(line.count("|") == 6 for line in lines)  # the row's name and 4 columns
    assert "airbench93, 32 px" in lines[0] and "airbench94, 64 px" in lines[0]
    rows = [line.split(" | ")[0][2:] for line in lines[2:]]
    for row in ["bf16 matmul peak", "bf16 3x3 conv peak", "achieved conv GFLOP/s", "step wall time",
                *CATEGORIES, *[f"conv {n} in the step" for n in range(1, 7)], "Lightning's overhead"]:
        assert any(r.startswith(row) for r in rows), row
