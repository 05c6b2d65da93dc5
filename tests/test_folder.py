import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from imagefit.data.folder import load_folder
from imagefit.errors import UserError


def _save(path, mode, size, color, fmt=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    if mode == "P":
        im = Image.new("RGB", size, color).convert("P", palette=Image.Palette.ADAPTIVE)
        im.info["transparency"] = 0
        im.save(path, transparency=0)
        return
    Image.new(mode, size, color).save(path, fmt)


def make_classes(root, sizes=((20, 30), (40, 40), (16, 50))):
    """Two classes, mixed modes, formats and sizes; red-ish 'cat', blue-ish 'dog'."""
    _save(root / "cat" / "a.png", "RGB", sizes[0], (200, 0, 0))
    _save(root / "cat" / "b.jpg", "L", sizes[1], 120)
    _save(root / "cat" / "c.png", "RGBA", sizes[2], (255, 0, 0, 0))  # fully transparent -> white
    _save(root / "dog" / "d.png", "P", sizes[1], (0, 0, 200))
    _save(root / "dog" / "e.jpg", "RGB", sizes[0], (0, 0, 255))
    (root / "dog" / "notes.txt").write_text("not an image")
    (root / "dog" / ".DS_Store").write_bytes(b"\0junk")
    (root / "README.md").write_text("top-level files are ignored")


def test_class_only_layout_modes_and_auto_size(tmp_path):
    make_classes(tmp_path / "data")
    src = load_folder(tmp_path / "data", None, 0.2, 0, workers=1)
    assert src.class_names == ["cat", "dog"]
    # shorter sides 20, 40, 16, 40, 20 -> median 20
    assert src.train.images.shape == (5, 3, 20, 20) and src.train.images.dtype == torch.uint8
    assert src.train.labels.tolist() == [0, 0, 0, 1, 1]
    assert src.val is None and src.test is None
    assert any("median" in n and "20" in n for n in src.notes)
    assert any("only class folders" in n for n in src.notes)
    img = src.train.images
    assert img[0, 0].float().mean() > 190 and img[0, 2].float().mean() < 10  # red png
    assert abs(img[1].float().mean() - 120) < 3  # grayscale jpg -> 3 equal channels
    assert torch.equal(img[1, 0], img[1, 1])
    assert img[2].min() == 255  # transparent RGBA composited on white


def test_zip_with_wrapper_folder_and_pool(tmp_path):
    make_classes(tmp_path / "pets")
    archive = tmp_path / "pets.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for p in sorted((tmp_path / "pets").rglob("*")):
            zf.write(p, "pets/" + p.relative_to(tmp_path / "pets").as_posix())
        zf.writestr("__MACOSX/pets/cat/._a.png", b"junk")
    from_zip = load_folder(archive, 24, 0.2, 0, workers=2)
    from_dir = load_folder(tmp_path / "pets", 24, 0.2, 0, workers=1)
    assert from_zip.class_names == ["cat", "dog"]
    assert from_zip.train.images.shape == (5, 3, 24, 24)
    assert torch.equal(from_zip.train.images, from_dir.train.images)
    assert torch.equal(from_zip.train.labels, from_dir.train.labels)


def test_train_val_test_layout(tmp_path):
    for split in ("train", "val", "test"):
        make_classes(tmp_path / split)
    src = load_folder(tmp_path, 8, 0.2, 0, workers=2)
    assert [len(s) for s in (src.train, src.val, src.test)] == [5, 5, 5]
    assert src.test.images.shape == (5, 3, 8, 8)
    assert not any("only class folders" in n for n in src.notes)


def test_val_with_different_classes(tmp_path):
    make_classes(tmp_path / "train")
    _save(tmp_path / "test" / "cat" / "x.png", "RGB", (8, 8), (0, 0, 0))
    _save(tmp_path / "test" / "cow" / "y.png", "RGB", (8, 8), (0, 0, 0))
    with pytest.raises(UserError, match="missing dog.*extra cow"):
        load_folder(tmp_path, 8, 0.2, 0, workers=1)


def test_empty_class_folder_is_named(tmp_path):
    make_classes(tmp_path)
    (tmp_path / "bird").mkdir()
    (tmp_path / "bird" / "readme.txt").write_text("no images here")
    with pytest.raises(UserError, match="bird has no images"):
        load_folder(tmp_path, 8, 0.2, 0, workers=1)


def test_corrupt_image_is_named(tmp_path):
    make_classes(tmp_path)
    (tmp_path / "dog" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    with pytest.raises(UserError) as e:
        load_folder(tmp_path, 8, 0.2, 0, workers=2)
    assert "broken.jpg" in str(e.value) and "remove or replace" in str(e.value)


def test_corrupt_image_with_auto_size(tmp_path):
    make_classes(tmp_path)
    (tmp_path / "cat" / "zz.png").write_bytes(b"not a png")
    with pytest.raises(UserError, match="zz.png"):
        load_folder(tmp_path, None, 0.2, 0, workers=1)


def test_path_errors(tmp_path):
    with pytest.raises(UserError, match="not found"):
        load_folder(tmp_path / "nope", 8, 0.2, 0)
    fake = tmp_path / "fake.zip"
    fake.write_bytes(b"this is not a zip")
    with pytest.raises(UserError, match="neither a folder nor a zip"):
        load_folder(fake, 8, 0.2, 0)
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no class folders"):
        load_folder(tmp_path / "empty", 8, 0.2, 0)


def test_auto_size_is_capped(tmp_path):
    _save(tmp_path / "a" / "1.png", "RGB", (300, 200), (1, 2, 3))
    _save(tmp_path / "b" / "2.png", "RGB", (200, 300), (4, 5, 6))
    src = load_folder(tmp_path, None, 0.2, 0, workers=1)
    assert src.image_size == 128
    assert any("capped at 128" in n for n in src.notes)
    assert torch.equal(src.train.images[0, :, 0, 0], torch.tensor([1, 2, 3], dtype=torch.uint8))


def test_center_crop_keeps_aspect(tmp_path):
    # a wide image whose left and right thirds are black and middle white: the crop keeps the middle
    a = np.zeros((30, 90, 3), np.uint8)
    a[:, 30:60] = 255
    (tmp_path / "x").mkdir()
    Image.fromarray(a).save(tmp_path / "x" / "wide.png")
    src = load_folder(tmp_path, 10, 0.2, 0, workers=1)
    assert src.train.images.float().mean() > 250


def test_exif_orientation_is_applied(tmp_path):
    # stored 40 wide x 20 high, left half black; orientation 6 means "rotate 90 degrees clockwise to view"
    a = np.full((20, 40, 3), 255, np.uint8)
    a[:, :20] = 0
    im = Image.fromarray(a)
    exif = im.getexif()
    exif[0x0112] = 6
    (tmp_path / "c").mkdir()
    im.save(tmp_path / "c" / "photo.jpg", exif=exif, quality=95)
    src = load_folder(tmp_path, 20, 0.2, 0, workers=1)
    x = src.train.images[0, 0].float()
    # upright it is 20 wide x 40 high with the black half on top; the centre crop straddles both halves
    assert x[:5].mean() < 40 and x[-5:].mean() > 215


def test_zip_member_names_as_other_tools_write_them(tmp_path):
    make_classes(tmp_path / "src")
    archive = tmp_path / "odd.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for i, p in enumerate(sorted((tmp_path / "src").rglob("*.*"))):
            rel = p.relative_to(tmp_path / "src").as_posix()
            # "./x" prefixes and Windows backslashes, no directory entries at all
            zf.writestr(zipfile.ZipInfo(("./" + rel) if i % 2 else rel.replace("/", "\\")), p.read_bytes())
    src = load_folder(archive, 8, 0.2, 0, workers=1)
    assert src.class_names == ["cat", "dog"] and len(src.train) == 5
