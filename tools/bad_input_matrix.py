"""The bad-input matrix of issue 13, observed: every case (tools/bad_input_cases.py)
built in a temporary folder and run through the real CLI.

Writes docs/bad-input.md: for each case, the exit code and what imagefit printed (the one error line of a
refusal; the skip-and-count or warning line of a data set that trains, with a short summary of the run).
A plain script, not a test (the tests check the same cases with assertions; this records what a user sees):

    PYTHONPATH=src nice -n 15 .venv/bin/python tools/bad_input_matrix.py          # all cases, about 15 min on 2 cores
    PYTHONPATH=src .venv/bin/python tools/bad_input_matrix.py --only zip,pickle --out /tmp/m.md  # a few
"""
from __future__ import annotations

import argparse
import datetime
import json
import platform
import re
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

from bad_input_cases import FAST, GROUPS, common, imagefit

ROOT = Path(__file__).resolve().parent.parent
ROUTINE = ("imagefit: in-memory tensor loader", "imagefit: run folder:", "imagefit: memory-mapped")
ROUTINE_NOTES = ("image folder ", "the folder has only class folders", "The source has no test split",
                 "Validation: ", "In-memory tensor loader", "Memory-mapped", "digits:")


def observe(proc: subprocess.CompletedProcess, tmp: Path) -> str:
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    if "Traceback (most recent call last)" in proc.stderr:
        return "TRACEBACK: " + (lines[-1] if lines else "")
    own = [line for line in lines if line.startswith("imagefit:")]
    foreign = [line for line in lines if not line.startswith("imagefit:")]
    said = [line for line in own if not line.startswith(ROUTINE)]
    if proc.returncode != 0:
        said = said or lines[-1:]
    else:
        said = said + [summary(tmp)]
    if foreign:
        said.append(f"(also printed, not by imagefit: {len(foreign)} lines, the first: {foreign[0].strip()[:160]})")
    return " / ".join(said)


def summary(tmp: Path) -> str:
    runs = sorted((tmp / "runs").glob("*/metrics.json"), key=lambda p: p.stat().st_mtime)
    if not runs:
        return "finished, no run written"
    m = json.loads(runs[-1].read_text())
    images = sum(m.get(k) or 0 for k in ("train_images", "val_images", "test_images"))
    skipped = (m.get("skipped_files") or {}).get("count", 0)
    notes = [n for n in m.get("data_notes", []) if not n.startswith(ROUTINE_NOTES) and "skipped (unreadable" not in n]
    text = f"trained: {images} images of {m.get('num_classes')} classes, {skipped} file{'s' * (skipped != 1)} skipped"
    return text + "".join(f"; note: {n}" for n in notes)


def run_case(title: str, build, work: Path) -> tuple[int | str, str, float]:
    tmp = Path(tempfile.mkdtemp(prefix="case-", dir=work))
    start = time.time()
    try:
        spec = build(tmp)
        command = spec.get("command", "train")
        args = [command, *spec["args"]] if spec.get("plain") else [command, *common(tmp), *FAST, *spec["args"]]
        proc = imagefit(args, tmp, spec.get("limit"))
        message = observe(proc, tmp)
        if spec.get("after"):
            message += f"; {spec['after']()}"
        code = proc.returncode
    except Exception as e:  # a case that could not be built: said so in the table, never hidden
        code, message = "-", f"CASE NOT RUN: {type(e).__name__}: {str(e)[-300:]}"
    message = message.replace(str(tmp), "$CASE").replace(str(work), "$TMP")
    return code, message, time.time() - start


def cell(text: str) -> str:
    text = re.sub(r"\s+", " ", text)
    text = text if len(text) <= 600 else text[:600] + " ..."
    return text.replace("|", "\\|").replace("<", "&lt;")


def versions() -> str:
    names = ["imagefit", "torch", "lightning", "timm", "pillow", "numpy"]
    found = []
    for name in names:
        try:
            found.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            found.append(f"{name} (not installed)")
    return f"Python {platform.python_version()}, " + ", ".join(found)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="run only the cases whose title contains one of these comma-separated texts")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "bad-input.md")
    opts = parser.parse_args()
    rows: dict[str, list] = {}
    flagged = []
    with tempfile.TemporaryDirectory(prefix="imagefit-matrix-") as work:
        for group, cases in GROUPS:
            for title, build in cases:
                if opts.only and not any(t.strip().lower() in title.lower() for t in opts.only.split(",")):
                    continue
                code, message, seconds = run_case(title, build, Path(work))
                print(f"[{seconds:5.1f} s] exit {code}  {title}: {message[:200]}", flush=True)
                rows.setdefault(group, []).append((title, code, message))
                if any(flag in message for flag in ("TRACEBACK", "CASE NOT RUN", "payload RAN", "WRITTEN OUTSIDE")):
                    flagged.append(title)
    today = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
    out = ["# Bad input and faults: what imagefit says", "",
           "Every case of the bad-input matrix (issue 13), built in a temporary folder and run through the real "
           "command line (`imagefit train` with one epoch on 8 px images, no audit). A refusal is one line and exit "
           "code 2; a bad file inside a data set is skipped and counted (listed in `metrics.json` and `report.md`; "
           "`--strict` refuses instead). `$CASE` is the case's temporary folder. The tests in `tests/` check the "
           "same cases with assertions; this page records what a user sees.", "",
           f"Generated on {today} with `PYTHONPATH=src python tools/bad_input_matrix.py` ({versions()}; "
           f"{platform.system()} {platform.machine()}). Run it again after changing how imagefit reads data or "
           "reports errors.", ""]
    for group, rows_ in rows.items():
        out += [f"## {group}", "", "| case | exit | what imagefit printed |", "|---|---|---|"]
        out += [f"| {cell(title)} | {code} | {cell(message)} |" for title, code, message in rows_]
        out.append("")
    opts.out.parent.mkdir(parents=True, exist_ok=True)
    opts.out.write_text("\n".join(out), encoding="utf-8")
    print(f"wrote {opts.out}" + (f"; look at: {', '.join(flagged)}" if flagged else ""))
    return 1 if flagged else 0


if __name__ == "__main__":
    sys.exit(main())
