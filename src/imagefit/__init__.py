"""imagefit: train, evaluate, compare and report image classifiers.

    import imagefit
    run = imagefit.train(dataset="digits", model="resnet9", epochs=5)
    run.metrics["test_accuracy"], run.dir
    imagefit.lr_find(dataset="digits").suggestion              # Lightning's learning-rate finder; train(lr="find") uses it

    study = imagefit.study("seed", dataset="digits")            # the course study: scratch, transfer, early stopping
    tuned = imagefit.tune(dataset="digits", time_budget="30m")  # Optuna search of the unpinned keys, best retrained
    imagefit.compare(["runs/a", "runs/b"], out="runs/a-vs-b")    # comparison.md/.html/.csv/.png from run folders
    imagefit.load("runs/a").predict(["photo.jpg", "folder/"])   # class names with probabilities

The names that need torch and Lightning load on first use, so `imagefit` on the command line refuses a mistyped
option at once rather than after seconds of imports.
"""
import time as _time

IMPORTED_AT = _time.perf_counter()  # before the heavy imports: the CLI's wall clock starts here

from importlib import import_module as _import_module  # noqa: E402

from . import study as _study_package  # noqa: E402, F401 (cheap: the subpackages resolve their names lazily)
from . import train as _train_package  # noqa: E402, F401
from .config import TrainConfig  # noqa: E402
from .errors import UserError  # noqa: E402

# imagefit.train and imagefit.study are the functions, not the subpackages of those names: the subpackages are
# loaded above, so importing their modules later never binds the names here again
for _subpackage in ("study", "train"):
    del globals()[_subpackage]

_HOMES = {"Run": "train.run", "train": "train.run", "resume": "train.run", "lr_find": "train.run",
          "Study": "study.runner", "study": "study.runner", "StudySpec": "study.spec", "load_study": "study.spec",
          "Predictor": "inference", "load": "inference", "Comparison": "report.compare", "compare": "report.compare",
          "Tuned": "study.tune", "tune": "study.tune"}

__version__ = "0.1.0"
__all__ = ["Comparison", "Predictor", "Run", "Study", "StudySpec", "TrainConfig", "UserError", "compare", "load",
           "load_study", "lr_find", "resume", "study", "train", "Tuned", "tune"]


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(_import_module(f".{_HOMES[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_HOMES))
