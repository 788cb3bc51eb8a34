"""Expand an experiment into the trials to run: the baseline and every variant, once per seed."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from .config import ExperimentSpec, Recipe

BASELINE = "baseline"


@dataclass(frozen=True)
class TrialSpec:
    """One unit of work: a named recipe trained with one seed."""

    variant: str  # "baseline" or "baseline_<suffix>"
    seed: int
    overrides: dict[str, Any]  # what differs from the baseline
    recipe: Recipe  # baseline with the overrides applied

    @property
    def key(self) -> str:
        """Identity in the study: the same variant and seed is never run twice."""
        return f"{self.variant}-s{self.seed}"


def variant_names(spec: ExperimentSpec) -> list[str]:
    return [BASELINE] + [f"{BASELINE}_{suffix}" for suffix in spec.variants]


def expand(spec: ExperimentSpec) -> list[TrialSpec]:
    """Baseline first, then variants in file order; seeds inner so each variant's runs sit together."""
    named: list[tuple[str, dict[str, Any]]] = [(BASELINE, {})]
    named += [(f"{BASELINE}_{suffix}", overrides) for suffix, overrides in spec.variants.items()]
    return [
        TrialSpec(variant=name, seed=seed, overrides=dict(overrides),
                  recipe=dataclasses.replace(spec.baseline, **overrides))
        for name, overrides in named
        for seed in spec.experiment.seeds
    ]


def describe_changes(overrides: dict[str, Any]) -> str:
    """How a variant differs from the baseline, as a person would write it."""
    if not overrides:
        return "—"
    return ", ".join(f"{key}={_format_value(value)}" for key, value in overrides.items())


def human_number(value: float) -> str:
    """5e-05 → "5e-5", 0.0001 → "1e-4", 0.30 → "0.3", 32.0 → "32": as a person writes them."""
    if value != 0 and not 1e-3 <= abs(value) < 1e6:
        return np.format_float_scientific(value, trim="-", exp_digits=1).replace("e+", "e")
    return repr(float(value)).removesuffix(".0")


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        return human_number(value)
    return str(value)
