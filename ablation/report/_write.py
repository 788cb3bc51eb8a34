"""Assemble and write the report files of a study."""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import math
import platform
from pathlib import Path
from typing import Any

import optuna

from ..config import ExperimentSpec
from ..records import latest_by_key, load_records, study_info
from ..variants import variant_names
from .markdown import fmt, fmt_delta, per_class_table, variant_table
from .plots import plot_curves
from .tables import trials_frame, variants_frame

LIBRARIES = ("ablate", "torch", "transformers", "datasets", "optuna", "swanlab", "scikit-learn")


def library_versions() -> dict[str, str]:
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def build_report(spec: ExperimentSpec, study: optuna.Study) -> dict[str, Any]:
    """Everything the report shows, computed from the storage: tables, texts, the chosen records."""
    info = study_info(study)
    metric = info["metric"] or spec.experiment.metric
    greater = (info["direction"] or spec.experiment.direction) == "maximize"
    records = load_records(study)
    trials = trials_frame(records)
    order = [n for n in variant_names(spec)]
    order += [v for v in dict.fromkeys(trials["variant"]) if v not in order] if len(trials) else []
    variants = variants_frame(trials, metric, greater, order)
    return {"metric": metric, "greater_is_better": greater, "info": info, "records": records,
            "trials": trials, "variants": variants, "order": order}


def write_report(spec: ExperimentSpec, study: optuna.Study) -> Path:
    out = spec.output_dir
    out.mkdir(parents=True, exist_ok=True)
    built = build_report(spec, study)
    trials, _variants = built["trials"], built["variants"]
    trials.to_csv(out / "results.csv", index=False)
    chosen = [r for r in latest_by_key(built["records"]).values() if r.complete]
    plots = plot_curves(chosen, out / "plots", built["order"])
    text = render_markdown(spec, built, [p.relative_to(out) for p in plots])
    path = out / "report.md"
    path.write_text(text, encoding="utf-8")
    return path


def render_markdown(spec: ExperimentSpec, built: dict[str, Any], plots: list[Path]) -> str:
    metric, trials, variants = built["metric"], built["trials"], built["variants"]
    info = built["info"]
    seeds = sorted(set(trials["seed"])) if len(trials) else spec.experiment.seeds
    lines = [f"# Ablation study `{spec.name}`", ""]
    if spec.experiment.description:
        lines += [spec.experiment.description, ""]
    n_done = int((trials["state"] == "COMPLETE").sum()) if len(trials) else 0
    n_failed = int((trials["state"] == "FAIL").sum()) if len(trials) else 0
    direction = "higher is better" if built["greater_is_better"] else "lower is better"
    lines += [
        f"- **Selection metric**: `{metric}` on the validation split ({direction}); each trial's "
        "best checkpoint by it is the one evaluated.",
    ]
    if len(variants) and variants["best"].any():
        best = variants[variants["best"]].iloc[0]
        lines.append(f"- **Best variant**: `{best['variant']}` — {metric} {fmt(best['value'])}"
                     + ("" if best["variant"] == "baseline"
                        else f" ({fmt_delta(best['delta'])} vs baseline)"))
    lines += [
        f"- **Data**: `{spec.data.dataset}`" + (f" ({spec.data.config})" if spec.data.config else "")
        + f"; labels: {', '.join(info.get('label_names') or [])}",
        f"- **Model**: `{spec.model.name}`"
        + (f" with {spec.model.config}" if spec.model.config else ""),
        f"- **Seeds**: {', '.join(map(str, seeds))}"
        + (" — values are mean ± std over seeds" if len(seeds) > 1 else ""),
        f"- **Trials**: {n_done} complete, {n_failed} failed; storage `{spec.experiment.storage}`",
        "",
        "## Results",
        "",
        "Validation metrics of each trial's selected checkpoint; precision and recall are macro "
        "averages; test metrics are of the same checkpoint. Loss and gradient-norm columns come "
        "from the training curves.",
        "",
    ]
    with_test = len(trials) > 0 and trials["test_accuracy"].notna().any()
    if len(variants):
        lines += [variant_table(variants, metric, with_test), ""]
        label_names = info.get("label_names") or []
        if label_names and any(f"f1_{n}" in variants.columns for n in label_names):
            lines += ["### F1 per class (validation)", "",
                      per_class_table(variants, label_names), ""]
    else:
        lines += ["No trial has run yet.", ""]
    if plots:
        lines += ["## Curves", ""]
        for plot in plots:
            lines += [f"![{plot.stem.replace('_', ' ')}]({plot.as_posix()})", ""]
    failed = trials[trials["state"] != "COMPLETE"] if len(trials) else trials
    if len(failed):
        lines += ["## Trials without a result", ""]
        for _, row in failed.iterrows():
            key = f"{row['variant']}-s{row['seed']}"
            error = row["error"] or row["state"].lower()
            lines.append(f"- `{key}` (trial {row['trial']}): {error} — log: "
                         f"`trials/{key}/trial.log`")
        lines.append("")
    versions = library_versions()
    runtime = trials["runtime_s"].sum() if len(trials) else math.nan
    lines += [
        "## Files",
        "",
        "- `results.csv`: one row per trial (machine-readable)",
        "- `experiment.toml`: the experiment file as run; `resolved.json`: every default resolved",
        "",
        "## Environment",
        "",
        f"- {', '.join(f'{k} {v}' for k, v in versions.items())}",
        f"- Python {platform.python_version()} on {platform.machine()}; total trial time "
        f"{fmt(runtime, digits=0)} s",
        f"- generated {dt.datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z')}; "
        f"regenerate with `ablate report {spec.path.name}`",
        "",
    ]
    return "\n".join(lines)
