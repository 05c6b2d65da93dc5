"""Test-set evaluation of a run: metrics, evaluation files and plots.

Names resolve lazily so that importing `imagefit.evaluate.predict` during training does not pay
for scikit-learn and matplotlib before they are needed.
"""
from importlib import import_module

_HOMES = {"test_metrics": "metrics", "write_evaluation": "metrics", "plot_confusion": "plots", "plot_curves": "plots"}
__all__ = list(_HOMES)


def __getattr__(name: str):
    if name in _HOMES:
        return getattr(import_module(f".{_HOMES[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
