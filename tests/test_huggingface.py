"""Hugging Face data sets (data/huggingface.py): a DatasetDict the test builds and saves with save_to_disk trains
offline with its own splits and class names; what cannot be used is one line."""
import json

import datasets
import numpy as np
import pytest
from PIL import Image

from helpers import run_imagefit
from imagefit.data.huggingface import parse
from imagefit.data.sources import dataset_slug, load_source
from imagefit.errors import UserError

NAMES = ["angular_leaf_spot", "bean_rust", "healthy"]  # beans' ClassLabel names


def images(n, channel_of, seed=0, side=14):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        pixels = rng.integers(0, 80, (side + i % 3, side, 3)).astype(np.uint8)
        pixels[..., channel_of(i)] += 170
        out.append(Image.fromarray(pixels))
    return out


def save_beans(folder, train=24, test=9, broken_test_row=False):
    """A small `beans`-like DatasetDict (image, labels as a ClassLabel; train, validation, test), saved to disk."""
    features = datasets.Features({"image_file_path": datasets.Value("string"), "image": datasets.Image(),
                                  "labels": datasets.ClassLabel(names=NAMES)})

    def split(n, seed):
        labels = [i % 3 for i in range(n)]
        return datasets.Dataset.from_dict({"image_file_path": [f"{i}.jpg" for i in range(n)],
                                           "image": images(n, lambda i: i % 3, seed), "labels": labels},
                                          features=features)
    parts = {"train": split(train, 0), "validation": split(6, 1), "test": split(test, 2)}
    if broken_test_row:
        raw = parts["test"].cast_column("image", datasets.Image(decode=False))
        cells = list(raw["image"])
        cells[0] = {"bytes": b"not an image", "path": None}
        parts["test"] = datasets.Dataset.from_dict({"image_file_path": list(raw["image_file_path"]), "image": cells,
                                                    "labels": list(raw["labels"])}, features=features)
    datasets.DatasetDict(parts).save_to_disk(str(folder))
    return folder


def load(dataset, tmp_path, **kw):
    return load_source(dataset, data_dir=tmp_path / "data", cache_dir=tmp_path / "cache", image_size=12, **kw)


def test_a_saved_data_set_trains_offline_with_its_own_splits_and_class_names(tmp_path):
    save_beans(tmp_path / "beans")
    run_imagefit("train", "--dataset", f"hf:{tmp_path / 'beans'}", "--model", "seed-cnn", "--epochs", "2",
                 "--batch-size", "8", "--no-progress", "--precision", "32", "--runs-dir", tmp_path / "runs",
                 "--cache-dir", tmp_path / "cache", "--data-dir", tmp_path / "data", cwd=tmp_path)
    run = next((tmp_path / "runs").iterdir())
    m = json.loads((run / "metrics.json").read_text())
    assert run.name.startswith("beans-seed-cnn") and m["class_names"] == NAMES
    assert (m["train_images"], m["val_images"], m["test_images"]) == (24, 6, 9)  # its own splits, nothing carved
    assert any(n.startswith("Hugging Face data set ") for n in m["data_notes"])


def test_images_decode_as_the_same_files_in_a_folder_would(tmp_path):
    save_beans(tmp_path / "beans")
    folder = tmp_path / "folder"
    for split, n, seed in (("train", 24, 0), ("val", 6, 1), ("test", 9, 2)):
        for i, image in enumerate(images(n, lambda i: i % 3, seed)):
            (folder / split / NAMES[i % 3]).mkdir(parents=True, exist_ok=True)
            image.save(folder / split / NAMES[i % 3] / f"{i:02d}.png")
    hub, files = load(f"hf:{tmp_path / 'beans'}", tmp_path), load(str(folder), tmp_path)
    assert hub.class_names == files.class_names
    for split in ("train", "val", "test"):
        a, b = getattr(hub, split), getattr(files, split)
        order = np.lexsort((np.arange(len(a)), a.labels.numpy()))  # the folder lists by class, then name
        assert a.labels[order].tolist() == b.labels.tolist()
        by_name = {f: i for i, f in enumerate(b.files)}
        for j in order:  # row i of class c is file c/i.png
            k = by_name[f"{split}/{NAMES[int(a.labels[j])]}/{int(a.files[j].split('[')[1][:-1]):02d}.png"]
            assert np.array_equal(a.images[j].numpy(), b.images[k].numpy())


def test_an_unreadable_image_is_skipped_and_listed(tmp_path):
    save_beans(tmp_path / "beans", broken_test_row=True)
    source = load(f"hf:{tmp_path / 'beans'}", tmp_path)
    assert len(source.test) == 8 and source.skipped == [{"file": "test[0]", "reason": source.skipped[0]["reason"]}]
    assert "UnidentifiedImageError" in source.skipped[0]["reason"]


def test_columns_are_found_or_named(tmp_path):
    save_beans(tmp_path / "beans")
    with pytest.raises(UserError, match="column 'image_file_path' is not a ClassLabel"):
        load(f"hf:{tmp_path / 'beans'}", tmp_path, label_column="image_file_path")
    with pytest.raises(UserError, match="no Image column 'photo'.*its columns: image_file_path, image, labels"):
        load(f"hf:{tmp_path / 'beans'}", tmp_path, image_column="photo")


def test_offline_without_the_data_is_one_line(tmp_path):
    env = {"HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}
    proc = run_imagefit("train", "--dataset", "hf:nobody-here/no-such-set", "--epochs", "1", "--no-progress",
                        "--data-dir", tmp_path / "data", "--cache-dir", tmp_path / "cache", cwd=tmp_path, check=False,
                        env=env)
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0, proc.stderr
    assert "cannot get the Hugging Face data set 'nobody-here/no-such-set'" in proc.stderr
    assert "save_to_disk a copy and pass hf:/that/folder" in proc.stderr
    (tmp_path / "not-saved").mkdir()
    with pytest.raises(UserError, match="not a folder written by save_to_disk"):
        load(f"hf:{tmp_path / 'not-saved'}", tmp_path)


def test_names_and_slugs():
    assert parse("hf:beans") == ("beans", None) and parse("hf:uoft-cs/cifar100:fine") == ("uoft-cs/cifar100", "fine")
    assert dataset_slug("hf:uoft-cs/cifar100") == "cifar100" and dataset_slug("hf:beans:full") == "beans"
