"""The variant table and the whole report as GitHub-flavoured markdown."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from .tables import pruned_step

COLUMNS = (  # (header, column, kind)
    ("train loss", "final_train_loss", "num"),
    ("eval loss final / best", ("final_eval_loss", "best_eval_loss"), "pair"),
    ("grad norm final / max", ("final_grad_norm", "max_grad_norm"), "pair"),
    ("accuracy", "accuracy", "num"),
    ("macro-F1", "macro_f1", "num"),
    ("weighted-F1", "weighted_f1", "num"),
    ("precision", "macro_precision", "num"),
    ("recall", "macro_recall", "num"),
    ("log loss", "log_loss", "num"),
)
TEST_COLUMNS = (("test accuracy", "test_accuracy", "num"), ("test macro-F1", "test_macro_f1", "num"))


def fmt(value: Any, std: Any = math.nan, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    text = f"{value:.{digits}f}"
    if std is not None and not (isinstance(std, float) and math.isnan(std)):
        text += f" ± {std:.{digits}f}"
    return text


def fmt_delta(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    text = f"{value:+.4f}"
    return "+0.0000" if text == "-0.0000" else text  # a difference that rounds to none has no sign


def variant_table(variants: pd.DataFrame, metric: str, with_test: bool, with_ci: bool = False) -> str:
    columns = COLUMNS + (TEST_COLUMNS if with_test else ())
    ci_header = [f"{metric} 95 % CI"] if with_ci else []
    # Means over different numbers of seeds (a seed added to some variants, a failed one, [search]
    # trials on one seed) look alike without their count beside them.
    counts = set(variants.loc[variants["seeds"] > 0, "seeds"]) if len(variants) else set()
    seeds_header = ["seeds"] if len(counts) > 1 else []
    headers = ["variant", "changes", *seeds_header, *[c[0] for c in columns], *ci_header,
               f"Δ {metric}", "runtime"]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for _, row in variants.iterrows():
        name = f"**{row['variant']}** ★" if row["best"] else row["variant"]
        if row["seeds"] == 0:
            pruned = pruned_step(row)
            name += " (no complete trial)" if pruned is None else f" (pruned at step {pruned})"
        cells = [name, row["changes"]] + ([f"{row['seeds']:.0f}"] if seeds_header else [])
        for _, column, kind in columns:
            if kind == "pair":
                cells.append(f"{fmt(row[column[0]])} / {fmt(row[column[1]])}")
            else:
                cells.append(fmt(row[column], row.get(f"{column}_std")))
        if with_ci:
            low, high = row.get("ci_low", math.nan), row.get("ci_high", math.nan)
            cells.append("—" if math.isnan(low) else f"[{low:.4f}, {high:.4f}]")
        cells.append("baseline" if row["variant"] == "baseline" else fmt_delta(row["delta"]))
        cells.append("—" if math.isnan(row["runtime_s"]) else f"{row['runtime_s']:.0f} s")
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines)


def per_class_table(variants: pd.DataFrame, label_names: list[str]) -> str:
    """F1 of each class on validation: shows a class that a variant never predicts."""
    headers = ["variant", *label_names]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for _, row in variants.iterrows():
        cells = [row["variant"]] + [fmt(row.get(f"f1_{name}"), row.get(f"f1_{name}_std"))
                                    for name in label_names]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
