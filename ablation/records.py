"""What a trial leaves in the Optuna storage, and how it is read back.

The storage is the single source of truth: a trial's identity (variant, seed, overrides) is written
when it is enqueued, and everything it measured (curves, metrics, confusion matrices, runtimes) when
it ends. Reports, ``status`` and re-runs read only this, never the trial folders.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import optuna

from .variants import TrialSpec

if TYPE_CHECKING:
    from .config import ExperimentSpec

# Trial user attributes.
VARIANT, SEED, KEY, OVERRIDES, RESULT, ERROR, WORKER = (
    "variant", "seed", "key", "overrides", "result", "error", "worker")
IDENTITY = (VARIANT, SEED, KEY, OVERRIDES)  # what says which trial it is (set when enqueued)
# [search] trials are named search_<Optuna number> (search.py); here so that queue.py, which must
# not import search.py (it loads transformers), tells them apart too.
SEARCH_PREFIX = "search_"
# A trial's error when its process was stopped (Ctrl+C, SIGTERM): here, not in the sweep package (which
# loads torch), for `status` to tell an interrupted trial from a failed one.
INTERRUPTED = "interrupted (Ctrl+C or SIGTERM)"
# A running trial's {"step", "max_steps"}, stored by its heartbeats (queue.Heartbeat), for `status`.
PROGRESS = "progress"
# The folder of a trial's SwanLab run asked for online but logged offline (no key, no network).
TRACKED_OFFLINE = "tracked_offline"
# The folders of a trial's SwanLab runs in mode "local" (its first, each out-of-memory retry's): a
# trial whose process died (kill -9) is failed as stale by another, which ends these runs as crashed.
LOCAL_RUNS = "swanlab_local_runs"
# Study user attributes. SUPERSEDED lists trial numbers replaced by `ablate run --rerun`
# (a finished Optuna trial cannot be changed, so the study keeps the list).
SUPERSEDED = "superseded"
# A [search] proposal of the parameters an earlier complete search trial had, at its seed (TPE and
# random can draw a point again in a small space): not trained again, it is told that trial's
# value (Optuna's advice for repeated samples) and names it here (its trial number).
REPEAT_OF = "repeat_of"
STUDY_ATTRS = ("metric", "direction", "label_names", "baseline", "description", "data", "model")
# The `--set`s of the run that last queued trials, as typed, for the commands that `report` and
# `status` print to paste; its storage is left out (a password stays out of the database, and a
# command that found the study names its storage itself).
RUN_SETS = "run_sets"
STORAGE_KEY = "experiment.storage"


def is_search_variant(variant: Any) -> bool:
    """Whether a trial's variant name is a [search] trial's."""
    return str(variant or "").startswith(SEARCH_PREFIX)


def this_worker() -> str:
    """Which process trains a trial (set when it starts): `status` and a waiting run name it, so a
    trial left RUNNING by a dead process can be told from one still training elsewhere."""
    import os
    import socket

    return f"{socket.gethostname()}:{os.getpid()}"


def trial_attrs(trial: TrialSpec) -> dict[str, Any]:
    return {VARIANT: trial.variant, SEED: trial.seed, KEY: trial.key, OVERRIDES: trial.overrides}


def stopped_early(result: dict[str, Any]) -> bool:
    """Whether early stopping ended a complete trial before its last step (a pruned trial's
    steps end early too, by the pruner: it is no complete trial's)."""
    steps, max_steps = result.get("steps"), result.get("max_steps")
    return (steps is not None and max_steps is not None and steps < max_steps
            and result.get("pruned_at_step") is None)


@dataclass
class TrialRecord:
    number: int
    variant: str
    seed: int
    overrides: dict[str, Any]
    state: str  # optuna TrialState name: COMPLETE, FAIL, RUNNING, WAITING, PRUNED
    value: float | None
    result: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    started: dt.datetime | None = None
    finished: dt.datetime | None = None
    superseded: bool = False  # replaced by a re-run; kept for the record, left out of reports
    worker: str | None = None  # host:pid of the process that trained it
    repeat_of: int | None = None  # a search proposal not trained: the trial whose result it has
    progress: dict[str, int] | None = None  # the step its heartbeats last stored (PROGRESS)

    @property
    def key(self) -> str:
        return f"{self.variant}-s{self.seed}"

    @property
    def complete(self) -> bool:
        return self.state == "COMPLETE"

    @property
    def pruned_at_step(self) -> int | None:
        """The step at which the pruner stopped it; None for a trial that was not pruned."""
        step = self.result.get("pruned_at_step") if self.state == "PRUNED" else None
        return None if step is None else int(step)


def is_variant_name(variant: Any) -> bool:
    """Whether a stored variant name is one ablate gave. Today's keep to config.NAME_CHARS, but a
    [sweep] before 2026-12-05 named a variant by its value as written (a model folder `my
    model` or `中文模型` gave `baseline_model-my model`): any printable name that keeps its
    folder in trials/ (no / or \\) and its table cell whole (no |)."""
    return (isinstance(variant, str) and bool(variant) and variant.isprintable()
            and not set(variant) & set("/\\|"))


def is_ours(attrs: dict[str, Any]) -> bool:
    """Whether a trial's user attributes are the identity ablate enqueues it with (IDENTITY: a
    variant name, an integer seed, the key they make, the overrides as an object) and, where it
    has one, a result object. A trial added to the study by hand (study.enqueue_trial, study.ask
    and tell, the optuna CLI) has none of them, or some, or others of those names (a seed "abc"):
    it is no trial of the file's, and left out (not read, claimed nor queued again). Nor is one
    whose variant no ablate gave (is_variant_name): in a shared storage a variant `../../x` named
    its folder trials/../../x-s1, outside the output folder, which a worker emptied and trained
    into, and a line break or `|` broke the report's tables."""
    variant, seed = attrs.get(VARIANT), attrs.get(SEED)
    return (is_variant_name(variant)
            and isinstance(seed, int) and not isinstance(seed, bool)
            and attrs.get(KEY) == f"{variant}-s{seed}" and isinstance(attrs.get(OVERRIDES), dict)
            and isinstance(attrs.get(RESULT, {}), dict))


def to_record(trial: optuna.trial.FrozenTrial, superseded: frozenset[int] = frozenset()
              ) -> TrialRecord | None:
    attrs = trial.user_attrs
    if not is_ours(attrs):
        return None  # not one of ours (e.g. added by hand with the optuna CLI)
    return TrialRecord(
        number=trial.number, variant=attrs[VARIANT], seed=attrs[SEED],
        overrides=dict(attrs.get(OVERRIDES, {})), state=trial.state.name, value=trial.value,
        result=dict(attrs.get(RESULT, {})), error=attrs.get(ERROR),
        started=trial.datetime_start, finished=trial.datetime_complete,
        superseded=trial.number in superseded, worker=attrs.get(WORKER),
        repeat_of=attrs.get(REPEAT_OF), progress=attrs.get(PROGRESS))


def load_records(study: optuna.Study) -> list[TrialRecord]:
    """Every trial of the study that ablate enqueued, in trial-number order."""
    superseded = frozenset(study.user_attrs.get(SUPERSEDED, []))
    records = (to_record(t, superseded) for t in study.get_trials(deepcopy=False))
    return [r for r in records if r is not None]


def supersede(study: optuna.Study, numbers: list[int]) -> None:
    """Mark trials as replaced: their results stay in the storage but no longer count."""
    current = list(study.user_attrs.get(SUPERSEDED, []))
    study.set_user_attr(SUPERSEDED, sorted(set(current) | set(numbers)))


def latest_by_key(records: list[TrialRecord]) -> dict[str, TrialRecord]:
    """One record per variant × seed: the newest complete one, else the newest attempt. A search
    proposal that repeated an earlier trial's parameters is not one: that trial stands for it."""
    chosen: dict[str, TrialRecord] = {}
    for record in (r for r in records if not r.superseded and r.repeat_of is None):  # by number
        current = chosen.get(record.key)
        if current is None or record.complete or not current.complete:
            chosen[record.key] = record
    return chosen


def study_info(study: optuna.Study) -> dict[str, Any]:
    return {key: study.user_attrs.get(key) for key in STUDY_ATTRS}


def run_sets(spec: ExperimentSpec) -> list[str]:
    """What the study stores of a run's `--set`s (see RUN_SETS)."""
    from .config import set_key

    return [item for item in spec.sets if set_key(item) != STORAGE_KEY]


def with_run_sets(spec: ExperimentSpec, study: optuna.Study) -> ExperimentSpec:
    """`spec`, its commands to paste repeating the `--set`s the study was run with."""
    stored = study.user_attrs.get(RUN_SETS)
    return dataclasses.replace(spec, run_sets=tuple(stored)) if stored else spec
