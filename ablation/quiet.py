"""The libraries' own chatter, off for one call of the Python API (`run_study`, `run_worker`).

The `ablate` command silences it for the whole process (cli._quiet_libraries). From a notebook,
each trial printed transformers' LOAD REPORT table (with terminal bold codes) and its "Loading
weights" and "Writing model shards" bars, and Optuna its "[I ...] A new study created" line,
between ablate's own lines, which say what matters of them (notes on weights that start
random). The settings are the user's again when the call ends.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

# The variables a user sets to see more of them (README): where set, theirs stands. The `ablate`
# command sets each one the user did not (cli.QUIET_LIBRARIES_ENVIRONMENT).
VERBOSITY, PROGRESS_BARS = "TRANSFORMERS_VERBOSITY", "HF_HUB_DISABLE_PROGRESS_BARS"


def quiet_transformers() -> None:
    """transformers at errors only and without progress bars, or as TRANSFORMERS_VERBOSITY and
    HF_HUB_DISABLE_PROGRESS_BARS say where they are set (by the user, or by the command to its
    quiet defaults). Their values are applied, not merely left: a process in which the command ran
    keeps the command's, and the next run_study is quiet all the same."""
    import transformers

    level = transformers.utils.logging.log_levels.get(os.environ.get(VERBOSITY, "").lower())
    transformers.logging.set_verbosity(transformers.logging.ERROR if level is None else level)
    bars = os.environ.get(PROGRESS_BARS)
    if bars is not None and bars.strip().upper() in ("0", "OFF", "NO", "FALSE"):
        transformers.utils.logging.enable_progress_bar()
    else:
        transformers.utils.logging.disable_progress_bar()


@contextlib.contextmanager
def quiet_optuna() -> Iterator[None]:
    """Optuna at warnings at most for the block: no "[I ...] A new study created" or "Using an
    existing study" line, with its colour codes, from `open_study` in a notebook cell."""
    import optuna

    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(max(verbosity, optuna.logging.WARNING))
    try:
        yield
    finally:
        optuna.logging.set_verbosity(verbosity)


@contextlib.contextmanager
def quiet_libraries() -> Iterator[None]:
    """transformers at errors only and without progress bars, Optuna at warnings, for the call;
    not where the user set TRANSFORMERS_VERBOSITY or HF_HUB_DISABLE_PROGRESS_BARS themselves
    (`TRANSFORMERS_VERBOSITY=info ablate run ...` showed nothing of transformers)."""
    import transformers

    verbosity = transformers.logging.get_verbosity()
    bars = transformers.utils.logging.is_progress_bar_enabled()
    quiet_transformers()
    try:
        with quiet_optuna():
            yield
    finally:
        transformers.logging.set_verbosity(verbosity)
        if bars:
            transformers.utils.logging.enable_progress_bar()
