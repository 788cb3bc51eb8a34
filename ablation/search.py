"""`[search]`: a hyperparameter search over the training knobs, run as trials of the Optuna study.

The file's `[search.space]` is validated here, before anything trains: each value goes through the
knob's own check from `Recipe`, so a search can never propose what `[baseline]` would refuse. The
rest maps the section onto Optuna: a sampler, a pruner, one `suggest_*` per knob, a Trainer
callback that reports evaluations to the pruner (in `pruning.py`: it needs transformers, which
reading the section must not import), and parameter importances for the report.

    [search]
    n_trials = 20                  # total for the study, not per invocation
    sampler = "tpe"                # tpe | random | grid | cmaes
    pruner = "median"              # none | median | hyperband
    [search.space]
    learning_rate = { low = 1e-5, high = 1e-4, log = true }
    batch_size = [8, 16, 32]
    dropout = { low = 0.0, high = 0.4 }
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
import logging
import math
import warnings
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import optuna
from optuna.trial import TrialState

from . import records
from .config import KNOBS, MAX_INT, Recipe, _did_you_mean, last_set, toml_value
from .errors import AblateInputError, set_shown
from .quiet import quiet_optuna

if TYPE_CHECKING:
    from .pruning import PruningCallback

log = logging.getLogger(__name__)

SEARCH_KEYS = ("n_trials", "sampler", "pruner", "space")
SAMPLERS = ("tpe", "random", "grid", "cmaes")
PRUNERS = ("none", "median", "hyperband")
RANGE_KEYS = ("low", "high", "log", "step")
DEFAULT_SAMPLER = "tpe"
# Pruning cuts trials short on a noisy early evaluation; a study opts in rather than out.
DEFAULT_PRUNER = "none"
NOT_SEARCHABLE = ("model", "model_config")
# Search trials are named search_<Optuna number>; `--only search` selects them (no variant can
# be named "search": variants are baseline_*, full or full_*).
PREFIX = records.SEARCH_PREFIX
SELECTOR = "search"

# MedianPruner: no pruning until 5 search trials have completed (the median of fewer is noise;
# the ablation's own trials report nothing to the pruner, so they are not counted), and the
# median at a step must come from at least 3 trials that reported at that very step. Steps are
# optimizer steps (state.global_step) at evaluations; where the first evaluation falls depends on
# eval_steps, batch size and data size, which this section does not see, so n_warmup_steps stays 0.
MEDIAN_STARTUP_TRIALS = 5
MEDIAN_WARMUP_STEPS = 0
MEDIAN_MIN_TRIALS = 3
# HyperbandPruner: resources are optimizer steps; the largest budget is taken from the first
# completed trial ("auto"), and each rung keeps the best third.
HYPERBAND_MIN_RESOURCE = 1
HYPERBAND_REDUCTION_FACTOR = 3

_FIELDS = {f.name: f for f in dataclasses.fields(Recipe)}
# Knobs that take a number (the annotation's first type is int or float) can have a range.
_NUMERIC_KIND = {name: str(f.type).split(" | ")[0] for name, f in _FIELDS.items()
                 if str(f.type).split(" | ")[0] in ("int", "float")}

Kind = Literal["categorical", "float", "int"]


@dataclass(frozen=True)
class Dimension:
    """One searched knob: a list of choices, or a numeric range with optional log scale or step."""

    kind: Kind
    choices: tuple | None = None
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None

    def grid(self) -> tuple | None:
        """Every value the grid sampler visits, or None where the dimension has no finite grid."""
        if self.kind == "categorical":
            return self.choices
        if self.kind == "int" and self.step is not None:
            return tuple(range(int(self.low), int(self.high) + 1, int(self.step)))
        return None


@dataclass(frozen=True)
class SearchSpec:
    """A validated `[search]` section."""

    n_trials: int  # total for the study: a resumed study runs only what is missing
    sampler: str
    pruner: str
    space: dict[str, Dimension]


# --------------------------------------------------------------------------- parsing


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _choice_ok(value: Any) -> bool:
    """Optuna stores categorical choices as JSON scalars only."""
    return value is None or isinstance(value, (bool, int, float, str))


def _choice(raw: dict, key: str, default: str, allowed: tuple[str, ...], path: Path) -> str:
    value = raw.get(key, default)
    if value not in allowed:
        hint = _did_you_mean(value, allowed) if isinstance(value, str) else ""
        raise AblateInputError(
            f"{path}: [search] {key} = {toml_value(value)} must be one of "
            + ", ".join(repr(a) for a in allowed) + hint)
    return value


def parse_search(raw: Any, path: Path) -> SearchSpec:
    """Validate `[search]`; every bad input is one AblateInputError line naming file, key and value."""
    if not isinstance(raw, dict):
        raise AblateInputError(f"{path}: [search] must be a table with n_trials and [search.space]")
    for key in raw:
        if key not in SEARCH_KEYS:
            raise AblateInputError(
                f"{path}: unknown key {key!r} in [search]{_did_you_mean(key, SEARCH_KEYS)} "
                f"(allowed: {', '.join(SEARCH_KEYS)})")

    if "n_trials" not in raw:
        raise AblateInputError(
            f"{path}: [search] n_trials is required: the total number of trials for the study, "
            "e.g. n_trials = 20")
    n_trials = raw["n_trials"]
    if isinstance(n_trials, float) and n_trials.is_integer():
        n_trials = int(n_trials)
    # Below 2**31 as every count is: n_trials = 1e30 planned 10**30 trials (and printed the
    # float's digits, 1000000000000000019884624838656).
    if not isinstance(n_trials, int) or isinstance(n_trials, bool) or not 1 <= n_trials < MAX_INT:
        raise AblateInputError(
            f"{path}: [search] n_trials = {toml_value(raw['n_trials'])} must be an integer >= 1 "
            "and below 2**31 (the total for the study, not per run)")

    sampler = _choice(raw, "sampler", DEFAULT_SAMPLER, SAMPLERS, path)
    if sampler == "cmaes" and importlib.util.find_spec("cmaes") is None:
        raise AblateInputError(
            f"{path}: [search] sampler = 'cmaes' needs the cmaes package, which is not installed: "
            "pip install cmaes (or use sampler = \"tpe\")")
    pruner = _choice(raw, "pruner", DEFAULT_PRUNER, PRUNERS, path)

    space_raw = raw.get("space")
    if not isinstance(space_raw, dict) or not space_raw:
        raise AblateInputError(
            f"{path}: [search.space] must name at least one knob to search, e.g. "
            "learning_rate = { low = 1e-5, high = 1e-4, log = true }")
    space: dict[str, Dimension] = {}
    for key, value in space_raw.items():
        if key in NOT_SEARCHABLE:
            raise AblateInputError(
                f"{path}: [search.space] {key} cannot be searched: compare models with "
                "[variants] or [sweep] instead")
        if key not in KNOBS:
            searchable = [k for k in KNOBS if k not in NOT_SEARCHABLE]
            raise AblateInputError(
                f"{path}: [search.space] unknown knob {key!r}{_did_you_mean(key, searchable)} "
                f"(knobs: {', '.join(searchable)})")
        space[key] = _parse_dimension(key, value, path)
        if sampler == "grid" and space[key].grid() is None:
            raise AblateInputError(
                f"{path}: [search.space] {key} = {toml_value(value)}: sampler = 'grid' needs a list "
                "of values or an integer range with step, e.g. { low = 1, high = 4, step = 1 }")
    if sampler == "cmaes" and all(d.kind == "categorical" for d in space.values()):
        raise AblateInputError(
            f"{path}: [search] sampler = 'cmaes' needs at least one range in [search.space] "
            "(CMA-ES does not search lists); use sampler = \"tpe\" or \"grid\"")
    if sampler == "grid":
        # More trials than points would train a point twice (Optuna re-evaluates one at random).
        size = math.prod(len(dim.grid() or ()) for dim in space.values())
        if n_trials > size:
            raise AblateInputError(
                f"{path}: [search] n_trials = {n_trials} is more than the {size} points of the "
                f"grid (sampler = 'grid' over [search.space]); set n_trials = {size} or less")
    return SearchSpec(n_trials=n_trials, sampler=sampler, pruner=pruner, space=space)


def _parse_dimension(key: str, raw: Any, path: Path) -> Dimension:
    where = f"{path}: [search.space] {key} = {toml_value(raw)}"
    check = _FIELDS[key].metadata["check"]

    def checked(label: str, value: Any) -> Any:
        try:
            return check(value)
        except ValueError as err:
            raise AblateInputError(f"{where}: {label} {toml_value(value)} {err}") from None

    if isinstance(raw, list):
        if not raw:
            raise AblateInputError(f"{where} must be a non-empty list of values, e.g. [8, 16, 32]")
        choices = []
        for item in raw:
            value = checked("item", item)
            if not _choice_ok(value):
                raise AblateInputError(
                    f"{where}: item {item!r} cannot be a search choice: choices must be single "
                    "strings, numbers or booleans")
            if value in choices:
                raise AblateInputError(f"{where} must not repeat a value ({item!r})")
            choices.append(value)
        return Dimension(kind="categorical", choices=tuple(choices))

    if not isinstance(raw, dict):
        raise AblateInputError(
            f"{where} must be a list of values, e.g. [8, 16, 32], or a range, e.g. "
            "{ low = 1e-5, high = 1e-4, log = true }")
    for name in raw:
        if name not in RANGE_KEYS:
            raise AblateInputError(
                f"{where} has unknown key {name!r}{_did_you_mean(name, RANGE_KEYS)} "
                f"(allowed: {', '.join(RANGE_KEYS)})")
    kind = _NUMERIC_KIND.get(key)
    if kind is None:
        raise AblateInputError(f"{where} must be a list of values: {key} is not a number, so it has no range")
    if "low" not in raw or "high" not in raw:
        raise AblateInputError(f"{where} must give both low and high")
    low, high = checked("low", raw["low"]), checked("high", raw["high"])
    for label, value in (("low", low), ("high", high)):
        if not _is_number(value):  # an optional knob's ""/false means "unset", not a bound
            raise AblateInputError(f"{where}: {label} {toml_value(raw[label])} must be a number")
    if low >= high:
        raise AblateInputError(f"{where} must have low < high")
    log_scale = raw.get("log", False)
    if not isinstance(log_scale, bool):
        raise AblateInputError(f"{where}: log {toml_value(log_scale)} must be true or false")
    if log_scale and low <= 0:
        raise AblateInputError(f"{where} must have low > 0 when log = true")
    step = raw.get("step")
    if step is not None:
        if log_scale:
            raise AblateInputError(f"{where} cannot combine step with log = true; drop one of them")
        if kind == "int" and isinstance(step, float) and step.is_integer():
            step = int(step)
        if kind == "int" and (not isinstance(step, int) or isinstance(step, bool) or step < 1):
            raise AblateInputError(f"{where}: step {toml_value(raw['step'])} must be an integer >= 1")
        if kind == "float" and (not _is_number(step) or not step > 0):
            raise AblateInputError(f"{where}: step {toml_value(raw['step'])} must be a number > 0")
        if kind == "float":
            step = float(step)
        # A step that makes 1e297 points (step = 1e-300) overflowed the modulo below, a
        # decimal.InvalidOperation traceback; no search draws from more than a count can hold.
        if (Decimal(str(high)) - Decimal(str(low))) / Decimal(str(step)) >= 2**31:
            raise AblateInputError(f"{where}: step {toml_value(raw['step'])} makes more points "
                                   "between low and high than a count holds: (high - low) / step "
                                   "must be below 2**31")
        # Optuna would silently move high onto the grid; say so instead.
        if (Decimal(str(high)) - Decimal(str(low))) % Decimal(str(step)) != 0:
            raise AblateInputError(f"{where} must have high - low a multiple of step")
    if kind == "int":
        low, high = int(low), int(high)
        # Int checks may allow a lone special value (max_steps = -1) below their range: the
        # second value of the range must be valid too.
        second = low + (step or 1)
        if second <= high:
            checked("value", second)
    else:
        low, high = float(low), float(high)
    return Dimension(kind=kind, low=low, high=high, log=log_scale, step=step)


# --------------------------------------------------------------------------- Optuna objects


def trial_seed(seed: int, number: int) -> int:
    """The sampler's seed for the search trial that gets this Optuna number.

    One seed for the whole study made every process replay the same proposals: a later run (after
    raising n_trials) and every parallel worker proposed the trials of the first run again. Trial
    numbers are unique in a study, so each proposal draws afresh, while a study run from scratch by
    one process proposes the same trials again."""
    digest = hashlib.blake2b(f"ablate-search:{seed}:{number}".encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big")


def make_sampler(spec: SearchSpec, seed: int) -> optuna.samplers.BaseSampler:
    """The study's sampler with this seed (see `trial_seed` for the seed of each proposal).
    TPE's constant liar counts running trials as bad results, so that parallel workers do not
    propose the same region (Optuna's advice for distributed optimisation)."""
    if spec.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if spec.sampler == "grid":
        return _AskTellGridSampler(
            {name: list(dim.grid() or ()) for name, dim in spec.space.items()}, seed=seed)
    if spec.sampler == "cmaes":
        # CMA-ES handles only ranges; lists go to TPE rather than to Optuna's default, random.
        return optuna.samplers.CmaEsSampler(
            seed=seed, independent_sampler=optuna.samplers.TPESampler(seed=seed, constant_liar=True),
            warn_independent_sampling=False)
    return optuna.samplers.TPESampler(seed=seed, constant_liar=True)


class _AskTellGridSampler(optuna.samplers.GridSampler):
    """GridSampler calls study.stop() when the grid is used up, and that raises outside
    study.optimize(): with ask-and-tell the final study.tell() would fail after recording the trial.
    Here the runner stops instead, on n_trials or on `is_exhausted(study)`."""

    def before_trial(self, study: optuna.Study, trial: Any) -> None:
        """Optuna's, but the grid point a trial gets is always one not yet tried: Optuna gives
        trial N point N whatever, and trials another sampler made (the file said "tpe" before
        "grid") carry no grid id, so their points were proposed again (taken as repeats, not
        trained) and the study reached n_trials with points never tried."""
        if "grid_id" in trial.system_attrs or "fixed_params" in trial.system_attrs:
            return
        unvisited = self._get_unvisited_grid_ids(study)
        if trial.number in unvisited:
            grid_id = trial.number  # Optuna's choice, where that point is still to try
        else:
            grid_id = int(self._rng.rng.choice(unvisited or list(range(len(self._all_grids)))))
        study._storage.set_trial_system_attr(trial._trial_id, "search_space", self._search_space)
        study._storage.set_trial_system_attr(trial._trial_id, "grid_id", grid_id)

    def _get_unvisited_grid_ids(self, study: optuna.Study) -> list[int]:
        """The points no trial has tried, by the trials' parameters rather than Optuna's stored
        grid ids: another sampler's trials have none, and ids number the points in the order of
        the sampler's seed, which a new first seed of [experiment] seeds changes. Points of
        running trials count as tried while others are left, as in Optuna."""
        names = self._param_names
        finished, running = set(), set()
        for t in study.get_trials(deepcopy=False):
            if set(t.params) == set(names) and (t.state.is_finished()
                                                or t.state == TrialState.RUNNING):
                point = tuple(t.params[name] for name in names)
                (finished if t.state.is_finished() else running).add(point)
        points = [tuple(grid) for grid in self._all_grids]
        left = [i for i, point in enumerate(points) if point not in finished]
        return [i for i in left if points[i] not in running] or left

    def after_trial(self, study: optuna.Study, trial: Any, state: TrialState, values: Any) -> None:
        try:
            super().after_trial(study, trial, state, values)
        except RuntimeError as err:
            if "Study.stop" not in str(err):
                raise


class _SearchMedianPruner(optuna.pruners.MedianPruner):
    """MedianPruner whose startup counts the complete trials that reported intermediate values
    (the search's): Optuna's counts every complete trial, so the variants and seeds that ran
    before the search used up the startup and the first search trials were pruned on the
    median of 3."""

    def prune(self, study: optuna.Study, trial: Any) -> bool:
        reported = sum(1 for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                       if t.intermediate_values)
        return reported >= MEDIAN_STARTUP_TRIALS and super().prune(study, trial)


def make_pruner(spec: SearchSpec) -> optuna.pruners.BasePruner:
    """The study's pruner; see MEDIAN_* and HYPERBAND_* for the defaults and why."""
    if spec.pruner == "median":
        return _SearchMedianPruner(
            n_startup_trials=MEDIAN_STARTUP_TRIALS, n_warmup_steps=MEDIAN_WARMUP_STEPS,
            n_min_trials=MEDIAN_MIN_TRIALS)
    if spec.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=HYPERBAND_MIN_RESOURCE, max_resource="auto",
            reduction_factor=HYPERBAND_REDUCTION_FACTOR)
    return optuna.pruners.NopPruner()


def suggest(trial: optuna.Trial, spec: SearchSpec) -> dict[str, Any]:
    """One value per dimension, as knob overrides for the trial's recipe."""
    overrides: dict[str, Any] = {}
    for name, dim in spec.space.items():
        if dim.kind == "categorical":
            overrides[name] = trial.suggest_categorical(name, list(dim.choices or ()))
        elif dim.kind == "int":
            overrides[name] = trial.suggest_int(name, int(dim.low), int(dim.high),
                                                step=int(dim.step or 1), log=dim.log)
        else:
            overrides[name] = trial.suggest_float(name, float(dim.low), float(dim.high),
                                                  step=dim.step, log=dim.log)
    return overrides


def distributions(spec: SearchSpec) -> dict[str, optuna.distributions.BaseDistribution]:
    """The Optuna distribution `suggest` records for each knob (the same constructors)."""
    made: dict[str, optuna.distributions.BaseDistribution] = {}
    for name, dim in spec.space.items():
        if dim.kind == "categorical":
            made[name] = optuna.distributions.CategoricalDistribution(list(dim.choices or ()))
        elif dim.kind == "int":
            made[name] = optuna.distributions.IntDistribution(
                int(dim.low), int(dim.high), log=dim.log, step=int(dim.step or 1))
        else:
            made[name] = optuna.distributions.FloatDistribution(
                float(dim.low), float(dim.high), log=dim.log, step=dim.step)
    return made


PROBED_GRID = 64  # an int range with a step at most this long is checked value by value
PROBE = "[search.space] "  # a probe trial's variant: this and the knob whose value it tries


def space_set(spec: Any, knob: str) -> str | None:
    """The --set that gave [search.space] its `knob`, if one did."""
    return last_set(spec.sets, "search", "search.space", f"search.space.{knob}")


def probe_trials(spec: Any) -> list[Any]:
    """Trials that try each value a search can propose at the edges of its space (every choice,
    both ends of a range, every point of a short stepped one), one knob at a time with the
    baseline's other values. Proposals come one by one in the middle of a study, so `validate`
    and `run` check these up front: a value the machine, the data or the model cannot take
    (fp16 on a CPU, max_train_samples beyond the rows) is refused before any trial starts."""
    from .variants import TrialSpec

    probes = []
    for knob, dimension in spec.search.space.items():
        if dimension.kind == "categorical":
            values = list(dimension.choices)
        elif dimension.grid() is not None and len(dimension.grid()) <= PROBED_GRID:
            values = list(dimension.grid())
        else:
            values = [dimension.low, dimension.high]
        for value in dict.fromkeys(values):
            probes.append(TrialSpec.of(spec.baseline, f"{PROBE}{knob}",
                                       spec.experiment.seeds[0], {knob: value}))
    return probes


def run_probes(spec: Any, study: optuna.Study | None, propose: bool, retry: bool) -> list[Any]:
    """probe_trials, where a run will propose search trials (the study holds fewer than
    n_trials) or retry failed ones; none for a search that is done."""
    if spec.search is None:
        return []
    if propose and study is not None and len(search_names(study)) >= spec.search.n_trials:
        propose = False
    return probe_trials(spec) if propose or retry else []


def search_trial_name(number: int) -> str:
    """The name of the search's trial with this Optuna number (its runs and folders)."""
    return f"{PREFIX}{number}"


def search_names(study: optuna.Study) -> set[str]:
    """The search trials the study holds, by name: what counts toward n_trials. A retried trial
    keeps its name, so a failed attempt and its retry count once."""
    return {str(t.user_attrs[records.VARIANT]) for t in study.get_trials(deepcopy=False)
            if records.is_search_variant(t.user_attrs.get(records.VARIANT))}


# --------------------------------------------------------------------------- a study's search


def repeated_trial(study: optuna.Study, proposal: optuna.Trial, seed: int
                   ) -> optuna.trial.FrozenTrial | None:
    """The complete search trial that had the parameters just proposed, at this seed: training
    them again would repeat it (same recipe, same seed), so the proposal takes its result instead
    (`records.REPEAT_OF`). None for a new point."""
    superseded = set(study.user_attrs.get(records.SUPERSEDED, []))
    for earlier in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        attrs = earlier.user_attrs
        if (earlier.number != proposal.number and earlier.number not in superseded
                and records.is_search_variant(attrs.get(records.VARIANT))
                and records.REPEAT_OF not in attrs and attrs.get(records.SEED) == seed
                and earlier.params == proposal.params):
            return earlier
    return None


def _shown(dist: optuna.distributions.BaseDistribution) -> str:
    """A distribution as it is written in [search.space]."""
    if isinstance(dist, optuna.distributions.CategoricalDistribution):
        return "[" + ", ".join('""' if c is None else json.dumps(c) for c in dist.choices) + "]"
    parts = [f"low = {dist.low!r}", f"high = {dist.high!r}"]  # type: ignore[attr-defined]
    if dist.log:  # type: ignore[attr-defined]
        parts.append("log = true")
    step = dist.step  # type: ignore[attr-defined]
    if step is not None and not (isinstance(dist, optuna.distributions.IntDistribution) and step == 1):
        parts.append(f"step = {step!r}")
    return "{ " + ", ".join(parts) + " }"


def check_same_search(study: optuna.Study, spec: Any, advice: str) -> None:
    """Refuse a [search.space] other than the one the study's search trials were proposed from.

    Optuna cannot go on with other choices for a list (it raised in the middle of a run), and
    trials from different spaces would be ranked and weighed (importances) as one search. The
    space of the study's latest search trial is the one to keep; n_trials, sampler and pruner
    may change."""
    if spec.search is None:
        return
    searched = [t for t in study.get_trials(deepcopy=False)
                if records.is_search_variant(t.user_attrs.get(records.VARIANT)) and t.distributions]
    if not searched:
        return
    stored = max(searched, key=lambda t: t.number).distributions
    mine = distributions(spec.search)
    done = f"study {spec.name!r} proposed its {len(search_names(study))} search trial(s)"
    for name in [*mine, *(n for n in stored if n not in mine)]:
        old, new = stored.get(name), mine.get(name)
        if old == new:
            continue
        given = space_set(spec, name)
        # A --set that changed the space is the one to blame, not the file (which says otherwise).
        where, source = ((f"{set_shown(given)}: [search.space] {name}", "this --set")
                         if given else (f"{spec.path}: [search.space] {name}", "the file"))
        if old is None:
            raise AblateInputError(
                f"{where}: {done} without {name}; {source} now adds {name} = {_shown(new)}: remove "
                f"it to go on with that search, or {advice}")
        if new is None:
            raise AblateInputError(
                f"{where}: {done} with {name} = {_shown(old)}; {source} no longer searches it: "
                f"restore it to go on with that search, or {advice}")
        raise AblateInputError(
            f"{where}: {done} with {name} = {_shown(old)}; {source} now says {name} = "
            f"{_shown(new)}: restore it to go on with that search, or {advice}")


def selected(spec: Any, only: list[str] | None, rerun: list[str] | None,
             retry_failed: bool) -> tuple[bool, bool]:
    """(retry, propose) for a run's options: whether failed search trials are queued again, and
    whether the sampler proposes new ones. --only, --rerun and --retry-failed run what they select,
    never new search trials; `--only search` selects the search. --retry-failed retries the
    failed trials of the --only selection, else of every variant and of the search."""
    if spec.search is None:
        return False, False
    named = SELECTOR in (only or [])
    retry = named or (not only and (not rerun or retry_failed))
    propose = (named or not (only or rerun)) and not retry_failed
    return retry, propose


def retries(study: optuna.Study, spec: Any) -> list[tuple[Any, int]]:
    """Search trials whose every attempt failed (an error, Ctrl+C, a dead worker): each is tried
    once more per run, with its own parameters, like a failed variant. Returns the trials and the
    number of the failed attempt, which the retry supersedes (so it counts once)."""
    from .variants import TrialSpec

    found = []
    latest = records.latest_by_key(records.load_records(study))
    for record in latest.values():
        if records.is_search_variant(record.variant) and record.state == "FAIL":
            trial = TrialSpec.of(spec.baseline, record.variant, record.seed, record.overrides)
            found.append((trial, record.number))
    return sorted(found, key=lambda item: item[1])


def left_running(study: optuna.Study, spec: Any) -> list[Any]:
    """Search trials left RUNNING (by a killed process, or one still training elsewhere). They
    count toward n_trials, so a run that retries the search waits for them, as for a variant's:
    with heartbeats it trains again those whose heartbeats stop; without (a journal) it says
    `--rerun search_N` (see `reruns`) moves them. It used to end at once, leaving them RUNNING."""
    from .variants import TrialSpec

    if spec.search is None:
        return []
    latest = records.latest_by_key(records.load_records(study))
    return [TrialSpec.of(spec.baseline, r.variant, r.seed, r.overrides) for r in latest.values()
            if records.is_search_variant(r.variant) and r.state == "RUNNING"]


def rerun_names(spec: Any, names: list[str] | None) -> list[str]:
    """The search trials among `--rerun` names (none where the file has no [search])."""
    return [n for n in names or [] if spec.search is not None and records.is_search_variant(n)]


def reruns(study: optuna.Study | None, spec: Any, names: list[str] | None) -> list[tuple[Any, int]]:
    """`--rerun search_N`: a search trial left RUNNING in a storage without heartbeats (a journal),
    whose process was killed: nothing else will ever end it, so, as for a variant's, `--rerun`
    records it as failed and superseded (the caller, `queue.fail_abandoned`) and trains it again
    with its parameters, under its name. Returns the trials and the numbers of the attempts they
    replace. Any other search trial is refused with one line: the sampler proposes them, and with
    heartbeats a running one is alive, or trained again by a plain `run` once they stop."""
    from .queue import has_heartbeats
    from .variants import TrialSpec

    found = []
    latest = records.latest_by_key(records.load_records(study)) if study is not None else {}
    for name in dict.fromkeys(rerun_names(spec, names)):
        running = [r for r in latest.values() if r.variant == name and r.state == "RUNNING"]
        if not running:
            raise AblateInputError(
                f"--rerun {name!r}: the [search] trials of {spec.path.name} cannot be chosen one "
                f"by one (the sampler proposes them; `--rerun` takes only one left running by a "
                f"killed process on a storage without heartbeats); to train {name}'s parameters "
                "again, give them a name in [variants] (the report's results table gives its "
                "changes); `--retry-failed` retries failed search trials")
        if has_heartbeats(study):
            raise AblateInputError(
                f"--rerun {name}: trial {running[0].key} is running in another process; if that "
                f"process is gone, `{spec.command('run')}` trains it again once its heartbeats stop")
        found += [(TrialSpec.of(spec.baseline, r.variant, r.seed, r.overrides), r.number)
                  for r in running]
    return sorted(found, key=lambda item: item[1])


def pruning_callback(optuna_trial: optuna.Trial, spec: Any, trial: Any) -> PruningCallback:
    """The pruner compares trials at the same reported step: a search over batch_size at equal
    optimizer steps judged batch 8 on a quarter of the examples batch 32 had seen (every batch-8
    trial was pruned). Steps are reported in batches of the baseline's size (examples seen /
    the baseline's batch × accumulation), so trials are compared at equal data; for a trial at
    the baseline's batch they are its optimizer steps."""

    from .pruning import PruningCallback

    def per_step(recipe: Any) -> int:
        return recipe.batch_size * recipe.gradient_accumulation_steps

    return PruningCallback(optuna_trial, spec.experiment.metric,
                           Fraction(per_step(trial.recipe), per_step(spec.baseline)))


def parameter_importances(study: optuna.Study, params: list[str]) -> dict[str, float]:
    """Optuna's importances (PED-ANOVA by default) of `params` over the COMPLETE trials that have
    them all, e.g. the search's trials among the ablation's; {} when there is too little to say,
    also when they all scored the same (Optuna then splits the importance evenly, which reads as
    if every parameter mattered)."""
    if not params:
        return {}
    # A repeated proposal (records.REPEAT_OF) would weigh its point twice.
    trials = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
              if all(p in t.params for p in params) and records.REPEAT_OF not in t.user_attrs]
    if len(trials) < 2 or len({t.value for t in trials}) == 1:
        return {}
    try:
        with quiet_optuna():  # no "new study created" line
            view = optuna.create_study(directions=study.directions)  # in memory: these trials
            # Their parameters and values only: adding a trial copies it whole, and each search
            # trial's stored result (curves, predictions) took most of a 300-trial report's
            # importances.
            view.add_trials([optuna.trial.create_trial(
                params=t.params, distributions=t.distributions, value=t.value) for t in trials])
            with warnings.catch_warnings():  # "too few trials" and experimental notes: the
                warnings.simplefilter("ignore")  # caller gets numbers or {}
                importances = optuna.importance.get_param_importances(view, params=list(params))
    except Exception as err:  # any evaluator failure leaves the report without importances
        log.warning("parameter importances unavailable: %s", err)
        return {}
    return {name: float(value) for name, value in importances.items()}


def __getattr__(name: str) -> Any:
    """`search.PruningCallback`, from ablation.pruning: it subclasses transformers'
    TrainerCallback, and importing transformers (and torch) to read a [search] section cost
    `status` and `report` about 1.7 s and 375 MiB."""
    if name == "PruningCallback":
        from .pruning import PruningCallback

        return PruningCallback
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
