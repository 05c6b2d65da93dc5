"""What this machine offers a run: the device of the work outside the Trainer, bf16 autocast where the
hardware does bf16 natively (else fp32), channels-last for convolutional nets, and free memory (one probe for
the loader's choice and the caches)."""
from __future__ import annotations

import contextlib
import functools
import os

import torch


@functools.lru_cache(maxsize=None)
def cpu_has_native_bf16() -> bool:
    """AVX-512 BF16 or AMX: bf16 matmuls run several times faster than fp32 there."""
    try:
        flags = open("/proc/cpuinfo").read()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def resolve_precision(requested: str, accelerator: str) -> str:
    if requested != "auto":
        return requested
    if accelerator in ("cuda", "gpu") or (accelerator == "auto" and torch.cuda.is_available()):
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "bf16-mixed" if cpu_has_native_bf16() else "32"


def compute_device(accelerator: str) -> torch.device:
    """The device of the work the Trainer does not do (the budget probe, features and trunk activations, the
    final evaluation): the one this process trains on. Lightning's teardown moves the module back to the CPU
    after `fit`, so the work after it must not read the device from the module."""
    if accelerator in ("cuda", "gpu") or (accelerator == "auto" and torch.cuda.is_available()):
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    if accelerator == "mps" or (accelerator == "auto" and not torch.cuda.is_available()
                                and getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        return torch.device("mps")
    return torch.device("cpu")


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work: a GPU's clock reading means nothing before it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def autocast(precision: str, device_type: str):
    """The autocast context of a Lightning precision string, for work outside the Trainer (a no-op for 32)."""
    if precision == "bf16-mixed":
        return torch.autocast(device_type, dtype=torch.bfloat16)
    if precision == "16-mixed":
        return torch.autocast(device_type, dtype=torch.float16)
    return contextlib.nullcontext()


def is_convolutional(model: torch.nn.Module) -> bool:
    """Convolutions run faster channels-last on CPUs and GPUs alike; other nets keep their layout."""
    return any(isinstance(m, torch.nn.Conv2d) for m in model.modules())


def _fp32_conv_forward(conv: torch.nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    with torch.autocast(x.device.type, enabled=False):
        return type(conv).forward(conv, x.float())  # the class's own (timm's Conv2dSame pads first)


def fp32_depthwise(model: torch.nn.Module) -> int:
    """Run the depthwise convolutions of `model` in fp32 under bf16 autocast; returns how many there are.

    On CPUs (oneDNN, measured on Zen 5 with native bf16) the backward pass of a bf16 depthwise convolution is
    several times slower than fp32: EfficientNet-Lite0 at 128 px trains at 42 images/s in bf16 and 67 with its
    depthwise convolutions in fp32, the top 8 blocks on cached activations at 84 and 206 (all-fp32: 58 and
    186; `python -m bench.transfer_speed`), while forward passes cost the same. The weights and the state dict are untouched: only the instance's forward changes.
    """
    n = 0
    for m in model.modules():
        if isinstance(m, torch.nn.Conv2d) and m.groups > 1 and m.groups == m.in_channels:
            object.__setattr__(m, "forward", functools.partial(_fp32_conv_forward, m))
            n += 1
    return n


def available_memory() -> int:
    """Bytes of memory a new allocation can have without swapping: the kernel's MemAvailable (free pages plus
    the page cache it can drop), else the free pages alone; 4 GiB when neither can be read (a safe guess)."""
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 4 << 30
