"""Studies: several runs with shared defaults, run (or resumed, or skipped) into one folder and compared."""
from .runner import Study, StudyRun, study
from .spec import RunSpec, StudySpec, load_study, seed_study

__all__ = ["RunSpec", "Study", "StudyRun", "StudySpec", "load_study", "seed_study", "study"]
