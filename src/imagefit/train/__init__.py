from .run import Run, lr_find, resume, train

__all__ = ["Run", "lr_find", "resume", "train"]
