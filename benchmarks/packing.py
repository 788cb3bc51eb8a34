"""Padded encoder layers against packed ones (real tokens only, ablation/packing.py) in MiniLM's CPU
training step, on random batches (half padding) and on length-grouped ones (almost none), the two
sides alternating in rounds so that a busy or drifting machine slows both alike. Both sides use
ablate's CPU dropout, as `ablate run` trains on CPU.

    source ../shared/offline-hf.sh
    python benchmarks/packing.py [--rounds 3] [--batch 16] [--steps 16] [--models MiniLM bert-base]

Writes its section of benchmarks/RESULTS.md (between the packing markers).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from step_ops import (  # benchmarks/, this script's folder
    SETTINGS,
    alternate,
    grouped_batches,
    mfu_definition,
    round_cells,
    rounds_parser,
    setup,
)
from study_speed import command_line, provenance, publish

BEGIN, END = "<!-- packing:begin -->", "<!-- packing:end -->"
PADDED = "padded layers"
SIDES = {PADDED: SETTINGS[3], "packed layers (ablate)": SETTINGS[4]}


def random_batches(tokenizer: Any, train: Any, batch: int, steps: int) -> list[dict[str, Any]]:
    """The first `steps` batches of `batch` shuffled tweets, padded per batch as the Trainer pads."""
    import torch

    picked = [train[i:i + batch] for i in range(0, steps * batch, batch)]
    return [tokenizer.pad({"input_ids": rows["input_ids"]}, return_tensors="pt")
            | {"labels": torch.tensor(rows["label"])} for rows in picked]


def main() -> None:
    args = rounds_parser(__doc__, batch=16, steps=16).parse_args()
    started_at = dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    rate, tokenizer, train, grouped = setup(1600, args.batch, args.steps)
    kinds = {"random": random_batches(tokenizer, train, args.batch, args.steps),
             "length-grouped": grouped_batches(tokenizer, train, args.batch, args.steps)}
    lines = [BEGIN, "## Packed encoder layers: real tokens only (issue 5)", "",
             provenance(command_line(), started_at), "",
             f"ms per training step (fused AdamW, clipping at 1.0, fp32, ablate's CPU dropout) on "
             f"{args.steps} batches of {args.batch} tweets, two passes after a warm-up, a fresh model each "
             f"time; the two sides alternate for {args.rounds} rounds. " + mfu_definition(rate), "",
             "| model | batches | padded / real tokens | encoder layers | ms per step, each round "
             "| median | MFU at the median | speed-up |",
             "|---|---|---|---|---|---|---|---|"]
    for model_name in args.models:
        for kind, batches in kinds.items():
            rows = alternate(model_name, SIDES, batches, rate, args.rounds, label=f" {kind}")
            padding = rows[PADDED][0]["padded_tokens"] / rows[PADDED][0]["real_tokens"]
            lines += [f"| {model_name} | {kind} | {padding:.2f} | {side} | {side_cells} |"
                      for side, side_cells in round_cells(rows).items()]
    section = "\n".join(lines + ["", END]) + "\n"
    publish(section, args.no_write, BEGIN, END)


if __name__ == "__main__":
    main()
