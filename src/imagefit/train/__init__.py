"""Training: `train`, `resume` and `lr_find` (train/run.py).

Names resolve lazily, so that importing one module of the package (the optimizers, which the budget probe in
imagefit.plan times) does not import the whole run, which imports imagefit.plan: no import cycle.
"""
from importlib import import_module

__all__ = ["Run", "lr_find", "resume", "train"]


def __getattr__(name: str):
    if name in __all__:
        return getattr(import_module(".run", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
