"""ablate: which of my training choices actually mattered?

Data flows one way: experiment file (``config``) → trials (``variants``) → Optuna study
(``sweep``, training in ``train``) → records in the storage (``records``) → sinks (``tracking``,
``report``, the ``cli``).

The public names load on first use: importing the package (as the ``ablate`` command does before
it can handle Ctrl+C) costs nothing, and torch, transformers and the report's libraries are
imported inside the command.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "AblateInputError": ".errors", "ExperimentSpec": ".config", "Recipe": ".config",
    "load_spec": ".config", "open_study": ".queue", "TrialRecord": ".records",
    "load_records": ".records", "write_report": ".report", "run_study": ".sweep",
    "run_worker": ".sweep", "TrialSpec": ".variants", "expand": ".variants",
}

if TYPE_CHECKING:
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


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
