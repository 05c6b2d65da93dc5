import csv
import json

import numpy as np
import pytest
import torch
from sklearn.metrics import (accuracy_score, average_precision_score, f1_score, hamming_loss,
                             multilabel_confusion_matrix, precision_recall_fscore_support)
from torchmetrics.functional.classification import (multilabel_average_precision, multilabel_exact_match,
                                                    multilabel_f1_score, multilabel_hamming_distance)

from imagefit.errors import UserError
from imagefit.evaluate import multilabel as ML

NAMES = ["cat", "dog", "car", "tree"]  # "tree" has no positive test image
LABELS = torch.tensor([
    [1, 0, 1, 0],
    [1, 1, 0, 0],
    [0, 1, 0, 0],
    [1, 0, 1, 0],
    [0, 0, 1, 0],
    [1, 1, 0, 0],
    [0, 1, 1, 0],
    [0, 0, 0, 0],
])
# cat and dog are ranked well (one positive below one or two negatives), car badly; tree is predicted twice at 0.5
LOGITS = torch.tensor([
    [3.0, -1.5, -1.0, -3.0],
    [1.2, 0.8, 1.8, -2.5],
    [-2.0, 2.5, 0.9, 0.7],
    [-0.4, 0.3, -2.0, -4.0],
    [0.6, -2.2, 0.4, -1.0],
    [2.1, -0.7, 2.2, 1.3],
    [-1.1, 1.5, -0.5, -2.0],
    [-3.0, -0.2, -0.1, -3.5],
])
THRESHOLDS = [0.5, 0.35, 0.6, 0.5]
KEYS = {"task", "test_map", "test_map_micro", "f1_macro", "f1_micro", "precision_macro", "recall_macro",
        "f1_macro_at_half", "f1_micro_at_half", "test_subset_accuracy", "test_accuracy", "test_hamming_loss",
        "test_loss", "label_cardinality_true", "label_cardinality_pred", "test_ece", "test_images", "per_class",
        "thresholds", "classes_without_test_positives", "missed_together", "hallucinated_together"}
FILES = ["per_class.csv", "multilabel_confusion.csv", "pr_curves.png", "predictions.csv", "largest_loss.csv"]


def probs_of(logits):
    return 1 / (1 + np.exp(-logits.double().numpy()))


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.reader(f))


def ece_by_hand(p, y, bins=15):
    """Equal-width bins [lo, hi) (p == 1 alone past the last), |positive share - mean probability|, weighted."""
    which = np.searchsorted(np.linspace(0, 1, bins + 1), p, side="right") - 1
    return sum(abs(y[which == b].mean() - p[which == b].mean()) * (which == b).sum() / len(p)
               for b in np.unique(which))


def pair_counts(hits):
    counts = {}
    for row in hits:
        on = np.flatnonzero(row)
        for i in range(len(on)):
            for j in range(i + 1, len(on)):
                counts[(on[i], on[j])] = counts.get((on[i], on[j]), 0) + 1
    return counts


def test_every_metric_agrees_with_scikit_learn_and_torchmetrics():
    m = ML.multilabel_metrics(LOGITS, LABELS, NAMES, THRESHOLDS)
    assert set(m) == KEYS
    json.dumps(m, allow_nan=False)  # plain Python values only, no NaN
    y, p = LABELS.numpy(), probs_of(LOGITS)
    pred = (p >= np.array(THRESHOLDS)).astype(int)
    half = (p >= 0.5).astype(int)
    present = [0, 1, 2]

    # average precision: by hand from the rankings above, then scikit-learn and torchmetrics
    assert [row["ap"] for row in m["per_class"]] == pytest.approx([0.95, (3 + 4 / 6) / 4,
                                                                   (1 / 4 + 2 / 6 + 3 / 7 + 4 / 8) / 4, None])
    assert m["per_class"][3]["ap"] is None
    assert m["test_map"] == pytest.approx(average_precision_score(y[:, present], p[:, present], average="macro"))
    assert m["test_map"] == pytest.approx(float(multilabel_average_precision(
        torch.from_numpy(p[:, present]), LABELS[:, present], num_labels=3, average="macro")))
    assert m["test_map"] != pytest.approx(float(np.mean([0.95, (3 + 4 / 6) / 4, (1 / 4 + 2 / 6 + 3 / 7 + 4 / 8) / 4,
                                                         0.0])))  # the empty class is left out, not counted as 0
    assert m["test_map_micro"] == pytest.approx(average_precision_score(y, p, average="micro"))

    assert m["f1_macro"] == pytest.approx(f1_score(y, pred, labels=present, average="macro", zero_division=0))
    assert m["f1_micro"] == pytest.approx(f1_score(y, pred, average="micro", zero_division=0))
    mp, mr, _, _ = precision_recall_fscore_support(y, pred, labels=present, average="macro", zero_division=0)
    assert (m["precision_macro"], m["recall_macro"]) == pytest.approx((mp, mr))
    assert m["f1_macro_at_half"] == pytest.approx(f1_score(y, half, labels=present, average="macro", zero_division=0))
    assert m["f1_micro_at_half"] == pytest.approx(f1_score(y, half, average="micro", zero_division=0))
    assert m["f1_micro_at_half"] == pytest.approx(float(multilabel_f1_score(LOGITS, LABELS, num_labels=4,
                                                                            average="micro")))

    # wrong cells at 0.5 (logit >= 0), image by image: 1 + 1 + 2 + 3 + 1 + 3 + 1 + 0 = 12 of 32
    assert hamming_loss(y, half) == pytest.approx(12 / 32)
    assert m["test_hamming_loss"] != pytest.approx(12 / 32)  # the given thresholds decide, not 0.5
    assert m["test_hamming_loss"] == pytest.approx(hamming_loss(y, pred))
    assert m["test_hamming_loss"] == pytest.approx(float(multilabel_hamming_distance(
        torch.from_numpy(pred), LABELS, num_labels=4)))
    assert m["test_subset_accuracy"] == pytest.approx(accuracy_score(y, pred))
    assert m["test_subset_accuracy"] == pytest.approx(float(multilabel_exact_match(torch.from_numpy(pred), LABELS,
                                                                                   num_labels=4)))
    assert m["test_subset_accuracy"] == pytest.approx(np.mean((pred == y).all(axis=1)))
    assert m["test_accuracy"] == m["test_subset_accuracy"]

    z = LOGITS.double().numpy()
    assert m["test_loss"] == pytest.approx(np.mean(np.log1p(np.exp(-z)) + (1 - y) * z), rel=1e-12)
    assert m["label_cardinality_true"] == pytest.approx(12 / 8)
    assert m["label_cardinality_pred"] == pytest.approx(pred.sum() / 8)
    eces = [ece_by_hand(p[:, c], y[:, c]) for c in range(4)]
    assert [row["ece"] for row in m["per_class"]] == pytest.approx(eces, abs=1e-6)
    assert m["test_ece"] == pytest.approx(np.mean(eces), abs=1e-6)
    assert m["test_images"] == 8

    pc, rc, fc, sc = precision_recall_fscore_support(y, pred, average=None, zero_division=0)
    for c, row in enumerate(m["per_class"]):
        assert row["class"] == NAMES[c] and row["threshold"] == THRESHOLDS[c]
        assert row["support"] == sc[c] == y[:, c].sum()
        assert row["predicted"] == pred[:, c].sum()
        assert row["precision"] == pytest.approx(pc[c])
        if c in present:
            assert (row["recall"], row["f1"]) == pytest.approx((rc[c], fc[c]))
    assert m["per_class"][3]["predicted"] == 2 and m["per_class"][3]["precision"] == 0.0
    assert m["per_class"][3]["recall"] is None and m["per_class"][3]["f1"] is None
    assert m["thresholds"] == THRESHOLDS
    assert m["classes_without_test_positives"] == ["tree"]

    for key, hits in (("missed_together", (y == 1) & (pred == 0)), ("hallucinated_together", (y == 0) & (pred == 1))):
        expected = sorted(pair_counts(hits).items(), key=lambda kv: (-kv[1], kv[0]))
        assert m[key] == [{"a": NAMES[i], "b": NAMES[j], "count": n} for (i, j), n in expected]
    half_m = ML.multilabel_metrics(LOGITS, LABELS, NAMES, [0.5] * 4)
    assert half_m["hallucinated_together"] == [{"a": "car", "b": "tree", "count": 2}]  # images 2 and 5
    assert half_m["missed_together"] == [{"a": "cat", "b": "car", "count": 1}]  # image 3


def test_thresholds_change_f1_but_not_average_precision():
    a = ML.multilabel_metrics(LOGITS, LABELS, NAMES, THRESHOLDS)
    b = ML.multilabel_metrics(LOGITS, LABELS, NAMES, [0.9, 0.1, 0.2, 0.95])
    for key in ("test_map", "test_map_micro", "test_loss", "test_ece", "f1_macro_at_half", "f1_micro_at_half"):
        assert a[key] == b[key]
    assert [r["ap"] for r in a["per_class"]] == [r["ap"] for r in b["per_class"]]
    assert a["f1_macro"] != pytest.approx(b["f1_macro"])
    assert a["f1_micro"] != pytest.approx(b["f1_micro"])
    assert a["label_cardinality_pred"] != b["label_cardinality_pred"]


def _validation(n=60, c=5, seed=1):
    """(probabilities, labels, logits): scores well inside [0.01, 0.99], the last class without a positive."""
    g = torch.Generator().manual_seed(seed)
    y = (torch.rand(n, c, generator=g) < 0.35).long()
    y[:, -1] = 0
    logits = (torch.randn(n, c, generator=g) + 1.2 * y - 0.4).clamp(-3.8, 3.8)
    return torch.sigmoid(logits.double()).numpy(), y.numpy(), logits


def best_f1_in_range(y, p):
    """Brute force: F1 at every score inside [CUT_MIN, CUT_MAX] and at the range's two ends."""
    cuts = [t for t in np.unique(p) if ML.CUT_MIN <= t <= ML.CUT_MAX] + [ML.CUT_MIN, ML.CUT_MAX]
    return max(f1_score(y, p >= t, zero_division=0) for t in cuts)


def test_f1_policy_gives_each_class_its_best_f1():
    p, y, logits = _validation()
    cuts = ML.choose_thresholds(p, y, policy="f1", fixed=0.4)
    assert len(cuts) == 5 and all(type(t) is float for t in cuts)
    assert cuts[-1] == 0.4  # no positive to fit
    beats_half = 0
    for c in range(4):
        f1_at_cut, f1_at_half = (f1_score(y[:, c], p[:, c] >= t, zero_division=0) for t in (cuts[c], 0.5))
        assert f1_at_cut == pytest.approx(best_f1_in_range(y[:, c], p[:, c]))
        assert cuts[c] in p[:, c] and ML.CUT_MIN <= cuts[c] <= ML.CUT_MAX  # an exact score, no midpoint
        beats_half += f1_at_cut > f1_at_half + 1e-9
    assert beats_half >= 2  # the data is such that a constant 0.5 would fail this test
    # evaluated on the same images, the metrics see the F1 the cut was chosen for (the same ">=" rule)
    m = ML.multilabel_metrics(logits, y, list("abcde"), cuts)
    assert [row["f1"] for row in m["per_class"][:4]] == pytest.approx([best_f1_in_range(y[:, c], p[:, c])
                                                                       for c in range(4)])


def test_f1_policy_keeps_cuts_inside_the_range():
    y = np.array([[1, 1, 1, 1], [1, 1, 1, 0], [0, 0, 0, 0], [0, 0, 0, 1], [0, 0, 1, 0], [0, 0, 0, 0]])
    p = np.array([[0.999, 0.004, 0.999, 0.005],
                  [0.995, 0.003, 0.998, 0.003],
                  [0.4, 0.002, 0.995, 0.015],
                  [0.2, 0.001, 0.993, 0.02],
                  [0.1, 0.001, 0.5, 0.012],
                  [0.1, 0.001, 0.1, 0.001]])
    cuts = ML.choose_thresholds(p, y)
    assert cuts[0] == ML.CUT_MAX == 0.99  # best cut 0.995, but 0.99 separates the classes as well (F1 1)
    assert f1_score(y[:, 0], p[:, 0] >= cuts[0]) == 1.0
    assert cuts[1] == ML.CUT_MIN == 0.01  # every score under the range: the lowest cut allowed
    # best cuts outside the range (0.998: F1 0.8; 0.005: F1 0.67), whose clipped values would do worse (0.57, 0.4)
    # than the best cut inside it (0.5: F1 0.75; 0.02: F1 0.67)
    assert cuts[2:] == [0.5, 0.02]
    for c in range(4):
        assert f1_score(y[:, c], p[:, c] >= cuts[c]) == pytest.approx(best_f1_in_range(y[:, c], p[:, c]))


def test_fixed_policy_and_bad_threshold_inputs():
    p, y, _ = _validation()
    assert ML.choose_thresholds(p, y, policy="fixed", fixed=0.3) == [0.3] * 5
    assert ML.choose_thresholds(torch.from_numpy(p), torch.from_numpy(y), policy="fixed") == [0.5] * 5
    with pytest.raises(UserError, match="unknown threshold policy"):
        ML.choose_thresholds(p, y, policy="youden")
    with pytest.raises(UserError, match="sigmoid"):
        ML.choose_thresholds(LOGITS, LABELS)  # logits, not probabilities
    with pytest.raises(UserError):
        ML.choose_thresholds(p, y[:, :3])


def test_write_files_with_and_without_images(tmp_path):
    files = [f"img/{i}.png" for i in range(8)]
    images = torch.randint(0, 256, (8, 3, 12, 12), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    m = ML.write_multilabel_evaluation(tmp_path, LOGITS, LABELS, NAMES, THRESHOLDS, files=files, images=images)
    assert m == ML.multilabel_metrics(LOGITS, LABELS, NAMES, THRESHOLDS)
    for name in FILES + ["largest_loss.png"]:
        assert (tmp_path / name).stat().st_size > 0, name
    for name in ("pr_curves.png", "largest_loss.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    y, p = LABELS.numpy(), probs_of(LOGITS)
    pred = p >= np.array(THRESHOLDS)

    rows = read_csv(tmp_path / "per_class.csv")
    assert rows[0] == ["class", "ap", "precision", "recall", "f1", "support", "threshold", "ece", "predicted"]
    assert [r[0] for r in rows[1:]] == ["cat", "dog", "car", "tree"]  # AP 0.95 > 0.92 > 0.38, no positive last
    aps = [float(r[1]) for r in rows[1:4]]
    assert aps == sorted(aps, reverse=True) and rows[4][1] == "" and rows[4][3] == ""

    cm = multilabel_confusion_matrix(y, pred)
    assert read_csv(tmp_path / "multilabel_confusion.csv") == [["class", "tn", "fp", "fn", "tp"]] + [
        [NAMES[c], *map(str, cm[c].ravel())] for c in range(4)]

    rows = read_csv(tmp_path / "predictions.csv")
    assert rows[0] == ["index", "file", "true", "predicted", "p_cat", "p_dog", "p_car", "p_tree"]
    assert rows[2][:4] == ["1", "img/1.png", "cat dog", "cat dog car"]  # car at 0.858 >= 0.6
    assert np.array([[float(x) for x in r[4:]] for r in rows[1:]]) == pytest.approx(p, abs=1e-6)

    rows = read_csv(tmp_path / "largest_loss.csv")
    assert rows[0] == ["index", "file", "loss", "true", "predicted", "missed", "hallucinated"]
    z = LOGITS.double().numpy()
    loss = (np.log1p(np.exp(-z)) + (1 - y) * z).mean(axis=1)
    assert [int(r[0]) for r in rows[1:]] == np.argsort(-loss, kind="stable").tolist()
    assert [float(r[2]) for r in rows[1:]] == pytest.approx(sorted(loss, reverse=True), abs=1e-6)
    top = rows[1]  # image 5: cat dog true, cat car tree predicted
    assert top == ["5", "img/5.png", top[2], "cat dog", "cat car tree", "dog", "car tree"]

    # again without files or images: no file column, and the old gallery is gone rather than stale
    ML.write_multilabel_evaluation(tmp_path, LOGITS, LABELS, NAMES, THRESHOLDS)
    assert not (tmp_path / "largest_loss.png").exists()
    assert read_csv(tmp_path / "predictions.csv")[0][:3] == ["index", "true", "predicted"]
    assert read_csv(tmp_path / "largest_loss.csv")[1][1] == ""


def test_many_classes_and_images(tmp_path):
    g = torch.Generator().manual_seed(2)
    labels = (torch.rand(30, 9, generator=g) < 0.4).long()
    logits = 1.5 * torch.randn(30, 9, generator=g) + 1.5 * labels - 0.6  # 11 pairs missed together, 25 hallucinated
    names = [f"label {i}" for i in range(9)]
    m = ML.write_multilabel_evaluation(tmp_path, logits, labels, names, [0.5] * 9,
                                       images=torch.zeros(30, 1, 8, 8, dtype=torch.uint8))
    assert len(read_csv(tmp_path / "largest_loss.csv")) == 1 + 20
    assert all((tmp_path / name).exists() for name in FILES + ["largest_loss.png"])
    rows = read_csv(tmp_path / "per_class.csv")[1:]
    assert [float(r[1]) for r in rows] == pytest.approx(sorted((r["ap"] for r in m["per_class"]), reverse=True),
                                                        abs=1e-6)
    y, p = labels.numpy(), probs_of(logits)
    assert m["test_ece"] == pytest.approx(np.mean([ece_by_hand(p[:, c], y[:, c]) for c in range(9)]), abs=1e-6)
    for key, hits in (("missed_together", (y == 1) & (p < 0.5)), ("hallucinated_together", (y == 0) & (p >= 0.5))):
        expected = sorted(pair_counts(hits).items(), key=lambda kv: (-kv[1], kv[0]))
        assert len(expected) > 10  # so the cut to the top 10 is tested
        assert m[key] == [{"a": names[i], "b": names[j], "count": n} for (i, j), n in expected[:10]]


@pytest.mark.parametrize("logits, labels, names, thresholds, match", [
    (LOGITS[:, 0], LABELS, NAMES, THRESHOLDS, "2-D"),
    (LOGITS, LABELS[:6], NAMES, THRESHOLDS, "shape"),
    (LOGITS, LABELS * 2, NAMES, THRESHOLDS, "0 or 1"),
    (LOGITS, LABELS, NAMES[:3], THRESHOLDS, "class names"),
    (LOGITS[:0], LABELS[:0], NAMES, THRESHOLDS, "no test logits"),
    (LOGITS, LABELS, NAMES, THRESHOLDS[:3], "thresholds"),
    (LOGITS, LABELS, NAMES, [0.5, 0.5, 0.5, 1.5], "thresholds"),
    (LOGITS * float("nan"), LABELS, NAMES, THRESHOLDS, "NaN"),
])
def test_bad_shapes_are_user_errors(logits, labels, names, thresholds, match):
    with pytest.raises(UserError, match=match) as e:
        ML.multilabel_metrics(logits, labels, names, thresholds)
    assert e.value.fix


def test_bad_files_or_images_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="file names"):
        ML.write_multilabel_evaluation(tmp_path, LOGITS, LABELS, NAMES, THRESHOLDS, files=["a.png"])
    with pytest.raises(UserError, match="uint8"):
        ML.write_multilabel_evaluation(tmp_path, LOGITS, LABELS, NAMES, THRESHOLDS, images=torch.zeros(8, 3, 4, 4))


def test_sentences_read_off_the_numbers():
    m = ML.multilabel_metrics(LOGITS, LABELS, NAMES, THRESHOLDS)
    text = ML.multilabel_sentences(m)
    assert text[0].startswith(f"Mean average precision {m['test_map']:.3f} over the 3 of 4 labels")
    assert f"macro F1 {m['f1_macro']:.2f} at the per-label thresholds, {m['f1_macro_at_half']:.2f} at 0.5" in text[0]
    low = [s for s in text if "AP under 0.5" in s]
    assert low == ["1 of 3 labels has AP under 0.5: car."]  # car only: cat and dog are above, tree has no AP
    assert f"The model predicts {m['label_cardinality_pred']:.1f} labels an image where the truth has 1.5." in text
    assert any(s.startswith("1 label has no positive test image") and s.endswith(": tree.") for s in text)
    pair = m["hallucinated_together"][0]
    assert any(f"{pair['a']} and {pair['b']} are most often wrongly predicted together" in s for s in text)
    assert m["missed_together"] == [{"a": "cat", "b": "car", "count": 1}]  # image 3: p 0.40 < 0.5, 0.12 < 0.6
    assert "cat and car are most often missed together: in 1 test image." in text
    assert "0 of 8 test images (0%) get exactly their set of labels." in text

    good = ML.multilabel_sentences(ML.multilabel_metrics(LOGITS[:, :2], LABELS[:, :2], NAMES[:2], [0.5, 0.5]))
    assert not any("AP under" in s or "no positive" in s for s in good)
    assert "at the threshold 0.5)" in good[0] and "over 2 labels" in good[0]
    assert all(isinstance(s, str) and s.endswith(".") for s in text + good)
    assert ML.multilabel_sentences(json.loads(json.dumps(m))) == text  # works on metrics.json as read back


def test_sentences_do_not_call_a_tie_the_most_often():
    m = ML.multilabel_metrics(LOGITS, LABELS, NAMES, THRESHOLDS)
    m["missed_together"] = [{"a": "cat", "b": "dog", "count": 3}, {"a": "cat", "b": "car", "count": 3},
                            {"a": "dog", "b": "car", "count": 1}]
    m["hallucinated_together"] = [{"a": "cat", "b": "dog", "count": 2}] * 10
    text = ML.multilabel_sentences(m)
    assert "2 pairs of labels are each missed together in 3 test images, such as cat and dog." in text
    assert "At least 10 pairs of labels are each wrongly predicted together in 2 test images, such as cat and dog." \
        in text
    assert not any("most often" in s for s in text)
