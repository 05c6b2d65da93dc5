"""A finished model scored on new labelled data (`imagefit evaluate RUN --dataset NEW`), as `yolo classify val`,
fastai's `learn.validate` and Keras's `model.evaluate` do: next month's photos judged without retraining.

The images are read by the same source code as training (a folder, a zip, a label file or a named set) and
decoded at the model's side by the same function its predictions use, so an image scores as `imagefit predict`
would classify it. Classes are matched by name: the new data may hold fewer classes than the model knows, in any
order, but not one it never learned. The files are the run's own evaluation files (classification report,
confusion matrix, top confusions, predictions, the gallery of the worst mistakes, the reliability diagram with the
run's temperature, Grad-CAM where there is a torch model), written to `RUN/evaluations/<data set>/` with a
metrics.json; its page (report.md, report.html) is report/evaluation_page.py's.
"""
from __future__ import annotations

import dataclasses
import datetime
import json
from pathlib import Path

import torch

from .. import atomic
from ..data.types import ImageSet
from ..errors import UserError

SPLIT_CHOICES = ("all", "train", "val", "test")


def with_the_runs_splits(source, model_source: str, dataset: str, split: str):
    """The data the run trained on, lacking the asked-for split: carved again as the run carved it (its seed and
    fractions, data/pipeline.py's carve_splits), so `--split test` scores exactly the run's test images."""
    from ..config import TrainConfig
    from ..data.pipeline import carve_splits

    config_file = Path(model_source) / "config.yaml"
    if split == "all" or getattr(source, split) is not None or not config_file.is_file():
        return source
    cfg = TrainConfig.load(config_file)
    if not same_data(str(cfg.dataset), str(dataset)):
        return source
    train, val, test, notes = carve_splits(source.train, source.val, source.test, cfg.test_fraction, cfg.val_fraction,
                                           cfg.seed)
    return dataclasses.replace(source, train=train, val=val, test=test, notes=source.notes + notes)


def same_data(a: str, b: str) -> bool:
    """The same named data set, or the same file or folder however it is written."""
    if a.strip().lower() == b.strip().lower():
        return True
    pa, pb = Path(a).expanduser(), Path(b).expanduser()
    return pa.exists() and pb.exists() and pa.resolve() == pb.resolve()


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


def labelled_sets(source, split: str, class_names: list[str], ignore_unknown: bool):
    """Multi-label: the chosen split(s) with multi-hot labels over the model's labels (a label the data lacks is a
    column of zeros); labels the model never learned refuse the data, or with `ignore_unknown` are dropped."""
    unknown = [name for name in source.class_names if name not in class_names]
    if unknown and not ignore_unknown:
        raise UserError(f"the data has labels the model never learned: {', '.join(unknown[:5])}"
                        f"{' ...' if len(unknown) > 5 else ''}", "pass --ignore-unknown-classes to leave those labels out")
    parts = [getattr(source, s) for s in (("train", "val", "test") if split == "all" else (split,))]
    parts = [p for p in parts if p is not None and len(p)]
    if not parts:
        raise UserError(f"the data has no {split} images", "pass --split all, or a data set with that split")
    given = torch.cat([p.labels if p.labels.ndim == 2 else torch.nn.functional.one_hot(p.labels, len(source.class_names))
                       for p in parts])
    labels = torch.zeros(len(given), len(class_names), dtype=torch.int64)
    for j, name in enumerate(source.class_names):
        if name in class_names:
            labels[:, class_names.index(name)] = given[:, j]
    files = [f for p in parts for f in (p.files or [f"{i}" for i in range(len(p))])]
    left_out = {name: int(given[:, j].sum()) for j, name in enumerate(source.class_names) if name in unknown}
    return torch.cat([p.images for p in parts]), labels, files, left_out


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
    source = load_source(dataset, data_dir=data_dir, cache_dir=cache_dir, image_size=predictor.decode_size,
                         workers=workers, images=images, image_column=image_column, label_column=label_column,
                         task="multilabel" if predictor.multilabel else "auto")
    source = with_the_runs_splits(source, predictor.source, dataset, split)
    if predictor.multilabel:
        pixels, labels, files, left_out = labelled_sets(source, split, predictor.class_names, ignore_unknown_classes)
    else:
        pixels, labels, files, left_out = labelled_images(source, split, predictor.class_names, ignore_unknown_classes)
    out = Path(out)  # made once the data is known to fit the model: a refused one leaves no folder
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot make the folder {out}: {e.strerror or e}", "pass --out a folder you can write") from None
    pixels = predictor.as_input(pixels)  # the model's channels, and its side if the run's planner shrank its data
    with torch.no_grad():
        logits = torch.cat([predictor.logits(pixels[s:s + batch_size]).float().cpu()
                            for s in range(0, len(pixels), batch_size)])
    if predictor.multilabel:  # the run's thresholds, chosen on its validation split
        from .multilabel import write_multilabel_evaluation

        metrics = write_multilabel_evaluation(out, logits, labels, predictor.class_names, predictor.thresholds,
                                              files=files, images=pixels)
        present = [i for i in range(len(predictor.class_names)) if labels[:, i].any()]
    else:
        metrics = write_evaluation(out, logits, labels, predictor.class_names)
        metrics.update(write_diagnostics(out, predictor, ImageSet(pixels, labels, files=files), logits))
        present = sorted(set(labels.tolist()))
    atomic.write_text(out / "files.csv", "index,file\n" + "".join(f"{i},{json.dumps(f)}\n" for i, f in enumerate(files)))
    metrics.update(kind="evaluation", folder=str(out), model=predictor.source, dataset=str(dataset), split=split,
                   images=int(len(labels)),
                   classes_present=[predictor.class_names[i] for i in present],
                   classes_absent=[n for i, n in enumerate(predictor.class_names) if i not in present],
                   unknown_classes_left_out=left_out,
                   skipped_files={"count": len(source.skipped), "files": source.skipped[:100]},
                   data_notes=source.notes, precision=predictor.precision, device=str(predictor.device),
                   evaluated_at=datetime.datetime.now().isoformat(timespec="seconds"))
    atomic.write_text(out / "metrics.json", json.dumps(metrics, indent=1, default=float))
    return metrics


def write_diagnostics(out: Path, predictor, data, logits: torch.Tensor) -> dict:
    """The run's own error analysis on the new images: misclassified.csv/.png (highest loss first), reliability.png
    (as trained and with the run's temperature) and, for a run folder's torch model, gradcam.png.

    `logits` are the predictor's, already divided by the run's temperature (predictions.csv's probabilities are
    calibrated, as `imagefit predict`'s): the model as trained gave logits * temperature, so both panels of the
    reliability diagram, and the losses with and without the temperature, come from the same forward pass."""
    from .calibration import expected_calibration_error, nll, plot_reliability
    from .mistakes import write_mistakes
    from .saliency import write_gradcam

    t = predictor.temperature
    out_metrics = write_mistakes(out, data, logits, data.labels, predictor.class_names)
    raw = logits.double() * t
    plot_reliability(raw, data.labels, out / "reliability.png", t if t != 1.0 else None)
    # the keys a run's metrics.json uses, with the same meaning: test_loss and test_ece as trained, *_scaled with
    # the temperature (None without one), so `imagefit compare` sets runs and evaluations side by side
    scaled = t != 1.0
    out_metrics.update(temperature=t if scaled else None, test_loss=nll(raw, data.labels),
                       test_loss_scaled=nll(logits, data.labels) if scaled else None,
                       test_ece=expected_calibration_error(raw, data.labels),
                       test_ece_scaled=expected_calibration_error(logits, data.labels) if scaled else None)
    if predictor.module is not None:
        out_metrics.update(write_gradcam(out, data, logits, data.labels, predictor.class_names, predictor.module))
    else:
        out_metrics["gradcam_note"] = "an exported model has no gradients to draw Grad-CAM from: evaluate the run folder"
    return out_metrics


def evaluation_folder(run_dir: str | Path, dataset: str, split: str) -> Path:
    from ..data.sources import dataset_slug

    return Path(run_dir) / "evaluations" / (dataset_slug(str(dataset)) + ("" if split == "all" else f"-{split}"))

