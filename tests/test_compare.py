"""`imagefit compare` on real runs: the files, the table, the sentences, per-class changes, mistakes."""
import csv
import json
import re
import shutil

import pytest
from PIL import Image

import imagefit
from imagefit.cli import main
from imagefit.report.findings import (best_sentence, calibration_sentence, comparison_sentence, moved,
                                     per_class_sentence, raised, spread)
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
    """The real pair's sentences: the numbers read back out of them equal the runs' metrics.json (the exact
    wording is checked on fixed numbers in test_sentence_wording below)."""
    tmp, plain, es = stopping_pair
    result = imagefit.compare([plain.dir, es.dir])
    assert result.dir == tmp / "runs" and result.reference == "plain"  # default: the common parent, the first run
    p, e = plain.metrics, es.metrics
    text = " ".join(result.sentences)
    assert "Early stopping (patience 1 on val_loss, best weights restored)" in text
    ended = re.search(r"ended es at epoch (\d+) of 12, saving (\d+) epochs \(best epoch (\d+)\)\. Against plain, "
                      r"which ran all 12, it", text)
    if e["stopped_early"] and e["epochs_saved"]:
        assert ended and [int(x) for x in ended.groups()] == [e["stop_epoch"], e["epochs_saved"], e["best_epoch"]]
    else:
        assert not ended and ("fired in es only at its last epoch, 12 of 12" in text or "did not fire in es" in text)
    acc = re.search(r"it (raised|lowered) test accuracy from ([\d.]+) to ([\d.]+) \(([+-][\d.]+)\)", text)
    if acc:
        verb, a, b, d = acc.group(1), *map(float, acc.groups()[1:])
        assert (a, b) == (pytest.approx(p["test_accuracy"], abs=5e-4), pytest.approx(e["test_accuracy"], abs=5e-4))
        assert d == pytest.approx(e["test_accuracy"] - p["test_accuracy"], abs=5e-4 + 1e-9) and (verb == "raised") is (d > 0)
    else:
        assert re.search(r"it left test accuracy unchanged at ([\d.]+)", text)
        assert abs(p["test_accuracy"] - e["test_accuracy"]) < 5e-4
    loss = re.search(r"test loss (fell|rose) from ([\d.]+) to ([\d.]+)", text)
    assert loss and [float(x) for x in loss.groups()[1:]] == [pytest.approx(p["test_loss"], abs=5e-4),
                                                             pytest.approx(e["test_loss"], abs=5e-4)]
    assert (loss.group(1) == "fell") is (e["test_loss"] < p["test_loss"])
    md = result.markdown.read_text()
    assert ("yes, at epoch" in md) is e["stopped_early"]
    ece = {"plain": p["test_ece"], "es": e["test_ece"]}
    differs = re.search(r"Calibration differs: (\w+)'s confidence strays furthest from its accuracy \(test expected "
                        r"calibration error ([\d.]+), 15 bins\), (\w+)'s least \(([\d.]+)\)", text)
    if differs:
        worst, hi, best, lo = differs.group(1), float(differs.group(2)), differs.group(3), float(differs.group(4))
        assert {worst, best} == {"plain", "es"} and ece[worst] >= ece[best] and ece[worst] - ece[best] >= 0.02
        assert (hi, lo) == (pytest.approx(ece[worst], abs=5e-4), pytest.approx(ece[best], abs=5e-4))
    else:
        assert "Calibration is similar across the runs" in text and abs(ece["plain"] - ece["es"]) < 0.02
    row = re.search(r"^\| Test ECE \(15 bins\) \| \**([\d.]+)\** \| \**([\d.]+)\** \|$", md, re.M)
    assert [float(x) for x in row.groups()] == [pytest.approx(ece["plain"], abs=5e-5), pytest.approx(ece["es"], abs=5e-5)]
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
    gains = [c for d, c in change if d > 0][:5]
    losses = [c for d, c in change if d < 0][-5:][::-1]
    rows = re.findall(r"^\| (c\d\d) \| ([\d.]+) \| ([\d.]+) \| ([+-]?[\d.]+) \|$", section, re.M)
    assert [r[0] for r in rows] == gains + losses  # the largest gains, then the largest losses, worst first
    for c, was, now, d in rows:  # each number read back equals the runs' classification_report.csv
        assert float(was) == pytest.approx(fa[c], abs=5e-4) and float(now) == pytest.approx(fb[c], abs=5e-4)
        assert float(d) == pytest.approx(fb[c] - fa[c], abs=1e-3)
    counts = re.search(r"Against a, b's F1 rose on (\d+) of 14 classes and fell on (\d+)", section)
    assert counts and [int(x) for x in counts.groups()] == [sum(d > 0.0005 for d, _ in change),
                                                            sum(d < -0.0005 for d, _ in change)]
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


def run_record(name, config, class_f1=None, **metrics):
    return RunRecord(dir=None, label=name, group=name, config=config, history=[], class_f1=class_f1 or {},
                     metrics=metrics)


def test_sentence_wording():
    """Each kind of sentence on fixed numbers, against the text written out in full."""
    plain = Group("plain", [run_record("plain", {"epochs": 12}, test_accuracy=0.9, test_loss=0.35, epochs=12,
                                       epochs_run=12, wall_seconds=30.0)])
    rule = {"patience": 1, "monitor": "val_loss", "restore_best": True}
    es = Group("es", [run_record("es", {"epochs": 12, "early_stopping": True, "patience": 1}, test_accuracy=0.92,
                                 test_loss=0.3, epochs=12, epochs_run=5, stopped_early=True, stop_epoch=5,
                                 epochs_saved=7, best_epoch=4, wall_seconds=14.0, early_stopping=rule)])
    assert comparison_sentence(plain, es) == (
        "Early stopping (patience 1 on val_loss, best weights restored) ended es at epoch 5 of 12, saving 7 epochs "
        "(best epoch 4). Against plain, which ran all 12, it raised test accuracy from 0.900 to 0.920 (+0.020), and "
        "test loss fell from 0.350 to 0.300 (-0.050); wall time went from 30.0 s to 14.0 s.")
    idle = Group("idle", [run_record("idle", {"epochs": 12, "early_stopping": True, "patience": 1}, test_accuracy=0.9,
                                     test_loss=0.35, epochs=12, epochs_run=12, stopped_early=False, best_epoch=12,
                                     early_stopping=rule)])
    assert comparison_sentence(plain, idle) == (
        "Early stopping (patience 1 on val_loss, best weights restored) did not fire in idle: all 12 epochs ran "
        "(validation loss was still improving at the last epoch). Against plain, which ran all 12, it left test "
        "accuracy unchanged at 0.900, and test loss stayed at 0.350.")

    slow = Group("a", [run_record("a", {"lr": 0.001}, test_accuracy=0.5, test_loss=1.2, f1_macro=0.45)])
    fast = Group("*b*", [run_record("*b*", {"lr": 0.01}, test_accuracy=0.6, test_loss=1.0, f1_macro=0.55)])
    assert comparison_sentence(slow, fast) == (  # a name is literal markdown in the sentence
        r"\*b\* against a: changing lr 0.001 → 0.01 raised test accuracy from 0.500 to 0.600 (+0.100); test loss "
        "fell from 1.200 to 1.000 (-0.200) and macro F1 rose from 0.450 to 0.550 (+0.100).")

    scratch = Group("s", [run_record("s", {"model": "seed-cnn"}, test_accuracy=0.5, test_loss=1.5,
                                     trainable_params=100_000, wall_seconds=30.0)])
    transfer = Group("t", [run_record("t", {"model": "tf_efficientnet_lite0", "pretrained": True,
                                            "transfer_strategy": "linear-probe"}, test_accuracy=0.8, test_loss=0.7,
                                      trainable_params=3843, wall_seconds=12.0, image_size=32, input_size=224)])
    assert comparison_sentence(scratch, transfer) == (
        "t against s: transfer learning (tf_efficientnet_lite0 from ImageNet weights, linear probe on frozen features) "
        "raised test accuracy from 0.500 to 0.800 (+0.300); test loss fell from 1.500 to 0.700 (-0.800). It trained "
        "3,843 parameters (against 100,000) in 12.0 s of wall time (against 30.0 s); the pretrained network saw the "
        "32 px images upscaled to 224 px.")

    ref = Group("a", [run_record("a", {}, {"cat": 0.5, "dog": 0.8, "owl": 0.6})])
    other = Group("b", [run_record("b", {}, {"cat": 0.7, "dog": 0.6, "owl": 0.6})])
    assert per_class_sentence(ref, other) == (
        "Against a, b's F1 rose on 1 of 3 classes and fell on 1; the largest gain is cat (+0.200, 0.500 → 0.700); "
        "the largest loss is dog (-0.200, 0.800 → 0.600).")
    assert best_sentence([Group("a", [record("a", 0.8, test_loss=0.6, wall_seconds=20.0)]),
                          Group("b", [record("b", 0.85, test_loss=0.5, wall_seconds=95.0)])]) == (
        "The highest test accuracy is b's 0.850, which also has the lowest test loss (0.500). Wall time ranged from "
        "20.0 s (a) to 1 min 35 s (b).")


def digit_photos(root, start, n=60):
    """Some of sklearn's digit scans as PNG files with a label file, as a user keeps a year's test set."""
    import numpy as np
    from sklearn.datasets import load_digits

    digits = load_digits()
    root.mkdir(parents=True)
    rows = []
    for i in range(start, start + n):
        Image.fromarray((digits.images[i] * 255 / 16).astype(np.uint8)).save(root / f"{i}.png")
        rows.append(f"{i}.png,{digits.target[i]}")
    (root / "labels.csv").write_text("file,label\n" + "\n".join(rows) + "\n")
    return root / "labels.csv"


def test_evaluation_folders_are_compared_beside_their_run(trained_digits, tmp_path, capsys):
    """The model on last year's test set against this year's, and against its own test split: one page."""
    predictor = imagefit.load(trained_digits.dir, precision="32")
    run = tmp_path / "runs" / "real"
    shutil.copytree(trained_digits.dir, run)
    folders = []
    for year, start in (("2025", 0), ("2026", 900)):
        table = digit_photos(tmp_path / year, start)
        folders.append(run / "evaluations" / year)
        predictor.evaluate(str(table), out=folders[-1], cache_dir=str(tmp_path / "cache"))
    onnx = tmp_path / "m.onnx"
    assert main(["export", str(run), "--out", str(onnx)]) == 0
    imagefit.load(onnx).evaluate(str(tmp_path / "2026" / "labels.csv"), out=tmp_path / "onnx-2026",
                                 cache_dir=str(tmp_path / "cache"))
    assert main(["compare", str(run), *map(str, folders), str(tmp_path / "onnx-2026"), "--out", str(tmp_path / "cmp")]) == 0
    printed = capsys.readouterr().out
    page = (tmp_path / "cmp" / "comparison.md").read_text()
    assert page.startswith("# Comparison of 1 run and 3 evaluations")
    header = next(line for line in page.splitlines() if line.startswith("|  |"))
    assert header == "|  | real | real on 2025 | real on 2026 | onnx-2026 |"
    scored = next(line for line in page.splitlines() if line.startswith("| Scored on |"))
    assert "digits (test)" in scored and f"{tmp_path / '2025' / 'labels.csv'} (all)" in scored
    rows = {r["run"]: r for r in csv.DictReader((tmp_path / "cmp" / "comparison.csv").open())}
    m2026 = metrics_of(folders[1])
    assert float(rows["real on 2026"]["test_accuracy"]) == m2026["test_accuracy"]
    assert float(rows["real"]["test_accuracy"]) == trained_digits.metrics["test_accuracy"]
    # the same model's two years, in a sentence with both numbers; the exported copy scores as its run
    assert ("real on 2025: the same model as real, scored on" in printed and
            f"{metrics_of(folders[0])['test_accuracy']:.3f}" in printed)
    assert float(rows["onnx-2026"]["test_accuracy"]) == pytest.approx(m2026["test_accuracy"])
    assert "the exported model" in page and "[report](../runs/real/evaluations/2026/report.md)" in page
