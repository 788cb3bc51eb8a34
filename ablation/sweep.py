"""The study: enqueue each variant × seed as an Optuna trial, work the queue, record every result.

Each trial is an enqueued Optuna trial whose user attributes say which variant and seed it is; its
value is the selection metric on validation. Trials already complete in the storage are never run
again; a variant × seed whose earlier attempts failed is tried once more per invocation; one failing
trial never stops the others.
"""

from __future__ import annotations

import json
import logging
import shutil
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna

from . import records
from .config import ExperimentSpec
from .errors import AblateInputError
from .tracking import make_tracker
from .variants import TrialSpec, expand, variant_names

log = logging.getLogger(__name__)


@dataclass
class RunOutcome:
    planned: list[TrialSpec]
    skipped: list[str] = field(default_factory=list)  # keys already complete
    completed: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # key -> error line
    report: dict[str, Any] = field(default_factory=dict)  # build_report() of the final state


def select_trials(spec: ExperimentSpec, only: list[str] | None) -> list[TrialSpec]:
    """Every trial of the file, or those of the variants named by --only."""
    trials = expand(spec)
    if not only:
        return trials
    known = variant_names(spec)
    for name in only:
        if name not in known:
            raise AblateInputError(
                f"--only {name!r}: no such variant in {spec.path.name} (variants: "
                f"{', '.join(known)})")
    return [t for t in trials if t.variant in only]


def open_study(spec: ExperimentSpec, create: bool = True) -> optuna.Study:
    """Open (or create) the study; an unusable storage URL is bad input."""
    url = spec.experiment.storage
    never_run = AblateInputError(
        f"no study {spec.name!r} in {url} yet; run `ablate run {spec.path}` first")
    try:
        if url.startswith("sqlite:///"):
            database = Path(url[len("sqlite:///"):])
            if not create and not database.exists():
                raise never_run
            database.parent.mkdir(parents=True, exist_ok=True)
        if not create:
            return optuna.load_study(study_name=spec.name, storage=url)
        return optuna.create_study(study_name=spec.name, storage=url,
                                   direction=spec.experiment.direction, load_if_exists=True)
    except AblateInputError:
        raise
    except KeyError:  # load_study: no study of that name in the storage
        raise never_run from None
    except Exception as err:  # bad URL, missing driver, unreachable server, unwritable folder
        raise AblateInputError(
            f"[experiment] storage = {url!r} cannot be opened: {_first_line(err)}") from None


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _write_study_files(spec: ExperimentSpec) -> None:
    """A copy of the experiment file and the fully resolved recipe, beside the report."""
    spec.output_dir.mkdir(parents=True, exist_ok=True)
    (spec.output_dir / "experiment.toml").write_text(spec.text, encoding="utf-8")
    (spec.output_dir / "resolved.json").write_text(
        json.dumps(spec.to_dict(), indent=2, default=str) + "\n", encoding="utf-8")


def _record_study_attrs(study: optuna.Study, spec: ExperimentSpec, label_names: list[str]) -> None:
    values = {"metric": spec.experiment.metric, "direction": spec.experiment.direction,
              "label_names": label_names, "baseline": spec.baseline.to_dict(),
              "description": spec.experiment.description}
    for key, value in values.items():
        if study.user_attrs.get(key) != value:
            study.set_user_attr(key, value)


class TrialInputs:
    """Tokenizers and tokenized data shared by the trials of one invocation: each tokenizer is
    loaded once, the data tokenized once per (tokenizer, max_length) and cached on disk; a
    variant's train-set size is a selection of that, never a new tokenization."""

    def __init__(self, spec: ExperimentSpec, splits: Any) -> None:
        self.spec, self.splits = spec, splits
        self._tokenizers: dict[tuple[str, str | None], Any] = {}
        self._tokenized: dict[tuple[str, str | None, int], Any] = {}

    def tokenizer(self, source: Any) -> Any:
        from .train import load_tokenizer

        key = (source.name, source.revision)
        if key not in self._tokenizers:
            self._tokenizers[key] = load_tokenizer(source)
        return self._tokenizers[key]

    def for_trial(self, trial: TrialSpec) -> tuple[Any, Any]:
        from .data import tokenize, with_train_size
        from .train import ModelSource

        source = ModelSource.of(self.spec, trial.recipe)
        tokenizer = self.tokenizer(source)
        key = (source.name, source.revision, trial.recipe.max_length)
        if key not in self._tokenized:
            self._tokenized[key] = tokenize(self.splits, tokenizer, trial.recipe.max_length,
                                            self.spec.output_dir / "cache")
        return tokenizer, with_train_size(self._tokenized[key], trial.recipe.max_train_samples)


def preflight(spec: ExperimentSpec, trials: list[TrialSpec], inputs: TrialInputs) -> None:
    """Checks that need the data, the models or the machine, done before the first trial trains:
    every model and tokenizer loads, config overrides exist, knobs fit the data."""
    import numpy as np

    from .train import ModelSource, apply_dropout, check_precision, class_weights, load_model_config

    label_names = inputs.splits.label_names
    configs: dict[tuple[str, str | None, str], Any] = {}  # one load per distinct model + overrides
    for trial in trials:
        where = f"{spec.path}: {trial.variant}"
        try:
            source = ModelSource.of(spec, trial.recipe)
            key = (source.name, source.revision, json.dumps(source.config, sort_keys=True))
            if key not in configs:
                configs[key] = load_model_config(source, label_names)
                inputs.tokenizer(source)
            problem = check_precision(trial.recipe.precision)
            if problem:
                raise AblateInputError(f"precision = {trial.recipe.precision!r}: {problem}")
            apply_dropout(configs[key], trial.recipe)
            class_weights(trial.recipe, np.arange(len(label_names)), len(label_names))
        except AblateInputError as err:
            raise AblateInputError(f"{where}: {err}") from None


def _enqueue_missing(study: optuna.Study, trials: list[TrialSpec]) -> tuple[list[str], int]:
    """Enqueue every selected trial without a complete or queued attempt; returns skipped keys."""
    existing = records.load_records(study)
    complete = {r.key for r in existing if r.complete}
    queued = {r.key for r in existing if r.state == "WAITING"}
    skipped, added = [], 0
    for trial in trials:
        if trial.key in complete:
            skipped.append(trial.key)
        elif trial.key not in queued:
            study.enqueue_trial({}, user_attrs=records.trial_attrs(trial))
            added += 1
    return skipped, added


def _next_queued(study: optuna.Study, wanted: set[str]) -> optuna.Trial | None:
    """Claim the next waiting trial of this invocation; None when the queue is drained."""
    waiting = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,))
    if not any(t.user_attrs.get(records.KEY) in wanted for t in waiting):
        return None
    return study.ask()  # pops the oldest WAITING trial, race-free in RDB storages


def run_study(spec: ExperimentSpec, only: list[str] | None = None,
              echo: Callable[[str], None] = print) -> RunOutcome:
    """Run every selected trial not yet complete, then write the report."""
    from .data import load_labeled_splits

    trials = select_trials(spec, only)
    outcome = RunOutcome(planned=trials)
    study = open_study(spec)
    _write_study_files(spec)
    outcome.skipped, _ = _enqueue_missing(study, trials)
    pending = [t for t in trials if t.key not in outcome.skipped]
    if outcome.skipped:
        echo(f"re-using {len(outcome.skipped)} completed trial(s): {', '.join(outcome.skipped)}")

    if pending:
        splits = load_labeled_splits(spec.data)
        for note in splits.notes:
            echo(f"data: {note}")
        echo(f"data: train {len(splits.train)}, validation {len(splits.validation)}, "
             f"test {0 if splits.test is None else len(splits.test)} rows; "
             f"labels {', '.join(splits.label_names)}")
        inputs = TrialInputs(spec, splits)
        preflight(spec, pending, inputs)
        _record_study_attrs(study, spec, splits.label_names)
        by_key = {t.key: t for t in pending}
        tracker = make_tracker(spec.tracking, spec.output_dir)
        several_seeds = len(spec.experiment.seeds) > 1

        while (optuna_trial := _next_queued(study, set(by_key))) is not None:
            key = optuna_trial.user_attrs.get(records.KEY)
            trial = by_key.pop(key, None) or _spec_from_attrs(spec, optuna_trial.user_attrs)
            tokenizer, data = inputs.for_trial(trial)
            run_name = trial.variant + (f"-s{trial.seed}" if several_seeds else "")
            echo(f"trial {optuna_trial.number} {trial.key}: {_describe(trial)}")
            _run_one(study, optuna_trial, trial, spec, data, tokenizer, tracker, run_name,
                     outcome, echo)

    from .report import build_report, write_report

    outcome.report = build_report(spec, study)
    write_report(spec, study, outcome.report)
    return outcome


def _spec_from_attrs(spec: ExperimentSpec, attrs: dict[str, Any]) -> TrialSpec:
    """A queued trial left by an earlier invocation that this one did not plan."""
    import dataclasses

    overrides = dict(attrs.get(records.OVERRIDES, {}))
    return TrialSpec(variant=attrs[records.VARIANT], seed=int(attrs[records.SEED]),
                     overrides=overrides, recipe=dataclasses.replace(spec.baseline, **overrides))


def _describe(trial: TrialSpec) -> str:
    from .variants import describe_changes

    return "baseline recipe" if not trial.overrides else describe_changes(trial.overrides)


def _run_one(study: optuna.Study, optuna_trial: optuna.Trial, trial: TrialSpec,
             spec: ExperimentSpec, data: Any, tokenizer: Any, tracker: Any, run_name: str,
             outcome: RunOutcome, echo: Callable[[str], None]) -> None:
    from .train import release_memory, train_trial

    trial_dir = spec.output_dir / "trials" / trial.key
    if trial_dir.exists():
        shutil.rmtree(trial_dir)
    trial_dir.mkdir(parents=True)
    handler = logging.FileHandler(trial_dir / "trial.log", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    tracker_config = {"study": spec.name, "variant": trial.variant, "seed": trial.seed,
                      "overrides": trial.overrides, "recipe": trial.recipe.to_dict(),
                      "data": spec.to_dict()["data"], "model": spec.to_dict()["model"],
                      "metric": spec.experiment.metric}
    try:
        log.info("trial %s (%s) starts: %s", optuna_trial.number, trial.key, tracker_config)
        try:
            tracker.start(run_name, spec.name, tracker_config)
            result = train_trial(trial, spec, data, tokenizer, trial_dir, tracker, echo)
        except KeyboardInterrupt:
            _fail(study, optuna_trial, tracker, "interrupted by the user (Ctrl+C)")
            raise
        except Exception as err:
            log.error("trial %s failed:\n%s", trial.key, traceback.format_exc())
            message = f"{type(err).__name__}: {_first_line(err)}"
            _fail(study, optuna_trial, tracker, message)
            outcome.failed[trial.key] = message
            echo(f"trial {optuna_trial.number} {trial.key} FAILED: {message} "
                 f"(log: {trial_dir / 'trial.log'})")
            release_memory()
            return
        value = result["validation"][spec.experiment.metric]
        optuna_trial.set_user_attr(records.RESULT, result)
        study.tell(optuna_trial, value)
        tracker.finish()
        outcome.completed.append(trial.key)
        log.info("trial %s complete: %s = %s", trial.key, spec.experiment.metric, value)
        echo(f"trial {optuna_trial.number} {trial.key} done: {spec.experiment.metric} "
             f"{value:.4f} in {result['runtime_s']:.0f}s")
    finally:
        root.removeHandler(handler)
        handler.close()


def _fail(study: optuna.Study, optuna_trial: optuna.Trial, tracker: Any, message: str) -> None:
    optuna_trial.set_user_attr(records.ERROR, message)
    study.tell(optuna_trial, state=optuna.trial.TrialState.FAIL)
    tracker.finish(error=message)
