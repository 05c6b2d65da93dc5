"""Every configuration value records who set it: the user, a recipe, the planner or a default (issue 25's contract:
metrics.json's config_sources, config.yaml's line comments, the report's set-up table)."""
import json

import yaml

import imagefit
from imagefit.config import TrainConfig
from imagefit.config_values import SOURCES, read_sources


def non_default(sources: dict) -> dict:
    return {k: v for k, v in sources.items() if v != "default"}


def test_the_user_a_recipe_and_the_defaults_are_told_apart():
    cfg = TrainConfig.from_dict({"recipe": "fast", "epochs": 3, "lr": 0.5})
    sources = cfg.config_sources()
    assert set(sources) == {f for f in cfg.to_dict()} and set(sources.values()) <= set(SOURCES)
    assert sources["optimizer"] == "recipe" and sources["batch_size"] == "recipe" and sources["model"] == "recipe"
    assert sources["epochs"] == "user" and sources["lr"] == "user" and sources["recipe"] == "user"
    assert sources["seed"] == "default" and sources["dataset"] == "default"


def test_a_pin_equal_to_the_default_is_still_the_users():
    assert TrainConfig.from_dict({"batch_size": 128, "seed": 0}).config_sources()["seed"] == "user"
    assert TrainConfig.from_dict({"batch_size": 128}).config_sources()["seed"] == "default"


def test_replace_keeps_sources_and_decided_records_the_planner():
    cfg = TrainConfig.from_dict({"time_budget": "1m", "batch_size": 64})
    assert cfg.replace(name="x").config_sources() == cfg.config_sources()  # lost by replace() before issue 25
    decided = cfg.decided("planner", model="airbench93", tta="flip")
    assert decided.config_sources()["model"] == "planner" and decided.config_sources()["batch_size"] == "user"
    assert cfg.config_sources()["model"] == "default"  # the original is untouched


def test_recipe_auto_decided_keeps_the_pins_and_names_the_planner():
    cfg = TrainConfig.from_dict({"time_budget": "1m", "batch_size": 64, "seed": 0})
    scratch = cfg.decide_start(False)
    sources = scratch.config_sources()
    assert scratch.recipe == "fast" and scratch.batch_size == 64 and scratch.seed == 0
    assert sources["pretrained"] == "planner" and sources["recipe"] == "planner"
    assert sources["batch_size"] == "user" and sources["seed"] == "user" and sources["optimizer"] == "recipe"


def test_a_config_built_directly_counts_what_differs_from_a_default_as_given():
    sources = TrainConfig(batch_size=32, optimizer="sgd").config_sources()
    assert sources["batch_size"] == "user" and sources["optimizer"] == "user" and sources["seed"] == "default"


def test_config_yaml_names_each_source_and_load_reads_them_back(tmp_path):
    cfg = TrainConfig.from_dict({"recipe": "fast", "epochs": 3}).decided("planner", tta="flip")
    path = tmp_path / "config.yaml"
    cfg.save(path)
    text = path.read_text()
    assert "\noptimizer: muon  # recipe\n" in text and "\nepochs: 3  # user\n" in text and "\ntta: flip  # planner\n" in text
    assert "\nseed: 0\n" in text  # defaults carry no comment
    assert yaml.safe_load(text)["epochs"] == 3  # comments are not values
    again = TrainConfig.load(path, {"seed": 7})
    assert again == cfg.replace(seed=7)
    assert again.config_sources() == {**cfg.config_sources(), "seed": "user"}  # an override is the user's


def test_a_hand_written_config_is_all_the_users(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("optimizer: sgd  # planner\nepochs: 2\n")  # a comment in the user's own file is not a source
    assert read_sources(path) == {}
    sources = TrainConfig.load(path).config_sources()
    assert sources["optimizer"] == "user" and sources["epochs"] == "user" and sources["seed"] == "default"


def test_a_fast_run_records_the_recipe_and_the_user(quick):
    run = imagefit.train({**quick, "model": None, "batch_size": None}, recipe="fast", epochs=3, image_size=16,
                         limit_train_batches=1)
    sources = json.loads((run.dir / "metrics.json").read_text())["config_sources"]
    assert sources["optimizer"] == "recipe" and sources["epochs"] == "user" and sources["image_size"] == "user"
    assert read_sources(run.dir / "config.yaml") == sources  # the folder says the same
    report = (run.dir / "report.md").read_text()
    assert "| Setting | Value | Set by |" in report and "| Epochs | 3 configured, 3 run | user |" in report


def test_a_budgeted_run_records_the_planners_choices_beside_the_pins(quick):
    base = {k: v for k, v in quick.items() if k not in ("model", "epochs")}  # batch 64 pinned, the rest planned
    run = imagefit.train(base, time_budget="20s", image_size=16)
    m = json.loads((run.dir / "metrics.json").read_text())
    sources = m["config_sources"]
    assert sources["batch_size"] == "user" and run.config.batch_size == 64
    assert sources["model"] == "planner" and run.config.model == m["budget_plan"]["model"]
    assert sources["epochs"] == "planner" and sources["recipe"] == "planner" and sources["pretrained"] == "planner"
    assert sources["optimizer"] == "recipe"
    assert "| Model | " in (report := (run.dir / "report.md").read_text())
    assert next(line for line in report.splitlines() if line.startswith("| Model | ")).endswith("| planner |")
    assert next(line for line in report.splitlines() if line.startswith("| Batch size | ")).endswith("| 64 | user |")
