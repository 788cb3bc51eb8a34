"""Training curves as PNG: one line per variant (and seed), against epochs so that variants with
different batch sizes line up."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from ..records import TrialRecord  # noqa: E402

CURVES = {  # file stem -> (curve, key, title)
    "train_loss": ("history", "loss", "Training loss"),
    "eval_loss": ("eval_history", "loss", "Validation loss"),
    "grad_norm": ("history", "grad_norm", "Gradient norm (before clipping)"),
    "learning_rate": ("history", "learning_rate", "Learning rate"),
}
# tab10 has ten colours: each further ten variants take the next line style, so that no two
# variants look alike in a plot and its legend.
LINE_STYLES = ("-", "--", ":", "-.")


# Every PNG a report may draw (the curves, then the summary plots): one it no longer draws (a
# learning curve after its sweep was left out) is removed, rather than left beside the report.
SUMMARY_PLOTS = ("metric", "confusion", "learning_curve")


# Fonts with the CJK glyphs DejaVu Sans lacks (label names such as 差评 / 好评): those installed are
# its fallbacks in the confusion matrices, glyph by glyph.
CJK_FONTS = ("Noto Sans CJK SC", "Noto Sans CJK JP", "Noto Sans CJK KR", "Source Han Sans SC",
             "Noto Sans SC", "WenQuanYi Zen Hei", "WenQuanYi Micro Hei", "Microsoft YaHei", "SimHei",
             "PingFang SC", "Hiragino Sans GB", "Arial Unicode MS")


def plot_names() -> tuple[str, ...]:
    return (*CURVES, *SUMMARY_PLOTS)


def plot_curves(records: list[TrialRecord], out_dir: Path, variant_order: list[str]) -> list[Path]:
    """Writes one PNG per curve kind; returns the files written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    colors = plt.get_cmap("tab10")
    written = []
    for stem, (curve, key, title) in CURVES.items():
        fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
        labelled: set[str] = set()
        for record in records:
            points = [p for p in record.result.get(curve, []) if p.get(key) is not None]
            if not points:
                continue
            index = variant_order.index(record.variant) if record.variant in variant_order else 0
            label = record.variant if record.variant not in labelled else None
            labelled.add(record.variant)
            ax.plot([p["epoch"] for p in points], [p[key] for p in points], label=label,
                    color=colors(index % 10), linestyle=LINE_STYLES[index // 10 % len(LINE_STYLES)],
                    linewidth=1.4, alpha=0.85,
                    marker="o" if curve == "eval_history" else None, markersize=3)
        if not labelled:
            plt.close(fig)
            continue
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.set_ylabel(key.replace("_", " "))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = out_dir / f"{stem}.png"
        _save(fig, path)
        written.append(path)
    return written


def _save(fig: Figure, path: Path) -> None:
    """Save, then close the figure also when saving fails (an unwritable file): figures left open
    pile up in pyplot."""
    try:
        fig.savefig(path)
    finally:
        plt.close(fig)


def _bar(mean: float, low: float, high: float) -> list[list[float]]:
    """Error-bar lengths; never negative (a zero-width interval may differ from the mean in its
    last bit)."""
    return [[max(0.0, mean - low)], [max(0.0, high - mean)]]


def plot_metric(names: list[str], means: list[float], lows: list[float], highs: list[float],
                metric: str, best: str | None, path: Path) -> Path:
    """The selection metric per variant, with 95 % CI error bars where there are several seeds."""
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(names) + 1.4), dpi=110)
    y = list(range(len(names)))[::-1]
    for yi, name, mean, low, high in zip(y, names, means, lows, highs, strict=True):
        color = "tab:orange" if name == best else "tab:blue"
        if low == low and high == high:  # not NaN
            ax.errorbar(mean, yi, xerr=_bar(mean, low, high), fmt="o", color=color, capsize=4)
        else:
            ax.plot(mean, yi, "o", color=color)
    if names and names[0] == "baseline" and means[0] == means[0]:
        ax.axvline(means[0], color="grey", linestyle=":", linewidth=1)
    ax.set_yticks(y, names, fontsize=8)
    bars = any(low == low and high == high for low, high in zip(lows, highs, strict=True))
    ax.set_xlabel(f"{metric} (validation" + ("; bars: 95 % CI over seeds)" if bars else ")"))
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    _save(fig, path)
    return path


def plot_confusions(matrices: dict[str, list[list[int]]], label_names: list[str], path: Path) -> Path:
    """Confusion matrices (rows true, columns predicted), side by side, normalised per true class."""
    from matplotlib import font_manager

    installed = {font.name for font in font_manager.fontManager.ttflist}
    families = ["DejaVu Sans", *(name for name in CJK_FONTS if name in installed)]
    with plt.rc_context({"font.family": families}), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Glyph .* missing from font")  # said below
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

    fig, axes = plt.subplots(1, len(matrices), figsize=(4.2 * len(matrices), 4), dpi=110,
                             squeeze=False)
    for ax, (title, matrix) in zip(axes[0], matrices.items(), strict=True):
        counts = np.asarray(matrix, dtype=float)
        rates = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
        ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
        for i in range(counts.shape[0]):
            for j in range(counts.shape[1]):
                ax.text(j, i, f"{int(counts[i, j])}", ha="center", va="center", fontsize=8,
                        color="white" if rates[i, j] > 0.6 else "black")
        ticks = range(len(label_names))
        ax.set_xticks(ticks, label_names, rotation=45, ha="right", fontsize=8)
        ax.set_yticks(ticks, label_names, fontsize=8)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    _save(fig, path)


def plot_learning_curve(points: list[tuple[int, float, float, float]], metric: str,
                        path: Path) -> Path:
    """The metric against the number of training examples: (n, mean, low, high) per point."""
    points = sorted(points)
    fig, ax = plt.subplots(figsize=(6, 3.8), dpi=110)
    xs = [p[0] for p in points]
    means = [p[1] for p in points]
    ax.plot(xs, means, "o-", color="tab:blue")
    for n, mean, low, high in points:
        if low == low and high == high:
            ax.errorbar(n, mean, yerr=_bar(mean, low, high), color="tab:blue", capsize=4)
    ax.set_xscale("log")
    ax.set_xlabel("training examples")
    ax.set_ylabel(f"{metric} (validation)")
    ax.set_title("Learning curve")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    _save(fig, path)
    return path
