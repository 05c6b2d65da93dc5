"""Exported models on this CPU: file size, test accuracy, batch-1 latency and batch-64 throughput per format.

    .venv/bin/python -m bench.export_speed RUN_DIR [RUN_DIR ...] [--work DIR]

For each run it writes every export `imagefit export` makes (ONNX and OpenVINO, fp32 and INT8 calibrated on the
run's validation images) and runs each, with PyTorch as the run folder loads it (fp32, and bf16 as `imagefit
predict` runs it by default on this machine), on the run's own test images (decoded once, the same uint8 tensor
for every row): test accuracy, agreement of the top class with fp32 PyTorch, the median latency of one image,
and images/s in batches of 64. Prints one markdown table per run.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch

from imagefit.export import export, file_size
from imagefit.inference import load
from imagefit.quantize import run_split

LATENCY_IMAGES = 100


def speed(predictor, images: torch.Tensor) -> tuple[torch.Tensor, float, float]:
    """(logits, median ms for one image, images/s at batch 64)."""
    with torch.no_grad():
        predictor.logits(images[:64])  # warm-up: the first call compiles or picks kernels
        predictor.logits(images[:1])
        times = []
        for i in range(min(LATENCY_IMAGES, len(images))):
            start = time.perf_counter()
            predictor.logits(images[i:i + 1])
            times.append(time.perf_counter() - start)
        start = time.perf_counter()
        logits = torch.cat([predictor.logits(images[s:s + 64]).float().cpu() for s in range(0, len(images), 64)])
        seconds = time.perf_counter() - start
    return logits, statistics.median(times) * 1000, len(images) / seconds


def bench_run(run: Path, work: Path) -> list[str]:
    images, labels = run_split(load(run, precision="32", device="cpu"), "test")
    rows = [("PyTorch fp32 (the run folder)", run, dict(precision="32"), None),
            ("PyTorch bf16 (the run folder; predict's default here)", run, dict(precision="bf16-mixed"), None)]
    for fmt, suffix in (("onnx", ".onnx"), ("openvino", ".xml")):
        for int8 in (False, True):
            path = export(run, fmt, work / f"{run.name}-{fmt}{'-int8' if int8 else ''}{suffix}", int8=int8)
            backends = ("onnxruntime", "openvino") if fmt == "onnx" else ("openvino",)
            for backend in backends:
                rows.append((f"{fmt} {'INT8' if int8 else 'fp32'}, {backend}", path, dict(backend=backend), path))
    out = [f"### {run.name}: {len(labels):,} test images of {images.shape[-1]} px; load {os.getloadavg()[0]:.2f}", "",
           "| model | file | test accuracy | same top class as fp32 | batch 1 latency | batch 64 images/s |",
           "|---|---|---|---|---|---|"]
    reference = None
    for label, path, options, file in rows:
        predictor = load(path, device="cpu", **options) if "precision" in options else load(path, **options)
        logits, latency, rate = speed(predictor, images)
        top = logits.argmax(1)
        reference = top if reference is None else reference
        size = f"{file_size(file) / 2**20:.2f} MiB" if file else "–"
        out.append(f"| {label} | {size} | {float((top == labels).double().mean()):.2%} | "
                   f"{float((top == reference).double().mean()):.1%} | {latency:.2f} ms | {rate:,.0f} |")
    return out + [""]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", type=Path, metavar="RUN_DIR")
    p.add_argument("--work", type=Path, help="where the exported files go (default: a temporary folder)")
    args = p.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="export-speed-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
        for run in args.runs:
            print("\n".join(bench_run(run.resolve(), work)))
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
