import io
import os
import struct
import zipfile
import zlib

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


def test_empty_class_folder_is_ignored_and_noted(tmp_path):
    make_classes(tmp_path)
    (tmp_path / "bird").mkdir()
    (tmp_path / "bird" / "readme.txt").write_text("no images here")
    src = load_folder(tmp_path, 8, 0.2, 0, workers=1)
    assert src.class_names == ["cat", "dog"]
    assert any("bird" in n and "ignored" in n for n in src.notes)


def test_corrupt_image_is_skipped_and_named(tmp_path):
    make_classes(tmp_path)
    (tmp_path / "dog" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    src = load_folder(tmp_path, 8, 0.2, 0, workers=2)
    assert len(src.train) == 5
    assert [s["file"] for s in src.skipped] == ["dog/broken.jpg", "dog/notes.txt"]


def test_corrupt_image_with_auto_size_is_skipped(tmp_path):
    make_classes(tmp_path)
    (tmp_path / "cat" / "zz.png").write_bytes(b"not a png")
    src = load_folder(tmp_path, None, 0.2, 0, workers=1)
    assert src.image_size == 20 and len(src.train) == 5
    assert "cat/zz.png" in [s["file"] for s in src.skipped]


def test_path_errors(tmp_path):
    with pytest.raises(UserError, match="not found"):
        load_folder(tmp_path / "nope", 8, 0.2, 0)
    fake = tmp_path / "fake.zip"
    fake.write_bytes(b"this is not a zip")
    with pytest.raises(UserError, match="fake.zip is not a readable zip file .*cut short, damaged, or not a zip"):
        load_folder(fake, 8, 0.2, 0)
    (tmp_path / "photo.png").write_bytes(b"a file")
    with pytest.raises(UserError, match="photo.png is neither a folder nor a zip"):
        load_folder(tmp_path / "photo.png", 8, 0.2, 0)
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


# ---- bad files inside a data set: skipped and counted ------------------------------------------
def _two_good_classes(root, n=3, size=(10, 10)):
    for name, color in (("cat", (200, 0, 0)), ("dog", (0, 0, 200))):
        for i in range(n):
            _save(root / name / f"{i}.png", "RGB", size, color)


def _jpeg_bytes(size=(40, 40)):
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


def _png_bytes(size=(40, 40)):
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def _bomb_png(width=40_000, height=40_000):
    """A tiny PNG whose header declares width x height pixels (over Pillow's bomb limit), CRC fixed."""
    data = bytearray(_png_bytes((4, 4)))
    ihdr = 8  # the IHDR chunk follows the 8-byte signature: length(4) type(4) width(4) height(4) ...
    data[ihdr + 8:ihdr + 16] = struct.pack(">II", width, height)
    data[ihdr + 21:ihdr + 25] = struct.pack(">I", zlib.crc32(bytes(data[ihdr + 4:ihdr + 21])))
    return bytes(data)


def test_bad_files_are_skipped_counted_and_hidden_files_ignored(tmp_path):
    _two_good_classes(tmp_path)
    (tmp_path / "cat" / "truncated.jpg").write_bytes(_jpeg_bytes()[:400])
    (tmp_path / "cat" / "truncated.png").write_bytes(_png_bytes()[:200])
    (tmp_path / "dog" / "empty.png").write_bytes(b"")
    (tmp_path / "dog" / "text.jpg").write_text("a text note named like a photo")
    (tmp_path / "dog" / "note.txt").write_text("a text note")
    (tmp_path / "dog" / "bomb.png").write_bytes(_bomb_png())
    for hidden in (".DS_Store", "Thumbs.db", "._0.png", "__MACOSX/._1.png"):
        (tmp_path / "cat" / hidden).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "cat" / hidden).write_bytes(b"junk")
    for size in (None, 8):  # the automatic size reads headers first: bad headers are skipped there too
        src = load_folder(tmp_path, size, 0.2, 0, workers=2)
        assert src.class_names == ["cat", "dog"] and src.train.labels.tolist() == [0, 0, 0, 1, 1, 1]
        reasons = {s["file"]: s["reason"] for s in src.skipped}
        assert sorted(reasons) == ["cat/truncated.jpg", "cat/truncated.png", "dog/bomb.png", "dog/empty.png",
                                   "dog/note.txt", "dog/text.jpg"]
        assert "empty file" in reasons["dog/empty.png"] and "DecompressionBomb" in reasons["dog/bomb.png"]
        assert "not an image file" in reasons["dog/note.txt"]
        assert any("6 files skipped" in n for n in src.notes)


def test_a_class_with_no_readable_image_is_one_clear_line(tmp_path):
    _two_good_classes(tmp_path)
    for i in range(2):
        (tmp_path / "bird" / f"{i}.jpg").parent.mkdir(exist_ok=True)
        (tmp_path / "bird" / f"{i}.jpg").write_bytes(b"")
    with pytest.raises(UserError, match="no readable image of class bird"):
        load_folder(tmp_path, 8, 0.2, 0, workers=1)


def test_modes_are_scaled_by_mode_not_content(tmp_path):
    _save(tmp_path / "a" / "rgb.png", "RGB", (8, 8), (10, 20, 30))
    Image.fromarray(np.full((8, 8), 1000, np.uint16)).save(tmp_path / "a" / "dark16.png")  # 1000/65535 of white
    Image.fromarray(np.full((8, 8), 0.5, np.float32)).save(tmp_path / "a" / "float.tif")  # mid grey in [0, 1]
    Image.new("CMYK", (8, 8), (0, 255, 255, 0)).save(tmp_path / "b" / "cmyk.jpg") if (tmp_path / "b").mkdir() is None else None
    frames = [Image.new("P", (8, 8), 0), Image.new("P", (8, 8), 1)]
    for f in frames:
        f.putpalette([0, 255, 0, 255, 0, 255] + [0] * 762)
    frames[0].save(tmp_path / "b" / "anim.gif", save_all=True, append_images=frames[1:], duration=50, loop=0)
    _save(tmp_path / "b" / "tiny.png", "RGB", (1, 1), (0, 0, 255))
    _save(tmp_path / "b" / "large.png", "RGB", (3000, 2000), (255, 255, 0))
    src = load_folder(tmp_path, 8, 0.2, 0, workers=1)
    assert src.skipped == []
    px = {name: src.train.images[i, :, 4, 4].tolist()
          for i, name in enumerate(["dark16", "float", "rgb", "anim", "cmyk", "large", "tiny"])}
    assert px["dark16"] == [4, 4, 4]  # round(1000 * 255 / 65535); per-image scaling gave 255
    assert px["float"] == [128, 128, 128]  # 0.5 of white; truncating [0, 1] to uint8 gave 0
    assert px["rgb"] == [10, 20, 30]
    assert px["anim"] == [0, 255, 0]  # the first frame
    assert px["cmyk"][0] > 240 and max(px["cmyk"][1:]) < 15  # no cyan, full magenta and yellow: red
    assert px["large"] == [255, 255, 0] and px["tiny"] == [0, 0, 255]


def test_zip_bad_members_are_skipped_and_never_escape(tmp_path, monkeypatch):
    from imagefit.data import decode

    good = io.BytesIO()
    with zipfile.ZipFile(good, "w", zipfile.ZIP_DEFLATED) as zf:
        for cls in ("cat", "dog"):
            for i in range(3):
                zf.writestr(f"{cls}/{i}.png", _png_bytes((6, 6)))
        zf.writestr("cat/corrupt.png", _png_bytes((64, 64)))
        zf.writestr("dog/big.png", _png_bytes((64, 64)))
        zf.writestr("../escape/0.png", _png_bytes((6, 6)))
        zf.writestr("/abs/0.png", _png_bytes((6, 6)))
    raw = bytearray(good.getvalue())
    # damage the deflate stream of cat/corrupt.png: zlib.error or a CRC error when read
    with zipfile.ZipFile(io.BytesIO(bytes(raw))) as zf:
        info = zf.getinfo("cat/corrupt.png")
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    raw[start + 10:start + 60] = b"\xff" * 50
    archive = tmp_path / "pets.zip"
    archive.write_bytes(bytes(raw))
    monkeypatch.setattr(decode, "MAX_MEMBER_BYTES", len(_png_bytes((32, 32))))  # dog/big.png declares more
    src = load_folder(archive, 8, 0.2, 0, workers=1)
    assert src.class_names == ["cat", "dog"] and len(src.train) == 6
    reasons = {s["file"]: s["reason"] for s in src.skipped}
    assert sorted(reasons) == ["../escape/0.png", "/abs/0.png", "cat/corrupt.png", "dog/big.png"]
    assert "zip bomb" in reasons["dog/big.png"] and "unsafe" in reasons["../escape/0.png"]
    assert not (tmp_path.parent / "escape").exists() and not any(p.name == "escape" for p in tmp_path.rglob("*"))


def test_a_broken_zip_is_one_clear_line(tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("cat/0.png", _png_bytes((6, 6)))
    (tmp_path / "cut.zip").write_bytes(buf.getvalue()[:-10])  # end-of-central-directory damaged
    with pytest.raises(UserError, match="cut.zip is not a readable zip file"):
        load_folder(tmp_path / "cut.zip", 8, 0.2, 0)


def test_symlink_cycle_ends(tmp_path):
    _two_good_classes(tmp_path / "data")
    os.symlink(tmp_path / "data", tmp_path / "data" / "cat" / "loop")
    src = load_folder(tmp_path / "data", 8, 0.2, 0, workers=1)
    assert src.class_names == ["cat", "dog"] and len(src.train) == 6  # each real folder once


# ---- layout -----------------------------------------------------------------------------------
def test_class_names_differing_only_in_case_are_refused(tmp_path):
    _two_good_classes(tmp_path)
    _save(tmp_path / "Cat" / "x.png", "RGB", (8, 8), (1, 2, 3))
    with pytest.raises(UserError, match="'Cat' and 'cat'.*differ only in case"):
        load_folder(tmp_path, 8, 0.2, 0, workers=1)


def test_unicode_spaces_and_nested_subfolders(tmp_path):
    _save(tmp_path / "chat noir é" / "2024" / "juin" / "a b.png", "RGB", (8, 8), (1, 2, 3))
    _save(tmp_path / "chat noir é" / "c.png", "RGB", (8, 8), (1, 2, 3))
    _save(tmp_path / "犬" / "d.png", "RGB", (8, 8), (4, 5, 6))
    src = load_folder(tmp_path, 8, 0.2, 0, workers=1)
    assert src.class_names == ["chat noir é", "犬"] and src.train.labels.tolist() == [0, 0, 1]


def test_a_folder_with_no_images_is_one_clear_line(tmp_path):
    (tmp_path / "cat").mkdir()
    (tmp_path / "cat" / "notes.txt").write_text("x")
    (tmp_path / "dog").mkdir()
    with pytest.raises(UserError, match="no class folders with images in"):
        load_folder(tmp_path, 8, 0.2, 0, workers=1)
