"""`imagefit evaluate`: a finished model scored on new labelled data, its images read as training and prediction
read them (evaluate/new_data.py)."""
import json

import numpy as np
import pytest
from PIL import Image

import imagefit
from helpers import run_imagefit, write_image_folder


@pytest.fixture(scope="module")
def colors_run(tmp_path_factory):
    """seed-cnn trained for 2 epochs on 3 color classes (red, green, blue) of real PNG and JPEG files."""
    tmp = tmp_path_factory.mktemp("colors")
    write_image_folder(tmp / "photos", per_class=12)
    return imagefit.train(dataset=str(tmp / "photos"), model="seed-cnn", epochs=2, batch_size=8, image_size=16,
                          runs_dir=str(tmp / "runs"), cache_dir=str(tmp / "cache"), progress=False, precision="32",
                          name="colors")


def new_photos(root, classes, per_class=5, seed=7):
    """Next month's photos: new files of some of the classes, in a flat folder, and a label file naming them."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True)
    rows = []
    for name in classes:
        channel = ("red", "green", "blue").index(name) if name in ("red", "green", "blue") else 0
        for i in range(per_class):
            pixels = rng.integers(0, 80, (20 + i, 22, 3)).astype(np.uint8)
            pixels[..., channel] += 170
            Image.fromarray(pixels).save(root / f"{name}-{i}.png")
            rows.append(f"{name}-{i}.png,{name}")
    (root / "labels.csv").write_text("file,label\n" + "\n".join(rows) + "\n")
    return root / "labels.csv"


def test_a_run_is_scored_on_new_files_exactly_as_predict_classifies_them(colors_run, tmp_path):
    table = new_photos(tmp_path / "june", ["blue", "red"])  # two of its three classes, in another order
    proc = run_imagefit("evaluate", colors_run.dir, "--dataset", table, "--cache-dir", tmp_path / "cache",
                        "--precision", "32", cwd=tmp_path)
    folder = colors_run.dir / "evaluations" / "june-labels"
    m = json.loads((folder / "metrics.json").read_text())
    assert f"report: {folder / 'report.md'}" in proc.stdout and f"on 10 images of {table}" in proc.stdout
    assert m["images"] == 10 and m["classes_present"] == ["blue", "red"] and m["skipped_files"]["count"] == 0
    for name in ("report.md", "classification_report.txt", "classification_report.csv", "confusion_matrix.png",
                 "confusion_matrix.csv", "top_confusions.csv", "predictions.csv", "files.csv"):
        assert (folder / name).is_file(), name
    # the same files through imagefit.load(...).predict, which decodes each file itself
    files = [json.loads(line.split(",", 1)[1]) for line in (folder / "files.csv").read_text().splitlines()[1:]]
    predicted = imagefit.load(colors_run.dir, precision="32").predict([table.parent / f for f in files])
    rows = [line.split(",") for line in (folder / "predictions.csv").read_text().splitlines()[1:]]
    assert [r[4] for r in rows] == [p.label for p in predicted]  # predicted_name, file by file
    truth = [r[2] for r in rows]
    assert truth == [f.split("-")[0] for f in files]
    assert m["test_accuracy"] == pytest.approx(np.mean([t == p.label for t, p in zip(truth, predicted)]))
    assert "| accuracy |" in (folder / "report.md").read_text()
    assert "data:image/png;base64," in (folder / "report.html").read_text()  # the confusion matrix, embedded


def test_the_python_api_writes_where_it_is_told_and_scores_one_split(colors_run, tmp_path):
    write_image_folder(tmp_path / "set" / "test", per_class=4)
    write_image_folder(tmp_path / "set" / "train", classes=("red", "green", "blue"), per_class=2)
    m = imagefit.load(colors_run.dir, precision="32").evaluate(str(tmp_path / "set"), out=tmp_path / "out", split="test",
                                                               cache_dir=str(tmp_path / "cache"))
    assert m["images"] == 12 and m["split"] == "test" and (tmp_path / "out" / "metrics.json").is_file()
    assert not (colors_run.dir / "evaluations" / "set-test").exists()


def test_a_gray_model_scores_color_files_as_predict_reads_them(trained_digits, tmp_path):
    from sklearn.datasets import load_digits

    digits = load_digits()
    for i in range(30):
        folder = tmp_path / "scans" / str(digits.target[i])
        folder.mkdir(parents=True, exist_ok=True)
        gray = (digits.images[i] * 255 / 16).astype(np.uint8)
        Image.fromarray(np.stack([gray] * 3, axis=-1)).save(folder / f"{i}.png")  # saved as RGB
    predictor = imagefit.load(trained_digits.dir, precision="32")
    m = predictor.evaluate(str(tmp_path / "scans"), out=tmp_path / "out", cache_dir=str(tmp_path / "cache"))
    files = [json.loads(line.split(",", 1)[1]) for line in (tmp_path / "out" / "files.csv").read_text().splitlines()[1:]]
    expected = [p.label for p in predictor.predict([tmp_path / "scans" / f for f in files])]
    rows = [line.split(",") for line in (tmp_path / "out" / "predictions.csv").read_text().splitlines()[1:]]
    assert m["images"] == 30 and [r[4] for r in rows] == expected


@pytest.mark.parametrize("args, message", [
    (["--dataset", "{photos}"], "classes the model never learned: cat"),
    (["--dataset", "{known}", "--split", "test"], "the data has no test images"),
    (["--dataset", "{known}", "--label-column", "y"], "go with a label file"),
    (["--dataset", "{known}", "--out", "{known}/x.txt/sub"], "x.txt"),
])
def test_mistakes_are_one_line_and_exit_2(colors_run, tmp_path, args, message):
    write_image_folder(tmp_path / "photos", classes=("red", "cat"), per_class=3)
    write_image_folder(tmp_path / "known", classes=("red", "blue"), per_class=3)
    (tmp_path / "known" / "x.txt").write_text("a file where a folder should be")
    args = [a.format(photos=tmp_path / "photos", known=tmp_path / "known") for a in args]
    proc = run_imagefit("evaluate", colors_run.dir, *args, "--cache-dir", tmp_path / "cache", cwd=tmp_path, check=False)
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0 and message in proc.stderr, proc.stderr


def test_unknown_classes_can_be_left_out_and_counted(colors_run, tmp_path):
    write_image_folder(tmp_path / "mixed", classes=("red", "cat"), per_class=3)
    proc = run_imagefit("evaluate", colors_run.dir, "--dataset", tmp_path / "mixed", "--ignore-unknown-classes",
                        "--out", tmp_path / "out", "--cache-dir", tmp_path / "cache", cwd=tmp_path)
    m = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert m["images"] == 3 and m["unknown_classes_left_out"] == {"cat": 3} and "on 3 images" in proc.stdout
    assert m["classes_present"] == ["red"] and m["classes_absent"] == ["blue", "green"]
    assert "absent: blue, green; left out, of classes the model never learned: cat (3)" in (tmp_path / "out" / "report.md").read_text()


def test_an_exported_onnx_model_scores_as_its_run(colors_run, tmp_path):
    table = new_photos(tmp_path / "june", ["green", "red"])
    run_imagefit("export", colors_run.dir, "--out", tmp_path / "m.onnx", cwd=tmp_path)
    for model, out in ((colors_run.dir, "from-run"), (tmp_path / "m.onnx", "from-onnx")):
        run_imagefit("evaluate", model, "--dataset", table, "--out", tmp_path / out, "--precision", "32",
                     "--cache-dir", tmp_path / "cache", cwd=tmp_path)
    rows = {out: [r.split(",")[4] for r in (tmp_path / out / "predictions.csv").read_text().splitlines()[1:]]
            for out in ("from-run", "from-onnx")}
    assert rows["from-run"] == rows["from-onnx"] and len(rows["from-run"]) == 10
    proc = run_imagefit("evaluate", tmp_path / "m.onnx", "--dataset", table, cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "pass out= (or --out DIR)" in proc.stderr


def test_the_runs_own_test_split_gives_its_test_metrics(tmp_path):
    """A folder with its own test/ split: evaluate --split test scores the same images the run was tested on, so
    it reproduces the run's accuracy and F1, and its loss with the run's temperature (test_loss_scaled)."""
    write_image_folder(tmp_path / "set" / "train", per_class=10)
    write_image_folder(tmp_path / "set" / "test", per_class=5, side=20)
    run = imagefit.train(dataset=str(tmp_path / "set"), model="seed-cnn", epochs=2, batch_size=8, image_size=16,
                         tta="none", runs_dir=str(tmp_path / "runs"), cache_dir=str(tmp_path / "cache"),
                         progress=False, precision="32", name="own")
    m = imagefit.load(run.dir, precision="32").evaluate(str(tmp_path / "set"), split="test",
                                                       cache_dir=str(tmp_path / "cache"))
    assert m["images"] == run.metrics["test_images"] == 15
    assert m["test_accuracy"] == run.metrics["test_accuracy"] and m["f1_macro"] == pytest.approx(run.metrics["f1_macro"])
    for key in ("test_loss", "test_loss_scaled", "test_ece", "test_ece_scaled", "temperature"):
        assert m[key] == pytest.approx(run.metrics[key], rel=1e-5, abs=1e-7), key
    assert (run.dir / "evaluations" / "set-test" / "report.md").is_file()


def test_a_carved_test_split_is_carved_again_as_the_run_carved_it(trained_digits, tmp_path):
    """digits has no test split of its own: the run set aside 20% with its seed; `--split test` on the run's own
    data set carves the same images, so the run's test numbers come back."""
    m = imagefit.load(trained_digits.dir, precision="32").evaluate("digits", out=tmp_path / "out", split="test")
    assert m["images"] == trained_digits.metrics["test_images"]
    for key in ("test_accuracy", "f1_macro", "test_loss", "test_ece"):
        assert m[key] == pytest.approx(trained_digits.metrics[key], rel=1e-5), key
    assert any("set aside as test with seed 1" in n for n in m["data_notes"])


def test_the_page_shows_the_worst_mistakes_calibration_and_grad_cam(colors_run, tmp_path):
    table = new_photos(tmp_path / "june", ["red", "green", "blue"], per_class=6)
    m = imagefit.load(colors_run.dir, precision="32").evaluate(str(table), out=tmp_path / "run-out",
                                                               cache_dir=str(tmp_path / "cache"))
    folder = tmp_path / "run-out"
    rows = (folder / "misclassified.csv").read_text().splitlines()[1:]
    wrong = [r for r in (folder / "predictions.csv").read_text().splitlines()[1:] if r.split(",")[2] != r.split(",")[4]]
    assert m["misclassified"] == len(rows) == len(wrong)
    page = (folder / "report.md").read_text()
    assert "## Calibration" in page and "![reliability diagram](reliability.png)" in page
    assert (folder / "reliability.png").is_file()
    if m["misclassified"]:
        assert (folder / "misclassified.png").is_file() and "misclassified.png" in page
    if m["gradcam_images"]:  # torchcam is installed from Python 3.11 on
        assert (folder / "gradcam.png").is_file() and m["gradcam_same_prediction"] == m["gradcam_images"]
    else:
        assert m["gradcam_note"] and "No Grad-CAM" in page
    # an exported model: the same mistakes, no gradients to draw, and the temperature it was exported with
    run_imagefit("export", colors_run.dir, "--out", tmp_path / "m.onnx", cwd=tmp_path)
    e = imagefit.load(tmp_path / "m.onnx").evaluate(str(table), out=tmp_path / "onnx-out", cache_dir=str(tmp_path / "cache"))
    assert e["misclassified"] == m["misclassified"] and e["temperature"] == pytest.approx(m["temperature"])
    assert not (tmp_path / "onnx-out" / "gradcam.png").exists() and "exported model" in e["gradcam_note"]
