import pytest

import imagefit
from imagefit.config import TrainConfig
from imagefit.errors import UserError
from imagefit.recipes import FAST


def test_fast_recipe_sets_its_defaults_and_explicit_keys_win():
    cfg = TrainConfig.from_dict({"recipe": "fast"})
    for key, value in FAST.items():
        assert getattr(cfg, key) == value
    assert cfg.learning_rate == pytest.approx(1.5)
    cfg = TrainConfig.from_dict({"recipe": "fast", "epochs": 3, "tta": "flip", "batch_size": 512})
    assert (cfg.epochs, cfg.tta, cfg.model) == (3, "flip", "airbench")
    assert cfg.learning_rate == pytest.approx(0.75)  # the rate follows the batch size
    assert TrainConfig.from_dict({"recipe": "fast", "batch_size": 512, "lr": 2.0}).learning_rate == 2.0


def test_unknown_recipe_is_one_clear_error():
    with pytest.raises(UserError, match="unknown recipe 'fastest'"):
        TrainConfig.from_dict({"recipe": "fastest"})


def test_tta_with_a_linear_probe_is_refused():
    with pytest.raises(UserError, match="test-time augmentation needs images"):
        TrainConfig.from_dict({"pretrained": True, "transfer_strategy": "linear-probe", "tta": "flip"})


def test_fast_recipe_trains_and_its_config_reruns_identically(quick):
    quick.update(model="airbench", recipe="fast", image_size=16, epochs=3, batch_size=128)
    run = imagefit.train(**quick)
    m = run.metrics
    assert m["recipe"] == "fast" and m["tta"] == "flip-translate" and m["model"] == "airbench"
    assert m["test_accuracy"] > 0.6  # digits, 3 epochs: far above chance (0.1)
    again = imagefit.train(TrainConfig.load(run.dir / "config.yaml", {"name": None}))
    assert again.metrics["test_accuracy"] == m["test_accuracy"]
    assert again.metrics["test_loss"] == pytest.approx(m["test_loss"], rel=1e-6)
