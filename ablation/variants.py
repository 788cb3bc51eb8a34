"""Expand an experiment into the trials to run: the baseline, every named variant, once per seed.

Variants come from three places, in this order: `[variants]` (baseline_<suffix>), `[sweep]`
(one variant per listed value that differs from the baseline, named from the knob and value:
baseline_bs32, baseline_lr5e-5, baseline_cw-balanced) and `[ablation]` (full, full_minus_<change>,
baseline_plus_<change>). A name produced twice is an error, and so are two names that differ
only in case (one folder on macOS and Windows).
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from dataclasses import dataclass
from pathlib import PurePath
from typing import TYPE_CHECKING, Any

import numpy as np

from .config import (
    CLASSIFIER_DROPOUT_KEYS,
    DROPOUT_KEYS,
    MAX_NAME_LENGTH,
    Recipe,
    set_variant,
    toml_value,
)
from .errors import AblateInputError

if TYPE_CHECKING:
    from .config import ExperimentSpec

BASELINE = "baseline"
FULL = "full"
MINUS = "full_minus_"
PLUS = "baseline_plus_"

# How a knob is written in a generated variant name (numbers follow directly: bs32, lr5e-5;
# words after a dash: cw-balanced, sched-cosine). Knobs not listed use their own name.
SUFFIXES = {
    "batch_size": "bs", "learning_rate": "lr", "dropout": "dropout", "class_weight": "cw",
    "weight_decay": "wd", "epochs": "epochs", "warmup_ratio": "warmup", "lr_scheduler": "sched",
    "max_length": "maxlen", "label_smoothing": "ls", "gradient_accumulation_steps": "accum",
    "max_grad_norm": "clip", "early_stopping_patience": "patience", "precision": "precision",
    "max_train_samples": "n", "model": "model",
}
CONFIG_SUFFIXES = {"num_hidden_layers": "layers", "hidden_dropout_prob": "hdrop",
                   "attention_probs_dropout_prob": "adrop"}


@dataclass(frozen=True)
class TrialSpec:
    """One unit of work: a named recipe trained with one seed."""

    variant: str  # "baseline", "baseline_<suffix>", "full", "full_minus_<change>", ...
    seed: int
    overrides: dict[str, Any]  # what differs from the baseline
    recipe: Recipe  # baseline with the overrides applied

    @property
    def key(self) -> str:
        """Identity in the study: the same variant and seed is never run twice."""
        return f"{self.variant}-s{self.seed}"

    @classmethod
    def of(cls, baseline: Recipe, variant: str, seed: int, overrides: dict[str, Any]) -> TrialSpec:
        """The baseline recipe with `overrides` applied."""
        return cls(variant=variant, seed=seed, overrides=dict(overrides),
                   recipe=dataclasses.replace(baseline, **applied(baseline.model_config, overrides)))


def applied(baseline_config: dict | None, overrides: dict[str, Any]) -> dict[str, Any]:
    """`overrides` as they set the recipe: a `model_config` table adds its keys to the baseline's
    `model_config` (as both add to [model] config), so that a variant setting one config key keeps
    the baseline's others (its layers, say) rather than training another model."""
    config = overrides.get("model_config")
    if config and baseline_config:
        return {**overrides, "model_config": {**baseline_config, **config}}
    return overrides


def human_number(value: float) -> str:
    """5e-05 → "5e-5", 0.0001 → "1e-4", 0.30 → "0.3", 32.0 → "32": as a person writes them."""
    if value != 0 and not 1e-3 <= abs(value) < 1e6:
        return np.format_float_scientific(value, trim="-", exp_digits=1).replace("e+", "e")
    return repr(float(value)).removesuffix(".0")


def _value_text(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (int, float)):
        return human_number(value)
    if isinstance(value, list):
        return "-".join(_value_text(v) for v in value)
    return str(value)


def suffix_for(knob: str, value: Any) -> str:
    """The part of a generated variant name that says knob = value, in the characters a
    written name may use (a model folder `my model` gives `model-my-model`)."""
    if value is None:  # "" or false in a [sweep] list: back to the model's or ablate's default
        text = f"{SUFFIXES.get(knob, knob)}-unset"
    elif knob == "model_config":
        text = "_".join(f"{CONFIG_SUFFIXES.get(k, k)}{_value_text(v)}" for k, v in value.items())
    elif knob == "model":
        text = f"model-{PurePath(str(value)).name}"
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        text = f"{SUFFIXES.get(knob, knob)}{_value_text(value)}"
    else:
        text = f"{SUFFIXES.get(knob, knob)}-{_value_text(value)}"
    return re.sub(r"[^A-Za-z0-9._+-]+", "-", text)


def named_variants(spec: ExperimentSpec) -> dict[str, dict[str, Any]]:
    """Every variant but the baseline, name → overrides, in file order; raises on a duplicate."""
    named: dict[str, dict[str, Any]] = {}
    origin: dict[str, str] = {BASELINE: "the baseline"}
    folded = {BASELINE: BASELINE}  # name.casefold() -> name

    def add(name: str, overrides: dict[str, Any], where: str) -> None:
        if name in origin and origin[name] == where:  # two values of one [sweep] list
            first, second = (toml_value(next(iter(o.values()))) for o in (named[name], overrides))
            raise AblateInputError(
                f"{spec.path}: {where} values {first} and {second} both give the variant name "
                f"{name!r}; give them names of your own in [variants]")
        if name in origin:
            raise AblateInputError(
                f"{spec.path}: variant name {name!r} is produced twice ({origin[name]} and {where}); "
                "rename one or drop the duplicate")
        other = folded.get(name.casefold())
        if other is not None and other != name:
            raise AblateInputError(
                f"{spec.path}: variant names {other!r} ({origin[other]}) and {name!r} ({where}) "
                "differ only in case: their trials' folders are one folder on macOS and Windows; "
                "rename one")
        if len(name) > MAX_NAME_LENGTH:
            raise AblateInputError(
                f"{spec.path}: {where}: variant name {name[:40] + '…'!r} is {len(name)} characters "
                f"long; at most {MAX_NAME_LENGTH}, as it names the trial's folder and SwanLab run")
        origin[name] = where
        folded[name.casefold()] = name
        named[name] = overrides

    for suffix, overrides in spec.variants.items():
        add(f"{BASELINE}_{suffix}", overrides, f"[variants] {suffix}")
    baseline = spec.baseline.to_dict()
    for knob, values in spec.sweep.items():
        listed: list[Any] = []
        for value in values:
            trained = _trained_as(spec, knob, value)
            if trained in listed:  # `[sweep] batch_size = [32, 32]`, also of the baseline's value
                raise AblateInputError(
                    f"{spec.path}: [sweep] {knob} lists {toml_value(value)} twice; list each value "
                    "once")
            listed.append(trained)
            if trained == _trained_as(spec, knob, baseline[knob]):
                continue  # the baseline already runs this value
            add(f"{BASELINE}_{suffix_for(knob, value)}", {knob: value}, f"[sweep] {knob}")
    if spec.ablation:
        changes, mode = spec.ablation.changes, spec.ablation.mode
        if mode in ("leave-one-out", "both"):
            everything = {k: v for overrides in changes.values() for k, v in overrides.items()}
            add(FULL, everything, "[ablation]")
            for name in changes:
                rest = {k: v for other, o in changes.items() if other != name for k, v in o.items()}
                add(f"{MINUS}{name}", rest, f"[ablation.changes] {name}")
        if mode in ("add-one", "both"):
            for name, overrides in changes.items():
                add(f"{PLUS}{name}", dict(overrides), f"[ablation.changes] {name}")
    return named


def _trained_as(spec: ExperimentSpec, knob: str, value: Any) -> Any:
    """What a knob's value trains with: the knobs left unset (None) fall back to [model] name,
    [data] max_train_samples, and model_config adds to [model] config; so a sweep value equal to
    those is the baseline again, not a variant."""
    if knob == "model":
        return value or spec.model.name
    if knob == "model_config":  # added to the baseline's own, as a variant's is (`applied`)
        config = applied(spec.baseline.model_config, {knob: value})[knob]
        return {**(spec.model.config or {}), **(config or {})}
    if knob == "max_train_samples":
        return value or spec.data.max_train_samples
    return value


# transformers' schedulers that take no warmup: a warmup_ratio beside them trains nothing else.
NO_WARMUP_SCHEDULERS = ("constant", "reduce_lr_on_plateau", "greedy")
# transformers' schedulers that train (almost) another's schedule, as no knob sets their arguments:
# scheduler -> (the other, how close, why). Hard restarts' one cycle (num_cycles = 1) is the cosine
# schedule step for step, so it counts as cosine when recipes are compared; polynomial at its
# default power 1 is the linear decay to 1e-7 rather than 0 (another recipe, by a hair: noted only).
SCHEDULE_NOTES = {
    "cosine_with_restarts": ("cosine", "as", "no knob sets its num_cycles, and with one cycle it "
                                             "never restarts"),
    "polynomial": ("linear", "almost as", "no knob sets its power, and at power 1 it is the linear "
                                          "decay, ending at 1e-7 rather than 0"),
}
SAME_SCHEDULES = {name: other for name, (other, how, _) in SCHEDULE_NOTES.items() if how == "as"}


INERT_AS = {"warmup_ratio": 0.0, "epochs": None}  # what a knob inert_knobs names trains as


def inert_knobs(recipe: dict[str, Any]) -> dict[str, str]:
    """Knobs of a resolved recipe that change nothing in its training, each with why."""
    inert = {}
    if recipe["warmup_ratio"] > 0 and recipe["lr_scheduler"] in NO_WARMUP_SCHEDULERS:
        inert["warmup_ratio"] = (f"lr_scheduler = {toml_value(recipe['lr_scheduler'])} has no "
                                 "warmup (constant_with_warmup has)")
    if recipe["max_steps"] > 0:
        inert["epochs"] = f"max_steps = {recipe['max_steps']} sets how long training runs"
    return inert


def overwritten_config(recipe: dict[str, Any]) -> dict[str, str]:
    """Keys of a resolved recipe's model_config that its dropout knobs overwrite (they are applied
    over the config), each with the knob that sets it."""
    knobs = (("dropout", DROPOUT_KEYS), ("classifier_dropout", CLASSIFIER_DROPOUT_KEYS))
    return {key: knob for knob, keys in knobs if recipe[knob] is not None
            for key in recipe["model_config"] or {} if key in keys}


def variants_sets_add(spec: ExperimentSpec) -> list[str]:
    """Notes on the variants a `--set variants.NAME.KNOB=VALUE` adds, the file having no NAME:
    allowed (a variant tried from the command line), but a misspelt NAME would otherwise train
    an extra trial without a word."""
    in_file = tomllib.loads(spec.text).get("variants", {})
    added = dict.fromkeys(name for item in spec.sets if (name := set_variant(item)) is not None
                          and name not in in_file and name in spec.variants)
    return [f"--set adds variant {BASELINE}_{name} ({describe_changes(spec.variants[name])}), "
            f"which {spec.path.name} does not have" for name in added]


def trained_recipe(spec: ExperimentSpec, overrides: dict[str, Any]) -> str:
    """What the baseline with `overrides` trains, as a key to compare: knobs that change nothing
    (warmup beside a constant schedule, epochs beside max_steps, a config dropout a dropout knob
    sets over) left out, a value equal to the baseline's the baseline's, a knob whose baseline
    lives in another section ([model] name, [data] max_train_samples) as that section says."""
    baseline = spec.baseline.to_dict()
    recipe = baseline | applied(baseline["model_config"], overrides)
    recipe["lr_scheduler"] = SAME_SCHEDULES.get(recipe["lr_scheduler"], recipe["lr_scheduler"])
    overwritten = overwritten_config(recipe)
    if overwritten:
        recipe["model_config"] = {k: v for k, v in recipe["model_config"].items() if k not in overwritten}
    # A knob that changes nothing counts as unset: as the value that trains the same (no warmup),
    # so that a recipe setting it matches one that leaves it at its default.
    recipe |= {knob: INERT_AS[knob] for knob in inert_knobs(recipe)}
    return repr(sorted((knob, _trained_as(spec, knob, recipe[knob])) for knob in recipe))


def redundant_variants(spec: ExperimentSpec) -> list[str]:
    """Notes on variants that train what the baseline or an earlier variant already trains, and
    on knobs a recipe sets that change nothing (warmup with a constant schedule, epochs beside
    max_steps): not refused (an A/A comparison can be meant), but worth a line before minutes of
    training."""
    baseline = spec.baseline.to_dict()
    defaults = Recipe().to_dict()

    notes = []
    set_in_baseline = {k: v for k, v in baseline.items() if v != defaults[k]}
    for name, overrides in [(BASELINE, set_in_baseline), *named_variants(spec).items()]:
        inert = inert_knobs(baseline | applied(baseline["model_config"], overrides))
        notes += [f"{name}: {describe_changes({knob: overrides[knob]})} changes nothing: {why}"
                  for knob, why in inert.items() if knob in overrides
                  and (name == BASELINE or overrides[knob] != baseline[knob])]
        recipe = baseline | applied(baseline["model_config"], overrides)
        own = {key: ("model_config", value) for key, value in (overrides.get("model_config") or {}).items()}
        if name == BASELINE:  # [model] config is the baseline's too
            own = {key: ("[model] config", value) for key, value in spec.model.config.items()} | own
            recipe["model_config"] = {**spec.model.config, **(recipe["model_config"] or {})}
        for key, knob in overwritten_config(recipe).items():
            if key in own:
                where, value = own[key]
                notes.append(f"{name}: {where} {key} = {toml_value(value)} changes nothing: {knob} = "
                             f"{toml_value(recipe[knob])} sets it ({knob} = \"\" in "
                             f"{'[baseline]' if name == BASELINE else 'this variant'} leaves it to {where})")
        scheduler = overrides.get("lr_scheduler")
        if scheduler in SCHEDULE_NOTES and (name == BASELINE or scheduler != baseline["lr_scheduler"]):
            other, how, why = SCHEDULE_NOTES[scheduler]
            notes.append(f"{name}: lr_scheduler={scheduler} trains {how} lr_scheduler = "
                         f"{toml_value(other)}: {why}")

    notes += [f"[sweep] {knob} = {toml_value(values)} lists only the baseline's value: it adds no "
              "variant" for knob, values in spec.sweep.items()
              if all(_trained_as(spec, knob, v) == _trained_as(spec, knob, baseline[knob])
                     for v in values)]
    first_with = {trained_recipe(spec, {}): BASELINE}
    for name, overrides in named_variants(spec).items():
        same = first_with.setdefault(trained_recipe(spec, overrides), name)
        if same != name:
            notes.append(f"variant {name!r} ({describe_changes(overrides)}) trains the same recipe "
                         f"as {same!r}")
    return notes


def variant_names(spec: ExperimentSpec) -> list[str]:
    return [BASELINE, *named_variants(spec)]


def reference_of(variant: str, names: list[str] | None = None) -> str:
    """What a variant is compared with: removing a change is measured against the full recipe."""
    if variant.startswith(MINUS) and (names is None or FULL in names):
        return FULL
    return BASELINE


def expand(spec: ExperimentSpec) -> list[TrialSpec]:
    """Baseline first, then variants in file order; seeds inner so each variant's runs sit together."""
    named: list[tuple[str, dict[str, Any]]] = [(BASELINE, {}), *named_variants(spec).items()]
    return [
        TrialSpec.of(spec.baseline, name, seed, overrides)
        for name, overrides in named
        for seed in spec.experiment.seeds
    ]


NO_CHANGES = "—"  # the baseline's changes, in the report and the terminal


def describe_changes(overrides: dict[str, Any]) -> str:
    """How a variant differs from the baseline, as a person would write it."""
    if not overrides:
        return NO_CHANGES
    return ", ".join(f"{key}={_format_value(value)}" for key, value in overrides.items())


def _format_value(value: Any) -> str:
    if isinstance(value, bool):  # as the TOML file writes it
        return str(value).lower()
    if value is None:  # "" or false in the file: back to the model's or ablate's default
        return "unset"
    if isinstance(value, float):
        return human_number(value)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}={_format_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):  # class_weight = [1, 2, 3], read as floats: as the file writes it
        return "[" + ", ".join(_format_value(v) for v in value) + "]"
    return str(value)
