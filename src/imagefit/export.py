"""`imagefit export RUN_DIR --format onnx|torchscript|openvino [--int8]`: one self-describing model per file.

The exported graph is the whole `ImageClassifier`: it takes uint8 images (N, channels, size, size) and
does the normalisation and the resize to the network's input itself, so the only preprocessing left to
a caller is the decode to the run's size (RGB, centre square, bicubic), which the file's metadata
states along with the class names. ONNX keeps them in `metadata_props`, TorchScript in an extra file
`imagefit.json`, OpenVINO IR in the model's `rt_info` under `imagefit`; `imagefit predict FILE ...` and
`imagefit.load(FILE)` read them back.

`--int8` quantizes ONNX (onnxruntime's static QDQ quantization) and OpenVINO (NNCF) after training, calibrated
on the run's validation images (quantize.py), never on test. `measure` says what the export cost: test accuracy
against the fp32 PyTorch model on the same images, their agreement, and images/s of both on this machine.

This module only writes. The reader (`imagefit.inference.load_exported`) and the names both sides must agree
on (the graph's input and output, the TorchScript metadata file) live in imagefit.inference, so the import goes
one way: export -> inference.
"""
from __future__ import annotations

import copy
import json
import os
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import torch

from . import atomic
from .errors import UserError
from .inference import INPUT, META_FILE, OPENVINO_META, OUTPUT, Predictor, load, load_run

FORMATS = {"onnx": ".onnx", "torchscript": ".pt", "openvino": ".xml"}
INT8_FORMATS = ("onnx", "openvino")


def metadata(predictor: Predictor) -> dict[str, str]:
    task = ({"task": "multilabel", "thresholds": json.dumps(predictor.thresholds)} if predictor.multilabel
            else {"task": "single"})
    return {**task, "format": "imagefit-1", "class_names": json.dumps(predictor.class_names),
            "image_size": str(predictor.image_size), "channels": str(predictor.channels),
            "temperature": repr(predictor.temperature),  # already applied to the output: for the reader's record
            "decoded_size": str(predictor.decode_size),
            "input": f"{INPUT}: uint8 (batch, {predictor.channels}, {predictor.image_size}, {predictor.image_size})",
            "output": f"{OUTPUT}: float32 (batch, {len(predictor.class_names)}); " + (
                "a sigmoid each gives each label's probability, predicted at or above its threshold (thresholds)"
                if predictor.multilabel else "softmax gives probabilities"),
            "preprocessing": preprocessing(predictor)}


def preprocessing(predictor: Predictor) -> str:
    """The steps a caller takes before the graph, in words."""
    gray = " then grayscale (ITU-R 601)" if predictor.channels == 1 else ""
    text = f"decode to RGB{gray}, centre square, bicubic resize to {predictor.decode_size} px"
    if predictor.decode_size != predictor.image_size:
        text += (f", then bilinear antialiased resize to {predictor.image_size} px (torch.nn.functional.interpolate, "
                 "rounded to uint8)")
    return text + "; normalisation is in the graph"


def export(run_dir: str | Path, format: str = "onnx", out: str | Path | None = None, int8: bool = False,
           calibration_images: int = 300) -> Path:
    """Write the run's model (fp32, or INT8 with `int8`) and return the file's path (OpenVINO: the .xml, its
    weights in the .bin beside it)."""
    if format not in FORMATS:
        raise UserError(f"unknown export format '{format}'", f"pass --format {', '.join(FORMATS)}")
    if int8 and format not in INT8_FORMATS:
        raise UserError(f"--int8 is for ONNX and OpenVINO, not {format}", "pass --format onnx or --format openvino")
    if calibration_images < 1:
        raise UserError(f"--calibration-images must be at least 1, got {calibration_images}", "pass 300")
    if format == "openvino":
        _need("openvino", "openvino", "export --format openvino")
    if int8:
        _need("nncf" if format == "openvino" else "onnxruntime", "openvino" if format == "openvino" else "export",
              "export --int8")
    predictor = load_run(run_dir, precision="32", device="cpu")
    suffix = ("-int8" if int8 else "") + FORMATS[format]
    out = Path(out) if out else Path(run_dir) / f"model{suffix}"
    meta = metadata(predictor)
    calibration = None
    if int8:
        from .quantize import calibration_images as pick

        calibration, said = pick(predictor, calibration_images)
        meta.update(quantization=f"int8, static, calibrated on {said}")
    with tempfile.TemporaryDirectory(prefix=".export-", dir=out.parent if out.parent.is_dir() else None) as tmp:
        work = Path(tmp)
        if format == "torchscript":
            with atomic.atomic_path(out) as path:
                write_torchscript(predictor, meta, path)
            return out
        onnx_file = write_onnx(predictor, meta, work / "fp32.onnx")
        if format == "onnx":
            if calibration is not None:
                from .quantize import quantize_onnx

                onnx_file = quantize_onnx(onnx_file, work / "int8.onnx", calibration)
            with atomic.atomic_path(out) as path:
                shutil.copyfile(onnx_file, path)
            return out
        return write_openvino(onnx_file, meta, out, work, calibration)


def _need(module: str, extra: str, what: str) -> None:
    try:
        __import__(module)
    except ImportError:
        raise UserError(f"{what} needs the {module} package", f"pip install 'imagefit[{extra}]'") from None


def _graph(predictor: Predictor) -> tuple[torch.nn.Module, torch.Tensor]:
    """A copy of the model to trace, its resize to the network's input as matrix products (models/registry.py)."""
    from .models.registry import ImageClassifier

    example = torch.zeros(2, predictor.channels, predictor.image_size, predictor.image_size, dtype=torch.uint8)
    model = copy.deepcopy(predictor.module).float().eval()
    for part in model.modules():
        if isinstance(part, ImageClassifier) and part.input_size and part.input_size != predictor.image_size:
            part.resize_with_matrices(predictor.image_size)
    return model, example


def write_torchscript(predictor: Predictor, meta: dict, path: Path) -> None:
    model, example = _graph(predictor)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes on the model's (constant) shape branches
        torch.jit.save(torch.jit.trace(model, example), str(path), _extra_files={META_FILE: json.dumps(meta)})


def write_onnx(predictor: Predictor, meta: dict, path: Path) -> Path:
    import onnx

    model, example = _graph(predictor)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (example,), str(path), input_names=[INPUT], output_names=[OUTPUT],
                          dynamic_axes={INPUT: {0: "batch"}, OUTPUT: {0: "batch"}}, dynamo=False, opset_version=17)
    proto = onnx.load(str(path))
    for key, value in meta.items():
        proto.metadata_props.add(key=key, value=value)
    onnx.save(proto, str(path))
    return path


def write_openvino(onnx_file: Path, meta: dict, out: Path, work: Path, calibration: torch.Tensor | None) -> Path:
    """OpenVINO IR from the ONNX graph (openvino.convert_model), INT8 through NNCF when calibration images are
    given. The .bin is moved into place before the .xml, so a reader that finds the .xml finds its weights."""
    import openvino as ov

    model = ov.convert_model(str(onnx_file))
    if calibration is not None:
        from .quantize import quantize_openvino

        model = quantize_openvino(model, calibration)
    for key, value in meta.items():
        model.set_rt_info(value, [OPENVINO_META, key])
    ov.save_model(model, str(work / "model.xml"), compress_to_fp16=False)
    out.parent.mkdir(parents=True, exist_ok=True)
    os.replace(work / "model.bin", out.with_suffix(".bin"))
    xml = (work / "model.xml").read_text(encoding="utf-8").replace('"model.bin"', f'"{out.with_suffix(".bin").name}"')
    atomic.write_text(out, xml)
    return out


def measure(run_dir: str | Path, path: str | Path, batch_size: int = 64, backend: str | None = None) -> dict:
    """The exported model against the run's fp32 PyTorch model on the run's test images: accuracy of each,
    top-1 agreement, and images/s of each at `batch_size` on this machine."""
    from .quantize import run_split

    reference = load_run(run_dir, precision="32", device="cpu")
    images, labels = run_split(reference, "test")
    exported = load(path, backend=backend)
    out = {"test_images": len(labels), "batch_size": batch_size, "multilabel": reference.multilabel, "file_mib": file_size(Path(path)) / 2**20}
    predicted = {}
    for name, predictor in (("fp32", reference), ("exported", exported)):
        with torch.no_grad():
            predictor.logits(images[:batch_size])  # warm-up: first-call compilation is not throughput
            started = time.perf_counter()
            logits = torch.cat([predictor.logits(images[s:s + batch_size]).float().cpu()
                                for s in range(0, len(images), batch_size)])
        seconds = time.perf_counter() - started
        if reference.multilabel:  # subset accuracy at the run's thresholds; agreement: the same label set
            predicted[name] = torch.sigmoid(logits) >= torch.tensor(reference.thresholds)
            out[f"{name}_accuracy"] = float((predicted[name] == labels.bool()).all(1).double().mean())
        else:
            predicted[name] = logits.argmax(1)
            out[f"{name}_accuracy"] = float((predicted[name] == labels).double().mean())
        out[f"{name}_images_per_second"] = len(images) / seconds
    same = predicted["fp32"] == predicted["exported"]
    out["agreement"] = float((same.all(1) if same.ndim == 2 else same).double().mean())
    return out


def file_size(path: Path) -> int:
    """The model's bytes on disk: an OpenVINO .xml with its .bin."""
    return path.stat().st_size + (path.with_suffix(".bin").stat().st_size if path.suffix == ".xml" else 0)
