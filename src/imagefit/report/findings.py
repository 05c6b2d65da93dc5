"""The sentences of a comparison: what each change did, computed from the runs' numbers."""
from __future__ import annotations

from typing import Any

from ..evaluate.cells import number
from .markdown import duration, integer, literal
from .observations import GAP_MILD, GAP_NONE
from .runs import STOPPING_KEYS, STRATEGY_WORDS, Group, closest_partner, config_differences, is_transfer


# test ECE points (absolute) between the best and worst calibrated runs before the comparison calls them different
ECE_DIFFERS = 0.02


def epochs_text(x: Any) -> str:
    x = number(x)
    return "–" if x is None else (f"{int(x)}" if float(x).is_integer() else f"{x:.1f}")


def spread(a: Group, b: Group, key: str) -> str:
    """With several seeds: does the difference of means exceed the seed-to-seed spread?"""
    if a.n < 2 and b.n < 2:
        return ""
    ma, mb, sa, sb = a.mean(key), b.mean(key), a.std(key) or 0.0, b.std(key) or 0.0
    if ma is None or mb is None:
        return ""
    seeds = f"means over {a.n} and {b.n} seeds" if a.n != b.n else f"means over {a.n} seeds"
    if abs(mb - ma) > sa + sb:
        return (f" ({seeds}; the difference exceeds the seed-to-seed spread: the mean ± std ranges "
                f"{ma - sa:.3f}–{ma + sa:.3f} and {mb - sb:.3f}–{mb + sb:.3f} do not overlap)")
    return (f" ({seeds}; the difference is within the seed-to-seed spread, std {sa:.3f} and {sb:.3f}: "
            f"these seeds cannot tell it from noise)")


def raised(what: str, a: float | None, b: float | None) -> str | None:
    """'raised test accuracy from 0.360 to 0.510 (+0.150)': the verb phrase after the change's name."""
    if a is None or b is None:
        return None
    d = b - a
    if abs(d) < 0.0005:
        return f"left {what} unchanged at {b:.3f}"
    return f"{'raised' if d > 0 else 'lowered'} {what} from {a:.3f} to {b:.3f} ({d:+.3f})"


def moved(what: str, a: float | None, b: float | None) -> str | None:
    """'test loss fell from 2.410 to 1.940 (-0.470)': a clause of its own."""
    if a is None or b is None:
        return None
    d = b - a
    if abs(d) < 0.0005:
        return f"{what} stayed at {b:.3f}"
    return f"{what} {'rose' if d > 0 else 'fell'} from {a:.3f} to {b:.3f} ({d:+.3f})"


def what_changed(partner: Group, g: Group) -> tuple[str, str]:
    """(kind, phrase): what the run changes against its partner, in words, read from the configs."""
    a, b = partner.first.config, g.first.config
    diffs = config_differences(a, b)
    if partner.first.data != g.first.data and (partner.first.evaluation or g.first.evaluation):
        if not diffs and b:
            return "data", (f"the same model as {literal(partner.name)}, scored on {literal(g.first.data)} instead of "
                            f"{literal(partner.first.data)}")
        return "data", (f"{literal(g.first.metrics.get('model'))} scored on {literal(g.first.data)}, "
                        f"{literal(partner.name)} on {literal(partner.first.data)}")
    if not is_transfer(a) and is_transfer(b):
        strategy = b.get("transfer_strategy", "fine-tune")
        source = "ImageNet weights" if b.get("pretrained") else "weights from a file"
        return "transfer", (f"Transfer learning ({literal(b.get('model'))} from {source}, "
                            f"{STRATEGY_WORDS.get(strategy, strategy)})")
    if is_transfer(a) and not is_transfer(b):
        return "scratch", f"Training {literal(b.get('model'))} from scratch instead of transfer learning"
    if diffs and set(diffs) <= STOPPING_KEYS | {"epochs"} and b.get("early_stopping") and not a.get("early_stopping"):
        return "early", "Early stopping"
    if not diffs:
        return "same", "The same configuration"
    shown = [f"{k} {setting(v[0])} → {setting(v[1])}" for k, v in list(diffs.items())[:3]]
    more = f" and {len(diffs) - 3} more settings" if len(diffs) > 3 else ""
    return "other", f"Changing {', '.join(shown)}{more}"


def setting(v: Any) -> str:
    """A config value in a sentence: a string (a data set's path, a weights file) as literal markdown."""
    return "none" if v is None else str(v).lower() if isinstance(v, bool) else literal(v) if isinstance(v, str) else str(v)


def early_stopping_sentence(partner: Group, g: Group) -> str:
    es = g.first.metrics.get("early_stopping") or {}
    rule = f"patience {es.get('patience')} on {es.get('monitor')}" + (
        ", best weights restored" if es.get("restore_best") else "")
    stopped = [r for r in g.runs if r.metrics.get("stopped_early")]
    epochs = g.first.metrics.get("epochs")
    partner_runs = partner.mean("epochs_run")
    partner_ran = (f"which ran all {int(partner_runs)}" if partner_runs is not None and partner_runs == epochs
                   else f"which ran {epochs_text(partner_runs)}")
    acc = raised("test accuracy", partner.mean("test_accuracy"), g.mean("test_accuracy"))
    loss = moved("test loss", partner.mean("test_loss"), g.mean("test_loss"))
    wp, wg = partner.mean("wall_seconds"), g.mean("wall_seconds")
    wall = f"; wall time went from {duration(wp)} to {duration(wg)}{cache_note(partner, g)}" if wp and wg else ""
    if g.n == 1:
        r = g.first
        if stopped and r.metrics.get("epochs_saved"):
            head = (f"Early stopping ({rule}) ended {literal(g.name)} at epoch {r.metrics.get('stop_epoch')} of {epochs}, "
                    f"saving {r.metrics.get('epochs_saved')} epochs (best epoch {r.metrics.get('best_epoch')})")
        elif stopped:
            head = (f"Early stopping ({rule}) fired in {literal(g.name)} only at its last epoch, {r.metrics.get('stop_epoch')} "
                    f"of {epochs}, saving no epochs (best epoch {r.metrics.get('best_epoch')})")
        else:
            best, ran = r.metrics.get("best_epoch"), r.metrics.get("epochs_run")
            why = ("validation loss was still improving at the last epoch" if best == ran and best is not None
                   else f"the best epoch was {best}, but patience never ran out")
            head = f"Early stopping ({rule}) did not fire in {literal(g.name)}: all {ran} epochs ran ({why})"
    else:
        if stopped:
            at = ", ".join(str(r.metrics.get("stop_epoch")) for r in stopped)
            head = (f"Early stopping ({rule}) ended {len(stopped)} of {g.n} seeds of {literal(g.name)} early (at epochs {at} "
                    f"of {epochs}; {g.mean('epochs_run'):.1f} epochs run on average)")
        else:
            head = f"Early stopping ({rule}) did not fire in any of the {g.n} seeds of {literal(g.name)}"
    if not acc:
        return head + "."
    return (f"{head}. Against {literal(partner.name)}, {partner_ran}, it {acc}" + spread(partner, g, "test_accuracy")
            + (f", and {loss}" if loss else "") + wall + ".")


def comparison_sentence(partner: Group, g: Group) -> str:
    kind, phrase = what_changed(partner, g)
    if kind == "early":
        return early_stopping_sentence(partner, g)
    if kind == "data":  # another data set is not a change that "raised" anything: say how the numbers moved
        said = [moved(what, partner.mean(key), g.mean(key)) for what, key in
                (("test accuracy", "test_accuracy"), ("test loss", "test_loss"), ("macro F1", "f1_macro"))]
        return f"{literal(g.name)}: {phrase}: " + "; ".join(x for x in said if x) + "."
    acc = raised("test accuracy", partner.mean("test_accuracy"), g.mean("test_accuracy"))
    loss = moved("test loss", partner.mean("test_loss"), g.mean("test_loss"))
    f1 = moved("macro F1", partner.mean("f1_macro"), g.mean("f1_macro"))
    subject = f"{literal(g.name)} against {literal(partner.name)}: {phrase[0].lower()}{phrase[1:]}"
    if kind == "same":
        subject = f"{literal(g.name)}, with {literal(partner.name)}'s configuration,"
        if g.first.evaluation or partner.first.evaluation:
            subject = f"{literal(g.name)}, the same model on the same data as {literal(partner.name)},"
    text = f"{subject} {acc or 'could not be compared on test accuracy'}" + spread(partner, g, "test_accuracy")
    extras = [s for s in (loss, f1) if s]
    if extras:
        text += "; " + " and ".join(extras)
    tp, tg = partner.mean("trainable_params"), g.mean("trainable_params")
    wp, wg = partner.mean("wall_seconds"), g.mean("wall_seconds")
    if kind in ("transfer", "scratch") and tp and tg and tp != tg:
        text += f". It trained {integer(tg)} parameters (against {integer(tp)})"
        if wp and wg:
            text += f" in {duration(wg)} of wall time (against {duration(wp)}){cache_note(partner, g)}"
    size, seen = number(g.first.metrics.get("image_size")), number(g.first.metrics.get("input_size"))
    if kind == "transfer" and size and seen and seen >= 2 * size:
        text += f"; the pretrained network saw the {int(size)} px images upscaled to {int(seen)} px"
    return text + "."


def overfitting_sentence(groups: list[Group]) -> str | None:
    parts = []
    for g in groups:
        gap = g.mean("train_val_gap")
        if gap is None:
            continue
        verdict = "no sign of overfitting" if gap < GAP_NONE else "mild overfitting" if gap < GAP_MILD else "heavy overfitting"
        parts.append(f"{literal(g.name)} {gap:.3f} ({verdict})")
    if not parts:
        return None
    worst = max((g for g in groups if g.mean("train_val_gap") is not None), key=lambda g: g.mean("train_val_gap"))
    text = "Train minus validation accuracy at the last epoch: " + "; ".join(parts)
    if len(parts) > 1 and worst.mean("train_val_gap") >= GAP_NONE:
        text += f". The run that overfits most is {literal(worst.name)}"
    return text + "."


def best_sentence(groups: list[Group]) -> str | None:
    # multi-label runs are ranked on mean average precision (their accuracy is subset accuracy)
    key, what = ("test_map", "test mAP") if all(g.mean("test_map") is not None for g in groups) else \
        ("test_accuracy", "test accuracy")
    scored = [g for g in groups if g.mean(key) is not None]
    if len(scored) < 2:
        return None
    best_acc = max(scored, key=lambda g: g.mean(key))
    best_loss = min((g for g in scored if g.mean("test_loss") is not None), key=lambda g: g.mean("test_loss"))
    mean = "mean " if any(g.n > 1 for g in groups) else ""
    text = f"The highest {mean}{what} is {literal(best_acc.name)}'s {best_acc.mean(key):.3f}"
    if best_loss is best_acc:
        text += f", which also has the lowest {mean}test loss ({best_loss.mean('test_loss'):.3f})"
    else:
        text += f"; the lowest {mean}test loss is {literal(best_loss.name)}'s {best_loss.mean('test_loss'):.3f}"
    timed = [g for g in groups if g.mean("wall_seconds") is not None]
    if len(timed) >= 2:
        fast = min(timed, key=lambda g: g.mean("wall_seconds"))
        slow = max(timed, key=lambda g: g.mean("wall_seconds"))
        if duration(fast.mean("wall_seconds")) == duration(slow.mean("wall_seconds")):
            text += f". Every run took about {duration(fast.mean('wall_seconds'))} of wall time"
        else:
            text += (f". Wall time ranged from {duration(fast.mean('wall_seconds'))} ({literal(fast.name)}) to "
                     f"{duration(slow.mean('wall_seconds'))} ({literal(slow.name)})")
    return text + "."


def calibration_sentence(groups: list[Group]) -> str | None:
    """Whether the runs' confidence tracks their accuracy equally well, and what temperature scaling leaves of it."""
    scored = [g for g in groups if g.mean("test_ece") is not None]
    if len(scored) < 2:
        return None
    best = min(scored, key=lambda g: g.mean("test_ece"))
    worst = max(scored, key=lambda g: g.mean("test_ece"))
    lo, hi = best.mean("test_ece"), worst.mean("test_ece")
    if hi - lo < ECE_DIFFERS:
        return (f"Calibration is similar across the runs: test expected calibration error (15 bins) from {lo:.3f} "
                f"to {hi:.3f}.")
    text = (f"Calibration differs: {literal(worst.name)}'s confidence strays furthest from its accuracy (test expected "
            f"calibration error {hi:.3f}, 15 bins), {literal(best.name)}'s least ({lo:.3f})")
    after_worst, after_best = worst.mean("test_ece_scaled"), best.mean("test_ece_scaled")
    if after_worst is not None and after_best is not None:
        text += (f"; temperature scaling fitted on validation brings them to {after_worst:.3f} and {after_best:.3f}")
        if abs(after_worst - after_best) < ECE_DIFFERS:
            text += ", so the difference was one of overall confidence, which the saved temperature corrects"
    elif after_worst is None:
        text += f"; {literal(worst.name)} had no validation split to fit a temperature on"
    return text + "."


def noise_sentence(groups: list[Group]) -> str:
    counts = sorted({g.n for g in groups})
    if counts == [1]:
        return ("Each run used a single seed, so every difference above mixes the effect of the change with "
                "seed-to-seed noise that one run cannot measure; repeat the runs with several seeds "
                "(`imagefit study ... --seeds 3`) to see the spread.")
    seeds = sorted({str(r.seed) for g in groups for r in g.runs})
    n = "/".join(str(c) for c in counts)
    return (f"Numbers are means over {n} seeds ({', '.join(seeds)}); ± is the standard deviation between seeds. "
            "A difference counts as larger than the spread when the mean ± std ranges do not overlap.")


def per_class_changes(reference: Group, g: Group) -> list[tuple[str, float, float, float]]:
    """(class, reference F1, run F1, change) for the classes both have, largest gain first."""
    ref, run = reference.class_f1(), g.class_f1()
    rows = [(c, ref[c], run[c], run[c] - ref[c]) for c in ref if c in run]
    return sorted(rows, key=lambda r: (-r[3], r[0]))


def per_class_sentence(reference: Group, g: Group) -> str | None:
    rows = per_class_changes(reference, g)
    if not rows:
        return None
    up = [r for r in rows if r[3] > 0.0005]
    down = [r for r in rows if r[3] < -0.0005]
    text = (f"Against {literal(reference.name)}, {literal(g.name)}'s F1 rose on {len(up)} of {len(rows)} classes and "
            f"fell on {len(down)}")
    if up:
        text += f"; the largest gain is {literal(up[0][0])} ({up[0][3]:+.3f}, {up[0][1]:.3f} → {up[0][2]:.3f})"
    if down:
        text += f"; the largest loss is {literal(down[-1][0])} ({down[-1][3]:+.3f}, {down[-1][1]:.3f} → {down[-1][2]:.3f})"
    return text + "."



def cache_note(a: Group, b: Group) -> str:
    """Why two wall times differ when one run read the frozen network's pass from the cache and the other made it."""
    flags = [a.first.metrics.get("frozen_inputs_from_cache"), b.first.metrics.get("frozen_inputs_from_cache")]
    if None in flags or flags[0] == flags[1]:
        return ""
    cached, computed = (a, b) if flags[0] else (b, a)
    return (f", but {literal(cached.name)} read the frozen network's features from the cache while {literal(computed.name)} "
            "computed them, so most of that difference is the cache, not the change")



def sentences(groups: list[Group], reference: Group) -> list[str]:
    said = []
    for i, g in enumerate(groups):
        if g is reference:
            continue
        partner = closest_partner(groups, i, reference) if i > 0 else reference
        said.append(comparison_sentence(partner, g))
    for s in (best_sentence(groups), overfitting_sentence(groups), calibration_sentence(groups)):
        if s:
            said.append(s)
    for g in groups:
        for r in g.runs:
            if r.metrics.get("interrupted"):
                said.append(f"{literal(r.label)} was interrupted after {r.metrics.get('epochs_run')} of "
                            f"{r.metrics.get('epochs')} epochs: its numbers describe an unfinished model.")
    said.append(noise_sentence(groups))
    return said

