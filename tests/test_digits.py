import torch

from imagefit.data.digits import load_digits


def test_digits_shapes_range_and_names():
    src = load_digits()
    assert src.name == "digits"
    assert src.class_names == [str(i) for i in range(10)]
    assert src.train.images.shape == (1797, 1, 8, 8) and src.train.images.dtype == torch.uint8
    assert src.train.labels.dtype == torch.int64 and set(src.train.labels.tolist()) == set(range(10))
    assert int(src.train.images.max()) == 255 and int(src.train.images.min()) == 0
    assert src.val is None and src.test is None
    assert src.notes
