"""ablate: which of my training choices actually mattered?

Data flows one way: experiment file (``config``) → trials (``variants``) → Optuna study
(``sweep``, training in ``train``) → records in the storage (``records``) → sinks (``tracking``,
``report``, the ``cli``).
"""

from .config import ExperimentSpec, Recipe, load_spec
from .errors import AblateInputError
from .queue import open_study
from .records import TrialRecord, load_records
from .report import write_report
from .sweep import run_study, run_worker
from .variants import TrialSpec, expand

__all__ = [
    "AblateInputError", "ExperimentSpec", "Recipe", "TrialRecord", "TrialSpec", "expand",
    "load_records", "load_spec", "open_study", "run_study", "run_worker", "write_report",
]
__version__ = "0.1.0"
