"""Training curves as PNG: one line per variant (and seed), against epochs so that variants with
different batch sizes line up."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402

from ..records import TrialRecord  # noqa: E402

CURVES = {  # file stem -> (curve, key, title)
    "train_loss": ("history", "loss", "Training loss"),
    "eval_loss": ("eval_history", "loss", "Validation loss"),
    "grad_norm": ("history", "grad_norm", "Gradient norm (before clipping)"),
    "learning_rate": ("history", "learning_rate", "Learning rate"),
}


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
                    color=colors(index % 10), linewidth=1.4, alpha=0.85,
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
        fig.savefig(path)
        plt.close(fig)
        written.append(path)
    return written
