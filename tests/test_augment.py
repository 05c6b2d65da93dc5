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
