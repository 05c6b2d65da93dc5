from .run import Run, train

__all__ = ["Run", "train"]
