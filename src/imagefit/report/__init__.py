"""The human-readable pages: a run's report and the comparison of several runs, as markdown and HTML."""
from .compare import Comparison, compare
from .html import markdown_to_html, write_html
from .run_report import rebuild_report, write_run_report

__all__ = ["Comparison", "compare", "markdown_to_html", "rebuild_report", "write_html", "write_run_report"]
