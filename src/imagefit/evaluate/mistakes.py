"""The test images a model gets most wrong: `misclassified.csv` (all of them) and `misclassified.png` (the worst).

"Worst" is the per-image test loss, -log p(true class): the images the model was most confidently wrong
about, which is where mislabelled files, near-duplicates of another class and the model's blind spots
show up first (fastai's `plot_top_losses`). Every row names the image's source file when the data set
has files (the path inside the folder or zip) and always its index in the test split, which is its row
in predictions.safetensors, so each number can be recomputed from the saved logits.
"""
from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import torch
import torch.nn.functional as F

from .. import atomic
from ..data.types import ImageSet

GALLERY_SIZE = 24
COLUMNS = ["rank", "index", "file", "true", "true_name", "predicted", "predicted_name", "p_true", "p_predicted",
           "loss", "in_gallery"]


def ranked_mistakes(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(indices of misclassified images, highest loss first; per-image loss; softmax probabilities).

    The argmax is the one the metrics use, so the count equals the confusion matrix's off-diagonal sum;
    equal losses keep test order, so the ranking is reproducible.
    """
    logits, labels = logits.double(), labels.long()
    loss = F.cross_entropy(logits, labels, reduction="none")
    wrong = torch.nonzero(logits.argmax(dim=1) != labels).flatten()
    order = torch.sort(-loss[wrong], stable=True).indices
    return wrong[order], loss, torch.softmax(logits, dim=1)


def write_mistakes(run_dir: Path, test: ImageSet, logits: torch.Tensor, labels: torch.Tensor,
                   class_names: list[str], gallery_size: int = GALLERY_SIZE) -> dict:
    run_dir = Path(run_dir)
    ranked, loss, probs = ranked_mistakes(logits, labels)
    predicted = logits.argmax(dim=1)
    names = [str(n) for n in class_names]
    shown = ranked[:gallery_size].tolist()
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(COLUMNS)
    for rank, i in enumerate(ranked.tolist(), 1):
        t, q = int(labels[i]), int(predicted[i])
        writer.writerow([rank, i, test.files[i] if test.files is not None else "", t, names[t], q, names[q],
                         f"{float(probs[i, t]):.6f}", f"{float(probs[i, q]):.6f}", f"{float(loss[i]):.6f}",
                         rank if rank <= len(shown) else ""])
    atomic.write_text(run_dir / "misclassified.csv", buf.getvalue())
    path = run_dir / "misclassified.png"
    if shown and test.images.dtype == torch.uint8:
        tiles = torch.stack([test.take(i, i + 1)[0] for i in shown])
        titles = [f"true: {names[int(labels[i])][:18]}\npred: {names[int(predicted[i])][:18]} "
                  f"({float(probs[i, predicted[i]]):.2f})" for i in shown]
        plot_gallery(tiles, titles, path, f"The {len(shown)} misclassified test images with the highest loss "
                                          f"(true class → predicted class, its probability)")
    elif path.exists():
        path.unlink()
    return {"misclassified": len(ranked), "misclassified_shown": len(shown) if path.exists() else 0}


def plot_gallery(images: torch.Tensor, titles: list[str], path: Path, title: str) -> Path:
    """uint8 (N, C, H, W) tiles in rows of up to 8, each with its caption."""
    from .plots import plt, save_figure

    n = len(images)
    cols = min(8, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.7 * cols + 0.4, 2.0 * rows + 0.5), dpi=100, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, caption in zip(axes.flat, images, titles):
        array = image.permute(1, 2, 0).numpy()
        if array.shape[2] == 1:
            ax.imshow(array[:, :, 0], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        else:
            ax.imshow(array, interpolation="nearest" if array.shape[0] < 64 else "antialiased")
        ax.set_title(caption, fontsize=7)
    fig.suptitle(title, fontsize=9)
    return save_figure(fig, path)
