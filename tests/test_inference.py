"""`imagefit.load(run).predict(...)` and `imagefit predict`: a real run, real files, a real subprocess."""
import json
import zipfile

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file

import imagefit
from helpers import run_imagefit
from imagefit.data.folder import load_folder
from imagefit.data.pipeline import prepare_data


def test_predictions_equal_the_runs_own_test_predictions(digits_run):
    """The run's preprocessing is read back from its folder: its test images give its own test outputs."""
    data = prepare_data(digits_run.config)
    saved = load_file(str(digits_run.dir / "predictions.safetensors"))
    predictor = imagefit.load(digits_run.dir, precision="32")
    assert predictor.class_names == [str(i) for i in range(10)] and predictor.image_size == 8 and predictor.channels == 1
    images = data.test.images[:50]
    result = predictor.predict(list(images), top_k=3, batch_size=16)
    probs = torch.stack([p.probabilities for p in result])
    temperature = digits_run.metrics["temperature"]  # fitted on validation and saved with the model
    assert temperature is not None and abs(temperature - 1) > 0.01
    assert torch.allclose(probs, torch.softmax(saved["logits"][:50] / temperature, dim=1), atol=1e-5)
    assert [p.label for p in result] == [str(i) for i in saved["logits"][:50].argmax(1).tolist()]
    assert all(len(p.top) == 3 and p.top[0][1] >= p.top[1][1] >= p.top[2][1] for p in result)


def test_files_are_decoded_exactly_as_the_training_folder_was(tmp_path, digits_run):
    rng = np.random.default_rng(0)
    folder = tmp_path / "photos"
    for cls in ("a", "b"):
        (folder / cls).mkdir(parents=True)
        for i in range(2):  # odd shapes, RGBA and a palette image: all the decoder's branches that matter
            im = Image.fromarray(rng.integers(0, 255, (23 + i * 9, 31, 4), dtype=np.uint8), "RGBA")
            (im if i == 0 else im.convert("RGB").convert("P")).save(folder / cls / f"{i}.png")
    trained = load_folder(folder, image_size=12, test_fraction=0.2, seed=0, workers=1).train.images
    predictor = imagefit.load(digits_run.dir, precision="32")
    predictor.image_size, predictor.channels = 12, 3  # a stand-in for an RGB run at 12 px
    files = sorted(folder.glob("*/*.png"))
    assert all(np.array_equal(predictor.to_array(f), trained[i].numpy()) for i, f in enumerate(files))
    assert np.array_equal(predictor.to_array(Image.open(files[0])), trained[0].numpy())


def test_cli_predict_files_folders_zips_and_unreadable(tmp_path, digits_run):
    data = prepare_data(digits_run.config)
    (tmp_path / "imgs").mkdir()
    for i in range(5):
        Image.fromarray(data.test.images[i, 0].numpy(), "L").save(tmp_path / "imgs" / f"{i}.png")
    (tmp_path / "imgs" / "broken.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    with zipfile.ZipFile(tmp_path / "more.zip", "w") as z:
        z.write(tmp_path / "imgs" / "0.png", "x/0.png")
    proc = run_imagefit("predict", digits_run.dir, tmp_path / "imgs", tmp_path / "more.zip", tmp_path / "imgs" / "1.png",
                        "--json", "--top-k", "2", "--precision", "32", cwd=tmp_path)
    out = json.loads(proc.stdout)
    assert len(out["predictions"]) == 7 and [u["path"].endswith("broken.jpg") for u in out["unreadable"]] == [True]
    logits = load_file(str(digits_run.dir / "predictions.safetensors"))["logits"][:5]
    expected = torch.softmax(logits / digits_run.metrics["temperature"], 1)  # predict applies the saved temperature
    for i, p in enumerate(out["predictions"][:5]):
        assert p["path"].endswith(f"{i}.png") and len(p["top"]) == 2
        assert p["top"][0]["class"] == str(int(expected[i].argmax()))
        assert abs(p["top"][0]["probability"] - float(expected[i].max())) < 1e-4
    assert out["predictions"][5]["path"].endswith("more.zip!/x/0.png")
    assert out["predictions"][5]["top"] == out["predictions"][0]["top"]
    assert "images/s" in proc.stderr and "unreadable: " in proc.stderr and "broken.jpg" in proc.stderr

    proc = run_imagefit("predict", digits_run.dir, tmp_path / "imgs", "--csv", tmp_path / "p.csv", cwd=tmp_path)
    lines = (tmp_path / "p.csv").read_text().splitlines()
    assert lines[0] == "path,rank,class,probability" and len(lines) == 1 + 5 * 3
    assert "5 images in" in proc.stdout and "images/s" in proc.stdout

    proc = run_imagefit("predict", tmp_path / "imgs", tmp_path / "imgs", cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "not a finished run folder" in proc.stderr and "Traceback" not in proc.stderr


def test_a_run_whose_planner_shrank_the_data_sees_new_files_the_same_way(digits_run, tmp_path):
    """The budget planner may train on smaller images than it decoded (data/resize.py: 128 px decoded, 64 px
    trained): its model file then says `decoded_size`, and predict, evaluate and the exports decode a file at that
    side and shrink it as the planner did. Decoding straight to the smaller side gives other pixels (on an
    Imagenette run, 23 points less accuracy)."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    from imagefit.data.decode import decode_image
    from imagefit.data.resize import resize_data, resized

    data = prepare_data(digits_run.config.replace(image_size=16))
    shrunk = resize_data(data, 8)
    assert (shrunk.decoded_side, shrunk.image_size) == (16, 8) and resize_data(shrunk, 4).decoded_side == 16
    # the run's model file as outputs.py writes it for such a run
    weights = digits_run.dir / "model.safetensors"
    with safe_open(str(weights), "pt") as f:
        meta, state = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    save_file(state, str(weights), metadata={**meta, "decoded_size": "16"})
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(tmp_path / "photo.png")
    predictor = imagefit.load(digits_run.dir, precision="32")
    assert (predictor.decode_size, predictor.image_size) == (16, 8)
    gray16 = np.rint(decode_image((tmp_path / "photo.png").read_bytes(), 16) @ np.array([0.299, 0.587, 0.114]))
    expected = resized(torch.from_numpy(gray16.clip(0, 255).astype(np.uint8))[None, None], 8)[0].numpy()
    direct = np.rint(decode_image((tmp_path / "photo.png").read_bytes(), 8) @ np.array([0.299, 0.587, 0.114]))
    got = predictor.to_array(tmp_path / "photo.png")
    assert np.array_equal(got, expected) and not np.array_equal(got[0], direct.clip(0, 255).astype(np.uint8))
    # an exported file carries the two steps, and evaluate takes them
    run_imagefit("export", digits_run.dir, "--out", tmp_path / "m.onnx", "--no-measure", cwd=tmp_path)
    onnx_predictor = imagefit.load(tmp_path / "m.onnx")
    assert onnx_predictor.decode_size == 16 and np.array_equal(onnx_predictor.to_array(tmp_path / "photo.png"), expected)
    (tmp_path / "set" / "3").mkdir(parents=True)
    Image.open(tmp_path / "photo.png").save(tmp_path / "set" / "3" / "photo.png")
    m = predictor.evaluate(str(tmp_path / "set"), out=tmp_path / "out", cache_dir=str(tmp_path / "cache"))
    probability = float(predictor.probabilities(torch.from_numpy(expected)[None])[0].max())
    row = (tmp_path / "out" / "predictions.csv").read_text().splitlines()[1].split(",")
    assert m["images"] == 1 and abs(float(row[5]) - probability) < 1e-4, row
