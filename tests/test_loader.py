import torch

from imagefit.data.loader import TensorLoader, stream_loader
from imagefit.data.types import ImageSet


def make(n=103):
    return ImageSet(torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 1, 2, 2).contiguous(),
                    torch.arange(n, dtype=torch.int64))


def test_every_image_once_per_epoch_in_a_new_order():
    loader = TensorLoader(make(), 10, shuffle=True, seed=1)
    assert len(loader) == 11
    first = torch.cat([y for _, y in loader])
    second = torch.cat([y for _, y in loader])
    assert sorted(first.tolist()) == list(range(103)) == sorted(second.tolist())
    assert not torch.equal(first, second)
    for x, y in TensorLoader(make(), 10, shuffle=True, seed=1):
        assert torch.equal(x[:, 0, 0, 0].long(), y)  # images stay with their labels


def test_same_seed_same_order():
    a = torch.cat([y for _, y in TensorLoader(make(), 10, shuffle=True, seed=4)])
    b = torch.cat([y for _, y in TensorLoader(make(), 10, shuffle=True, seed=4)])
    assert torch.equal(a, b)


def test_ranks_get_disjoint_equal_shards():
    shards = []
    for rank in range(3):
        loader = TensorLoader(make(), 8, shuffle=True, seed=0, rank=rank, world_size=3)
        shards.append(torch.cat([y for _, y in loader]).tolist())
    assert len({len(s) for s in shards}) == 1 and len(shards[0]) == 103 // 3
    assert not set(shards[0]) & set(shards[1]) and not set(shards[1]) & set(shards[2])


def test_lazy_view_and_stream_loader_serve_the_same_items():
    data = make()
    index = torch.tensor([5, 3, 90, 7])
    view = data.subset(index, lazy=True)
    assert view.index is not None and torch.equal(view.take(0, 4), data.images[index])
    assert torch.equal(view.materialize().images, data.images[index])
    xs, ys = zip(*stream_loader(view, 2, shuffle=False, seed=0, num_workers=0))
    assert torch.equal(torch.cat(ys), index) and torch.equal(torch.cat(xs), data.images[index])
    xs, ys = zip(*TensorLoader(view, 3, shuffle=False))
    assert torch.equal(torch.cat(xs), data.images[index])


def asymmetric(n=200):
    """Image i: a 1x2 picture whose left pixel is i % 256 and right pixel 255 - that, so a mirror is visible."""
    left = (torch.arange(n) % 256).to(torch.uint8)
    images = torch.stack([left, 255 - left], dim=-1).view(n, 1, 1, 2)
    return ImageSet(images.contiguous(), torch.arange(n, dtype=torch.int64))


def mirrored_by_label(loader) -> dict[int, bool]:
    seen = {}
    for x, y in loader:
        expected = (y % 256).to(torch.uint8)
        for image, label, left in zip(x, y, expected):
            assert image[0, 0, 0] in (left, 255 - left)  # the image itself, mirrored or not, never another's
            seen[int(label)] = bool(image[0, 0, 0] != left)
    return seen


def test_alternating_flip_mirrors_each_image_in_every_other_epoch():
    loader = TensorLoader(asymmetric(), 16, shuffle=True, seed=3, alternating_flip=True)
    epochs = []
    for epoch in range(4):
        loader.set_epoch(epoch)
        epochs.append(mirrored_by_label(loader))
    assert 70 < sum(epochs[0].values()) < 130  # the first epoch's orientations: a random half
    for before, after in zip(epochs, epochs[1:]):
        assert all(after[i] != before[i] for i in range(200))  # each image turned over from one epoch to the next
    assert epochs[2] == epochs[0]
    again = TensorLoader(asymmetric(), 16, shuffle=True, seed=3, alternating_flip=True)
    assert mirrored_by_label(again) == epochs[0]  # a function of the seed: every rank, and a resumed run, agree
    ranks = [TensorLoader(asymmetric(), 16, shuffle=True, seed=3, alternating_flip=True, rank=r, world_size=2)
             for r in (0, 1)]
    for rank in ranks:
        assert all(epochs[0][i] == m for i, m in mirrored_by_label(rank).items())


def test_random_flips_by_default_leave_the_loader_unmirrored():
    assert not any(mirrored_by_label(TensorLoader(asymmetric(), 16, shuffle=True, seed=3)).values())


def test_channel_stats_from_level_counts_equal_the_float_sums_they_replaced():
    """pipeline.channel_stats counts each channel's 256 levels; the mean and std are those of the float64
    sums it computed before (kept here as the reference), on plain and lazy (memory-mapped-like) sets."""
    from imagefit.data.pipeline import channel_stats

    def float_sums(data, chunk=4096):
        c = data.images.shape[1]
        total, total_sq, count = torch.zeros(c, dtype=torch.float64), torch.zeros(c, dtype=torch.float64), 0
        for start in range(0, len(data), chunk):
            x = data.take(start, start + chunk).to(torch.float64) / 255
            total += x.sum(dim=(0, 2, 3))
            total_sq += (x * x).sum(dim=(0, 2, 3))
            count += x.numel() // c
        mean = total / count
        std = (total_sq / count - mean**2).clamp_min(1e-12).sqrt().clamp_min(1e-3)
        return [round(float(v), 6) for v in mean], [round(float(v), 6) for v in std]

    g = torch.Generator().manual_seed(0)
    for trial in range(20):
        n, c, side = 1 + 37 * trial, (1, 3)[trial % 2], 1 + trial % 9
        images = torch.randint(0, 256, (n, c, side, side), dtype=torch.uint8, generator=g)
        if trial % 4 == 0:
            images = images // 128 * 200  # two levels only (a near-constant channel)
        data = ImageSet(images, torch.zeros(n, dtype=torch.int64))
        assert channel_stats(data, chunk=50) == float_sums(data)
        lazy = data.subset(torch.arange(0, n, 2), lazy=True)
        assert channel_stats(lazy, chunk=50) == float_sums(lazy)
