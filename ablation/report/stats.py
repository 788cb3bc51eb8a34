"""Confidence intervals and paired tests, so that a report does not read seed noise as a result.

A 0.2-point gap between two single runs is usually noise: these helpers turn per-seed scores (or the
predictions of one seed) into an estimate with a 95 % interval, and `verdict` only calls a variant
better or worse when that interval excludes 0. Every statistic comes from scipy, statsmodels or
scikit-learn; nothing here hand-rolls a test statistic or a quantile.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial

import numpy as np
from scipy import stats
from sklearn import metrics as skm
from statsmodels.stats.contingency_tables import mcnemar

# Metric differences between seeds are fractions like k/n: two that differ by less than this are the
# same number up to float rounding, and scipy's t-test would report noise (or nan) for them.
_SAME_REL, _SAME_ABS = 1e-9, 1e-12
# Below this many discordant examples McNemar's chi-square approximation is poor: use the exact test.
MCNEMAR_EXACT_BELOW = 25

_AVERAGED = {"macro_f1": (skm.f1_score, "macro"), "weighted_f1": (skm.f1_score, "weighted"),
             "macro_precision": (skm.precision_score, "macro"),
             "weighted_precision": (skm.precision_score, "weighted"),
             "macro_recall": (skm.recall_score, "macro"), "weighted_recall": (skm.recall_score, "weighted")}
_NEEDS_PROBABILITIES = ("log_loss", "eval_loss")
METRICS = ("accuracy", *_AVERAGED)


@dataclass(frozen=True)
class Interval:
    """An estimate with its confidence interval; nan bounds mean too few runs to say anything."""

    estimate: float  # mean, or the mean difference
    low: float  # CI bounds (nan when not computable)
    high: float
    p_value: float  # nan when not applicable
    n: int  # seeds (or examples for bootstrap)
    method: str  # "t" | "paired-t" | "bootstrap+mcnemar" | "bootstrap" | "none"

    @property
    def within_noise(self) -> bool:
        """True when the interval contains 0 or could not be computed: no claim either way."""
        if math.isnan(self.low) or math.isnan(self.high):
            return True
        return self.low <= 0.0 <= self.high


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be strictly between 0 and 1, got {confidence}")


def _all_same(values: np.ndarray) -> bool:
    """Identical up to float rounding: the t-test is undefined (zero variance) for such values."""
    return all(math.isclose(v, values[0], rel_tol=_SAME_REL, abs_tol=_SAME_ABS) for v in values)


def mean_ci(values: Sequence[float], confidence: float = 0.95) -> Interval:
    """Student-t interval of the mean over seeds; NaNs (failed runs) are dropped first.

    One value gives no spread, hence nan bounds and method "none". Identical values give the
    degenerate interval [mean, mean]. There is no p-value: testing a metric's mean against 0 means nothing.
    """
    _check_confidence(confidence)
    data = np.asarray(values, dtype=np.float64)
    data = data[~np.isnan(data)]
    if len(data) < 2:
        estimate = float(data[0]) if len(data) else math.nan
        return Interval(estimate, math.nan, math.nan, math.nan, len(data), "none")
    if _all_same(data):  # the first value, not np.mean: summing 0.8 three times is 0.8000000000000002
        value = float(data[0])
        return Interval(value, value, value, math.nan, len(data), "t")
    mean = float(np.mean(data))
    low, high = stats.ttest_1samp(data, 0.0).confidence_interval(confidence)
    return Interval(mean, float(low), float(high), math.nan, len(data), "t")


def paired_seed_difference(variant: Mapping[int, float], baseline: Mapping[int, float],
                           confidence: float = 0.95) -> Interval:
    """Mean of variant − baseline over the seeds both have run, with a paired-t interval and p-value.

    Pairing by seed removes the variance the two variants share (same data order, same init), so
    only seeds present in both, with a finite score in both, count. Fewer than 2 such seeds: nan
    interval and p-value, method "none". When every difference is the same number d (zero variance,
    where scipy returns nan), the interval is [d, d] and p is 0.0 if d != 0 else 1.0: the runs agree
    exactly, so the difference is as certain as the data can make it.
    """
    _check_confidence(confidence)
    seeds = sorted(s for s in variant.keys() & baseline.keys()
                   if not (math.isnan(variant[s]) or math.isnan(baseline[s])))
    ours = np.array([variant[s] for s in seeds], dtype=np.float64)
    theirs = np.array([baseline[s] for s in seeds], dtype=np.float64)
    differences = ours - theirs
    if len(seeds) < 2:
        estimate = float(differences[0]) if len(seeds) else math.nan
        return Interval(estimate, math.nan, math.nan, math.nan, len(seeds), "none")
    mean = float(np.mean(differences))
    if _all_same(differences):
        if math.isclose(mean, 0.0, abs_tol=_SAME_ABS):
            return Interval(0.0, 0.0, 0.0, 1.0, len(seeds), "paired-t")
        return Interval(mean, mean, mean, 0.0, len(seeds), "paired-t")
    result = stats.ttest_rel(ours, theirs)
    low, high = result.confidence_interval(confidence)
    return Interval(mean, float(low), float(high), float(result.pvalue), len(seeds), "paired-t")


def _mcnemar_p(variant_correct: np.ndarray, baseline_correct: np.ndarray) -> float:
    """McNemar on who got which example right: exact binomial when few examples disagree."""
    only_variant = int(np.sum(variant_correct & ~baseline_correct))
    only_baseline = int(np.sum(~variant_correct & baseline_correct))
    discordant = only_variant + only_baseline
    if discordant == 0:  # the models agree on every example: nothing to test
        return 1.0
    table = [[int(np.sum(variant_correct & baseline_correct)), only_variant],
             [only_baseline, int(np.sum(~variant_correct & ~baseline_correct))]]
    exact = discordant < MCNEMAR_EXACT_BELOW
    return float(mcnemar(table, exact=exact, correction=not exact).pvalue)


def paired_bootstrap_difference(variant_pred: Sequence[int], baseline_pred: Sequence[int],
                                labels: Sequence[int], metric: Callable[[np.ndarray, np.ndarray], float],
                                n_resamples: int = 2000, seed: int = 0,
                                confidence: float = 0.95) -> Interval:
    """metric(variant) − metric(baseline) on one test set, for a study with a single seed.

    Examples are resampled jointly (the same draw scores both models), percentile interval, fixed
    generator so a report is reproducible. The p-value is McNemar's test on per-example correctness,
    so it speaks about accuracy whatever `metric` is; the interval is the one about `metric`.
    Fewer than 2 examples: no interval (nan), McNemar still reported.
    """
    _check_confidence(confidence)
    ours, theirs, truth = (np.asarray(a) for a in (variant_pred, baseline_pred, labels))
    if not len(ours) == len(theirs) == len(truth):
        raise ValueError(f"lengths differ: variant {len(ours)}, baseline {len(theirs)}, labels {len(truth)}")
    if len(truth) == 0:
        raise ValueError("no examples to compare")
    estimate = float(metric(truth, ours) - metric(truth, theirs))
    p_value = _mcnemar_p(ours == truth, theirs == truth)
    if len(truth) < 2:
        return Interval(estimate, math.nan, math.nan, p_value, len(truth), "bootstrap+mcnemar")

    def difference(y: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
        return metric(y, a) - metric(y, b)

    result = stats.bootstrap((truth, ours, theirs), difference, n_resamples=n_resamples, vectorized=False,
                             paired=True, confidence_level=confidence, method="percentile",
                             rng=np.random.default_rng(seed))
    low, high = result.confidence_interval
    return Interval(estimate, float(low), float(high), p_value, len(truth), "bootstrap+mcnemar")


def metric_function(name: str,
                    classes: Sequence[int] | None = None) -> Callable[[np.ndarray, np.ndarray], float]:
    """The scikit-learn metric behind a report column, called as f(labels, predictions).

    `classes` pins the label set of macro/weighted averages: a bootstrap resample that misses a rare
    class would otherwise average over fewer classes than the full test set did.
    Losses need probabilities, not predicted labels: ValueError, and the caller skips the bootstrap.
    """
    if name in _NEEDS_PROBABILITIES:
        raise ValueError(f"{name} needs predicted probabilities, not labels: no bootstrap on it")
    if name == "accuracy":
        return lambda labels, predictions: float(skm.accuracy_score(labels, predictions))
    if name not in _AVERAGED:
        raise ValueError(f"unknown metric {name!r}; expected one of {', '.join(METRICS)}")
    score, average = _AVERAGED[name]
    fn = partial(score, average=average, zero_division=0,
                 labels=None if classes is None else list(classes))
    return lambda labels, predictions: float(fn(labels, predictions))


def verdict(interval: Interval, greater_is_better: bool) -> str:
    """Words for a difference: only an interval that excludes 0 makes it "better" or "worse"."""
    if math.isnan(interval.low) or math.isnan(interval.high):
        return "not enough runs"
    if interval.within_noise:
        return "within noise"
    increased = interval.low > 0.0
    return "better" if increased == greater_is_better else "worse"
