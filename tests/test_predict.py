import torch

from imagefit.data.types import ImageSet
from imagefit.evaluate.predict import predict_logits, with_tta


class Column(torch.nn.Module):
    """Logits = the mean of each of the first 3 columns: sees flips and shifts exactly."""

    def forward(self, x):
        return x.float()[:, 0, :, :3].mean(dim=1)


def test_tta_averages_the_documented_views():
    torch.manual_seed(0)
    x = torch.randint(0, 255, (4, 1, 6, 6), dtype=torch.uint8)
    model = Column()
    assert torch.equal(with_tta(model, "none")(x), model(x))
    assert torch.allclose(with_tta(model, "flip")(x), 0.5 * (model(x) + model(x.flip(-1))))
    padded = torch.nn.functional.pad(x.float(), (1, 1, 1, 1), mode="reflect")
    views = [x.float(), x.float().flip(-1)] + [v for p in (padded[..., :6, :6], padded[..., 2:, 2:]) for v in (p, p.flip(-1))]
    expected = 0.25 * (model(views[0]) + model(views[1])) + 0.125 * sum(model(v) for v in views[2:])
    assert torch.allclose(with_tta(model, "flip-translate")(x), expected, atol=1e-5)


def test_predict_logits_with_tta_over_batches():
    torch.manual_seed(0)
    images = torch.randint(0, 255, (10, 1, 6, 6), dtype=torch.uint8)
    data = ImageSet(images, torch.arange(10) % 3)
    logits, labels = predict_logits(Column(), data, batch_size=4, tta="flip")
    assert torch.allclose(logits, with_tta(Column(), "flip")(images), atol=1e-5)
    assert torch.equal(labels, data.labels)
