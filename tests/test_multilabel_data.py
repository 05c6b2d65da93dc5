"""Multi-label label files (data/labels.py): several labels in a cell, in every usual form, or one 0/1 column per
class; the task is read from the data and stated, `--task` pins it, and labels that cannot be learned are one line."""
import numpy as np
import pytest
import torch

from helpers import run_imagefit, write_mosaic_set
from imagefit.data.labels import detect_separator, split_cell
from imagefit.data.pipeline import carve_splits
from imagefit.data.sources import load_source
from imagefit.errors import UserError
from test_labels import write_flat_images


def load(csv, tmp_path, **kw):
    return load_source(str(csv), data_dir=tmp_path / "data", cache_dir=tmp_path / "cache", image_size=12,
                       images=tmp_path / "imgs", **kw)


def sets_of(source, names):
    """Each training image's label set, by file name."""
    return {f: {names[j] for j in np.flatnonzero(row)} for f, row in zip(source.train.files, source.train.labels.numpy())}


@pytest.mark.parametrize("sep", [" ", ",", ";", "|"])
def test_each_separator_is_detected_and_gives_the_same_label_sets(tmp_path, sep):
    ids = list(write_flat_images(tmp_path / "imgs", per_class=3))
    given = {ids[0]: ["red"], ids[1]: ["red", "green"], ids[2]: ["blue", "green", "red"], ids[3]: ["blue"],
             ids[4]: ["green", "blue"], ids[5]: ["green"]}
    quote = '"' if sep == "," else ""
    rows = [f"{i}.png,{quote}{sep.join(labels)}{quote}" for i, labels in given.items()]
    (tmp_path / "l.csv").write_text("image,labels\n" + "\n".join(rows) + "\n")
    source = load(tmp_path / "l.csv", tmp_path)
    assert source.multilabel and source.class_names == ["blue", "green", "red"]
    assert source.train.labels.shape == (6, 3) and source.train.labels.dtype == torch.int64
    assert sets_of(source, source.class_names) == {f"{i}.png": set(v) for i, v in given.items()}
    assert any("Multi-label" in n and "2.00 an image" not in n for n in source.notes), source.notes


def test_one_column_per_class_empty_labels_and_the_pin(tmp_path):
    ids = list(write_flat_images(tmp_path / "imgs", per_class=2))
    table = ["image,cat,dog,bird", f"{ids[0]}.png,1,0,0", f"{ids[1]}.png,1,1,0", f"{ids[2]}.png,0,0,1",
             f"{ids[3]}.png,0,0,0", f"{ids[4]}.png,0,1,1", f"{ids[5]}.png,0,1,0"]
    (tmp_path / "wide.csv").write_text("\n".join(table) + "\n")
    source = load(tmp_path / "wide.csv", tmp_path)
    assert source.multilabel and source.class_names == ["cat", "dog", "bird"]  # the file's column order
    assert sets_of(source, source.class_names)[f"{ids[3]}.png"] == set()  # an image with no label is kept
    assert any("one 0/1 column per class" in n and "1 images with none" in n for n in source.notes)

    # single-label cells stay single-label; --task multilabel pins a one-label-an-image file as multi-label
    (tmp_path / "one.csv").write_text("image,label\n" + "\n".join(f"{i}.png,{c}" for i, c in
                                                                 zip(ids, ["a", "b", "a", "b", "a", "b"])) + "\n")
    assert not load(tmp_path / "one.csv", tmp_path).multilabel
    pinned = load(tmp_path / "one.csv", tmp_path, task="multilabel")
    assert pinned.multilabel and pinned.train.labels.sum(1).tolist() == [1] * 6

    # an empty cell makes it multi-label; --task single skips that row (and rows with several labels) instead
    (tmp_path / "gaps.csv").write_text("image,label\n" + "\n".join(f"{i}.png,{c}" for i, c in
                                                                  zip(ids, ["a", "b", "", "b", "a|b", "a"])) + "\n")
    auto = load(tmp_path / "gaps.csv", tmp_path)
    assert auto.multilabel and len(auto.train) == 6 and any("has no label" in n for n in auto.notes)
    single = load(tmp_path / "gaps.csv", tmp_path, task="single")
    assert not single.multilabel and len(single.train) == 4
    assert sorted(s["reason"] for s in single.skipped) == ["row with 2 labels (a b) in a single-label run",
                                                          "row without a label"]


def test_class_names_with_spaces_are_not_split(tmp_path):
    assert detect_separator(["golden retriever", "german shepherd", "golden retriever", "pug"]) is None
    grid = [f"{size} {color}" for size in ("small", "medium", "large") for color in ("red", "green", "blue")]
    assert detect_separator(grid) is None  # 9 class names of 6 words: no word alone
    tiles = [f"{sky} {ground}" for sky in ("clear", "haze")
             for ground in ("primary", "road", "water", "primary road", "primary water", "road water")]
    assert detect_separator(tiles + ["cloudy"]) == " "  # 13 label sets of 6 labels, none of them ever alone
    assert detect_separator(["cat dog", "dog", "cat", "dog bird", "bird cat"]) == " "
    assert detect_separator(["a|b c", "a"]) == "|" and split_cell("b c|a|a", "|") == ["a", "b c"]


def test_a_label_only_in_test_is_one_line(tmp_path):
    ids = list(write_flat_images(tmp_path / "imgs", per_class=2))
    rows = [f"{ids[0]}.png,a b,train", f"{ids[1]}.png,a,train", f"{ids[2]}.png,b,train", f"{ids[3]}.png,a zebra,test"]
    (tmp_path / "l.csv").write_text("image,labels,split\n" + "\n".join(rows) + "\n")
    with pytest.raises(UserError, match="labels in test rows that no train row has: zebra"):
        load(tmp_path / "l.csv", tmp_path)
    proc = run_imagefit("train", "--dataset", tmp_path / "l.csv", "--images", tmp_path / "imgs", "--epochs", "1",
                        "--runs-dir", tmp_path / "runs", "--cache-dir", tmp_path / "cache", cwd=tmp_path, check=False)
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    assert proc.returncode != 0 and "zebra" in proc.stderr and len(lines) <= 2 and "Traceback" not in proc.stderr, \
        proc.stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_mosaics_split_at_random_and_cache_their_multi_hot_labels(tmp_path):
    csv = write_mosaic_set(tmp_path / "mosaics", n_train=80, n_test=20)
    first = load_source(str(csv), data_dir=tmp_path / "d", cache_dir=tmp_path / "c", image_size=16)
    again = load_source(str(csv), data_dir=tmp_path / "d", cache_dir=tmp_path / "c", image_size=16)  # a cache read
    assert torch.equal(first.train.labels, again.train.labels) and first.train.labels.shape == (80, 4)
    assert 1 <= first.train.labels.sum(1).min() and first.train.labels.sum(1).max() <= 4
    train, val, test, notes = carve_splits(first.train, None, first.test, 0.2, 0.25, seed=3)
    assert len(val) == 20 and len(train) == 60 and val.labels.ndim == 2
    assert set(train.files).isdisjoint(val.files) and any("a random 25%" in n for n in notes)
