"""The run's wall clock: named intervals that make the time breakdown in metrics.json."""
from __future__ import annotations

import time


class Stopwatch:
    """Named wall-clock intervals: the run's time breakdown."""

    def __init__(self, start: float | None = None):
        self.seconds: dict[str, float] = {}
        self._start = start if start is not None else time.perf_counter()

    def lap(self, name: str) -> float:
        now = time.perf_counter()
        self.seconds[name] = self.seconds.get(name, 0.0) + now - self._start
        self._start = now
        return self.seconds[name]
