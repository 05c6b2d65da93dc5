"""The human-readable page of a run, rebuilt from the run folder's files."""
from .run_report import rebuild_report, write_run_report

__all__ = ["rebuild_report", "write_run_report"]
