"""Freezing: no gradients, and BatchNorm statistics that survive Lightning's train() calls, copies and pickles."""
import copy
import pickle

import pytest
import torch
import torch.nn as nn

from imagefit.models.freeze import freeze, is_frozen, unfreeze
from imagefit.models.pretrained import load_pretrained, mean_std
from imagefit.models.registry import ImageClassifier

LITE0 = "tf_efficientnet_lite0"


@pytest.fixture
def one_thread():
    """Tiny batches: one thread is faster, and 2 threads on a busy 2-core machine take 20x longer."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_freeze_survives_train_mode_and_keeps_batchnorm_statistics(one_thread):
    torch.manual_seed(0)
    net, _ = load_pretrained(LITE0, num_classes=3)
    model = ImageClassifier(net, **mean_std(LITE0))
    freeze(net)
    unfreeze(net.get_classifier())  # a Linear: the new head trains
    assert not is_frozen(net) and is_frozen(net.blocks)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    head = {f"net.classifier.{k}" for k in ("weight", "bias")}
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)  # all params, as people do
    x = torch.randint(0, 256, (4, 3, 64, 64), dtype=torch.uint8)
    y = torch.tensor([0, 1, 2, 0])
    for step in range(3):
        model.train()  # Lightning does this at every epoch start
        if step == 2:  # Lightning's _ModuleMode.restore sets .training of every module directly
            for m in model.modules():
                m.training = True
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = model.state_dict()
    bn = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert len(bn) > 40 and not any(m.training for m in bn)
    for key, value in before.items():
        if key in head:
            assert not torch.equal(after[key], value), f"head {key} did not train"
        else:
            assert torch.equal(after[key], value), f"{key} changed although frozen"
    # a copy (EMA, SWA, checkpoint averaging) and a pickled model stay frozen
    for clone in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        clone.train()
        stats = clone.net.bn2.running_mean.clone()
        clone(x)
        assert torch.equal(clone.net.bn2.running_mean, stats) and not clone.net.bn2.training
    unfreeze(net)
    model.train()
    assert net.bn2.training and all(p.requires_grad for p in net.parameters())
    model(x)
    assert not torch.equal(net.bn2.running_mean, before["net.bn2.running_mean"])
