import pytest
import torch
from PIL import Image

from imagefit.data.sources import DATASETS, load_source, resize_images
from imagefit.errors import UserError
from helpers import write_idx_set


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
    from helpers import write_cifar10

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


# ---- property tests: whatever names a data set, the answer is data or one UserError --------------------
import io  # noqa: E402
import zipfile  # noqa: E402

from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

# relative names resolve in an empty folder; absolute and home paths are left out (they would walk this machine)
NAMES = st.text(max_size=40).filter(lambda s: not s.strip().startswith(("/", "~"))) | st.sampled_from(
    ["cifar10", "CIFAR100 ", "mnist", "digits/", "../x", "/no/such/folder", "~/no/such.zip", "a.zip", "..",
     "x\x00y", "fashion-mnist", " ", "."])


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(NAMES)
def test_any_data_set_argument_is_data_or_one_user_error(tmp_path, monkeypatch, name):
    """Offline (download off): a name is a known set, an existing path, or one line saying which it is not."""
    (tmp_path / "empty").mkdir(exist_ok=True)
    monkeypatch.chdir(tmp_path / "empty")
    try:
        load_source(name, tmp_path / "data", tmp_path / "cache", None, download=False)
    except UserError as e:
        assert str(e) and "\n" not in str(e)


def png_bytes(value):
    buf = io.BytesIO()
    Image.new("RGB", (6, 6), (value, 255 - value, 40)).save(buf, format="PNG")
    return buf.getvalue()


MEMBER = st.lists(st.sampled_from(["..", ".", "", "a", "b", "Cat", "cat", "é x", "__MACOSX", ".hidden", "/", "C:"]),
                  min_size=1, max_size=4).map("/".join)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(MEMBER, st.sampled_from([".png", ".txt", ".PNG", ""])), min_size=1, max_size=8))
def test_any_zip_member_names_give_data_or_one_user_error_and_nothing_outside_the_cache(tmp_path_factory, members):
    """Zip members named anything (`../`, absolute, unicode, hidden, case twins): never written or read outside."""
    root = tmp_path_factory.mktemp("zipprop")
    zpath = root / "set.zip"
    with zipfile.ZipFile(zpath, "w") as z:
        for i, (name, ext) in enumerate(members):
            z.writestr(f"{name}/{i}{ext}", png_bytes(i * 20) if ext.lower() == ".png" else b"note")
    before = sorted(p.relative_to(root) for p in root.rglob("*"))
    try:
        source = load_source(str(zpath), root / "data", root / "cache", 8, download=False)
        assert len(source.train) >= 1 and len(source.class_names) >= 1
    except UserError as e:
        assert str(e) and "\n" not in str(e)
    after = {p.relative_to(root) for p in root.rglob("*")}
    assert {p for p in after - set(before) if p.parts[0] != "cache"} == set()  # nothing written beside the cache
