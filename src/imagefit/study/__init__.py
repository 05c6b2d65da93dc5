"""Studies: several runs with shared defaults, run (or resumed, or skipped) into one folder and compared.

Names resolve lazily (as in imagefit.train), so that `import imagefit` does not import the training stack.
"""
from importlib import import_module

_HOMES = {"Study": "runner", "StudyRun": "runner", "study": "runner",
          "RunSpec": "spec", "StudySpec": "spec", "load_study": "spec", "seed_study": "spec", "Tuned": "tune"}
# `tune` itself is imagefit.tune (top level): here the name is its module's, study/tune.py
__all__ = sorted(_HOMES)


def __getattr__(name: str):
    if name in _HOMES:
        return getattr(import_module(f".{_HOMES[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
