"""The data audit (data/audit.py, report/audit_section.py) on real image files written here: planted exact and
near copies across splits and a planted label conflict are found, a clean set reports none, and a real CLI run
writes data_audit.md and puts the leak warning at the top of its report."""
import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from helpers import run_imagefit

from imagefit.config import TrainConfig
from imagefit.data.audit import audit, summary
from imagefit.report.audit_section import render_markdown
from imagefit.data.pipeline import prepare_data
from imagefit.data.types import ImageSet
from imagefit.report.audit_section import audit_lines


def photo(rng, w=96, h=72):
    """A photo-like picture: a random 6x6 colour field enlarged smoothly, with grain; every call a new one."""
    base = rng.integers(0, 256, (6, 6, 3)).astype(np.uint8)
    a = np.asarray(Image.fromarray(base).resize((w, h), Image.BICUBIC)).astype(np.int16)
    return Image.fromarray((a + rng.integers(-12, 12, (h, w, 3))).clip(0, 255).astype(np.uint8))


def write_split_folder(root, per_class=8, seed=0):
    """train/ and test/ folders of classes cat and dog, all distinct photos (PNG and JPEG, sizes varied);
    train/cat/0.png is stored grayscale."""
    rng = np.random.default_rng(seed)
    for split, n in (("train", per_class), ("test", per_class // 2)):
        for c in ("cat", "dog"):
            (root / split / c).mkdir(parents=True)
            for i in range(n):
                im = photo(rng, 96 + 8 * (i % 3), 72)
                if split == "train" and c == "cat" and i == 0:
                    im = im.convert("L")
                im.save(root / split / c / f"{i}.{'png' if i % 2 == 0 else 'jpg'}")
    return root


def plant(root):
    """An exact copy of a train photo in test, a re-encoded smaller JPEG of another in test, and one train photo
    copied under the other class."""
    shutil.copy(root / "train/cat/2.png", root / "test/cat/copy.png")
    with Image.open(root / "train/dog/4.png") as im:
        im.resize((70, 50), Image.BICUBIC).save(root / "test/dog/near.jpg", quality=70)
    shutil.copy(root / "train/cat/6.png", root / "train/dog/conflict.png")


def prepared(root, tmp_path, **overrides):
    args = dict(dataset=str(root), image_size=32, cache_dir=str(tmp_path / "cache"), val_fraction=0.2, num_workers=1)
    return prepare_data(TrainConfig.from_dict({**args, **overrides}))


@pytest.mark.parametrize("loader", ["memory", "stream"])
def test_planted_copies_and_label_conflict_are_found(tmp_path, loader):
    root = write_split_folder(tmp_path / "pets")
    plant(root)
    data = prepared(root, tmp_path, loader=loader)
    assert (data.train.index is not None) == (loader == "stream")  # the streamed run audits lazy views
    result = data.audit
    leaks = {lk["test"]: lk["kind"] for lk in result["leaks"]}
    assert leaks == {"test/cat/copy.png": "exact", "test/dog/near.jpg": "near"}
    conflicts = [g for g in result["groups"] if len(g["labels"]) > 1]
    assert len(conflicts) == 1 and conflicts[0]["labels"] == ["cat", "dog"]
    assert {im["file"] for im in conflicts[0]["images"]} == {"train/cat/6.png", "train/dog/conflict.png"}
    s = summary(result)
    assert s["leaks"] == 2 and s["label_conflicts"] == 1 and s["near_across"] == 1
    assert s["exact_within"] + s["exact_across"] == 2  # the conflict pair (train or train/val) and the test copy
    assert "test/cat/copy.png" in s["warning"] and "test/dog/near.jpg" in s["warning"]
    counts = {split: sum(c) for split, c in result["counts"].items()}
    assert counts == {"train": len(data.train), "val": len(data.val), "test": len(data.test)} and counts["test"] == 10
    assert result["originals"]["modes"] == {"L": 1, "RGB": 26} and result["originals"]["width"]["max"] == 112
    text = render_markdown(result)
    assert text.splitlines()[2].startswith("> **Warning: test leak.** 2 test images") and "train/dog/conflict.png" in text


def test_a_clean_set_reports_no_duplicates(tmp_path):
    result = prepared(write_split_folder(tmp_path / "pets"), tmp_path).audit
    assert result["groups"] == [] and result["leaks"] == [] and result["conflicts"] == 0
    s = summary(result)
    assert s["warning"] is None and s["exact_within"] == s["exact_across"] == s["near_within"] == s["near_across"] == 0
    text = render_markdown(result)
    assert "test leak" not in text and "No exact or near duplicates." in text and "No image appears under two classes." in text


def test_flat_images_of_different_colours_are_not_near_duplicates():
    """All flat images share one dHash (no brighter neighbour anywhere); the thumbnail test keeps them apart."""
    colours = torch.tensor([[200, 30, 30], [30, 200, 30], [30, 30, 200], [120, 120, 120]], dtype=torch.uint8)
    images = colours[:, :, None, None].expand(4, 3, 16, 16).contiguous()
    train = ImageSet(images[:2], torch.tensor([0, 1]))
    test = ImageSet(images[2:], torch.tensor([0, 1]))
    result = audit({"train": train, "test": test}, ["a", "b"])
    assert result["groups"] == [] and result["leaks"] == []


def test_sets_without_files_name_their_indices():
    gen = torch.Generator().manual_seed(0)
    train = ImageSet(torch.randint(0, 256, (20, 1, 8, 8), dtype=torch.uint8, generator=gen), torch.arange(20) % 2)
    test_images = torch.randint(0, 256, (6, 1, 8, 8), dtype=torch.uint8, generator=gen)
    test_images[3] = train.images[5]
    result = audit({"train": train, "test": ImageSet(test_images, torch.tensor([1, 0, 1, 0, 1, 0]))}, ["even", "odd"])
    assert [(lk["test"], lk["copies"]) for lk in result["leaks"]] == [("test image 3", ["train: train image 5 (odd)"])]
    assert result["conflicts"] == 1  # train image 5 is odd, its copy in test is labelled even
    assert result["originals"] == {"known": False, "side": 8, "channels": 1}


def test_a_cli_run_writes_the_audit_and_warns_of_the_leak_at_the_top(tmp_path):
    root = write_split_folder(tmp_path / "pets", per_class=6)
    shutil.copy(root / "train/dog/2.png", root / "test/dog/copy.png")
    base = ["train", "--dataset", root, "--image-size", "16", "--epochs", "1", "--runs-dir", tmp_path / "runs",
            "--cache-dir", tmp_path / "cache", "--no-progress", "--precision", "32", "--num-workers", "1"]
    proc = run_imagefit(*base, "--name", "leak", cwd=tmp_path)
    said = proc.stdout + proc.stderr
    assert said.count("test leak") == 1 and "test/dog/copy.png" in said
    run = tmp_path / "runs" / "leak"
    assert "test/dog/copy.png (exact copy of train/dog/2.png)" in (run / "data_audit.md").read_text()
    report = (run / "report.md").read_text().splitlines()
    assert report[0].startswith("# Run leak") and report[2].startswith("> **Warning: test leak.** 1 test image has")
    assert "test/dog/copy.png" in report[2] and "## Data audit" in report and "test leak" in (run / "report.html").read_text()
    audit_info = json.loads((run / "metrics.json").read_text())["data_audit"]
    assert audit_info["leaks"] == 1 and audit_info["leaked_files"] == ["test/dog/copy.png"]
    assert audit_info["exact_across"] == 1 and audit_info["label_conflicts"] == 0



def test_no_audit_switches_it_off(tmp_path):
    root = write_split_folder(tmp_path / "pets", per_class=4)
    shutil.copy(root / "train/dog/2.png", root / "test/dog/copy.png")
    assert prepared(root, tmp_path, audit=False).audit is None
    assert audit_lines(tmp_path, {"data_audit": None}) == ([], [])


def test_crowded_hash_buckets_are_searched_by_neighbours_and_said():
    """Blank-bordered images (MNIST-like) share most hash bits: the crowded buckets are searched by hash
    order, a planted near copy (a few grey levels of noise) is still found, and the limit is reported."""
    gen = torch.Generator().manual_seed(0)
    blobs = torch.nn.functional.interpolate(torch.rand(3000, 1, 4, 4, generator=gen), size=(16, 16), mode="bilinear")
    images = torch.zeros(3000, 1, 28, 28, dtype=torch.uint8)
    images[:, :, 6:22, 6:22] = (blobs * 255).to(torch.uint8)
    test = images[2990:].clone()
    test[4] = (images[7].int() + torch.randint(-2, 3, (1, 28, 28), generator=gen)).clamp(0, 255).to(torch.uint8)
    result = audit({"train": ImageSet(images[:2990], torch.zeros(2990, dtype=torch.int64)),
                    "test": ImageSet(test, torch.zeros(10, dtype=torch.int64))}, ["digit"])
    assert [(lk["test"], lk["kind"], lk["copy"]) for lk in result["leaks"]] == [("test image 4", "near", "train image 7")]
    assert result["near_limited"] > 0 and "crowded hash buckets" in render_markdown(result)


def test_a_linear_probe_run_is_audited_on_its_images_before_they_become_features(tmp_path):
    import imagefit

    root = write_split_folder(tmp_path / "pets", per_class=6)
    shutil.copy(root / "train/cat/2.png", root / "test/cat/copy.png")
    run = imagefit.train(dataset=str(root), model="tf_efficientnet_lite0", pretrained=True, image_size=64,
                         transfer_strategy="linear-probe", epochs=1, batch_size=8, runs_dir=str(tmp_path / "runs"),
                         cache_dir=str(tmp_path / "cache"), progress=False, precision="32", num_workers=1)
    assert any("computed once and cached" in n for n in run.metrics["data_notes"])  # the splits became features
    assert run.metrics["data_audit"]["leaked_files"] == ["test/cat/copy.png"]
    assert "test/cat/copy.png (exact copy of train/cat/2.png" in (run.dir / "data_audit.md").read_text()  # in train or val


def test_the_near_duplicate_search_compares_pairs_in_proportion_to_the_images_not_their_square():
    """Half the hashes crowd into few buckets (only 8 bits vary), half are random: the work (pairs compared)
    of 20,000 images is about 13 times that of 2,000 (buckets fill up to their cap), far from the 100 times
    of a search of every pair."""
    from imagefit.data.audit import BUCKET_CAP, NEAR_BITS, WINDOW, near_pairs

    def work(n):
        rng = np.random.default_rng(n)
        crowded = rng.integers(0, 256, n // 2, dtype=np.uint64) << np.uint64(20)
        spread = rng.integers(0, 2**63, n - n // 2, dtype=np.uint64) * np.uint64(2) + rng.integers(0, 2, n - n // 2, dtype=np.uint64)
        hashes = np.concatenate([crowded, spread])
        thumbs = rng.integers(0, 256, (n, 81), dtype=np.uint8)
        counted = {}
        near_pairs(hashes, thumbs, work=counted)
        assert counted["compared"] <= n * (NEAR_BITS + 1) * max(BUCKET_CAP - 1, 2 * WINDOW)
        return counted["compared"]

    small, large = work(2_000), work(20_000)
    assert small > 0 and large / small < 25, (small, large)  # measured 13: buckets fill up to their cap
