"""The Trainer callback of a [search] with a pruner: apart from ablation.search, which reads and
checks [search] for every command, because it subclasses transformers' TrainerCallback and only
training needs transformers (and torch)."""

from __future__ import annotations

import logging
from fractions import Fraction
from typing import Any

import optuna
from transformers import TrainerCallback

log = logging.getLogger("ablation.search")  # its warnings are the search's, named as before


class PruningCallback(TrainerCallback):
    """Reports the selection metric to the pruner at every evaluation and stops training when told.

    Raising optuna.TrialPruned inside the Trainer would skip its clean-up and lose the trial's
    record; instead training stops here, `pruned_at_step` is set, and the caller tells the trial
    PRUNED once `train()` returns. The evaluation at the last step reports but never prunes.
    """

    def __init__(self, trial: optuna.Trial, metric_key: str, batches_per_step: Fraction = Fraction(1)
                 ) -> None:
        self.trial = trial
        # The baseline's batches one of its steps trains on: the step reported (pruning_callback).
        self.batches_per_step = batches_per_step
        # The Trainer prefixes evaluation metrics: accept "macro_f1" as well as "eval_macro_f1".
        self.metric_key = metric_key if metric_key.startswith("eval_") else f"eval_{metric_key}"
        self.pruned_at_step: int | None = None
        self._warned = False
        self._reported_step: int | None = None

    def on_evaluate(self, args: Any, state: Any, control: Any, metrics: dict | None = None,
                    **kwargs: Any) -> None:
        if self.pruned_at_step is not None:
            return
        value = (metrics or {}).get(self.metric_key)
        if value is None:
            if not self._warned:  # pruning is off for this trial, training goes on
                log.warning("pruning: no %s among the evaluation metrics (%s)", self.metric_key,
                            ", ".join(sorted(metrics or {})))
                self._warned = True
            return
        step = int(state.global_step * self.batches_per_step)
        # A smaller batch than the baseline's reaches one baseline step at two evaluations: the
        # first (equal data) is the one kept. Reporting it again made Optuna print a UserWarning
        # into the run's progress lines at every other evaluation.
        if step != self._reported_step:
            self.trial.report(float(value), step=step)
            self._reported_step = step
        # The last evaluation saves no training: the trial completes with its result (pruned,
        # it lost its metrics, its place among the best and in the importances).
        if state.max_steps and state.global_step >= state.max_steps:
            return
        if self.trial.should_prune():
            self.pruned_at_step = state.global_step
            control.should_training_stop = True
