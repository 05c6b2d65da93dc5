"""From scratch or from ImageNet weights: recipe auto's choice (train/start_plan.py) and how the config carries it.

Real runs that take each branch: tests/test_budget.py (digits, 8 px: from scratch) and
tests/test_transfer_plan.py (a folder of 64 px photos: ImageNet transfer).
"""
import pytest

from imagefit.config import TrainConfig
from imagefit.errors import UserError
from imagefit.plan.start import choose_start


def test_small_images_train_from_scratch_and_photos_start_from_imagenet():
    assert choose_start(32, 45_000, 15_000, 900)[0] is False  # CIFAR-10
    assert choose_start(28, 54_000, 16_000, 900)[0] is False  # Fashion-MNIST
    transfer, why = choose_start(128, 9_469, 3_925, 300)  # Imagenette
    assert transfer and "photos of 128 px" in why
    assert choose_start(64, 7_000, 2_000, 60)[0] is True


def test_a_budget_too_short_for_one_pass_of_the_pretrained_net_trains_from_scratch():
    transfer, why = choose_start(256, 500_000, 50_000, 120)
    assert transfer is False and "over half the budget" in why
    assert choose_start(256, 500_000, 50_000, 3600)[0] is True


def test_a_budget_with_nothing_pinned_leaves_the_start_open_and_pins_are_kept():
    cfg = TrainConfig.from_dict({"dataset": "x", "time_budget": "5m", "label_smoothing": 0.05, "seed": 3})
    assert cfg.recipe == "auto" and cfg.model is None and cfg.pretrained is None and not cfg.transfer
    scratch = cfg.decide_start(False)
    assert scratch.recipe == "fast" and scratch.pretrained is False
    assert scratch.optimizer == "muon" and scratch.flip == "alternating"  # the fast recipe's
    transfer = cfg.decide_start(True)
    assert transfer.pretrained is True and transfer.recipe == "none" and transfer.model == "tf_efficientnet_lite0"
    assert transfer.transfer_strategy is None and transfer.scheduler == "onecycle"  # the transfer planner's to choose
    for decided in (scratch, transfer):
        assert decided.label_smoothing == 0.05 and decided.seed == 3 and decided.time_budget == "5m"
    # a pin that equals a default is still a pin: the fast recipe does not override an explicit Adam
    pinned = TrainConfig.from_dict({"dataset": "x", "time_budget": "5m", "optimizer": "adam", "augment": "basic"})
    assert pinned.recipe == "auto" and pinned.decide_start(False).optimizer == "adam"
    assert TrainConfig.from_dict({"dataset": "x", "time_budget": "5m"}).decide_start(False).optimizer == "muon"


def test_pinning_any_of_the_start_skips_recipe_auto():
    assert TrainConfig.from_dict({"time_budget": "5m", "pretrained": False}).recipe == "fast"
    assert TrainConfig.from_dict({"time_budget": "5m", "pretrained": True}).recipe == "none"
    assert TrainConfig.from_dict({"time_budget": "5m", "model": "resnet9"}).recipe == "none"
    assert TrainConfig.from_dict({"time_budget": "5m", "recipe": "fast"}).recipe == "fast"
    assert TrainConfig.from_dict({}).pretrained is None and not TrainConfig.from_dict({}).transfer


@pytest.mark.parametrize("values", [{"recipe": "auto"}, {"recipe": "auto", "time_budget": "5m", "epochs": 3},
                                    {"recipe": "auto", "time_budget": "5m", "model": "resnet9"}])
def test_recipe_auto_without_an_open_budget_is_one_clear_error(values):
    with pytest.raises(UserError, match="recipe auto"):
        TrainConfig.from_dict(values)
