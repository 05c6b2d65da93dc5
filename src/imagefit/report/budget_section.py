"""The report's account of time: what the budget planner chose and why, where the seconds went, and the
diagnosis of a run that was cut short or collapsed (imagefit.evaluate.shortfalls)."""
from __future__ import annotations

from .markdown import table

BREAKDOWN_ORDER = ("start", "decode", "setup", "probe", "train", "validate", "checkpoints and loop", "test", "write")


def budget_sentences(metrics: dict) -> list[str]:
    if not metrics.get("budget_note"):
        return []
    said = [metrics["budget_note"]]
    plan = metrics.get("budget_plan") or {}
    said += [f"Re-planned: {r}." for r in plan.get("replans", [])]
    steps, wall, budget = metrics.get("steps_run"), metrics.get("wall_seconds"), metrics.get("time_budget_seconds")
    if metrics.get("stopped_by_budget"):
        said.append(f"The budget's timer stopped training after {steps} of the {plan.get('steps')} planned steps.")
    elif steps is not None and wall and budget:
        said.append(f"All {steps} planned steps ran; the command took {wall:.0f} s of the {budget:.0f} s budget "
                    f"({wall / budget:.0%}).")
    return said


def time_breakdown_section(metrics: dict) -> list[str]:
    parts = metrics.get("time_breakdown")
    if not parts:
        return []
    wall = metrics.get("wall_seconds") or sum(parts.values())
    names = [n for n in BREAKDOWN_ORDER if n in parts] + [n for n in parts if n not in BREAKDOWN_ORDER]
    rows = [[name, f"{parts[name]:.1f} s", f"{parts[name] / wall:.0%}" if wall else ""] for name in names]
    rows.append(["whole command", f"{wall:.1f} s", "100%"])
    return ["## Where the time went", ""] + table(["Part", "Seconds", "Share"], rows)


def diagnosis_lines(metrics: dict) -> list[str]:
    said = metrics.get("diagnosis") or []
    return [f"> **{s.split(':', 1)[0]}:**{s.split(':', 1)[1]}" if ":" in s else f"> {s}" for s in said] + ([""] if said else [])
