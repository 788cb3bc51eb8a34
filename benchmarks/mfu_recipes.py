"""How far `ablate run`'s training gets towards the CPU's matmul rate when the recipe changes how
much of each step is matrix products: random against length-grouped batches, batch 16, 32 and 64.

The study is study_speed.py's `--full` one (MiniLM, 6 layers, 1,600 training tweets, lr 1e-4, one
epoch, SwanLab local tracking); each recipe is one variant of it, so every variant trains on the same
tweets once. Utilisation (MFU) is study_speed's: 6 × non-embedding parameters × real (non-pad)
tokens trained / training time without the evaluations inside it / the best fp32 matmul rate; the
padded tokens per real one are simulated for each sampler and batch (20 shuffles). Accuracy is
reported beside it: these are recipe changes, which a study should ablate, not free speed-ups.

    source ../shared/offline-hf.sh
    python benchmarks/mfu_recipes.py [--layers 2] [--train 384] [--no-write]

Writes its section of benchmarks/RESULTS.md (between the mfu_recipes markers).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from study_speed import (  # benchmarks/, this script's folder
    ROOT,
    SIZES,
    command_line,
    cpu_model,
    matmul_rates,
    padding_waste,
    parameter_counts,
    prepare_data,
    replace_section,
    train_seconds,
    utilisation,
    versions,
    way_ablate,
)

RECIPES: dict[str, dict[str, Any]] = {
    "baseline": {},
    "grouped": {"group_by_length": True},
    "bs32": {"batch_size": 32},
    "grouped-bs32": {"group_by_length": True, "batch_size": 32},
    "grouped-bs64": {"group_by_length": True, "batch_size": 64},
}
BEGIN, END = "<!-- mfu_recipes:begin -->", "<!-- mfu_recipes:end -->"


def render(size: Any, runs: dict[str, dict[str, Any]], data: dict[str, Any], nonembedding: int,
           rate: float, command: str, started_at: str) -> str:
    real = int(data["train_lengths"].sum())
    lines = [
        BEGIN,
        "## Training utilisation by recipe: length grouping and batch size (issue 5)",
        "",
        f"Command: `{command}` ({started_at}). Machine: {cpu_model()}, {os.cpu_count()} cores; "
        + ", ".join(f"{k} {v}" for k, v in versions().items()) + ".",
        "",
        f"Study: study_speed's `{size.name}` one ({size.layers or 6} layers, {size.train} training "
        f"tweets averaging {data['train_lengths'].mean():.1f} tokens, lr {size.learning_rate:g}, "
        "1 epoch, fp32); each recipe one variant. MFU: 6 × non-embedding parameters × real tokens / "
        f"training time (evaluations inside it excluded) / {rate:.0f} GFLOP/s (the best fp32 matmul "
        "rate measured at the start).",
        "",
        "| recipe | batch | sampler | padded / real tokens | steps | train time | real tokens/s | "
        "MFU | val macro-F1 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, recipe in RECIPES.items():
        run = runs[name]
        batch = recipe.get("batch_size", size.batch_size)
        grouped = recipe.get("group_by_length", False)
        waste = padding_waste(data["train_lengths"], batch)["grouped" if grouped else "random"]
        train_s = train_seconds(run)
        mfu = utilisation(nonembedding, real, train_s, rate)
        lines.append(f"| {name} | {batch} | {'length-grouped' if grouped else 'random'} | {waste:.2f} | "
                     f"{run['steps']} | {train_s:.1f} s | {real / train_s:.0f} | {mfu:.1%} | "
                     f"{run['validation']['macro_f1']:.4f} |")
    return "\n".join(lines + ["", END]) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, help="cut the model to N layers (default: its 6)")
    parser.add_argument("--train", type=int, help="training tweets (default: 1600)")
    parser.add_argument("--no-write", action="store_true", help="print the section only")
    args = parser.parse_args()
    size = SIZES["full"]
    size = dataclasses.replace(size, layers=args.layers or size.layers, train=args.train or size.train)
    started_at = dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.path.insert(0, str(ROOT))
    work = Path(tempfile.mkdtemp(prefix="mfu_recipes-"))
    rate = max(matmul_rates()["fp32"].values())
    data = prepare_data(size, work / "data")
    total, embedding = parameter_counts(size)
    way, _ = way_ablate(size, work, name="mfu", variants=RECIPES)
    section = render(size, way.runs, data, total - embedding, rate, command_line(), started_at)
    print(section)
    if not args.no_write:
        replace_section(Path(__file__).parent / "RESULTS.md", section, BEGIN, END)


if __name__ == "__main__":
    main()
