"""Trial records → tables: one row per trial (results.csv) and one row per variant (report.md)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..records import TrialRecord, latest_by_key
from ..variants import NO_CHANGES, describe_changes, reference_of

VALIDATION_METRICS = ("accuracy", "macro_f1", "weighted_f1", "macro_precision", "macro_recall",
                      "weighted_precision", "weighted_recall", "log_loss", "eval_loss")
TEST_METRICS = ("accuracy", "macro_f1", "weighted_f1", "log_loss")
# The libraries whose versions a trial stores (train.trained_versions): results.csv's
# <library>_version columns, empty where a trial stored by an older ablate has none.
TRAINED_WITH = ("ablate", "torch", "transformers")
CURVE_STATS = ("final_train_loss", "final_eval_loss", "best_eval_loss", "final_grad_norm",
               "max_grad_norm")


def _last(points: list[dict], key: str) -> float:
    values = [p[key] for p in points if p.get(key) is not None]
    return float(values[-1]) if values else math.nan


def _extreme(points: list[dict], key: str, fn: Any) -> float:
    values = [p[key] for p in points if p.get(key) is not None]
    return float(fn(values)) if values else math.nan


def trial_row(record: TrialRecord) -> dict[str, Any]:
    result = record.result
    history, evals = result.get("history", []), result.get("eval_history", [])
    row: dict[str, Any] = {
        "variant": record.variant, "seed": record.seed, "trial": record.number,
        "state": record.state, "changes": describe_changes(record.overrides),
        "value": record.value,
        "final_train_loss": _last(history, "loss"),
        "final_eval_loss": _last(evals, "loss"),
        "best_eval_loss": _extreme(evals, "loss", min),
        "final_grad_norm": _last(history, "grad_norm"),
        "max_grad_norm": _extreme(history, "grad_norm", max),
    }
    validation = result.get("validation", {})
    for metric in VALIDATION_METRICS:
        row[metric] = validation.get(metric, math.nan)
    for key, value in validation.items():  # one F1 per class: f1_<label name>
        if key.startswith("f1_"):
            row[key] = value
    test = result.get("test") or {}
    for metric in TEST_METRICS:
        row[f"test_{metric}"] = test.get(metric, math.nan)
    row |= {"best_step": result.get("best_step"), "steps": result.get("steps"),
            "runtime_s": result.get("runtime_s", math.nan),
            "pruned_at_step": record.pruned_at_step,
            "train_samples_per_s": result.get("train_samples_per_s", math.nan),
            "error": record.error or ""}
    versions = result.get("versions") or {}  # none: stored by an ablate that kept none
    row |= {f"{library}_version": versions.get(library) for library in TRAINED_WITH}
    return row


def in_study_order(records: list[TrialRecord], variant_order: Sequence[str] = (),
                   seeds: Sequence[int] = ()) -> list[TrialRecord]:
    """The newest attempt of each variant × seed (a retried failure shows its success), in the
    study's order: the variants as `variant_order` lists them (others, such as [search] trials, as
    their first trials were numbered), each one's seeds as `seeds` lists them (others after them,
    by value). Not by trial number, which `--rerun`, a failed trial tried again or a seed added
    later change: results.csv, report.json, the Diagnosis and the plots would reorder their rows,
    names and lines, and a regenerated report read as changed where no number did."""
    latest = sorted(latest_by_key(records).values(), key=lambda r: r.number)
    first = sorted(records, key=lambda r: r.number)  # a retry's later number is not its place
    names = {name: index for index, name in enumerate(dict.fromkeys(
        [*variant_order, *(r.variant for r in first)]))}
    places = {seed: index for index, seed in enumerate(dict.fromkeys(seeds))}
    return sorted(latest, key=lambda r: (names[r.variant], places.get(r.seed, len(places)),
                                         r.seed, r.number))


def rows_frame(chosen: list[TrialRecord]) -> pd.DataFrame:
    """One row per trial (results.csv), in the order given. The f1_<class> columns stand after
    eval_loss whichever trial comes first: a failed one has none, and pandas, which orders the
    columns as the rows first name them, put them last, so the header moved with it."""
    frame = pd.DataFrame([trial_row(r) for r in chosen])
    per_class = [column for column in frame.columns if column.startswith("f1_")]
    if per_class:
        rest = [column for column in frame.columns if column not in per_class]
        at = rest.index("eval_loss") + 1
        frame = frame[rest[:at] + per_class + rest[at:]]
    return frame


def trials_frame(records: list[TrialRecord], variant_order: Sequence[str] = (),
                 seeds: Sequence[int] = ()) -> pd.DataFrame:
    """One row per trial (results.csv), in_study_order."""
    return rows_frame(in_study_order(records, variant_order, seeds))


def pruned_step(row: Any) -> int | None:
    """The step a variant without a complete trial was pruned at; None when it was not pruned
    (NaN in a frame row) or has a complete trial."""
    pruned = row.get("pruned_at_step")
    if row["seeds"] or pruned is None or pruned != pruned:
        return None
    return int(pruned)


# A column's count of seeds, beside its mean: how many of the row's complete trials have it.
SEEDS_OF = "_seeds"
INTEGER_COLUMNS = ("seed", "trial", "best_step", "steps", "pruned_at_step", "seeds", "failed")


def for_programs(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy for results.csv and report.json: step and count columns are integers where set (a
    missing value, a failed or pruned trial's, otherwise turns the whole column into floats:
    `500.0`), and the baseline's changes are empty, not the report's "—"."""
    frame = frame.copy()
    for column in frame.columns:
        if column in INTEGER_COLUMNS or column.endswith(SEEDS_OF):
            frame[column] = pd.to_numeric(frame[column]).round().astype("Int64")
    if "changes" in frame.columns:
        frame["changes"] = frame["changes"].replace(NO_CHANGES, "")
    return frame


NUMERIC = CURVE_STATS + VALIDATION_METRICS + tuple(f"test_{m}" for m in TEST_METRICS) + (
    "value", "runtime_s")


def _mean_std(values: np.ndarray) -> tuple[float, float]:
    """Mean and std (ddof 1) over seeds, NaNs left out, as pandas computes them. With one seed
    or none there is nothing to average: the value itself (or NaN), and no std."""
    if len(values) < 2:
        # 0.0 + x, as numpy sums: the mean of -0.0 is 0.0
        return (0.0 + float(values[0]) if len(values) else math.nan), math.nan
    series = pd.Series(values)
    if series.count() < 2:  # one seed has it (the others lack it): one value has no spread
        return series.mean(), math.nan
    # identical values: exactly 0 (pandas' std of [0.7] * 3 is 1.4e-16, shown in report.json)
    return series.mean(), 0.0 if series.nunique() == 1 else series.std(ddof=1)


def variants_frame(trials: pd.DataFrame, metric: str, greater_is_better: bool,
                   order: list[str] | None = None) -> pd.DataFrame:
    """Mean and std over seeds of every complete trial, one row per variant, in study order."""
    if trials.empty:
        return pd.DataFrame()
    done = trials[trials["state"] == "COMPLETE"]
    rows = []
    names = order or list(dict.fromkeys(trials["variant"]))
    per_class = [c for c in trials.columns if c.startswith("f1_")]
    columns = NUMERIC + tuple(per_class)
    # Each variant's rows found once: filtering the frame per variant read every trial once per
    # variant (a 300-trial search: 300 × 300), and each column of each group cost pandas calls.
    all_rows = trials.groupby("variant", sort=False).indices
    done_rows = done.groupby("variant", sort=False).indices
    numbers = {column: done[column].astype(float).to_numpy() for column in columns}
    changes, states = trials["changes"].to_numpy(), trials["state"].to_numpy()
    pruned_steps = trials["pruned_at_step"].to_numpy()
    no_rows = np.array([], dtype=np.intp)
    for name in names:
        runs = all_rows.get(name)
        if runs is None:
            continue
        group = done_rows.get(name, no_rows)
        pruned = [step for step in pruned_steps[runs] if not pd.isna(step)]
        row: dict[str, Any] = {"variant": name, "changes": changes[runs[0]],
                               "seeds": len(group), "failed": int((states[runs] == "FAIL").sum()),
                               "pruned_at_step": int(pruned[0]) if pruned else None}
        for column in columns:
            values = numbers[column][group]
            row[column], row[f"{column}_std"] = _mean_std(values)
            row[f"{column}{SEEDS_OF}"] = int(np.count_nonzero(~np.isnan(values)))
        rows.append(row)
    return with_delta_and_best(without_full_counts(pd.DataFrame(rows), columns),
                               greater_is_better, order)


def partial_seeds(row: Any, column: str) -> int | None:
    """How many seeds a row's mean of `column` is over, where that is some but not all of its
    complete seeds (a trial without a test evaluation, a metric undefined on a seed); None
    where the mean is over all of them, or there is none."""
    counted = row.get(f"{column}{SEEDS_OF}")
    if counted is None or pd.isna(counted) or not 0 < counted < row["seeds"]:
        return None
    return int(counted)


def without_full_counts(table: pd.DataFrame, columns: tuple[str, ...]) -> pd.DataFrame:
    """The per-variant table keeping a column's seed counts only where some row's mean of it is
    over fewer seeds than the row has: a study whose trials all have every metric keeps the
    table (report.json's `variants`) it had."""
    if table.empty:
        return table
    seeds = table["seeds"].to_numpy()
    counts = [f"{column}{SEEDS_OF}" for column in columns]
    unneeded = [count for count in counts
                if not ((table[count] > 0) & (table[count].to_numpy() < seeds)).any()]
    return table.drop(columns=unneeded)


def with_delta_and_best(table: pd.DataFrame, greater_is_better: bool,
                        order: list[str] | None = None) -> pd.DataFrame:
    """The per-variant table with each variant's Δ against its reference and the best marked."""
    value_of = dict(zip(table["variant"], table["value"], strict=True))
    names = list(table["variant"])
    # Against the study's reference, from its design (`order`): a full_minus_* variant is measured
    # against `full`, and shows no Δ while `full` has no result, never one against the baseline.
    table["delta"] = [value - value_of.get(reference_of(name, order or names), math.nan)
                      for name, value in zip(names, table["value"], strict=True)]
    scores = table["value"] if greater_is_better else -table["value"]
    table["best"] = False
    if scores.notna().any():
        top = scores.max()  # the first in the study's order of those that scored it
        table.loc[next(i for i, score in scores.items() if same_score(score, top)), "best"] = True
    return table


def same_score(a: Any, b: Any) -> bool:
    """Whether two means are the same score: the same seeds' values summed in another order
    differ in their last bits (0.1 + 0.2 + 0.3 against 0.3 + 0.2 + 0.1), which must not make one
    variant the best and hide that another scored as much."""
    return bool(a == b or math.isclose(a, b, rel_tol=SAME_SCORE_REL, abs_tol=SAME_SCORE_ABS))


SAME_SCORE_REL, SAME_SCORE_ABS = 1e-9, 1e-12  # far below a metric's resolution (1 / examples)
