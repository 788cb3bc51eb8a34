"""The variant table and the whole report as GitHub-flavoured markdown."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

import pandas as pd

from .tables import SEEDS_OF, partial_seeds, pruned_step

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


# A difference (or an interval's bound) below 0.00005 is shown to two significant digits, up to
# this many decimals: '+0.0000' beside **better** read as no difference. Smaller is float rounding.
DELTA_DECIMALS_AT_MOST = 8


def fmt_delta(value: Any) -> str:
    """A signed difference to 4 decimals, or more where 4 would show one that is not 0 as 0."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    text = f"{value:+.4f}"
    if float(text) == 0 and value != 0:
        decimals = min(DELTA_DECIMALS_AT_MOST, 1 - math.floor(math.log10(abs(value))))
        text = f"{value:+.{decimals}f}"
    return "+0.0000" if float(text) == 0 else text  # a difference that rounds to none has no sign


def of_seeds(row: Any, column: str) -> str:
    """" (2 of 3 seeds)" after a mean over some of the row's seeds only: without it a mean that
    left out a trial lacking the metric reads as the mean of every seed the row has."""
    counted = partial_seeds(row, column)
    return "" if counted is None else f" ({counted} of {row['seeds']:.0f} seeds)"


def mean_cell(row: Any, column: str) -> str:
    """A row's mean ± std of `column`, with the seeds it is over where that is not all of them."""
    return fmt(row[column], row.get(f"{column}_std")) + of_seeds(row, column)


# A code span (between runs of as many backticks, `code` makes such) or fenced block, left as
# written: a backslash there would show.
_CODE = re.compile(r"```.*?```|(?<!`)(?P<fence>`+)(?!`)[^\n]*?(?<!`)(?P=fence)(?!`)", re.S)


def plain_outside_code(markdown: str) -> str:
    """`markdown` with each `$` outside code escaped: GitHub reads text between two dollar signs
    as math, so class names `$`, `$$`, `$5-$10` (price tiers) in the Data line, the per-class
    table or a Diagnosis sentence came out as formulas. `\\$` is a plain `$` in every CommonMark
    renderer. So is `&lt;` a `<`, written for each that would open an HTML tag or comment there:
    a page drops a tag it does not know, and class names `<unk>`, `<neg>` showed as nothing."""
    def escaped(text: str) -> str:
        return re.sub(r"<(?=[A-Za-z/!?])", "&lt;", re.sub(r"(?<!\\)\$", r"\\$", text))

    parts, end = [], 0
    for span in _CODE.finditer(markdown):
        parts += [escaped(markdown[end:span.start()]), span.group()]
        end = span.end()
    return "".join(parts) + escaped(markdown[end:])


def code(text: Any) -> str:
    """`text` as one code span, whatever backticks it holds: a file or study name with one (a
    colleague's `n`&#39;;touch x;#.toml`) ended a one-backtick span early, and the rest was
    markdown, whose `&#39;` a page shows as `'`: a command copied from the page closed its
    quotes and ran what they held. The span's backticks outnumber any run of them inside; a
    space pads each end where the text begins or ends with a backtick (or both ends with a
    space: markdown takes one off each)."""
    text = str(text)
    fence = "`" * (max(map(len, re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text[:1] == "`" or text[-1:] == "`" or (
        text[:1] == text[-1:] == " " and text.strip()) else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def table_cell(text: Any) -> str:
    """Text as one markdown table cell: a `|` in it (a class name `billing | refunds`, a model
    folder) would end the cell, leaving a header with more cells than its rows, which markdown
    shows as plain text."""
    return str(text).replace("|", "\\|")


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
        cells = [name, table_cell(row["changes"])]
        cells += [f"{row['seeds']:.0f}"] if seeds_header else []
        for _, column, kind in columns:
            if kind == "pair":
                cells.append(" / ".join(fmt(row[part]) + of_seeds(row, part) for part in column))
            else:
                cells.append(mean_cell(row, column))
        if with_ci:
            low, high = row.get("ci_low", math.nan), row.get("ci_high", math.nan)
            cells.append("—" if math.isnan(low)
                         else f"[{low:.4f}, {high:.4f}]" + of_seeds(row, "value"))
        cells.append("baseline" if row["variant"] == "baseline" else fmt_delta(row["delta"]))
        cells.append("—" if math.isnan(row["runtime_s"]) else f"{row['runtime_s']:.0f} s")
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines)


CLASS_COLUMNS = 12
"""Up to this many classes (or no more than there are variants) are the per-class table's
columns; more are its rows, one per class: 77 intents made a table 78 columns wide."""


def per_class_table(variants: pd.DataFrame, label_names: list[str],
                    no_rows: Sequence[str] = ()) -> str:
    """F1 of each class on validation: shows a class that a variant never predicts; a class of
    `no_rows` (validation has no row of it) reads "no rows", not its conventional F1 of 0."""
    rows = [row for _, row in variants.iterrows()]

    def f1(row: pd.Series, name: str) -> str:
        if name in no_rows:
            return "no rows"
        return fmt(row.get(f"f1_{name}"), row.get(f"f1_{name}_std")) + of_seeds(row, f"f1_{name}")

    if len(label_names) <= max(CLASS_COLUMNS, len(rows)):
        headers = ["variant", *(table_cell(name) for name in label_names)]
        body = [[row["variant"], *(f1(row, name) for name in label_names)] for row in rows]
    else:
        headers = ["class", *(table_cell(row["variant"]) for row in rows)]
        body = [[table_cell(name), *(f1(row, name) for row in rows)] for name in label_names]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cells) + " |" for cells in body]
    return "\n".join(lines)


MISSING_NAMED = 20  # trials the note under the results table names; results.csv has them all


def missing_note(variants: pd.DataFrame, trials: pd.DataFrame, with_test: bool,
                 label_names: list[str]) -> str | None:
    """Under the tables: what *(k of n seeds)* means and which complete trials lack which
    metric, where a row's mean of it is over some of its seeds; None where every mean is over
    all of its row's seeds."""
    if not any(column.endswith(SEEDS_OF) for column in variants.columns):
        return None
    columns = [(header, column if kind == "pair" else (column,))
               for header, column, kind in COLUMNS + (TEST_COLUMNS if with_test else ())]
    columns += [(f"F1 {name}", (f"f1_{name}",)) for name in label_names]
    rows = {row["variant"]: row for _, row in variants.iterrows()}
    lacking: dict[str, list[str]] = {}
    for _, trial in trials[trials["state"] == "COMPLETE"].iterrows():
        row = rows.get(trial["variant"])
        if row is None:
            continue
        headers = [header for header, parts in columns
                   if any(partial_seeds(row, part) is not None and pd.isna(trial.get(part))
                          for part in parts)]
        if headers:
            lacking[f"{trial['variant']}-s{trial['seed']}"] = headers
    if not lacking:
        return None
    named = [f"`{key}` ({', '.join(headers)})" for key, headers in
             list(lacking.items())[:MISSING_NAMED]]
    more = len(lacking) - len(named)
    return ("*(k of n seeds)*: the mean ± std of only the k seeds whose trial has the metric, of "
            "the row's n complete seeds; not comparable with a mean over all n. Missing: "
            + ", ".join(named) + (f" and {more} more trials (results.csv has each trial's "
                                  "metrics)" if more else "") + ".")
