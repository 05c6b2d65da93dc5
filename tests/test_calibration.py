import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from imagefit.evaluate.calibration import (calibrate, calibrated_probabilities, expected_calibration_error,
                                           fit_temperature, nll, plot_reliability, reliability, saved_temperature)


def _calibrated(n=4000, k=5, seed=0):
    """Labels drawn from softmax(logits): calibrated by construction."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, k, generator=g) * 2
    labels = torch.multinomial(torch.softmax(logits, 1), 1, generator=g)[:, 0]
    return logits, labels


def test_ece_is_the_bin_weighted_gap_between_confidence_and_accuracy():
    logits, labels = _calibrated()
    bins = reliability(logits * 3, labels)
    by_hand = sum(n * abs(conf - acc) for _, conf, acc, n in bins) / len(labels)
    assert expected_calibration_error(logits * 3, labels) == pytest.approx(by_hand, abs=1e-5)
    assert expected_calibration_error(logits, labels) < 0.03 < expected_calibration_error(logits * 3, labels)


def test_temperature_recovers_the_overconfidence_and_lowers_nll():
    logits, labels = _calibrated()
    t = fit_temperature(logits * 3, labels)
    assert t == pytest.approx(3, rel=0.1)
    assert nll(logits * 3, labels, t) < nll(logits * 3, labels)
    assert fit_temperature(logits / 2, labels) == pytest.approx(0.5, rel=0.1)  # underconfident: T < 1
    probs = calibrated_probabilities(logits * 3, t)
    assert torch.equal(probs.argmax(1), logits.argmax(1))  # scaling never changes a prediction


def test_calibrate_uses_validation_only(tmp_path):
    val, val_labels = _calibrated(seed=1)
    test, test_labels = _calibrated(seed=2)
    m = calibrate(test * 3, test_labels, val * 3, val_labels)
    assert m["temperature"] == fit_temperature(val * 3, val_labels) != fit_temperature(test * 3, test_labels)
    assert m["val_nll_scaled"] < m["val_nll"] and m["test_ece_scaled"] < m["test_ece"]
    assert m["test_loss_scaled"] == pytest.approx(nll(test * 3, test_labels, m["temperature"]))
    alone = calibrate(test, test_labels)
    assert alone["temperature"] is None and alone["test_ece"] == pytest.approx(expected_calibration_error(test, test_labels))
    plot_reliability(test * 3, test_labels, tmp_path / "r.png", m["temperature"])
    with Image.open(tmp_path / "r.png") as im:
        assert im.size[0] > 800  # two panels


def test_saved_temperature(tmp_path):
    save_file({"w": torch.zeros(1)}, str(tmp_path / "a.safetensors"), metadata={"temperature": "1.75"})
    save_file({"w": torch.zeros(1)}, str(tmp_path / "b.safetensors"), metadata={"format": "imagefit-1"})
    assert saved_temperature(tmp_path / "a.safetensors") == 1.75
    assert saved_temperature(tmp_path / "b.safetensors") == 1.0
