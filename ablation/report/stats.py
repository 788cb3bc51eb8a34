"""Confidence intervals and paired tests, so that a report does not read seed noise as a result.

A 0.2-point gap between two single runs is usually noise: these helpers turn per-seed scores (or the
predictions of one seed) into an estimate with a 95 % interval, and `verdict` only calls a variant
better or worse when that interval excludes 0. Every test statistic, interval and quantile comes
from scipy or statsmodels, and every metric from scikit-learn; the one exception is a bootstrap's
1,000 resamples, scored from their confusion matrices in one vectorised pass (`LabelMetric.on_confusions`,
tested equal to scikit-learn on every resample), since 2,000 scikit-learn calls per comparison took
seconds of every report.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats
from sklearn import metrics as skm
from statsmodels.stats.contingency_tables import mcnemar

# Metric differences between seeds are fractions like k/n: two that differ by less than this are the
# same number up to float rounding, and scipy's t-test would report noise (or nan) for them.
_SAME_REL, _SAME_ABS = 1e-9, 1e-12
# Below this many discordant examples McNemar's chi-square approximation is poor: use the exact test.
MCNEMAR_EXACT_BELOW = 25
# A two-sided permutation p is at least 2 / (resamples + 1): 4,999 lets a clear difference read
# p < 0.001, in about a third of a second per comparison (confusion matrices, one pass).
PERMUTATION_RESAMPLES = 4999

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
    method: str  # "t" | "paired-t" | "bootstrap+mcnemar" | "bootstrap+permutation" | "none"

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
    generator so a report is reproducible. The p-value tests the same metric as the interval: for
    accuracy McNemar's test on per-example correctness; for any other metric (macro-F1, ...) a
    paired permutation test (`paired_permutation_p`), since McNemar speaks only about accuracy and
    put p = 1.0 beside a macro-F1 gain whose interval excluded 0. Fewer than 2 examples: no
    interval (nan). A `LabelMetric` with pinned classes scores all resamples at once from their
    confusion matrices (the same draws, the same numbers); any other callable is called once per
    resample.
    """
    _check_confidence(confidence)
    ours, theirs, truth = (np.asarray(a) for a in (variant_pred, baseline_pred, labels))
    if not len(ours) == len(theirs) == len(truth):
        raise ValueError(f"lengths differ: variant {len(ours)}, baseline {len(theirs)}, labels {len(truth)}")
    if len(truth) == 0:
        raise ValueError("no examples to compare")
    estimate = float(metric(truth, ours) - metric(truth, theirs))
    batched = isinstance(metric, LabelMetric) and metric.covers(truth, ours, theirs)
    if batched:
        def difference(y: np.ndarray, a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
            return (metric.on_confusions(metric.confusions(y, a))
                    - metric.on_confusions(metric.confusions(y, b)))
    else:
        def difference(y: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:  # type: ignore[misc]
            return metric(y, a) - metric(y, b)

    if getattr(metric, "name", getattr(metric, "__name__", None)) == "accuracy":
        p_value, method = _mcnemar_p(ours == truth, theirs == truth), "bootstrap+mcnemar"
    else:
        p_value = paired_permutation_p(ours, theirs, truth, difference, batched, seed)
        method = "bootstrap+permutation"
    if len(truth) < 2:
        return Interval(estimate, math.nan, math.nan, p_value, len(truth), method)
    result = stats.bootstrap((truth, ours, theirs), difference, n_resamples=n_resamples,
                             vectorized=batched, paired=True, confidence_level=confidence,
                             method="percentile", rng=np.random.default_rng(seed))
    low, high = result.confidence_interval
    return Interval(estimate, float(low), float(high), p_value, len(truth), method)


def paired_permutation_p(ours: np.ndarray, theirs: np.ndarray, truth: np.ndarray,
                         difference: Callable[..., Any], vectorized: bool, seed: int = 0,
                         n_resamples: int = PERMUTATION_RESAMPLES) -> float:
    """Two-sided p of a metric difference by swapping the two models' predictions per example
    (scipy's paired permutation test; approximate randomization, as NLP compares systems, exact
    where the models disagree on few examples): under "no difference" either model could have
    made either prediction. The same metric as the
    interval, so the two agree about what they test. Fewer than 2 examples, or the same
    predictions: 1.0 (every swap gives the same difference); one disagreement: 1.0 too (its two
    swaps give the difference and its opposite; scipy refuses a sample of one)."""
    discordant = np.flatnonzero(ours != theirs)
    if len(truth) < 2 or len(discordant) < 2:
        return 1.0
    if 2 ** len(discordant) <= n_resamples:
        # Swapping two equal predictions changes nothing: over the examples where the models
        # disagree scipy tries every swap pattern once, the exact p, not a random estimate of it
        # (5 disagreements: 0.0625, where 4,999 random swaps of all examples said 0.052).
        def statistic(a: np.ndarray, b: np.ndarray, axis: int = -1) -> Any:
            return difference(truth, _with(ours, discordant, a), _with(theirs, discordant, b))

        data = (ours[discordant], theirs[discordant])
    else:
        def statistic(a: np.ndarray, b: np.ndarray, axis: int = -1) -> Any:
            return difference(truth, a, b)

        data = (ours, theirs)
    result = stats.permutation_test(data, statistic, permutation_type="samples",
                                    vectorized=vectorized, n_resamples=n_resamples,
                                    alternative="two-sided", rng=np.random.default_rng(seed))
    return float(result.pvalue)


def _with(predictions: np.ndarray, where: np.ndarray, values: np.ndarray) -> np.ndarray:
    """`predictions` with `values` at `where`: one row per row of `values` (a batch of swaps)."""
    full = np.array(np.broadcast_to(predictions, values.shape[:-1] + predictions.shape))
    full[..., where] = values
    return full


@dataclass(frozen=True)
class LabelMetric:
    """A report metric of predicted labels, called as f(labels, predictions): scikit-learn's.

    `on_confusions` gives the same numbers for a stack of confusion matrices (rows true, columns
    predicted, over `classes`), which scores a thousand bootstrap resamples in one pass."""

    name: str
    classes: tuple[int, ...] | None = None  # pins the classes of macro/weighted averages

    def __call__(self, labels: np.ndarray, predictions: np.ndarray) -> float:
        if self.name == "accuracy":
            return float(skm.accuracy_score(labels, predictions))
        score, average = _AVERAGED[self.name]
        return float(score(labels, predictions, average=average, zero_division=0,
                           labels=None if self.classes is None else list(self.classes)))

    def covers(self, *arrays: np.ndarray) -> bool:
        """Whether the classes are pinned and are 0..K-1 and every value is one of them."""
        if self.classes is None or tuple(self.classes) != tuple(range(len(self.classes))):
            return False
        return all(a.size == 0 or (a.min() >= 0 and a.max() < len(self.classes)) for a in arrays)

    def confusions(self, labels: np.ndarray, predictions: np.ndarray) -> np.ndarray:
        """Confusion matrices of each row of (…, n) label and prediction arrays: (…, K, K)."""
        k = len(self.classes or ())
        codes = np.asarray(labels, dtype=np.int64) * k + np.asarray(predictions, dtype=np.int64)
        batch = codes.reshape(-1, codes.shape[-1])
        offsets = np.arange(len(batch), dtype=np.int64)[:, None] * (k * k)
        counts = np.bincount((batch + offsets).ravel(), minlength=len(batch) * k * k)
        return counts.reshape(*codes.shape[:-1], k, k)

    def on_confusions(self, matrices: np.ndarray) -> np.ndarray:
        """The metric of each confusion matrix in a (…, K, K) stack, with scikit-learn's rules:
        a ratio with a zero denominator is 0 (zero_division=0), macro averages every class,
        weighted averages by each class's true count."""
        matrices = np.asarray(matrices, dtype=np.float64)
        hits = np.diagonal(matrices, axis1=-2, axis2=-1)
        true_count, predicted_count = matrices.sum(axis=-1), matrices.sum(axis=-2)
        total = true_count.sum(axis=-1)
        if self.name == "accuracy":
            return _ratio(hits.sum(axis=-1), total)
        score, average = self.name.rsplit("_", 1)[1], self.name.split("_", 1)[0]
        if score == "precision":
            per_class = _ratio(hits, predicted_count)
        elif score == "recall":
            per_class = _ratio(hits, true_count)
        else:  # f1 = 2·tp / (2·tp + fp + fn)
            per_class = _ratio(2 * hits, true_count + predicted_count)
        if average == "macro":
            return per_class.mean(axis=-1)
        return _ratio((per_class * true_count).sum(axis=-1), total)


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, 0 where the denominator is 0 (scikit-learn's zero_division=0)."""
    denominator = np.asarray(denominator, dtype=np.float64)
    safe = np.where(denominator == 0, 1.0, denominator)
    return np.where(denominator == 0, 0.0, numerator / safe)


def metric_function(name: str, classes: Sequence[int] | None = None) -> LabelMetric:
    """The scikit-learn metric behind a report column, called as f(labels, predictions).

    `classes` pins the label set of macro/weighted averages: a bootstrap resample that misses a rare
    class would otherwise average over fewer classes than the full test set did.
    Losses need probabilities, not predicted labels: ValueError, and the caller skips the bootstrap.
    """
    if name in _NEEDS_PROBABILITIES:
        raise ValueError(f"{name} needs predicted probabilities, not labels: no bootstrap on it")
    if name != "accuracy" and name not in _AVERAGED:
        raise ValueError(f"unknown metric {name!r}; expected one of {', '.join(METRICS)}")
    return LabelMetric(name, None if classes is None else tuple(classes))


def verdict(interval: Interval, greater_is_better: bool, confidence: float = 0.95) -> str:
    """Words for a difference: only an interval that excludes 0, with a p-value (where there is
    one) below 1 − confidence, makes it "better" or "worse". With one seed the interval (a
    percentile bootstrap) and p (McNemar, a permutation test) are two procedures that can disagree
    near the boundary: 4 test examples that only the variant gets right give an interval above 0
    but an exact McNemar p of 0.125, and the row must not say **better** beside that p. Over
    seeds the paired t-interval and its p agree by construction, so nothing changes there."""
    _check_confidence(confidence)
    if math.isnan(interval.low) or math.isnan(interval.high):
        return "not enough runs"
    alpha = round(1.0 - confidence, 12)  # 1 - 0.95 is 0.050000000000000044 in floats
    if interval.within_noise or interval.p_value >= alpha:  # nan p: the interval alone
        return "within noise"
    increased = interval.low > 0.0
    return "better" if increased == greater_is_better else "worse"
