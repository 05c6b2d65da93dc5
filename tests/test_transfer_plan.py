"""The transfer planner: strategy and trainable depth as pure functions of measured speeds."""

from imagefit.train.transfer_plan import (CACHE_SHARE, FULL_TARGET_EPOCHS, TARGET_TOP_EPOCHS, TransferSpeeds,
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


def test_a_budgeted_transfer_run_plans_its_strategy_and_ends_in_time(quick, tmp_path):
    import yaml

    import imagefit
    from test_run import write_image_folder

    write_image_folder(tmp_path / "photos", per_class=10, side=64)
    args = {k: v for k, v in quick.items() if k not in ("model", "epochs", "batch_size", "dataset")}
    # no model and no --pretrained: photos of 64 px start from ImageNet weights (recipe auto, train.start_plan)
    run = imagefit.train(**args, dataset=str(tmp_path / "photos"), time_budget="60s")
    m = run.metrics
    assert any(n.startswith("Start: ImageNet transfer, because photos of 66 px") for n in m["data_notes"])
    plan = m["transfer_plan"]
    assert plan["strategy"] in ("fine-tune", "partial", "linear-probe") and plan["reason"]
    assert m["transfer_strategy"] == plan["strategy"]
    assert m["wall_seconds"] <= 60 * 1.05  # (a 30-image set stops at the 100-epoch cap, earlier)
    assert any(n.startswith("Transfer plan: ") for n in m["data_notes"])
    saved = yaml.safe_load((run.dir / "config.yaml").read_text())  # --config repeats the choice
    assert saved["transfer_strategy"] == plan["strategy"] and saved["trainable_blocks"] == plan["trainable_blocks"]
    assert saved["pretrained"] is True and saved["recipe"] == "none" and saved["model"] == "tf_efficientnet_lite0"


def test_smaller_input_sides_are_tried_largest_first():
    from imagefit.train.transfer_plan import input_sizes

    assert input_sizes(128) == [128, 96, 64]
    assert input_sizes(224) == [224, 160, 112]
    assert input_sizes(64) == [64]  # never below 64 px


def test_only_a_fine_tune_or_a_top_with_its_epochs_meets_the_target():
    speeds = lite0_like(full_train=20.0)
    assert choose_transfer(3600, 45_000, 5_000, 10_000, speeds).meets_target
    assert not choose_transfer(600, 45_000, 5_000, 10_000, speeds).meets_target  # a smaller side is worth trying
    assert not choose_transfer(60, 45_000, 5_000, 10_000, speeds).meets_target
