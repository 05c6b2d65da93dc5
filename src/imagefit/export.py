"""`imagefit export RUN_DIR --format onnx|torchscript`: one self-describing file per model.

The exported graph is the whole `ImageClassifier`: it takes uint8 images (N, channels, size, size) and
does the normalisation and the resize to the network's input itself, so the only preprocessing left to
a caller is the decode to the run's size (RGB, centre square, bicubic), which the file's metadata
states along with the class names. ONNX keeps them in `metadata_props`, TorchScript in an extra file
`imagefit.json`; `imagefit predict FILE ...` and `imagefit.load(FILE)` read them back.

This module only writes. The reader (`imagefit.inference.load_exported`) and the names both sides must agree
on (the graph's input and output, the TorchScript metadata file) live in imagefit.inference, so the import goes
one way: export -> inference.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch

from . import atomic
from .errors import UserError
from .inference import INPUT, META_FILE, OUTPUT, Predictor, load_run

FORMATS = {"onnx": ".onnx", "torchscript": ".pt"}


def metadata(predictor: Predictor) -> dict[str, str]:
    return {"format": "imagefit-1", "class_names": json.dumps(predictor.class_names),
            "image_size": str(predictor.image_size), "channels": str(predictor.channels),
            "temperature": repr(predictor.temperature),  # already applied to the output: for the reader's record
            "input": f"{INPUT}: uint8 (batch, {predictor.channels}, {predictor.image_size}, {predictor.image_size})",
            "output": f"{OUTPUT}: float32 (batch, {len(predictor.class_names)}); softmax gives probabilities",
            "preprocessing": f"decode to RGB{' then grayscale (ITU-R 601)' if predictor.channels == 1 else ''}, "
                             f"centre square, bicubic resize to {predictor.image_size} px; normalisation is in the graph"}


def export(run_dir: str | Path, format: str = "onnx", out: str | Path | None = None) -> Path:
    """Write the run's model as ONNX or TorchScript (fp32, CPU) and return the file's path."""
    if format not in FORMATS:
        raise UserError(f"unknown export format '{format}'", "pass --format onnx or --format torchscript")
    predictor = load_run(run_dir, precision="32", device="cpu")
    out = Path(out) if out else Path(run_dir) / f"model{FORMATS[format]}"
    model, meta = predictor.module.float().eval(), metadata(predictor)
    example = torch.zeros(2, predictor.channels, predictor.image_size, predictor.image_size, dtype=torch.uint8)
    with atomic.atomic_path(out) as tmp, torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes on the model's (constant) shape branches
        if format == "torchscript":
            traced = torch.jit.trace(model, example)
            torch.jit.save(traced, str(tmp), _extra_files={META_FILE: json.dumps(meta)})
        else:
            import onnx

            torch.onnx.export(model, (example,), str(tmp), input_names=[INPUT], output_names=[OUTPUT],
                              dynamic_axes={INPUT: {0: "batch"}, OUTPUT: {0: "batch"}}, dynamo=False,
                              opset_version=17)
            proto = onnx.load(str(tmp))
            for key, value in meta.items():
                proto.metadata_props.add(key=key, value=value)
            onnx.save(proto, str(tmp))
    return out
