"""`imagefit export`: ONNX and TorchScript files that carry their classes and agree with the run's model."""
import json

import onnx
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
