import pytest

from imagefit.config import TrainConfig
from imagefit.errors import UserError


def test_round_trip_through_yaml(tmp_path):
    cfg = TrainConfig(dataset="cifar10", model="resnet9", epochs=3, lr=0.02, image_size=24)
    cfg.save(tmp_path / "c.yaml")
    assert TrainConfig.load(tmp_path / "c.yaml") == cfg


def test_command_line_overrides_file_and_strings_are_coerced(tmp_path):
    (tmp_path / "c.yaml").write_text("epochs: 3\nmodel: resnet9\n")
    cfg = TrainConfig.load(tmp_path / "c.yaml", {"epochs": "7", "lr": "1e-2", "progress": "false"})
    assert (cfg.epochs, cfg.model, cfg.lr, cfg.progress) == (7, "resnet9", 0.01, False)


def test_unknown_key_names_the_key_and_suggests(tmp_path):
    (tmp_path / "c.yaml").write_text("epoch: 3\n")
    with pytest.raises(UserError, match="unknown config key 'epoch'.*did you mean 'epochs'"):
        TrainConfig.load(tmp_path / "c.yaml")


@pytest.mark.parametrize("values, match", [
    ({"optimizer": "rmsprop"}, "optimizer 'rmsprop' is not one of"),
    ({"epochs": 0}, "epochs must be at least 1"),
    ({"val_fraction": 1.5}, "val_fraction"),
    ({"epochs": "many"}, "must be a"),
])
def test_bad_values_are_user_errors(values, match):
    with pytest.raises(UserError, match=match):
        TrainConfig.from_dict(values)


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(UserError, match="config file not found"):
        TrainConfig.load(tmp_path / "nope.yaml")
    (tmp_path / "bad.yaml").write_text("- a list\n")
    with pytest.raises(UserError, match="mapping"):
        TrainConfig.load(tmp_path / "bad.yaml")


def test_default_learning_rate_follows_the_optimizer():
    assert TrainConfig(optimizer="adam").learning_rate == 1e-3
    assert TrainConfig(optimizer="sgd").learning_rate == 0.05
    assert TrainConfig(optimizer="sgd", lr=0.2).learning_rate == 0.2


def test_default_model_follows_transfer():
    assert TrainConfig().model == "seed-cnn"
    assert TrainConfig(pretrained=True).model == "tf_efficientnet_lite0"
    assert TrainConfig.from_dict({"weights": "w.safetensors"}).model == "tf_efficientnet_lite0"
    assert TrainConfig.from_dict({"pretrained": True, "model": "resnet18"}).model == "resnet18"


def test_time_budget_parsing():
    assert TrainConfig(time_budget="90s").budget_seconds == 90
    assert TrainConfig(time_budget="10m").budget_seconds == 600
    assert TrainConfig(time_budget="1.5h").budget_seconds == 5400
    with pytest.raises(UserError, match="not a duration"):
        TrainConfig.from_dict({"time_budget": "soon"})


def test_old_strategy_key_is_read_as_transfer_strategy_with_a_note(tmp_path, caplog):
    (tmp_path / "old.yaml").write_text("pretrained: true\nstrategy: linear-probe\n")
    with caplog.at_level("INFO", logger="imagefit"):
        cfg = TrainConfig.load(tmp_path / "old.yaml")
    assert (cfg.transfer_strategy, cfg.strategy) == ("linear-probe", "auto")
    assert "read as transfer_strategy" in caplog.text
    cfg = TrainConfig.from_dict({"strategy": "ddp_spawn", "transfer_strategy": "freeze-unfreeze"})
    assert (cfg.transfer_strategy, cfg.strategy) == ("freeze-unfreeze", "ddp_spawn")
    with pytest.raises(UserError, match="strategy 'deepspeed' is not one of auto, ddp"):
        TrainConfig.from_dict({"strategy": "deepspeed"})


def test_old_study_file_with_strategy_still_loads(tmp_path):
    from imagefit.study import load_study

    (tmp_path / "s.yaml").write_text("name: s\ndefaults: {dataset: digits}\nruns:\n"
                                     "  - {name: probe, pretrained: true, strategy: linear-probe}\n")
    spec = load_study(tmp_path / "s.yaml")
    assert spec.config(spec.runs[0]).transfer_strategy == "linear-probe"


def test_one_device_unless_asked_and_fp16_refused_on_a_cpu():
    cfg = TrainConfig()
    assert (cfg.devices, cfg.num_nodes, cfg.strategy) == (1, 1, "auto")
    assert TrainConfig.from_dict({"devices": "2"}).devices == 2 and TrainConfig.from_dict({"devices": "0,1"}).devices == "0,1"
    with pytest.raises(UserError, match="16-mixed needs a CUDA GPU.*bf16-mixed"):
        TrainConfig.from_dict({"accelerator": "cpu", "precision": "16-mixed"})


def test_logger_is_a_list_from_yaml_or_a_comma_separated_flag(tmp_path):
    assert TrainConfig().logger == []
    assert TrainConfig.from_dict({"logger": "csv, mlflow"}).logger == ["csv", "mlflow"]
    (tmp_path / "c.yaml").write_text("logger: [tensorboard]\n")
    assert TrainConfig.load(tmp_path / "c.yaml").logger == ["tensorboard"]
    assert TrainConfig.from_dict({"logger": "csv,wandb"}).logger == ["csv", "wandb"]
    with pytest.raises(UserError, match="logger 'comet' is not one of csv, tensorboard, mlflow, wandb"):
        TrainConfig.from_dict({"logger": "csv,comet"})


# ---- property tests: whatever a config file holds, the answer is a config or one UserError ------------
from dataclasses import fields as _fields  # noqa: E402

from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

KNOWN_KEYS = sorted(f.name for f in _fields(TrainConfig))
ANY_VALUE = st.recursive(
    st.none() | st.booleans() | st.integers(-10**12, 10**12) | st.floats(allow_nan=True, allow_infinity=True, allow_subnormal=False)
    | st.text(max_size=12) | st.sampled_from(["auto", "fast", "none", "10m", "-3s", "1e-3", "0", "digits", "32"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=2),
    max_leaves=4)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(KNOWN_KEYS), ANY_VALUE, max_size=6))
def test_any_mapping_of_known_keys_is_a_config_or_one_user_error(values):
    try:
        cfg = TrainConfig.from_dict(values)
    except UserError as e:
        assert str(e) and "\n" not in str(e)
        return
    assert isinstance(cfg, TrainConfig)
    TrainConfig.from_dict(cfg.to_dict())  # what a run saves loads back


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=200))
def test_any_config_file_text_is_a_config_or_one_user_error(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("cfg") / "config.yaml"
    path.write_text(text, encoding="utf-8")
    try:
        TrainConfig.load(path)
    except UserError as e:
        assert str(e) and "\n" not in str(e)


def test_a_key_without_a_value_and_a_name_with_a_newline_are_one_line(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("dataset: digits\nlabel_smoothing:\n")
    with pytest.raises(UserError, match="config key 'label_smoothing' in .* has no value"):
        TrainConfig.load(path)
    with pytest.raises(UserError) as e:
        TrainConfig.from_dict({"dataset": "digits", "optimizer": "a\nb"})
    assert "\n" not in str(e.value) and "a\\nb" in str(e.value)


@pytest.mark.parametrize("values,words", [({"mixup": -1}, "mixup must be 0"), ({"cutmix": -0.5}, "cutmix must be 0"),
                                          ({"random_erasing": 1.5}, "random_erasing is a probability"),
                                          ({"ema": True, "ema_decay": 1.0}, "ema_decay must be in"),
                                          ({"task": "multilabel", "mixup": 0.2}, "mix one label an image")])
def test_strong_augmentation_mistakes_are_one_line(values, words):
    with pytest.raises(UserError, match=words):
        TrainConfig.from_dict(values)
