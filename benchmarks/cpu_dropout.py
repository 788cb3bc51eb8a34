"""torch's CPU dropout against ablate's (masks from uniform draws, ablation/cpu_dropout.py) in
MiniLM's training step, alternating the two in rounds so that a busy or drifting machine slows both
alike; each round builds a fresh model and times step_ops' step (fused AdamW, clipping at 1.0, fp32)
on the same length-grouped batches of tweets.

    source ../shared/offline-hf.sh
    python benchmarks/cpu_dropout.py [--rounds 3] [--batch 32] [--steps 12] [--models MiniLM bert-base]

Writes its section of benchmarks/RESULTS.md (between the cpu_dropout markers).
"""

from __future__ import annotations

import datetime as dt

from step_ops import (  # benchmarks/, this script's folder
    SETTINGS,
    alternate,
    mfu_definition,
    round_cells,
    rounds_parser,
    setup,
)
from study_speed import command_line, provenance, publish

BEGIN, END = "<!-- cpu_dropout:begin -->", "<!-- cpu_dropout:end -->"
SIDES = {"torch's dropout (bernoulli_)": SETTINGS[0], "ablate's dropout (uniform draws)": SETTINGS[3]}


def main() -> None:
    args = rounds_parser(__doc__, batch=32, steps=12).parse_args()
    started_at = dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    rate, _, _, batches = setup(1600, args.batch, args.steps)
    lines = [BEGIN, "## CPU dropout: torch's masks against uniform draws (issue 5)", "",
             provenance(command_line(), started_at), "",
             f"ms per training step (step_ops' step: fused AdamW, clipping at 1.0, fp32) on {args.steps} "
             f"length-grouped batches of {args.batch} tweets, two passes after a warm-up, a fresh model "
             f"each time; the two sides alternate for {args.rounds} rounds. " + mfu_definition(rate), "",
             "| model | dropout | ms per step, each round | median | MFU at the median | speed-up |",
             "|---|---|---|---|---|---|"]
    for model in args.models:
        cells = round_cells(alternate(model, SIDES, batches, rate, args.rounds))
        lines += [f"| {model} | {side} | {side_cells} |" for side, side_cells in cells.items()]
    section = "\n".join(lines + ["", END]) + "\n"
    publish(section, args.no_write, BEGIN, END)


if __name__ == "__main__":
    main()
