"""Grad-CAM overlays of the worst mistakes (evaluate/saliency.py): right maps, real runs, clean skips, no side effects."""
import json
import sys

import pytest
import torch
import torch.nn as nn
from PIL import Image

import imagefit
from imagefit.data.types import ImageSet
from imagefit.evaluate.saliency import find_target_layer, gradcam_maps, write_gradcam
from imagefit.models import create_model
from imagefit.models.freeze import freeze
from imagefit.models.registry import ImageClassifier
from imagefit.report.error_analysis_section import gradcam_section

# torchcam is a dependency on Python 3.11+ (pyproject): there it must import, a missing one fails here
pytestmark = pytest.mark.skipif(sys.version_info < (3, 11), reason="torchcam is installed on Python 3.11+ only")
if sys.version_info >= (3, 11):
    import torchcam  # noqa: F401

SIDE = 16


def quadrant_data(n, seed):
    """Noise images; class 1 has a bright 3x3 square somewhere in the top-left quadrant, class 0 has none.
    Returns uint8 images, labels and each square's centre (row, col), (-1, -1) for class 0."""
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 90, (n, 1, SIDE, SIDE), generator=g, dtype=torch.uint8)
    labels = torch.arange(n) % 2
    centres = torch.full((n, 2), -1)
    for i in torch.nonzero(labels).flatten().tolist():
        r, c = torch.randint(1, SIDE // 2 - 1, (2,), generator=g).tolist()
        images[i, 0, r - 1:r + 2, c - 1:c + 2] = 255
        centres[i] = torch.tensor([r, c])
    return images, labels, centres


def toy_net():
    """Two full-resolution convolutions, global average pooling, a linear head: Grad-CAM's target is the
    last ReLU's 16x16 map, and nothing in the head knows where anything is."""
    net = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 2))
    return ImageClassifier(net, [0.2], [0.3])


def test_the_map_of_a_known_case_lies_on_the_evidence():
    torch.manual_seed(0)
    model = toy_net()
    images, labels, _ = quadrant_data(256, seed=1)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    for step in range(60):  # a real, short training: the square is the whole signal
        batch = torch.arange(step * 32, step * 32 + 32) % len(labels)
        loss = nn.functional.cross_entropy(model(images[batch]), labels[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    test, test_labels, centres = quadrant_data(40, seed=2)
    assert (model.eval()(test).argmax(1) == test_labels).float().mean() > 0.95
    positives = torch.nonzero(test_labels).flatten()
    cams = gradcam_maps(model, test[positives], [[1] * len(positives)], normalized=False)
    assert cams.layer == "net.3" and cams.kind == "ReLU" and cams.size == (SIDE, SIDE)
    maps = cams.maps[0]
    inside = maps[:, :SIDE // 2, :SIDE // 2].sum((1, 2)) / maps.sum((1, 2))
    # the class-1 evidence is in the top-left quadrant (a square at its edge spills over by the two 3x3
    # convolutions' reach) ...
    assert inside.mean() > 0.85 and inside.min() > 0.6, inside
    peaks = torch.stack([torch.tensor(divmod(int(m.argmax()), SIDE)) for m in maps])
    near = ((peaks - centres[positives]).abs().max(1).values <= 1).float().mean()
    assert near >= 0.9, (peaks, centres[positives])  # ... and peaks on the square itself


def test_target_layer_rule_on_imagefit_models():
    x = torch.randint(0, 256, (1, 3, 32, 32), dtype=torch.uint8)
    # seed-cnn: the last max-pool (its Dropout hands the same map on); ResNet-9: the last residual block;
    # airbench: its conv groups; EfficientNet: the activated head convolution
    expected = {"seed-cnn": ("net.10", (8, 8)), "resnet9-small": ("net.features.5", (4, 4)),
                "airbench93": ("net.groups", (3, 3))}
    for name, want in expected.items():
        with torch.no_grad():
            assert find_target_layer(create_model(name, 4, 3, 32).eval(), x) == want, name


def test_maps_leave_parameters_and_batchnorm_statistics_alone_also_under_bf16():
    torch.manual_seed(0)
    model = create_model("resnet9-small", 4, 3, 16)  # BatchNorm, in-place ReLUs; left in train mode
    freeze(model.net.features[:5])  # frozen layers below the target, the way a probe's or a trunk's are
    for p in model.net.features[5].parameters():
        p.requires_grad_(False)  # and the target itself: its output takes no gradient unless re-rooted
    before = {k: v.clone() for k, v in model.state_dict().items()}
    modes = [m.training for m in model.modules()]
    images = torch.randint(0, 256, (8, 3, 16, 16), dtype=torch.uint8)
    fp32 = gradcam_maps(model, images, [[0] * 8, list(range(4)) * 2])
    with torch.autocast("cpu", dtype=torch.bfloat16):  # as if called inside a bf16 run: the maps stay fp32
        bf16 = gradcam_maps(model, images, [[0] * 8, list(range(4)) * 2])
        raw = gradcam_maps(model, images, [list(range(4)) * 2], normalized=False)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # weights, running stats, batch counts
    assert all(p.grad is None for p in model.parameters()) and [m.training for m in model.modules()] == modes
    assert model.training and not model.net.features[0][1].training  # frozen BatchNorm stays in eval mode
    assert bf16.maps[0].dtype == torch.float32 and torch.allclose(fp32.maps[0], bf16.maps[0], atol=1e-5)
    assert torch.allclose(fp32.scores, bf16.scores, rtol=1e-5, atol=1e-6) and (fp32.scores != 0).all()
    exact = gradcam_maps(model, images, [list(range(4)) * 2], normalized=False).maps[0]
    assert torch.allclose(exact, raw.maps[0], rtol=1e-5, atol=1e-7) and exact.max() > 0
    peaks = torch.cat(fp32.maps).amax((1, 2))  # each map scaled to its own maximum (0: no positive evidence)
    assert fp32.maps[0].shape == (8, 2, 2) and ((peaks > 0.99) | (peaks == 0)).all() and (peaks > 0).any()
    assert not torch.allclose(fp32.maps[0], fp32.maps[1])  # another class, another map
    stored = create_model("seed-cnn", 4, 3, 16).to(torch.bfloat16)  # a model kept in bf16: copied to fp32
    weights = {k: v.clone() for k, v in stored.state_dict().items()}
    assert gradcam_maps(stored, images, [[1] * 8]).maps[0].dtype == torch.float32
    assert all(torch.equal(weights[k], v) and v.dtype == torch.bfloat16 for k, v in stored.state_dict().items())


def mistakes_case(n=12, k=4):
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, 16, 16), dtype=torch.uint8, generator=g)
    labels = torch.arange(n) % k
    logits = torch.randn(n, k, generator=g)
    return ImageSet(images, labels), logits, labels


@pytest.mark.parametrize("model, reason", [
    (ImageClassifier(nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 4)), [0.5] * 3, [0.5] * 3),
     "the network has no convolutional layer"),
    # a top that takes a frozen trunk's activations (or a head that takes features), not images
    (nn.Sequential(nn.Conv2d(96, 8, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4)),
     "the evaluated model does not take the test images as input"),
    (ImageClassifier(nn.Sequential(nn.Conv2d(3, 8, 3, stride=2), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                   nn.Linear(8, 2)), [0.5] * 3, [0.5] * 3),
     "computing the maps failed"),  # 2 scores for 4 classes: torchcam's gather fails, the run does not
])
def test_where_grad_cam_does_not_apply_no_file_and_one_sentence(tmp_path, model, reason):
    test, logits, labels = mistakes_case()
    (tmp_path / "gradcam.png").write_bytes(b"stale")
    out = write_gradcam(tmp_path, test, logits, labels, list("abcd"), model)
    assert out["gradcam_note"].startswith(reason) and out["gradcam_images"] == 0, out
    assert not (tmp_path / "gradcam.png").exists()
    section = "\n".join(gradcam_section(tmp_path, out))
    assert section.count("No Grad-CAM overlays: ") == 1 and reason in section and "gradcam.png" not in section


def test_no_mistakes_no_overlays(tmp_path):
    test, _, labels = mistakes_case()
    out = write_gradcam(tmp_path, test, nn.functional.one_hot(labels, 4).float() * 5, labels, list("abcd"),
                        create_model("seed-cnn", 4, 3, 16))
    assert out["gradcam_note"] == "no test image was misclassified" and not (tmp_path / "gradcam.png").exists()


def test_a_real_run_draws_its_worst_mistakes_and_the_report_shows_them(quick):
    run = imagefit.train(**quick)
    m = json.loads((run.dir / "metrics.json").read_text())
    shown = min(8, m["misclassified"])
    assert shown > 0 and m["gradcam_images"] == shown and m["gradcam_note"] is None
    assert m["gradcam_target_layer"] == "net.10" and m["gradcam_map_size"] == [2, 2]  # digits: 8 px, pooled twice
    assert m["gradcam_same_prediction"] == shown  # the images went in as at test time: same classes predicted
    with Image.open(run.dir / "gradcam.png") as im:
        assert im.size[0] >= 180 * shown and im.size[1] >= 600  # a column per image, three rows
    report = (run.dir / "report.md").read_text()
    assert "## Where the model looked" in report and "![Grad-CAM of the misclassified test images](gradcam.png)" in report
    assert report.index("## Mistakes") < report.index("## Where the model looked")
    page = (run.dir / "report.html").read_text()
    assert page.count('<img src="data:image/png;base64,') == report.count(".png)") and 'alt="Grad-CAM' in page


@pytest.mark.parametrize("strategy", ["partial", "linear-probe"])
def test_cached_trunk_and_probe_runs_use_the_whole_network(quick, tmp_path, strategy):
    """A partial run's top and a probe's head are the network's own modules: after training the whole
    image-to-logits network is there, and its maps are drawn (noise classes, so there are mistakes)."""
    g = torch.Generator().manual_seed(0)
    for c in ("a", "b", "c"):
        (tmp_path / "noise" / c).mkdir(parents=True)
        for i in range(10):
            pixels = torch.randint(0, 256, (24, 24, 3), dtype=torch.uint8, generator=g).numpy()
            Image.fromarray(pixels).save(tmp_path / "noise" / c / f"{i}.png")
    run = imagefit.train(**{**quick, "dataset": str(tmp_path / "noise"), "model": "tf_efficientnet_lite0",
                            "pretrained": True, "image_size": 64, "batch_size": 8, "epochs": 1,
                            "transfer_strategy": strategy, "trainable_blocks": 2 if strategy == "partial" else None})
    m = json.loads((run.dir / "metrics.json").read_text())
    assert m["misclassified"] > 0 and m["gradcam_images"] == min(8, m["misclassified"]), m.get("gradcam_note")
    assert m["gradcam_target_layer"] == "net.bn2" and (run.dir / "gradcam.png").is_file()
    assert "gradcam.png" in (run.dir / "report.md").read_text()
