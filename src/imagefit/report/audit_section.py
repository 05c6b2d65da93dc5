"""The data audit in a run folder: data_audit.md written before training, its summary in report.md.

The audit itself (hashing, grouping) is data/audit.py; this module renders and writes data_audit.md and
reads the short form back from metrics.json, so `imagefit report` rebuilds the section without the images.
"""
from __future__ import annotations

import logging
from pathlib import Path

from .. import atomic
from ..data.audit import LISTED, SPLITS, WINDOW, leak_warning
from .markdown import literal, table

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
    top = ([f"> **Warning: test leak.** {literal(info['warning'][0].upper() + info['warning'][1:])}.", ""]
           if info.get("warning") else [])
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


def _sizes_lines(result: dict) -> list[str]:
    o, d = result["originals"], result["decoded"]
    decoded = f"Every image was decoded to {d['channels']} channel{'s' if d['channels'] != 1 else ''} at {d['side']}x{d['side']} px."
    if not o.get("known"):
        return [decoded + " The source stores its images at one size and records no other (no files to read).", ""]
    w, h = o["width"], o["height"]
    span = lambda s: f"{s['min']}" if s["min"] == s["max"] else f"{s['min']}-{s['max']} (median {s['median']})"  # noqa: E731
    lines = [f"{decoded} The {o['images']:,} files were {span(w)} px wide and {span(h)} px high; the most common sizes:", ""]
    lines += table(["Size (w x h)", "Files"], [[f"{s[0]}x{s[1]}", f"{s[2]:,}"] for s in o["common"]])
    modes = o.get("modes") or {}
    converted = {m: c for m, c in modes.items() if m != "RGB"}
    if converted:
        said = ", ".join(f"{c:,} {m}" + (" (grayscale)" if m in ("L", "I", "I;16", "1", "LA") else "")
                         for m, c in sorted(converted.items(), key=lambda kv: -kv[1]))
        lines += [f"Converted to RGB (alpha composited on white, 16-bit scaled by its range): {said}.", ""]
    else:
        lines += ["Every file was already 8-bit RGB.", ""]
    return lines


def _group_rows(groups: list[dict]) -> list[list]:
    rows = []
    for g in groups[:LISTED]:
        shown = "; ".join(f"{im['split']}: {literal(im['file'])} ({literal(im['label'])})" for im in g["images"][:6])
        more = f"; and {len(g['images']) - 6} more" if len(g["images"]) > 6 else ""
        rows.append([g["kind"], len(g["images"]), shown + more])
    return rows


def render_markdown(result: dict) -> str:
    """data_audit.md: the leak warning first, then counts, sizes, duplicates and label conflicts."""
    lines = ["# Data audit", ""]
    warning = leak_warning(result)
    if warning:
        lines += [f"> **Warning: test leak.** {literal(warning[0].upper() + warning[1:])}.", ""]
    present = [s for s in SPLITS if s in result["counts"]]
    lines += ["## Images per class and split", "",
              "After imagefit carved validation and test (see the report's data notes); audited before training.", ""]
    rows = [[literal(name)] + [f"{result['counts'][s][c]:,}" for s in present] for c, name in enumerate(result["class_names"])]
    rows.append(["**all**"] + [f"{sum(result['counts'][s]):,}" for s in present])
    lines += table(["Class"] + present, rows)
    lines += ["## Image sizes and modes", ""] + _sizes_lines(result)
    if result.get("skipped"):
        lines += [f"{result['skipped']:,} files could not be used and were skipped: see the report's Skipped files.", ""]
    lines += ["## Duplicates", "",
              f"Exact: {result['method']['exact']}. Near: {result['method']['near']} (identical copies counted as exact). "
              f"Within a split: the extra copies; across: the later split's images with a copy in the earlier one.", ""]
    within, across = result["within"], result["across"]
    rows = [[f"within {s}", f"{within['exact'].get(s, 0):,}", f"{within['near'].get(s, 0):,}"] for s in present]
    rows += [[f"across {p}", f"{across['exact'].get(p, 0):,}", f"{across['near'].get(p, 0):,}"]
             for p in ("train-val", "train-test", "val-test") if all(s in present for s in p.split("-"))]
    lines += table(["Where", "Exact", "Near"], rows)
    if result.get("near_limited"):
        lines += [f"{result['near_limited']:,} distinct images fell in crowded hash buckets (many images alike in "
                  f"one block of the hash's bits); there each was compared with its {WINDOW} nearest by hash rather than "
                  "with the whole bucket, so a near duplicate among them can be missed.", ""]
    groups = result["groups"]
    if groups:
        lines += [f"{len(groups):,} group{'s' if len(groups) != 1 else ''} of duplicates"
                  + (f"; the first {LISTED} listed:" if len(groups) > LISTED else ":"), ""]
        lines += table(["Kind", "Images", "Files (split: file (class))"], _group_rows(groups))
    else:
        lines += ["No exact or near duplicates.", ""]
    conflicts = [g for g in groups if len(g["labels"]) > 1]
    lines += ["## Label conflicts", ""]
    if conflicts:
        lines += [f"{len(conflicts):,} group{'s' if len(conflicts) != 1 else ''} of identical or near-identical images "
                  "carry different classes (a mislabelled copy, or classes that overlap):", ""]
        lines += table(["Kind", "Images", "Files (split: file (class))"], _group_rows(conflicts))
    else:
        lines += ["No image appears under two classes.", ""]
    leaks = result["leaks"]
    lines += ["## Test images with a copy in train or val", ""]
    if leaks:
        rows = [[lk["kind"], literal(lk["test"]), literal(lk["label"]), "; ".join(map(literal, lk["copies"])) + (
            f"; and {lk['copies_count'] - len(lk['copies'])} more" if lk["copies_count"] > len(lk["copies"]) else "")]
            for lk in leaks[:LISTED]]
        lines += table(["Kind", "Test image", "Class", "Copies"], rows)
        if len(leaks) > LISTED:
            lines += [f"The first {LISTED} of {len(leaks):,} are listed.", ""]
    else:
        lines += ["None.", ""]
    lines += [f"The audit took {result['seconds']:.2f} s for {result['images']:,} images.", ""]
    return "\n".join(lines) + "\n"
