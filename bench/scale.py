"""Scale: imagefit on a generated set of up to 300,000 images, decode to training, with peak memory.

    python -m bench.scale --out /work/scale-data --sizes 30000,100000,300000

Generates the set once under <out>/sets/ (64 px JPEG files in 10 class folders of random smooth shapes on
gradients: JPEG sizes like small photos', near duplicates rare; and a label file over the same files), then
for each size runs the real `imagefit train` command in fresh processes:

  cold    the first run, empty cache, `--loader stream`: decode (images/s, with the decode processes it uses),
          the data audit, and training a fixed number of batches from the memory-mapped cache
  warm    the same command again: start-up with a cache hit (the folder's fingerprint included)
  memory  the same with `--loader memory` (cache warm): the in-memory loader's training images/s and memory
  labels  (the largest size only) the label file through `--dataset labels.csv --images DIR`, empty cache

Peak memory is the whole process tree's (the command and every process it starts), polled from
/proc/<pid>/smaps_rollup every 0.2 s: PSS (shared pages split between the processes that map them, so forked
workers are not counted twice) and its anonymous part (what the processes hold themselves; the rest is file
pages of the memory-mapped cache, which the kernel can drop). The cache entry's size is `du -sb`. The load
average (/proc/loadavg) is recorded before each command: the machine has 2 cores and is shared.
Writes <out>/scale.json and prints a markdown table (bench/README.md holds the measured one).
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

CLASSES = 10
SIDE = 64
QUALITY = 90
BATCHES = 12  # training batches per run (--limit-train-batches), batch 256: 3,072 images
BATCH = 256


# ---- the data set -------------------------------------------------------------------------------
def _image(i: int) -> bytes:
    """Image i: a colour gradient and 3-6 random shapes; its class (i % CLASSES) sets the shapes' kind and hue."""
    import io

    from PIL import Image, ImageDraw, ImageFilter

    rng = np.random.default_rng(i)
    label = i % CLASSES
    a, b = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    t = np.linspace(0, 1, SIDE)[:, None, None]
    grad = (a * (1 - t) + b * t).astype(np.uint8).repeat(SIDE, axis=1)
    if rng.random() < 0.5:
        grad = grad.transpose(1, 0, 2)
    im = Image.fromarray(np.ascontiguousarray(grad), "RGB")
    draw = ImageDraw.Draw(im)
    hue = np.array([(label * 97) % 256, (label * 53 + 80) % 256, (label * 31 + 160) % 256])
    for _ in range(rng.integers(3, 7)):
        x0, y0 = rng.integers(-8, SIDE - 8, 2)
        w, h = rng.integers(10, 40, 2)
        colour = tuple(int(c) for c in np.clip(hue + rng.integers(-60, 61, 3), 0, 255))
        box = [int(x0), int(y0), int(x0 + w), int(y0 + h)]
        kind = (label + rng.integers(0, 2)) % 3
        if kind == 0:
            draw.ellipse(box, fill=colour)
        elif kind == 1:
            draw.rectangle(box, fill=colour)
        else:
            draw.polygon([(box[0], box[3]), ((box[0] + box[2]) // 2, box[1]), (box[2], box[3])], fill=colour)
    im = im.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.3, 1.2))))
    noise = rng.normal(0, 6, (SIDE, SIDE, 3))
    im = Image.fromarray(np.clip(np.asarray(im) + noise, 0, 255).astype(np.uint8), "RGB")
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=QUALITY)
    return buf.getvalue()


def _rel(i: int) -> str:
    return f"c{i % CLASSES:02d}/{i:06d}.jpg"


def _write_range(args) -> int:
    root, start, stop = args
    for i in range(start, stop):
        path = Path(root) / _rel(i)
        if not path.exists():
            path.write_bytes(_image(i))
    return stop - start


def generate(out: Path, sizes: list[int], workers: int) -> dict:
    """<out>/sets/n<N>/ for each size (the smaller ones hard links to the largest one's first N files) and
    <out>/sets/labels-<N>.csv over the same files. Returns the generation's seconds and bytes."""
    sets = out / "sets"
    largest = max(sizes)
    full = sets / f"n{largest}"
    done = full / ".complete"
    started = time.perf_counter()
    if not done.exists():
        for c in range(CLASSES):
            (full / f"c{c:02d}").mkdir(parents=True, exist_ok=True)
        step = 2000
        tasks = [(str(full), s, min(s + step, largest)) for s in range(0, largest, step)]
        with mp.get_context("fork").Pool(workers) as pool:
            for k, _ in enumerate(pool.imap_unordered(_write_range, tasks), 1):
                if k % 20 == 0:
                    print(f"  generated {min(k * step, largest):,} of {largest:,}", flush=True)
        done.write_text("")
    seconds = time.perf_counter() - started
    for n in sizes:
        part = sets / f"n{n}"
        if n != largest and not (part / ".complete").exists():
            for c in range(CLASSES):
                (part / f"c{c:02d}").mkdir(parents=True, exist_ok=True)
            for i in range(n):
                target = part / _rel(i)
                if not target.exists():
                    os.link(full / _rel(i), target)
            (part / ".complete").write_text("")
        labels = sets / f"labels-{n}.csv"
        if not labels.exists():
            tmp = labels.with_suffix(".tmp")
            with tmp.open("w") as f:
                f.write("image,label\n")
                f.writelines(f"{_rel(i)},c{i % CLASSES:02d}\n" for i in range(n))
            tmp.rename(labels)
    size = int(subprocess.run(["du", "-sb", str(full)], capture_output=True, text=True).stdout.split()[0])
    return {"seconds": round(seconds, 1), "bytes": size, "images": largest}


# ---- measuring ----------------------------------------------------------------------------------
def _tree(root: int) -> list[int]:
    """root and every process descended from it, from /proc."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            parents.setdefault(ppid, []).append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += parents.get(pid, [])
    return out


def _memory(pids: list[int]) -> tuple[int, int]:
    """(PSS, anonymous PSS) in bytes, summed over pids."""
    pss = anon = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        pss += int(line.split()[1]) * 1024
                    elif line.startswith("Pss_Anon:"):
                        anon += int(line.split()[1]) * 1024
        except OSError:
            continue
    return pss, anon


def run(cmd: list[str], log: Path, env: dict | None = None) -> dict:
    """A command in a fresh process: its wall time, the tree's peak PSS and anonymous PSS, each stderr line
    with its time since the start."""
    loadavg = Path("/proc/loadavg").read_text().split()[:3]
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    peak = {"pss": 0, "anon": 0, "pss_at": 0.0, "anon_at": 0.0}  # and when (seconds from the start), to match the log
    lines: list[tuple[float, str]] = []

    def poll():
        while proc.poll() is None:
            pss, anon = _memory(_tree(proc.pid))
            now = round(time.perf_counter() - started, 1)
            if pss > peak["pss"]:
                peak["pss"], peak["pss_at"] = pss, now
            if anon > peak["anon"]:
                peak["anon"], peak["anon_at"] = anon, now
            time.sleep(0.2)

    watcher = threading.Thread(target=poll, daemon=True)
    watcher.start()
    for line in proc.stdout:
        lines.append((round(time.perf_counter() - started, 2), line.rstrip()))
    proc.wait()
    watcher.join()
    wall = time.perf_counter() - started
    log.write_text("\n".join(f"{t:8.2f} {line}" for t, line in lines) + "\n")
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}); see {log}")
    return {"wall": round(wall, 1), "peak_pss": peak["pss"], "peak_anon": peak["anon"], "peak_pss_at": peak["pss_at"],
            "peak_anon_at": peak["anon_at"], "loadavg": loadavg,
            "lines": lines}


def _seconds_in(lines, marker: str) -> float | None:
    """The figure before ' s' in the first line holding `marker` ('ready in 7.1 s')."""
    for _, line in lines:
        if marker in line:
            return float(line.split(marker, 1)[1].split()[0])
    return None


def train(out: Path, name: str, dataset: list[str], loader: str, cache: Path, src: Path | None = None) -> dict:
    runs = out / "runs"
    if (runs / name).exists():
        shutil.rmtree(runs / name)
    args = [*dataset, "--cache-dir", str(cache), "--data-dir", str(out / "data"), "--model", "seed-cnn",
            "--image-size", str(SIDE), "--epochs", "1", "--limit-train-batches", str(BATCHES), "--batch-size", str(BATCH),
            "--loader", loader, "--num-workers", "2", "--val-fraction", "0", "--test-fraction", "0.02", "--tta", "none"]
    cmd = [sys.executable, "-m", "imagefit.cli", "train", *args, "--runs-dir", str(runs), "--name", name, "--no-progress"]
    env = None
    if src is not None:  # another checkout's imagefit (the code before a change), same interpreter
        env = {**os.environ, "PYTHONPATH": str(src)}
    result = run(cmd, out / "logs" / f"{name}.log", env)
    metrics = json.loads((runs / name / "metrics.json").read_text())
    audit = metrics.get("data_audit") or {}
    return {
        "command": "imagefit train " + " ".join(a if not a.startswith("/") else Path(a).name for a in args),
        "wall": result["wall"], "peak_pss_gib": round(result["peak_pss"] / 2**30, 2),
        "peak_anon_gib": round(result["peak_anon"] / 2**30, 2), "peak_pss_at": result["peak_pss_at"],
        "peak_anon_at": result["peak_anon_at"], "loadavg": result["loadavg"],
        "data_seconds": _seconds_in(result["lines"], "ready in"), "audit_seconds": audit.get("seconds"),
        "near_limited": audit.get("near_limited"), "near_within": audit.get("near_within"),
        "exact_within": audit.get("exact_within"), "data_stage": metrics["time_breakdown"].get("decode"),
        "train_images_per_second": metrics["train_images_per_second"], "train_seconds": metrics["train_seconds"],
        "images": metrics["train_images"] + metrics["val_images"] + metrics["test_images"], "loader": metrics["loader"],
    }


def du(path: Path) -> int:
    return int(subprocess.run(["du", "-sb", str(path)], capture_output=True, text=True).stdout.split()[0])


def measure(out: Path, n: int, labels: bool, runs: set[str], tag: str = "", src: Path | None = None) -> dict:
    folder = out / "sets" / f"n{n}"
    cache = out / "cache" / f"n{n}"
    if cache.exists():
        shutil.rmtree(cache)
    (out / "logs").mkdir(parents=True, exist_ok=True)
    row = {"images": n}
    if "cold" in runs:
        row["cold"] = train(out, f"{tag}n{n}-cold", ["--dataset", str(folder)], "stream", cache, src)
        row["cache_bytes"] = du(cache)
    if "warm" in runs:
        row["warm"] = train(out, f"{tag}n{n}-warm", ["--dataset", str(folder)], "stream", cache, src)
    if "memory" in runs:
        row["memory"] = train(out, f"{tag}n{n}-memory", ["--dataset", str(folder)], "memory", cache, src)
    if labels and "labels" in runs:
        lcache = out / "cache" / f"labels-{n}"
        if lcache.exists():
            shutil.rmtree(lcache)
        row["labels"] = train(out, f"{tag}labels-{n}-cold", ["--dataset", str(out / "sets" / f"labels-{n}.csv"),
                                                             "--images", str(folder)], "stream", lcache, src)
        row["labels_cache_bytes"] = du(lcache)
    for c in (cache, out / "cache" / f"labels-{n}"):
        shutil.rmtree(c, ignore_errors=True)  # 300,000 images are 3.7 GB decoded: keep the disk for the next size
    return row


def table(rows: list[dict]) -> str:
    head = ("| images | decode (cold run) | audit | start-up, cache hit | training images/s, stream / memory | "
            "peak memory, stream run: PSS (anon) | peak memory, memory run: PSS (anon) | cache on disk |")
    lines = [head, "|" + "---|" * 8]
    for r in rows:
        c, w, m = r["cold"], r["warm"], r["memory"]
        lines.append(f"| {r['images']:,} | {c['data_seconds']:.1f} s ({r['images'] / c['data_seconds']:,.0f} images/s, 2 processes) "
                     f"| {c['audit_seconds']:.1f} s | {w['data_seconds']:.1f} s | {c['train_images_per_second']:.0f} / "
                     f"{m['train_images_per_second']:.0f} | {c['peak_pss_gib']:.2f} GiB ({c['peak_anon_gib']:.2f}) | "
                     f"{m['peak_pss_gib']:.2f} GiB ({m['peak_anon_gib']:.2f}) | {r['cache_bytes'] / 2**30:.2f} GiB |")
        if "labels" in r:
            lab = r["labels"]
            lines.append(f"| {r['images']:,}, label file | {lab['data_seconds']:.1f} s "
                         f"({r['images'] / lab['data_seconds']:,.0f} images/s) | {lab['audit_seconds']:.1f} s | | "
                         f"{lab['train_images_per_second']:.0f} / | {lab['peak_pss_gib']:.2f} GiB ({lab['peak_anon_gib']:.2f}) "
                         f"| | {r['labels_cache_bytes'] / 2**30:.2f} GiB |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="where the set, the caches and the runs go")
    parser.add_argument("--sizes", default="30000,100000,300000")
    parser.add_argument("--labels", default="largest", help="sizes also run through the label file: largest, all or none")
    parser.add_argument("--runs", default="cold,warm,memory,labels", help="which runs (default: all four)")
    parser.add_argument("--src", type=Path, help="run the imagefit in this src/ folder instead (PYTHONPATH): the "
                        "code before a change, e.g. `git archive COMMIT src | tar -x -C DIR`")
    parser.add_argument("--tag", default="", help="a prefix for the run names and the key in scale.json (e.g. before-)")
    args = parser.parse_args(argv)
    sizes = sorted(int(s) for s in args.sizes.split(","))
    out = args.out.resolve()
    saved = out / "scale.json"
    results = json.loads(saved.read_text()) if saved.is_file() else {}
    results["generate"] = generate(out, sizes, workers=os.cpu_count() or 2)
    print(f"set: {results['generate']}", flush=True)
    rows = results.setdefault(f"{args.tag}rows", {})
    for n in sizes:
        labels = args.labels == "all" or (args.labels == "largest" and n == max(sizes))
        print(f"measuring {n:,} images ...", flush=True)
        rows[str(n)] = measure(out, n, labels, set(args.runs.split(",")), args.tag, args.src)
        saved.write_text(json.dumps(results, indent=1))
        print(json.dumps(rows[str(n)], indent=1), flush=True)
    if {"cold", "warm", "memory"} <= set(args.runs.split(",")):
        print(table([rows[str(n)] for n in sizes]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
