import csv

import torch
from PIL import Image

from imagefit.data.types import ImageSet
from imagefit.evaluate.mistakes import COLUMNS, ranked_mistakes, write_mistakes


def _case(n=60, k=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, k, (n,), generator=g)
    logits = torch.randn(n, k, generator=g) * 2
    images = torch.randint(0, 256, (n, 3, 12, 12), dtype=torch.uint8, generator=g)
    return images, labels, logits


def test_ranking_is_the_misclassified_images_by_descending_loss():
    _, labels, logits = _case()
    ranked, loss, probs = ranked_mistakes(logits, labels)
    brute = [i for i in range(len(labels)) if logits[i].argmax() != labels[i]]
    brute.sort(key=lambda i: -(torch.logsumexp(logits[i].double(), 0) - logits[i, labels[i]].double()).item())
    assert ranked.tolist() == brute
    assert torch.allclose(probs.sum(1), torch.ones(len(labels), dtype=torch.float64))


def test_csv_and_gallery_hold_the_highest_loss_images(tmp_path):
    images, labels, logits = _case()
    files = [f"train/c{int(t)}/img{i:03d}.png" for i, t in enumerate(labels)]
    test = ImageSet(images, labels, files=files)
    out = write_mistakes(tmp_path, test, logits, labels, ["a", "b", "c", "d"], gallery_size=6)
    rows = list(csv.DictReader(open(tmp_path / "misclassified.csv")))
    assert list(rows[0]) == COLUMNS
    wrong = int((logits.argmax(1) != labels).sum())
    assert out == {"misclassified": wrong, "misclassified_shown": 6} and len(rows) == wrong
    losses = [float(r["loss"]) for r in rows]
    assert losses == sorted(losses, reverse=True)
    for r in rows:
        i = int(r["index"])
        assert r["file"] == files[i] and int(r["true"]) == int(labels[i]) and int(r["predicted"]) == int(logits[i].argmax())
        p = torch.softmax(logits[i].double(), 0)
        assert abs(float(r["p_true"]) - p[labels[i]]) < 1e-6 and abs(float(r["loss"]) + p[labels[i]].log()) < 1e-5
    assert [r["in_gallery"] for r in rows[:7]] == ["1", "2", "3", "4", "5", "6", ""]
    with Image.open(tmp_path / "misclassified.png") as im:
        assert im.size[0] > 400


def test_no_mistakes_no_gallery_and_files_unknown(tmp_path):
    images, labels, _ = _case()
    logits = torch.nn.functional.one_hot(labels, 4).float() * 5
    (tmp_path / "misclassified.png").write_bytes(b"stale")
    out = write_mistakes(tmp_path, ImageSet(images, labels), logits, labels, list("abcd"))
    assert out["misclassified"] == 0 and not (tmp_path / "misclassified.png").exists()
    assert (tmp_path / "misclassified.csv").read_text().strip() == ",".join(COLUMNS)
