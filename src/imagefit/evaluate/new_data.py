"""A finished model scored on new labelled data (`imagefit evaluate RUN --dataset NEW`), as `yolo classify val`,
fastai's `learn.validate` and Keras's `model.evaluate` do: next month's photos judged without retraining.

The images are read by the same source code as training (a folder, a zip, a label file or a named set) and
decoded at the model's side by the same function its predictions use, so an image scores as `imagefit predict`
would classify it. Classes are matched by name: the new data may hold fewer classes than the model knows, in any
order, but not one it never learned. The files are the run's own evaluation files (classification report,
confusion matrix, top confusions, predictions), written to `RUN/evaluations/<data set>/` with a metrics.json; its
page (report.md, report.html) is report/evaluation_page.py's.
"""
from __future__ import annotations

import datetime
import json
from pathlib import Path

import torch

from .. import atomic
from ..errors import UserError

SPLIT_CHOICES = ("all", "train", "val", "test")


def images_as(images: torch.Tensor, channels: int) -> torch.Tensor:
    """uint8 (n, c, h, w) with the model's channels: RGB made gray as PIL's convert("L") does, gray repeated."""
    from ..data.folder import GRAY

    if images.shape[1] == channels:
        return images
    if channels == 1:
        gray = images.permute(0, 2, 3, 1).double() @ torch.from_numpy(GRAY)
        return gray.round().clamp(0, 255).to(torch.uint8)[:, None]
    return images.expand(-1, 3, -1, -1).contiguous()


def labelled_images(source, split: str, class_names: list[str], ignore_unknown: bool = False
                    ) -> tuple[torch.Tensor, torch.Tensor, list[str], dict[str, int]]:
    """The images of the chosen split(s), their labels as indices into the model's classes, their files, and the
    images of classes the model never learned that were left out (only with `ignore_unknown`)."""
    unknown = [name for name in source.class_names if name not in class_names]
    if unknown and not ignore_unknown:
        shown = ", ".join(unknown[:5]) + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
        raise UserError(f"the data has classes the model never learned: {shown} (it knows {', '.join(class_names[:10])}"
                        f"{', ...' if len(class_names) > 10 else ''})",
                        "evaluate on the model's classes only, or pass --ignore-unknown-classes to leave those out")
    parts = [getattr(source, s) for s in (("train", "val", "test") if split == "all" else (split,))]
    parts = [p for p in parts if p is not None and len(p)]
    if not parts:
        raise UserError(f"the data has no {split} images", "pass --split all, or a data set with that split")
    to_model = torch.tensor([class_names.index(n) if n in class_names else -1 for n in source.class_names])
    images = torch.cat([p.images for p in parts])
    given = torch.cat([p.labels for p in parts])  # indices into the data's own classes
    labels = to_model[given]
    files = [f for p in parts for f in (p.files or [f"{i}" for i in range(len(p))])]
    counts = torch.bincount(given, minlength=len(source.class_names)).tolist()
    left_out = {name: counts[i] for i, name in enumerate(source.class_names) if name in unknown and counts[i]}
    known = labels >= 0
    if not bool(known.any()):
        raise UserError("none of the data's images is of a class the model knows", "evaluate on the model's classes")
    keep = known.nonzero()[:, 0]
    return images[keep], labels[keep], [files[i] for i in keep.tolist()], left_out


def score(predictor, dataset: str, out: str | Path, *, split: str = "all", images: str | None = None,
          image_column: str | None = None, label_column: str | None = None, data_dir: str = "~/.cache/imagefit/data",
          cache_dir: str = "~/.cache/imagefit/cache", batch_size: int = 256, workers: int = 2,
          ignore_unknown_classes: bool = False) -> dict:
    """Score `predictor` (imagefit.load) on a labelled data set; write the evaluation files to `out` and return
    its metrics.json."""
    from ..data.sources import load_source
    from .metrics import write_evaluation

    if split not in SPLIT_CHOICES:
        raise UserError(f"unknown split '{split}'", f"use one of {', '.join(SPLIT_CHOICES)}")
    source = load_source(dataset, data_dir=data_dir, cache_dir=cache_dir, image_size=predictor.image_size,
                         workers=workers, images=images, image_column=image_column, label_column=label_column)
    pixels, labels, files, left_out = labelled_images(source, split, predictor.class_names, ignore_unknown_classes)
    out = Path(out)  # made once the data is known to fit the model: a refused one leaves no folder
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot make the folder {out}: {e.strerror or e}", "pass --out a folder you can write") from None
    pixels = images_as(pixels, predictor.channels)
    logits = torch.cat([predictor.logits(pixels[s:s + batch_size]).float().cpu()
                        for s in range(0, len(pixels), batch_size)])
    metrics = write_evaluation(out, logits, labels, predictor.class_names)
    atomic.write_text(out / "files.csv", "index,file\n" + "".join(f"{i},{json.dumps(f)}\n" for i, f in enumerate(files)))
    present = sorted(set(labels.tolist()))
    metrics.update(folder=str(out), model=predictor.source, dataset=str(dataset), split=split, images=int(len(labels)),
                   classes_present=[predictor.class_names[i] for i in present],
                   classes_absent=[n for i, n in enumerate(predictor.class_names) if i not in present],
                   unknown_classes_left_out=left_out,
                   skipped_files={"count": len(source.skipped), "files": source.skipped[:100]},
                   data_notes=source.notes, precision=predictor.precision, device=str(predictor.device),
                   evaluated_at=datetime.datetime.now().isoformat(timespec="seconds"))
    atomic.write_text(out / "metrics.json", json.dumps(metrics, indent=1, default=float))
    return metrics


def evaluation_folder(run_dir: str | Path, dataset: str, split: str) -> Path:
    from ..data.sources import dataset_slug

    return Path(run_dir) / "evaluations" / (dataset_slug(str(dataset)) + ("" if split == "all" else f"-{split}"))

