
import numpy as np
import pytest
import torch

from helpers import idx_bytes, write_idx_set
from imagefit.data.mnist import load_mnist, read_idx
from imagefit.errors import UserError


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_torchvision_layout(tmp_path, gz):
    arrays = write_idx_set(tmp_path / "MNIST" / "raw", gz=gz)
    src = load_mnist("mnist", tmp_path, download=False)
    assert src.class_names == [str(i) for i in range(10)]
    assert src.train.images.shape == (5, 1, 28, 28) and src.test.images.shape == (3, 1, 28, 28)
    assert torch.equal(src.train.images[:, 0], torch.from_numpy(arrays["train-images-idx3-ubyte"]))
    assert src.test.labels.tolist() == arrays["t10k-labels-idx1-ubyte"].tolist()
    assert src.train.labels.dtype == torch.int64


def test_fashion_mnist_plain_folder_and_names(tmp_path):
    write_idx_set(tmp_path / "fashion-mnist", gz=True)
    src = load_mnist("fashion-mnist", tmp_path, download=False)
    assert src.class_names[0] == "T-shirt/top" and src.class_names[-1] == "Ankle boot" and len(src.class_names) == 10
    assert len(src.train) == 5


def test_bad_magic_names_file(tmp_path):
    folder = tmp_path / "MNIST" / "raw"
    write_idx_set(folder)
    (folder / "t10k-labels-idx1-ubyte").write_bytes(b"\x12\x34\x56\x78garbage")
    with pytest.raises(UserError, match="t10k-labels-idx1-ubyte"):
        load_mnist("mnist", tmp_path, download=False)


def test_truncated_idx_is_refused(tmp_path):
    path = tmp_path / "x-idx3-ubyte"
    path.write_bytes(idx_bytes(np.zeros((4, 28, 28), np.uint8))[:-10])
    with pytest.raises(UserError, match="not a valid IDX"):
        read_idx(path)


def test_missing_files_error_names_files_and_folder(tmp_path):
    with pytest.raises(UserError) as e:
        load_mnist("mnist", tmp_path, download=False)
    msg = str(e.value)
    assert "\n" not in msg and str(tmp_path / "MNIST" / "raw") in msg
    assert "train-images-idx3-ubyte" in msg and "t10k-labels-idx1-ubyte" in msg


@pytest.mark.skipif(not __import__("pathlib").Path("/usr/share/datasets/fashion-mnist").is_dir(), reason="dataset-fashion-mnist not installed")
def test_fashion_mnist_from_debian_package(tmp_path):
    src = load_mnist("fashion-mnist", tmp_path, download=False)
    assert src.train.images.shape == (60000, 1, 28, 28) and src.test.images.shape == (10000, 1, 28, 28)
    assert src.train.labels.bincount().tolist() == [6000] * 10
    assert "/usr/share/datasets/fashion-mnist" in src.notes[0]
