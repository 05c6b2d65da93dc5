"""The cases of the bad-input matrix (issue 13), each built in a temporary folder: tools/bad_input_matrix.py runs them.

A case is a function of its temporary folder returning the `imagefit` arguments: {"args": [...], and optionally
"command" (default train), "plain" (no common tiny settings), "limit" (a file-size limit in bytes, as a full
disk), "after" (a function saying what else was seen: a payload that ran or not, a decoded pixel)}. The files
are made as the tests make them (tests/test_bad_input.py, test_folder.py, test_cli.py, test_atomic.py).
"""
from __future__ import annotations

import io
import json
import os
import resource
import signal
import struct
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

import numpy as np
import torch
import yaml
from PIL import Image

# tiny settings: one epoch on 8 px images; no audit (seconds each, and not what is observed here)
FAST = ["--no-progress", "--precision", "32", "--epochs", "1", "--batch-size", "16", "--image-size", "8", "--no-audit"]


def common(tmp: Path) -> list:
    return ["--runs-dir", tmp / "runs", "--cache-dir", tmp / "cache", "--data-dir", tmp / "data"]


def imagefit(args: list, cwd: Path, limit: int | None = None) -> subprocess.CompletedProcess:
    def file_size_limit():  # `ulimit -f`: a write past the limit fails with EFBIG, as on a full disk
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return subprocess.run([sys.executable, "-m", "imagefit.cli", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=900, preexec_fn=file_size_limit if limit else None)


# ---- images ---------------------------------------------------------------------------------------------------
def photos(root: Path, classes=("cat", "dog"), n=6) -> Path:
    for k, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.new("RGB", (10, 10), (200 * (k == 0), 5 * i, 200 * (k == 1))).save(root / name / f"{i}.png")
    return root


def noise(size=(40, 40), seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)


def encoded(fmt: str, size=(40, 40)) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(noise(size)).save(buf, fmt)
    return buf.getvalue()


def bomb_png(width=40_000, height=40_000) -> bytes:
    """A tiny PNG whose header declares width x height pixels (over Pillow's bomb limit), CRC fixed."""
    data = bytearray(encoded("PNG", (4, 4)))
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def with_file(name: str, write, show=None) -> callable:
    """A case: two good classes and one more file, `name`, written by `write(path)`; `show(pixels)` says
    what the file was decoded to (its 8x8 RGB image, read from the decode cache the run wrote)."""
    def case(tmp: Path):
        root = photos(tmp / "photos")
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        write(path)
        return {"args": ["--dataset", root], "after": (lambda: shown(tmp, name, show)) if show else None}
    return case


def shown(tmp: Path, name: str, show) -> str:
    for meta_path in (tmp / "cache").glob("*/meta.json"):
        meta = json.loads(meta_path.read_text())
        for split, files in meta["files"].items():
            if name in files:
                pixels = np.load(meta_path.parent / f"{split}_images.npy")[files.index(name)]
                return f"{name} decoded as {show(pixels)}"
    return f"{name} not found in the decode cache"


def centre(pixels: np.ndarray) -> str:
    return f"RGB, centre pixel {tuple(int(v) for v in pixels[:, 4, 4])}"


def upright(pixels: np.ndarray) -> str:
    grey = pixels.mean(0)
    return (f"top rows mean {grey[:2].mean():.0f}, bottom rows {grey[-2:].mean():.0f} (stored sideways with its left "
            "half black: dark on top means turned upright, as a viewer shows it)")


def exif_rotated(path: Path) -> None:
    a = np.full((20, 40, 3), 255, np.uint8)
    a[:, :20] = 0  # stored 40 wide x 20 high, left half black
    im = Image.fromarray(a)
    exif = im.getexif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to view"
    im.save(path, exif=exif, quality=95)


def animated_gif(path: Path) -> None:
    frames = [Image.new("P", (8, 8), 0), Image.new("P", (8, 8), 1)]
    for f in frames:
        f.putpalette([0, 255, 0, 255, 0, 255] + [0] * 762)
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=50, loop=0)


def palette(path: Path) -> None:
    """Index 0 transparent (a 2-pixel border), index 1 blue (the middle)."""
    im = Image.new("P", (12, 12), 0)
    im.paste(1, (2, 2, 10, 10))
    im.putpalette([0, 0, 0, 0, 0, 200] + [0] * 762)
    im.save(path, transparency=0)


def centre_and_corner(pixels: np.ndarray) -> str:
    corner = tuple(int(v) for v in pixels[:, 0, 0])
    return f"{centre(pixels)}, corner pixel {corner} (the transparent border composited on white)"


def hidden_files(tmp: Path):
    root = photos(tmp / "photos")
    for hidden in (".DS_Store", "Thumbs.db", "._0.png", "__MACOSX/._1.png"):
        (root / "cat" / hidden).parent.mkdir(parents=True, exist_ok=True)
        (root / "cat" / hidden).write_bytes(b"junk")
    return {"args": ["--dataset", root]}


IMAGES = [
    ("truncated JPEG", with_file("cat/truncated.jpg", lambda p: p.write_bytes(encoded("JPEG")[:400]))),
    ("truncated PNG", with_file("cat/truncated.png", lambda p: p.write_bytes(encoded("PNG")[:200]))),
    ("corrupt JPEG (garbage after the marker)", with_file("dog/broken.jpg", lambda p: p.write_bytes(b"\xff\xd8\xff\xe0 not a jpeg"))),
    ("zero-byte file", with_file("dog/empty.png", lambda p: p.write_bytes(b""))),
    ("non-image file in a class folder (notes.txt)", with_file("dog/notes.txt", lambda p: p.write_text("a note"))),
    ("text file named like a photo (text.jpg)", with_file("dog/text.jpg", lambda p: p.write_text("a note"))),
    ("hidden files: .DS_Store, Thumbs.db, ._x, __MACOSX/", hidden_files),
    ("grayscale (L) JPEG, grey 120", with_file("cat/gray.jpg", lambda p: Image.new("L", (12, 12), 120).save(p), centre)),
    ("RGBA PNG, fully transparent red", with_file("cat/rgba.png", lambda p: Image.new("RGBA", (12, 12), (255, 0, 0, 0)).save(p),
                                                  centre)),
    ("palette PNG, blue with a transparent border", with_file("dog/palette.png", palette, centre_and_corner)),
    ("16-bit grayscale PNG, 1000 of 65535", with_file("cat/dark16.png", lambda p: Image.fromarray(
        np.full((12, 12), 1000, np.uint16)).save(p), centre)),
    ("32-bit float TIFF, 0.5", with_file("cat/float.tif", lambda p: Image.fromarray(np.full((12, 12), 0.5, np.float32)).save(p),
                                         centre)),
    ("CMYK JPEG, full magenta and yellow (red)", with_file("dog/cmyk.jpg", lambda p: Image.new(
        "CMYK", (12, 12), (0, 255, 255, 0)).save(p), centre)),
    ("EXIF-rotated photo (orientation 6)", with_file("cat/rotated.jpg", exif_rotated, upright)),
    ("animated GIF, green then magenta frames", with_file("dog/anim.gif", animated_gif, centre)),
    ("decompression bomb (PNG header 40000x40000)", with_file("dog/bomb.png", lambda p: p.write_bytes(bomb_png()))),
    ("1x1 image, blue", with_file("cat/tiny.png", lambda p: Image.new("RGB", (1, 1), (0, 0, 255)).save(p), centre)),
    ("very large image (6000x4000 PNG), yellow", with_file("dog/large.png", lambda p: Image.new(
        "RGB", (6000, 4000), (255, 255, 0)).save(p), centre)),
]


# ---- layout ---------------------------------------------------------------------------------------------------
def split_folders(train_classes, test_classes):
    def case(tmp: Path):
        photos(tmp / "set" / "train", train_classes)
        photos(tmp / "set" / "test", test_classes, n=2)
        return {"args": ["--dataset", tmp / "set"]}
    return case


def layout(build):
    def case(tmp: Path):
        root = tmp / "set"
        root.mkdir()
        build(root)
        return {"args": ["--dataset", root]}
    return case


def nested(root: Path) -> None:
    photos(root, n=3)
    deep = root / "cat" / "2024" / "juin"
    deep.mkdir(parents=True)
    for i in range(3):
        Image.new("RGB", (10, 10), (200, 9 * i, 0)).save(deep / f"a b {i}.png")


def zipped(members: dict[str, bytes], name="set.zip"):
    def case(tmp: Path):
        with zipfile.ZipFile(tmp / name, "w", zipfile.ZIP_DEFLATED) as zf:
            for member, data in members.items():
                zf.writestr(member, data)

        def escaped():  # `../escape/0.png` from anywhere in or near this case's folder, or `/abs/0.png`
            near = [p for p in tmp.parent.rglob("escape") if "cache" not in p.relative_to(tmp.parent).parts]
            outside = [p for p in (*near, tmp.parent.parent / "escape", Path("/abs/0.png")) if p.exists()]
            return f"WRITTEN OUTSIDE THE CACHE: {outside}" if outside else "nothing was written outside the cache"
        return {"args": ["--dataset", tmp / name], "after": escaped}
    return case


GOOD_MEMBERS = {f"{c}/{i}.png": encoded("PNG", (6, 6)) for c in ("cat", "dog") for i in range(6)}


def corrupt_member_zip(tmp: Path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for member, data in GOOD_MEMBERS.items():
            zf.writestr(member, data)
        zf.writestr("cat/corrupt.png", encoded("PNG", (64, 64)))
    raw = bytearray(buf.getvalue())
    with zipfile.ZipFile(io.BytesIO(bytes(raw))) as zf:
        info = zf.getinfo("cat/corrupt.png")
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    raw[start + 10:start + 60] = b"\xff" * 50  # a damaged deflate stream
    (tmp / "set.zip").write_bytes(bytes(raw))
    return {"args": ["--dataset", tmp / "set.zip"]}


def text_file(name: str, text: str, extra=()):
    def case(tmp: Path):
        (tmp / name).write_text(text)
        return {"args": ["--dataset", photos(tmp / "photos"), *extra, "--config", tmp / name]}
    return case


def cut_zip(tmp: Path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("cat/0.png", encoded("PNG", (6, 6)))
    (tmp / "cut.zip").write_bytes(buf.getvalue()[:-10])
    return {"args": ["--dataset", tmp / "cut.zip"]}


LAYOUT = [
    ("empty class folder (bird/)", layout(lambda r: (photos(r), (r / "bird").mkdir()))),
    ("a single class", layout(lambda r: photos(r, ("cat",)))),
    ("a test class absent from train (train: cat dog; test: cat cow)", split_folders(("cat", "dog"), ("cat", "cow"))),
    ("a train class absent from test (train: cat dog cow; test: cat dog)", split_folders(("cat", "dog", "cow"), ("cat", "dog"))),
    ("class names differing only in case (cat, Cat)", layout(lambda r: photos(r, ("cat", "Cat", "dog")))),
    ("unicode and spaces in names (chat noir é/a b.png, 犬/)", layout(lambda r: photos(r, ("chat noir é", "犬")))),
    ("nested subfolders (cat/2024/juin/*.png)", layout(nested)),
    ("zip with ../ and absolute member names", zipped({**GOOD_MEMBERS, "../escape/0.png": encoded("PNG", (6, 6)),
                                                       "/abs/0.png": encoded("PNG", (6, 6))})),
    ("zip with a corrupt deflate stream in one member", corrupt_member_zip),
    ("a zip that is not a zip (fake.zip)", lambda tmp: ((tmp / "fake.zip").write_bytes(b"this is not a zip"),
                                                        {"args": ["--dataset", tmp / "fake.zip"]})[1]),
    ("a zip cut short (damaged central directory)", cut_zip),
    ("a folder with no images", layout(lambda r: ((r / "cat").mkdir(), (r / "cat" / "notes.txt").write_text("x"),
                                                  (r / "dog").mkdir()))),
    ("a path that does not exist", lambda tmp: {"args": ["--dataset", tmp / "no" / "such" / "folder"]}),
]


# ---- configuration and command line ----------------------------------------------------------------------------
def trained_run(tmp: Path, name="done", dataset="digits") -> Path:
    """A finished run to refer to (setup of a case, not observed)."""
    proc = imagefit(["train", "--dataset", dataset, "--name", name, *common(tmp), *FAST], tmp)
    if proc.returncode != 0:
        raise RuntimeError(f"setup run failed: {proc.stderr[-2000:]}")
    return tmp / "runs" / name


def older_config(tmp: Path):
    """A config.yaml as an earlier imagefit wrote it: `strategy` meant the transfer strategy, and the keys
    added since (progressive resizing, the recipe's tricks, the audit, devices, loggers, ...) are absent."""
    from imagefit.config import TrainConfig

    values = TrainConfig(dataset=str(photos(tmp / "photos")), epochs=1, image_size=8, batch_size=16,
                         precision="32", progress=False, runs_dir=str(tmp / "runs"), cache_dir=str(tmp / "cache")).to_dict()
    for key in ("early_size", "early_fraction", "lookahead", "tta", "bias_lr_scale", "audit", "strict", "devices",
                "num_nodes", "strategy", "logger", "class_weights", "sampler", "recipe", "limit_train_batches"):
        values.pop(key, None)
    values["strategy"] = values.pop("transfer_strategy", None) or "fine-tune"
    (tmp / "old.yaml").write_text(yaml.safe_dump(values))
    return {"args": ["--config", tmp / "old.yaml", "--no-audit"], "plain": True}


CONFIG = [
    ("unknown data set", lambda tmp: {"args": ["--dataset", "imagenet-9000"]}),
    ("unknown model", lambda tmp: {"args": ["--dataset", "digits", "--model", "resnet-9000"]}),
    ("bad YAML", text_file("bad.yaml", "dataset: digits\nepochs: [1\n")),
    ("a config file that is a list, not a mapping", text_file("list.yaml", "- a list\n")),
    ("unknown config key (epoch:)", text_file("key.yaml", "epoch: 3\n")),
    ("a key no version reads (learning_rate:)", text_file("lr.yaml", "learning_rate: 0.01\n")),
    ("a key without a value (label_smoothing:)", text_file("empty.yaml", "label_smoothing:\n")),
    ("wrong type on the command line (--epochs three)", lambda tmp: {"args": ["--dataset", "digits", "--epochs", "three"]}),
    ("wrong type in a config file (lr: [1])", text_file("type.yaml", "lr: [1]\n")),
    ("missing config file", lambda tmp: {"args": ["--config", tmp / "missing.yaml"]}),
    ("zero epochs", lambda tmp: {"args": ["--dataset", "digits", "--epochs", "0"]}),
    ("negative epochs", lambda tmp: {"args": ["--dataset", "digits", "--epochs=-3"]}),
    ("zero batch size", lambda tmp: {"args": ["--dataset", "digits", "--batch-size", "0"]}),
    ("negative batch size", lambda tmp: {"args": ["--dataset", "digits", "--batch-size=-8"]}),
    ("zero time budget", lambda tmp: {"args": ["--dataset", "digits", "--time-budget", "0"]}),
    ("negative time budget", lambda tmp: {"args": ["--dataset", "digits", "--time-budget=-5m"]}),
    ("a batch larger than the data set (1000 for 12 images)",
     lambda tmp: {"args": ["--dataset", photos(tmp / "photos"), "--batch-size", "1000"]}),
    ("image size 0", lambda tmp: {"args": ["--dataset", "digits", "--image-size", "0"]}),
    ("bad --accelerator (tpu)", lambda tmp: {"args": ["--dataset", "digits", "--accelerator", "tpu"]}),
    ("bad --devices (0)", lambda tmp: {"args": ["--dataset", "digits", "--devices", "0"]}),
    ("missing --resume folder", lambda tmp: {"args": ["--resume", tmp / "runs" / "nope"], "plain": True}),
    ("--resume of a folder that is not a run", lambda tmp: {"args": ["--resume", photos(tmp / "photos")], "plain": True}),
    ("--resume of a finished run", lambda tmp: {"args": ["--resume", trained_run(tmp)], "plain": True}),
    ("--config of an older version's run (strategy: fine-tune, newer keys absent)", older_config),
]


# ---- faults and untrusted files -------------------------------------------------------------------------------
class Payload:
    """Pickled, it calls `touch marker` when unpickled: what an attacker's file would do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def ran(marker: Path):
    return lambda: "the payload RAN" if marker.exists() else "no code ran (the payload's marker file was not created)"


def pickle_weights(tmp: Path):
    torch.save({"conv_stem.weight": Payload(tmp / "pwned")}, tmp / "evil.pth")
    return {"args": ["--dataset", "digits", "--weights", tmp / "evil.pth"], "after": ran(tmp / "pwned")}


def pickle_checkpoint(tmp: Path):
    run = trained_run(tmp)
    (run / "metrics.json").unlink()  # as a run killed before it finished leaves it: resumable
    torch.save({"state_dict": Payload(tmp / "pwned"), "epoch": 0}, run / "checkpoints" / "last.ckpt")
    return {"args": ["--resume", run], "plain": True, "after": ran(tmp / "pwned")}


def pickle_in_cache(tmp: Path):
    trained_run(tmp, dataset=photos(tmp / "photos"))
    evil = np.empty(1, dtype=object)
    evil[0] = Payload(tmp / "pwned")
    for entry in (tmp / "cache").iterdir():
        np.save(entry / "train_images.npy", evil, allow_pickle=True)
    return {"args": ["--dataset", tmp / "photos", "--name", "again"], "after": ran(tmp / "pwned")}


def report_full(tmp: Path):
    return {"command": "report", "args": [trained_run(tmp)], "plain": True, "limit": 100_000}


def decode_cache_full(tmp: Path):
    root = tmp / "photos"
    for k, name in enumerate(("cat", "dog")):
        (root / name).mkdir(parents=True)
        for i in range(6):
            Image.fromarray(noise((64, 64), seed=10 * k + i)).save(root / name / f"{i}.png")
    return {"args": ["--dataset", root, "--image-size", "32"], "limit": 30_000}


def feature_cache_full(tmp: Path):
    return {"args": ["--dataset", photos(tmp / "photos"), "--pretrained", "--transfer-strategy", "linear-probe",
                     "--image-size", "32"], "limit": 30_000}


def trunk_cache_full(tmp: Path):
    return {"args": ["--dataset", photos(tmp / "photos"), "--pretrained", "--transfer-strategy", "partial",
                     "--trainable-blocks", "3", "--image-size", "64"], "limit": 30_000}


FAULTS = [
    ("NaN loss (--lr 1e30 --optimizer sgd)", lambda tmp: {"args": ["--dataset", "digits", "--lr", "1e30", "--optimizer", "sgd",
                                                                  "--batch-size", "256"]}),
    ("full disk while writing a checkpoint (file-size limit 1 MB)", lambda tmp: {"args": ["--dataset", "digits"], "limit": 1_000_000}),
    ("full disk while rewriting the report (imagefit report, limit 100 KB)", report_full),
    ("full disk while writing the decode cache (limit 30 KB)", decode_cache_full),
    ("full disk while writing the linear probe's feature cache (limit 30 KB)", feature_cache_full),
    ("full disk while writing partial fine-tuning's trunk cache (limit 30 KB)", trunk_cache_full),
    ("a pickle with a payload as --weights", pickle_weights),
    ("a pickle with a payload as the checkpoint of --resume", pickle_checkpoint),
    ("a pickle with a payload planted in the decode cache", pickle_in_cache),
]

def label_file(rows: list[str], header="image,label", name="labels.csv", extra=()):
    """A flat folder of images (cat_0.png ... dog_5.png, as Kaggle keeps them) and a label file naming them."""
    def case(tmp: Path):
        images = tmp / "set" / "images"
        images.mkdir(parents=True)
        for k, cls in enumerate(("cat", "dog")):
            for i in range(6):
                Image.new("RGB", (10, 10), (200 * (k == 0), 5 * i, 200 * (k == 1))).save(images / f"{cls}_{i}.png")
        good = [f"images/{c}_{i}.png,{c}" for c in ("cat", "dog") for i in range(6)]
        table = tmp / "set" / name
        table.write_text("\n".join(([header] if header else []) + good + rows) + "\n")
        return {"args": ["--dataset", table, *extra]}
    return case


LABELS = [
    ("a row naming a missing file", label_file(["images/gone.png,cat"])),
    ("a row without a label", label_file(["images/cat_0.png,"])),
    ("an unknown split name (holdout)", lambda tmp: {**label_file([])(tmp),
                                                     "args": ["--dataset", _with_split(tmp / "set" / "labels.csv", "holdout")]}),
    ("a path escaping the folder (../secret.png, /etc/passwd)", label_file(["../secret.png,cat", "/etc/passwd,dog"])),
    ("the same image twice, with another label", label_file(["images/cat_1.png,dog"])),
    ("an id without its extension, two files of that name", lambda tmp: _twin(label_file(["images/cat_2,cat"])(tmp), tmp)),
    ("numeric labels (0, 1)", lambda tmp: _numeric(label_file([])(tmp), tmp)),
    ("an empty table", lambda tmp: _rewrite(label_file([])(tmp), tmp, "")),
    ("a header but no rows", lambda tmp: _rewrite(label_file([])(tmp), tmp, "image,label\n")),
    ("a header-less file", label_file([], header=None)),
    ("--label-column naming no column", label_file([], extra=("--label-column", "kind"))),
    ("--images naming no folder", label_file([], extra=("--images", "nowhere"))),
    ("--image-column with a class folder", lambda tmp: {"args": ["--dataset", photos(tmp / "photos"), "--image-column", "x"]}),
]


def _with_split(table: Path, split: str) -> Path:
    lines = table.read_text().splitlines()
    table.write_text("\n".join([lines[0] + ",split"] + [f"{row},{split if i == 1 else 'train'}" for i, row in
                                                         enumerate(lines[1:], start=1)]) + "\n")
    return table


def _twin(spec: dict, tmp: Path) -> dict:
    (tmp / "set" / "images" / "cat_2.jpg").write_bytes(encoded("JPEG", (10, 10)))
    return spec


def _numeric(spec: dict, tmp: Path) -> dict:
    table = tmp / "set" / "labels.csv"
    table.write_text(table.read_text().replace(",cat", ",0").replace(",dog", ",1"))
    return spec


def _rewrite(spec: dict, tmp: Path, text: str) -> dict:
    (tmp / "set" / "labels.csv").write_text(text)
    return spec


GROUPS = [("Images inside a data set", IMAGES), ("Layout of a folder or zip", LAYOUT), ("Label files", LABELS),
          ("Configuration and command line", CONFIG), ("Faults and untrusted files", FAULTS)]
