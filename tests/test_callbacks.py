"""Early stopping as wired in imagefit, on real Lightning runs whose validation loss is scripted.

A scripted metric makes the expected stop epoch exact; everything else (Trainer, EarlyStopping,
checkpoints) is the real thing.
"""
import lightning as L
import pytest
import torch

from imagefit.errors import UserError
from imagefit.train.callbacks import AtomicCheckpointIO, EarlyStoppingInEpochs


class Scripted(L.LightningModule):
    def __init__(self, values):
        super().__init__()
        self.values = values
        self.layer = torch.nn.Linear(1, 1)

    def training_step(self, batch, batch_idx):
        return self.layer(batch[0]).sum() * 0

    def validation_step(self, batch, batch_idx):
        self.log("val_loss", float(self.values[self.current_epoch]))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def fit(values, tmp_path, val_every=1, **es):
    stopper = EarlyStoppingInEpochs("val_loss", "min", val_every=val_every, **es)
    trainer = L.Trainer(max_epochs=len(values), callbacks=[stopper], logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, check_val_every_n_epoch=val_every,
                        num_sanity_val_steps=0, default_root_dir=tmp_path)
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.zeros(1, 1)), batch_size=1)
    trainer.fit(Scripted(values), data, data)
    return trainer.current_epoch, stopper


def test_patience_counts_epochs(tmp_path):
    # best at epoch 2, then flat: patience 3 stops after epochs 3, 4, 5
    epochs, stopper = fit([5, 4, 4, 4, 4, 4, 4, 4, 4, 4], tmp_path, patience_epochs=3)
    assert epochs == 5 and stopper.stopped_epoch == 4


def test_patience_counts_epochs_whatever_the_validation_frequency(tmp_path):
    # validation every 2 epochs (after epochs 2, 4, 6, ...): patience of 4 epochs = 2 checks without gain
    values = [9, 5, 9, 4, 9, 4, 9, 4, 9, 4, 9, 4]
    epochs, _ = fit(values, tmp_path, val_every=2, patience_epochs=4)
    assert epochs == 8  # best after epoch 4; no gain after 6 and 8: 4 epochs of patience


def test_min_delta(tmp_path):
    # improvements of 0.05 are below min_delta 0.1: they do not reset the counter
    values = [5, 4, 3.95, 3.9, 3.85, 3.8, 3.75, 3.7, 3.65, 3.6]
    epochs, _ = fit(values, tmp_path, patience_epochs=2, min_delta=0.1)
    assert epochs == 4
    epochs, _ = fit(values, tmp_path, patience_epochs=2, min_delta=0.0)
    assert epochs == 10


def test_start_from_epoch(tmp_path):
    # without warm-up the early plateau stops the run at epoch 4; with 5 warm-up epochs it reaches the real gains
    values = [5, 5, 5, 5, 5, 4, 3, 2, 2, 2, 2, 2]
    assert fit(values, tmp_path, patience_epochs=3)[0] == 4
    epochs, stopper = fit(values, tmp_path, patience_epochs=3, start_from_epoch=5)
    assert epochs == 11 and float(stopper.best_score) == 2


def test_atomic_checkpoint_io_round_trip_and_refuses_pickled_code(tmp_path):
    io = AtomicCheckpointIO()
    io.save_checkpoint({"state_dict": {"w": torch.ones(2)}, "epoch": 3}, tmp_path / "a.ckpt")
    assert io.load_checkpoint(tmp_path / "a.ckpt")["epoch"] == 3
    assert [p.name for p in tmp_path.iterdir()] == ["a.ckpt"]

    class Payload:
        def __reduce__(self):
            import os
            return os.system, (f"touch {tmp_path / 'pwned'}",)

    torch.save({"state_dict": {}, "x": Payload()}, tmp_path / "evil.ckpt", _use_new_zipfile_serialization=True)
    with pytest.raises(UserError, match="is not a checkpoint imagefit wrote .*posix.system.*none of its contents ran"):
        io.load_checkpoint(tmp_path / "evil.ckpt")
    assert not (tmp_path / "pwned").exists()


def test_a_diverging_run_stops_with_one_line_and_keeps_the_last_good_checkpoint(tmp_path):

    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}  # warnings shown, as a user sees them
    proc = subprocess.run([sys.executable, "-m", "imagefit.cli", "train", "--dataset", "digits", "--epochs", "3",
                           "--lr", "1e30", "--optimizer", "sgd", "--batch-size", "256", "--precision", "32",
                           "--no-progress", "--name", "boom", "--runs-dir", str(tmp_path / "runs")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert all(s.startswith("imagefit:") for s in proc.stderr.splitlines()), proc.stderr  # no third-party warning
    line = [s for s in proc.stderr.splitlines() if "error" in s][-1]
    assert "loss became nan in epoch 1" in line or "loss became inf in epoch 1" in line, line
    assert "lower the learning rate, e.g. --lr 1e+29" in line
    assert not (tmp_path / "runs" / "boom" / "metrics.json").exists()
    assert not (tmp_path / "runs" / "boom" / "checkpoints" / "last.ckpt").exists()  # epoch 1 was never good


def test_atomic_json_has_no_bare_nan(tmp_path):
    import json as _json

    from imagefit import atomic

    atomic.write_json(tmp_path / "m.json", {"loss": float("nan"), "rows": [1.0, float("inf")], "ok": 0.5})
    text = (tmp_path / "m.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert _json.loads(text) == {"loss": None, "rows": [1.0, None], "ok": 0.5}
