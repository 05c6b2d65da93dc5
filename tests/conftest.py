import os

import pytest

# Each test gets its own data cache and runs folder under tmp_path: parallel-safe, nothing shared.
os.environ.setdefault("MPLBACKEND", "Agg")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # One compute thread per test process (and the CLIs it starts) when xdist runs several: two processes of
    # two threads each on two cores wait on each other at every parallel region, and timings become noise.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


@pytest.fixture
def quick(tmp_path):
    """Keyword arguments for a real training run of a few seconds on digits."""
    return dict(dataset="digits", model="seed-cnn", epochs=2, batch_size=64, runs_dir=str(tmp_path / "runs"),
                cache_dir=str(tmp_path / "cache"), data_dir=str(tmp_path / "data"), progress=False,
                precision="32")


@pytest.fixture
def photos(tmp_path):
    """A folder of 3 classes x 8 real PNG and JPEG files of mixed sizes and modes (transfer-learning tests)."""
    from helpers import write_image_folder

    write_image_folder(tmp_path / "photos", per_class=8)
    return str(tmp_path / "photos")


@pytest.fixture(scope="session")
def trained_digits(tmp_path_factory):
    """One real training run (seed-cnn on digits, 2 epochs: seconds), made once per test process and never
    changed: the report, HTML, export, inference and diagnostics tests read a folder that training wrote, not a
    hand-made metrics.json. Tests that write into a run folder take `digits_run` or `real_run`, a copy."""
    import imagefit

    tmp = tmp_path_factory.mktemp("real-run")
    return imagefit.train(dataset="digits", model="seed-cnn", epochs=2, batch_size=64, runs_dir=str(tmp / "runs"),
                          cache_dir=str(tmp / "cache"), data_dir=str(tmp / "data"), progress=False, precision="32",
                          name="real")


@pytest.fixture(scope="session")
def real_run_dir(trained_digits):
    return trained_digits.dir


@pytest.fixture
def real_run(real_run_dir, tmp_path):
    """A copy of that run's folder in this test's tmp_path, free to change or delete files in."""
    import shutil

    return shutil.copytree(real_run_dir, tmp_path / real_run_dir.name)


@pytest.fixture
def digits_run(trained_digits, real_run):
    """That run as imagefit.train returned it, its folder the copy in this test's tmp_path."""
    import dataclasses

    return dataclasses.replace(trained_digits, dir=real_run)
