"""Training images/s of the from-scratch networks by batch size, on this machine (issue 10).

The budget planner's probe times a few steps on a small batch; a CPU's per-image speed depends on the batch
(the activations of a large batch do not fit in the caches), so this measures what each batch really costs:
a warm step of forward, backward and an optimizer step, bf16 autocast and channels-last as in a run, on random
uint8-range images. The fastest of `--steps` steps after warm-up counts (another process can only slow a step).

    python -m bench.batch_speed --models airbench93 airbench --batches 64 128 256 512 1024 --size 32
"""
from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from imagefit.models import create_model
from imagefit.train.optim import MuonSGD, muon_groups
from imagefit.runtime import autocast


def images_per_second(name: str, batch: int, size: int, steps: int, optimizer: str) -> float:
    torch.manual_seed(0)
    model = create_model(name, 10, 3, size, [0.5] * 3, [0.25] * 3).to(memory_format=torch.channels_last).train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = (MuonSGD(muon_groups(params), lr=1e-9, momentum=0.85, weight_decay=0.0) if optimizer == "muon"
           else torch.optim.SGD(params, lr=1e-9, momentum=0.85, nesterov=True))
    x = torch.rand(batch, 3, size, size).mul(255).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,))
    times = []
    for _ in range(steps + 2):
        start = time.perf_counter()
        with autocast("bf16-mixed", "cpu"):
            loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - start)
    return batch / min(times[2:])


def main(argv=None) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--models", nargs="+", default=["airbench93", "airbench"])
    p.add_argument("--batches", nargs="+", type=int, default=[64, 128, 256, 512, 1024])
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--optimizer", choices=("sgd", "muon"), default="sgd")
    args = p.parse_args(argv)
    print(f"| model | {' | '.join(f'batch {b}' for b in args.batches)} |")
    print(f"|---|{'---|' * len(args.batches)}")
    for name in args.models:
        row = [f"{images_per_second(name, b, args.size, max(args.steps, 2048 // b), args.optimizer):.0f}"
               for b in args.batches]
        print(f"| {name} at {args.size} px, {args.optimizer} | {' | '.join(row)} |", flush=True)


if __name__ == "__main__":
    main()
