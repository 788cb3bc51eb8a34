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
import statistics
import time
from pathlib import Path
from typing import Any

from step_ops import build_model, grouped_batches, rounds_parser, setup  # benchmarks/, this script's folder
from study_speed import command_line, provenance, replace_section, timed_step, utilisation

BEGIN, END = "<!-- packing:begin -->", "<!-- packing:end -->"
SIDES = ("padded layers", "packed layers (ablate)")


def random_batches(tokenizer: Any, train: Any, batch: int, steps: int) -> list[dict[str, Any]]:
    """The first `steps` batches of `batch` shuffled tweets, padded per batch as the Trainer pads."""
    import torch

    picked = [train[i:i + batch] for i in range(0, steps * batch, batch)]
    return [tokenizer.pad({"input_ids": rows["input_ids"]}, return_tensors="pt")
            | {"labels": torch.tensor(rows["label"])} for rows in picked]


def step_ms(model_name: str, packed: bool, batches: list[dict[str, Any]]) -> float:
    """ms per training step over two passes after a warm-up pass, on a fresh model."""
    import torch

    from ablation.cpu_dropout import use_uniform_dropout
    from ablation.packing import pack_encoder

    model = build_model(model_name)
    model.train()
    use_uniform_dropout(model)
    if packed and not pack_encoder(model):
        raise SystemExit(f"{model_name}: the encoder could not be packed")
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4, fused=True)
    for batch in batches:
        timed_step(model, batch, params, optimizer)
    started = time.perf_counter()
    for batch in batches + batches:
        timed_step(model, batch, params, optimizer)
    return 1000 * (time.perf_counter() - started) / (2 * len(batches))


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
             f"time; the two sides alternate for {args.rounds} rounds. MFU: 6 × non-embedding "
             f"parameters × real tokens / step time / {rate:.0f} GFLOP/s (the best fp32 matmul rate "
             "measured at the start).", "",
             "| model | batches | padded / real tokens | encoder layers | ms per step, each round "
             "| median | MFU at the median | speed-up |",
             "|---|---|---|---|---|---|---|---|"]
    for model_name in args.models:
        nonembedding = sum(p.numel() for n, p in build_model(model_name).named_parameters()
                           if ".embeddings." not in n)
        for kind, batches in kinds.items():
            real = sum(int(b["attention_mask"].sum()) for b in batches) / len(batches)
            padded = sum(b["input_ids"].numel() for b in batches) / len(batches)
            runs: dict[str, list[float]] = {side: [] for side in SIDES}
            for round_ in range(args.rounds):
                for side in SIDES:
                    runs[side].append(step_ms(model_name, side != SIDES[0], batches))
                    print(f"{model_name} {kind} round {round_ + 1} {side}: {runs[side][-1]:.0f} ms",
                          flush=True)
            medians = {side: statistics.median(ms) for side, ms in runs.items()}
            for side, ms in runs.items():
                mfu = utilisation(nonembedding, real, medians[side] / 1000, rate)
                lines.append(f"| {model_name} | {kind} | {padded / real:.2f} | {side} | "
                             + ", ".join(f"{m:.0f}" for m in ms) + f" | {medians[side]:.0f} | {mfu:.1%} | "
                             f"{medians[SIDES[0]] / medians[side]:.2f}× |")
    section = "\n".join(lines + ["", END]) + "\n"
    print(section)
    if not args.no_write:
        replace_section(Path(__file__).parent / "RESULTS.md", section, BEGIN, END)


if __name__ == "__main__":
    main()
