import torch

from imagefit.data.augment import basic, random_crop, random_flip


def test_crop_is_a_translation_of_each_image():
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.int64).remainder(251).to(torch.uint8).view(2, 3, 8, 8)
    gen = torch.Generator().manual_seed(0)
    out = random_crop(x, 2, gen)
    assert out.shape == x.shape and out.dtype == torch.uint8
    padded = torch.nn.functional.pad(x.float(), (2, 2, 2, 2), mode="reflect").to(torch.uint8)
    for i in range(2):  # every output is some 8x8 window of the padded input
        windows = [padded[i, :, dy:dy + 8, dx:dx + 8] for dy in range(5) for dx in range(5)]
        assert any(torch.equal(out[i], w) for w in windows)
    many = x[:1].expand(64, -1, -1, -1).contiguous()  # one image 64 times: the crops must move, and not all alike
    offsets = set()
    for o in random_crop(many, 2, gen):
        offsets.add(next(k for k in range(25) if torch.equal(o, padded[0, :, k // 5:k // 5 + 8, k % 5:k % 5 + 8])))
    assert len(offsets) >= 10 and offsets != {12}  # 12: the centre window, an identity crop


def test_flip_mirrors_about_half_and_is_seeded():
    x = torch.randint(0, 255, (400, 1, 4, 4), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    out = random_flip(x, torch.Generator().manual_seed(5))
    flipped = [torch.equal(o, xi.flip(-1)) and not torch.equal(o, xi) for o, xi in zip(out, x)]
    assert 150 < sum(flipped) < 250
    assert torch.equal(out, random_flip(x, torch.Generator().manual_seed(5)))


def test_basic_keeps_shape_and_dtype():
    x = torch.randint(0, 255, (16, 3, 32, 32), dtype=torch.uint8)
    y = basic(x, torch.Generator().manual_seed(0))
    assert y.shape == x.shape and y.dtype == x.dtype and not torch.equal(x, y)


def test_light_without_flip_only_translates():
    """--flip alternating: the loader mirrors, the batched augmentation must not mirror again."""
    from imagefit.data.augment import light

    x = torch.zeros(200, 1, 32, 32, dtype=torch.uint8)
    x[:, :, :, :8] = 255  # a bright left edge: a mirror moves it to the right
    out = light(x, torch.Generator().manual_seed(0), flip=False)
    assert bool((out[:, :, :, :4].float().mean(dim=(1, 2, 3)) > 200).all())
    mirrored = light(x, torch.Generator().manual_seed(0))
    assert 60 < int((mirrored[:, :, :, -4:].float().mean(dim=(1, 2, 3)) > 200).sum()) < 140


# ---- stronger augmentation: kornia policies, random erasing, mixup and cutmix (seeded, labels consistent) ----

import pytest  # noqa: E402

from imagefit.data.augment import AUGMENTATIONS, Mixing, random_erasing  # noqa: E402


def _images(n=32, side=16, seed=0):
    return torch.randint(0, 256, (n, 3, side, side), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", ["trivial", "randaugment"])
def test_policies_are_seeded_and_stay_images(name):
    x = _images()
    outs = [AUGMENTATIONS[name](x, torch.Generator().manual_seed(s)) for s in (3, 3, 4, 5, 6)]
    assert torch.equal(outs[0], outs[1])  # the same seed, the same batch
    assert any(not torch.equal(outs[0], o) for o in outs[2:])
    for o in outs:
        assert o.shape == x.shape and o.is_floating_point() and 0 <= float(o.min()) and float(o.max()) <= 1
    grey = torch.full((256, 3, 16, 16), 120, dtype=torch.uint8)  # crops and flips leave it as it is: the ops don't
    out = AUGMENTATIONS[name](grey, torch.Generator().manual_seed(1))
    assert len({round(float(o.sum()), 2) for o in out}) > 2  # groups of 32 images, each with its own draw
    before = torch.rand(3)
    torch.manual_seed(11)
    expected = torch.rand(3)
    torch.manual_seed(11)
    AUGMENTATIONS[name](x, torch.Generator().manual_seed(3))
    assert torch.equal(torch.rand(3), expected) and not torch.equal(before, expected)  # the global stream untouched


def test_random_erasing_blanks_a_rectangle_of_each_image_at_p_1():
    x = torch.full((16, 3, 20, 20), 200, dtype=torch.uint8)
    out = random_erasing(x, 1.0, torch.Generator().manual_seed(0))
    zeros = (out == 0).all(1)  # (N, H, W): the erased pixels
    for z in zeros:
        rows, cols = z.any(1).nonzero().flatten(), z.any(0).nonzero().flatten()
        assert len(rows) and z[rows.min():rows.max() + 1, cols.min():cols.max() + 1].all()  # one filled rectangle
        assert z.sum() < 0.5 * z.numel()
    assert torch.equal(out, random_erasing(x, 1.0, torch.Generator().manual_seed(0)))
    assert torch.equal(random_erasing(x, 0.0, torch.Generator().manual_seed(0)), x.float() / 255)


@pytest.mark.parametrize("mixup,cutmix", [(0.4, 0.0), (0.0, 1.0), (0.4, 1.0)])
def test_mixing_targets_are_the_blend_of_two_labels_and_sum_to_one(mixup, cutmix):
    x, y = _images(64, 12), torch.randint(0, 5, (64,), generator=torch.Generator().manual_seed(1))
    mix = Mixing(mixup, cutmix, 5)
    xo, yo = mix(x, y, torch.Generator().manual_seed(2))
    assert yo.shape == (64, 5) and torch.allclose(yo.sum(1), torch.ones(64))
    assert (yo >= 0).all() and ((yo > 0).sum(1) <= 2).all()  # at most two labels share each image
    own, neighbour = torch.nn.functional.one_hot(y, 5).float(), torch.nn.functional.one_hot(y.roll(1, 0), 5).float()
    differ = (y != y.roll(1, 0)).nonzero().flatten()
    lam = yo[differ[0], y[differ[0]]]  # one share for the batch: each image's own label, the rest its neighbour's
    assert torch.allclose(yo, lam * own + (1 - lam) * neighbour, atol=1e-6)
    mixed = yo.max(1).values < 1
    assert mixed.any() and not torch.allclose(xo, x.float() / 255)
    again = mix(x, y, torch.Generator().manual_seed(2))
    assert torch.equal(again[0], xo) and torch.equal(again[1], yo)
    other = mix(x, y, torch.Generator().manual_seed(9))
    assert not torch.equal(other[1], yo)


def test_mixup_image_is_the_same_blend_as_its_target():
    """torchvision's MixUp pairs each image with its predecessor in the batch: pixels and labels share one weight."""
    x = torch.zeros(4, 1, 2, 2, dtype=torch.uint8)
    x[:, 0, 0, 0] = torch.tensor([0, 255, 0, 255], dtype=torch.uint8)  # a pixel that says which image
    y = torch.tensor([0, 1, 0, 1])
    xo, yo = Mixing(1.0, 0.0, 2)(x, y, torch.Generator().manual_seed(4))
    assert torch.allclose(xo[:, 0, 0, 0], yo[:, 1], atol=1e-6)  # the pixel's brightness is label 1's share


def test_a_run_with_every_augmentation_and_its_report_row(quick):
    import imagefit

    run = imagefit.train(**quick, augment="trivial", mixup=0.2, cutmix=1.0, random_erasing=0.25, name="strong")
    m = run.metrics
    assert 0 <= m["test_accuracy"] <= 1 and m["test_loss"] == m["test_loss"]  # trained, no NaN
    assert m["config_sources"]["mixup"] == "user" and m["config_sources"]["augment"] == "user"
    assert "trivial, mixup 0.2, cutmix 1.0, random erasing 0.25" in (run.dir / "report.md").read_text()


def test_mixup_on_several_labels_an_image_is_one_line(tmp_path):
    from helpers import run_imagefit, write_mosaic_set

    labels = write_mosaic_set(tmp_path / "tags", n_train=40, n_test=10)
    proc = run_imagefit("train", "--dataset", labels, "--mixup", "0.2", "--epochs", "1", "--runs-dir", tmp_path / "runs",
                        "--cache-dir", tmp_path / "cache", cwd=tmp_path, check=False)
    last = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode == 2 and "mixup and cutmix mix one label an image" in last and "fix: pass --mixup 0" in last
    assert "Traceback" not in proc.stderr and not (tmp_path / "runs").exists()
