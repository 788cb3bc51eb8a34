"""Assemble and write the report files of a study, from the storage alone."""

from __future__ import annotations

import contextlib
import datetime as dt
import importlib.metadata
import json
import math
import platform
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd

from ..config import ExperimentSpec, from_here, shown_storage, toml_value
from ..errors import AblateInputError, some_of
from ..locking import file_lock, written_beside
from ..metrics import metric_range
from ..models import best_model_reads_pairs, exported_elsewhere, stale_best_model
from ..queue import stale_numbers
from ..records import (
    TrialRecord,
    is_search_variant,
    load_records,
    stopped_early,
    study_info,
)
from ..status import progress_words
from ..variants import (
    BASELINE,
    FULL,
    MINUS,
    PLUS,
    describe_changes,
    reference_of,
    variant_names,
)
from ..version import ablate_version
from .diagnosis import diagnose, learned_nothing, shared_findings
from .effects import (
    Effect,
    compute_effects,
    fmt_interval,
    fmt_p,
    holm_adjusted,
    not_compared,
    one_seed_caveat,
    tested_together,
    variant_interval,
)
from .markdown import (
    code,
    fmt,
    fmt_delta,
    missing_note,
    per_class_table,
    plain_outside_code,
    table_cell,
    variant_table,
)
from .plots import (
    CURVES,
    METRIC_ROWS_EACH_END,
    NAMED_EACH_END,
    curve_legend,
    metric_rows,
    plot_confusions,
    plot_curves,
    plot_learning_curve,
    plot_metric,
    plot_names,
)
from .tables import (
    TRAINED_WITH,
    for_programs,
    in_study_order,
    rows_frame,
    same_score,
    variants_frame,
)

LIBRARIES = ("ablate", "torch", "transformers", "datasets", "optuna", "swanlab", "scikit-learn",
             "scipy", "statsmodels")

LABELS_SHOWN = 20
"""How many class names the Data line names (an intent dataset has 77; the per-class table has
them all)."""


def library_versions() -> dict[str, str]:
    """The versions the report is written under; ablate's as its trials record it (its commit
    too, run from a git checkout)."""
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = (ablate_version() if name == "ablate"
                              else importlib.metadata.version(name))
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def build_best(spec: ExperimentSpec, study: optuna.Study,
               records: list[TrialRecord] | None = None) -> dict[str, Any]:
    """What ranks the variants and names the best trial and best_model/'s (models.best_record,
    models.stale_best_model), without the report's effects, findings and importances.
    `records`: the study's, where the caller has just read them (load_records)."""
    info = study_info(study)
    metric = info["metric"] or spec.experiment.metric
    greater = (info["direction"] or spec.experiment.direction) == "maximize"
    records = load_records(study) if records is None else records
    order = variant_names(spec)
    latest = in_study_order(records, order, spec.experiment.seeds)  # not by trial number
    order += [v for v in dict.fromkeys(r.variant for r in latest) if v not in order]
    chosen = [r for r in latest if r.complete]
    trials = rows_frame(latest)
    return {"metric": metric, "greater_is_better": greater, "info": info, "records": records,
            "chosen": chosen, "trials": trials,
            "variants": variants_frame(trials, metric, greater, order), "order": order,
            "best_model": study.user_attrs.get("best_model")}  # set by models.export_best_model


def build_report(spec: ExperimentSpec, study: optuna.Study,
                 records: list[TrialRecord] | None = None) -> dict[str, Any]:
    """Everything the report shows, computed from the storage: tables, effects, findings.
    `records`: as build_best's."""
    best = build_best(spec, study, records)
    info, metric, greater = best["info"], best["metric"], best["greater_is_better"]
    chosen, variants, order = best["chosen"], best["variants"], best["order"]  # variants: + CIs
    label_names = info.get("label_names") or []
    if len(variants):
        intervals = {name: variant_interval(chosen, name) for name in variants["variant"]}
        low, high = metric_range(metric)  # macro-F1 over two seeds: not [-1.99, 3.55]
        variants["ci_low"] = np.clip([intervals[n].low for n in variants["variant"]], low, high)
        variants["ci_high"] = np.clip([intervals[n].high for n in variants["variant"]], low, high)
    effects = compute_effects(chosen, order, metric, greater, len(label_names))
    importances: dict[str, float] = {}
    if spec.search is not None:
        from ..search import parameter_importances

        importances = parameter_importances(study, list(spec.search.space))
    stored_baseline = info.get("baseline") if isinstance(info.get("baseline"), dict) else {}
    baseline_weight = stored_baseline.get("class_weight", spec.baseline.class_weight)
    findings = {r.key: diagnose(r.result, label_names, class_weighted=r.overrides.get(
        "class_weight", baseline_weight) != "none") for r in chosen}
    return best | {"effects": effects, "holm": holm_adjusted(effects), "findings": findings,
                   "not_compared": not_compared(chosen, order, effects),
                   "label_names": label_names, "importances": importances,
                   "unlearned": _unlearned_variants(chosen, findings),
                   "gone": stale_numbers(study)}  # RUNNING trials whose process is gone


def _unlearned_variants(chosen: list[TrialRecord], findings: dict[str, list[Any]]) -> set[str]:
    """The variants none of whose complete trials learned from the text (Diagnosis: one class
    predicted at the loss of the class frequencies or worse)."""
    variants = {r.variant for r in chosen}
    return {v for v in variants
            if all(learned_nothing(findings[r.key]) for r in chosen if r.variant == v)}


def neither_learned(built: dict[str, Any]) -> list[Effect]:
    """The effects whose variant and reference both learned nothing from the text: their Δ is
    between two constant guesses (always one class against always another), which a verdict
    of **worse**, p < 0.001, would otherwise present as what the change does. Where only one
    side learned nothing, the change did make (or unmake) that: a result."""
    unlearned = built.get("unlearned", set())
    return [e for e in built["effects"] if e.variant in unlearned and e.reference in unlearned]


def _storage_named(spec: ExperimentSpec) -> str:
    """The storage as report.md names it: a SQLite file in the output folder (the default
    `study.db`) by its path there, which stays the same where the folder is moved, cloned with a
    committed report or copied to another machine (its absolute URL made the regenerated
    report differ); any other by its URL, password hidden (report.json keeps the URL)."""
    url, prefix = spec.experiment.storage, "sqlite:///"
    if url.startswith(prefix) and "?" not in url:
        try:
            inside = Path(url[len(prefix):]).relative_to(spec.output_dir)
        except ValueError:
            pass
        else:
            return f"`{inside.as_posix()}` (SQLite, in this report's folder)"
    return f"`{shown_storage(url)}`"


def write_report(spec: ExperimentSpec, study: optuna.Study,
                 built: dict[str, Any] | None = None) -> Path:
    """Write report.md, results.csv and the plots; `built` re-uses a build_report result."""
    out = spec.output_dir
    plots_dir = out / "plots"
    again = spec.command("report")
    _make_folder(plots_dir, again)
    built = built if built is not None else build_report(spec, study)
    write_results_csv(spec, built)
    with _writing(plots_dir, again, folder=True):
        pictures = {p.stem: p for p in plot_curves(built["chosen"], plots_dir, built["order"],
                                                   _ranking(built))}
        pictures |= _summary_plots(built, plots_dir)
        for stale in set(plot_names()) - pictures.keys():  # an earlier report's, not drawn now
            (plots_dir / f"{stale}.png").unlink(missing_ok=True)
    text = render_markdown(spec, built, {k: p.relative_to(out) for k, p in pictures.items()})
    path = out / "report.md"
    _write_whole(path, text, again)
    return path


@contextlib.contextmanager
def _writing(path: Path, again: str, folder: bool = False) -> Iterator[None]:
    """An output that cannot be written (a folder where a file goes, no permission, a full disk)
    is bad input: one line naming it, why, and the command that writes it again; the study's
    trials are in the storage, untouched."""
    try:
        yield
    except OSError as err:
        if err.filename and Path(err.filename).parent == path:  # a plot in the plots folder
            path, folder = Path(err.filename), False
        verb = "created" if folder else "written"
        if path.exists() and path.is_dir() != folder:
            reason = "a file is in its place" if folder else "a folder is in its place"
            hint = f"move it out of the way, then `{again}` writes it again"
        else:
            reason = err.strerror or str(err)
            hint = f"once it can be, `{again}` writes it again"
        raise AblateInputError(f"{path} cannot be {verb}: {reason}; {hint}") from None


@contextlib.contextmanager
def report_lock(path: Path, again: str, on_wait: Any = None) -> Iterator[None]:
    """Hold the output folder's report lock (`path`) while the block reads the study and writes
    its report; a lock file that cannot be opened (a folder in its place, a folder that cannot
    be written) is one line naming it, as a report file that cannot be written is."""
    with contextlib.ExitStack() as held:
        with _writing(path, again):
            held.enter_context(file_lock(path, on_wait))
        yield


def _make_folder(path: Path, again: str) -> None:
    with _writing(path, again, folder=True):
        path.mkdir(parents=True, exist_ok=True)


def _write_whole(path: Path, text: str, again: str) -> None:
    """Write the whole file or leave the previous one (`written_beside`). `again`: the command
    that writes it again, for the error when it cannot be written."""
    with _writing(path, again), written_beside(path) as partial:
        partial.write_text(text, encoding="utf-8")


def write_results_csv(spec: ExperimentSpec, built: dict[str, Any]) -> Path:
    """results.csv: one row per trial (the newest attempt of each variant × seed)."""
    again = spec.command("report")
    _make_folder(spec.output_dir, again)
    path = spec.output_dir / "results.csv"
    _write_whole(path, for_programs(built["trials"]).to_csv(index=False), again)
    return path


def _plain(value: Any) -> Any:
    """numpy and pandas scalars → Python; NaN and infinities → None (JSON has neither)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is pd.NA:  # a missing integer (for_programs)
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def report_json(spec: ExperimentSpec, built: dict[str, Any]) -> dict[str, Any]:
    """The report's numbers in plain JSON types: per-variant table, effects, the search (null
    without one), per-trial rows."""
    constant = neither_learned(built)
    effects = [{"variant": e.variant, "reference": e.reference, "changes": e.changes,
                "delta": e.interval.estimate, "ci_low": e.interval.low, "ci_high": e.interval.high,
                "p_value": e.interval.p_value, "n": e.interval.n, "method": e.interval.method,
                "verdict": e.verdict, "basis": e.basis, "metric": e.metric, "split": e.split,
                "seeds": e.seeds, "p_holm": built["holm"].get(e.variant, math.nan),
                "neither_learned": e in constant}
               for e in built["effects"]]
    return _plain({
        "metric": built["metric"],
        "direction": "maximize" if built["greater_is_better"] else "minimize",
        "label_names": built["label_names"],
        "variants": for_programs(built["variants"]).to_dict(orient="records"),
        "effects": effects,
        "not_compared": built.get("not_compared", {}),  # variant: why What mattered has no row
        "search": search_summary(spec, built),
        "trials": for_programs(built["trials"]).to_dict(orient="records"),
        # Each trial's own findings with their numbers: the markdown's Diagnosis joins those
        # that several trials share into one line that gives only the range of their numbers.
        "diagnosis": {key: [{"kind": f.kind, "sentence": f.sentence, "suggestion": f.suggestion,
                             "numbers": f.numbers, "not_learned": f.not_learned}
                            for f in findings]
                      for key, findings in built.get("findings", {}).items() if findings},
    })


def write_report_json(spec: ExperimentSpec, built: dict[str, Any]) -> Path:
    """report.json: what the markdown report shows, for programs."""
    again = spec.command("report", "--format", "json")
    _make_folder(spec.output_dir, again)
    path = spec.output_dir / "report.json"
    document = {"study": spec.name, "storage": shown_storage(spec.experiment.storage),
                **report_json(spec, built)}
    _write_whole(path, json.dumps(document, indent=2, allow_nan=False) + "\n", again)
    return path


def _ranking(built: dict[str, Any]) -> list[str]:
    """The variants with a complete trial by the selection metric, best first (ties: the study's
    order): which ones a big study's plots name."""
    variants = built["variants"]
    if not len(variants):
        return []
    done = variants[(variants["seeds"] > 0) & variants["value"].notna()]
    sign = 1.0 if built["greater_is_better"] else -1.0
    scores = [(-sign * value, index) for index, value in enumerate(done["value"])]
    names = list(done["variant"])
    return [names[index] for _, index in sorted(scores)]


def _done_variants(built: dict[str, Any]) -> pd.DataFrame:
    variants = built["variants"]
    return variants[variants["seeds"] > 0] if len(variants) else variants


def _summary_plots(built: dict[str, Any], plots_dir: Path) -> dict[str, Path]:
    metric = built["metric"]
    done = _done_variants(built)
    if not len(done):
        return {}
    best = done.loc[done["best"], "variant"].iloc[0] if done["best"].any() else None
    pictures = {"metric": plot_metric(
        list(done["variant"]), list(done["value"]), list(done["ci_low"]), list(done["ci_high"]),
        metric, best, plots_dir / "metric.png", built["greater_is_better"])}
    matrices = {}
    for name in dict.fromkeys([BASELINE, best]):
        found = _summed_confusion(built["chosen"], name)
        if found is not None:
            summed, counted = found
            seeds = sum(1 for r in built["chosen"] if r.variant == name)
            of = f"{counted} of {seeds}" if counted < seeds else f"{seeds}"  # some have none
            matrices[f"{name} (validation" + (f", {of} seeds summed)" if seeds > 1 else ")")] = summed
    if matrices and built["label_names"]:
        pictures["confusion"] = plot_confusions(matrices, built["label_names"],
                                                plots_dir / "confusion.png")
    curve = _learning_curve_points(built)
    if len(curve) >= 2:
        pictures["learning_curve"] = plot_learning_curve(curve, metric,
                                                         plots_dir / "learning_curve.png")
    return pictures


def _summed_confusion(records: list[TrialRecord], variant: str | None
                      ) -> tuple[list[list[int]], int] | None:
    """The variant's validation confusion matrices summed, and how many there were (a trial
    without one is left out of the sum)."""
    matrices = [r.result["validation_confusion"] for r in records
                if r.variant == variant and r.result.get("validation_confusion")]
    return (np.sum(matrices, axis=0).tolist(), len(matrices)) if matrices else None


def _learning_curve_points(built: dict[str, Any]) -> list[tuple[int, float, float, float]]:
    """(training examples, mean, CI low, CI high) of the baseline and of each variant that
    changes only max_train_samples."""
    points = []
    for _, row in built["variants"].iterrows():
        records = [r for r in built["chosen"] if r.variant == row["variant"]]
        if not records or set(records[0].overrides) - {"max_train_samples"}:
            continue
        n = records[0].result.get("train_examples")
        if n:
            points.append((int(n), row["value"], row["ci_low"], row["ci_high"]))
    has_size_variants = any("max_train_samples" in r.overrides for r in built["chosen"])
    return points if has_size_variants else []


# --------------------------------------------------------------------------- markdown


def _verdict_text(effect: Effect) -> str:
    return {"better": "**better**", "worse": "**worse**"}.get(effect.verdict, effect.verdict)


def _what_mattered(built: dict[str, Any]) -> list[str]:
    effects: list[Effect] = built["effects"]
    if not effects:
        if len(built["variants"]) > 1:
            done = {r.variant for r in built["chosen"]}  # with a complete trial
            if len(done) < 2:
                return ["## What mattered", "",
                        f"No comparisons yet: {'only one variant has' if done else 'no variant has'}"
                        " a complete trial (see the trials without a result below).", ""]
            missing = sorted({reference_of(v, built["order"]) for v in done} - done)
            if missing:  # nothing to compare with yet, whatever the seeds
                names = ", ".join(f"`{name}`" for name in missing)
                return ["## What mattered", "",
                        f"No comparisons yet: {names}, which the variants here are compared with, "
                        "has no result. Run it (`--only` its name) to see which differences matter.", ""]
            if len(done - {v for v in done if is_search_variant(v)}) < 2:
                return ["## What mattered", "",
                        "No comparisons: the [search] trials are not compared with the baseline "
                        "here (each ran once, at the first seed, and was picked from many). To test "
                        "the best one, copy its parameters (Search, below) into [variants]: it then "
                        "runs at every seed and gets its interval.", ""]
            reasons = built.get("not_compared", {})
            if any(not reason.startswith("one seed in common") for reason in reasons.values()):
                return ["## What mattered", "", f"No comparisons: {_not_compared(reasons)}.", ""]
            return ["## What mattered", "",
                    "No confidence intervals: these trials ran with one seed and their stored results "
                    "hold no per-example predictions. Run the study with several seeds (or re-run "
                    "its trials) to see which differences are more than noise.", ""]
        return []
    metrics = " or ".join(f"`{m}`" for m in dict.fromkeys(e.metric for e in effects))
    lines = ["## What mattered", "",
             f"Each variant against its reference, largest effect first: the difference in {metrics} "
             "(see below the table), "
             "its 95 % confidence interval and p-value. A difference whose interval contains 0, or "
             "whose p is 0.05 or more, is *within noise*: do not read it as a result.", "",
             "| # | variant | changes | vs | Δ | 95 % CI | p | verdict |",
             "|---|---|---|---|---|---|---|---|"]
    for rank, e in enumerate(effects, 1):
        lines.append(f"| {rank} | {e.variant} | {table_cell(e.changes)} | {e.reference} | "
                     f"{fmt_delta(e.interval.estimate)} | {fmt_interval(e.interval)} | "
                     f"{fmt_p(e.interval.p_value)} | {_verdict_text(e)} |")
    bases = sorted({e.basis for e in effects})
    if len(bases) == 1:
        lines += ["", f"Computed from {bases[0]}.", ""]
    else:  # rows on other seeds (a failed seed drops out of a pair) or splits: say which is which
        lines += [""] + [f"Computed from {basis}: "
                         + ", ".join(f"`{e.variant}`" for e in effects if e.basis == basis) + "."
                         for basis in bases] + [""]
    if built.get("not_compared"):
        lines += [f"Not compared: {_not_compared(built['not_compared'])}.", ""]
    together = tested_together(effects, built["holm"])
    if together:
        lines += [together, ""]
    constant = neither_learned(built)
    if constant:
        one = len(constant) == 1
        every = len(constant) == len(effects) > 1  # a list of every row says less than this
        lines += [("Every comparison here" if every else
                   ", ".join(f"`{e.variant}` vs `{e.reference}`" for e in constant))
                  + ": neither side learned from the text: each of their trials predicts one class "
                  "for every validation example, at a validation loss no better than predicting "
                  "the class frequencies (Diagnosis). "
                  + ("Its Δ compares constant guesses, not what the change does"
                     if one else "Their Δ compare constant guesses, not what the changes do")
                  + ": train longer or at another learning rate before reading "
                  + ("it." if one else "them."), ""]
    caveat = one_seed_caveat(effects)
    if caveat:
        lines += [caveat, ""]
    return lines


def _not_compared(reasons: dict[str, str]) -> str:
    """The variants What mattered has no row for, each with why (effects.not_compared)."""
    return "; ".join(f"`{variant}` ({reason})" for variant, reason in reasons.items())


def _ablation_table(spec: ExperimentSpec, built: dict[str, Any]) -> list[str]:
    """leave-one-out and add-one, side by side: what each change does alone and what removing
    it from the full recipe costs."""
    by_variant = {e.variant: e for e in built["effects"]}
    # [variants] plus_warmup is baseline_plus_warmup by its name alone: not an [ablation] change
    named_so = {f"{BASELINE}_{suffix}" for suffix in spec.variants}
    changes = list(dict.fromkeys(
        name.removeprefix(MINUS).removeprefix(PLUS) for name in built["order"]
        if name.startswith((MINUS, PLUS)) and name not in named_so))
    if not changes:
        return []

    def cell(variant: str) -> str:
        e = by_variant.get(variant)
        if e is None:
            return "—"
        return f"{fmt_delta(e.interval.estimate)} {fmt_interval(e.interval)} {e.verdict}"

    def change_verdict(change: str) -> str:
        """What the change itself does: removing it is 'better' when the change hurts."""
        flip = {"better": "hurts", "worse": "helps"}
        same = {"better": "helps", "worse": "hurts"}
        removed, alone = by_variant.get(MINUS + change), by_variant.get(PLUS + change)
        verdicts = []
        if removed is not None:
            verdicts.append(flip.get(removed.verdict, removed.verdict) + " in the full recipe")
        if alone is not None:
            verdicts.append(same.get(alone.verdict, alone.verdict) + " alone")
        return "; ".join(verdicts) or "—"

    # Which sign is "better without the change": a loss compared over seeds falls when it improves;
    # with one seed a loss is compared through accuracy (the effect's metric), which rises.
    removed = [e for e in built["effects"] if e.variant.startswith(MINUS)]
    lower = {e.metric == built["metric"] and not built["greater_is_better"] for e in removed}
    sign = ("a positive value means the recipe is better without the change" if lower == {False}
            else f"a negative value means the recipe is better without the change (lower "
            f"{built['metric']} is better)" if lower == {True}
            else "its verdict says whether the recipe is better without the change")
    lines = ["## Ablation", "",
             "*Alone*: the change added to the baseline (`baseline_plus_<change>` − `baseline`). "
             f"*Removed*: the full recipe without it (`full_minus_<change>` − `full`); {sign}.", "",
             "| change | alone | removed from full | the change… |", "|---|---|---|---|"]
    for change in changes:
        lines.append(f"| {change} | {cell(PLUS + change)} | {cell(MINUS + change)} | "
                     f"**{change_verdict(change)}** |")
    if FULL in by_variant:
        lines += ["", f"`full` (every change) vs `baseline`: {cell(FULL)}."]
    return lines + [""]


def search_summary(spec: ExperimentSpec, built: dict[str, Any]) -> dict[str, Any] | None:
    """The [search] trials in figures, for report.md's Search section and report.json's `search`
    (one computation, so that the two agree): how many ran and how each ended, the best one's
    parameters and the trials tied with it, Optuna's importances, where each pruned trial stopped.
    None when the study has no search; sampler, pruner and n_trials are None when the file no
    longer has the [search] its trials ran with."""
    searched = [r for r in built["records"] if is_search_variant(r.variant) and not r.superseded]
    if spec.search is None and not searched:
        return None
    names = {r.number: r.variant for r in searched}
    repeated = {r.variant: names.get(r.repeat_of, str(r.repeat_of)) for r in searched
                if r.repeat_of is not None}
    searched = [r for r in searched if r.repeat_of is None]
    states = [r.state for r in searched]
    complete = [r for r in searched if r.complete and r.value is not None]
    best = None
    if complete:
        top = (max if built["greater_is_better"] else min)(complete, key=lambda r: r.value)
        best = {"variant": top.variant, "trial": top.number, "value": top.value,
                "params": top.overrides,
                "tied_with": _tied_with(top.variant, top.value,
                                        ((r.variant, r.value) for r in complete))}
    return {"n_trials": spec.search.n_trials if spec.search else None,
            "sampler": spec.search.sampler if spec.search else None,
            "pruner": spec.search.pruner if spec.search else None,
            "trials": len(searched), "complete": len(complete), "pruned": states.count("PRUNED"),
            "failed": states.count("FAIL"), "best": best, "importances": built["importances"],
            "pruned_at_step": {r.variant: r.pruned_at_step for r in searched
                               if r.state == "PRUNED"},
            "repeated": repeated}  # proposals of an earlier trial's parameters: not trained


def _search_section(spec: ExperimentSpec, built: dict[str, Any]) -> list[str]:
    """[search]: how many trials ran, the best one's parameters, Optuna's importances."""
    search = search_summary(spec, built)
    if search is None:
        return []
    repeated = search["repeated"]
    made = search["trials"] + len(repeated)
    planned = search["n_trials"] or made
    # n_trials lowered after the search ran: "6 of 3 search trials" read as a miscount.
    counted = (f"{made} search trials, made by a [search] section the file no longer has"
               if search["n_trials"] is None else
               f"{made} of {planned} search trials" if made <= planned else
               f"{made} search trials, more than the file's n_trials = {planned} (it was lowered "
               "after they were made)")
    # Without [search] in the file its sampler and pruner are unknown: no "(sampler ?, pruner ?)".
    how = (f" (sampler {search['sampler']}, pruner {search['pruner']})"
           if search["n_trials"] is not None else "")
    lines = ["## Search", "",
             f"{counted}: "
             f"{search['complete']} complete, {search['pruned']} pruned, {search['failed']} failed"
             + (f", {len(repeated)} proposed the parameters of an earlier trial and took its "
                "result, not trained again" if repeated else "")
             + f"{how}.", ""]
    best = search["best"]
    if best is not None:
        lines += [f"- **Best**: `{best['variant']}` — {built['metric']} {fmt(best['value'])} with "
                  + ", ".join(f"`{k} = {toml_value(v)}`" for k, v in best["params"].items())
                  + "".join(f"; {note}" for note in _tied_note(best["tied_with"]))]
    elif search["pruned"] or search["failed"]:  # every trial made was stopped: said, not left out
        stopped = "every one" if not search["failed"] else f"the {search['pruned']} pruned"
        lines += ["- **Best**: none — no search trial completed, so there are no best parameters"
                  + (f"; the pruner stopped {stopped} before its last step (pruner = \"none\" "
                     "trains each to its end)" if search["pruned"] else "")
                  + (f"; {code(spec.command('status'))} says why each failed" if search["failed"]
                     else "")]
    if search["importances"]:
        lines.append("- **Parameter importances** (Optuna): " + ", ".join(
            f"{name} {value:.2f}" for name, value in search["importances"].items()))
    elif best is not None and 0 < len(best["tied_with"]) == search["complete"] - 1:  # all tied
        lines.append(f"- **Parameter importances**: none — every complete search trial scored "
                     f"{built['metric']} {fmt(best['value'])}, so no parameter made a "
                     "difference that could be weighed")
    if repeated:
        lines.append("- **Repeated**: " + ", ".join(
            f"`{name}` = `{earlier}`" for name, earlier in repeated.items()))
    if search["pruned_at_step"]:
        lines.append("- **Pruned**: " + ", ".join(
            f"`{name}` at step {'?' if step is None else step}"
            for name, step in search["pruned_at_step"].items()))
    return lines + [""]


def _diagnosis(built: dict[str, Any]) -> list[str]:
    findings = {key: items for key, items in built["findings"].items() if items}
    lines = ["## Diagnosis", ""]
    if not findings:
        return lines + ["No trial shows overfitting, unstable gradients, divergence, a collapsed "
                        "class or an unfinished run in its curves.", ""]
    shared = shared_findings(findings, built["label_names"])
    if any(len(line.keys) > 1 for line in shared):
        lines += ["A finding that several trials share is one line naming them; a number that "
                  "differs between them is the range of theirs (`step 40–120`).", ""]
    for line in shared:
        lines.append(f"- **{line.named()}** — {line.kind.replace('_', ' ')}: {line.sentence} "
                     f"*{line.suggestion}*")
    return lines + [""]


def _plot_captions(built: dict[str, Any]) -> dict[str, str]:
    """What a big study's plots leave out (plots.metric_rows, plots.curve_legend), said under the
    first picture of each kind; a small study's plots show everything and have none. The baseline
    is named only where it is drawn (a baseline with no complete trial is not)."""
    metric, captions = built["metric"], {}
    done = _done_variants(built)
    names = list(done["variant"]) if len(done) else []
    shown = metric_rows(names, list(done["value"]) if len(done) else [], built["greater_is_better"])
    if shown is not None:
        baseline = ("the baseline, `full` and " if BASELINE in names and FULL in names
                    else "the baseline and " if BASELINE in names  # it may have no complete trial
                    else "`full` and " if FULL in names else "")
        captions["metric"] = (
            f"*The metric plot shows {baseline}the {METRIC_ROWS_EACH_END} best and "
            f"{METRIC_ROWS_EACH_END} worst of the {len(names)} variants by {metric}, best first; "
            f"the {len(names) - len(shown)} between them are left out (the Results table has "
            "every variant).*")
    legend = curve_legend(list(dict.fromkeys(r.variant for r in built["chosen"])), _ranking(built))
    if legend is not None:
        grey = [f"{legend.grey_variants} other variants"] if legend.grey_variants else []
        grey += [f"{legend.grey_search} other [search] trials"] if legend.grey_search else []
        best_search = " and the best [search] trial" if legend.best_search else ""
        baseline = "the baseline, " if BASELINE in legend.named else ""
        baseline += ("`full` (the reference of the `full_minus_*` variants), "
                     if FULL in legend.named else "")
        captions["curves"] = (
            f"*The curve plots name {baseline}the {NAMED_EACH_END} best and "
            f"{NAMED_EACH_END} worst variants by {metric}{best_search} ({len(legend.named)} of "
            f"{legend.variants}); the {' and '.join(grey)} are the thin grey lines, each group one "
            "legend entry.*")
    return captions


def render_markdown(spec: ExperimentSpec, built: dict[str, Any], pictures: dict[str, Path]) -> str:
    metric, trials, variants = built["metric"], built["trials"], built["variants"]
    seeds = sorted(set(trials["seed"])) if len(trials) else spec.experiment.seeds
    lines = [f"# Ablation study {code(spec.name)}", ""]
    if spec.experiment.description:
        lines += [spec.experiment.description, ""]
    # pruned is neither complete nor failed; running and queued trials are the study's too
    states = trials["state"].value_counts() if len(trials) else {}
    n_done, n_failed, n_pruned, n_running, n_queued = (
        int(states.get(state, 0)) for state in ("COMPLETE", "FAIL", "PRUNED", "RUNNING", "WAITING"))
    direction = "higher is better" if built["greater_is_better"] else "lower is better"
    lines.append(f"- **Selection metric**: `{metric}` on the validation split ({direction}); each "
                 "trial's best checkpoint by it is the one evaluated.")
    if len(variants) and variants["best"].any():
        best = variants[variants["best"]].iloc[0]
        reference = reference_of(best["variant"], built["order"])
        lines.append(f"- **Best variant**: `{best['variant']}` — {metric} {fmt(best['value'])}"
                     + ("" if best["variant"] == BASELINE
                        else f" ({fmt_delta(best['delta'])} vs {reference})"
                        if not math.isnan(best["delta"]) else f" ({reference} has no result yet)")
                     + _best_variant_caveats(built, best))
    lines += _best_model_line(spec, built)
    # What the trials ran on, as stored: a report run without the run's --set options (another
    # dataset, model config) describes the study, not the file.
    resolved = spec.to_dict()
    data, model = (built["info"].get(key) or resolved[key] for key in ("data", "model"))
    lines += [
        f"- **Data**: `{data['dataset']}`" + (f" ({data['config']})" if data.get("config") else "")
        + f"; labels: {some_of(built['label_names'], LABELS_SHOWN)}",
        f"- **Model**: `{model['name']}`" + (f" with {model['config']}" if model.get("config") else ""),
        f"- **Seeds**: {', '.join(map(str, seeds))}"
        + (" — values are mean ± std over seeds" if len(seeds) > 1 else
           " — one seed: each value is one trial's, with no std or confidence interval over seeds"
           + (" (give `seeds` several values for them)" if len(spec.experiment.seeds) < 2
              else " (`ablate run` trains the file's other seeds)"))
        + (f" ([search] trials: seed {seeds[0]} only)" if len(seeds) > 1 and any(
            is_search_variant(r.variant) for r in built["records"]) else ""),
        f"- **Trials**: {n_done} complete, " + (f"{n_pruned} pruned, " if n_pruned else "")
        + f"{n_failed} failed" + (f", {n_running} running" if n_running else "")
        + (f", {n_queued} queued" if n_queued else "")
        + f"; storage {_storage_named(spec)}",
        "",
    ]
    lines += _what_mattered(built)
    lines += _ablation_table(spec, built)
    lines += _search_section(spec, built)
    with_test = _has_test_metrics(trials)
    lines += ["## Results", "",
              "Validation metrics of each trial's selected checkpoint; precision and recall are macro "
              "averages" + ("; test metrics are of the same checkpoint" if with_test else "")
              + ". Loss and gradient-norm columns come "
              "from the training curves: train loss at the last logged step (the mean of the steps "
              "since the step logged before it), eval loss at the last evaluation and the lowest of "
              "any (the selected checkpoint's, by the metric, is the log loss column: the same "
              "cross-entropy without class weights or label smoothing), grad norm at the last "
              "logged step and the highest logged"
              + ("; the pairs are means over seeds, without their std" if len(seeds) > 1 else "")
              + ". Δ is against the baseline"
              # `full_minus_*` only where such a row is: elsewhere a term the study never uses
              + (" (`full_minus_*`: against `full`)"
                 if any(reference_of(name, built["order"]) == FULL for name in variants["variant"])
                 else "") + ".",
              ""]
    if len(variants):
        lines += [variant_table(variants, metric, with_test, with_ci=len(seeds) > 1), ""]
        missing = missing_note(variants, trials, with_test, built["label_names"])
        lines += [missing, ""] if missing else []
        unlike = _train_loss_note(spec, built)
        lines += [unlike, ""] if unlike else []
        picked = _evaluations_note(built, with_test)
        lines += [picked, ""] if picked else []
        if built["label_names"] and any(f"f1_{n}" in variants.columns for n in built["label_names"]):
            unseen = _validation_lacks(built["chosen"], built["label_names"])
            lines += ["### F1 per class (validation)", "",
                      per_class_table(variants, built["label_names"], unseen), ""]
            if unseen:
                shown = some_of([repr(name) for name in unseen])
                them = "them" if len(unseen) > 1 else "it"
                lines += [f"*no rows*: validation has no row of class{'es' if len(unseen) > 1 else ''} "
                          f"{shown}, so {'their' if len(unseen) > 1 else 'its'} F1 there is "
                          f"undefined, not a sign of what the model does with {them}; the macro "
                          f"averages count {them} as 0, alike for every variant.", ""]
    else:
        lines += ["No trial has run yet.", ""]
    if "learning_curve" in pictures:
        lines += ["### Learning curve", "", f"![learning curve]({pictures['learning_curve'].as_posix()})",
                  ""]
    if built["chosen"]:
        lines += _diagnosis(built)
    if pictures:
        lines += ["## Pictures", ""]
        captions = _plot_captions(built)
        for key in ("metric", "confusion", "train_loss", "eval_loss", "grad_norm", "learning_rate"):
            if key in pictures:
                lines += [f"![{key.replace('_', ' ')}]({pictures[key].as_posix()})", ""]
                caption = captions.pop("metric" if key == "metric" else "curves"
                                        if key in CURVES else "", None)
                lines += [caption, ""] if caption else []
    failed = trials[trials["state"] != "COMPLETE"] if len(trials) else trials
    if len(failed):
        lines += ["## Trials without a result", ""]
        # Written while a run (or worker) trains the study: its process takes the queued trials
        # in turn, not a next run; the running trials' rows name it, as `status` does.
        by_number = {r.number: r for r in built["records"]}
        live = list(dict.fromkeys(r.worker for r in built["records"] if r.state == "RUNNING"
                                  and r.worker and r.number not in built["gone"]))
        taken = (f"queued: taken in turn by the process{'es' if len(live) > 1 else ''} training "
                 f"this study now ({', '.join(live)}), else by the next run" if live
                 else "queued: the next run trains it")
        for _, row in failed.iterrows():
            key = f"{row['variant']}-s{row['seed']}"
            # Optuna's WAITING is the Trials line's "queued"; a queued retry's folder holds its
            # earlier attempt's log, not its own
            queued = row["state"] == "WAITING"
            error = row["error"] or (taken if queued else row["state"].lower())
            record = by_number.get(row["trial"])
            if row["state"] == "RUNNING" and record is not None and record.worker:
                error = ", ".join([f"running in {record.worker}", *progress_words(record, None)])
            if row["trial"] in built["gone"]:
                error = "running, but its process is gone; the next run trains it again"
            log = f"trials/{key}/trial.log"
            whose = "its earlier attempt's log" if queued else "log"
            where = f" — {whose}: `{log}`" if (spec.output_dir / log).is_file() else ""
            lines.append(f"- `{key}` (trial {row['trial']}): {error}{where}")
        lines.append("")
    lines += _trial_notes(built)
    lines += _environment(spec, built)
    return plain_outside_code("\n".join(lines))


# The train-loss note names this many variants, then counts them.
TRAIN_LOSS_NAMED = 10


def _train_loss_note(spec: ExperimentSpec, built: dict[str, Any]) -> str | None:
    """Where the table's variants train on differently defined losses (class weights, label
    smoothing): their train loss column is each one's own objective, not one quantity, which a
    reader would compare (label smoothing alone reads as a worse fit). Eval loss and log loss
    are the plain cross-entropy in every variant (train.make_loss), so they compare."""
    stored = built["info"].get("baseline")
    stored = stored if isinstance(stored, dict) else {}
    base = {knob: stored.get(knob, getattr(spec.baseline, knob))
            for knob in ("class_weight", "label_smoothing")}
    losses: dict[str, dict[str, Any]] = {}
    for record in built["chosen"]:  # the variants whose train loss the table shows
        losses.setdefault(record.variant, {knob: record.overrides.get(knob, value)
                                           for knob, value in base.items()})
    plain = {"class_weight": "none", "label_smoothing": 0}
    own = {name: {k: v for k, v in loss.items() if v != plain[k] and v is not None}
           for name, loss in losses.items()}
    if len({json.dumps(loss, sort_keys=True) for loss in own.values()}) < 2:
        return None  # one loss for all: their train losses compare
    changed = [name for name, loss in own.items() if loss]
    named = some_of([f"`{name}` ({describe_changes(own[name])})" for name in changed],
                    TRAIN_LOSS_NAMED)
    knobs = {knob for name in changed for knob in own[name]}
    how = " or ".join(word + ("s" if len(changed) == 1 else "")  # one variant "weights it"
                      for knob, word in (("label_smoothing", "smooth"), ("class_weight", "weight"))
                      if knob in knobs)
    effects = [text for knob, text in (
        ("label_smoothing", "label smoothing keeps it above 0 however well a model fits"),
        ("class_weight", "class weights change its scale")) if knob in knobs]
    others = ", the other variants do not" if len(changed) < len(own) else ""
    return (f"Train loss is each variant's own training loss, not the same loss in every row: "
            f"{named} {how} it{others}; compare train losses only between rows that train on the "
            f"same loss ({'; '.join(effects)}). Eval loss and log loss are the plain cross-entropy "
            "in every variant (no class weights, no label smoothing), and compare.")


# The evaluations note names this many variants of each count it gives, then counts them.
EVALUATIONS_NAMED = 5


def _evaluations_note(built: dict[str, Any], with_test: bool) -> str | None:
    """Where the rows picked their checkpoints from different numbers of evaluations (eval_steps
    against once per epoch, other batch sizes or epochs, early stopping): a validation value is
    the best of a trial's evaluations, picked on validation itself, so the row with more to pick
    from scores better there by chance. Names the fewest and the most evaluations per trial."""
    counts: dict[str, set[int]] = {}
    for record in built["chosen"]:
        evaluations = record.result.get("eval_history")
        if isinstance(evaluations, list) and evaluations:
            counts.setdefault(record.variant, set()).add(len(evaluations))
    groups: dict[tuple[int, int], list[str]] = {}
    for variant, numbers in counts.items():
        groups.setdefault((min(numbers), max(numbers)), []).append(f"`{variant}`")
    if len(groups) < 2:
        return None
    order = sorted(groups)
    fewest, most = order[0], order[-1]

    def count(key: tuple[int, int]) -> str:
        return str(key[0]) if key[0] == key[1] else f"{key[0]}–{key[1]}"

    where = (f"{count(fewest)} per trial: {some_of(groups[fewest], EVALUATIONS_NAMED)}"
             + ("; " if len(order) == 2 else "; up to ")
             + f"{count(most)}: {some_of(groups[most], EVALUATIONS_NAMED)}")
    after = ("The test columns, of the same checkpoints, are not picked on." if with_test else
             "With no test split, What mattered compares these values too.")
    return ("Validation values are each trial's best evaluation, picked on validation itself, and "
            f"the rows picked from different numbers of evaluations ({where}): a row with more to "
            f"pick from scores better there by chance alone. {after}")


def _validation_lacks(chosen: list[TrialRecord], label_names: list[str]) -> list[str]:
    """The classes no row of validation has, by the trials' validation confusion matrices (a
    class the carve left out, or a split that lacks it): their F1 there is 0 by convention, not
    a model that never predicts them. Empty when no trial has a matrix of the classes."""
    supports = [[sum(row) for row in r.result["validation_confusion"]] for r in chosen
                if isinstance(r.result.get("validation_confusion"), list)
                and len(r.result["validation_confusion"]) == len(label_names)]
    if not supports:
        return []
    return [name for i, name in enumerate(label_names) if all(s[i] == 0 for s in supports)]


def _best_variant_caveats(built: dict[str, Any], best: Any) -> str:
    """What the best variant's validation mean does not say: the variants tied with it, that it
    rests on fewer seeds than the others have (a mean over other seeds is not a like-for-like
    ranking), and, when What mattered does not find it better than its reference, that verdict,
    so the headline is not read as a result that the paired comparison contradicts."""
    table = built["variants"]
    notes = _tied_note(_tied_with(best["variant"], best["value"],
                                  zip(table["variant"], table["value"], strict=True)))
    most = int(built["variants"]["seeds"].max())
    if 0 < int(best["seeds"]) < most:
        notes.append(f"mean of its {int(best['seeds'])} complete seed(s); others have up to {most}")
    effect = next((e for e in built["effects"] if e.variant == best["variant"]), None)
    if effect is not None and effect.verdict != "better":
        notes.append(f"against {effect.reference} on {effect.split}: {_verdict_text(effect)} "
                     "(What mattered)")
    if best["variant"] in built.get("unlearned", set()):
        notes.append("it has not learned from the text: its trials predict one class (Diagnosis)")
    else:
        notes += _dead_class_note(built, best["variant"])
    reference = reference_of(best["variant"], built["order"])
    trained_under = {_trained_under(r) for r in built["chosen"]
                     if r.variant in (best["variant"], reference)} - {None}
    if len(trained_under) > 1:
        whose = "its trials" if reference == best["variant"] else f"its trials and {reference}'s"
        notes.append(f"{whose} were trained under different library versions (Environment)")
    return "".join(f"; {note}" for note in notes)


def _dead_class_note(built: dict[str, Any], variant: str) -> list[str]:
    """The classes of validation that every trial of `variant` never predicts there (Diagnosis:
    class collapse), and, when the selection metric is not macro_f1 (accuracy or a weighted
    average hardly counts a small class), the variant macro_f1 ranks first where it is another:
    metric = "accuracy" on skewed classes names a model that ignores the minority best."""
    keys = [r.key for r in built["chosen"] if r.variant == variant]
    dead: list[str] | None = None
    for key in keys:
        classes = [name[len("support_"):] for f in built["findings"].get(key, [])
                   if f.kind == "class_collapse" and "validation_size" in f.numbers
                   for name in f.numbers if name.startswith("support_")]
        dead = classes if dead is None else [c for c in dead if c in classes]
    if not dead:
        return []
    whose = ("its selected checkpoint never predicts" if len(keys) == 1
             else "its trials' selected checkpoints never predict")
    note = f"{whose} {' or '.join(repr(c) for c in dead)} on validation (Diagnosis)"
    table = built["variants"]
    if built["metric"] != "macro_f1" and "macro_f1" in table and table["macro_f1"].notna().any():
        first = table.loc[table["macro_f1"].idxmax(), "variant"]
        if first != variant:
            note += f"; by macro_f1, `{first}` ranks first"
    return [note]


def _tied_with(best: str, value: Any, scores: Iterable[tuple[str, Any]]) -> list[str]:
    """The others among `scores` (name, value) that scored the best's `value` (tables.same_score:
    a mean summed in another order is the same score)."""
    return [name for name, score in scores if name != best and same_score(score, value)]


# The tied-with note names this many of the variants tied with the best, then counts them.
TIED_NAMED = 5


def _tied_note(tied: list[str]) -> list[str]:
    """A headline names one best (the first in the study's order, as idxmax and max pick it):
    the note names the others that scored the same, which it would otherwise hide (the first
    TIED_NAMED of many: every trial of a cut-short search scores alike, 299 names)."""
    if not tied:
        return []
    return [f"tied with {some_of([f'`{name}`' for name in tied], TIED_NAMED)} (the first in the "
            "study's order is named)"]


def _has_test_metrics(trials: pd.DataFrame) -> bool:
    """Whether any trial scored a test split: the Results columns, the caveats and the Best
    model line's `evaluate` command (which refuses data without one) all follow it."""
    return len(trials) > 0 and bool(trials["test_accuracy"].notna().any())


def _best_model_line(spec: ExperimentSpec, built: dict[str, Any]) -> list[str]:
    """Where the best trial's model is, and how to use it (commands that run from here)."""
    best = built.get("best_model")
    if not best:
        return []
    stale = stale_best_model(spec, built)
    if stale:
        return [f"- **Best model**: {stale}"]
    elsewhere = exported_elsewhere(spec, best)
    if elsewhere:  # another machine's run exported it; this output folder has none
        return [f"- **Best model**: trial `{best['key']}`, its best checkpoint by {best['metric']} "
                f"({fmt(best['value'])}), is in `{elsewhere}`, exported by the run there"]
    folder = from_here(spec.output_dir / best["path"])
    trials = built["trials"]
    # `ablate evaluate FILE` scores the test split, and refuses data without one: name the split
    # there is (the report's own validation numbers, picked on it: a test_size carves a test split)
    evaluate = (spec.command("evaluate") if _has_test_metrics(trials)
                else spec.command("evaluate", "--split", "validation"))
    # the folder as a Python string literal: a study name with `"` ended it, and the rest ran
    folder_literal = json.dumps(str(folder), ensure_ascii=False)
    pipeline = code(f'transformers.pipeline("text-classification", model={folder_literal})')
    if best_model_reads_pairs(spec, best):  # each text takes its second text
        uses = (f"{code(spec.command('predict', 'some text', '--pair', 'second text'))}, "
                f"{code(evaluate)}, or {pipeline} on text pairs "
                "(`{\"text\": ..., \"text_pair\": ...}`)")
    else:
        uses = f"{code(spec.command('predict', 'some text'))}, {code(evaluate)}, or {pipeline}"
    return [f"- **Best model**: `{best['path']}/` — trial `{best['key']}`, its best checkpoint by "
            f"{best['metric']} ({fmt(best['value'])}); use it with {uses}"]


def trial_notes(result: dict[str, Any]) -> list[str]:
    """What happened to a trial beside training: early stopping (where it stopped, and which
    step's checkpoint is the one the report shows), a resume, an out-of-memory back-off."""
    notes = []
    if stopped_early(result):
        selected = result.get("best_step")
        notes.append(f"early stopping ended it at step {result['steps']} of {result['max_steps']}"
                     + (f"; its selected checkpoint, whose metrics the report shows, is step "
                        f"{selected}'s" if selected is not None else ""))
    if result.get("resumed_from_step"):
        step, earlier = result["resumed_from_step"], result.get("earlier_attempts_s")
        if earlier is not None:
            also = f" (its runtime includes the {earlier:.0f} s earlier attempts took to reach it)"
        else:  # a checkpoint an earlier ablate wrote, or a result stored before
            also = (f" (its runtime is of the resumed attempt only: steps {step + 1} to "
                    f"{result['steps']})" if result.get("steps") is not None else "")
        notes.append(f"resumed from its checkpoint at step {step}{also}")
    for attempt in result.get("oom_backoff") or []:
        notes.append(f"out of memory at batch_size {attempt['batch_size']} × accumulation "
                     f"{attempt['gradient_accumulation_steps']}")
    if result.get("oom_backoff"):
        notes.append(f"ran at batch_size {result['batch_size']} × accumulation "
                     f"{result['gradient_accumulation_steps']} (the same effective batch)")
    return notes


def _trial_notes(built: dict[str, Any]) -> list[str]:
    lines = [f"- `{r.key}`: {'; '.join(trial_notes(r.result))}" for r in built["chosen"]
             if trial_notes(r.result)]
    return ["## Trial notes", "", *lines, ""] if lines else []


def _device(result: dict[str, Any]) -> str:
    """What a trial trained on: the device's name, and how many processes a data-parallel
    trial took (rank 0's device is one of them)."""
    name = result.get("device_name") or result.get("device", "?")
    processes = result.get("devices_per_trial") or 1
    return f"{name} × {processes} processes (data-parallel)" if processes > 1 else name


# The Environment's line on library versions names this many trials of each version set.
VERSIONS_NAMED = 5


def _trained_under(record: TrialRecord) -> tuple[tuple[str, str], ...] | None:
    """The library versions a trial trained under, as stored (train.trained_versions); None for
    a trial stored by an older ablate, which kept none."""
    versions = record.result.get("versions")
    if not isinstance(versions, dict) or not versions:
        return None
    return tuple((library, str(versions.get(library, "?"))) for library in TRAINED_WITH)


def _versions_lines(built: dict[str, Any], now: dict[str, str]) -> list[str]:
    """What the Environment says of the versions the complete trials trained under (`now`: the
    report's own): nothing where they are the report's; one line where they are others, or
    where trials of two or more version sets are compared (a library upgraded while the study
    trained). A trial without a record is not counted as another version set, but is named
    where others have one."""
    groups: dict[tuple[tuple[str, str], ...] | None, list[str]] = {}
    for record in sorted(built["chosen"], key=lambda r: r.number):
        groups.setdefault(_trained_under(record), []).append(f"`{record.key}`")
    unrecorded = groups.pop(None, [])
    if not groups:
        return []
    if len(groups) == 1:
        (versions,) = groups
        text = ", ".join(f"{library} {version}" for library, version in versions)
        if unrecorded:
            verb = "were" if len(unrecorded) > 1 else "was"
            return [f"- Trials trained under {text}; {some_of(unrecorded, VERSIONS_NAMED)} {verb} "
                    "stored by an older ablate, which did not record their versions"]
        if any(now.get(library) != version for library, version in versions):
            return [f"- Trials trained under {text} (the versions above are this report's)"]
        return []
    differ = [library for library in TRAINED_WITH if len({dict(v)[library] for v in groups}) > 1]
    parts = [", ".join(f"{library} {dict(versions)[library]}" for library in differ)
             + f": {some_of(keys, VERSIONS_NAMED)}" for versions, keys in groups.items()]
    if unrecorded:
        parts.append(f"not recorded (stored by an older ablate): "
                     f"{some_of(unrecorded, VERSIONS_NAMED)}")
    return [f"- **Trained under different library versions**: {'; '.join(parts)}. Differences "
            "between these trials may come from the versions as well as from their recipes (the "
            "same seed under other versions can give other numbers)"]


def _environment(spec: ExperimentSpec, built: dict[str, Any]) -> list[str]:
    versions = library_versions()
    trials = built["trials"]
    runtime = trials["runtime_s"].sum() if len(trials) else math.nan
    devices = sorted({_device(r.result) for r in built["chosen"]})
    precisions = sorted({r.result.get("precision", "?") for r in built["chosen"]})
    return [
        "## Files", "",
        "- `results.csv`: one row per trial (machine-readable)",
        "- `experiment.toml`: the experiment file as run; `resolved.json`: every default resolved",
        *(["- `best_model/`: the best trial's model (Hugging Face format, with its tokenizer and "
           "label names)"] if built.get("best_model")
          and not exported_elsewhere(spec, built["best_model"]) else []),
        "",
        "## Environment", "",
        f"- {', '.join(f'{k} {v}' for k, v in versions.items())}",
        *_versions_lines(built, versions),
        f"- Python {platform.python_version()} on {platform.machine()}; device: "
        f"{'; '.join(devices) or '—'}; precision: {', '.join(precisions) or '—'}; total trial time "
        f"{fmt(runtime, digits=0)} s",
        f"- generated {dt.datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z')}; regenerate "
        f"with {code(spec.command('report'))}",
        "",
    ]
