"""The transfer planner: strategy and trainable depth as pure functions of measured speeds."""

from imagefit.plan.transfer import (CACHE_SHARE, FULL_TARGET_EPOCHS, TARGET_TOP_EPOCHS, TransferSpeeds,
                                    choose_transfer, stage_cuts)

LITE0_STAGES = [1, 2, 2, 3, 3, 4, 1]


def lite0_like(full_train=None, values_per_image=None):
    """Speeds shaped like EfficientNet-Lite0 at 128 px on this CPU (bench/README.md): the first blocks cost most of
    the trunk (about 200 images/s through 15 blocks), a top trains at 1,200 images/s with one block, 200 with 8."""
    n = 16
    seconds = [0.03, 0.02, 0.06, 0.03, 0.02] + [0.0065] * 12  # per 48 images: the stem, then each block
    trunk = {cut: 48 / sum(seconds[:cut + 1]) for cut in range(n + 1)}
    top = {k: 48 / (5 * (0.001 + 0.006 * k)) for k in stage_cuts(LITE0_STAGES)[:-1]}
    values = values_per_image or {cut: 1000 for cut in range(n + 1)}
    return TransferSpeeds(n, trunk, top, full_train, values=values)


def test_stage_cuts_are_counted_from_the_top():
    assert stage_cuts(LITE0_STAGES) == [1, 5, 8, 11, 13, 15, 16]


def test_a_fast_whole_network_fine_tunes():
    speeds = lite0_like(full_train=400.0)
    choice = choose_transfer(900, 5000, 500, 1000, speeds)
    assert choice.strategy == "fine-tune" and choice.epochs >= FULL_TARGET_EPOCHS
    # the same machine and data with a pinned partial strategy only chooses the depth
    assert choose_transfer(900, 5000, 500, 1000, speeds, "partial").strategy == "partial"


def test_partial_takes_the_deepest_top_that_fits_and_deepens_with_time():
    speeds = lite0_like(full_train=20.0)  # a whole-network fine-tune would get under one epoch
    depths = []
    for seconds in (300, 600, 900, 1800, 3600):
        choice = choose_transfer(seconds, 45_000, 5_000, 10_000, speeds)
        assert choice.strategy in ("partial", "linear-probe")
        if choice.strategy == "partial":
            assert choice.cache_seconds <= seconds
            depths.append(choice.trainable_blocks)
    assert depths == sorted(depths) and len(set(depths)) > 1
    long = choose_transfer(3600, 45_000, 5_000, 10_000, speeds)
    assert long.epochs >= TARGET_TOP_EPOCHS and long.cache_seconds <= CACHE_SHARE * 3600


def test_too_little_time_gives_a_linear_probe_and_says_what_would_help():
    choice = choose_transfer(60, 45_000, 5_000, 10_000, lite0_like())
    assert choice.strategy == "linear-probe" and "smaller --image-size" in choice.reason


def test_a_cache_that_would_not_fit_is_never_chosen():
    values = {cut: (50_000 if cut < 8 else 2_000) for cut in range(17)}  # large activations below block 8
    speeds = lite0_like(full_train=20.0, values_per_image=values)
    roomy = choose_transfer(3600, 45_000, 5_000, 10_000, speeds, max_cache_bytes=100 << 30)
    tight = choose_transfer(3600, 45_000, 5_000, 10_000, speeds, max_cache_bytes=1 << 30)
    assert roomy.trainable_blocks > 8 and tight.trainable_blocks <= 8


def test_a_budgeted_transfer_run_plans_its_strategy_and_keeps_to_its_plans(quick, tmp_path):
    import yaml

    import imagefit
    from helpers import assert_kept_to_its_plan, write_image_folder

    write_image_folder(tmp_path / "photos", per_class=10, side=64)
    args = {k: v for k, v in quick.items() if k not in ("model", "epochs", "batch_size", "dataset")}
    # no model and no --pretrained: photos of 64 px start from ImageNet weights (recipe auto, train.start_plan)
    run = imagefit.train(**args, dataset=str(tmp_path / "photos"), time_budget="60s")
    m = run.metrics
    assert any(n.startswith("Start: ImageNet transfer, because photos of 66 px") for n in m["data_notes"])
    plan = m["transfer_plan"]
    assert plan["strategy"] in ("fine-tune", "partial", "linear-probe") and plan["reason"]
    assert m["transfer_strategy"] == plan["strategy"]
    if m["budget_plan"]:  # a fine-tune's steps are planned too (a 30-image set stops at the 100-epoch cap, earlier)
        assert_kept_to_its_plan(m)
    assert abs(sum(m["time_breakdown"].values()) - m["wall_seconds"]) <= 0.03 * m["wall_seconds"] + 0.3
    assert any(n.startswith("Transfer plan: ") for n in m["data_notes"])
    saved = yaml.safe_load((run.dir / "config.yaml").read_text())  # --config repeats the choice
    assert saved["transfer_strategy"] == plan["strategy"] and saved["trainable_blocks"] == plan["trainable_blocks"]
    assert saved["pretrained"] is True and saved["recipe"] == "none" and saved["model"] == "tf_efficientnet_lite0"


def test_smaller_input_sides_are_tried_largest_first():
    from imagefit.plan.transfer import input_sizes

    assert input_sizes(128) == [128, 96, 64]
    assert input_sizes(224) == [224, 160, 112]
    assert input_sizes(64) == [64]  # never below 64 px


def test_only_a_fine_tune_or_a_top_with_its_epochs_meets_the_target():
    speeds = lite0_like(full_train=20.0)
    assert choose_transfer(3600, 45_000, 5_000, 10_000, speeds).meets_target
    assert not choose_transfer(600, 45_000, 5_000, 10_000, speeds).meets_target  # a smaller side is worth trying
    assert not choose_transfer(60, 45_000, 5_000, 10_000, speeds).meets_target


def test_a_pinned_probe_also_looks_at_larger_sides_and_a_pinned_fine_tune_only_at_smaller():
    from imagefit.plan.transfer import side_candidates

    assert side_candidates("linear-probe", 128) == [224, 192, 160, 128, 96, 64]
    assert side_candidates("fine-tune", 128) == [128, 96, 64]
    assert side_candidates("linear-probe", 300) == [300, 224, 192, 160, 144]  # never upscaled past its own side


def test_a_pinned_probe_takes_the_largest_side_whose_feature_pass_fits():
    from imagefit.plan.transfer import PROBE_SHARE, choose_side

    speeds = {224: (0.0, 100.0), 160: (0.0, 200.0), 128: (0.0, 300.0)}  # 60,000 images: 600, 300, 200 s
    long = choose_side("linear-probe", 900, 45_000, 5_000, 10_000, speeds)
    assert (long.strategy, long.input_size, round(long.cache_seconds)) == ("linear-probe", 224, 600)
    assert long.meets_target and long.cache_seconds <= PROBE_SHARE * 900
    assert choose_side("linear-probe", 450, 45_000, 5_000, 10_000, speeds).input_size == 160
    short = choose_side("linear-probe", 100, 45_000, 5_000, 10_000, speeds)
    assert short.input_size == 128 and not short.meets_target and "cheapest" in short.reason


def test_a_pinned_fine_tune_takes_the_largest_side_that_gets_its_epochs_else_the_most_epochs():
    from imagefit.plan.transfer import choose_side

    speeds = {128: (60.0, 180.0), 96: (110.0, 330.0), 64: (250.0, 750.0)}  # (training, forward) images/s
    long = choose_side("fine-tune", 3600, 45_000, 5_000, 10_000, speeds)
    assert (long.strategy, long.input_size) == ("fine-tune", 96) and long.epochs >= FULL_TARGET_EPOCHS
    assert long.speed == (110.0, 330.0)  # the step plan uses the speed measured at the chosen side
    short = choose_side("fine-tune", 900, 45_000, 5_000, 10_000, speeds)
    assert short.input_size == 64 and short.epochs < FULL_TARGET_EPOCHS and not short.meets_target


def test_a_budgeted_run_with_a_pinned_strategy_gets_its_side_chosen(quick, tmp_path):
    import yaml

    import imagefit
    from imagefit.plan.probe import PROBE_MAX_EPOCHS
    from helpers import write_image_folder

    write_image_folder(tmp_path / "photos", per_class=10, side=64)
    args = {k: v for k, v in quick.items() if k not in ("model", "epochs", "batch_size", "dataset")}
    run = imagefit.train(**args, dataset=str(tmp_path / "photos"), model="tf_efficientnet_lite0", pretrained=True,
                         transfer_strategy="linear-probe", time_budget="40s")
    plan, m = run.metrics["transfer_plan"], run.metrics
    # 30 images: the feature pass at 224 px takes a second or two, far inside the budget
    assert (plan["strategy"], plan["input_size"]) == ("linear-probe", 224), plan
    assert m["input_size"] == 224 and m["transfer_strategy"] == "linear-probe"
    assert m["epochs_run"] == PROBE_MAX_EPOCHS  # a head on 30 images could run 100 epochs in the budget
    assert m["budget_plan"]["image_size"] == 224 and "at 224 px" in m["budget_note"]  # not the images' 66 px
    assert yaml.safe_load((run.dir / "config.yaml").read_text())["image_size"] == 224  # --config repeats it
    pinned = imagefit.train(**args, dataset=str(tmp_path / "photos"), model="tf_efficientnet_lite0", pretrained=True,
                            transfer_strategy="linear-probe", time_budget="40s", image_size=96)
    assert pinned.metrics["transfer_plan"] is None and pinned.metrics["input_size"] == 96
