"""Uneven classes: balanced loss weights and the balanced sampler (train/balance.py, data/loader.py)."""
import csv

import pytest
import torch

import imagefit
from imagefit.data.loader import TensorLoader, stream_loader
from imagefit.data.types import ImageSet
from imagefit.train.balance import balanced_class_weights, balanced_sample_weights

LABELS = torch.tensor([0] * 600 + [1] * 200 + [2] * 100)


def test_balanced_weights_make_every_class_weigh_the_same_in_total():
    weights = balanced_class_weights(LABELS, 4)  # class 3 has no training image
    counts = torch.bincount(LABELS, minlength=4).float()
    totals = weights[:3] * counts[:3]
    assert torch.allclose(totals, torch.full((3,), len(LABELS) / 3))  # n / (k * count) * count = n / k
    assert weights[3] == 1 and weights[2] > weights[1] > weights[0]


def test_the_balanced_sampler_draws_every_class_about_equally_and_reproducibly():
    data = ImageSet(torch.zeros(len(LABELS), 1, 2, 2, dtype=torch.uint8), LABELS)
    weights = balanced_sample_weights(LABELS, 3)
    loader = TensorLoader(data, 100, shuffle=True, seed=1, sample_weights=weights)
    drawn = torch.cat([y for _, y in loader])
    assert len(drawn) == len(LABELS)
    share = torch.bincount(drawn, minlength=3).float() / len(drawn)
    assert torch.all((share - 1 / 3).abs() < 0.06), share  # plain shuffling gives 0.67 / 0.22 / 0.11
    again = TensorLoader(data, 100, shuffle=True, seed=1, sample_weights=weights)
    assert torch.equal(torch.cat([y for _, y in again]), drawn)
    next_epoch = torch.cat([y for _, y in loader])
    assert not torch.equal(next_epoch, drawn)
    ranks = [TensorLoader(data, 50, shuffle=True, seed=1, sample_weights=weights, rank=r, world_size=2) for r in (0, 1)]
    halves = [torch.cat([y for _, y in r]) for r in ranks]
    assert len(halves[0]) == len(halves[1]) == len(LABELS) // 2
    stream = torch.cat([y for _, y in stream_loader(data, 100, True, 1, 0, weights)])
    assert torch.all((torch.bincount(stream, minlength=3).float() / len(stream) - 1 / 3).abs() < 0.06)


def write_uneven_folder(root):
    from helpers import write_image_folder

    write_image_folder(root, per_class=40)
    for name, keep in (("green", 10), ("blue", 6)):  # 40 / 10 / 6 images
        for path in (root / name).iterdir():
            if int(path.stem) >= keep:
                path.unlink()


@pytest.mark.parametrize("option", [{"class_weights": "balanced"}, {"sampler": "balanced"}])
def test_each_option_changes_what_a_real_run_trains_on(quick, tmp_path, option):
    write_uneven_folder(tmp_path / "uneven")
    args = {**quick, "dataset": str(tmp_path / "uneven"), "epochs": 1, "batch_size": 8, "augment": "none"}
    plain = imagefit.train(**args, name="plain")
    balanced = imagefit.train(**args, **option, name="balanced")

    def first_loss(run):
        with open(run.dir / "history.csv") as f:
            return float(next(csv.DictReader(f))["train_loss"])

    assert first_loss(plain) != pytest.approx(first_loss(balanced), rel=1e-6)
    assert balanced.config.to_dict() | option == balanced.config.to_dict()  # saved with the run
    assert "balanced" in (balanced.dir / "config.yaml").read_text()
    said = "Class weights: balanced, from " if "class_weights" in option else "Sampler: balanced: each epoch drew"
    assert any(n.startswith(said) for n in balanced.metrics["data_notes"]) and said in (balanced.dir / "report.md").read_text()


def test_a_bad_value_is_one_clear_error():
    from imagefit.config import TrainConfig
    from imagefit.errors import UserError

    with pytest.raises(UserError, match="sampler 'uniform' is not one of shuffle, balanced"):
        TrainConfig.from_dict({"sampler": "uniform"})
