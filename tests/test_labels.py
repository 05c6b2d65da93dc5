"""Label files (data/labels.py): a table of image paths and classes trains like a folder, and every problem in it
is skipped and listed or refused in one line, as for a folder."""
import json

import numpy as np
import pytest
from PIL import Image

from helpers import run_imagefit
from imagefit.data.labels import class_order, read_table
from imagefit.data.sources import dataset_slug, load_source
from imagefit.errors import UserError

COLORS = {"red": 0, "green": 1, "blue": 2}


def write_flat_images(folder, per_class=8, side=12, ext="png", seed=0):
    """Kaggle's layout: every image in one folder, named by an id; returns {id: class}."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    labels = {}
    for name, channel in COLORS.items():
        for i in range(per_class):
            pixels = rng.integers(0, 80, (side, side, 3)).astype(np.uint8)
            pixels[..., channel] += 170
            image_id = f"{name[0]}{i:03d}"
            Image.fromarray(pixels).save(folder / f"{image_id}.{ext}")
            labels[image_id] = name
    return labels


def load(dataset, tmp_path, **kw):
    return load_source(str(dataset), data_dir=tmp_path / "data", cache_dir=tmp_path / "cache", image_size=12, **kw)


def test_a_kaggle_folder_trains_from_its_csv_of_ids_without_extensions(tmp_path):
    labels = write_flat_images(tmp_path / "comp" / "train")
    rows = "\n".join(f"{i},{c}" for i, c in labels.items())
    (tmp_path / "comp" / "train.csv").write_text(f"id,label\n{rows}\n")
    proc = run_imagefit("train", "--dataset", tmp_path / "comp" / "train.csv", "--images", tmp_path / "comp" / "train",
                        "--model", "seed-cnn", "--epochs", "2", "--batch-size", "8", "--no-progress", "--precision", "32",
                        "--runs-dir", tmp_path / "runs", "--cache-dir", tmp_path / "cache", cwd=tmp_path)
    run = next((tmp_path / "runs").iterdir())
    m = json.loads((run / "metrics.json").read_text())
    assert run.name.startswith("comp-train-seed-cnn")
    assert m["class_names"] == ["blue", "green", "red"] and m["train_images"] + m["val_images"] + m["test_images"] == 24
    assert m["skipped_files"]["count"] == 0 and "test accuracy" in proc.stdout
    assert any(n.startswith("label file ") for n in m["data_notes"])
    saved = (run / "config.yaml").read_text()
    assert "images: " in saved and "# user" in saved.split("images: ")[1].splitlines()[0]


def test_paths_relative_to_the_file_a_split_column_and_usual_column_names(tmp_path):
    labels = write_flat_images(tmp_path / "set" / "pics")
    split = {0: "train", 1: "train", 2: "train", 3: "train", 4: "valid", 5: "validation", 6: "test", 7: "TEST"}
    rows = [f"pics/{i}.png\t{c}\t{split[int(i[1:])]}" for i, c in labels.items()]
    (tmp_path / "set" / "labels.tsv").write_text("File\tClass\tsplit\n" + "\n".join(rows) + "\n")
    source = load(tmp_path / "set" / "labels.tsv", tmp_path)
    assert source.class_names == ["blue", "green", "red"]
    assert (len(source.train), len(source.val), len(source.test)) == (12, 6, 6)
    assert source.train.files[0] == "pics/b000.png" and source.test.files[-1] == "pics/r007.png"
    red = np.asarray(source.train.images[source.train.labels == 2].float().mean(dim=(0, 2, 3)))
    assert red[0] > red[1] + 100  # the red class's images are red: rows and files were matched


def test_named_columns_semicolons_numeric_labels_and_a_zip_of_images(tmp_path):
    import shutil

    labels = write_flat_images(tmp_path / "imgs")
    shutil.make_archive(str(tmp_path / "imgs"), "zip", tmp_path / "imgs")
    number = {"red": "10", "green": "2", "blue": "1"}
    rows = "\n".join(f"x;{i}.png;{number[c]}" for i, c in labels.items())
    (tmp_path / "t.csv").write_text(f"other;picture;kind\n{rows}\n")
    with pytest.raises(UserError, match="no image column.*columns are other, picture, kind"):
        load(tmp_path / "t.csv", tmp_path, images=tmp_path / "imgs.zip")
    source = load(tmp_path / "t.csv", tmp_path, images=tmp_path / "imgs.zip", image_column="Picture", label_column="kind")
    assert source.class_names == ["1", "2", "10"] and len(source.train) == 24 and source.test is None
    assert any("are numbers" in n for n in source.notes)
    assert class_order({"b", "a"}) == ["a", "b"] and class_order({"10", "9", "-1"}) == ["-1", "9", "10"]


def test_bad_rows_are_skipped_and_listed_with_their_line(tmp_path):
    labels = write_flat_images(tmp_path / "imgs", per_class=4)
    Image.new("RGB", (12, 12)).save(tmp_path / "imgs" / "twin.png")
    Image.new("RGB", (12, 12)).save(tmp_path / "imgs" / "twin.jpg")
    (tmp_path / "imgs" / "broken.png").write_bytes(b"not a png")
    (tmp_path / "outside.png").write_bytes((tmp_path / "imgs" / "r000.png").read_bytes())
    good = [f"{i},{c}" for i, c in labels.items()]
    bad = ["missing.png,red", "r001,", ",blue", "../outside.png,red", "/etc/passwd,red", "twin,red",
           "r002,red", "r003,green", "broken.png,red"]
    (tmp_path / "l.csv").write_text("image,label\n" + "\n".join(good + bad) + "\n")
    source = load(tmp_path / "l.csv", tmp_path, images=tmp_path / "imgs", task="single")  # auto: an empty cell is multi-label
    reasons = {s["file"]: s["reason"] for s in source.skipped}
    assert len(source.train) == 12 and len(source.skipped) == 9, reasons
    assert reasons["missing.png (l.csv line 14)"] == "no such image file"
    assert reasons["r001 (l.csv line 15)"] == "row without a label"
    assert reasons["l.csv line 16"] == "row without an image"
    assert "outside the images folder" in reasons["../outside.png (l.csv line 17)"]
    assert "outside the images folder" in reasons["/etc/passwd (l.csv line 18)"]
    assert "more than one image is named twin (twin.jpg, twin.png)" in reasons["twin (l.csv line 19)"]
    assert reasons["r002 (l.csv line 20)"] == "listed again with the same label: used once"
    assert "first as red/train: the first row is used" in reasons["r003 (l.csv line 21)"]
    assert "broken.png" in reasons


@pytest.mark.parametrize("content, options, message", [
    ("", {}, "is empty"),
    ("image,label\n", {}, "has a header but no rows"),
    ("a.png,red\nb.png,blue\n", {}, r"no image column: its first row \(a.png, red\) looks like data"),
    ("image,label,split\na.png,red,holdout\n", {}, "unknown split 'holdout'"),
    ("image,label\na.png,red\n", {"label_column": "kind"}, "has no column 'kind'"),
    ("image,label\nnope.png,red\n", {}, "no row of .* names a readable image .*no such image file"),
    ("image,label,split\nr000.png,red,test\n", {}, "has no train rows"),
    ("image,label,split\nr000.png,red,train\ng000.png,green,test\n", {}, "classes in val or test rows that no train row has: green"),
])
def test_a_table_that_cannot_be_used_is_one_clear_error(tmp_path, content, options, message):
    write_flat_images(tmp_path, per_class=1)
    (tmp_path / "l.csv").write_text(content)
    with pytest.raises(UserError, match=message):
        load(tmp_path / "l.csv", tmp_path, **options)


def test_cli_errors_are_one_line_and_the_options_need_a_label_file(tmp_path):
    (tmp_path / "l.csv").write_text("image,label\na.png,red\n")
    for args, expected in [(["--dataset", tmp_path / "l.csv", "--images", tmp_path / "nowhere"], "images folder not found"),
                           (["--dataset", "digits", "--label-column", "y"], "go with a label file")]:
        proc = run_imagefit("train", *args, "--epochs", "1", "--no-progress", "--cache-dir", tmp_path / "cache",
                            cwd=tmp_path, check=False)
        assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0 and expected in proc.stderr, proc.stderr


def test_a_label_file_is_decoded_once_then_read_from_the_cache_until_it_changes(tmp_path):
    labels = write_flat_images(tmp_path / "imgs", per_class=3)
    table = tmp_path / "l.csv"
    table.write_text("image,label\n" + "\n".join(f"{i}.png,{c}" for i, c in labels.items()) + "\n")
    entries = lambda: sorted(p.parent.name for p in (tmp_path / "cache").rglob("meta.json"))  # noqa: E731
    first = load(table, tmp_path, images=tmp_path / "imgs")
    assert len(entries()) == 1
    again = load(table, tmp_path, images=tmp_path / "imgs")
    assert len(entries()) == 1 and again.class_names == first.class_names and again.train.files == first.train.files
    table.write_text("image,label\n" + "\n".join(f"{i}.png,{c}" for i, c in list(labels.items())[:6]) + "\n")
    changed = load(table, tmp_path, images=tmp_path / "imgs")
    assert len(entries()) == 2 and len(changed.train) == 6 and changed.class_names == ["green", "red"]


def test_read_table_and_the_slug(tmp_path):
    (tmp_path / "a.csv").write_text("\ufeffimage , label\n x.png , cat \n\n")
    assert read_table(tmp_path / "a.csv") == (["image", "label"], [["x.png", "cat"]])
    (tmp_path / "b.parquet").write_bytes(b"PAR1")
    with pytest.raises(UserError, match=r"b.parquet"):
        read_table(tmp_path / "b.parquet")
    assert dataset_slug(str(tmp_path / "comp" / "train.csv")) == "comp-train" and dataset_slug("cifar10") == "cifar10"
    assert dataset_slug("photos.zip") == "photos"


def test_a_parquet_table_reads_like_a_csv(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    labels = write_flat_images(tmp_path / "imgs", per_class=2)
    pq.write_table(pa.table({"image_id": list(labels), "target": [3 if c == "red" else 7 for c in labels.values()]}),
                   tmp_path / "t.parquet")
    source = load(tmp_path / "t.parquet", tmp_path, images=tmp_path / "imgs")
    assert source.class_names == ["3", "7"] and len(source.train) == 6
    assert sorted(source.train.files[:2]) == ["r000.png", "r001.png"]
