"""imagefit: train, evaluate, compare and report image classifiers.

    import imagefit
    run = imagefit.train(dataset="digits", model="resnet9", epochs=5)
    run.metrics["test_accuracy"], run.dir

    study = imagefit.study("seed", dataset="digits")            # the course study: scratch, transfer, early stopping
    imagefit.compare(["runs/a", "runs/b"], out="runs/a-vs-b")    # comparison.md/.html/.csv/.png from run folders
"""
from .config import TrainConfig
from .errors import UserError
from .report.compare import Comparison, compare
from .study import Study, StudySpec, load_study, study
from .train import Run, resume, train

__version__ = "0.1.0"
__all__ = ["Comparison", "Run", "Study", "StudySpec", "TrainConfig", "UserError", "compare", "load_study", "resume",
           "study", "train"]
