"""Why partial fine-tuning and fp32 depthwise convolutions pay on a CPU: EfficientNet-Lite0 at 128 px.

    .venv/bin/python -m bench.transfer_speed [--side 224]

Prints images/s of: a whole-network training step (bf16 autocast; bf16 with the depthwise convolutions in fp32;
fp32), a training step of the top 8 blocks on activations, and forward passes in batches of 32 and 256.
"""
from __future__ import annotations

import copy
import time

import torch
import torch.nn.functional as F

from imagefit.models import create_model
from imagefit.models.freeze import unfreeze
from imagefit.models.split import split_model
from imagefit.runtime import fp32_depthwise


def train_speed(model, x, y, amp: bool, steps: int = 12) -> float:
    model.train()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-9)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        with torch.autocast("cpu", torch.bfloat16, enabled=amp):
            loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - start)
    return len(x) / min(times[4:])  # the first steps pay for kernel selection


@torch.no_grad()
def forward_speed(model, images, batch: int) -> float:
    model.eval()
    start = time.perf_counter()
    with torch.autocast("cpu", torch.bfloat16):
        for i in range(0, len(images), batch):
            model(images[i:i + batch])
    return len(images) / (time.perf_counter() - start)


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--side", type=int, default=128, help="the network's input side (CIFAR's 32 px upscaled to it)")
    side = parser.parse_args().side
    torch.manual_seed(0)
    torch.set_flush_denormal(True)
    base = create_model("tf_efficientnet_lite0", 10, pretrained=True, input_size=side, image_size=32)
    base.to(memory_format=torch.channels_last)
    x = torch.randint(0, 255, (32, 3, 32, 32), dtype=torch.uint8)
    y = torch.randint(0, 10, (32,))
    patched = copy.deepcopy(base)
    fp32_depthwise(patched)
    print(f"whole network, bf16:                      {train_speed(base, x, y, True):6.0f} images/s")
    print(f"whole network, bf16 + fp32 depthwise:     {train_speed(patched, x, y, True):6.0f} images/s")
    print(f"whole network, fp32:                      {train_speed(base, x, y, False):6.0f} images/s")
    for name, model, amp in (("bf16", base, True), ("bf16 + fp32 depthwise", patched, True), ("fp32", base, False)):
        trunk, top = split_model(model, 8)
        with torch.no_grad():
            acts = trunk(x).float().contiguous(memory_format=torch.channels_last)
        print(f"top 8 blocks on activations, {name + ':':24s} {train_speed(top, acts, y, amp):6.0f} images/s")
        unfreeze(model.net)
    images = torch.randint(0, 255, (1024, 3, 32, 32), dtype=torch.uint8)
    forward_speed(base, images[:64], 32)  # kernel selection
    for batch in (32, 256, 32):
        print(f"forward, batches of {batch:3d}:                 {forward_speed(base, images, batch):6.0f} images/s")


if __name__ == "__main__":
    main()
