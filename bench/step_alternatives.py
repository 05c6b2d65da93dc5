"""Alternatives to what bench/step_profile.py measured, timed as that script times: best of warm calls.

    python -m bench.step_alternatives pool      # max-pool fwd+bwd by dtype and layout, and a reshape-amax instead
    python -m bench.step_alternatives compile   # an airbench93 step (32 px, batch 1024) eager and torch.compile'd
    python -m bench.step_alternatives pad       # the first 3x3 conv: 24 input channels against the same padded to 32

`pool`: the first max-pool of airbench (after a 3x3 conv) and the next ones, forward and backward, bf16 and fp32,
channels-last and NCHW. `compile`: forward and backward under bf16 autocast, channels-last, 6 warm steps each;
the first compiled step (the compile) is timed apart. `pad`: airbench's first 3x3 convolution sees the whitening's
24 channels (2x2 patches of RGB, each filter and its negative); padded to 32, oneDNN's kernels run more GFLOP/s
but do a third more work. Forward and backward with the input's gradient (the whitening bias trains early on).
"""
from __future__ import annotations

import sys
import time

import torch
import torch.nn.functional as F

from bench.step_profile import best_seconds


def best_ms(fn, n: int = 5) -> float:
    return 1000 * best_seconds(fn, n)


def pool() -> None:
    print("| shape | dtype | layout | max_pool2d fwd+bwd (ms) | reshape + amax fwd+bwd (ms) |\n|---|---|---|---|---|")
    for shape in [(1024, 64, 32, 32), (1024, 128, 16, 16), (1024, 128, 8, 8)]:
        for dtype in (torch.bfloat16, torch.float32):
            for layout, fmt in (("channels-last", torch.channels_last), ("NCHW", torch.contiguous_format)):
                x = torch.randn(*shape, dtype=dtype).contiguous(memory_format=fmt).requires_grad_()

                def maxpool():
                    y = F.max_pool2d(x, 2)
                    y.backward(torch.ones_like(y))

                def amax():
                    n, c, h, w = x.shape
                    y = x.unflatten(2, (h // 2, 2)).unflatten(4, (w // 2, 2)).amax((3, 5))
                    y.backward(torch.ones_like(y))

                print(f"| {tuple(shape)} | {str(dtype)[6:]} | {layout} | {best_ms(maxpool):.1f} | {best_ms(amax):.1f} |")


def compiled(name: str = "airbench93", size: int = 32, batch: int = 1024) -> None:
    from imagefit.models import create_model
    from imagefit.runtime import autocast

    torch.manual_seed(0)
    model = create_model(name, 10, 3, size, [0.5] * 3, [0.25] * 3).to(memory_format=torch.channels_last).train()
    x = torch.rand(batch, 3, size, size).mul(255).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,))

    def step(m):
        with autocast("bf16-mixed", "cpu"):
            loss = F.cross_entropy(m(x), y)
        loss.backward()

    eager = best_ms(lambda: step(model), 6)
    fast = torch.compile(model)
    start = time.perf_counter()
    step(fast)
    first = time.perf_counter() - start
    warm = best_ms(lambda: step(fast), 6)
    print(f"| {name}, {size} px, batch {batch} | eager {eager:.0f} ms | compiled {warm:.0f} ms ({eager / warm:.2f}x) | "
          f"first compiled step {first:.0f} s |")


def pad() -> None:
    print("| batch | side | input channels | fwd+bwd (ms) | GFLOP/s |\n|---|---|---|---|---|")
    for batch, side in [(1024, 31), (256, 63)]:
        for channels in (24, 32):
            conv = torch.nn.Conv2d(channels, 64, 3, padding="same", bias=False).to(memory_format=torch.channels_last)
            x = torch.randn(batch, channels, side, side).to(memory_format=torch.channels_last).requires_grad_(True)

            def step():
                with torch.autocast("cpu", torch.bfloat16):
                    y = conv(x)
                y.float().sum().backward()
            ms = best_ms(step, 6)
            flops = 3 * 2 * batch * 64 * channels * 9 * side * side  # forward, input grad, weight grad
            print(f"| {batch} | {side} | {channels} | {ms:.1f} | {flops / ms / 1e6:.0f} |", flush=True)


if __name__ == "__main__":
    torch.set_num_threads(2)
    {"pool": pool, "compile": compiled, "pad": pad}[sys.argv[1] if len(sys.argv) > 1 else "pool"]()
