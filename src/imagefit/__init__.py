"""imagefit: train, evaluate, compare and report image classifiers.

    import imagefit
    run = imagefit.train(dataset="digits", model="resnet9", epochs=5)
    run.metrics["test_accuracy"], run.dir
    imagefit.lr_find(dataset="digits").suggestion              # Lightning's learning-rate finder; train(lr="find") uses it

    study = imagefit.study("seed", dataset="digits")            # the course study: scratch, transfer, early stopping
    imagefit.compare(["runs/a", "runs/b"], out="runs/a-vs-b")    # comparison.md/.html/.csv/.png from run folders
    imagefit.load("runs/a").predict(["photo.jpg", "folder/"])   # class names with probabilities
"""
import time as _time

IMPORTED_AT = _time.perf_counter()  # before the heavy imports: the CLI's wall clock starts here

from .config import TrainConfig  # noqa: E402
from .errors import UserError  # noqa: E402
from .inference import Predictor, load  # noqa: E402
from .report.compare import Comparison, compare  # noqa: E402
from .study import Study, StudySpec, load_study, study  # noqa: E402
from .train import Run, lr_find, resume, train  # noqa: E402

__version__ = "0.1.0"
__all__ = ["Comparison", "Predictor", "Run", "Study", "StudySpec", "TrainConfig", "UserError", "compare", "load",
           "load_study", "lr_find", "resume", "study", "train"]
