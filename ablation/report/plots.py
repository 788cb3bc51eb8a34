"""Training curves as PNG: one line per variant (and seed), against epochs so that variants with
different batch sizes line up. A big study (hundreds of variants or [search] trials) names only a
few in its plots, so that each stays readable and of a bounded size."""

from __future__ import annotations

import logging
import os
import sys
import textwrap
import warnings
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any


def _not_about_its_config_folder(record: logging.LogRecord) -> bool:
    return record.funcName != "_get_config_or_cache_dir"


# HOME read-only or unset (a container, a service account): matplotlib cannot make its config
# folder, uses a temporary one for the process and said so in two `WARNING matplotlib:` lines on
# every report, naming nothing the user can act on. An MPLCONFIGDIR the user set stands, and so do
# its warnings where it cannot be written: theirs to fix.
_matplotlib_log = logging.getLogger("matplotlib")
if not os.environ.get("MPLCONFIGDIR"):  # matplotlib reads an empty one as unset
    _matplotlib_log.addFilter(_not_about_its_config_folder)
import matplotlib  # noqa: E402

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402

_matplotlib_log.removeFilter(_not_about_its_config_folder)  # the folder is chosen once, by now

from ..locking import written_beside  # noqa: E402
from ..records import TrialRecord, is_search_variant  # noqa: E402
from ..variants import BASELINE, FULL, human_number  # noqa: E402
from .tables import same_score  # noqa: E402

CURVES = {  # file stem -> (curve, key, title)
    "train_loss": ("history", "loss", "Training loss"),
    "eval_loss": ("eval_history", "loss", "Validation loss"),
    "grad_norm": ("history", "grad_norm", "Gradient norm (before clipping)"),
    "learning_rate": ("history", "learning_rate", "Learning rate"),
}
# tab10 has ten colours: each further ten variants take the next line style, so that no two
# variants look alike in a plot and its legend.
LINE_STYLES = ("-", "--", ":", "-.")
# A big study's named variants: tab10 without its grey (#7f7f7f), which beside the thin grey
# lines of the variants left out read as one of them; each further nine take the next style.
NAMED_COLORS = tuple(color for i, color in enumerate(plt.get_cmap("tab10").colors) if i != 7)


# Every PNG a report may draw (the curves, then the summary plots): one it no longer draws (a
# learning curve after its sweep was left out) is removed, rather than left beside the report.
SUMMARY_PLOTS = ("metric", "confusion", "learning_curve")


# A confusion matrix writes each cell's count up to this many classes (900 numbers; past it
# colour alone), each cell as wide as its longest count (DIGIT_WIDTH inches a digit at 8 points)
# or, without counts, as tall as a class name (NAME_HEIGHT); where that takes more than the
# MATRIX_ROOM inches the 4.2 × 4 inch figure leaves the matrix, the figure grows by the excess.
MAX_COUNTED_CLASSES = 30
DIGIT_WIDTH = 0.075
NAME_HEIGHT = 0.16
MATRIX_ROOM = 2.6


# Fonts with the CJK glyphs DejaVu Sans lacks (label names such as 差评 / 好评): those installed are
# its fallbacks in the confusion matrices, glyph by glyph.
CJK_FONTS = ("Noto Sans CJK SC", "Noto Sans CJK JP", "Noto Sans CJK KR", "Source Han Sans SC",
             "Noto Sans SC", "WenQuanYi Zen Hei", "WenQuanYi Micro Hei", "Microsoft YaHei", "SimHei",
             "PingFang SC", "Hiragino Sans GB", "Arial Unicode MS")


# Up to this many variants a curve plot names each in its legend (its own colour and style) and
# the metric plot has a row for each: a small study's plots. Beyond, a legend of every variant is
# taller than the figure (and slow to place), and a metric plot of 300 rows 15,000 pixels tall.
MAX_NAMED = 12
NAMED_EACH_END = 5  # beyond MAX_NAMED the curve plots name the baseline, the best and worst 5
METRIC_ROWS_EACH_END = 12  # beyond 2 × this + 1 rows the metric plot shows the baseline, best, worst
GREY = "0.6"
BIG_LEGEND_ROOM = 1.5  # inches a big study's 9-inch curve plot leaves its legend (short names)
NAMES_ROOM = 1.2  # inches the metric plot's 7-inch figure leaves its row names (baseline_lr3e-3)
# Curves whose peaks lie this many times apart or more (learning rates of 1e-4 and 5e-3, a loss
# that blew up beside those that did not) get a log axis: on a linear one the lowest lie flat on
# the zero line. Below the smallest learning rate a log axis shows LOG_DECADES_BELOW decades of
# its decay, not the decades down to a last step's 1e-9.
LOG_SPREAD = 10.0
LOG_DECADES_BELOW = 2


def plot_names() -> tuple[str, ...]:
    return (*CURVES, *SUMMARY_PLOTS)


@dataclass(frozen=True)
class CurveLegend:
    """Who a big study's curve plots name: the rest are thin grey lines under one legend entry
    for the [search] trials and one for the other variants."""

    named: list[str]  # in colour, in the legend, best first (the baseline and `full` first)
    best_search: str | None  # the best [search] trial, named among them
    grey_search: int  # [search] trials drawn grey
    grey_variants: int  # other variants drawn grey
    variants: int  # all the variants drawn


def curve_legend(drawn: list[str], ranking: list[str]) -> CurveLegend | None:
    """None where every variant drawn is named (up to MAX_NAMED: a small study's plots, as they
    always were). `drawn`: the variants with a curve; `ranking`: variants by the selection metric,
    best first."""
    if len(drawn) <= MAX_NAMED:
        return None
    present = set(drawn)
    # the references: the baseline, and `full`, which each full_minus_* variant is measured against
    references = [name for name in (BASELINE, FULL) if name in present]
    ranked = [name for name in ranking if name in present and name not in references]
    best_search = next((name for name in ranked if is_search_variant(name)), None)
    named = list(dict.fromkeys(
        references + ranked[:NAMED_EACH_END]
        + ([best_search] if best_search else []) + ranked[-NAMED_EACH_END:]))
    grey = [name for name in drawn if name not in named]
    searches = sum(1 for name in grey if is_search_variant(name))
    return CurveLegend(named, best_search, searches, len(grey) - searches, len(drawn))


def plot_curves(records: list[TrialRecord], out_dir: Path, variant_order: list[str],
                ranking: list[str] | None = None) -> list[Path]:
    """Writes one PNG per curve kind; returns the files written. `ranking` (variants best first)
    picks the variants a big study's plots name (curve_legend)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    legend = curve_legend(list(dict.fromkeys(r.variant for r in records)), ranking or [])
    written = []
    for stem, (curve, key, title) in CURVES.items():
        fig, ax = plt.subplots(figsize=(7, 4) if legend is None else (9, 4), dpi=110)
        drawn = (_draw_every_variant(ax, records, variant_order, curve, key) if legend is None
                 else _draw_named(ax, records, legend, curve, key))
        if not drawn:
            plt.close(fig)
            continue
        ax.set_title(title)
        ax.set_xlabel("epoch")
        log = _log_axis_for_spread_peaks(ax, learning_rate=stem == "learning_rate")
        ax.set_ylabel(key.replace("_", " ") + (" (log scale)" if log else ""))
        ax.grid(alpha=0.3)
        if legend is not None and ax.get_legend() is not None:  # beside the 9-inch figure's axes
            _widen_by_legend(fig, ax.get_legend(), BIG_LEGEND_ROOM)
        tight = _tight_layout(fig) if legend is not None else _legend_clear_of_lines(fig, ax)
        path = out_dir / f"{stem}.png"
        _save(fig, path, tight=tight)
        written.append(path)
    return written


def spans_a_factor_of_ten(values: list[float]) -> bool:
    """Whether positive values lie LOG_SPREAD times apart or more: on a linear axis the smallest
    would be a flat line on zero beside the largest."""
    return bool(values) and min(values) > 0 and max(values) >= LOG_SPREAD * min(values)


def _log_axis_for_spread_peaks(ax: plt.Axes, learning_rate: bool) -> bool:
    """A log y axis where the curves' peaks span a factor of ten: learning rates of 1e-4 and 5e-3,
    a loss or gradient norm that blew up beside those that did not (on a linear axis all but the
    highest lie flat on zero); returns whether it is one. Learning rates are written as the file
    writes them (1e-4, 5e-3), their decay to 0 running off the bottom as on a linear axis it
    meets zero; other values as a person writes them (0.5, 10, 1e6), the axis down to the
    lowest value drawn."""
    import numpy as np

    peaks = [float(ys[np.isfinite(ys)].max()) for ys in
             (np.asarray(line.get_ydata(), dtype=float) for line in ax.get_lines())
             if np.isfinite(ys).any()]  # of a curve that became inf or NaN, its finite values
    if not spans_a_factor_of_ten(peaks):
        return False
    ax.set_yscale("log")
    text = _scientific if learning_rate else human_number
    if learning_rate:
        ax.set_ylim(bottom=max(ax.get_ylim()[0], min(peaks) / 10**LOG_DECADES_BELOW))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: text(value)))
    ax.yaxis.set_minor_formatter(FuncFormatter(  # 5e-3 between 1e-3 and 1e-2; 2e-3 and the rest bare
        lambda value, _: text(value) if _scientific(value).startswith("5e") else ""))
    return True


def _scientific(value: float) -> str:
    """1e-4, 5e-3: short, and the way a learning rate is written in the file."""
    import numpy as np

    return np.format_float_scientific(value, precision=2, trim="-", exp_digits=1).replace("e+", "e")


def _legend_clear_of_lines(fig: Figure, ax: plt.Axes) -> bool:
    """A small study's legend at matplotlib's best place inside the axes; where even that covers
    a line (long variant names, lines through every corner), beside the axes instead, the figure
    wider by the legend so that the axes keep their size. Returns _tight_layout's answer."""
    legend = ax.legend(fontsize=8)
    tight = _tight_layout(fig)
    fig.draw_without_rendering()  # places the legend
    box = legend.get_window_extent()
    if not any(_crosses(line, box) for line in ax.get_lines()):
        return tight
    legend.remove()
    legend = ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    _widen_by_legend(fig, legend, -0.2)
    return _tight_layout(fig)


def _widen_by_legend(fig: Figure, legend: Any, room: float) -> None:
    """Widen the figure by what a legend beside its axes takes beyond `room` inches, so that long
    variant names do not squeeze the axes."""
    fig.draw_without_rendering()
    fig.set_figwidth(fig.get_figwidth() + max(0.0, legend.get_window_extent().width / fig.dpi
                                              - room))


def _crosses(line: Any, box: Any) -> bool:
    """Whether a drawn line (its segments or its points) passes through `box` (pixels)."""
    path = line.get_transform().transform_path(line.get_path())
    return bool(path.intersects_bbox(box, filled=False) or box.count_contains(path.vertices))


def _points(record: TrialRecord, curve: str, key: str) -> list[dict]:
    return [p for p in record.result.get(curve, []) if p.get(key) is not None]


def _marker(curve: str, points: list[dict]) -> str | None:
    """Evaluations are points; so is a curve of one point (a trial of one step), which a line
    alone leaves invisible."""
    return "o" if curve == "eval_history" or len(points) == 1 else None


def _draw_every_variant(ax: plt.Axes, records: list[TrialRecord], variant_order: list[str],
                        curve: str, key: str) -> bool:
    """A small study: each variant in its colour and style, named once (its seeds alike)."""
    colors = plt.get_cmap("tab10")
    labelled: set[str] = set()
    for record in records:
        points = _points(record, curve, key)
        if not points:
            continue
        index = variant_order.index(record.variant) if record.variant in variant_order else 0
        label = record.variant if record.variant not in labelled else None
        labelled.add(record.variant)
        ax.plot([p["epoch"] for p in points], [p[key] for p in points], label=label,
                color=colors(index % 10), linestyle=LINE_STYLES[index // 10 % len(LINE_STYLES)],
                linewidth=1.4, alpha=0.85, marker=_marker(curve, points), markersize=3)
    return bool(labelled)


def _draw_named(ax: plt.Axes, records: list[TrialRecord], legend: CurveLegend, curve: str,
                key: str) -> bool:
    """A big study: the variants not named as thin grey lines beneath, one legend entry for the
    [search] trials and one for the rest; the named ones over them in colour, best first in the
    legend (the baseline first), the grey entries last."""
    grey_labels = {True: f"other [search] trials ({legend.grey_search})",
                   False: f"other variants ({legend.grey_variants})"}
    handles: dict[str, Any] = {}  # legend label -> one of its lines
    for record in records:
        points = _points(record, curve, key)
        if not points:
            continue
        marker = _marker(curve, points)
        xs, ys = [p["epoch"] for p in points], [p[key] for p in points]
        if record.variant in legend.named:
            index = legend.named.index(record.variant)
            label = record.variant + (" (best [search] trial)"
                                      if record.variant == legend.best_search else "")
            (line,) = ax.plot(xs, ys, color=NAMED_COLORS[index % len(NAMED_COLORS)],
                              linestyle=LINE_STYLES[index // len(NAMED_COLORS) % len(LINE_STYLES)],
                              linewidth=1.6,
                              alpha=0.9, marker=marker, markersize=3, zorder=3)
        else:
            search = is_search_variant(record.variant)
            label = grey_labels[search]
            (line,) = ax.plot(xs, ys, color=GREY, linestyle="-" if search else "--",
                              linewidth=0.6, alpha=0.5, marker=marker, markersize=1.5, zorder=2)
        handles.setdefault(label, line)
    order = [name + (" (best [search] trial)" if name == legend.best_search else "")
             for name in legend.named] + [grey_labels[True], grey_labels[False]]
    labels = [label for label in order if label in handles]
    if labels:  # beside the lines, not over them; a fixed place costs nothing to find
        ax.legend([handles[label] for label in labels], labels, fontsize=8, loc="upper left",
                  bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    return bool(handles)


def _tight_layout(fig: Figure) -> bool:
    """tight_layout, or False where it cannot fit the labels (very long variant names): matplotlib
    would warn "Tight layout not applied" on the user's terminal; the file is then saved with a
    tight bounding box instead, the same picture with nothing cut off."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fig.tight_layout()
    fitted = True
    for warning in caught:
        if "Tight layout not applied" in str(warning.message):
            fitted = False
        else:  # not ours to hide
            warnings.warn_explicit(warning.message, warning.category, warning.filename,
                                   warning.lineno)
    return fitted


def _save(fig: Figure, path: Path, tight: bool = True) -> None:
    """Save, then close the figure also when saving fails (an unwritable file): figures left open
    pile up in pyplot. `tight`: False where tight_layout could not fit the figure. Drawn whole
    beside `path`, then put in place (`written_beside`)."""
    try:
        kind = path.suffix.lstrip(".") or "png"
        with written_beside(path) as partial:
            # no `Software: Matplotlib version...`: a matplotlib upgrade that draws the same
            # pixels leaves a committed plot as it was
            fig.savefig(partial, format=kind, bbox_inches=None if tight else "tight",
                        metadata={"Software": None} if kind == "png" else None)
    except OSError as err:  # named as the picture, not the file beside it
        raise OSError(err.errno, err.strerror, str(path)) from None
    finally:
        plt.close(fig)


def _bar(mean: float, low: float, high: float) -> list[list[float]]:
    """Error-bar lengths; never negative (a zero-width interval may differ from the mean in its
    last bit)."""
    return [[max(0.0, mean - low)], [max(0.0, high - mean)]]


def metric_rows(names: list[str], means: list[float], greater_is_better: bool) -> list[int] | None:
    """The rows a big study's metric plot shows (indices into names): the baseline (and `full`),
    then the METRIC_ROWS_EACH_END best and worst, best first; None where every row fits (2 × that
    + 1)."""
    if len(names) <= 2 * METRIC_ROWS_EACH_END + 1:
        return None
    sign = 1.0 if greater_is_better else -1.0
    others = sorted((i for i, name in enumerate(names) if name not in (BASELINE, FULL)),
                    key=lambda i: (means[i] != means[i], -sign * means[i] if means[i] == means[i]
                                   else 0.0))  # best first, no value last
    # the references first: the baseline, and `full`, which full_minus_* variants are measured against
    references = [names.index(name) for name in (BASELINE, FULL) if name in names]
    return references + others[:METRIC_ROWS_EACH_END] + others[-METRIC_ROWS_EACH_END:]


def plot_metric(names: list[str], means: list[float], lows: list[float], highs: list[float],
                metric: str, best: str | None, path: Path, greater_is_better: bool = True) -> Path:
    """The selection metric per variant, with 95 % CI error bars where there are several seeds;
    a big study's: the baseline, the best and the worst (metric_rows), a row saying how many are
    left out between them."""
    shown = metric_rows(names, means, greater_is_better)
    tied = sum(1 for name, mean in zip(names, means, strict=True)  # as report.md's "tied with"
               if best in names and name != best and same_score(mean, means[names.index(best)]))
    left_out = 0
    if shown is not None:
        left_out = len(names) - len(shown)
        names, means, lows, highs = ([values[i] for i in shown]
                                     for values in (names, means, lows, highs))
    rows = len(names) + (1 if left_out else 0)
    fig, ax = plt.subplots(figsize=(7, 0.45 * rows + 1.4), dpi=110)
    y = list(range(rows))[::-1]
    if left_out:  # a gap row after the baseline and the best
        gap = len(names) - METRIC_ROWS_EACH_END
        gap_y = y.pop(gap)
        ax.axhline(gap_y, color="grey", linestyle=":", linewidth=0.8)
    bars = any(low == low and high == high for low, high in zip(lows, highs, strict=True))
    labels = []
    for yi, name, mean, low, high in zip(y, names, means, lows, highs, strict=True):
        color = "tab:orange" if name == best else "tab:blue"
        if low == low and high == high:  # not NaN
            ax.errorbar(mean, yi, xerr=_bar(mean, low, high), fmt="o", color=color, capsize=4)
            labels.append(name)
        else:  # one seed (mean_ci): beside rows with bars, hollow and said, not a sure point
            ax.plot(mean, yi, "o", color=color, markerfacecolor="none" if bars else color)
            labels.append(f"{name} (1 seed)" if bars else name)
    key: dict[str, Any] = {}  # what the orange point and the dotted line are, above the axes
    if best in names:
        ties = f", tied with {tied} other{'s' if tied > 1 else ''}" if tied else ""
        key[f"best variant (★){ties}"] = Line2D([], [], color="tab:orange", marker="o",
                                               linestyle="none")
    if names and names[0] == "baseline" and means[0] == means[0]:
        key[f"baseline's {metric}"] = ax.axvline(means[0], color="grey", linestyle=":",
                                                 linewidth=1)
    if key:
        ax.legend(list(key.values()), list(key), loc="lower right", bbox_to_anchor=(1.0, 1.0),
                  ncol=len(key), fontsize=8, frameon=False, borderaxespad=0.2)
    ticks = list(y)
    if left_out:
        ticks.insert(gap, gap_y)
        labels.insert(gap, f"… {left_out} not shown …")
    ax.set_yticks(ticks, labels, fontsize=8)
    fig.draw_without_rendering()  # long names widen the figure, not squeeze the axes
    names_width = max(label.get_window_extent().width for label in ax.get_yticklabels()) / fig.dpi
    fig.set_figwidth(fig.get_figwidth() + max(0.0, names_width - NAMES_ROOM))
    ax.set_xlabel(f"{metric} (validation" + ("; bars: 95 % CI over seeds)" if bars
                                             else "; one seed: no CI)"))
    ax.grid(axis="x", alpha=0.3)
    _save(fig, path, tight=_tight_layout(fig))
    return path


def plot_confusions(matrices: dict[str, list[list[int]]], label_names: list[str], path: Path) -> Path:
    """Confusion matrices (rows true, columns predicted), side by side, normalised per true class."""
    from matplotlib import font_manager

    installed = {font.name for font in font_manager.fontManager.ttflist}
    families = ["DejaVu Sans", *(name for name in CJK_FONTS if name in installed)]
    with plt.rc_context({"font.family": families}), warnings.catch_warnings():
        # said below; matplotlib < 3.9 words it "missing from current font"
        warnings.filterwarnings("ignore", message="Glyph .* missing from (current )?font")
        _draw_confusions(matrices, label_names, path)
    drawn: set[int] = set()
    for family in families:
        drawn |= set(font_manager.get_font(font_manager.findfont(family)).get_charmap())
    lacking = [name for name in label_names if any(ord(c) not in drawn for c in name)]
    if lacking:
        print(f"note: {path}: no installed font draws the label names "
              f"{', '.join(map(repr, lacking[:5]))} (they show as boxes); install a font that has "
              "them (Noto Sans CJK for Chinese, Japanese and Korean) and run `ablate report` again",
              file=sys.stderr)
    return path


def _draw_confusions(matrices: dict[str, list[list[int]]], label_names: list[str],
                     path: Path) -> None:
    import numpy as np

    classes = len(label_names)
    widest = max((len(str(int(count))) for matrix in matrices.values() for row in matrix
                  for count in row), default=1)
    written = classes <= MAX_COUNTED_CLASSES
    cell = widest * DIGIT_WIDTH + 0.1 if written else NAME_HEIGHT  # inches a cell needs
    grow = max(0.0, classes * cell - MATRIX_ROOM)  # beyond the 4.2 × 4 figure's matrix
    fig, axes = plt.subplots(1, len(matrices), figsize=((4.2 + grow) * len(matrices), 4 + grow),
                             dpi=110, squeeze=False)
    for ax, (title, matrix) in zip(axes[0], matrices.items(), strict=True):
        counts = np.asarray(matrix, dtype=float)
        rates = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
        ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
        for i in range(counts.shape[0] if written else 0):
            for j in range(counts.shape[1]):
                ax.text(j, i, f"{int(counts[i, j])}", ha="center", va="center", fontsize=8,
                        color="white" if rates[i, j] > 0.6 else "black")
        ticks = range(len(label_names))
        # as written: matplotlib reads text between two `$` as math (price tiers `$$` stopped the
        # report with its traceback; `$5-$10` was drawn as 5 − 10)
        ax.set_xticks(ticks, label_names, rotation=45, ha="right", fontsize=8, parse_math=False)
        ax.set_yticks(ticks, label_names, fontsize=8, parse_math=False)
        ax.set_xlabel("predicted" if written else "predicted (shade: share of the true class)")
        ax.set_ylabel("true")
        ax.set_title(title, fontsize=9)
    _wrap_titles(fig)
    tight = _tight_layout(fig)  # a long class name: no warning, a wider picture
    # grown, the square matrices leave tight_layout room it misjudges: their titles were cut off
    _save(fig, path, tight=tight and not grow)


def _wrap_titles(fig: Figure) -> None:
    """A title wider than its axes (a long variant name beside "(validation, 3 seeds summed)")
    runs into its neighbour's: wrapped to the axes' width, at its spaces where it can be."""
    fig.draw_without_rendering()
    for ax in fig.axes:
        title, width = ax.title.get_text(), ax.title.get_window_extent().width
        room = ax.get_window_extent().width
        if width > room:
            ax.set_title(textwrap.fill(title, max(8, int(len(title) * room / width * 0.95)),
                                       break_on_hyphens=False), fontsize=9)


def plot_learning_curve(points: list[tuple[int, float, float, float]], metric: str,
                        path: Path) -> Path:
    """The metric against the number of training examples: (n, mean, low, high) per point."""
    points = sorted(points)
    fig, ax = plt.subplots(figsize=(6, 3.8), dpi=110)
    xs = [p[0] for p in points]
    means = [p[1] for p in points]
    ax.plot(xs, means, "-", color="tab:blue")
    bars = any(low == low and high == high for _, _, low, high in points)
    labels = []
    for n, mean, low, high in points:
        if low == low and high == high:  # not NaN
            ax.errorbar(n, mean, yerr=_bar(mean, low, high), fmt="o", color="tab:blue", capsize=4)
            labels.append(str(n))
        else:  # one seed: beside points with bars, hollow and said, as in the metric plot
            ax.plot(n, mean, "o", color="tab:blue", zorder=3,  # white: the line not through it
                    markerfacecolor="white" if bars else "tab:blue")
            labels.append(f"{n}\n(1 seed)" if bars else str(n))
    ax.set_xscale("log")
    ax.set_xticks(xs, labels)  # the sizes trained, not 3×10¹ and 2×10²
    ax.set_xticks([], minor=True)
    ax.set_xlabel("training examples (log scale)")
    ax.set_ylabel(f"{metric} (validation)")
    ax.set_title("Learning curve" + (" (bars: 95 % CI over seeds)" if bars else " (one seed: no CI)"))
    ax.grid(alpha=0.3)
    tight = _tight_layout(fig)
    fig.draw_without_rendering()
    boxes = [label.get_window_extent() for label in ax.get_xticklabels()]
    if any(a.overlaps(b) for a, b in pairwise(boxes)):  # sizes close on the log axis: upright
        ax.set_xticks(xs, [label.replace("\n", " ") for label in labels])  # one line each
        ax.tick_params(axis="x", labelrotation=90)
        tight = _tight_layout(fig)
    _save(fig, path, tight=tight)
    return path
