import os

import pytest

# Each test gets its own data cache and runs folder under tmp_path: parallel-safe, nothing shared.
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture
def quick(tmp_path):
    """Keyword arguments for a real training run of a few seconds on digits."""
    return dict(dataset="digits", model="seed-cnn", epochs=2, batch_size=64, runs_dir=str(tmp_path / "runs"),
                cache_dir=str(tmp_path / "cache"), data_dir=str(tmp_path / "data"), progress=False,
                precision="32")
