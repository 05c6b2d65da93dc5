"""Post-training INT8 for CPUs: calibrated on the run's own validation images, never on test.

Static quantization needs a few hundred images that look like the ones the model will see, to fix the range of
every activation. They come from the run's validation split, carved again exactly as the run carved it (its
config.yaml through data/pipeline.prepare_data); a run trained without a validation split calibrates on training
images and the file's metadata says so. The test split is only ever used by export.measure, to say what the
quantization cost.

- ONNX: onnxruntime.quantization.quantize_static in QDQ format, weights per channel (int8), activations uint8,
  after onnxruntime's own pre-processing (shape inference and graph optimisation), as its documentation asks.
  Only convolutions and the classifier's Gemm are quantized, depthwise convolutions left in fp32, ranges from the
  99.999th percentile: quantizing every op (the resize's MatMuls and the normalisation too) with min-max ranges
  took an EfficientNet-Lite0 Imagenette run from 79.9% to 28.0% test accuracy; this recipe gives 78.6%
  (bench/export_speed.py). NNCF's defaults for OpenVINO lost 0.2 points on the same run.
- OpenVINO: nncf.quantize on the IR with the same images; NNCF picks the scheme for the CPU plugin.
"""
from __future__ import annotations

from pathlib import Path

import torch

from .errors import UserError


def run_split(predictor, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images (N, model's channels, size, size) and labels of one of the run's own splits, as it had them:
    `predictor` is the run folder's (imagefit.inference.load_run), its data decoded at the side the run decoded."""
    from .config import TrainConfig
    from .data.pipeline import prepare_data

    cfg = TrainConfig.load(Path(predictor.source) / "config.yaml")
    data = prepare_data(cfg.replace(audit=False, image_size=predictor.decode_size, loader="memory"))
    part = {"train": data.train, "val": data.val, "test": data.test_pictures}[split]
    if part is None or part.images.dtype != torch.uint8:
        raise UserError(f"the run's data has no {split} images to read", "train with a validation split")
    return predictor.as_input(part.images if part.index is None else part.images[part.index]), part.labels


def calibration_images(predictor, n: int) -> tuple[torch.Tensor, str]:
    """Up to `n` of the run's validation images (training images without a validation split), spread evenly over
    the split, and the words that say which."""
    said = "validation"
    try:
        images, _ = run_split(predictor, "val")
    except UserError:
        images, _ = run_split(predictor, "train")
        said = "training (the run had no validation split)"
    step = max(1, len(images) // n)
    picked = images[::step][:n]
    return picked, f"{len(picked)} {said} images"


def quantize_onnx(fp32: Path, out: Path, images: torch.Tensor, batch_size: int = 1) -> Path:
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from .inference import INPUT

    class Batches(CalibrationDataReader):  # one image a batch: the percentile calibrator needs equal shapes
        def __init__(self):
            self.batches = iter([{INPUT: images[s:s + batch_size].numpy()} for s in range(0, len(images), batch_size)])

        def get_next(self):
            return next(self.batches, None)

    import onnx

    prepared = out.with_name("prepared.onnx")
    quant_pre_process(str(fp32), str(prepared))
    depthwise = [n.name for n in onnx.load(str(prepared)).graph.node
                 if n.op_type == "Conv" and any(a.name == "group" and a.i > 1 for a in n.attribute)]
    quantize_static(str(prepared), str(out), Batches(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    op_types_to_quantize=["Conv", "Gemm"], nodes_to_exclude=depthwise,
                    calibrate_method=CalibrationMethod.Percentile)
    _copy_metadata(fp32, out)
    return out


def _copy_metadata(source: Path, target: Path) -> None:
    """quantize_static keeps the graph, not always the model's metadata_props: carry them over."""
    import onnx

    have = onnx.load(str(source)).metadata_props
    model = onnx.load(str(target))
    known = {p.key for p in model.metadata_props}
    for p in have:
        if p.key not in known:
            model.metadata_props.add(key=p.key, value=p.value)
    onnx.save(model, str(target))


def quantize_openvino(model, images: torch.Tensor):
    import nncf

    items = [images[i:i + 1].numpy() for i in range(len(images))]
    return nncf.quantize(model, nncf.Dataset(items), subset_size=len(items))
