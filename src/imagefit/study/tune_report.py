"""A tune's page: the comparison of its trials and best run (report.compare), plus Optuna's own plots of the
search: importance.png (which keys mattered: fANOVA on the finished trials) and history.png (each trial's
validation accuracy, and the best so far). Both are Optuna's matplotlib figures, saved beside comparison.md."""
from __future__ import annotations

import logging
import warnings
from pathlib import Path

from .. import atomic

log = logging.getLogger("imagefit")


def _save(plot, study, path: Path) -> bool:
    """One of Optuna's matplotlib plots into `path`; False (and a log line) when the study cannot give it yet."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Optuna marks its matplotlib plots experimental
            ax = plot(study)
        fig = (ax.flat[0] if hasattr(ax, "flat") else ax).figure
        fig.set_size_inches(7, 4)
        fig.tight_layout()
        with atomic.atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=110, format="png")
        plt.close(fig)
        return True
    except (RuntimeError, ValueError, ZeroDivisionError) as e:  # too few finished trials, or one value throughout
        log.info("tune: no %s: %s", path.name, str(e).splitlines()[0] if str(e) else type(e).__name__)
        plt.close("all")
        return False


def optuna_section(tune_dir: Path, study) -> list[str]:
    """The page's section on the search: Optuna's importance and history plots, or why one is missing."""
    from optuna.visualization import matplotlib as vis

    lines = ["## The search (Optuna)", ""]
    if _save(vis.plot_optimization_history, study, tune_dir / "history.png"):
        lines += ["Validation accuracy of each finished trial, and the best so far:", "",
                  "![optimization history](history.png)", ""]
    if _save(vis.plot_param_importances, study, tune_dir / "importance.png"):
        lines += ["How much each searched key explains of the validation accuracy (Optuna's fANOVA on the "
                  "finished trials; with few trials, a rough guide):", "", "![parameter importances](importance.png)", ""]
    else:
        lines += ["Parameter importances need at least two finished trials that differ.", ""]
    return lines


def write_comparison(tune_dir: Path, study, run_dirs: list[Path], has_best: bool):
    """comparison.md/.html/.csv/.png of the trials and the best run, with the search's section."""
    from ..report.compare import compare

    best = study.best_trial
    notes = [f"A tune: {len(run_dirs) - has_best} trials searched by Optuna (TPE, successive halving on validation "
             f"accuracy); the best, trial {best.number} (validation accuracy {best.value:.4f}), "
             + ("was retrained with the budget left as 'best'." if has_best else "is the result (no budget was left to retrain it).")]
    return compare(run_dirs, out=tune_dir, reference="best" if has_best else None, title=f"Tune {tune_dir.name}",
                   notes=notes, sections=optuna_section(tune_dir, study))
