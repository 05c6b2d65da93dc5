"""The data audit in a run folder: data_audit.md written before training, its summary in report.md.

The audit itself (hashing, grouping, the markdown) is data/audit.py; this module writes it and reads
the short form back from metrics.json, so `imagefit report` rebuilds the section without the images.
"""
from __future__ import annotations

import logging
from pathlib import Path

from .. import atomic
from ..data.audit import leak_warning, render_markdown

log = logging.getLogger("imagefit")
AUDIT_FILE = "data_audit.md"


def write_audit(run_dir: Path, result: dict) -> Path:
    """data_audit.md into the run folder (atomically); a test leak is one warning line on the console."""
    path = Path(run_dir) / AUDIT_FILE
    atomic.write_text(path, render_markdown(result))
    warning = leak_warning(result)
    if warning:
        log.warning("test leak: %s", warning)
    return path


def _count(n, what: str, plural: str | None = None) -> str:
    n = int(n or 0)
    return f"{n:,} {what if n == 1 else plural or what + 's'}"


def audit_lines(run_dir: Path, metrics: dict) -> tuple[list[str], list[str]]:
    """(lines for the top of report.md: the leak warning; the "Data audit" section), from metrics.json."""
    info = metrics.get("data_audit")
    if not info:
        return [], []
    top = [f"> **Warning: test leak.** {info['warning'][0].upper()}{info['warning'][1:]}.", ""] if info.get("warning") else []
    within, across = info.get("within") or {}, info.get("across") or {}

    def where(counts: dict) -> str:
        parts = [f"{n:,} {k.replace('-', '/')}" for k, n in (counts or {}).items() if n]
        return f" ({', '.join(parts)})" if parts else ""

    said = [f"Before training, every image of train, validation and test was hashed: "
            f"{_count(info.get('exact_within'), 'exact duplicate')} within a split{where(within.get('exact'))} and "
            f"{_count(info.get('exact_across'), 'exact copy', 'exact copies')} across splits{where(across.get('exact'))}; "
            f"{_count(info.get('near_within'), 'near duplicate')} within a split{where(within.get('near'))} and "
            f"{_count(info.get('near_across'), 'near copy', 'near copies')} across splits{where(across.get('near'))}; "
            f"{_count(info.get('label_conflicts'), 'group')} of identical or near-identical images under two classes; "
            f"{_count(info.get('leaks'), 'test image')} with a copy in train or validation."]
    if info.get("seconds") is not None:
        said.append(f"The audit took {info['seconds']:.1f} s.")
    link = (f"Class counts per split, image sizes and modes, and every group are in [{AUDIT_FILE}]({AUDIT_FILE})."
            if (Path(run_dir) / AUDIT_FILE).is_file() else "")
    return top, ["## Data audit", "", " ".join(said + ([link] if link else [])), ""]
