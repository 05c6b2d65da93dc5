import pytest
import torch
from PIL import Image

from imagefit.data.sources import DATASETS, load_source, resize_images
from imagefit.errors import UserError
from test_mnist import write_idx_set


def test_datasets_listing():
    assert set(DATASETS) == {"digits", "mnist", "fashion-mnist", "cifar10", "cifar100"}
    assert all(isinstance(v, str) and "\n" not in v for v in DATASETS.values())


def test_digits_native_and_resized(tmp_path):
    native = load_source("digits", tmp_path / "data", tmp_path / "cache", None)
    assert native.train.images.shape == (1797, 1, 8, 8)
    big = load_source("Digits", tmp_path / "data", tmp_path / "cache", 16)
    assert big.train.images.shape == (1797, 1, 16, 16) and big.train.images.dtype == torch.uint8
    assert any("resized from 8x8 to 16x16" in n for n in big.notes)
    assert not (tmp_path / "cache").exists()  # digits is not cached


def test_resize_keeps_constant_images_exact():
    x = torch.full((5000, 1, 28, 28), 77, dtype=torch.uint8)  # more than one chunk
    y = resize_images(x, 13)
    assert y.shape == (5000, 1, 13, 13) and bool((y == 77).all())


def test_mnist_dispatch_resize_and_cache(tmp_path):
    write_idx_set(tmp_path / "data" / "MNIST" / "raw", gz=True)
    src = load_source("mnist", tmp_path / "data", tmp_path / "cache", 32)
    assert src.train.images.shape == (5, 1, 32, 32) and src.test.images.shape == (3, 1, 32, 32)
    assert any("28x28 to 32x32" in n for n in src.notes)
    # the second run needs only the cache: remove the raw files to prove it
    for f in (tmp_path / "data" / "MNIST" / "raw").iterdir():
        f.unlink()
    again = load_source("mnist", tmp_path / "data", tmp_path / "cache", 32, mmap=True)
    assert torch.equal(again.train.images, src.train.images) and again.notes == src.notes


def test_cifar_dispatch(tmp_path):
    from test_cifar import write_cifar10

    write_cifar10(tmp_path / "data")
    src = load_source("cifar10", tmp_path / "data", tmp_path / "cache", None, download=False)
    assert src.name == "cifar10" and src.train.images.shape == (20, 3, 32, 32)


def test_folder_dispatch_expanduser_and_cache_invalidation(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    for cls, color in (("a", (255, 0, 0)), ("b", (0, 255, 0))):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        Image.new("RGB", (12, 10), color).save(tmp_path / "imgs" / cls / "1.png")
    src = load_source("~/imgs", "~/data", "~/cache", None)
    assert src.class_names == ["a", "b"] and src.image_size == 10
    assert len(list((tmp_path / "cache").iterdir())) == 1
    Image.new("RGB", (12, 10), (0, 0, 255)).save(tmp_path / "imgs" / "b" / "2.png")
    changed = load_source("~/imgs", "~/data", "~/cache", None)
    assert len(changed.train) == 3  # a new file is a new cache entry, not stale data
    assert len(list((tmp_path / "cache").iterdir())) == 2


def test_unknown_name_and_missing_path(tmp_path):
    with pytest.raises(UserError) as e:
        load_source("cifar11", tmp_path, tmp_path, None)
    assert "unknown data set 'cifar11'" in str(e.value) and "digits" in str(e.value) and "cifar10" in str(e.value)
    with pytest.raises(UserError, match="not found.*nope.zip"):
        load_source(str(tmp_path / "nope.zip"), tmp_path, tmp_path, None)


def test_offline_named_set_error_is_one_line(tmp_path):
    with pytest.raises(UserError) as e:
        load_source("mnist", tmp_path / "empty", tmp_path / "cache", None, download=False)
    assert "\n" not in str(e.value) and "idx3-ubyte" in str(e.value)
