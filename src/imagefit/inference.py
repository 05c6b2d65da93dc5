"""Using a trained classifier: `imagefit.load(run_dir).predict(images)` and `imagefit predict`.

A run folder's model.safetensors carries what prediction needs in its metadata (class names, the
architecture, the data's image size and channels); the saved model itself holds the normalisation and
the resize to the network's input. Images are decoded exactly as the training data was
(`imagefit.data.decode.decode_image`: RGB, centre square, the run's size), so a photo is seen the way
the training images were. An exported file (`imagefit export`) loads the same way, through
`load_exported`: every way of reading a model back is here, and imagefit.export, which writes the files,
imports from this module and never the reverse.
"""
from __future__ import annotations

import json
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch

from .errors import UserError

# an exported file's contract, written by imagefit.export and read by load_exported
META_FILE = "imagefit.json"  # TorchScript: the metadata, as an extra file (ONNX keeps it in metadata_props)
OPENVINO_META = "imagefit"  # OpenVINO IR: the metadata, in the model's rt_info under this key
INPUT, OUTPUT = "images", "logits"  # the graph's input and output names
EXPORTED = (".onnx", ".pt", ".ts", ".xml")
BACKENDS = {".onnx": ("onnxruntime", "openvino"), ".xml": ("openvino",), ".pt": ("torchscript",), ".ts": ("torchscript",)}


@dataclass
class Prediction:
    source: str  # a path, "image 3" for an in-memory image
    top: list[tuple[str, float]]  # (class name, probability), most probable first
    probabilities: torch.Tensor  # over all classes, in class_names order
    labels: list[tuple[str, float]] | None = None  # multi-label: every label above its threshold, most probable first

    @property
    def label(self) -> str:
        return self.top[0][0]


@dataclass
class Predictions:
    items: list[Prediction]
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (source, why)
    seconds: float = 0.0

    @property
    def images_per_second(self) -> float:
        return len(self.items) / self.seconds if self.seconds else 0.0

    def __iter__(self):
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> Prediction:
        return self.items[i]


class Predictor:
    """A trained classifier with its preprocessing: uint8 images of the run's size in, probabilities out."""

    def __init__(self, logits: Callable[[torch.Tensor], torch.Tensor], class_names: list[str], image_size: int,
                 channels: int, source: str, precision: str = "32", device: str = "cpu",
                 module: torch.nn.Module | None = None, temperature: float = 1.0, decode_size: int | None = None,
                 thresholds: list[float] | None = None):
        self.logits = logits
        self.class_names = list(class_names)
        self.image_size = image_size
        self.channels = channels
        self.source = source
        self.precision = precision
        self.device = device
        self.module = module  # the torch model, when there is one (for export and Grad-CAM)
        self.temperature = temperature  # the run's, fitted on validation; already applied to `logits`
        # the side a file is decoded at before `resized` makes it image_size, when the run's planner shrank the data
        # after decoding it (data/resize.py): new images must take the same two steps to look like the training ones
        self.decoded_size = decode_size  # None: files are decoded at image_size
        # multi-label: one sigmoid per label, each predicted above its threshold (chosen on the run's validation)
        self.thresholds = list(thresholds) if thresholds is not None else None

    @property
    def multilabel(self) -> bool:
        return self.thresholds is not None

    @property
    def decode_size(self) -> int:
        return self.decoded_size or self.image_size

    def __repr__(self) -> str:
        return (f"Predictor({self.source!r}, {len(self.class_names)} classes, {self.image_size}x{self.image_size}x"
                f"{self.channels}, {self.precision} on {self.device})")

    # ---- inputs -------------------------------------------------------------------------------
    def to_array(self, image) -> np.ndarray:
        """A path, encoded bytes, PIL image or (C|1, H, W) uint8 tensor/array -> (channels, size, size) uint8, as in training."""
        from PIL import Image

        from .data.decode import GRAY, decode_image, to_square_rgb

        side = self.decode_size
        if isinstance(image, (str, Path)):
            image = Path(image).expanduser().read_bytes()
        if isinstance(image, bytes):
            rgb = decode_image(image, side)
        elif isinstance(image, Image.Image):
            rgb = to_square_rgb(image, side)
        else:
            a = image.numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
            if a.dtype != np.uint8 or a.ndim != 3:
                raise UserError(f"an image tensor must be uint8 (channels, height, width), got {a.dtype} {a.shape}",
                                "pass uint8 tensors, PIL images or paths")
            if a.shape[0] == 1:
                a = np.repeat(a, 3, axis=0)
            side = self.image_size if a.shape[1:] == (self.image_size, self.image_size) else side  # already the model's
            rgb = to_square_rgb(Image.fromarray(np.ascontiguousarray(a.transpose(1, 2, 0))), side)
        out = np.rint(rgb @ GRAY).clip(0, 255).astype(np.uint8)[None] if self.channels == 1 else \
            np.ascontiguousarray(rgb.transpose(2, 0, 1))
        return self.shrunk(out) if side != self.image_size else out

    def shrunk(self, images: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
        """Images (c, s, s) or (n, c, s, s) at decode_size made image_size as the run's planner made its data."""
        from .data.resize import resized

        x = torch.as_tensor(images)
        out = resized(x[None] if x.ndim == 3 else x, self.image_size)
        out = out[0] if x.ndim == 3 else out
        return out.numpy() if isinstance(images, np.ndarray) else out

    def as_input(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (n, c, decode_size, decode_size) images of a data source (a source decoded at decode_size) with the
        model's channels and side: what `to_array` makes of each file, for a whole split at once."""
        images = images_as(images, self.channels)
        return self.shrunk(images) if self.decode_size != self.image_size else images

    # ---- outputs ------------------------------------------------------------------------------
    @torch.no_grad()
    def probabilities(self, batch: torch.Tensor) -> torch.Tensor:
        """(n, channels, size, size) uint8 -> (n, classes) float32 probabilities (multi-label: one sigmoid each)."""
        if self.multilabel:
            return torch.sigmoid(self.logits(batch).float()).cpu()
        return torch.softmax(self.logits(batch).float(), dim=1).cpu()

    def predict(self, images: Iterable, top_k: int = 5, batch_size: int = 64, workers: int = 4) -> Predictions:
        """Paths (files, folders, zips), PIL images or uint8 tensors. Unreadable files are listed in
        `.unreadable`, not raised; the result also says how fast it went."""
        if batch_size < 1 or top_k < 1:
            raise UserError("batch size and top-k must be at least 1", "pass --batch-size 64 --top-k 5")
        top_k = min(top_k, len(self.class_names))
        started = time.perf_counter()
        jobs = list(expand(images))
        out = Predictions([])
        with ThreadPoolExecutor(max(1, workers)) as pool:  # PIL decodes with the GIL released
            for start in range(0, len(jobs), batch_size):
                chunk = jobs[start:start + batch_size]
                arrays = list(pool.map(self._read, chunk))
                good = [(name, a) for (name, _), a in zip(chunk, arrays) if not isinstance(a, str)]
                out.unreadable += [(name, a) for (name, _), a in zip(chunk, arrays) if isinstance(a, str)]
                if not good:
                    continue
                probs = self.probabilities(torch.from_numpy(np.stack([a for _, a in good])))
                values, indices = probs.topk(top_k, dim=1)
                for (name, _), p, v, i in zip(good, probs, values.tolist(), indices.tolist()):
                    out.items.append(Prediction(name, [(self.class_names[c], pv) for c, pv in zip(i, v)], p,
                                                self.above_thresholds(p) if self.multilabel else None))
        out.seconds = time.perf_counter() - started
        return out

    def above_thresholds(self, probabilities: torch.Tensor) -> list[tuple[str, float]]:
        """Multi-label: the labels whose probability reaches their threshold, most probable first."""
        on = [(self.class_names[c], float(p)) for c, (p, t) in enumerate(zip(probabilities.tolist(), self.thresholds))
              if p >= t]
        return sorted(on, key=lambda cp: -cp[1])

    def evaluate(self, dataset: str, out: str | Path | None = None, split: str = "all", **source_options) -> dict:
        """Score the model on a labelled data set (a folder, zip, label file or named set): metrics.json and the
        evaluation files go to `out` (default: <run>/evaluations/<data set>/; required for an exported file).
        `source_options`: images, image_column, label_column, data_dir, cache_dir, batch_size, workers."""
        from .evaluate.new_data import evaluation_folder, score
        from .report.evaluation_page import write_evaluation_page

        if out is None:
            if not Path(self.source).is_dir():
                raise UserError(f"{self.source} is not a run folder: its evaluation needs a place to go",
                                "pass out= (or --out DIR)")
            out = evaluation_folder(self.source, dataset, split)
        metrics = score(self, dataset, out, split=split, **source_options)
        write_evaluation_page(out, metrics)
        return metrics

    def _read(self, job) -> np.ndarray | str:
        from PIL import Image

        from .data.decode import DECODE_ERRORS

        name, item = job
        try:
            return self.to_array(item() if callable(item) else item)
        except (*DECODE_ERRORS, Image.DecompressionBombError) as e:
            return f"{type(e).__name__}: {e}"


def expand(images: Iterable) -> Iterable[tuple[str, object]]:
    """(name, item) for each image; folders and zips expand to their image files (read lazily)."""
    from .data.folder import image_files

    if isinstance(images, (str, Path)) or not isinstance(images, Iterable) or isinstance(images, torch.Tensor) and images.ndim == 3:
        images = [images]
    for n, image in enumerate(images):
        if isinstance(image, (str, Path)):
            for name, read in image_files(Path(image)):
                yield name, read
        else:
            yield f"image {n}", image


def images_as(images: torch.Tensor, channels: int) -> torch.Tensor:
    """uint8 (n, c, h, w) with the model's channels: RGB made gray as PIL's convert("L") does, gray repeated."""
    from .data.decode import GRAY

    if images.shape[1] == channels:
        return images
    if channels == 1:
        gray = images.permute(0, 2, 3, 1).double() @ torch.from_numpy(GRAY)
        return gray.round().clamp(0, 255).to(torch.uint8)[:, None]
    return images.expand(-1, 3, -1, -1).contiguous()


class TemperatureScaled(torch.nn.Module):
    """Logits divided by the temperature the run fitted on validation, so that predicted probabilities (and an
    exported model's) are calibrated; the most probable class never changes."""

    def __init__(self, model: torch.nn.Module, temperature: float):
        super().__init__()
        self.model = model
        self.register_buffer("temperature", torch.tensor(float(temperature)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x) / self.temperature


def load_run(run_dir: str | Path, precision: str = "auto", device: str | None = None) -> Predictor:
    """A run folder's model, ready to predict, under the training precision rules (auto: bf16 where the
    hardware does it natively, else fp32)."""
    from safetensors import safe_open

    from .models.registry import ImageClassifier, build_net
    from .runtime import autocast, is_convolutional, resolve_precision

    run_dir = Path(run_dir).expanduser()
    weights = run_dir / "model.safetensors"
    if not weights.is_file():
        raise UserError(f"{run_dir} has no model.safetensors (not a finished run folder)",
                        "pass a folder under runs/ whose training finished, or an exported .onnx/.pt file")
    with safe_open(str(weights), "pt") as f:
        meta = f.metadata() or {}
        state = {k: f.get_tensor(k) for k in f.keys()}
    if "class_names" not in meta:
        raise UserError(f"{weights} has no imagefit metadata", "train the run again with this imagefit version")
    class_names = json.loads(meta["class_names"])
    image_size, channels = int(meta["image_size"]), int(meta["channels"])
    input_size = int(meta["input_size"]) if meta.get("input_size") not in (None, "None") else None
    net_channels = state["mean"].shape[1]
    net = build_net(meta["model"], len(class_names), net_channels, image_size if input_size is None else input_size)
    model = ImageClassifier(net, [0.0] * net_channels, [1.0] * net_channels,
                            input_size if input_size != image_size else None)
    model.load_state_dict(state)
    temperature = float(meta.get("temperature", 1.0))
    if temperature != 1.0:  # fitted on the validation split: calibrated probabilities, the same predictions
        model = TemperatureScaled(model, temperature)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    precision = resolve_precision(precision, device)
    model = model.to(device).eval()
    channels_last = is_convolutional(model)

    def logits(batch: torch.Tensor) -> torch.Tensor:
        x = batch.to(device)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(precision, torch.device(device).type):
            return model(x)

    return Predictor(logits, class_names, image_size, channels, str(run_dir), precision, device, module=model,
                     temperature=temperature, decode_size=_decoded_size(meta), thresholds=_thresholds(meta))


def load_exported(path: str | Path, backend: str | None = None) -> Predictor:
    """An exported file as a Predictor, fp32 or INT8 as exported, on the CPU: onnxruntime (or OpenVINO) for ONNX,
    OpenVINO for its IR (.xml), torch for TorchScript."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"exported model not found: {path}", "pass a file written by imagefit export")
    choices = BACKENDS.get(path.suffix, ("torchscript",))  # any other name: TorchScript, as torch.jit.save wrote it
    backend = backend or choices[0]
    if backend not in choices:
        raise UserError(f"a {path.suffix} model runs on {' or '.join(choices)}, not {backend}",
                        f"pass --backend {choices[0]} or leave --backend out")
    if backend == "onnxruntime":
        onnxruntime = _runtime("onnxruntime", "export")
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        meta = session.get_modelmeta().custom_metadata_map

        def logits(batch: torch.Tensor) -> torch.Tensor:
            return torch.from_numpy(session.run([OUTPUT], {INPUT: batch.numpy()})[0])
    elif backend == "openvino":
        logits, meta = _openvino(path)
    else:
        extra = {META_FILE: ""}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated but still the one loader of .pt
            module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
        meta = json.loads(extra[META_FILE] or "{}")
        logits = module
    if "class_names" not in meta:
        raise UserError(f"{path} carries no imagefit metadata", "export it with imagefit export")
    kind = " int8" if "int8" in meta.get("quantization", "") else ""
    return Predictor(logits, json.loads(meta["class_names"]), int(meta["image_size"]), int(meta["channels"]),
                     str(path), precision="int8" if kind else "32", device=f"cpu ({backend}{kind})",
                     temperature=float(meta.get("temperature", 1.0)),
                     decode_size=_decoded_size(meta), thresholds=_thresholds(meta))


def _decoded_size(meta: dict) -> int | None:
    """The side a run decoded its files at before shrinking them (None: at its image size); older files lack it."""
    value = meta.get("decoded_size")
    return int(value) if value not in (None, "", "None") and int(value) != int(meta["image_size"]) else None


def _thresholds(meta: dict) -> list[float] | None:
    """A multi-label model's per-label thresholds (None: one class an image)."""
    return [float(t) for t in json.loads(meta["thresholds"])] if meta.get("task") == "multilabel" else None


def _runtime(module: str, extra: str):
    try:
        return __import__(module)
    except ImportError:
        raise UserError(f"running this model needs the {module} package", f"pip install 'imagefit[{extra}]'") from None


def _openvino(path: Path) -> tuple[Callable[[torch.Tensor], torch.Tensor], dict[str, str]]:
    """OpenVINO's CPU plugin on an IR (.xml, metadata in rt_info) or an ONNX file (metadata_props)."""
    ov = _runtime("openvino", "openvino")
    core = ov.Core()
    model = core.read_model(str(path))
    if path.suffix == ".onnx":
        import onnx

        meta = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    else:
        info = model.get_rt_info()
        keys = list(info[OPENVINO_META].keys()) if OPENVINO_META in info else []
        meta = {k: model.get_rt_info([OPENVINO_META, k]).astype(str) for k in keys}
    # f32: on a CPU with bf16 units OpenVINO would otherwise run an fp32 model in bf16 (its default hint there)
    compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    request = compiled.create_infer_request()

    def logits(batch: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(request.infer({0: batch.numpy()})[compiled.output(0)].copy())
    return logits, meta


def load(path: str | Path, precision: str = "auto", device: str | None = None, backend: str | None = None) -> Predictor:
    """A run folder, or a file written by `imagefit export` (.onnx, .pt, OpenVINO's .xml); `backend` picks the
    runtime where a format has two (ONNX: onnxruntime, the default, or openvino)."""
    path = Path(path).expanduser()
    if path.is_dir():
        if backend not in (None, "torch"):
            raise UserError(f"a run folder runs on torch, not {backend}", "leave --backend out, or export the run first")
        return load_run(path, precision, device)
    if path.suffix in EXPORTED:
        return load_exported(path, backend)
    raise UserError(f"{path} is neither a run folder nor an exported model",
                    "pass runs/<name> or a file written by imagefit export (.onnx, .pt, .xml)")
