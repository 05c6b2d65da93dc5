"""One uploaded image through a run's model, for the page: the same numbers as `imagefit predict`, and a
Grad-CAM map of the top class.

The bytes go through `Predictor.to_array` (the training decoder, data/decode.py `decode_image`) and
`Predictor.probabilities`, the two steps `Predictor.predict` takes for every file, so the page and the command
line agree to the last digit. Each run's model is loaded once and reused; one request at a time uses a model,
since Grad-CAM hooks its layers for the pass.
"""
from __future__ import annotations

import base64
import io
import threading
import time
from pathlib import Path

import numpy as np


class BadImage(Exception):
    """The upload is not an image the training decoder accepts; the message is the page's one line."""


def png_uri(array: np.ndarray) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def decode(predictor, data: bytes) -> np.ndarray:
    """(channels, size, size) uint8, as training decoded its files; BadImage with one line otherwise."""
    from PIL import Image

    from ..data.decode import DECODE_ERRORS, failure_reason

    if not data:
        raise BadImage("the file is empty (0 bytes)")
    try:
        return predictor.to_array(data)
    except Image.DecompressionBombError as e:
        raise BadImage(f"the image has too many pixels to decode safely (a decompression bomb?): {e}") from None
    except DECODE_ERRORS as e:
        raise BadImage(f"the file is not an image imagefit can read ({failure_reason(e)})") from None


def gradcam(predictor, array: np.ndarray, index: int) -> dict:
    """The Grad-CAM overlay of class `index` as a data: PNG, or the reason there is none."""
    import torch

    from ..evaluate.saliency import NoSaliency, gradcam_maps, overlay

    picture = torch.from_numpy(array)
    try:
        if predictor.module is None:
            raise NoSaliency("the model has no torch module to take gradients of")
        cams = gradcam_maps(predictor.module, picture[None], [[index]])
        return {"image": png_uri(overlay(picture, cams.maps[0][0])), "layer": cams.layer,
                "class": predictor.class_names[index]}
    except NoSaliency as e:
        return {"note": str(e)}
    except Exception as e:  # noqa: BLE001 - the map is an extra: its failure must not cost the prediction
        return {"note": f"computing the map failed ({type(e).__name__}: {str(e)[:160]})"}


class Predictors:
    """Each run's Predictor, loaded on first use and again only when its model.safetensors changes."""

    def __init__(self):
        self._loaded: dict[Path, tuple[int, object, threading.Lock]] = {}
        self._lock = threading.Lock()

    def get(self, run_dir: Path):
        from ..inference import load_run

        stamp = (run_dir / "model.safetensors").stat().st_mtime_ns
        with self._lock:
            cached = self._loaded.get(run_dir)
            if cached is None or cached[0] != stamp:
                cached = (stamp, load_run(run_dir), threading.Lock())
                self._loaded[run_dir] = cached
            return cached[1], cached[2]

    def predict(self, run_dir: Path, data: bytes, top_k: int = 5) -> dict:
        """The page's answer for one image: top classes with probabilities, the image as the model saw it, and
        Grad-CAM of the top class. Raises BadImage."""
        import torch

        from ..evaluate.saliency import enlarged

        predictor, lock = self.get(run_dir)
        started = time.perf_counter()
        array = decode(predictor, data)
        with lock:
            probs = predictor.probabilities(torch.from_numpy(array[None]))[0]
            values, indices = probs.topk(max(1, min(top_k, len(predictor.class_names))))
            cam = gradcam(predictor, array, int(indices[0]))
        return {"top": [{"class": predictor.class_names[i], "probability": v}
                        for v, i in zip(values.tolist(), indices.tolist())],
                "seen": png_uri(np.asarray(enlarged(torch.from_numpy(array)))), "gradcam": cam,
                "image_size": predictor.image_size, "channels": predictor.channels,
                "temperature": predictor.temperature, "seconds": round(time.perf_counter() - started, 3),
                # multi-label: every label at or above the threshold the run chose on validation (None: one class)
                "labels": [{"label": c, "probability": p} for c, p in predictor.above_thresholds(probs)]
                if predictor.multilabel else None}
