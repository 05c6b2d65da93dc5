"""The CUDA paths, on a machine with a GPU (skipped elsewhere; `bench/gpu_check.sh` runs them on a lent one).

Every stage must run on the GPU and none may mix devices: the budget probe, the transfer plan's timings, the
linear probe's features, a partial fine-tune's trunk activations, training, the final evaluation (after
Lightning's teardown has moved the module back to the CPU), Grad-CAM and, with two GPUs, DDP over NCCL.
"""
import json

import pytest
import torch

import imagefit
from helpers import run_imagefit
from imagefit.runtime import compute_device

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")


def gpu(quick, **extra):
    return {**quick, "accelerator": "gpu", "devices": 1, "precision": "auto", **extra}


def test_the_compute_device_is_the_gpu():
    assert compute_device("gpu") == torch.device("cuda", 0) == compute_device("auto")
    assert compute_device("cpu") == torch.device("cpu")


def test_a_budgeted_run_probes_trains_and_evaluates_on_the_gpu(quick):
    torch.cuda.reset_peak_memory_stats()
    run = imagefit.train(**gpu(quick, model=None, recipe="fast", epochs=None, batch_size=None, time_budget="40s"))
    m = run.metrics
    assert m["precision"] in ("bf16-mixed", "16-mixed") and m["budget_plan"]["steps"] > 0
    assert m["devices"] == {"plan": "cuda:0", "fit": "cuda:0", "evaluate": "cuda:0"}
    assert m["test_accuracy"] > 0.5 and torch.cuda.max_memory_allocated() > 0
    assert (run.dir / "gradcam.png").is_file()


@pytest.mark.parametrize("strategy", ["linear-probe", "partial", "fine-tune"])
def test_transfer_strategies_on_the_gpu(quick, photos, strategy):
    extra = {"trainable_blocks": 2} if strategy == "partial" else {}
    run = imagefit.train(**gpu(quick, dataset=photos, model="tf_efficientnet_lite0", pretrained=True, image_size=64,
                               batch_size=8, epochs=2, transfer_strategy=strategy, **extra))
    assert run.metrics["transfer_strategy"] == strategy
    assert run.metrics["devices"] == {"plan": None, "fit": "cuda:0", "evaluate": "cuda:0"}


def test_a_budgeted_transfer_plan_measures_on_the_gpu(quick, photos):
    run = imagefit.train(**gpu(quick, dataset=photos, model="tf_efficientnet_lite0", pretrained=True, epochs=None,
                               batch_size=None, time_budget="60s"))
    assert run.metrics["transfer_plan"]["strategy"] in ("linear-probe", "partial", "fine-tune")
    assert run.metrics["devices"] == {"plan": "cuda:0", "fit": "cuda:0", "evaluate": "cuda:0"}


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="DDP needs two GPUs")
def test_two_gpus_over_nccl(tmp_path):
    run_imagefit("train", "--dataset", "digits", "--time-budget", "40s", "--accelerator", "gpu", "--devices", "2",
                 "--strategy", "ddp", "--no-progress", "--name", "g", "--runs-dir", tmp_path / "runs",
                 "--cache-dir", tmp_path / "cache", "--data-dir", tmp_path / "data", cwd=tmp_path)
    m = json.loads((tmp_path / "runs" / "g" / "metrics.json").read_text())
    assert m["test_accuracy"] > 0.5 and [p.name for p in (tmp_path / "runs").iterdir()] == ["g"]
    assert m["devices"]["fit"] == "cuda:0"  # rank 0's device
