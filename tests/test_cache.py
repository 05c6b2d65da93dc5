import json

import numpy as np
import torch

from imagefit.data.cache import cached_source, entry_dir
from imagefit.data.types import ImageSet, SourceData


def _source(n=6):
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, 4, 4), dtype=torch.uint8, generator=g)
    labels = torch.arange(n, dtype=torch.int64) % 2
    return SourceData("toy", ["a", "b"], ImageSet(images, labels), test=ImageSet(images[:2].clone(), labels[:2].clone()), notes=["made by a test"])


class Counter:
    def __init__(self):
        self.calls = 0

    def __call__(self):
        self.calls += 1
        return _source()


def _same(a, b):
    assert a.name == b.name and a.class_names == b.class_names and a.notes == b.notes
    assert torch.equal(a.train.images, b.train.images) and torch.equal(a.train.labels, b.train.labels)
    assert (a.val is None) == (b.val is None)
    assert torch.equal(a.test.images, b.test.images) and torch.equal(a.test.labels, b.test.labels)


def test_second_load_hits_cache(tmp_path):
    key = {"dataset": "toy", "image_size": 4, "format": 1}
    build = Counter()
    first = cached_source(tmp_path, key, build)
    second = cached_source(tmp_path, key, build)
    assert build.calls == 1
    _same(first, second)
    meta = json.loads((entry_dir(tmp_path, key) / "meta.json").read_text())
    assert meta["key"] == key and meta["sizes"] == {"train": 6, "test": 2}
    assert entry_dir(tmp_path, key).name.startswith("toy-")
    # a different key is a different entry
    cached_source(tmp_path, {**key, "image_size": 8}, build)
    assert build.calls == 2


def test_mmap_load_is_equal_and_file_backed(tmp_path):
    key = {"dataset": "toy"}
    built = cached_source(tmp_path, key, Counter(), mmap=True)
    again = cached_source(tmp_path, key, Counter(), mmap=True)
    _same(built, again)
    npy = str(entry_dir(tmp_path, key) / "train_images.npy")
    mapped = [line.split()[0] for line in open("/proc/self/maps") if line.rstrip().endswith(npy)]
    ptr = again.train.images.data_ptr()
    assert any(int(a, 16) <= ptr < int(b, 16) for a, b in (r.split("-") for r in mapped)), "not memory-mapped"
    again.train.images[0] = 0  # copy-on-write: the file must not change
    fresh = cached_source(tmp_path, key, Counter())
    assert torch.equal(fresh.train.images, _source().train.images)


def test_truncated_entry_is_rebuilt(tmp_path):
    key = {"dataset": "toy"}
    build = Counter()
    cached_source(tmp_path, key, build)
    npy = entry_dir(tmp_path, key) / "train_images.npy"
    npy.write_bytes(npy.read_bytes()[:100])
    for mmap in (False, True):
        _same(cached_source(tmp_path, key, build, mmap=mmap), _source())
    assert build.calls == 2  # rebuilt once, then served from the repaired entry
    assert np.load(npy).shape == (6, 3, 4, 4)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp or trash left behind


def test_lost_race_uses_winner(tmp_path):
    key = {"dataset": "toy"}

    def build_and_race():
        # another process finishes the same entry while we are still building
        cached_source(tmp_path, key, lambda: _source())
        return _source()

    out = cached_source(tmp_path, key, build_and_race)
    _same(out, _source())
    assert len(list(tmp_path.iterdir())) == 1


class Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return os.system, (f"touch {self.marker}",)


def test_a_pickle_planted_in_a_cache_entry_never_runs_and_the_entry_is_rebuilt(tmp_path):
    key = {"dataset": "toy"}
    build = Counter()
    cached_source(tmp_path / "cache", key, build)
    marker = tmp_path / "pwned"
    evil = np.empty(1, dtype=object)
    evil[0] = Payload(marker)
    for name in ("train_images.npy", "train_labels.npy"):
        np.save(entry_dir(tmp_path / "cache", key) / name, evil, allow_pickle=True)  # what an attacker could write
        for mmap in (False, True):
            _same(cached_source(tmp_path / "cache", key, build, mmap=mmap), _source())
        assert not marker.exists()
    assert build.calls == 3  # each planted entry was dropped and rebuilt, never unpickled


RACER = """
import sys, time
from pathlib import Path
from imagefit.data.sources import load_source
go = Path(sys.argv[3])
while not go.exists():
    time.sleep(0.01)
s = load_source(sys.argv[1], sys.argv[2] + "/data", sys.argv[2] + "/cache", 16)
print(len(s.train), int(s.train.images.sum()))
"""


def test_two_processes_filling_one_cache_entry_at_once_leave_one_valid_entry(tmp_path):
    import subprocess
    import sys

    from PIL import Image

    for c in range(2):
        (tmp_path / "photos" / f"c{c}").mkdir(parents=True)
        for i in range(150):
            Image.new("RGB", (40, 30), (c * 200, i, 255 - i)).save(tmp_path / "photos" / f"c{c}" / f"{i}.jpg")
    go = tmp_path / "go"
    racers = [subprocess.Popen([sys.executable, "-c", RACER, str(tmp_path / "photos"), str(tmp_path), str(go)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    go.touch()  # both start decoding at once
    outs = [p.communicate(timeout=300) for p in racers]
    assert all(p.returncode == 0 for p in racers), [o[1][-500:] for o in outs]
    assert outs[0][0] == outs[1][0] and outs[0][0].split()[0] == "300"  # both read the same data
    entries = [p for p in (tmp_path / "cache").iterdir()]
    assert len(entries) == 1 and not entries[0].name.startswith("."), entries  # one entry, no temp or trash left
    again = subprocess.run([sys.executable, "-c", RACER, str(tmp_path / "photos"), str(tmp_path), str(go)],
                           capture_output=True, text=True, timeout=300)
    assert again.stdout == outs[0][0]  # the entry left behind reads back whole


def test_a_full_cache_disk_costs_the_cache_not_the_run(tmp_path, caplog):
    from helpers import file_size_limit

    def big():
        g = torch.Generator().manual_seed(0)
        images = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8, generator=g)  # 24 KB of .npy
        return SourceData("toy", ["a", "b"], ImageSet(images, torch.arange(8) % 2))

    key = {"dataset": "toy"}
    with file_size_limit(10_000), caplog.at_level("WARNING", logger="imagefit"):
        source = cached_source(tmp_path / "cache", key, big)
    assert torch.equal(source.train.images, big().train.images)  # the run goes on with the decoded data
    note = source.notes[-1]
    assert note.startswith("decoded data not cached in") and "file-size limit was reached" in note, note
    assert note in caplog.text
    assert list((tmp_path / "cache").iterdir()) == []  # no entry, whole or half, and no temp folder
    again = cached_source(tmp_path / "cache", key, Counter())  # room again: decoded and cached as usual
    assert again.name == "toy" and entry_dir(tmp_path / "cache", key).is_dir()


def _photos(root, bad=True):
    from PIL import Image

    for split, per_class in (("train", 9), ("test", 3)):
        for c, colour in enumerate(((200, 30, 30), (30, 200, 30))):
            folder = root / split / f"c{c}"
            folder.mkdir(parents=True)
            for i in range(per_class):
                Image.new("RGB", (20 + i, 18), tuple(v + 5 * i for v in colour)).save(folder / f"{i}.{'png' if i % 2 else 'jpg'}")
    if bad:  # an unreadable file in the middle of each split: its row is squeezed out of the entry's file
        (root / "train" / "c0" / "4b.jpg").write_bytes(b"not an image")
        (root / "test" / "c1" / "0b.png").write_bytes(b"")
    return root


def _same_source(a, b):
    assert (a.name, a.class_names, a.notes, a.skipped, a.originals) == (b.name, b.class_names, b.notes, b.skipped, b.originals)
    for split in ("train", "val", "test"):
        x, y = getattr(a, split), getattr(b, split)
        assert (x is None) == (y is None)
        if x is not None:
            assert torch.equal(x.images, y.images) and torch.equal(x.labels, y.labels) and x.files == y.files


def test_a_folder_decodes_straight_into_the_cache_entry_and_reads_back_as_the_decode_in_memory(tmp_path):
    from imagefit.data.folder import load_folder
    from imagefit.data.sources import load_source

    root = _photos(tmp_path / "photos")
    in_memory = load_folder(root, 16, 0.2, 0, workers=2)  # no cache: every split in RAM
    assert len(in_memory.skipped) == 2 and len(in_memory.train) == 18 and len(in_memory.test) == 6
    for mmap in (True, False):
        first = load_source(str(root), tmp_path / "data", tmp_path / "cache", 16, mmap=mmap, workers=2)
        _same_source(first, in_memory)
        again = load_source(str(root), tmp_path / "data", tmp_path / "cache", 16, mmap=mmap, workers=2)
        _same_source(again, in_memory)
    (entry,) = (tmp_path / "cache").iterdir()
    for split, part in (("train", in_memory.train), ("test", in_memory.test)):
        path = entry / f"{split}_images.npy"
        saved = np.load(path)
        assert np.array_equal(saved, part.images.numpy())
        np.save(tmp_path / "plain.npy", part.images.numpy())  # what the cache wrote before: the same file, byte for byte
        assert path.read_bytes() == (tmp_path / "plain.npy").read_bytes()


def test_rows_squeezed_out_in_place_leave_the_kept_rows_in_order():
    from imagefit.data.rows import compact

    rng = np.random.default_rng(0)
    array = rng.integers(0, 256, (1000, 3, 2, 2), dtype=np.uint8)
    index = np.sort(rng.choice(1000, 700, replace=False))
    expected = array[index].copy()
    compact(array, index, chunk=64)
    assert np.array_equal(array[:700], expected)


def test_a_full_cache_disk_under_a_folder_decode_costs_the_cache_not_the_run(tmp_path, caplog):
    from helpers import file_size_limit

    from imagefit.data.folder import load_folder
    from imagefit.data.sources import load_source

    root = _photos(tmp_path / "photos", bad=False)
    in_memory = load_folder(root, 16, 0.2, 0, workers=1)
    with file_size_limit(5_000), caplog.at_level("WARNING", logger="imagefit"):  # train: 18 images of 768 bytes
        source = load_source(str(root), tmp_path / "data", tmp_path / "cache", 16, mmap=True, workers=1)
    note = source.notes[-1]
    assert note.startswith("decoded data not cached in") and note in caplog.text
    source.notes.pop()
    _same_source(source, in_memory)
    assert list((tmp_path / "cache").iterdir()) == []  # no entry, whole or half, and no temp folder
