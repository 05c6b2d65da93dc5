from .run import Run, resume, train

__all__ = ["Run", "resume", "train"]
