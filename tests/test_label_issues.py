"""--find-label-issues and --exclude (train/label_issues.py, data/exclude.py): planted wrong labels are found and ranked first by
cleanlab on out-of-sample probabilities; --exclude trains without exactly the listed files."""
import csv
import json

import numpy as np
import pytest
from PIL import Image

from helpers import run_imagefit
from imagefit.config import TrainConfig
from imagefit.data.pipeline import prepare_data
from imagefit.errors import UserError

PLANTED = 20


def write_digits_with_flips(root, per_class=40, seed=0):
    """scikit-learn's digits as 16-px PNGs in train/ and test/ class folders; PLANTED training images filed under
    a wrong class. Returns the planted files (paths inside the folder)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    rng = np.random.default_rng(seed)
    planted = []
    for c in range(10):
        chosen = np.flatnonzero(digits.target == c)[:per_class + 10]
        for k, i in enumerate(chosen):
            split = "test" if k >= per_class else "train"
            label = c
            if split == "train" and len(planted) < PLANTED and rng.random() < PLANTED / (10 * per_class) * 1.6:
                label = (c + 1 + int(rng.integers(9))) % 10
            folder = root / split / str(label)
            folder.mkdir(parents=True, exist_ok=True)
            image = Image.fromarray((digits.images[i] * 16).clip(0, 255).astype(np.uint8)).resize((16, 16))
            image.save(folder / f"{i:04d}.png")
            if label != c:
                planted.append(f"train/{label}/{i:04d}.png")
    return planted


@pytest.fixture(scope="module")
def flagged(tmp_path_factory):
    root = tmp_path_factory.mktemp("issues")
    planted = write_digits_with_flips(root / "digits")
    run_imagefit("train", "--dataset", root / "digits", "--epochs", "1", "--find-label-issues", "--no-progress",
                 "--runs-dir", root / "runs", "--cache-dir", root / "cache", "--name", "li", cwd=root)
    return root, planted, list(csv.DictReader((root / "runs" / "li" / "label_issues.csv").open()))


def test_planted_flips_are_found_and_ranked_first(flagged):
    root, planted, rows = flagged
    assert len(planted) >= 15
    found = {r["file"] for r in rows} & set(planted)
    assert len(found) >= 0.6 * len(planted), (len(found), len(planted))
    top = [r["file"] for r in rows[:len(planted) // 2]]
    assert sum(f in planted for f in top) >= 0.5 * len(top)  # most of the least likely right are planted ones
    for r in rows:  # the suggestion is another class; self-confidence rises down the list
        assert r["suggested"] != r["given"] or float(r["self_confidence"]) > 0.3
    confidences = [float(r["self_confidence"]) for r in rows]
    assert confidences == sorted(confidences)
    report = (root / "runs" / "li" / "report.md").read_text()
    assert "## Labels most likely wrong" in report and (root / "runs" / "li" / "label_issues.png").is_file()
    m = json.loads((root / "runs" / "li" / "metrics.json").read_text())
    assert "label issues" in m["time_breakdown"]


def test_exclude_drops_exactly_the_listed_files(flagged, tmp_path):
    root, _, rows = flagged
    listed = root / "runs" / "li" / "label_issues.csv"
    common = {"dataset": str(root / "digits"), "cache_dir": str(root / "cache"), "audit": False}
    before = prepare_data(TrainConfig.from_dict({**common, "val_fraction": 0.0}))
    after = prepare_data(TrainConfig.from_dict({**common, "val_fraction": 0.0, "exclude": str(listed)}))
    names = {r["file"] for r in rows}
    assert set(after.train.files) == set(before.train.files) - names
    assert len(after.train) == len(before.train) - len(names & set(before.train.files))
    assert after.test.files == before.test.files  # test images are never dropped
    assert any(n.startswith(f"--exclude {listed}: {len(names)} training") for n in after.notes), after.notes


def test_exclude_mistakes_are_one_line(tmp_path):
    with pytest.raises(UserError, match="--exclude file not found"):
        prepare_data(TrainConfig.from_dict({"dataset": "digits", "exclude": str(tmp_path / "nope.csv")}))
    (tmp_path / "x.csv").write_text("file\na.png\n")
    with pytest.raises(UserError, match="has none \\(a named data set\\)"):
        prepare_data(TrainConfig.from_dict({"dataset": "digits", "exclude": str(tmp_path / "x.csv")}))
    proc = run_imagefit("train", "--dataset", "digits", "--exclude", tmp_path / "nope.csv", cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "--exclude file not found" in proc.stderr
