import numpy as np
import pytest
from PIL import Image

from imagefit.evaluate import plot_confusion, plot_curves


def history(epochs, with_val=True):
    rows = []
    for e in range(1, epochs + 1):
        rows.append({
            "epoch": str(e), "train_loss": f"{2 / e:.4f}", "train_acc": f"{1 - 1 / (e + 1):.4f}",
            "val_loss": f"{1 / e + 0.05 * e:.4f}" if with_val else "", "val_acc": f"{0.6 + 0.02 * e:.4f}" if with_val else "",
            "lr": "0.001", "seconds": "3.2",
        })
    return rows


def image_size(path):
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        assert im.format == "PNG"
        gray = np.asarray(im.convert("L"), dtype=np.float32)
        assert gray.std() > 5 and (gray < 128).mean() > 0.002, "a blank or nearly blank picture"  # lines, text, cells
        return im.size


@pytest.mark.parametrize("rows,best,stop", [
    (history(10), 4, 7),
    (history(1), 1, None),
    (history(8, with_val=False), None, None),
    ([{"epoch": 1, "train_loss": 1.2, "train_acc": 0.5, "val_loss": 1.1, "val_acc": 0.55}], 1, 1),  # numbers, not strings
])
def test_curves_are_wide_two_panel_pngs(tmp_path, rows, best, stop):
    path = plot_curves(rows, tmp_path / "curves.png", best_epoch=best, stop_epoch=stop, title="digits / seed-cnn")
    width, height = image_size(path)
    assert 1000 <= width <= 1800 and 350 <= height <= 700
    assert [p.name for p in tmp_path.iterdir()] == ["curves.png"]


def test_curves_with_no_rows_still_write_an_image(tmp_path):
    assert image_size(plot_curves([], tmp_path / "c.png"))[0] >= 1000


@pytest.mark.parametrize("k", [2, 10, 100])
def test_confusion_scales_with_classes(tmp_path, k):
    rng = np.random.default_rng(0)
    cm = rng.integers(0, 5, (k, k)) + np.diag(rng.integers(20, 40, k))
    cm[0] = 0  # a class with no test images must not divide by zero
    names = [f"class_name_{i}" for i in range(k)]
    width, height = image_size(plot_confusion(cm, names, tmp_path / "cm.png"))
    assert min(width, height) >= 400
    if k == 100:
        # ~16 px a cell or more, so each row and column is still distinguishable
        assert min(width, height) >= 100 * 16
    else:
        assert max(width, height) <= 1400


def test_confusion_counts_mode(tmp_path):
    size = image_size(plot_confusion(np.array([[5, 1], [2, 9]]), ["cat", "dog"], tmp_path / "cm.png", normalize=False))
    assert min(size) >= 400
