"""Seed-noise statistics: every expectation is a constant worked out by hand, not a scipy call.

Quantiles of Student's t with 2 degrees of freedom have closed forms, which is how the constants
below were checked: t_u = (2u - 1) / sqrt(2u(1 - u)) and the two-sided p of t is 1 - t / sqrt(t² + 2).
Pure numpy, no model: the whole file runs in about a second.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from ablation.report.stats import (
    METRICS,
    Interval,
    mean_ci,
    metric_function,
    paired_bootstrap_difference,
    paired_seed_difference,
    verdict,
)

pytestmark = [pytest.mark.filterwarnings("error::RuntimeWarning"),
              pytest.mark.filterwarnings("error::UserWarning")]

T_975_DF2 = 4.302652729749464  # 0.95 / sqrt(2 · 0.975 · 0.025)
T_95_DF2 = 2.919985580355516  # 0.90 / sqrt(2 · 0.95 · 0.05)
T_975_DF3 = 3.182446305284263  # table value, t_{0.975, 3}

VARIANT = {1: 0.80, 2: 0.82, 3: 0.81}
BASELINE = {1: 0.78, 2: 0.79, 3: 0.80}  # differences .02, .03, .01: mean .02, sd .01


def accuracy(labels: np.ndarray, predictions: np.ndarray) -> float:
    return float(np.mean(labels == predictions))


# mean_ci -------------------------------------------------------------------------------------------

def test_mean_ci_of_three_values_is_the_t_interval():
    result = mean_ci([1.0, 2.0, 3.0])
    half = T_975_DF2 / math.sqrt(3)  # sd 1, so se = 1/sqrt(3): 2.484138
    assert half == pytest.approx(2.484138, abs=1e-6)
    assert (result.estimate, result.n, result.method) == (2.0, 3, "t")
    assert result.low == pytest.approx(2.0 - half, rel=1e-9)
    assert result.high == pytest.approx(2.0 + half, rel=1e-9)
    assert math.isnan(result.p_value)


def test_mean_ci_other_confidence_and_sample_size():
    assert mean_ci([1.0, 2.0, 3.0], confidence=0.90).high == pytest.approx(2.0 + T_95_DF2 / math.sqrt(3))
    result = mean_ci([1.0, 2.0, 3.0, 4.0])  # sd sqrt(5/3), se sqrt(5/12) = 0.645497
    assert result.estimate == 2.5
    assert result.high - result.estimate == pytest.approx(T_975_DF3 * math.sqrt(5 / 12), rel=1e-9)


def test_mean_ci_drops_nans_and_needs_two_values():
    assert mean_ci([1.0, math.nan, 2.0, 3.0]) == mean_ci([1.0, 2.0, 3.0])
    single = mean_ci([0.7, math.nan])
    assert (single.estimate, single.n, single.method) == (0.7, 1, "none")
    assert math.isnan(single.low) and math.isnan(single.high) and single.within_noise
    empty = mean_ci([])
    assert math.isnan(empty.estimate) and empty.n == 0


def test_mean_ci_of_identical_values_is_a_point():
    result = mean_ci([0.8, 0.8, 0.8])
    assert (result.low, result.estimate, result.high) == (0.8, 0.8, 0.8)


def test_confidence_must_be_a_fraction():
    with pytest.raises(ValueError, match="confidence"):
        mean_ci([1.0, 2.0], confidence=95)


# paired_seed_difference ----------------------------------------------------------------------------

def test_paired_difference_has_the_paired_t_interval_and_p_value():
    result = paired_seed_difference(VARIANT, BASELINE)
    half = T_975_DF2 * 0.01 / math.sqrt(3)  # 0.024841
    t = 0.02 / (0.01 / math.sqrt(3))  # 3.464102
    assert t == pytest.approx(3.464102, abs=1e-6)
    assert 1 - t / math.sqrt(t**2 + 2) == pytest.approx(0.0741799, abs=1e-7)
    assert (result.n, result.method) == (3, "paired-t")
    assert result.estimate == pytest.approx(0.02, abs=1e-12)
    assert result.low == pytest.approx(0.02 - half, abs=1e-9)  # -0.004841
    assert result.high == pytest.approx(0.02 + half, abs=1e-9)  # 0.044841
    assert result.p_value == pytest.approx(0.0741799, abs=1e-7)
    assert result.within_noise and verdict(result, greater_is_better=True) == "within noise"


def test_paired_difference_ignores_unpaired_and_failed_seeds():
    variant = VARIANT | {4: 0.99, 6: math.nan}
    baseline = BASELINE | {5: 0.10, 6: 0.75, 7: 0.5}
    assert paired_seed_difference(variant, baseline) == paired_seed_difference(VARIANT, BASELINE)


def test_paired_difference_with_zero_variance():
    # .80 - .78 and .82 - .80 differ in the last bits: still "the same difference" for the test.
    result = paired_seed_difference({1: 0.80, 2: 0.81, 3: 0.82}, {1: 0.78, 2: 0.79, 3: 0.80})
    assert result.estimate == pytest.approx(0.02, abs=1e-12)
    assert result.low == result.high == result.estimate
    assert result.p_value == 0.0
    assert verdict(result, greater_is_better=True) == "better"
    same = paired_seed_difference(VARIANT, VARIANT)
    assert (same.estimate, same.low, same.high, same.p_value) == (0.0, 0.0, 0.0, 1.0)
    assert verdict(same, greater_is_better=True) == "within noise"


def test_paired_difference_needs_two_common_seeds():
    result = paired_seed_difference({1: 0.80, 2: 0.9}, {1: 0.78, 3: 0.7})
    assert (result.n, result.method) == (1, "none")
    assert result.estimate == pytest.approx(0.02)
    assert math.isnan(result.low) and math.isnan(result.high) and math.isnan(result.p_value)
    assert verdict(result, greater_is_better=True) == "not enough runs"
    assert paired_seed_difference({1: 0.8}, {2: 0.8}).n == 0


# paired_bootstrap_difference -----------------------------------------------------------------------

def test_mcnemar_exact_when_few_examples_disagree():
    labels = [0] * 10
    variant = [0] * 10  # right everywhere
    baseline = [1] * 6 + [0] * 4  # wrong on 6: b = 0, c = 6
    result = paired_bootstrap_difference(variant, baseline, labels, accuracy, n_resamples=200)
    assert result.p_value == pytest.approx(2 * 0.5**6)  # 0.03125
    assert result.estimate == pytest.approx(0.6)
    assert (result.n, result.method) == (10, "bootstrap+mcnemar")


def test_mcnemar_exact_up_to_24_discordant_then_corrected_chi_square():
    labels = np.zeros(40, dtype=int)
    # 24 discordant (18 only the variant gets right, 6 only the baseline): exact binomial.
    variant = np.array([0] * 18 + [1] * 6 + [0] * 16)
    baseline = np.array([1] * 18 + [0] * 6 + [0] * 16)
    exact = 2 * sum(math.comb(24, k) for k in range(7)) / 2**24  # 2 · 190051 / 16777216
    result = paired_bootstrap_difference(variant, baseline, labels, accuracy, n_resamples=200)
    assert result.p_value == pytest.approx(exact, rel=1e-9)
    assert exact == pytest.approx(0.0226558, abs=1e-7)
    # 30 discordant (20 vs 10): chi² = (|20 - 10| - 1)² / 30 = 2.7, p = erfc(sqrt(2.7 / 2)).
    variant = np.array([0] * 20 + [1] * 10 + [0] * 10)
    baseline = np.array([1] * 20 + [0] * 10 + [0] * 10)
    result = paired_bootstrap_difference(variant, baseline, labels, accuracy, n_resamples=200)
    assert result.p_value == pytest.approx(math.erfc(math.sqrt(1.35)), rel=1e-9)  # 0.100348
    assert result.p_value == pytest.approx(0.100348, abs=1e-6)


def _two_models(n: int = 60) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(123)
    labels = rng.integers(0, 3, n)
    variant = np.where(rng.random(n) < 0.85, labels, (labels + 1) % 3)
    baseline = np.where(rng.random(n) < 0.70, labels, (labels + 2) % 3)
    return variant, baseline, labels


def test_bootstrap_is_reproducible_and_contains_the_estimate():
    variant, baseline, labels = _two_models()
    first = paired_bootstrap_difference(variant, baseline, labels, accuracy, n_resamples=300, seed=7)
    again = paired_bootstrap_difference(variant, baseline, labels, accuracy, n_resamples=300, seed=7)
    other = paired_bootstrap_difference(variant, baseline, labels, accuracy, n_resamples=300, seed=8)
    assert first == again
    assert (other.low, other.high) != (first.low, first.high)
    assert first.estimate == pytest.approx(accuracy(labels, variant) - accuracy(labels, baseline))
    assert first.low < first.estimate < first.high
    assert first.n == 60


def test_bootstrap_of_identical_predictions_is_zero_and_within_noise():
    variant, _, labels = _two_models()
    result = paired_bootstrap_difference(variant, variant.copy(), labels, metric_function("macro_f1"),
                                         n_resamples=50)
    assert (result.estimate, result.low, result.high, result.p_value) == (0.0, 0.0, 0.0, 1.0)
    assert result.within_noise and verdict(result, greater_is_better=True) == "within noise"


def test_bootstrap_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="lengths differ"):
        paired_bootstrap_difference([0, 1], [0, 1, 1], [0, 1], accuracy)
    with pytest.raises(ValueError, match="no examples"):
        paired_bootstrap_difference([], [], [], accuracy)


def test_bootstrap_of_one_example_has_no_interval():
    result = paired_bootstrap_difference([1], [0], [1], accuracy)
    assert result.estimate == 1.0 and result.p_value == 1.0  # exact McNemar, 1 discordant: 2 · 0.5
    assert verdict(result, greater_is_better=True) == "not enough runs"


# verdict -------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("low", "high", "greater_is_better", "expected"), [
    (0.01, 0.03, True, "better"),
    (0.01, 0.03, False, "worse"),  # a loss that went up
    (-0.03, -0.01, True, "worse"),
    (-0.03, -0.01, False, "better"),  # a loss that went down
    (-0.01, 0.03, True, "within noise"),
    (0.0, 0.03, True, "within noise"),
    (-0.01, 0.0, False, "within noise"),
    (math.nan, math.nan, True, "not enough runs"),
])
def test_verdict(low, high, greater_is_better, expected):
    interval = Interval(estimate=0.02, low=low, high=high, p_value=math.nan, n=3, method="paired-t")
    assert verdict(interval, greater_is_better) == expected
    assert interval.within_noise == (expected in ("within noise", "not enough runs"))


def test_verdict_needs_the_p_value_to_agree_with_the_interval():
    """One seed: the percentile bootstrap's interval can exclude 0 while McNemar's (or the
    permutation) p is well above 0.05; the row must then say within noise, not **better**."""
    labels = np.zeros(100, dtype=int)
    baseline = np.array([1] * 4 + [0] * 50 + [1] * 46)  # the variant alone is right on 4 examples
    variant = np.array([0] * 4 + [0] * 50 + [1] * 46)
    result = paired_bootstrap_difference(variant, baseline, labels,
                                         metric_function("accuracy", classes=range(2)),
                                         n_resamples=1000, seed=0)
    assert result.low > 0 and result.p_value == pytest.approx(0.125)  # exact: 2 · 0.5**4
    assert verdict(result, greater_is_better=True) == "within noise"
    at_alpha = Interval(estimate=0.02, low=0.01, high=0.03, p_value=0.05, n=3, method="paired-t")
    assert verdict(at_alpha, True) == "within noise"
    assert verdict(dataclasses.replace(at_alpha, p_value=0.049), True) == "better"
    assert verdict(dataclasses.replace(at_alpha, p_value=0.049), False) == "worse"


# metric_function -----------------------------------------------------------------------------------

# Supports 3, 2, 1. Class 0: P 2/3, R 2/3, F1 2/3. Class 1: P 2/3, R 1, F1 .8. Class 2: never
# predicted, never right: P = R = F1 = 0 (zero_division=0, no warning).
LABELS = np.array([0, 0, 0, 1, 1, 2])
PREDICTIONS = np.array([0, 0, 1, 1, 1, 0])


@pytest.mark.parametrize(("name", "expected"), [
    ("accuracy", 4 / 6),
    ("macro_f1", (2 / 3 + 0.8 + 0) / 3),  # 0.488889
    ("weighted_f1", (3 * 2 / 3 + 2 * 0.8 + 0) / 6),  # 0.6
    ("macro_precision", (2 / 3 + 2 / 3 + 0) / 3),  # 0.444444
    ("macro_recall", (2 / 3 + 1 + 0) / 3),  # 0.555556
    ("weighted_precision", (3 * 2 / 3 + 2 * 2 / 3 + 0) / 6),  # 0.555556
    ("weighted_recall", 4 / 6),  # always equals accuracy
])
def test_metric_function(name, expected):
    value = metric_function(name)(LABELS, PREDICTIONS)
    assert isinstance(value, float)
    assert value == pytest.approx(expected, rel=1e-12)


def test_metric_function_can_pin_the_classes():
    # A fourth class absent from both arrays still counts in the macro average: (2/3 + .8) / 4.
    assert metric_function("macro_f1", classes=[0, 1, 2, 3])(LABELS, PREDICTIONS) == pytest.approx(
        (2 / 3 + 0.8) / 4)


@pytest.mark.parametrize("name", ["log_loss", "eval_loss", "f2"])
def test_metric_function_rejects_losses_and_unknown_names(name):
    with pytest.raises(ValueError, match=name):
        metric_function(name)


# LabelMetric.on_confusions: the batched bootstrap -------------------------------------------------

@pytest.mark.parametrize("name", METRICS)
def test_scores_from_confusion_matrices_equal_scikit_learn_on_every_resample(name):
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 4, (300, 40))  # 300 resamples of 40 examples, 4 classes
    predictions = np.where(rng.random((300, 40)) < 0.5, labels, rng.integers(0, 4, (300, 40)))
    predictions[:5] = 3  # resamples that never predict classes 0-2 (zero denominators)
    labels[5:10] = 1  # resamples that hold a single true class
    metric = metric_function(name, classes=range(4))
    batched = metric.on_confusions(metric.confusions(labels, predictions))
    one_by_one = [metric(y, p) for y, p in zip(labels, predictions, strict=True)]
    assert batched == pytest.approx(one_by_one, rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("name", ["accuracy", "macro_f1", "weighted_recall"])
def test_batched_bootstrap_gives_the_interval_of_one_call_per_resample(name):
    variant, baseline, labels = _two_models(200)
    metric = metric_function(name, classes=range(3))
    assert metric.covers(variant, baseline, labels)
    batched = paired_bootstrap_difference(variant, baseline, labels, metric, n_resamples=500, seed=3)
    one_by_one = paired_bootstrap_difference(variant, baseline, labels, lambda y, p: metric(y, p),
                                             n_resamples=500, seed=3)
    assert batched.estimate == one_by_one.estimate
    if name != "accuracy":  # the lambda is no accuracy: McNemar is kept for the named one
        assert batched.p_value == pytest.approx(one_by_one.p_value, abs=0.01)
    assert (batched.low, batched.high) == pytest.approx((one_by_one.low, one_by_one.high), abs=1e-12)


def test_unpinned_or_foreign_classes_fall_back_to_one_call_per_resample():
    variant, baseline, labels = _two_models(50)
    assert not metric_function("macro_f1").covers(variant, baseline, labels)
    assert not metric_function("macro_f1", classes=[0, 1]).covers(variant, baseline, labels)
    assert not metric_function("macro_f1", classes=[1, 2, 3]).covers(labels)
    result = paired_bootstrap_difference(variant, baseline, labels, metric_function("macro_f1"),
                                         n_resamples=50)
    assert result.low <= result.estimate <= result.high


def test_the_p_value_tests_the_metric_of_the_interval_not_accuracy():
    """A macro-F1 gain at equal accuracy (the variant finds the rare class, at the cost of as many
    majority examples): McNemar on correctness says p = 0.91, which beside an interval excluding 0
    read as a contradiction; the permutation test on macro-F1 agrees with the interval."""
    labels = np.array([0] * 160 + [1] * 40)
    baseline = np.zeros(200, dtype=int)  # the majority class throughout
    variant = np.concatenate([np.zeros(120, dtype=int), np.ones(80, dtype=int)])
    macro_f1 = metric_function("macro_f1", classes=range(2))
    result = paired_bootstrap_difference(variant, baseline, labels, macro_f1, n_resamples=500)
    assert accuracy(labels, variant) == accuracy(labels, baseline)  # 40 against 40 discordant
    assert result.method == "bootstrap+permutation" and result.low > 0
    assert result.p_value < 0.001
    assert paired_bootstrap_difference(baseline, baseline, labels, macro_f1).p_value == 1.0
    named = paired_bootstrap_difference(variant, baseline, labels, metric_function("accuracy"))
    assert named.method == "bootstrap+mcnemar" and named.p_value > 0.9


@pytest.mark.parametrize("batched", [True, False])
def test_a_permutation_p_over_few_disagreements_is_exact_not_a_monte_carlo_estimate(batched):
    """Five examples on which the two models disagree (the variant right on each) among 200:
    only 2^5 = 32 swap patterns exist, and the exact two-sided p is 2/32 = 0.0625. The 4,999
    random swaps of all 200 examples estimated it as 0.052 (seed 0), below 0.05's neighbour,
    and another seed gave another p: a verdict near 0.05 hung on the random stream."""
    import itertools

    labels = np.array([0] * 100 + [1] * 100)
    baseline = labels.copy()
    baseline[[0, 1, 2, 100, 101]] = 1 - labels[[0, 1, 2, 100, 101]]
    variant = labels.copy()
    macro_f1 = (metric_function("macro_f1", classes=range(2)) if batched else
                lambda y, p: metric_function("macro_f1")(y, p))
    observed = macro_f1(labels, variant) - macro_f1(labels, baseline)
    discordant = np.flatnonzero(variant != baseline)
    swapped = []
    for pattern in itertools.product([False, True], repeat=len(discordant)):
        a, b = variant.copy(), baseline.copy()
        flip = discordant[list(pattern)]
        a[flip], b[flip] = baseline[flip], variant[flip]
        swapped.append(macro_f1(labels, a) - macro_f1(labels, b))
    swapped = np.array(swapped)
    exact = min(1.0, 2 * min(np.mean(swapped >= observed - 1e-12), np.mean(swapped <= observed + 1e-12)))
    assert exact == pytest.approx(0.0625)
    for seed in (0, 1, 2):
        result = paired_bootstrap_difference(variant, baseline, labels, macro_f1, n_resamples=200,
                                             seed=seed)
        assert result.p_value == pytest.approx(exact), seed


def test_effects_tested_together_are_holm_adjusted_and_the_verdicts_that_fall_are_named():
    """tweets_loo's five p-values: Holm's step-down gives 0.070, 0.041, 0.019, 0.125, 0.839, so
    the `full` row (p 0.023, worse alone) no longer holds when the five are tested together."""
    from ablation.report.effects import Effect, holm_adjusted, tested_together
    from ablation.report.stats import Interval

    def effect(name: str, p: float, verdict: str) -> Effect:
        low, high = (-0.2, -0.05) if verdict == "worse" else (-0.01, 0.02)
        return Effect(name, "baseline", "", Interval(-0.1, low, high, p, 3, "paired-t"), verdict,
                      "basis", "macro_f1", 3, "test")

    effects = [effect("full", 0.023, "worse"), effect("a", 0.010, "worse"),
               effect("b", 0.004, "worse"), effect("c", 0.063, "within noise"),
               effect("d", 0.839, "within noise"), effect("e", math.nan, "not enough runs")]
    adjusted = holm_adjusted(effects)
    assert adjusted == pytest.approx({"full": 0.069, "a": 0.04, "b": 0.02, "c": 0.126, "d": 0.839})
    note = tested_together(effects, adjusted)
    assert "With Holm's correction over the 5, `full` (adjusted p 0.069) no longer reaches" in note
    assert "`a`" not in note and "`b`" not in note
    assert "still has p < 0.05" in tested_together(effects[1:], holm_adjusted(effects[1:]))
    assert tested_together(effects[3:], holm_adjusted(effects[3:])) is None  # nothing called
    assert holm_adjusted(effects[:1]) == {}  # one comparison: nothing to correct


@pytest.mark.parametrize("batched", [True, False])
def test_two_models_that_disagree_on_one_example_get_p_1_not_a_crash(batched):
    """An [ablation] study whose full_minus_* trial differed from full on one validation example
    stopped `ablate run` with scipy's "each sample in `data` must contain two or more
    observations" traceback: the exact test swapped the one disagreement alone. Its two swap
    patterns give the observed difference and its opposite, so the exact two-sided p is 1."""
    labels = np.array([0] * 10 + [1] * 10)
    baseline = labels.copy()
    variant = labels.copy()
    variant[0] = 1
    macro_f1 = (metric_function("macro_f1", classes=range(2)) if batched else
                lambda y, p: metric_function("macro_f1")(y, p))
    result = paired_bootstrap_difference(variant, baseline, labels, macro_f1, n_resamples=50)
    assert result.p_value == 1.0 and result.estimate < 0
