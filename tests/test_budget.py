"""The time-budget planner: its choices as pure functions of measured speeds, then real budgeted runs."""
import json
import signal
import math
import time

import pytest
import yaml

import imagefit
from imagefit.plan.budget import (END_MARGIN, MIN_STEPS_PER_EPOCH, TTA_VIEWS, BudgetPlan, Speed, Workload,
                                   candidate_sizes, choose_batch, choose_tta, for_ranks, plan_budget, replan_steps,
                                   required_epochs)

from helpers import assert_kept_to_its_plan, start_cli

CIFAR = Workload(train_images=45_000, val_images=5_000, test_images=10_000, num_classes=10, image_size=32)
PHOTOS = Workload(train_images=7_000, val_images=700, test_images=2_000, num_classes=101, image_size=96)


def cifar_speeds(narrow: float = 1100, wide: float = 450) -> list[Speed]:
    return [Speed("airbench93", 32, narrow, 4 * narrow), Speed("airbench", 32, wide, 4 * wide)]


def photo_speeds() -> list[Speed]:
    """Per-pixel cost: speeds fall with the square of the side, the wide net at 40% of the narrow one."""
    out = []
    for size in (24, 32, 48, 72, 96):
        narrow = 1100 * (32 / size) ** 2
        out += [Speed("airbench93", size, narrow, 4 * narrow), Speed("airbench", size, 0.4 * narrow, 1.6 * narrow)]
    return out


def planned_seconds(plan: BudgetPlan) -> float:
    return plan.spent_seconds + plan.train_seconds + plan.epochs * plan.val_seconds + plan.test_seconds + plan.write_seconds


@pytest.mark.parametrize("images, batch", [(45_000, 1024), (7_000, 256), (9_469, 256), (1_300, 32), (100, 16)])
def test_the_batch_leaves_enough_steps_an_epoch(images, batch):
    assert choose_batch(images, 1024) == batch
    assert images / batch >= MIN_STEPS_PER_EPOCH or batch == 16


def test_a_short_budget_buys_the_narrow_net_and_a_long_one_the_wide_net():
    short = plan_budget(600, 20, CIFAR, cifar_speeds())
    long = plan_budget(1800, 20, CIFAR, cifar_speeds())
    assert short.model == "airbench93" and short.epochs >= 10
    assert long.model == "airbench" and long.epochs >= 10
    assert "airbench93" in short.sentence() and "because" in short.sentence()


def test_the_plan_spends_the_budget_and_no_more():
    for budget in (120, 600, 1800):
        plan = plan_budget(budget, 15, CIFAR, cifar_speeds())
        assert 0.95 * budget * (1 - END_MARGIN) <= planned_seconds(plan) <= budget * (1 - END_MARGIN) + 1e-6


def test_larger_photos_get_a_side_that_affords_the_epochs_and_progressive_resizing():
    plan = plan_budget(600, 30, PHOTOS, photo_speeds())
    assert plan.image_size in candidate_sizes(96) and plan.epochs >= 10
    fast = plan_budget(3600, 30, PHOTOS, photo_speeds())
    assert fast.image_size == 96 and fast.early_size == 48 and fast.switch_step == round(0.5 * fast.steps)
    assert fast.size_at(0) == 48 and fast.size_at(fast.steps - 1) == 96
    slow = plan_budget(120, 30, PHOTOS, photo_speeds())
    assert slow.image_size < 96  # two minutes cannot buy ten epochs at full size: a smaller side trains instead
    assert plan.batch_size == 256 and plan.steps_per_epoch >= MIN_STEPS_PER_EPOCH


def test_a_larger_side_must_buy_more_epochs_than_a_smaller_one():
    """Epochs before pixels: 72 px affords 12 epochs in 5 minutes, enough for a schedule but short of what a side
    1.5 times the smallest needs, so the planner trains 48 px for longer."""
    assert required_epochs("airbench93", 48, 48) == 10
    assert required_epochs("airbench93", 96, 48) == pytest.approx(10 * 2**0.5)
    only_72 = plan_budget(300, 30, PHOTOS, [s for s in photo_speeds() if s.model == "airbench93" and s.size == 72])
    assert 10 <= only_72.epochs < required_epochs("airbench93", 72, 48)
    plan = plan_budget(300, 30, PHOTOS, photo_speeds())
    assert plan.image_size == 48 and plan.epochs > only_72.epochs
    assert "reaches the 10 epochs its side needs" in " ".join(plan.reasons)


def test_pinned_keys_are_never_overridden():
    work = Workload(**{**PHOTOS.__dict__, "batch_size": 1024, "tta": "none", "early_size": 24})
    plan = plan_budget(600, 30, work, photo_speeds())
    assert (plan.batch_size, plan.tta, plan.early_size) == (1024, "none", 24)
    off = plan_budget(3600, 30, Workload(**{**PHOTOS.__dict__, "early_size": 0}), photo_speeds())
    assert off.image_size == 96 and off.early_size is None and off.switch_step == 0  # 0: one side throughout


def test_test_time_augmentation_only_when_affordable():
    assert choose_tta(10_000, 5_000, 600) == "flip-translate"  # 12 s of 600
    assert choose_tta(10_000, 500, 600) == "none"  # 20 s for even one view is over 4%
    assert choose_tta(10_000, 1_000, 600) == "flip"
    assert TTA_VIEWS["flip"] == 2


def test_without_a_test_pass_its_seconds_go_to_training():
    """A tune's trial (test_pass false): no test images, no validation re-pass for the temperature, no TTA."""
    with_test = plan_budget(60, 5, CIFAR, cifar_speeds())
    without = plan_budget(60, 5, Workload(**{**CIFAR.__dict__, "test_images": 0}), cifar_speeds())
    assert without.test_seconds == 0 and without.tta == "none" and with_test.test_seconds > 0
    assert without.steps > with_test.steps
    assert planned_seconds(without) == pytest.approx(planned_seconds(with_test), rel=0.05)


def test_replanning_follows_the_measured_speed():
    plan = plan_budget(600, 20, CIFAR, cifar_speeds())
    slower = replan_steps(plan, 100, 150.0, 2.0, plan.epochs)
    faster = replan_steps(plan, 100, 150.0, 0.5, plan.epochs)
    same = replan_steps(plan, 100, 150.0, 1.0, plan.epochs)
    assert slower < same < faster
    assert replan_steps(plan, 100, plan.train_deadline + 10, 1.0, 0) == 100  # out of time: no more steps
    assert replan_steps(plan, 100, 150.0, 0.001, plan.epochs) == plan.max_steps  # never past the epoch cap


def test_a_plan_for_two_processes_counts_each_ones_steps_for_the_same_epochs_and_time():
    plan = plan_budget(300, 10, Workload(45_000, 5_000, 10_000, 10, 32), cifar_speeds())
    two = for_ranks(plan, 2)
    assert two.ranks == 2 and two.steps == math.ceil(plan.steps / 2) and two.steps_per_epoch == math.ceil(plan.steps_per_epoch / 2)
    assert two.epochs == pytest.approx(plan.epochs, rel=0.02) and two.max_epochs == plan.max_epochs
    assert two.remaining_step_seconds(0) == pytest.approx(plan.remaining_step_seconds(0), rel=0.02)
    assert two.max_steps == math.ceil(plan.max_steps / 2) and "each of 2 processes" in two.reasons[-1]
    assert for_ranks(two, 2) is two and for_ranks(plan, 1) is plan  # a resumed run's saved plan is not split again
    assert BudgetPlan.from_dict(two.to_dict()).ranks == 2


def test_small_data_capped_at_max_epochs_says_so():
    tiny = Workload(train_images=500, val_images=50, test_images=100, num_classes=5, image_size=32)
    plan = plan_budget(3600, 5, tiny, cifar_speeds())
    assert plan.epochs == 100 and any("unused" in r for r in plan.reasons)


# ---- real runs --------------------------------------------------------------------------------------

def test_a_30s_budget_is_planned_followed_and_spent_on_training(quick):
    # oneDNN compiles its kernels per shape, seconds each on a first backward pass: a budget this short would
    # measure that, not the planner, so the process is warmed first with a one-epoch run of both candidates
    # at the batch the planner will choose
    base = {k: v for k, v in quick.items() if k not in ("epochs", "model", "batch_size", "runs_dir")}
    for model in ("airbench93", "airbench"):
        imagefit.train(**base, recipe="fast", model=model, epochs=1, image_size=16, batch_size=choose_batch(1295, 1024),
                       runs_dir=quick["runs_dir"] + "-warm")
    base["runs_dir"] = quick["runs_dir"]
    run = imagefit.train(**base, time_budget="30s")
    m = run.metrics
    assert_kept_to_its_plan(m)
    assert m["devices"] == {"plan": "cpu", "fit": "cpu", "evaluate": "cpu"}
    plan = m["budget_plan"]
    assert any(n.startswith("Start: from scratch, because images of 8 px") for n in m["data_notes"])
    assert plan["steps_per_epoch"] >= 20 and m["steps_run"] >= 0.9 * plan["steps"]  # the small set gets its steps
    saved = yaml.safe_load((run.dir / "config.yaml").read_text())
    assert saved["model"] == plan["model"] and saved["batch_size"] == plan["batch_size"] and saved["epochs"] is None
    report = (run.dir / "report.md").read_text()
    assert "Where the time went" in report and f"{plan['model']} trains {plan['steps']} steps" in report


def test_pinned_keys_reach_the_run(quick):
    args = {k: v for k, v in quick.items() if k not in ("epochs", "model")}
    run = imagefit.train(**args, recipe="fast", model="airbench", tta="none", image_size=64, early_size=0,
                         time_budget="15s")
    saved = yaml.safe_load((run.dir / "config.yaml").read_text())
    assert (saved["model"], saved["batch_size"], saved["tta"], saved["image_size"]) == ("airbench", 64, "none", 64)
    assert saved["early_size"] == 0  # pinned off: progressive resizing would otherwise start at 32 px
    assert run.metrics["budget_plan"]["batch_size"] == 64 and run.metrics["budget_plan"]["early_size"] is None


def test_a_resumed_budgeted_run_replans_the_time_left(tmp_path):
    run_dir = tmp_path / "runs" / "b"
    proc = start_cli("train", "--dataset", "digits", "--time-budget", "40s", "--name", "b", "--runs-dir", tmp_path / "runs",
                     "--cache-dir", tmp_path / "cache", "--no-progress", "--precision", "32")
    deadline = time.time() + 120
    while time.time() < deadline and not (run_dir / "checkpoints" / "last.ckpt").exists():
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=120) == 0, proc.stderr.read()
    first = json.loads((run_dir / "metrics.json").read_text())
    assert first["interrupted"]
    resumed = start_cli("train", "--resume", run_dir, "--no-progress")
    assert resumed.wait(timeout=120) == 0, resumed.stderr.read()
    m = json.loads((run_dir / "metrics.json").read_text())
    assert not m["interrupted"] and m["steps_run"] > first["steps_run"]
    assert any(r.startswith("resumed after") for r in m["budget_plan"]["replans"])
    assert m["steps_run"] == m["budget_plan"]["steps"] or m["stopped_by_budget"]


def test_diagnosis_names_collapse_chance_and_cut_short_runs():
    from imagefit.config import TrainConfig
    from imagefit.evaluate.shortfalls import diagnose

    cfg = TrainConfig(dataset="x.zip", time_budget="15m")
    rows = [{"val_loss": 3.0}, {"val_loss": 2.5}]
    falling = diagnose(rows, {"test_accuracy": 0.6, "f1_macro": 0.58, "num_classes": 10, "predicted_classes": 10,
                              "image_size": 96}, cfg)
    assert len(falling) == 1 and falling[0].startswith("Undertrained") and "--time-budget" in falling[0]
    collapsed = diagnose([], {"test_accuracy": 0.218, "f1_macro": 0.014, "num_classes": 101, "predicted_classes": 4}, cfg)
    assert collapsed and collapsed[0].startswith("Collapsed") and "4 of the 101" in collapsed[0]
    chance = diagnose([], {"test_accuracy": 0.0947, "f1_macro": 0.05, "num_classes": 10, "predicted_classes": 5}, cfg)
    assert chance and chance[0].startswith("Not learned")
    healthy = diagnose([{"val_loss": 0.50}, {"val_loss": 0.49}],
                       {"test_accuracy": 0.9, "f1_macro": 0.89, "num_classes": 10, "predicted_classes": 10}, cfg)
    assert healthy == []
