"""`[search]`: parsing and its one-line errors, Optuna sampler/pruner/suggest on in-memory studies,
the pruning callback on real TrainerState/TrainerControl objects, and parameter importances.

Nothing here trains a model: the objectives are toy functions of the suggested values.
"""

from __future__ import annotations

import itertools
import math
import tomllib
from fractions import Fraction
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState
from transformers.trainer_callback import (
    CallbackHandler,
    DefaultFlowCallback,
    TrainerControl,
    TrainerState,
)

from ablation import records, search
from ablation.errors import AblateInputError
from ablation.search import (
    Dimension,
    PruningCallback,
    SearchSpec,
    make_pruner,
    make_sampler,
    parameter_importances,
    parse_search,
    search_trial_name,
    suggest,
)

optuna.logging.set_verbosity(optuna.logging.WARNING)

PATH = Path("study.toml")
GOOD = """
[search]
n_trials = 20
sampler = "tpe"
pruner = "median"
[search.space]
learning_rate = { low = 1e-5, high = 1e-4, log = true }
batch_size = [8, 16, 32]
dropout = { low = 0.0, high = 0.4 }
max_length = { low = 32, high = 128, step = 32 }
warmup_ratio = { low = 0.0, high = 0.2, step = 0.05 }
lr_scheduler = ["linear", "cosine"]
"""


def good_raw() -> dict[str, Any]:
    return tomllib.loads(GOOD)["search"]


def spec_of(space: dict[str, Any], sampler: str = "tpe", pruner: str = "none") -> SearchSpec:
    n_trials = 1 if sampler == "grid" else 10  # no more than the grid's points
    return parse_search({"n_trials": n_trials, "sampler": sampler, "pruner": pruner, "space": space},
                        PATH)


def search_error(raw: Any) -> str:
    """The one-line message parse_search raises for a bad input."""
    with pytest.raises(AblateInputError) as info:
        parse_search(raw, PATH)
    message = str(info.value)
    assert "\n" not in message, message
    assert message.startswith(f"{PATH}: "), message
    return message


# --------------------------------------------------------------------------- parsing


def test_good_file_gives_dimensions_of_the_right_kind() -> None:
    spec = parse_search(good_raw(), PATH)
    assert (spec.n_trials, spec.sampler, spec.pruner) == (20, "tpe", "median")
    assert list(spec.space) == ["learning_rate", "batch_size", "dropout", "max_length", "warmup_ratio",
                                "lr_scheduler"]
    assert spec.space["learning_rate"] == Dimension(kind="float", low=1e-5, high=1e-4, log=True)
    assert spec.space["batch_size"] == Dimension(kind="categorical", choices=(8, 16, 32))
    assert spec.space["dropout"] == Dimension(kind="float", low=0.0, high=0.4)
    assert spec.space["max_length"] == Dimension(kind="int", low=32, high=128, step=32)
    assert spec.space["warmup_ratio"] == Dimension(kind="float", low=0.0, high=0.2, step=0.05)
    assert spec.space["lr_scheduler"].choices == ("linear", "cosine")
    assert isinstance(spec.space["max_length"].low, int)
    assert isinstance(spec.space["dropout"].high, float)


def test_defaults_and_int_range_of_an_int_knob() -> None:
    spec = parse_search({"n_trials": 3.0, "space": {"batch_size": {"low": 8, "high": 64, "log": True}}},
                        PATH)
    assert (spec.n_trials, spec.sampler, spec.pruner) == (3, search.DEFAULT_SAMPLER, search.DEFAULT_PRUNER)
    assert spec.space["batch_size"] == Dimension(kind="int", low=8, high=64, log=True)


def test_values_are_cleaned_by_the_knobs_own_check() -> None:
    spec = spec_of({"epochs": {"low": 1, "high": 3}, "batch_size": [8.0, 16], "dropout": ["", 0.1]})
    assert spec.space["epochs"] == Dimension(kind="float", low=1.0, high=3.0)
    assert spec.space["batch_size"].choices == (8, 16)
    assert spec.space["dropout"].choices == (None, 0.1)  # "" unsets it: the model's own dropout


def space(**dims: Any) -> dict[str, Any]:
    return {"n_trials": 5, "space": dims}


ERRORS = [
    ({"n_trial": 5, "space": {"batch_size": [8]}}, ["unknown key 'n_trial' in [search]",
                                                     "did you mean 'n_trials'", "allowed:"]),
    ({"space": {"batch_size": [8]}}, ["n_trials is required"]),
    ({"n_trials": 0, "space": {"batch_size": [8]}}, ["n_trials = 0", "must be an integer >= 1"]),
    ({"n_trials": "5", "space": {"batch_size": [8]}}, ["n_trials = '5'", "must be an integer >= 1"]),
    ({"n_trials": True, "space": {"batch_size": [8]}}, ["n_trials = true", "must be an integer >= 1"]),
    ({"n_trials": 2.5, "space": {"batch_size": [8]}}, ["n_trials = 2.5", "must be an integer >= 1"]),
    ({"n_trials": 1e30, "space": {"batch_size": [8]}}, ["n_trials = 1e30", "and below 2**31"]),
    ({"n_trials": 2**31, "space": {"batch_size": [8]}}, ["n_trials = 2147483648", "and below 2**31"]),
    ({"n_trials": 5, "sampler": "tpee", "space": {"batch_size": [8]}},
     ["sampler = 'tpee'", "must be one of 'tpe', 'random', 'grid', 'cmaes'", "did you mean 'tpe'"]),
    ({"n_trials": 5, "pruner": "medain", "space": {"batch_size": [8]}},
     ["pruner = 'medain'", "must be one of 'none', 'median', 'hyperband'", "did you mean 'median'"]),
    ({"n_trials": 5}, ["[search.space] must name at least one knob"]),
    ({"n_trials": 5, "space": {}}, ["[search.space] must name at least one knob"]),
    ({"n_trials": 5, "space": [1]}, ["[search.space] must name at least one knob"]),
    (space(learning_rat=[1e-5]), ["unknown knob 'learning_rat'", "did you mean 'learning_rate'"]),
    (space(model=["a", "b"]), ["[search.space] model cannot be searched", "[variants] or [sweep]"]),
    (space(model_config=[{"num_hidden_layers": 2}]), ["model_config cannot be searched"]),
    (space(learning_rate={"low": 1e-4, "high": 1e-5}),
     ["learning_rate = { low = 0.0001, high = 1e-5 }", "low < high"]),
    (space(dropout={"low": 0.2, "high": 0.2}), ["dropout", "low < high"]),
    (space(weight_decay={"low": 0.0, "high": 0.1, "log": True}), ["weight_decay", "low > 0 when log"]),
    (space(learning_rate={"low": 1e-5, "high": 1e-4, "setp": 1e-5}),
     ["has unknown key 'setp'", "did you mean 'step'", "allowed: low, high, log, step"]),
    (space(learning_rate={"low": 1e-5}), ["must give both low and high"]),
    (space(learning_rate={"low": 1e-5, "high": 1e-4, "log": "yes"}), ["log 'yes' must be true or false"]),
    (space(batch_size=[]), ["batch_size = []", "must be a non-empty list"]),
    (space(learning_rate=1e-4), ["learning_rate = 0.0001 must be a list of values", "or a range"]),
    # Every value goes through the knob's own check, with [baseline]'s wording.
    (space(batch_size=[8, 0]), ["batch_size = [8, 0]: item 0 must be an integer >= 1"]),
    (space(batch_size=[8, 16.5]), ["item 16.5 must be an integer >= 1"]),
    (space(lr_scheduler=["linear", "warp"]), ["item 'warp' must be a transformers scheduler name"]),
    (space(learning_rate={"low": 0, "high": 1e-4}), ["low 0 must be a finite number in (0, inf)"]),
    (space(warmup_ratio={"low": 0.0, "high": 1.0}), ["high 1.0 must be a finite number in [0, 1)"]),
    (space(dropout={"low": 0.0, "high": 1.0}), ["dropout", "high 1.0 must be a finite number in [0, 1)"]),
    (space(batch_size={"low": 8, "high": 16.5}), ["high 16.5 must be an integer >= 1"]),
    (space(dropout={"low": "", "high": 0.3}), ["low '' must be a number"]),
    (space(max_steps={"low": -1, "high": 100}), ["max_steps", "value 0 must be an integer >= 1 or -1"]),
    (space(lr_scheduler={"low": 1, "high": 2}), ["lr_scheduler is not a number, so it has no range"]),
    (space(batch_size=[8, 8]), ["must not repeat a value"]),
    (space(class_weight=["none", [1.0, 2.0]]), ["cannot be a search choice"]),
    (space(learning_rate={"low": 1e-5, "high": 1e-4, "log": True, "step": 1e-5}),
     ["cannot combine step with log"]),
    (space(max_length={"low": 32, "high": 100, "step": 32}), ["high - low a multiple of step"]),
    (space(dropout={"low": 0.0, "high": 0.3, "step": 0.25}), ["high - low a multiple of step"]),
    (space(max_length={"low": 32, "high": 128, "step": 0}), ["step 0 must be an integer >= 1"]),
    (space(dropout={"low": 0.0, "high": 0.3, "step": -0.1}), ["step -0.1 must be a number > 0"]),
    ({"n_trials": 4, "sampler": "grid", "space": {"batch_size": [8, 16], "dropout": {"low": 0.0,
                                                                                     "high": 0.2}}},
     ["[search.space] dropout", "sampler = 'grid' needs a list of values or an integer range with step"]),
    ({"n_trials": 4, "sampler": "grid", "space": {"max_length": {"low": 32, "high": 64}}},
     ["max_length", "integer range with step"]),
    ("n_trials = 5", ["[search] must be a table"]),
    # A grid is visited once: more trials would train a point twice.
    ({"n_trials": 7, "sampler": "grid", "space": {"batch_size": [8, 16],
                                                  "max_length": {"low": 32, "high": 96, "step": 32}}},
     ["[search] n_trials = 7 is more than the 6 points of the grid", "set n_trials = 6 or less"]),
]


@pytest.mark.parametrize(("raw", "words"), ERRORS, ids=[str(i) for i in range(len(ERRORS))])
def test_bad_input_is_one_line_naming_key_and_value(raw: Any, words: list[str]) -> None:
    message = search_error(raw)
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"


def test_a_word_that_only_shares_letters_gets_no_suggestion() -> None:
    message = search_error({"n_trials": 5, "sampler": "bayes", "space": {"batch_size": [8]}})
    assert "sampler = 'bayes'" in message and "must be one of 'tpe', 'random', 'grid', 'cmaes'" in message
    assert "did you mean" not in message  # 'cmaes' shares three letters; it is not what was meant


def test_range_refusals_match_baseline_checks() -> None:
    """The message carries the exact text the knob's check gives [baseline]."""
    import dataclasses

    from ablation.config import Recipe

    check = {f.name: f.metadata["check"] for f in dataclasses.fields(Recipe)}["label_smoothing"]
    with pytest.raises(ValueError) as baseline:
        check(1.5)
    message = search_error(space(label_smoothing={"low": 0.0, "high": 1.5}))
    assert message.endswith(f"high 1.5 {baseline.value}")


def test_cmaes_without_its_package_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(search.importlib.util, "find_spec",
                        lambda name, *a: None if name == "cmaes" else object())
    message = search_error({"n_trials": 5, "sampler": "cmaes",
                            "space": {"dropout": {"low": 0.0, "high": 0.3}}})
    assert "pip install cmaes" in message


def test_cmaes_with_its_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(search.importlib.util, "find_spec", lambda name, *a: object())
    message = search_error({"n_trials": 5, "sampler": "cmaes", "space": {"batch_size": [8, 16]}})
    assert "needs at least one range" in message
    spec = parse_search({"n_trials": 5, "sampler": "cmaes",
                         "space": {"dropout": {"low": 0.0, "high": 0.3}, "batch_size": [8, 16]}}, PATH)
    assert isinstance(make_sampler(spec, seed=1), optuna.samplers.CmaEsSampler)


# --------------------------------------------------------------------------- sampler, pruner, suggest


@pytest.mark.parametrize(("name", "cls"), [("tpe", optuna.samplers.TPESampler),
                                           ("random", optuna.samplers.RandomSampler),
                                           ("grid", optuna.samplers.GridSampler)])
def test_make_sampler(name: str, cls: type) -> None:
    spec = spec_of({"batch_size": [8, 16]}, sampler=name)
    assert isinstance(make_sampler(spec, seed=0), cls)


@pytest.mark.parametrize(("name", "cls"), [("none", optuna.pruners.NopPruner),
                                           ("median", optuna.pruners.MedianPruner),
                                           ("hyperband", optuna.pruners.HyperbandPruner)])
def test_make_pruner(name: str, cls: type) -> None:
    assert isinstance(make_pruner(spec_of({"batch_size": [8, 16]}, pruner=name)), cls)


@pytest.mark.parametrize("sampler", ["tpe", "random"])
def test_suggest_stays_inside_the_space(sampler: str) -> None:
    spec = parse_search(good_raw() | {"sampler": sampler}, PATH)
    study = optuna.create_study(sampler=make_sampler(spec, seed=3))
    for _ in range(15):
        trial = study.ask()
        values = suggest(trial, spec)
        assert set(values) == set(spec.space)
        assert 1e-5 <= values["learning_rate"] <= 1e-4
        assert values["batch_size"] in (8, 16, 32)
        assert 0.0 <= values["dropout"] <= 0.4
        assert values["max_length"] in (32, 64, 96, 128) and isinstance(values["max_length"], int)
        assert any(math.isclose(values["warmup_ratio"], k * 0.05) for k in range(5))
        assert values["lr_scheduler"] in ("linear", "cosine")
        assert trial.params == values
        study.tell(trial, values["learning_rate"] * 1e4 + values["dropout"])


def test_grid_covers_every_combination() -> None:
    spec = spec_of({"batch_size": [8, 16], "max_length": {"low": 32, "high": 96, "step": 32},
                    "lr_scheduler": ["linear"]}, sampler="grid")
    sampler = make_sampler(spec, seed=0)
    study = optuna.create_study(sampler=sampler)
    seen = set()
    for _ in range(6):
        trial = study.ask()
        values = suggest(trial, spec)
        seen.add((values["batch_size"], values["max_length"], values["lr_scheduler"]))
        study.tell(trial, 0.0)
    # The last tell does not raise (GridSampler's study.stop() outside optimize()).
    assert seen == set(itertools.product([8, 16], [32, 64, 96], ["linear"]))
    assert sampler.is_exhausted(study)
    assert all(t.state == TrialState.COMPLETE for t in study.trials)


@pytest.mark.parametrize("seed", range(4))
def test_a_grid_after_another_sampler_visits_the_points_it_has_not_tried(seed: int) -> None:
    """sampler changed from "tpe" to "grid" once 2 of the 4 points were tried (the README allows
    it): the grid took those trials as unvisited and proposed one of them again (taken as a
    repeat, not trained), so the study reached n_trials with a point never tried."""
    space = {"batch_size": [8, 16], "warmup_ratio": [0.0, 0.1]}
    spec = spec_of(space, sampler="grid")
    study = optuna.create_study(sampler=make_sampler(spec_of(space), seed=seed))
    study.tell(study.ask(), 0.5)  # the baseline: no parameters
    for fixed in ({"batch_size": 8, "warmup_ratio": 0.1}, {"batch_size": 8, "warmup_ratio": 0.0}):
        study.enqueue_trial(fixed)  # what the tpe sampler proposed
        trial = study.ask()
        suggest(trial, spec)
        study.tell(trial, 0.5)
    study.sampler = make_sampler(spec, seed=seed)
    seen = []
    for _ in range(2):
        trial = study.ask()
        values = suggest(trial, spec)
        seen.append((values["batch_size"], values["warmup_ratio"]))
        study.tell(trial, 0.5)
    assert sorted(seen) == [(16, 0.0), (16, 0.1)]
    assert study.sampler.is_exhausted(study)


@pytest.mark.parametrize("seeds", [(0, 1), (3, 7), (5, 2)])
def test_a_grid_reseeded_by_a_new_first_seed_still_visits_the_points_not_tried(seeds) -> None:
    """The grid's order is seeded by the first of [experiment] seeds: a file whose seeds changed
    (seeds = [42] -> [7, 42]) read the stored grid ids in another order, proposed points already
    tried and left others untried."""
    spec = spec_of({"batch_size": [8, 16], "warmup_ratio": [0.0, 0.1]}, sampler="grid")
    study = optuna.create_study(sampler=make_sampler(spec, seed=seeds[0]))
    study.tell(study.ask(), 0.5)  # the baseline: no parameters
    seen = []
    for sampler_seed in (seeds[0], seeds[0], seeds[1], seeds[1]):
        study.sampler = make_sampler(spec, seed=sampler_seed)
        trial = study.ask()
        values = suggest(trial, spec)
        seen.append((values["batch_size"], values["warmup_ratio"]))
        study.tell(trial, 0.5)
    assert sorted(seen) == sorted(itertools.product([8, 16], [0.0, 0.1]))


def test_grid_inside_optimize_still_stops_the_study() -> None:
    spec = spec_of({"batch_size": [8, 16, 32]}, sampler="grid")
    study = optuna.create_study(sampler=make_sampler(spec, seed=0))
    study.optimize(lambda trial: float(suggest(trial, spec)["batch_size"]), n_trials=10)
    assert sorted(t.params["batch_size"] for t in study.trials) == [8, 16, 32]


def test_search_trial_name() -> None:
    assert search_trial_name(0) == "search_0"
    assert search_trial_name(17) == "search_17"
    assert records.is_search_variant("search_17") and not records.is_search_variant("baseline")


def test_grid_as_large_as_n_trials_is_fine() -> None:
    spec = parse_search({"n_trials": 6, "sampler": "grid", "space": {
        "batch_size": [8, 16], "max_length": {"low": 32, "high": 96, "step": 32}}}, PATH)
    assert spec.n_trials == 6


def test_distributions_are_what_suggest_records() -> None:
    """check_same_search compares the file's space with the stored trials' distributions."""
    spec = parse_search(good_raw() | {"space": good_raw()["space"] | {
        "dropout": ["", 0.1], "batch_size": {"low": 8, "high": 64, "log": True}}}, PATH)
    study = optuna.create_study(sampler=make_sampler(spec, seed=0))
    trial = study.ask()
    suggest(trial, spec)
    assert study.trials[-1].distributions == search.distributions(spec)


@pytest.mark.parametrize(("only", "rerun", "retry_failed", "expected"), [
    ([], [], False, (True, True)),  # a plain run: retries and new proposals
    (["baseline"], [], False, (False, False)),
    ([], ["baseline"], False, (False, False)),
    ([], [], True, (True, False)),  # failed search trials too, no new ones
    (["baseline"], [], True, (False, False)),
    (["search"], [], False, (True, True)),
    (["search", "baseline"], [], True, (True, False)),
    ([], ["baseline"], True, (True, False)),
])
def test_which_options_run_the_search(only: list[str], rerun: list[str], retry_failed: bool,
                                      expected: tuple[bool, bool]) -> None:
    from types import SimpleNamespace

    spec = SimpleNamespace(search=spec_of({"batch_size": [8, 16]}))
    assert search.selected(spec, only, rerun, retry_failed) == expected
    assert search.selected(SimpleNamespace(search=None), only, rerun, retry_failed) == (False, False)


# --------------------------------------------------------------------------- pruning callback


def median_study() -> optuna.Study:
    """A maximizing study whose 5 completed trials reported 0.9 at steps 10 and 20."""
    spec = spec_of({"batch_size": [8, 16]}, pruner="median")
    study = optuna.create_study(direction="maximize", pruner=make_pruner(spec))
    for _ in range(search.MEDIAN_STARTUP_TRIALS):
        trial = study.ask()
        trial.report(0.9, step=10)
        trial.report(0.9, step=20)
        study.tell(trial, 0.9)
    return study


def evaluate(callback: PruningCallback, step: int, metrics: dict[str, float],
             max_steps: int = 0) -> TrainerControl:
    """Dispatch on_evaluate the way the Trainer does (CallbackHandler, metrics= keyword)."""
    state, control = TrainerState(), TrainerControl()
    state.global_step, state.max_steps = step, max_steps
    handler = CallbackHandler([DefaultFlowCallback, callback], None, None, None, None)
    return handler.on_evaluate(None, state, control, metrics=metrics)


def test_pruning_callback_stops_a_worse_trial() -> None:
    study = median_study()
    trial = study.ask()
    callback = PruningCallback(trial, "eval_macro_f1")
    control = evaluate(callback, 10, {"eval_macro_f1": 0.2, "eval_loss": 1.0})
    assert control.should_training_stop
    assert callback.pruned_at_step == 10
    assert study.trials[-1].intermediate_values == {10: 0.2}
    study.tell(trial, state=TrialState.PRUNED)  # what the caller does next
    assert study.trials[-1].state == TrialState.PRUNED


def test_the_median_pruner_waits_for_five_search_trials_whatever_the_variants() -> None:
    """The ablation's own trials (complete, with no intermediate values) do not count toward the
    startup: with 5 of them and 3 search trials done, the 4th search trial was pruned."""
    study = optuna.create_study(direction="maximize", pruner=make_pruner(
        spec_of({"batch_size": [8, 16]}, pruner="median")))
    for _ in range(5):  # variants, trained before the search: nothing reported
        study.tell(study.ask(), 0.9)
    for searched in range(search.MEDIAN_STARTUP_TRIALS + 1):
        callback = PruningCallback(study.ask(), "eval_macro_f1")
        control = evaluate(callback, 10, {"eval_macro_f1": 0.9 if searched < 4 else 0.2})
        assert control.should_training_stop is (searched == search.MEDIAN_STARTUP_TRIALS), searched
        if not control.should_training_stop:
            study.tell(callback.trial, 0.9 if searched < 4 else 0.2)


def test_a_trial_below_the_median_at_its_last_step_completes_rather_than_pruned() -> None:
    """Its training is done: pruned there, its result would be lost (no metrics, never the best,
    not in the importances). Before the last step the same values prune it."""
    spec = spec_of({"batch_size": [8, 16]}, pruner="median")
    study = optuna.create_study(direction="maximize", pruner=make_pruner(spec))
    for _ in range(search.MEDIAN_STARTUP_TRIALS):  # curves that rise: 0.5, then 0.9
        trial = study.ask()
        trial.report(0.5, step=10)
        trial.report(0.9, step=20)
        study.tell(trial, 0.9)
    for max_steps, pruned in ((20, None), (30, 20)):
        callback = PruningCallback(study.ask(), "eval_macro_f1")
        assert not evaluate(callback, 10, {"eval_macro_f1": 0.6}, max_steps).should_training_stop
        control = evaluate(callback, 20, {"eval_macro_f1": 0.7}, max_steps)
        assert (callback.pruned_at_step, control.should_training_stop) == (pruned, bool(pruned))
        assert study.trials[-1].intermediate_values == {10: 0.6, 20: 0.7}


def test_pruning_callback_lets_a_better_trial_train() -> None:
    study = median_study()
    callback = PruningCallback(study.ask(), "macro_f1")  # the config's name works too
    control = evaluate(callback, 10, {"eval_macro_f1": 0.95})
    assert not control.should_training_stop
    assert callback.pruned_at_step is None
    control = evaluate(callback, 20, {"eval_macro_f1": 0.97})
    assert not control.should_training_stop
    assert study.trials[-1].intermediate_values == {10: 0.95, 20: 0.97}


@pytest.mark.parametrize(("batch_size", "accumulation", "reported", "pruned"),
                         [(32, 1, 40, True), (8, 1, 10, False), (16, 2, 40, True),
                          (4, 2, 10, False)])
def test_trials_of_other_batch_sizes_are_pruned_at_equal_examples_seen(batch_size, accumulation,
                                                                       reported, pruned) -> None:
    """A search over batch_size with the median pruner: the baseline-sized trials' curves rise
    from 0.5 (10 steps) to 0.9 (40). A batch-8 trial at its step 40 has seen what they had at
    step 10: compared with their 0.9 at step 40 it was pruned, as every batch-8 trial was."""
    import dataclasses
    import types

    from ablation.config import Recipe
    from ablation.variants import TrialSpec

    baseline = Recipe(batch_size=32)
    spec = types.SimpleNamespace(experiment=types.SimpleNamespace(metric="macro_f1"),
                                 baseline=baseline)
    study = optuna.create_study(direction="maximize", pruner=make_pruner(
        spec_of({"batch_size": [8, 32]}, pruner="median")))
    for _ in range(search.MEDIAN_STARTUP_TRIALS):
        trial = study.ask()
        trial.report(0.5, step=10)
        trial.report(0.9, step=40)
        study.tell(trial, 0.9)
    recipe = dataclasses.replace(baseline, batch_size=batch_size,
                                 gradient_accumulation_steps=accumulation)
    callback = search.pruning_callback(study.ask(), spec,
                                       TrialSpec("search_5", 42, {"batch_size": batch_size}, recipe))
    assert evaluate(callback, 40, {"eval_macro_f1": 0.6}).should_training_stop is pruned
    assert study.trials[-1].intermediate_values == {reported: 0.6}
    assert callback.pruned_at_step == (40 if pruned else None)  # the trial's own steps


def test_a_smaller_batch_reports_each_baseline_step_once_without_optuna_warnings() -> None:
    """A batch-8 trial of a batch-16 baseline, evaluated at every step: its steps 2 and 3 both
    fall on the baseline's step 1. Reporting step 1 twice printed Optuna's "The reported value is
    ignored because this `step=1` is already reported" UserWarning (with its source path) into the
    run's progress lines at every other evaluation; the value of the first (equal data) stays."""
    import warnings

    study = median_study()
    callback = PruningCallback(study.ask(), "eval_macro_f1", Fraction(1, 2))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for step, value in ((1, 0.91), (2, 0.92), (3, 0.93), (4, 0.94)):
            assert not evaluate(callback, step, {"eval_macro_f1": value}).should_training_stop
    assert study.trials[-1].intermediate_values == {0: 0.91, 1: 0.92, 2: 0.94}


def test_pruning_callback_minimizing_loss_and_missing_metric() -> None:
    study = optuna.create_study(direction="minimize", pruner=make_pruner(spec_of({"batch_size": [8]},
                                                                                 pruner="median")))
    for _ in range(5):
        trial = study.ask()
        trial.report(0.3, step=5)
        study.tell(trial, 0.3)
    trial = study.ask()
    callback = PruningCallback(trial, "eval_loss")
    assert not evaluate(callback, 5, {"eval_accuracy": 0.1}).should_training_stop  # nothing to report
    assert study.trials[-1].intermediate_values == {}
    assert evaluate(callback, 5, {"eval_loss": 2.0}).should_training_stop
    assert callback.pruned_at_step == 5


# --------------------------------------------------------------------------- importances


def toy_study(n_trials: int) -> optuna.Study:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(lambda t: t.suggest_float("x", -1, 1) ** 2 * 100 + t.suggest_int("y", 0, 3) * 0.01,
                   n_trials=n_trials)
    return study


def test_importances_of_a_toy_study() -> None:
    study = toy_study(10)
    # Trials without the search's params (the ablation's own trials) are left out.
    other = study.ask()
    study.tell(other, 123.0)
    importances = parameter_importances(study, ["x", "y"])
    assert set(importances) == {"x", "y"}
    assert math.isclose(sum(importances.values()), 1.0)
    assert importances["x"] >= importances["y"]


def test_importances_with_too_little_to_say(monkeypatch: pytest.MonkeyPatch) -> None:
    assert parameter_importances(toy_study(1), ["x", "y"]) == {}
    assert parameter_importances(toy_study(5), ["x", "z"]) == {}  # no trial has z
    assert parameter_importances(toy_study(5), []) == {}
    level = optuna.create_study()  # every trial scored the same: Optuna would say 0.50 / 0.50
    level.optimize(lambda t: t.suggest_float("x", -1, 1) * 0 + t.suggest_int("y", 0, 3) * 0,
                   n_trials=6)
    assert parameter_importances(level, ["x", "y"]) == {}

    def broken(*args: Any, **kwargs: Any) -> dict[str, float]:
        raise RuntimeError("evaluator failed")

    monkeypatch.setattr(optuna.importance, "get_param_importances", broken)
    assert parameter_importances(toy_study(5), ["x", "y"]) == {}


def test_the_report_says_why_it_weighs_no_parameter_when_every_trial_scored_the_same(
        write_experiment) -> None:
    from ablation.config import load_spec
    from ablation.records import TrialRecord
    from ablation.report._write import _search_section

    path = write_experiment(extra='[search]\nn_trials = 2\n[search.space]\nbatch_size = [8, 16]\n')
    searched = [TrialRecord(number=n, variant=f"search_{n}", seed=42, overrides={"batch_size": b},
                            state="COMPLETE", value=0.5) for n, b in ((1, 8), (2, 16))]
    built = {"records": searched, "greater_is_better": True, "metric": "macro_f1",
             "importances": {}}
    text = "\n".join(_search_section(load_spec(path), built))
    assert ("**Parameter importances**: none — every complete search trial scored macro_f1 0.5000"
            in text)
    searched[1].value = 0.6
    assert "Parameter importances" not in "\n".join(_search_section(load_spec(path), built))


def test_the_best_search_trial_names_the_trials_tied_with_it(write_experiment) -> None:
    """The Best line named search_1 alone while search_2 and search_8 scored exactly the same."""
    from ablation.config import load_spec
    from ablation.records import TrialRecord
    from ablation.report._write import _search_section

    path = write_experiment(extra='[search]\nn_trials = 4\n[search.space]\nbatch_size = [8, 16]\n')
    searched = [TrialRecord(number=n, variant=f"search_{n}", seed=42, overrides={"batch_size": b},
                            state="COMPLETE", value=v)
                for n, b, v in ((1, 8, 0.7), (2, 16, 0.7), (3, 16, 0.6), (8, 8, 0.7))]
    built = {"records": searched, "greater_is_better": True, "metric": "macro_f1",
             "importances": {"batch_size": 1.0}}
    text = "\n".join(_search_section(load_spec(path), built))
    assert ("- **Best**: `search_1` — macro_f1 0.7000 with `batch_size = 8`; tied with `search_2`, "
            "`search_8` (the first in the study's order is named)\n") in text
    searched[1].value = searched[3].value = 0.65
    assert "tied" not in "\n".join(_search_section(load_spec(path), built))


def test_the_best_search_trial_s_parameters_are_toml_a_variant_can_take(write_experiment) -> None:
    """An unset dropout (`""` in the space) was written `dropout = None`: pasted into [variants],
    as the report advises, the file no longer parsed."""
    from ablation.config import load_spec
    from ablation.records import TrialRecord
    from ablation.report._write import _search_section

    path = write_experiment(extra='[search]\nn_trials = 2\n[search.space]\ndropout = ["", 0.1]\n'
                                  'class_weight = ["none", "balanced"]\n')
    best = {"dropout": None, "class_weight": "balanced"}
    searched = [TrialRecord(number=1, variant="search_1", seed=42, overrides=best,
                            state="COMPLETE", value=0.7)]
    built = {"records": searched, "greater_is_better": True, "metric": "macro_f1", "importances": {}}
    text = "\n".join(_search_section(load_spec(path), built))
    assert "with `dropout = \"\"`, `class_weight = 'balanced'`" in text
    pasted = tomllib.loads("best = { " + text.split(" with ")[1].split("\n")[0].replace("`", "") + " }")
    assert pasted["best"] == {"dropout": "", "class_weight": "balanced"}


def test_a_study_with_more_search_trials_than_the_file_s_n_trials_is_not_counted_6_of_3(
        write_experiment) -> None:
    """n_trials lowered from 6 to 3 after the search ran: the report said '6 of 3 search trials'."""
    from ablation.config import load_spec
    from ablation.records import TrialRecord
    from ablation.report._write import _search_section

    path = write_experiment(extra='[search]\nn_trials = 3\n[search.space]\nbatch_size = [8, 16]\n')
    searched = [TrialRecord(number=n, variant=f"search_{n}", seed=42, overrides={"batch_size": 8},
                            state="COMPLETE", value=0.5 + n / 100) for n in range(1, 7)]
    built = {"records": searched, "greater_is_better": True, "metric": "macro_f1", "importances": {}}
    text = "\n".join(_search_section(load_spec(path), built))
    assert "6 of 3" not in text
    assert ("6 search trials, more than the file's n_trials = 3 (it was lowered after they were "
            "made): 6 complete, 0 pruned, 0 failed") in text
    built["records"] = searched[:2]
    assert "2 of 3 search trials: 2 complete" in "\n".join(_search_section(load_spec(path), built))


def test_a_truncation_note_met_first_on_a_probe_names_the_baseline_not_the_searched_knob(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """With the baseline done, a resumed search's run checks only the [search.space] probes, and
    the baseline's max_length note read 'note: [search.space] learning_rate: max_length = 32
    truncates 16% of the training texts', as if the learning rate range cut them. The note names
    where max_length comes from: the baseline, or the probe of max_length itself."""
    import types

    import pandas as pd

    from ablation import preflight
    from ablation.config import Recipe
    from ablation.variants import TrialSpec

    monkeypatch.setattr("ablation.data.count_cut", lambda splits, tokenizer, length: (10, 64))
    splits = types.SimpleNamespace(train=pd.DataFrame({"text": ["a"] * 64}))
    baseline = Recipe(max_length=32)
    for knob, value, named in (("learning_rate", 1e-3, "baseline"),
                               ("max_length", 32, f"{search.PROBE}max_length")):
        probe = TrialSpec.of(baseline, f"{search.PROBE}{knob}", 42, {knob: value})
        note = preflight._cut_texts(probe, "m", None, splits, 512)
        assert note.startswith(f"{named}: max_length = 32 truncates 16% of the training texts")


def test_a_study_searched_by_a_file_that_no_longer_has_search_says_so_not_question_marks(
        write_experiment) -> None:
    """[search] removed from the file after its trials ran: the Search section read
    '2 of 2 search trials: ... (sampler ?, pruner ?)'."""
    from ablation.config import load_spec
    from ablation.records import TrialRecord
    from ablation.report._write import _search_section

    path = write_experiment()
    searched = [TrialRecord(number=n, variant=f"search_{n}", seed=42, overrides={"batch_size": 8},
                            state="COMPLETE", value=0.5 + n / 100) for n in (1, 2)]
    built = {"records": searched, "greater_is_better": True, "metric": "macro_f1", "importances": {}}
    text = "\n".join(_search_section(load_spec(path), built))
    assert "?" not in text
    assert ("2 search trials, made by a [search] section the file no longer has: 2 complete, "
            "0 pruned, 0 failed.") in text


def test_a_search_whose_every_trial_was_pruned_or_failed_says_there_is_no_best(
        write_experiment) -> None:
    """Every search trial pruned (or failed): the Search section counted them and then said
    nothing of a best, which read as a section cut short."""
    from ablation.config import load_spec
    from ablation.records import TrialRecord
    from ablation.report._write import _search_section

    path = write_experiment(extra='[search]\nn_trials = 3\npruner = "median"\n'
                                  '[search.space]\nbatch_size = [8, 16]\n')
    searched = [TrialRecord(number=n, variant=f"search_{n}", seed=42, overrides={"batch_size": 8},
                            state="PRUNED", value=None) for n in (1, 2, 3)]
    built = {"records": searched, "greater_is_better": True, "metric": "macro_f1", "importances": {}}
    text = "\n".join(_search_section(load_spec(path), built))
    assert ("- **Best**: none — no search trial completed, so there are no best parameters; the "
            "pruner stopped every one before its last step (pruner = \"none\" trains each to its "
            "end)") in text
    searched[2].state = "FAIL"
    text = "\n".join(_search_section(load_spec(path), built))
    assert ("the pruner stopped the 2 pruned before its last step (pruner = \"none\" trains each "
            f"to its end); `{load_spec(path).command('status')}` says why each failed") in text
    searched[0].state, searched[0].value = "COMPLETE", 0.7
    assert "**Best**: none" not in "\n".join(_search_section(load_spec(path), built))
