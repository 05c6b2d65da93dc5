"""`imagefit compare` on real runs: the files, the table, the sentences, per-class changes, mistakes."""
import csv
import json
import shutil

import pytest
from PIL import Image

import imagefit
from imagefit.cli import main
from imagefit.report.findings import calibration_sentence, moved, raised, spread
from imagefit.report.runs import Group, RunRecord



def write_many_classes(root, k=14, per_class=6):
    """Real PNG files: one noisy color per class, so a tiny CNN learns some classes better than others."""
    import colorsys

    import numpy as np

    rng = np.random.default_rng(0)
    names = [f"c{i:02d}" for i in range(k)]
    for c, name in enumerate(names):
        (root / name).mkdir(parents=True)
        color = np.array(colorsys.hsv_to_rgb(c / k, 0.8, 0.9)) * 200
        for i in range(per_class):
            pixels = np.clip(color + rng.normal(0, 40, (16, 16, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    return names


def metrics_of(run_dir):
    return json.loads((run_dir / "metrics.json").read_text())


@pytest.fixture(scope="module")
def stopping_pair(tmp_path_factory):
    """Adam at 1e-2 without augmentation overfits digits within a few epochs: with patience 1 it stops."""
    tmp = tmp_path_factory.mktemp("pair")
    common = dict(dataset="digits", model="seed-cnn", epochs=12, batch_size=64, optimizer="adam", lr=0.01,
                  augment="none", runs_dir=str(tmp / "runs"), cache_dir=str(tmp / "cache"), progress=False,
                  precision="32")
    plain = imagefit.train(**common, name="plain")
    es = imagefit.train(**common, name="es", early_stopping=True, patience=1)
    return tmp, plain, es


def test_early_stopping_sentence_carries_the_numbers(stopping_pair):
    tmp, plain, es = stopping_pair
    result = imagefit.compare([plain.dir, es.dir])
    assert result.dir == tmp / "runs" and result.reference == "plain"  # default: the common parent, the first run
    p, e = plain.metrics, es.metrics
    text = " ".join(result.sentences)
    rule = "Early stopping (patience 1 on val_loss, best weights restored)"
    if e["stopped_early"] and e["epochs_saved"]:
        assert (f"{rule} ended es at epoch {e['stop_epoch']} of 12, saving {e['epochs_saved']} epochs "
                f"(best epoch {e['best_epoch']}). Against plain, which ran all 12, it") in text
    elif e["stopped_early"]:
        assert f"{rule} fired in es only at its last epoch, 12 of 12, saving no epochs" in text
    else:
        assert f"{rule} did not fire in es" in text
    a, b = p["test_accuracy"], e["test_accuracy"]
    if abs(b - a) >= 0.0005:
        assert f"test accuracy from {a:.3f} to {b:.3f} ({b - a:+.3f})" in text
    la, lb = p["test_loss"], e["test_loss"]
    assert f"test loss {'fell' if lb < la else 'rose'} from {la:.3f} to {lb:.3f}" in text or abs(lb - la) < 0.0005
    md = result.markdown.read_text()
    assert ("yes, at epoch" in md) is e["stopped_early"]
    worst, best = (("plain", p), ("es", e)) if p["test_ece"] >= e["test_ece"] else (("es", e), ("plain", p))
    if worst[1]["test_ece"] - best[1]["test_ece"] >= 0.02:
        assert (f"Calibration differs: {worst[0]}'s confidence strays furthest from its accuracy (test expected "
                f"calibration error {worst[1]['test_ece']:.3f}, 15 bins), {best[0]}'s least") in text
    else:
        assert "Calibration is similar across the runs" in text
    assert f"| Test ECE (15 bins) | {p['test_ece']:.4f}" in md.replace("**", "")
    assert "[report](plain/report.md)" in md and "[report](es/report.md)" in md


def test_a_wall_time_won_by_the_feature_cache_is_credited_to_the_cache(tmp_path):
    common = dict(dataset="digits", model="tf_efficientnet_lite0", pretrained=True, transfer_strategy="linear-probe",
                  epochs=3, batch_size=128, runs_dir=str(tmp_path / "runs"), cache_dir=str(tmp_path / "cache"),
                  progress=False, precision="32")
    first = imagefit.train(**common, name="probe")  # computes the features
    second = imagefit.train(**common, name="probe-es", early_stopping=True, patience=5)  # reads them back
    assert first.metrics["frozen_inputs_from_cache"] is False and second.metrics["frozen_inputs_from_cache"] is True
    text = " ".join(imagefit.compare([first.dir, second.dir]).sentences)
    assert ("but probe-es read the frozen network's features from the cache while probe computed them, so most "
            "of that difference is the cache, not the change") in text


def test_the_command_writes_every_file_where_asked(stopping_pair, tmp_path, capsys):
    _, plain, es = stopping_pair
    out = tmp_path / "cmp"
    assert main(["compare", str(plain.dir), str(es.dir), "--out", str(out), "--reference", "es"]) == 0
    printed = capsys.readouterr().out
    assert f"comparison: {out / 'comparison.html'}" in printed and printed.startswith("- ")
    for name in ("comparison.csv", "comparison.md", "comparison.png", "comparison.html"):
        assert (out / name).stat().st_size > 0
    assert not (out / "comparison_groups.csv").exists()  # one seed each: no groups
    with Image.open(out / "comparison.png") as im:
        assert im.format == "PNG" and im.size == (1200, 480)
    md = (out / "comparison.md").read_text()
    assert "Reference run: **es**" in md and "## Per-class F1 against es" in md
    rows = list(csv.DictReader(open(out / "comparison.csv")))
    assert [r["run"] for r in rows] == ["plain", "es"]
    for row, run in zip(rows, (plain, es)):
        assert float(row["test_accuracy"]) == run.metrics["test_accuracy"]
        assert float(row["f1_weighted"]) == run.metrics["f1_weighted"]
        assert float(row["test_ece"]) == run.metrics["test_ece"] and float(row["temperature"]) > 0
        assert row["dir"] == str(run.dir)
    assert "[report](../" in md  # links from --out back to each run's report


def test_per_class_gains_and_losses_with_many_classes(tmp_path):
    classes = write_many_classes(tmp_path / "photos")
    common = dict(dataset=str(tmp_path / "photos"), model="seed-cnn", epochs=2, batch_size=16,
                  runs_dir=str(tmp_path / "runs"), cache_dir=str(tmp_path / "cache"), progress=False, precision="32")
    a = imagefit.train(**common, name="a", lr=0.001)
    b = imagefit.train(**common, name="b", lr=0.01)
    result = imagefit.compare([a.dir, b.dir], out=tmp_path / "out")
    md = result.markdown.read_text()

    def f1(run):
        rows = csv.DictReader(open(run.dir / "classification_report.csv"))
        return {r["class"]: float(r["f1-score"]) for r in rows if r["class"] in classes}

    fa, fb = f1(a), f1(b)
    change = sorted(((fb[c] - fa[c], c) for c in classes), key=lambda t: (-t[0], t[1]))
    section = md.split("## Per-class F1 against a")[1]
    assert "### b: the 5 largest gains and losses" in section
    gains = [(d, c) for d, c in change if d > 0][:5]
    losses = [(d, c) for d, c in change if d < 0][-5:][::-1]
    for d, c in gains + losses:
        assert f"| {c} | {fa[c]:.3f} | {fb[c]:.3f} | {d:+.3f} |" in section
    up = sum(d > 0.0005 for d, _ in change)
    down = sum(d < -0.0005 for d, _ in change)
    assert f"Against a, b's F1 rose on {up} of 14 classes and fell on {down}" in section
    assert "Changing lr 0.001 → 0.01 (b against a)" not in md  # the phrase leads with the runs
    assert "b against a: changing lr 0.001 → 0.01" in md


def test_runs_of_the_same_name_in_different_folders_keep_apart(stopping_pair, tmp_path):
    _, plain, _ = stopping_pair
    for parent in ("x", "y"):
        shutil.copytree(plain.dir, tmp_path / parent / "plain")
    result = imagefit.compare([tmp_path / "x" / "plain", tmp_path / "y" / "plain"], out=tmp_path / "out")
    assert [r.label for r in result.runs] == ["x/plain", "y/plain"] and len(result.groups) == 2
    assert "x/plain, with y/plain's configuration," not in " ".join(result.sentences)
    assert "y/plain, with x/plain's configuration, left test accuracy unchanged" in " ".join(result.sentences)


@pytest.mark.parametrize("case", ["missing", "not a run", "bad reference"])
def test_mistakes_are_one_line_and_exit_2(stopping_pair, tmp_path, capsys, case):
    _, plain, _ = stopping_pair
    args = {"missing": [str(tmp_path / "no-such-run")],
            "not a run": [str(tmp_path)],
            "bad reference": [str(plain.dir), "--reference", "nope"]}[case]
    assert main(["compare", *args, "--out", str(tmp_path / "out")]) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("imagefit: error: ")
    assert {"missing": "run folder not found", "not a run": "is not an imagefit run folder (no metrics.json)",
            "bad reference": "reference run 'nope' is not among the compared runs"}[case] in lines[0]
    assert not (tmp_path / "out").exists()


# ---- the wording rules, on numbers chosen to hit each branch -------------------------------------------
def record(name, acc, **metrics):
    return RunRecord(dir=None, label=name, group=name.split("-seed")[0], config={}, history=[], class_f1={},
                     metrics={"test_accuracy": acc, **metrics})


def test_calibration_wording():
    sharp = Group("sharp", [record("sharp", 0.9, test_ece=0.09, test_ece_scaled=0.02)])
    calm = Group("calm", [record("calm", 0.9, test_ece=0.03, test_ece_scaled=0.015)])
    assert calibration_sentence([calm, sharp]) == (
        "Calibration differs: sharp's confidence strays furthest from its accuracy (test expected calibration error "
        "0.090, 15 bins), calm's least (0.030); temperature scaling fitted on validation brings them to 0.020 and "
        "0.015, so the difference was one of overall confidence, which the saved temperature corrects.")
    close = Group("close", [record("close", 0.9, test_ece=0.04)])
    assert calibration_sentence([calm, close]) == ("Calibration is similar across the runs: test expected "
                                                  "calibration error (15 bins) from 0.030 to 0.040.")
    no_val = Group("noval", [record("noval", 0.9, test_ece=0.2)])
    assert calibration_sentence([calm, no_val]).endswith("; noval had no validation split to fit a temperature on.")
    assert calibration_sentence([calm, Group("old", [record("old", 0.9)])]) is None  # a run from before ECE


def test_change_wording():
    assert raised("test accuracy", 0.36, 0.51) == "raised test accuracy from 0.360 to 0.510 (+0.150)"
    assert raised("test accuracy", 0.51, 0.36) == "lowered test accuracy from 0.510 to 0.360 (-0.150)"
    assert raised("test accuracy", 0.5, 0.5002) == "left test accuracy unchanged at 0.500"
    assert moved("test loss", 2.41, 1.94) == "test loss fell from 2.410 to 1.940 (-0.470)"
    assert moved("test loss", 1.0, 1.2) == "test loss rose from 1.000 to 1.200 (+0.200)"
    assert raised("test accuracy", None, 0.5) is None


def test_spread_verdicts():
    a = Group("a", [record("a-seed0", 0.50), record("a-seed1", 0.52)])
    far = Group("b", [record("b-seed0", 0.60), record("b-seed1", 0.62)])
    near = Group("c", [record("c-seed0", 0.51), record("c-seed1", 0.53)])
    assert "exceeds the seed-to-seed spread" in spread(a, far, "test_accuracy")
    assert "0.496–0.524 and 0.596–0.624 do not overlap" in spread(a, far, "test_accuracy")
    assert "within the seed-to-seed spread, std 0.014 and 0.014" in spread(a, near, "test_accuracy")
    assert spread(Group("x", [record("x", 0.5)]), Group("y", [record("y", 0.6)]), "test_accuracy") == ""
