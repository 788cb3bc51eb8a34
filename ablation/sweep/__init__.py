"""The study: enqueue each variant × seed as an Optuna trial, work the queue, record every result.

Each trial is an enqueued Optuna trial whose user attributes say which variant and seed it is; its
value is the selection metric on validation. Trials already complete in the storage are never run
again; a variant × seed whose earlier attempts failed is tried once more per invocation; one failing
trial never stops the others.

``_study`` decides whether the stored study is the one the file describes, ``_plan`` which trials
to train (``_dry_run`` says what a run would do), ``_runner`` runs them (one process or several
workers) and records each. Tests that replace a step of a run patch ``_runner``, where the run
looks it up.
"""

from ._dry_run import dry_run
from ._plan import checked_plan, run_selection, select_trials
from ._runner import (
    INTERRUPTED,
    REPORT_LOCK,
    RunOutcome,
    Work,
    check_own_output_dir,
    make_output_dir,
    run_study,
    run_worker,
)
from ._study import (
    DATA_FINGERPRINT,
    MODEL_FINGERPRINTS,
    check_same_data,
    check_same_models,
    check_same_study,
    relative_storage_hint,
    study_elsewhere,
    study_identity,
)

__all__ = [
    "DATA_FINGERPRINT", "INTERRUPTED", "MODEL_FINGERPRINTS", "REPORT_LOCK", "RunOutcome", "Work",
    "check_own_output_dir", "check_same_data", "check_same_models", "check_same_study",
    "checked_plan", "dry_run", "make_output_dir", "relative_storage_hint", "run_selection",
    "run_study", "run_worker",
    "select_trials", "study_elsewhere", "study_identity",
]
