"""Calibration: does a predicted probability of 0.9 mean right 9 times in 10?

Expected calibration error (15 equal-width confidence bins, torchmetrics' definition) and a reliability
diagram say how far the model's confidence is from its accuracy. Temperature scaling (Guo et al. 2017)
then divides the logits by one number T, fitted by minimising the negative log-likelihood on the
validation split; it never changes a prediction, only how sure it is. T is fitted on validation only:
fitting it on test would report a calibration no new image can have. The test ECE and loss are
reported before and after, and T is saved in model.safetensors' metadata ("temperature") so a later
prediction can divide by it (`saved_temperature`, `calibrated_probabilities`).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torchmetrics.functional.classification import multiclass_calibration_error

N_BINS = 15
T_MIN, T_MAX = 0.05, 20.0


def expected_calibration_error(logits: torch.Tensor, labels: torch.Tensor, n_bins: int = N_BINS) -> float:
    probs = torch.softmax(torch.as_tensor(logits).double(), dim=1).float()
    return float(multiclass_calibration_error(probs, torch.as_tensor(labels).long(), num_classes=probs.shape[1],
                                              n_bins=n_bins, norm="l1"))


def nll(logits: torch.Tensor, labels: torch.Tensor, temperature: float = 1.0) -> float:
    return float(F.cross_entropy(torch.as_tensor(logits).double() / temperature, torch.as_tensor(labels).long()))


def fit_temperature(val_logits: torch.Tensor, val_labels: torch.Tensor) -> float:
    """The T > 0 minimising validation NLL of logits / T (L-BFGS on log T, so T stays positive).

    Takes validation logits only, by design. Returns 1.0 when the fit would not lower the NLL.
    """
    logits, labels = torch.as_tensor(val_logits).detach().double(), torch.as_tensor(val_labels).long()
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.5, max_iter=100, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(logits / log_t.exp(), labels)
        loss.backward()
        return loss

    opt.step(closure)
    t = float(log_t.detach().exp().clamp(T_MIN, T_MAX))
    return t if nll(logits, labels, t) < nll(logits, labels) else 1.0


def calibrated_probabilities(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    return torch.softmax(torch.as_tensor(logits).double() / temperature, dim=1)


def saved_temperature(model_path: str | Path) -> float:
    """The temperature a run saved with its model (1.0 for models saved without one)."""
    from safetensors import safe_open

    with safe_open(str(model_path), framework="pt") as f:
        return float((f.metadata() or {}).get("temperature", 1.0))


def calibrate(test_logits: torch.Tensor, test_labels: torch.Tensor, val_logits: torch.Tensor | None = None,
              val_labels: torch.Tensor | None = None) -> dict:
    """The numbers for metrics.json; the temperature keys are None without a validation split."""
    out = {"ece_bins": N_BINS, "test_ece": expected_calibration_error(test_logits, test_labels),
           "temperature": None, "val_nll": None, "val_nll_scaled": None, "test_ece_scaled": None,
           "test_loss_scaled": None}
    if val_logits is None or val_labels is None or len(val_labels) == 0:
        return out
    t = fit_temperature(val_logits, val_labels)
    out.update(temperature=t, val_nll=nll(val_logits, val_labels), val_nll_scaled=nll(val_logits, val_labels, t),
               test_ece_scaled=expected_calibration_error(torch.as_tensor(test_logits).double() / t, test_labels),
               test_loss_scaled=nll(test_logits, test_labels, t))
    return out


def reliability(logits: torch.Tensor, labels: torch.Tensor, n_bins: int = N_BINS) -> list[tuple[float, float, float, int]]:
    """Per confidence bin (lower edge, mean confidence, accuracy, images); empty bins left out."""
    probs = torch.softmax(torch.as_tensor(logits).double(), dim=1)
    conf, pred = probs.max(dim=1)
    right = (pred == torch.as_tensor(labels)).double()
    edges = torch.linspace(0, 1, n_bins + 1, dtype=torch.float64)
    which = torch.bucketize(conf, edges[1:-1], right=True)  # (lo, hi] bins, as torchmetrics
    out = []
    for b in range(n_bins):
        mask = which == b
        if mask.any():
            out.append((float(edges[b]), float(conf[mask].mean()), float(right[mask].mean()), int(mask.sum())))
    return out


def plot_reliability(test_logits: torch.Tensor, test_labels: torch.Tensor, path: str | Path,
                     temperature: float | None = None) -> Path:
    """Accuracy against confidence per bin, as trained and (with a temperature) after scaling."""
    from .plots import plt, save_figure

    panels = [("as trained", test_logits)]
    if temperature is not None:
        panels.append((f"temperature {temperature:.3f} (fitted on validation)", torch.as_tensor(test_logits) / temperature))
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.6), dpi=100, squeeze=False)
    width = 1 / N_BINS
    for ax, (title, logits) in zip(axes[0], panels):
        bins = reliability(logits, test_labels)
        lo = np.array([b[0] for b in bins])
        ax.bar(lo, [b[2] for b in bins], width=width, align="edge", color="#1f77b4", edgecolor="white",
               label="accuracy in the bin")
        ax.bar(lo, [b[1] - b[2] for b in bins], bottom=[b[2] for b in bins], width=width, align="edge",
               color="#d62728", alpha=0.35, label="gap to confidence")
        ax.plot([0, 1], [0, 1], color="0.3", linestyle="--", linewidth=1, label="perfect calibration")
        ece = expected_calibration_error(logits, test_labels)
        ax.set_title(f"Test, {title}\nECE {ece:.4f}", fontsize=10)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("confidence (top probability)")
        ax.set_ylabel("accuracy")
        ax.legend(loc="upper left", fontsize=8)
        ax.grid(True, alpha=0.3)
    return save_figure(fig, path)
