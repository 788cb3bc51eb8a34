"""Big studies (a 300-trial [search], many variants × seeds): `status` and `report` read the
storage a fixed number of times whatever the number of trials, and the report's tables and
importances do no work per variant that a study of one-seed variants does not need; each with the
same numbers as before. (Timings: benchmarks/report_scaling.py, never here.)"""

from __future__ import annotations

import contextlib
import io
import math
import random
from typing import Any

import numpy as np
import optuna
import pandas as pd
import pytest
from conftest import stored_study
from optuna.storages._cached_storage import _CachedStorage

from ablation.cli import main
from ablation.config import load_spec
from ablation.queue import open_study
from ablation.report.tables import NUMERIC, variants_frame, with_delta_and_best
from ablation.search import parameter_importances


def _reference_variants_frame(trials: pd.DataFrame, metric: str, greater_is_better: bool,
                              order: list[str] | None = None) -> pd.DataFrame:
    """variants_frame as it was before it grouped the trials once: one filter of the frame per
    variant and pandas' mean and std of each column. The numbers must not change."""
    if trials.empty:
        return pd.DataFrame()
    done = trials[trials["state"] == "COMPLETE"]
    rows = []
    names = order or list(dict.fromkeys(trials["variant"]))
    for name in names:
        group = done[done["variant"] == name]
        all_runs = trials[trials["variant"] == name]
        if all_runs.empty:
            continue
        pruned = all_runs["pruned_at_step"].dropna()
        row: dict[str, Any] = {"variant": name, "changes": all_runs["changes"].iloc[0],
                               "seeds": len(group), "failed": int((all_runs["state"] == "FAIL").sum()),
                               "pruned_at_step": int(pruned.iloc[0]) if len(pruned) else None}
        per_class = [c for c in trials.columns if c.startswith("f1_")]
        for column in NUMERIC + tuple(per_class):
            values = group[column].astype(float)
            row[column] = values.mean() if len(values) else math.nan
            # one value among NaNs has no spread either (it was given a std of 0.0)
            row[f"{column}_std"] = (math.nan if values.count() < 2 else 0.0
                                    if values.nunique() == 1 else values.std(ddof=1))
            row[f"{column}_seeds"] = int(values.notna().sum())
        rows.append(row)
    table = pd.DataFrame(rows)
    # a column's seed counts are kept where some mean is over some but not all of its row's seeds
    partial = [f"{c}_seeds" for c in NUMERIC + tuple(per_class)
               if ((table[f"{c}_seeds"] > 0) & (table[f"{c}_seeds"] < table["seeds"])).any()]
    table = table.drop(columns=[c for c in table.columns
                                if c.endswith("_seeds") and c not in partial])
    return with_delta_and_best(table, greater_is_better, order)


def _random_trials(rng: random.Random, variants: int) -> pd.DataFrame:
    """Trial rows as trials_frame makes them: 0 to 6 seeds a variant, failed and pruned trials,
    missing metrics, seeds that scored the same, -0.0 and infinities."""
    rows = []
    for index in range(variants):
        name = "baseline" if index == 0 else f"v{index}"
        same = rng.random() < 0.2
        for seed in range(rng.randrange(0, 7)):
            state = rng.choice(["COMPLETE"] * 6 + ["FAIL", "PRUNED", "RUNNING"])
            row: dict[str, Any] = {"variant": name, "seed": seed, "trial": len(rows),
                                   "state": state, "changes": f"learning_rate={index}"}
            for column in NUMERIC:
                row[column] = (0.7 if same else rng.choice(
                    [rng.random(), rng.random() * 1e-3, math.nan, -0.0, math.inf, 1 / 3]))
            row["value"] = None if state != "COMPLETE" else row["value"]
            row["f1_neg"], row["f1_pos"] = rng.random(), rng.choice([0.25, math.nan])
            row["pruned_at_step"] = rng.randrange(1, 50) if state == "PRUNED" else None
            rows.append(row)
    return pd.DataFrame(rows)


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")  # inf − inf in a std
@pytest.mark.parametrize("seed", range(25))
def test_the_variants_table_has_the_numbers_it_had_when_filtered_per_variant(seed):
    rng = random.Random(seed)
    trials = _random_trials(rng, rng.randrange(1, 40))
    if trials.empty:
        return
    order = ["baseline", "missing"] + [v for v in dict.fromkeys(trials["variant"]) if v != "baseline"]
    for greater in (True, False):
        ours = variants_frame(trials, "macro_f1", greater, order)
        theirs = _reference_variants_frame(trials, "macro_f1", greater, order)
        pd.testing.assert_frame_equal(ours, theirs, check_exact=True)
        # as results.csv and report.json write them, bit for bit (the sign of -0.0 included)
        assert ours.to_csv() == theirs.to_csv() and ours.to_json() == theirs.to_json()
        numbers = [c for c in ours.columns if ours[c].dtype == float]
        assert np.array_equal(np.signbit(ours[numbers].to_numpy(float)),
                              np.signbit(theirs[numbers].to_numpy(float)))


def test_one_seed_variants_cost_no_pandas_statistics(monkeypatch):
    """A 300-trial search is 300 one-seed variants: the mean of one value is that value. Each of
    their columns cost pandas calls, after a filter of the whole frame per variant."""
    calls = []
    real = pd.Series.mean
    monkeypatch.setattr(pd.Series, "mean", lambda self, *a, **k: calls.append(1) or real(self, *a, **k))
    rows = [{"variant": f"search_{n}", "seed": 42, "trial": n, "state": "COMPLETE",
             "changes": f"learning_rate={n}", "pruned_at_step": None,
             **{column: n / 1000 for column in NUMERIC}} for n in range(200)]
    table = variants_frame(pd.DataFrame(rows), "macro_f1", True)
    assert len(table) == 200 and table["value"].tolist() == [n / 1000 for n in range(200)]
    assert calls == []


def _reads(command: list[str]) -> int:
    """How often the command asks the storage for the study's trials."""
    calls = 0
    real = _CachedStorage.get_all_trials

    def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        return real(self, *args, **kwargs)

    _CachedStorage.get_all_trials = counted
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            main(command)
    finally:
        _CachedStorage.get_all_trials = real
    return calls


@pytest.mark.parametrize("search", [False, True], ids=["variants×seeds", "search"])
def test_status_and_report_read_the_trials_a_fixed_number_of_times(write_experiment, search):
    """Not once per trial: the count is the same for 4 trials and for 40 (`run --dry-run` asked
    for them once per trial of the file, to find those an earlier run left queued)."""
    counts = {}
    for trials in (4, 40):
        path = stored_study(write_experiment, trials, search)
        counts[trials] = [_reads([*command, str(path)]) for command in (
            ["status"], ["status", "--json"], ["report"], ["report", "--format", "json"],
            ["run", "--dry-run"])]
    assert counts[4] == counts[40], counts
    assert max(counts[40][:4]) <= 3, counts  # report: 3 with a search


def test_importances_are_computed_from_parameters_and_values_alone(write_experiment, monkeypatch):
    """The importances' in-memory view copies every trial it is given: each search trial's whole
    stored result (curves, predictions) was copied for them. The importances stay the same."""
    path = stored_study(write_experiment, 12, search=True)
    spec = load_spec(path, ["experiment.seeds=[42]"], need_data=False)
    study = open_study(spec, create=False)
    added: list[optuna.trial.FrozenTrial] = []
    real = optuna.Study.add_trials
    monkeypatch.setattr(optuna.Study, "add_trials",
                        lambda self, trials: added.extend(trials) or real(self, trials))
    importances = parameter_importances(study, list(spec.search.space))
    assert len(added) == 11 and all(not t.user_attrs for t in added)
    whole = optuna.create_study(directions=study.directions)
    real(whole, [t for t in study.get_trials() if t.params])
    assert importances == optuna.importance.get_param_importances(
        whole, params=list(spec.search.space))
