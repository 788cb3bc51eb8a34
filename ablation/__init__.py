"""ablate: which of my training choices actually mattered?

Data flows one way: experiment file (``config``) → trials (``variants``) → Optuna study
(``sweep``, training in ``train``) → records in the storage (``records``) → sinks (``tracking``,
``report``, the ``cli``).
"""

from .config import ExperimentSpec, Recipe, load_spec
from .errors import AblateInputError
from .records import TrialRecord, load_records
from .report import write_report
from .sweep import open_study, run_study
from .variants import TrialSpec, expand

__all__ = [
    "AblateInputError", "ExperimentSpec", "Recipe", "TrialRecord", "TrialSpec", "expand",
    "load_records", "load_spec", "open_study", "run_study", "write_report",
]
__version__ = "0.1.0"
