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
import statistics

from step_ops import SETTINGS, alternate, rounds_parser, setup  # benchmarks/, this script's folder
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
             f"each time; the two sides alternate for {args.rounds} rounds. MFU: 6 × non-embedding "
             f"parameters × real tokens / step time / {rate:.0f} GFLOP/s (the best fp32 matmul rate "
             "measured at the start).", "",
             "| model | dropout | ms per step, each round | median | MFU at the median | speed-up |",
             "|---|---|---|---|---|---|"]
    for model in args.models:
        rows = alternate(model, SIDES, batches, rate, args.rounds)
        medians = {side: statistics.median(r["total"] for r in runs) for side, runs in rows.items()}
        torch_ms = medians[next(iter(SIDES))]
        for side, runs in rows.items():
            mfu = runs[0]["mfu"] * runs[0]["total"] / medians[side]
            lines.append(f"| {model} | {side} | " + ", ".join(f"{r['total']:.0f}" for r in runs)
                         + f" | {medians[side]:.0f} | {mfu:.1%} | {torch_ms / medians[side]:.2f}× |")
    section = "\n".join(lines + ["", END]) + "\n"
    publish(section, args.no_write, BEGIN, END)


if __name__ == "__main__":
    main()
