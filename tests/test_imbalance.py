import torch
from PIL import Image

from imagefit.evaluate.imbalance import POOR_F1_GAP, ClassBalance, class_counts, class_f1, plot_counts_vs_f1


def test_class_counts_and_f1_from_logits():
    labels = torch.tensor([0, 0, 0, 1, 2, 2])
    assert class_counts(labels, 4) == [3, 1, 2, 0]
    logits = torch.nn.functional.one_hot(torch.tensor([0, 0, 1, 1, 2, 0]), 3).float()
    f1 = class_f1(logits, labels, 3)
    assert f1[1] == 2 / 3 and f1[2] == 2 / 3 and abs(f1[0] - 2 * (2 / 3 * 2 / 3) / (4 / 3)) < 1e-9


def test_names_the_classes_both_rare_and_poorly_recognised():
    names = ["cat", "dog", "fox", "owl", "eel"]
    counts = [400, 380, 90, 100, 350]  # median 350: fox and owl are rare (<= 175)
    f1 = [0.95, 0.93, 0.40, 0.92, 0.90]  # fox is also poor; owl is rare but fine
    b = ClassBalance(names, counts, f1)
    assert b.rare() == [2, 3]
    assert b.rare_and_poor() == [2]
    s = b.sentence()
    assert "fox (90 images, F1 0.400)" in s and "owl" not in s and "cat" not in s
    assert "1 class is both rare and poorly recognised" in s


def test_rare_classes_that_do_well_and_even_classes_are_said_so():
    fine = ClassBalance(["a", "b", "c"], [300, 300, 20], [0.9, 0.9, 0.9 - POOR_F1_GAP / 2])
    assert fine.rare_and_poor() == [] and "none is also poorly recognised" in fine.sentence()
    even = ClassBalance(["a", "b"], [100, 90], [0.2, 0.9])
    assert even.rare() == [] and even.sentence().startswith("No class is rare")


def test_plot_written(tmp_path):
    b = ClassBalance([f"class{i}" for i in range(40)], [5 + 20 * i for i in range(40)], [i / 40 for i in range(40)])
    path = plot_counts_vs_f1(b, tmp_path / "class_balance.png")
    with Image.open(path) as im:
        assert im.size[0] > 500 and im.size[1] > 300
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
