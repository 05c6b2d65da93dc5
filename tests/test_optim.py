"""Muon with Nesterov SGD (train/optim.py): the orthogonalised update, the filter renormalisation, the SGD part
equal to torch's own, and a real run."""
import pytest
import torch

import imagefit
from imagefit.train.optim import MUON_LR, MuonSGD, muon_groups, newton_schulz


@pytest.mark.parametrize("shape", [(16, 144), (144, 16), (64, 64)])
def test_newton_schulz_pushes_every_singular_value_towards_one(shape):
    g = torch.randn(*shape) * torch.logspace(-1, 1, shape[1])  # columns whose scales span 2 decades
    s = torch.linalg.svdvals(newton_schulz(g).float())
    assert newton_schulz(g).shape == g.shape
    # the quintic's band (airbench94_muon's coefficients): the bulk lands in it, none above; a random matrix's
    # few near-zero directions stay small
    assert s.max() < 1.3 and ((s > 0.6) & (s < 1.3)).float().mean() > 0.8, s


def test_muon_groups_take_the_filter_banks_only():
    conv, bn, head = torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8), torch.nn.Linear(8, 2)
    groups = muon_groups([{"params": [conv.weight, *bn.parameters()], "lr": 0.1},
                          {"params": [head.weight], "lr": 0.5}])
    assert [g.get("muon", False) for g in groups] == [False, False, True]
    assert groups[-1]["params"] == [conv.weight] and groups[-1]["lr"] == MUON_LR
    assert groups[0]["params"] == list(bn.parameters()) and groups[1]["params"] == [head.weight]


def test_the_sgd_part_equals_torchs_nesterov_sgd():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(12, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))
    twin = torch.nn.Sequential(torch.nn.Linear(12, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))
    twin.load_state_dict(net.state_dict())
    ours = MuonSGD(muon_groups(net.parameters()), lr=0.1, momentum=0.9, weight_decay=0.01)
    torchs = torch.optim.SGD(twin.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01)
    x, y = torch.randn(16, 12), torch.randint(0, 4, (16,))
    for _ in range(3):
        for model, opt in ((net, ours), (twin, torchs)):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
    for a, b in zip(net.parameters(), twin.parameters()):
        assert torch.allclose(a, b, atol=1e-6)


def test_a_muon_step_renormalises_the_filter_bank_and_moves_it_by_the_rate():
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 8, 3)
    with torch.no_grad():
        conv.weight.mul_(5)  # far from the norm Muon keeps
    opt = MuonSGD(muon_groups([conv.weight]), lr=0.1, momentum=0.0, weight_decay=0.0)
    conv(torch.randn(4, 3, 8, 8)).square().mean().backward()
    before = conv.weight.detach().clone()
    opt.step()
    renormalised = before * 8 ** 0.5 / before.norm()
    step = (conv.weight.detach() - renormalised).reshape(8, -1)
    # the update is -lr times an (almost) orthogonal matrix: 8 singular values near lr
    s = torch.linalg.svdvals(step)
    assert s.max() < 1.3 * MUON_LR and s.min() > 0.5 * MUON_LR, s


def test_a_run_with_muon_learns(quick):
    """airbench93 on digits with the fast recipe's rates, Muon on its filters: a real run, 3 epochs."""
    run = imagefit.train(**{**quick, "epochs": 3, "batch_size": 64, "precision": "auto", "model": "airbench93"},
                         recipe="fast", image_size=16, optimizer="muon", tta="none")
    assert run.config.optimizer == "muon" and run.metrics["test_accuracy"] > 0.8
