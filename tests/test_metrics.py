import csv
import json
import math

import pytest
import torch

from imagefit.errors import UserError
from imagefit.evaluate import metrics as M

NAMES = ["a", "b", "c"]
LABELS = torch.tensor([0, 0, 0, 1, 1, 2])
PREDICTED = torch.tensor([0, 0, 1, 1, 2, 2])


def one_hot_logits(predicted, k, scale=5.0):
    return scale * torch.nn.functional.one_hot(predicted, k).float()


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.reader(f))


def test_values_computed_by_hand():
    m = M.test_metrics(one_hot_logits(PREDICTED, 3), LABELS, NAMES)
    # confusion rows: a [2 1 0], b [0 1 1], c [0 0 1]
    assert m["test_accuracy"] == pytest.approx(4 / 6)
    assert m["precision_macro"] == pytest.approx((1 + 0.5 + 0.5) / 3)
    assert m["recall_macro"] == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)
    assert m["f1_macro"] == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    assert m["precision_weighted"] == pytest.approx((3 * 1 + 2 * 0.5 + 1 * 0.5) / 6)
    assert m["recall_weighted"] == pytest.approx(4 / 6)
    expected_loss = (4 * math.log(1 + 2 * math.exp(-5)) + 2 * math.log(math.exp(5) + 2)) / 6
    assert m["test_loss"] == pytest.approx(expected_loss, rel=1e-6)
    assert m["test_images"] == 6
    assert "test_top5_accuracy" not in m
    assert m["top_confusions"] == [
        {"true": "a", "predicted": "b", "count": 1, "share_of_true": pytest.approx(1 / 3)},
        {"true": "b", "predicted": "c", "count": 1, "share_of_true": pytest.approx(1 / 2)},
    ]
    json.dumps(m)  # plain Python types only
    assert all(type(v) in (float, int, list) for v in m.values())


def test_top5_only_above_five_classes():
    five = M.test_metrics(torch.randn(20, 5), torch.randint(0, 5, (20,)), list("abcde"))
    assert "test_top5_accuracy" not in five
    # label 0 ranked 6th (last) for the first two images, 1st for the other two
    logits = torch.tensor([[0.0, 1, 2, 3, 4, 5], [0.0, 5, 4, 3, 2, 1], [9.0, 1, 2, 3, 4, 5], [5.0, 4, 3, 2, 1, 0]])
    six = M.test_metrics(logits, torch.zeros(4, dtype=torch.long), list("abcdef"))
    assert six["test_top5_accuracy"] == pytest.approx(0.5)
    assert six["test_accuracy"] == pytest.approx(0.5)


def test_top_confusions_keeps_the_ten_largest():
    k = 12
    labels = torch.arange(k).repeat_interleave(20)
    predicted = labels.clone()
    for i in range(k):  # class i loses i of its 20 images to class (i + 1) % k
        predicted[i * 20 : i * 20 + i] = (i + 1) % k
    m = M.test_metrics(one_hot_logits(predicted, k), labels, [f"c{i}" for i in range(k)])
    assert [c["count"] for c in m["top_confusions"]] == [11, 10, 9, 8, 7, 6, 5, 4, 3, 2]
    assert m["top_confusions"][0] == {"true": "c11", "predicted": "c0", "count": 11, "share_of_true": 11 / 20}
    assert "test_top5_accuracy" in m


def test_empty_test_set_is_a_user_error():
    with pytest.raises(UserError):
        M.test_metrics(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long), NAMES)


def test_write_evaluation_files(tmp_path):
    k, n = 7, 200
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, k, (n,), generator=g)
    logits = torch.randn(n, k, generator=g) + 1.5 * torch.nn.functional.one_hot(labels, k)
    names = [f"class {i}" for i in range(k - 1)] + ["with, comma"]
    m = M.write_evaluation(tmp_path, logits, labels, names)
    assert m == M.test_metrics(logits, labels, names)

    text = (tmp_path / "classification_report.txt").read_text()
    accuracy_line = next(line for line in text.splitlines() if line.strip().startswith("accuracy"))
    assert accuracy_line.split()[1] == f"{m['test_accuracy']:.4f}"
    assert accuracy_line.split()[2] == str(n)
    assert "macro avg" in text and "weighted avg" in text and "with, comma" in text

    report = read_csv(tmp_path / "classification_report.csv")
    assert report[0] == ["class", "precision", "recall", "f1-score", "support"]
    assert [r[0] for r in report[1:]] == names + ["accuracy", "balanced accuracy", "macro avg", "weighted avg"]
    assert float(report[k + 1][3]) == pytest.approx(m["test_accuracy"])
    assert float(report[k + 2][3]) == pytest.approx(m["test_balanced_accuracy"], abs=1e-6)
    assert float(report[k + 3][3]) == pytest.approx(m["f1_macro"], abs=1e-6)
    balanced_line = next(line for line in text.splitlines() if line.strip().startswith("balanced accuracy"))
    assert balanced_line.split()[2] == f"{m['test_balanced_accuracy']:.4f}"
    assert sum(int(r[4]) for r in report[1 : k + 1]) == n

    cm = read_csv(tmp_path / "confusion_matrix.csv")
    assert cm[0] == ["true\\predicted", *names]
    assert len(cm) == k + 1 and all(len(r) == k + 1 for r in cm)
    assert sum(int(c) for r in cm[1:] for c in r[1:]) == n
    assert sum(int(cm[i + 1][i + 1]) for i in range(k)) == round(m["test_accuracy"] * n)

    top = read_csv(tmp_path / "top_confusions.csv")
    assert top[0] == ["true", "predicted", "count", "share_of_true"]
    assert len(top) == len(m["top_confusions"]) + 1 <= 11

    preds = read_csv(tmp_path / "predictions.csv")
    assert preds[0] == ["index", "label", "label_name", "predicted", "predicted_name", "confidence"]
    assert len(preds) == n + 1
    assert [int(r[1]) for r in preds[1:]] == labels.tolist()
    assert [int(r[3]) for r in preds[1:]] == logits.argmax(1).tolist()
    assert all(1 / k <= float(r[5]) <= 1 for r in preds[1:])
    assert (tmp_path / "confusion_matrix.png").stat().st_size > 1000
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files left behind


def test_balanced_accuracy_equals_scikit_learn_on_uneven_classes():
    from sklearn.metrics import balanced_accuracy_score

    g = torch.Generator().manual_seed(3)
    labels = torch.cat([torch.zeros(300, dtype=torch.long), torch.ones(40, dtype=torch.long), torch.full((10,), 2)])
    logits = torch.randn(len(labels), 4, generator=g)
    logits[:300, 0] += 3  # the big class is recognised, the small ones mostly not
    m = M.test_metrics(logits, labels, ["big", "mid", "small", "absent"])
    expected = balanced_accuracy_score(labels.numpy(), logits.argmax(1).numpy())
    assert m["test_balanced_accuracy"] == pytest.approx(expected, abs=1e-12)
    assert m["test_accuracy"] - m["test_balanced_accuracy"] > 0.2  # accuracy flatters the big class
