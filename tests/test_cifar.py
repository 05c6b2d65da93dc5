
import numpy as np
import pytest
import torch

from helpers import cifar_batch, dump_pickle, write_cifar10
from imagefit.data.cifar import load_cifar
from imagefit.errors import UserError


def test_cifar10_round_trip(tmp_path):
    batches = write_cifar10(tmp_path)
    src = load_cifar("cifar10", tmp_path, download=False)
    assert src.class_names[0] == "airplane" and len(src.class_names) == 10
    assert src.train.images.shape == (20, 3, 32, 32) and src.test.images.shape == (4, 3, 32, 32)
    assert src.val is None
    expected = np.concatenate([batches[f"data_batch_{i}"][b"data"] for i in range(1, 6)]).reshape(-1, 3, 32, 32)
    assert torch.equal(src.train.images, torch.from_numpy(expected))
    assert src.train.labels.tolist() == sum((batches[f"data_batch_{i}"][b"labels"] for i in range(1, 6)), [])
    assert torch.equal(src.test.images.reshape(4, -1), torch.from_numpy(batches["test_batch"][b"data"]))
    # channel-major rows: the first 1024 bytes are the red plane
    assert torch.equal(src.train.images[0, 0].flatten(), torch.from_numpy(batches["data_batch_1"][b"data"][0, :1024]))


def test_cifar100_fine_labels(tmp_path):
    rng = np.random.default_rng(1)
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    train = cifar_batch(rng, 6, {b"fine_labels": 100, b"coarse_labels": 20})
    test = cifar_batch(rng, 3, {b"fine_labels": 100, b"coarse_labels": 20})
    dump_pickle(folder / "train", train)
    dump_pickle(folder / "test", test)
    fine = [f"fine{i}".encode() for i in range(100)]
    dump_pickle(folder / "meta", {b"fine_label_names": fine, b"coarse_label_names": [f"c{i}".encode() for i in range(20)]})
    src = load_cifar("cifar100", tmp_path, download=False)
    assert src.class_names == [f"fine{i}" for i in range(100)]
    assert src.train.labels.tolist() == train[b"fine_labels"] and src.test.labels.tolist() == test[b"fine_labels"]
    assert torch.equal(src.train.images.reshape(6, -1), torch.from_numpy(train[b"data"]))
    assert any("coarse" in n for n in src.notes)


def test_missing_files_offline_error_names_them(tmp_path):
    with pytest.raises(UserError) as e:
        load_cifar("cifar10", tmp_path, download=False)
    msg = str(e.value)
    assert "\n" not in msg
    for name in ["data_batch_1", "data_batch_5", "test_batch", "batches.meta", "cifar-10-batches-py", "cifar-10-python.tar.gz"]:
        assert name in msg


class _Evil:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.target}",))


def test_malicious_pickle_is_refused(tmp_path):
    write_cifar10(tmp_path)
    pwned = tmp_path / "pwned"
    dump_pickle(tmp_path / "cifar-10-batches-py" / "data_batch_3", {b"data": _Evil(pwned), b"labels": []})
    with pytest.raises(UserError, match="refused to load .*data_batch_3"):
        load_cifar("cifar10", tmp_path, download=False)
    assert not pwned.exists()


def test_truncated_pickle_is_a_user_error(tmp_path):
    write_cifar10(tmp_path)
    path = tmp_path / "cifar-10-batches-py" / "test_batch"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(UserError, match="test_batch"):
        load_cifar("cifar10", tmp_path, download=False)
