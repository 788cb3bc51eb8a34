"""What mattered: each variant's effect on the selection metric against its reference, with a 95 %
confidence interval and a verdict, so that a gap inside the noise is never read as a result.

With several seeds the comparison is paired over seeds (the same seeds run for every variant),
on the test metric of each trial's selected checkpoint (validation when a trial has no test
metric): the validation value is the best of the trial's checkpoints, picked on that very split,
so a variant with more evaluations to pick from looks better there than it is.

With a single seed it is paired over examples: a bootstrap of the metric difference on the same
test examples (validation when there is no test split), and a p-value on the same metric:
McNemar's test for accuracy, a paired permutation test for the others.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from ..metrics import metric_range
from ..records import TrialRecord, is_search_variant
from ..variants import BASELINE, describe_changes, reference_of
from .markdown import fmt_delta
from .stats import (
    Interval,
    mean_ci,
    metric_function,
    paired_bootstrap_difference,
    paired_seed_difference,
    verdict,
)

BOOTSTRAP_RESAMPLES = 1000
SIGNIFICANCE = 0.05  # the p below which a verdict may say better or worse (stats.verdict's 1 − 0.95)


@dataclass(frozen=True)
class Effect:
    variant: str
    reference: str
    changes: str
    interval: Interval
    verdict: str
    basis: str  # how the interval was computed, in words
    metric: str = ""  # what Δ is a difference of: the selection metric, or accuracy standing in for a loss
    seeds: int = 1  # how many seeds the difference is paired over; 1: over test examples only
    split: str = "validation"  # the split Δ is measured on (test with one seed, when it has one)


ONE_SEED_CAVEAT = (
    "One seed: these intervals cover which {split} examples were drawn, not the training's own "
    "randomness (the new head's first weights, the data order, dropout), which also moves a "
    "trial's result. A small **better** or **worse** may not hold at another seed: give `seeds` "
    "several values (e.g. `[42, 43, 44]`) to compare over seeds.")


def one_seed_caveat(effects: list[Effect]) -> str | None:
    """What a one-seed interval leaves out, under What mattered where a row is compared at one
    seed. Where other rows are paired over seeds (a variant or its reference failed at the
    others), it names the one-seed rows: "these intervals" read as every row's, the paired-t
    ones too, which do cover the training's randomness."""
    single = [e for e in effects if e.seeds == 1]
    if not single:
        return None
    # the examples drawn are those of the split the differences are measured on: validation where
    # the data has no test split ("test examples" there named a split the study does not have)
    splits = sorted({e.split for e in single}, reverse=True)  # "validation", "test": rarely both
    split = " or ".join(splits)
    if len(single) == len(effects):
        return ONE_SEED_CAVEAT.format(split=split)
    one = len(single) == 1
    names = ", ".join(f"`{e.variant}`" for e in single)
    return (f"One seed: {names} {'is' if one else 'are'} compared at the one seed "
            f"{'it has' if one else 'each has'} in common with {'its' if one else 'their'} "
            f"reference: {'its interval covers' if one else 'their intervals cover'} which {split} "
            "examples were drawn, not the training's own randomness (the new head's first "
            "weights, the data order, dropout), which also moves a trial's result; the other rows "
            "are paired over seeds. A small **better** or **worse** there may not hold at another "
            "seed: train the trials without a result (`ablate run` trains them) to compare over "
            "seeds.")


def seed_values(records: list[TrialRecord], variant: str) -> dict[int, float]:
    """Selection metric (on validation) per seed, complete trials with a score only: a NaN seed
    drops out of the pair (paired_seed_difference), so it must not be named or counted in it."""
    return {r.seed: r.value for r in records if r.variant == variant and r.complete
            and r.value is not None and not math.isnan(r.value)}


def variant_interval(records: list[TrialRecord], variant: str) -> Interval:
    return mean_ci(list(seed_values(records, variant).values()))


def _predictions(record: TrialRecord, split: str) -> tuple[list[int], list[int]] | None:
    """A trial's stored predictions and labels of one split's examples, or None."""
    predictions = record.result.get(f"{split}_predictions")
    labels = record.result.get(f"{split}_labels")
    return (predictions, labels) if predictions and labels else None


def _single_seed_effect(variant: TrialRecord, reference: TrialRecord, metric: str,
                        n_classes: int) -> tuple[Interval, str, str, str] | None:
    """(interval, metric actually compared, basis, split) from per-example predictions, or None.
    On test where both trials have its predictions, else on validation (its basis naming the
    trial without test predictions), as a pair over seeds is; None where they hold no
    predictions of the same examples."""
    without_test = [r for r in (variant, reference) if _predictions(r, "test") is None]
    split = "validation" if without_test else "test"
    mine, theirs = _predictions(variant, split), _predictions(reference, split)
    if mine is None or theirs is None or mine[1] != theirs[1]:
        return None
    predictions, labels = mine
    scored = metric
    try:
        function = metric_function(metric, classes=range(n_classes))
    except ValueError:  # losses need probabilities: compare accuracy instead
        scored, function = "accuracy", metric_function("accuracy", classes=range(n_classes))
    interval = paired_bootstrap_difference(predictions, theirs[0], labels, function,
                                           n_resamples=BOOTSTRAP_RESAMPLES, seed=0)
    test = ("McNemar's test" if interval.method == "bootstrap+mcnemar"
            else "paired permutation test")
    why = (f"; `{without_test[0].key}` has no test predictions" if len(without_test) == 1 else "")
    basis = (f"{scored} on the {split} split ({len(labels)} examples{why}): paired bootstrap 95 % "
             f"CI, {test}")
    return interval, scored, basis, split


def _finite(value: object) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _within_reach(interval: Interval, metric: str) -> Interval:
    """A paired-t interval clipped to the differences the metric allows: two seeds of macro-F1
    (t of 12.7 at one degree of freedom) gave [-2.97, +2.54] for a difference within ±1."""
    low, high = metric_range(metric)
    reach = high - low
    return dataclasses.replace(interval, low=float(np.clip(interval.low, -reach, reach)),
                               high=float(np.clip(interval.high, -reach, reach)))


def _effect(complete: list[TrialRecord], variant: str, reference: str, metric: str,
            greater_is_better: bool, n_classes: int) -> Effect | None:
    mine, theirs = seed_values(complete, variant), seed_values(complete, reference)
    common = sorted(set(mine) & set(theirs))
    if not common:
        return None
    overrides = next(r.overrides for r in complete if r.variant == variant)
    if len(common) >= 2:
        paired = [r for r in complete if r.variant in (variant, reference) and r.seed in common]
        without_test = [r for r in paired if not _finite((r.result.get("test") or {}).get(metric))]
        if not without_test:
            mine, theirs = ({r.seed: float(r.result["test"][metric]) for r in paired
                             if r.variant == name} for name in (variant, reference))
            split = "test"
        else:
            split = "validation"
        interval = _within_reach(paired_seed_difference(mine, theirs), metric)
        scored = metric
        # Some trials have the test metric and these do not: say why this pair is on validation.
        why = ("" if len(without_test) in (0, len(paired)) else " ("
               + ", ".join(f"`{r.key}`" for r in without_test)  # the study's order
               + f" {'has' if len(without_test) == 1 else 'have'} no test {metric})")
        basis = (f"{metric} on {split}{why}, paired over seeds {', '.join(map(str, common))} "
                 "(t-test)")
    else:
        pair = [next(r for r in complete if r.variant == v and r.seed == common[0])
                for v in (variant, reference)]
        single = _single_seed_effect(pair[0], pair[1], metric, n_classes)
        if single is None:
            return None
        interval, scored, basis, split = single
    greater = greater_is_better if scored == metric else True  # accuracy stands in for a loss
    return Effect(variant, reference, describe_changes(overrides), interval,
                  verdict(interval, greater), basis, scored, len(common), split)


def compute_effects(records: list[TrialRecord], order: list[str], metric: str,
                    greater_is_better: bool, n_classes: int) -> list[Effect]:
    """One effect per variant whose reference has results too, largest first."""
    complete = [r for r in records if r.complete]
    effects = [_effect(complete, variant, reference_of(variant, order), metric,
                       greater_is_better, n_classes)
               for variant in order if variant != BASELINE and not is_search_variant(variant)]
    return sorted((e for e in effects if e is not None),
                  key=lambda e: -abs(e.interval.estimate)
                  if not math.isnan(e.interval.estimate) else math.inf)


def _seeds_text(seeds: set[int]) -> str:
    return f"seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, sorted(seeds)))}"


def not_compared(records: list[TrialRecord], order: list[str], effects: list[Effect]
                 ) -> dict[str, str]:
    """The variants with a result that What mattered has no row for, each with why: their
    reference has no result, no seed has a result of both, or their one seed in common holds no
    predictions of the same examples to compare. Without it a variant whose Δ the results table
    shows was missing from What mattered without a word."""
    complete = [r for r in records if r.complete]
    compared = {e.variant for e in effects}
    reasons = {}
    for variant in order:
        if variant == BASELINE or is_search_variant(variant) or variant in compared:
            continue
        mine = set(seed_values(complete, variant))
        if not mine:  # no result: the results table and the trials without a result say so
            continue
        reference = reference_of(variant, order)
        theirs = set(seed_values(complete, reference))
        if not theirs:
            reasons[variant] = f"`{reference}` has no result"
        elif not mine & theirs:
            reasons[variant] = (f"no seed at which both it and `{reference}` have a result: it has "
                                f"{_seeds_text(mine)}, `{reference}` {_seeds_text(theirs)}")
        else:
            reasons[variant] = (f"one seed in common with `{reference}` ({min(mine & theirs)}), "
                                "whose trials hold no predictions of the same examples to compare")
    return reasons


def holm_adjusted(effects: list[Effect]) -> dict[str, float]:
    """Each effect's p-value adjusted for testing all of the report's effects together (Holm's
    step-down correction, by variant): with k comparisons at 5 % each, about one in twenty
    differences that are noise would read **better** or **worse**. Empty below two p-values."""
    from statsmodels.stats.multitest import multipletests

    tested = [e for e in effects if _finite(e.interval.p_value)]
    if len(tested) < 2:
        return {}
    adjusted = multipletests([e.interval.p_value for e in tested], method="holm")[1]
    return {e.variant: float(p) for e, p in zip(tested, adjusted, strict=True)}


def _called(effects: list[Effect], adjusted: dict[str, float]) -> list[Effect]:
    """The effects called better or worse alone that have a Holm-adjusted p."""
    return [e for e in effects if e.verdict in ("better", "worse") and e.variant in adjusted]


def tentative(effects: list[Effect], adjusted: dict[str, float]) -> list[Effect]:
    """The better/worse verdicts whose adjusted p is 0.05 or more: they do not hold once the
    report's comparisons are tested together."""
    return [e for e in _called(effects, adjusted) if adjusted[e.variant] >= SIGNIFICANCE]


def tested_together(effects: list[Effect], adjusted: dict[str, float]) -> str | None:
    """One sentence on the verdicts that do not hold once the effects are tested together."""
    if not _called(effects, adjusted):
        return None
    weak = tentative(effects, adjusted)
    k = len(adjusted)
    if not weak:
        return (f"Tested together (Holm's correction over the {k} comparisons), every **better** "
                "and **worse** here still has p < 0.05.")
    names = ", ".join(f"`{e.variant}` (adjusted p {fmt_p(adjusted[e.variant])})" for e in weak)
    return (f"Tested together: {k} comparisons at 5 % each would call about one in twenty "
            f"differences that are noise **better** or **worse**. With Holm's correction over the "
            f"{k}, {names} no longer {'reaches' if len(weak) == 1 else 'reach'} p < 0.05: treat "
            f"{'it' if len(weak) == 1 else 'them'} as tentative, or run more seeds.")


def fmt_interval(interval: Interval) -> str:
    """Its bounds as differences (fmt_delta): one that is not 0 is never shown as 0, which would
    read as an interval that contains 0 beside a **better** or **worse**."""
    if math.isnan(interval.low) or math.isnan(interval.high):
        return "—"
    return f"[{fmt_delta(interval.low)}, {fmt_delta(interval.high)}]"


def fmt_p(p: float) -> str:
    """Three decimals, or more where three would round across 0.05: p 0.04995 beside **better**
    must not read "0.050", which the report says is within noise."""
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return "—"
    if p < 0.001:
        return "< 0.001"
    for digits in (3, 4, 5, 6):
        text = f"{p:.{digits}f}"
        if (float(text) < SIGNIFICANCE) == (p < SIGNIFICANCE):
            return text
    return "< 0.05" if p < SIGNIFICANCE else text
