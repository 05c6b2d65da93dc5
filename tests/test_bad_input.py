"""The bad-input matrix through the CLI, as a user meets it: one clear line (exit 2) or skip-and-count."""
import io
import json

from PIL import Image

from helpers import run_imagefit

FAST = ("--epochs", "1", "--batch-size", "16", "--precision", "32", "--no-progress", "--image-size", "8")


def _photos(root, classes=("cat", "dog"), n=12):
    for k, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.new("RGB", (10, 10), (200 * (k == 0), 5 * i, 200 * (k == 1))).save(root / name / f"{i}.png")


def _bad_files(root):
    buf = io.BytesIO()
    Image.new("RGB", (40, 40), (1, 2, 3)).save(buf, "JPEG")
    (root / "cat" / "truncated.jpg").write_bytes(buf.getvalue()[:300])
    (root / "dog" / "empty.png").write_bytes(b"")
    (root / "dog" / "note.txt").write_text("a text note")
    (root / "dog" / ".DS_Store").write_bytes(b"\0")


def test_bad_files_are_skipped_listed_and_the_same_from_the_cache(tmp_path):
    _photos(tmp_path / "photos")
    _bad_files(tmp_path / "photos")
    common = ("--dataset", tmp_path / "photos", "--cache-dir", tmp_path / "cache", "--runs-dir", tmp_path / "runs", *FAST)
    first = run_imagefit("train", *common, "--name", "decoded", cwd=tmp_path)
    assert "skipped 3 files" in first.stderr and "cat/truncated.jpg" in first.stderr
    second = run_imagefit("train", *common, "--name", "cached", cwd=tmp_path)
    lists = []
    for name in ("decoded", "cached"):
        metrics = json.loads((tmp_path / "runs" / name / "metrics.json").read_text())
        assert metrics["train_images"] + metrics["val_images"] + metrics["test_images"] == 24
        lists.append(metrics["skipped_files"])
        report = (tmp_path / "runs" / name / "report.md").read_text()
        assert "## Skipped files" in report and "| dog/empty.png | ValueError: empty file (0 bytes) |" in report
    assert lists[0] == lists[1] and lists[0]["count"] == 3
    assert [f["file"] for f in lists[0]["files"]] == ["cat/truncated.jpg", "dog/empty.png", "dog/note.txt"]
    assert "skipped 3 files" in second.stderr  # said again on a cache hit
    assert ".DS_Store" not in first.stderr + json.dumps(lists[0])


def test_strict_refuses_bad_files_with_one_line_and_no_run_folder(tmp_path):
    _photos(tmp_path / "photos", n=3)
    _bad_files(tmp_path / "photos")
    proc = run_imagefit("train", "--dataset", tmp_path / "photos", "--strict", "--cache-dir", tmp_path / "cache",
                        "--runs-dir", tmp_path / "runs", *FAST, cwd=tmp_path, check=False)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("imagefit: error: --strict: data set")
    assert "cat/truncated.jpg" in proc.stderr and "drop --strict" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "runs").exists()


def test_a_single_class_is_one_clear_line(tmp_path):
    _photos(tmp_path / "one", classes=("cat",), n=4)
    proc = run_imagefit("train", "--dataset", tmp_path / "one", "--cache-dir", tmp_path / "cache",
                        "--runs-dir", tmp_path / "runs", *FAST, cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert "has a single class (cat): a classifier needs at least two" in proc.stderr
    assert not (tmp_path / "runs").exists()


def test_a_symlink_cycle_in_the_data_set_ends(tmp_path):
    _photos(tmp_path / "photos", n=6)
    (tmp_path / "photos" / "cat" / "loop").symlink_to(tmp_path / "photos")
    run_imagefit("train", "--dataset", tmp_path / "photos", "--cache-dir", tmp_path / "cache",
                 "--runs-dir", tmp_path / "runs", "--name", "r", *FAST, cwd=tmp_path)
    metrics = json.loads((tmp_path / "runs" / "r" / "metrics.json").read_text())
    assert metrics["num_classes"] == 2 and metrics["train_images"] + metrics["val_images"] + metrics["test_images"] == 12


def test_a_broken_link_in_a_class_folder_is_skipped_and_listed(tmp_path):
    _photos(tmp_path / "photos", n=6)
    (tmp_path / "photos" / "dog" / "gone.png").symlink_to(tmp_path / "nowhere.png")
    proc = run_imagefit("train", "--dataset", tmp_path / "photos", "--cache-dir", tmp_path / "cache",
                        "--runs-dir", tmp_path / "runs", "--name", "r", *FAST, cwd=tmp_path)
    assert "skipped 1 file: dog/gone.png" in proc.stderr
    metrics = json.loads((tmp_path / "runs" / "r" / "metrics.json").read_text())
    assert metrics["skipped_files"]["count"] == 1 and metrics["skipped_files"]["files"][0]["file"] == "dog/gone.png"


def test_a_batch_larger_than_the_data_set_trains_and_says_so(tmp_path):
    _photos(tmp_path / "photos")
    proc = run_imagefit("train", "--dataset", tmp_path / "photos", "--cache-dir", tmp_path / "cache", "--runs-dir",
                        tmp_path / "runs", "--name", "big", *FAST[:2], "--batch-size", "1000", *FAST[4:], cwd=tmp_path)
    metrics = json.loads((tmp_path / "runs" / "big" / "metrics.json").read_text())
    train = metrics["train_images"]
    assert f"imagefit: batch size 1000 is larger than the {train} training images: each epoch is one step" in proc.stderr
    assert f"--batch-size {train // 4} or less" in proc.stderr
    assert any("larger than the" in note for note in metrics["data_notes"])
