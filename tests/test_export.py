"""`imagefit export`: ONNX and TorchScript files that carry their classes and agree with the run's model."""
import json

import onnx
import torch
import pytest

import imagefit
from helpers import run_imagefit
from imagefit.data.pipeline import prepare_data
from imagefit.export import export
from imagefit.inference import load_exported


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_exported_model_agrees_with_torch_on_real_images(digits_run, tmp_path, fmt):
    path = export(digits_run.dir, fmt, tmp_path / f"m.{fmt}")
    images = prepare_data(digits_run.config).test.images  # the run's real test images
    reference = imagefit.load(digits_run.dir, precision="32", device="cpu").probabilities(images)
    exported = load_exported(path)
    assert exported.class_names == [str(i) for i in range(10)] and (exported.image_size, exported.channels) == (8, 1)
    assert (exported.probabilities(images) - reference).abs().max() < 1e-4
    assert len(images) > 300 and reference.argmax(1).unique().numel() > 2  # many images, not one constant answer


def test_onnx_metadata_states_classes_and_preprocessing(digits_run, tmp_path):
    meta = {p.key: p.value for p in onnx.load(str(export(digits_run.dir, "onnx", tmp_path / "m.onnx"))).metadata_props}
    assert json.loads(meta["class_names"]) == [str(i) for i in range(10)]
    assert meta["image_size"] == "8" and meta["channels"] == "1" and "centre square" in meta["preprocessing"]


def test_cli_export_then_predict_with_the_file(digits_run, tmp_path):
    out = run_imagefit("export", digits_run.dir, "--format", "torchscript", cwd=tmp_path).stdout
    path = digits_run.dir / "model.pt"
    assert f"predict with: imagefit predict {path} IMAGES..." in out and path.is_file()
    out = run_imagefit("export", digits_run.dir, "--out", tmp_path / "d.onnx", cwd=tmp_path).stdout
    assert "exported: " in out
    from PIL import Image

    images = prepare_data(digits_run.config).test.images[:4]
    for i in range(4):
        Image.fromarray(images[i, 0].numpy(), "L").save(tmp_path / f"{i}.png")
    results = [json.loads(run_imagefit("predict", m, *[tmp_path / f"{i}.png" for i in range(4)], "--json",
                                       "--precision", "32", cwd=tmp_path).stdout)["predictions"]
               for m in (digits_run.dir, path, tmp_path / "d.onnx")]
    for other in results[1:]:
        for a, b in zip(results[0], other):
            assert a["top"][0]["class"] == b["top"][0]["class"]
            assert abs(a["top"][0]["probability"] - b["top"][0]["probability"]) < 1e-4


# ---- OpenVINO and INT8 (issue 28) ------------------------------------------------------------------
@pytest.fixture(scope="module")
def digits_model(tmp_path_factory):
    """A digits run trained well enough (about 90% test accuracy) that its top class is a decision, not a coin
    toss between near-equal logits: INT8's agreement with fp32 means something on it."""
    tmp = tmp_path_factory.mktemp("digits-model")
    return imagefit.train(dataset="digits", model="seed-cnn", epochs=6, optimizer="adam", lr=3e-3, batch_size=32,
                          runs_dir=str(tmp / "runs"), progress=False, precision="32", name="digits")


def test_openvino_fp32_gives_the_runs_probabilities(digits_model, tmp_path):
    from imagefit.quantize import run_split

    path = export(digits_model.dir, "openvino", tmp_path / "m.xml")
    assert path.with_suffix(".bin").is_file()
    run = imagefit.load(digits_model.dir, precision="32", device="cpu")
    images, _ = run_split(run, "test")
    reference = run.probabilities(images)
    exported = imagefit.load(path)
    assert exported.class_names == [str(i) for i in range(10)] and exported.device == "cpu (openvino)"
    assert (exported.probabilities(images) - reference).abs().max() < 1e-4
    # the ONNX file on OpenVINO's runtime, as --backend openvino runs it
    onnx_file = export(digits_model.dir, "onnx", tmp_path / "m.onnx")
    assert (imagefit.load(onnx_file, backend="openvino").probabilities(images) - reference).abs().max() < 1e-4


@pytest.mark.parametrize("fmt", ["onnx", "openvino"])
def test_int8_keeps_the_top_class_and_is_calibrated_on_validation(digits_model, tmp_path, fmt):
    from imagefit.export import file_size, measure
    from imagefit.quantize import calibration_images, run_split

    path = export(digits_model.dir, fmt, tmp_path / f"m{'.xml' if fmt == 'openvino' else '.onnx'}", int8=True,
                  calibration_images=100)
    m = measure(digits_model.dir, path)
    assert m["test_images"] == digits_model.metrics["test_images"] and m["agreement"] >= 0.98, m
    assert m["fp32_accuracy"] > 0.8 and abs(m["exported_accuracy"] - m["fp32_accuracy"]) <= 0.02
    assert imagefit.load(path).precision == "int8"
    # the calibration images are validation images, evenly spread, never test ones
    run = imagefit.load(digits_model.dir, precision="32", device="cpu")
    picked, said = calibration_images(run, 100)
    val, _ = run_split(run, "val")
    test, _ = run_split(run, "test")
    assert said == f"{len(picked)} validation images" and len(picked) == min(100, len(val))
    assert torch.equal(picked, val[::max(1, len(val) // 100)][:100])
    assert len(test) == m["test_images"]
    assert file_size(path) < 0.5 * file_size(export(digits_model.dir, fmt, tmp_path / f"fp32{path.suffix}"))


def test_cli_export_prints_its_cost_and_predict_runs_every_format(digits_model, tmp_path):
    out = run_imagefit("export", digits_model.dir, "--format", "openvino", "--int8", "--calibration-images", "50",
                       "--out", tmp_path / "q.xml", cwd=tmp_path).stdout
    assert f"exported: {tmp_path / 'q.xml'}" in out
    assert "against" in out and "for the fp32 PyTorch model" in out and "images/s" in out and "test images" in out
    from PIL import Image

    from imagefit.quantize import run_split

    images, _ = run_split(imagefit.load(digits_model.dir, precision="32"), "test")
    for i in range(3):
        Image.fromarray(images[i, 0].numpy(), "L").save(tmp_path / f"{i}.png")
    run_imagefit("export", digits_model.dir, "--out", tmp_path / "m.onnx", "--no-measure", cwd=tmp_path)
    tops = []
    for model, backend in ((digits_model.dir, []), (tmp_path / "m.onnx", ["--backend", "openvino"]),
                           (tmp_path / "q.xml", [])):
        result = json.loads(run_imagefit("predict", model, *[tmp_path / f"{i}.png" for i in range(3)], "--json",
                                         "--precision", "32", *backend, cwd=tmp_path).stdout)
        tops.append([p["top"][0]["class"] for p in result["predictions"]])
    assert tops[0] == tops[1] and len(tops[0]) == 3


@pytest.mark.parametrize("args, message", [
    (["export", "{run}", "--format", "torchscript", "--int8"], "--int8 is for ONNX and OpenVINO"),
    (["export", "{run}", "--int8", "--calibration-images", "0"], "--calibration-images must be at least 1"),
    (["predict", "{run}", "{run}/x.png", "--backend", "openvino"], "a run folder runs on torch"),
])
def test_export_mistakes_are_one_line(digits_run, tmp_path, args, message):
    proc = run_imagefit(*[a.format(run=digits_run.dir) for a in args], cwd=tmp_path, check=False)
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0 and message in proc.stderr, proc.stderr


def test_a_network_fed_smaller_images_than_the_data_exports_its_antialiased_resize(tmp_path):
    """A run whose network takes 16 px images of 32 px data resizes inside the model, antialiased: ONNX has no
    such operator at opset 17 (the export failed on a 128 px Imagenette run trained at 64 px). The exported
    graph does it as two matrix products with the same numbers."""
    import copy

    import numpy as np
    import onnxruntime

    from imagefit.models.registry import ImageClassifier, build_net

    torch.manual_seed(0)
    model = ImageClassifier(build_net("seed-cnn", 4, 3, 16), [0.5] * 3, [0.25] * 3, input_size=16).eval()
    images = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8)
    exported = copy.deepcopy(model)
    exported.resize_with_matrices(32)
    torch.onnx.export(exported, (images,), str(tmp_path / "m.onnx"), input_names=["images"], dynamo=False,
                      opset_version=17)
    session = onnxruntime.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        expected = model(images).numpy()
    assert np.abs(session.run(None, {"images": images.numpy()})[0] - expected).max() < 1e-4
    with pytest.raises(Exception, match="upsample_bilinear2d_aa"):  # the operator the matrices stand in for
        torch.onnx.export(model, (images,), str(tmp_path / "plain.onnx"), dynamo=False, opset_version=17)
