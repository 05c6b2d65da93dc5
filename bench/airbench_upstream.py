"""The published airbench, unchanged, on this CPU and the JPEG copy of CIFAR-10 (issue 10's anchor).

imagefit's `--recipe fast` is a port of airbench; this runs Keller Jordan's own code (`pip install
airbench==0.1.8`, the package of github.com/KellerJordan/cifar10-airbench: `train93`, 93.00% in 11 epochs,
and `train94`, 94.01% in 9.9, both on clean CIFAR-10 on an A100) so that what the port and the data cost
can be told apart. Nothing of its recipe is changed; only what ties it to a GPU is bridged, here and
nowhere else:

- its loaders read `cifar10/{train,test}.pt` (uint8 NHWC arrays): written from the JPEG zip, decoded by
  imagefit's folder reader (all 50,000 training images: airbench holds out no validation set);
- `.cuda()` and `.half()` are no-ops and the network's forward runs under bf16 autocast (fp32 master
  weights, as imagefit trains; plain fp16 weights have no fast CPU kernels here); the whitening's covariance
  stays in fp32 as on the GPU;
- `torch.cuda.Event` is a wall-clock timer and `torch.load` maps to the CPU.

    pip install airbench==0.1.8
    python -m bench.airbench_upstream --net 93 --dataset ../shared/data/cifar10/cifar10-jpg.zip
    python -m bench.airbench_upstream --net 94 --epochs 9.9 ...

It prints airbench's own table (test accuracy after each epoch, then with its test-time augmentation).
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch


class _WallClockEvent:
    """Stands in for torch.cuda.Event(enable_timing=True) on a CPU."""

    def __init__(self, *args, **kwargs):
        self.t = 0.0

    def record(self):
        self.t = time.perf_counter()

    def elapsed_time(self, end: "_WallClockEvent") -> float:
        return 1e3 * (end.t - self.t)


def write_cifar_files(dataset: str, folder: Path) -> None:
    """airbench's loader format, from any CIFAR-10 layout imagefit reads (the JPEG zip here), through imagefit's
    decode cache."""
    from imagefit.config import TrainConfig
    from imagefit.data.sources import load_source

    source = load_source(dataset, folder / "data", TrainConfig.cache_dir, None)
    target = folder / "cifar10"
    target.mkdir(parents=True, exist_ok=True)
    for name, split in (("train", source.train), ("test", source.test)):
        images = split.take(0, len(split))
        torch.save({"images": images.permute(0, 2, 3, 1).contiguous(), "labels": split.labels.clone(),
                    "classes": list(source.class_names)}, target / f"{name}.pt")
        print(f"{name}: {len(images)} images")


class AutocastSequential(torch.nn.Sequential):
    """airbench's nn.Sequential (same indices, same parameter names) with its forward under bf16 autocast."""

    def forward(self, x):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return super().forward(x)


def bridge_to_cpu() -> None:
    torch.cuda.Event = _WallClockEvent
    torch.cuda.synchronize = lambda *a, **k: None
    torch.nn.Module.cuda = lambda self, *a, **k: self
    torch.nn.Module.half = lambda self: self
    load = torch.load
    torch.load = lambda path, map_location=None, **kw: load(path, map_location="cpu", **kw)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--net", choices=["93", "94"], default="93")
    parser.add_argument("--epochs", type=float, help="default: the published length (11 for 93, 9.9 for 94)")
    parser.add_argument("--dataset", default="../shared/data/cifar10/cifar10-jpg.zip")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    import airbench  # noqa: F401 (fails early with pip's name if it is missing)
    from airbench import CifarLoader, lib_airbench93, lib_airbench94

    with tempfile.TemporaryDirectory() as tmp:
        write_cifar_files(args.dataset, Path(tmp))
        bridge_to_cpu()
        os.chdir(tmp)
        lib = lib_airbench93 if args.net == "93" else lib_airbench94
        epochs = args.epochs or lib.hyp["opt"]["train_epochs"]
        torch.manual_seed(0)
        loader = CifarLoader("cifar10", train=True, batch_size=lib.hyp["opt"]["batch_size"], aug=lib.hyp["aug"],
                             altflip=True)
        start = time.perf_counter()
        make_net = lib.make_net93 if args.net == "93" else lib.make_net94
        train = lib.train93 if args.net == "93" else lib.train94
        train(train_loader=loader, epochs=epochs, make_net=lambda: AutocastSequential(*make_net()))
        seconds = time.perf_counter() - start
        print(f"airbench{args.net}, {epochs} epochs: {seconds:.0f} s wall, "
              f"{len(loader.images) * epochs / seconds:.0f} training images/s overall")


if __name__ == "__main__":
    main()
