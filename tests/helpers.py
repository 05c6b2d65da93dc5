"""What the tests share: `imagefit ...` in a real subprocess, as a user runs it, and writers of real data
files in each format imagefit reads (image folders, MNIST's IDX, CIFAR's pickled batches)."""
import contextlib
import gzip
import os
import pickle
import resource
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image


def run_imagefit(*args, cwd, check=True, env=None):
    env = {**os.environ, "PYTHONWARNINGS": "ignore", **(env or {})}
    proc = subprocess.run([sys.executable, "-m", "imagefit.cli", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def start_cli(*args, cwd=None, new_session=False):
    """`imagefit ...` started in the background (to interrupt it); stdout and stderr are pipes. `new_session`:
    its own process group, so that the processes it launches can be killed with it."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.Popen([sys.executable, "-m", "imagefit.cli", *map(str, args)], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=new_session)


def wait_for(condition, timeout=180):
    """Poll `condition` until it holds (a background run reached a point), or fail after `timeout` seconds."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError("timed out")


# ---- files in the formats imagefit reads, and what runs leave behind ----

def dump_pickle(path, obj):
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def cifar_batch(rng, n, label_keys):
    d = {b"batch_label": b"training batch", b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"filenames": [b"x.png"] * n}
    for key, k in label_keys.items():
        d[key] = rng.integers(0, k, n).tolist()
    return d


def idx_bytes(a: np.ndarray) -> bytes:
    return struct.pack(">BBBB", 0, 0, 0x08, a.ndim) + struct.pack(f">{a.ndim}I", *a.shape) + a.astype(np.uint8).tobytes()


def leftovers(folder):
    return sorted(p.name for p in folder.rglob("*.tmp"))


@contextlib.contextmanager
def file_size_limit(limit_bytes):
    """This process under `ulimit -f` for a moment (the soft limit; the hard one lets it be raised back):
    a write past `limit_bytes` fails with EFBIG, as on a full disk."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, handler)


def write_idx_set(folder, n_train=5, n_test=3, gz=False, seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    for name, a in arrays.items():
        if gz:
            (folder / f"{name}.gz").write_bytes(gzip.compress(idx_bytes(a)))
        else:
            (folder / name).write_bytes(idx_bytes(a))
    return arrays


def write_cifar10(root, n=4, seed=0):
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batches[name] = cifar_batch(rng, n, {b"labels": 10})
        dump_pickle(folder / name, batches[name])
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
    dump_pickle(folder / "batches.meta", {b"label_names": names, b"num_cases_per_batch": n, b"num_vis": 3072})
    return batches


def history_rows(run_dir):
    path = run_dir / "history.csv"
    return path.read_text().strip().splitlines()[1:] if path.exists() else []


def write_cifar100(root, per_class=2, test_per_class=1):
    """The official CIFAR-100 python release, shrunk: pickled dicts with fine and coarse labels, and meta."""
    rng = np.random.default_rng(0)
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)

    def split(n):
        fine = np.repeat(np.arange(100), n)
        data = rng.integers(0, 60, (len(fine), 3072), dtype=np.uint8)
        data += ((fine[:, None] * 37) % 190).astype(np.uint8)  # a class-dependent brightness to learn
        return {b"filenames": [b"x.png"] * len(fine), b"batch_label": b"batch", b"fine_labels": fine.tolist(),
                b"coarse_labels": (fine // 5).tolist(), b"data": data}

    for name, n in (("train", per_class), ("test", test_per_class)):
        with open(folder / name, "wb") as f:
            pickle.dump(split(n), f, protocol=2)
    with open(folder / "meta", "wb") as f:
        pickle.dump({b"fine_label_names": [f"class{i:02d}".encode() for i in range(100)],
                     b"coarse_label_names": [f"super{i}".encode() for i in range(20)]}, f, protocol=2)


def write_image_folder(root, classes=("red", "green", "blue"), per_class=12, side=18):
    """Real PNG and JPEG files of mixed sizes and modes, one color family per class."""
    rng = np.random.default_rng(0)
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 80, (side + i % 5, side + 4, 3)).astype(np.uint8)
            pixels[..., c] += 170
            image = Image.fromarray(pixels)
            if i % 4 == 1:
                image = image.convert("RGBA")
            image.save(root / name / f"{i}.{'jpg' if i % 3 == 0 and i % 4 != 1 else 'png'}")


# ---- what a budgeted run recorded ----

def assert_kept_to_its_plan(m: dict) -> None:
    """A budgeted run judged by what it recorded (metrics.json), not by this machine's clock, whose load swings
    step times by tens of percent: it ran its plan's steps, as re-planned on the way, or stopped at the plan's
    deadline and says so; its time breakdown accounts for its wall time; training took most of the time the plan
    left it (re-planning keeps filling the time when steps slow down), and ended near the plan's deadline. That
    the budget holds on a quiet machine is measured in bench/ (bench/README.md, the budget benchmarks)."""
    from imagefit.plan.budget import BudgetPlan

    plan = BudgetPlan.from_dict(m["budget_plan"])
    spent = m["time_breakdown"]
    assert plan.budget_seconds == m["time_budget_seconds"]
    assert m["steps_run"] == plan.steps or m["stopped_by_budget"], (m["steps_run"], plan.steps, plan.replans)
    assert abs(sum(spent.values()) - m["wall_seconds"]) <= 0.03 * m["wall_seconds"] + 0.3, (spent, m["wall_seconds"])
    fit_end = sum(v for k, v in spent.items() if k not in ("test", "write"))
    in_fit = spent["train"] + spent["validate"]
    capped = plan.steps == plan.max_steps or any("unused" in r for r in plan.reasons)
    assert capped or in_fit >= 0.6 * (plan.train_deadline - plan.spent_seconds), (spent, m["budget_plan"])
    assert fit_end <= plan.train_deadline + 0.1 * plan.budget_seconds, (spent, m["budget_plan"])


def wandb_records(path):
    """The protobuf records of a W&B run file (run-<id>.wandb): LevelDB's log format (32 KiB blocks of chunks
    with a 7-byte header: CRC, length, type) after W&B's own 7-byte file header. Read here because wandb no
    longer ships a reader, and an offline run's numbers are only in this file."""
    import struct

    from wandb.proto import wandb_internal_pb2

    data = open(path, "rb").read()
    assert data[:4] == b":W&B", data[:7]
    pos, block, parts = 7, 32768, b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        length, kind = struct.unpack("<HB", data[pos + 4:pos + 7])
        if kind == 0 and length == 0:
            break
        chunk, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        parts = chunk if kind in (1, 2) else parts + chunk  # 1 full, 2 first, 3 middle, 4 last
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(parts)
            yield record


def start_server(runs_dir, *args, log_dir):
    """`imagefit serve RUNS_DIR --port 0 ...` in a real subprocess: (process, base URL), once the page answers.
    Its stderr goes to log_dir/serve.err (a pipe nobody reads could fill and stall the server)."""
    import select
    import urllib.request

    err = open(log_dir / "serve.err", "w")
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.Popen([sys.executable, "-m", "imagefit.cli", "serve", str(runs_dir), "--port", "0", *map(str, args)],
                            env=env, stdout=subprocess.PIPE, stderr=err, text=True)
    err.close()
    deadline = time.time() + 120
    line = ""
    while "http://" not in line:
        ready, _, _ = select.select([proc.stdout], [], [], max(0.0, deadline - time.time()))
        line = proc.stdout.readline() if ready else ""
        if not ready or (not line and proc.poll() is not None):
            proc.kill()
            raise AssertionError(f"imagefit serve did not start: {(log_dir / 'serve.err').read_text()[-2000:]}")
    url = line.split("http://", 1)[1].split()[0]
    url = "http://" + url.rstrip("/")

    def answers():
        try:
            with urllib.request.urlopen(url + "/api/runs", timeout=5) as r:
                return r.status == 200
        except OSError:
            return False
    wait_for(answers, timeout=60)
    return proc, url


def stop(proc):
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def chromium_or_skip():
    """The system Chromium's path; a skip when there is none, a failure under IMAGEFIT_REQUIRE_CHROMIUM=1 (CI)."""
    import shutil

    import pytest

    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    if os.environ.get("IMAGEFIT_REQUIRE_CHROMIUM") == "1":
        pytest.fail("IMAGEFIT_REQUIRE_CHROMIUM=1 but no chromium is installed (apt-get install chromium)")
    pytest.skip("chromium is not installed")


# ---- multi-label data ----
MOSAIC_COLORS = {"red": (220, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 220), "yellow": (220, 220, 30)}


def write_mosaic_set(root, n_train=240, n_test=60, tile=8, separator=" ", seed=0):
    """A small multi-label set (bench/mosaics.py): 2x2 mosaics of colored noisy tiles, 1 to 4 colors each, as JPEG
    files and labels.csv (image,labels,split); returns the csv's path."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/ sits beside tests/
    from bench.mosaics import write_mosaics

    rng = np.random.default_rng(seed)

    def tiles(n):
        return {name: [np.clip(np.array(rgb) + rng.integers(-30, 30, (tile, tile, 3)), 0, 255).astype(np.uint8)
                       for _ in range(n)] for name, rgb in MOSAIC_COLORS.items()}
    return write_mosaics({"train": tiles(20), "test": tiles(8)}, root, {"train": n_train, "test": n_test}, tile, seed,
                         separator=separator)
