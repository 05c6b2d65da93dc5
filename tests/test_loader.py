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
