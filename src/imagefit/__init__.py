"""imagefit: train, evaluate, compare and report image classifiers.

    import imagefit
    run = imagefit.train(dataset="digits", model="resnet9", epochs=5)
    run.metrics["test_accuracy"], run.dir
"""
from .config import TrainConfig
from .errors import UserError
from .train import Run, resume, train

__version__ = "0.1.0"
__all__ = ["Run", "TrainConfig", "UserError", "resume", "train"]
