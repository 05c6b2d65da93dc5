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
