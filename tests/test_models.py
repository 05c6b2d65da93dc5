import pytest
import torch

from imagefit.errors import UserError
from imagefit.models import count_parameters, create_model


@pytest.mark.parametrize("name", ["seed-cnn", "resnet9", "resnet9-small", "resnet18"])
def test_models_take_uint8_and_give_logits(name):
    model = create_model(name, num_classes=7, in_chans=3, image_size=32).eval()
    x = torch.randint(0, 255, (2, 3, 32, 32), dtype=torch.uint8)
    assert model(x).shape == (2, 7)
    assert torch.allclose(model(x), model(x.float() / 255), atol=1e-5)


def test_grayscale_and_tiny_images():
    assert create_model("resnet9", 10, in_chans=1, image_size=8).eval()(torch.zeros(1, 1, 8, 8)).shape == (1, 10)


def test_normalisation_is_part_of_the_saved_state():
    model = create_model("seed-cnn", 3, 3, 16, mean=[0.1, 0.2, 0.3], std=[0.5, 0.5, 0.5])
    state = model.state_dict()
    assert torch.allclose(state["mean"].flatten(), torch.tensor([0.1, 0.2, 0.3]))
    total, trainable = count_parameters(model)
    assert total == trainable > 0


def test_unknown_model_suggests_close_names():
    with pytest.raises(UserError, match="unknown model 'resnet91'.*did you mean"):
        create_model("resnet91", 10)


def test_airbench_whitening_decorrelates_patches():
    from imagefit.models.airbench import Airbench

    torch.manual_seed(0)
    # correlated 2x2 patches: a smooth random field, as natural images are
    base = torch.randn(64, 3, 9, 9)
    images = torch.nn.functional.interpolate(base, size=32, mode="bilinear", align_corners=False)
    net = Airbench(10)
    net.init_whitening(images)
    out = net.whiten(images) - net.whiten.bias.view(1, -1, 1, 1)
    half = out[:, :12].permute(0, 2, 3, 1).reshape(-1, 12)
    cov = half.T @ half / len(half)
    off_diagonal = cov - torch.diag(cov.diag())
    assert off_diagonal.abs().max() < 1e-3  # decorrelated
    assert ((cov.diag() > 0.85) & (cov.diag() < 1.001)).all()  # unit variance, less where eps tames tiny eigenvalues
    assert torch.equal(out[:, 12:], -out[:, :12])  # each filter and its negative
    assert not net.whiten.weight.requires_grad


def test_airbench_starts_as_identity_and_keeps_batchnorm_scale_fixed():
    from imagefit.models.airbench import Airbench

    net = Airbench(10)
    conv = net.groups[1].conv1  # 64 -> 256
    x = torch.randn(1, 64, 5, 5)
    assert torch.allclose(conv(x)[:, :64], x, atol=1e-6)  # Dirac start: an implicit residual
    assert all(not m.weight.requires_grad for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d))
    groups = net.optimizer_groups(lr=1.0, weight_decay=0.01, bias_lr_scale=64)
    assert groups[1]["lr"] == 64 and groups[1]["lr"] * groups[1]["weight_decay"] == pytest.approx(0.01)
    trainable = {id(p) for p in net.parameters() if p.requires_grad}
    assert {id(p) for g in groups for p in g["params"]} == trainable


def test_airbench_whitening_bias_trains_early_only(tmp_path):
    """Through Lightning's loop: the bias moves in the first 30% of the epochs (1 of 3) and not after, while the
    other weights keep training (the freeze drops its gradient; it stays a parameter DDP sees used)."""
    import lightning as L

    from imagefit.config import TrainConfig
    from imagefit.data.loader import TensorLoader
    from imagefit.data.types import ImageSet
    from imagefit.train.module import ClassifierModule

    class Snapshots(L.Callback):
        def __init__(self):
            self.bias, self.head = [], []

        def on_train_epoch_end(self, trainer, module):
            self.bias.append(module.model.net.whiten.bias.detach().clone())
            self.head.append(module.model.net.head.weight.detach().clone())

    torch.manual_seed(0)
    model = create_model("airbench93", 4, 3, 16)
    data = ImageSet(torch.randint(0, 256, (64, 3, 16, 16), dtype=torch.uint8), torch.arange(64) % 4)
    cfg = TrainConfig(dataset="digits", model="airbench93", epochs=3, batch_size=16, recipe="fast").with_defaults()
    snaps = Snapshots()
    start = model.net.whiten.bias.detach().clone()
    L.Trainer(max_epochs=3, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
              enable_model_summary=False, callbacks=[snaps], default_root_dir=tmp_path).fit(
        ClassifierModule(model, cfg, 4, augment=False), TensorLoader(data, 16, shuffle=True, seed=0))
    assert not torch.equal(snaps.bias[0], start)  # trained in epoch 1
    assert torch.equal(snaps.bias[1], snaps.bias[0]) and torch.equal(snaps.bias[2], snaps.bias[0])  # frozen after
    assert not torch.equal(snaps.head[2], snaps.head[1])  # the rest still trains
    assert model.net.whiten.bias.requires_grad


def test_airbench_needs_16_pixels_and_says_so():
    with pytest.raises(UserError, match="does not accept 8x8 images"):
        create_model("airbench", 10, 3, 8)
    assert create_model("airbench", 10, 3, 16).eval()(torch.zeros(1, 3, 16, 16, dtype=torch.uint8)).shape == (1, 10)
