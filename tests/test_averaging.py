"""--ema: Lightning's EMAWeightAveraging, checked where it can go wrong: which weights are validated, tested and
saved, and whether a resumed run keeps both the raw weights and their average."""

import pytest
import torch
from safetensors.torch import load_file

import imagefit
from imagefit.train.averaging import ema_decay
from imagefit.train.callbacks import read_checkpoint


def test_the_decay_remembers_a_tenth_of_the_run():
    assert ema_decay(1000) == pytest.approx(0.99)  # memory 1 / (1 - 0.99) = 100 steps
    assert ema_decay(10) == 0.5 and ema_decay(10**7) == 0.9999


def _net(state: dict, prefix: str = "model.") -> dict:
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


@pytest.fixture(scope="module")
def ema_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ema")
    return imagefit.train(dataset="digits", model="seed-cnn", epochs=3, batch_size=64, runs_dir=str(tmp / "runs"),
                          cache_dir=str(tmp / "cache"), progress=False, precision="32", ema=True, ema_decay=0.9,
                          name="ema")


def test_the_average_is_what_is_saved_and_tested(ema_run):
    saved = load_file(ema_run.dir / "model.safetensors")
    ckpt = read_checkpoint(ema_run.dir / "checkpoints" / "last.ckpt")
    average, raw = _net(ckpt["state_dict"]), _net(ckpt["current_model_state"])
    weights = [k for k in saved if k.endswith("weight")]
    assert weights and all(torch.equal(saved[k], average[k]) for k in weights)
    assert any(not torch.allclose(saved[k], raw[k]) for k in weights)  # the raw weights are not the ones kept
    from imagefit.config import TrainConfig
    from imagefit.data.pipeline import prepare_data
    from imagefit.models import create_model

    data = prepare_data(TrainConfig.load(ema_run.dir / "config.yaml"))
    for state, same in ((average, True), (raw, False)):  # the test predictions are the average's, not the raw's
        model = create_model("seed-cnn", 10, 1, 8)
        model.load_state_dict({**saved, **state})
        logits = model.eval()(data.test.images)
        assert torch.allclose(logits, load_file(ema_run.dir / "predictions.safetensors")["logits"], atol=1e-4) == same
    assert "exponential moving average" in (ema_run.dir / "report.md").read_text()


def test_a_resumed_run_keeps_the_weights_and_their_average(ema_run, tmp_path):
    """Killed after epoch 2 (the folder as its last checkpoint left it), resumed to epoch 3: the same weights as
    the run that never stopped."""
    short = imagefit.train(dataset="digits", model="seed-cnn", epochs=2, batch_size=64, runs_dir=str(tmp_path),
                           cache_dir=str(ema_run.dir.parent.parent / "cache"), progress=False, precision="32",
                           ema=True, ema_decay=0.9, name="short")
    (short.dir / "metrics.json").unlink()
    resumed = imagefit.resume(short.dir, epochs=3)
    assert resumed.metrics["epochs_run"] == 3
    ours, theirs = load_file(short.dir / "model.safetensors"), load_file(ema_run.dir / "model.safetensors")
    assert all(torch.allclose(ours[k], theirs[k], atol=1e-6) for k in theirs)
    assert resumed.metrics["test_accuracy"] == pytest.approx(ema_run.metrics["test_accuracy"])


def test_without_ema_no_average_is_kept(quick):
    run = imagefit.train(**quick, name="plain")
    assert "current_model_state" not in read_checkpoint(run.dir / "checkpoints" / "last.ckpt")
