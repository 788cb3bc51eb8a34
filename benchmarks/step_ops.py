"""Where one CPU training step's time goes once padding is gone: the step as the Trainer runs it
(forward, backward, gradient clipping at 1.0, fused AdamW) on length-grouped batches of tweets,
timed by phase and profiled by operator, for MiniLM (6 layers, hidden 384) and for a randomly
initialised BERT-base (12 layers, hidden 768).

It answers why training utilisation stops short of the matmul rate: the matrix products of the
linear layers are the FLOPs that MFU counts; dropout's random masks, the optimizer and gradient
clipping over every weight (the word embeddings included), attention, layer norms and GELU are time
that MFU does not count. Four settings test cheap ways out: flushing denormal floats to zero
(`torch.set_flush_denormal`), freezing the word embeddings (a recipe change), ablate's CPU
dropout (masks from uniform draws, ablation/cpu_dropout.py; cpu_dropout.py times it in rounds),
and with it the encoder layers over real tokens only (ablation/packing.py; packing.py times it in
rounds, on random batches too).
Last, one epoch of MiniLM in the transformers Trainer (length-grouped batches, no evaluation or
saving) is timed step by step against the same batches, in the same order, in the bare loop: what
the Trainer's own loop adds.

    source ../shared/offline-hf.sh
    python benchmarks/step_ops.py [--batch 32] [--steps 12] [--train-samples 1600] [--models MiniLM]
                                  [--no-trainer] [--no-write]

Writes its section of benchmarks/RESULTS.md (between the step_ops markers).
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from study_speed import (  # benchmarks/, this script's folder
    command_line,
    matmul_rates,
    provenance,
    publish,
    timed_step,
    utilisation,
)

BEGIN, END = "<!-- step_ops:begin -->", "<!-- step_ops:end -->"
SETTINGS = ("fp32, as the Trainer runs it", "denormals flushed to zero", "word embeddings frozen",
            "dropout masks from uniform draws (ablate on CPU)",
            "and encoder layers over real tokens only (ablate on CPU)")
# Operators by what they are for; the rest (layer norms, GELU, softmax, copies, fills, ...) is "other".
CATEGORIES = {
    "linear layers (mm, addmm)": ("aten::mm", "aten::addmm"),
    "attention products (bmm)": ("aten::bmm",),
    "dropout masks (bernoulli_)": ("aten::bernoulli_",),
    "AdamW (_fused_adamw_)": ("aten::_fused_adamw_",),
    "gradient norms (clipping)": ("aten::linalg_vector_norm",),
}


def grouped_batches(tokenizer: Any, train: Any, batch: int, steps: int) -> list[dict[str, Any]]:
    """`steps` length-grouped batches (neighbours in length order, chosen at random), padded per batch."""
    import numpy as np
    import torch

    from ablation.data import sorted_by_length

    ordered, _ = sorted_by_length(train)
    starts = range(0, len(ordered) - batch + 1, batch)
    chosen = np.random.default_rng(0).choice(starts, steps, replace=False)
    picked = [ordered[int(i):int(i) + batch] for i in chosen]
    return [tokenizer.pad({"input_ids": rows["input_ids"]}, return_tensors="pt")
            | {"labels": torch.tensor(rows["label"])} for rows in picked]


def build_model(name: str) -> Any:
    import torch
    from _tweets import MODEL
    from transformers import AutoModelForSequenceClassification, BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    if name == "bert-base":
        return BertForSequenceClassification(BertConfig(num_labels=3))
    return AutoModelForSequenceClassification.from_pretrained(MODEL, num_labels=3)


def prepared(name: str, setting: str) -> tuple[Any, list[Any], Any]:
    """A fresh model in training mode set up for `setting`, its trained parameters and fused AdamW."""
    import torch

    model = build_model(name)
    model.train()
    if setting == SETTINGS[2]:
        model.get_input_embeddings().weight.requires_grad_(False)
    if setting in SETTINGS[3:]:
        from ablation.cpu_dropout import use_uniform_dropout
        from ablation.packing import pack_encoder

        use_uniform_dropout(model)
        if setting == SETTINGS[4] and not pack_encoder(model):
            raise SystemExit(f"{name}: the encoder could not be packed")
    params = [p for p in model.parameters() if p.requires_grad]
    return model, params, torch.optim.AdamW(params, lr=1e-4, fused=True)


def paired_steps(name: str, setting: str, sides: dict[str, Callable[[Any], None]],
                 batches: list[dict[str, Any]], passes: int) -> dict[str, Any]:
    """One model set up for `setting` steps each batch once per side, the sides taking turns step by
    step (the order swapping every batch), `passes` times over the batches after a warm-up pass:
    a shared machine's drift then slows both sides alike. `sides` switch the model to each side.
    Returns ms per step per side, the paired differences (first side minus each other), in ms, and
    the model's non-embedding parameters (for MFU)."""
    model, params, optimizer = prepared(name, setting)
    names = list(sides)
    for batch in batches:
        timed_step(model, batch, params, optimizer)
    seconds: dict[str, list[float]] = {side: [] for side in names}
    for pass_ in range(passes):
        for i, batch in enumerate(batches):
            for side in names if (i + pass_) % 2 == 0 else names[::-1]:
                sides[side](model)
                seconds[side].append(sum(timed_step(model, batch, params, optimizer)))
    first = seconds[names[0]]
    return {"ms": {side: 1000 * statistics.mean(s) for side, s in seconds.items()},
            "nonembedding": sum(p.numel() for n, p in model.named_parameters() if ".embeddings." not in n),
            "differences": {side: [1000 * (a - b) for a, b in zip(first, s, strict=True)]
                            for side, s in seconds.items() if side != names[0]}}


def measure(name: str, setting: str, batches: list[dict[str, Any]], rate: float) -> dict[str, Any]:
    """ms per phase over two passes after a warm-up pass; for the first setting also each operator
    category's share of the time, profiled over one more pass."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    torch.set_flush_denormal(setting == SETTINGS[1])
    model, params, optimizer = prepared(name, setting)
    for batch in batches:  # warm-up: oneDNN kernels per shape, the optimizer's state
        timed_step(model, batch, params, optimizer)
    phases = [0.0] * 4
    for batch in batches + batches:
        phases = [total + seconds for total, seconds in
                  zip(phases, timed_step(model, batch, params, optimizer), strict=True)]
    steps = 2 * len(batches)
    ms = [1000 * seconds / steps for seconds in phases]
    nonembedding = sum(p.numel() for n, p in model.named_parameters() if ".embeddings." not in n)
    real = sum(int(b["attention_mask"].sum()) for b in batches) / len(batches)
    row = {"model": name, "setting": setting, "phases": ms, "total": sum(ms), "real_tokens": real,
           "nonembedding": nonembedding,
           "padded_tokens": sum(b["input_ids"].numel() for b in batches) / len(batches),
           "mfu": utilisation(nonembedding, real, sum(ms) / 1000, rate)}
    if setting == SETTINGS[0]:
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for batch in batches:
                timed_step(model, batch, params, optimizer)
        self_ms = {e.key: e.self_cpu_time_total / 1000 / len(batches) for e in prof.key_averages()}
        profiled = sum(self_ms.values())
        shares = {category: sum(self_ms.get(op, 0.0) for op in ops) / profiled
                  for category, ops in CATEGORIES.items()}
        row["shares"] = shares | {"other (layer norms, GELU, softmax, copies, ...)": 1 - sum(shares.values())}
    torch.set_flush_denormal(False)
    return row


def trainer_against_loop(tokenizer: Any, train: Any, batch: int) -> dict[str, float]:
    """One epoch of MiniLM in the Trainer (length-grouped batches of `batch`, clipping at 1.0, fused
    AdamW, no evaluation or saving), then the same batches in the bare loop on a fresh model: the
    seconds of steps 2.. in each (the Trainer's from one step's end to the next, data included)."""
    import torch
    from transformers import DataCollatorWithPadding, Trainer, TrainerCallback, TrainingArguments

    seen: list[dict[str, Any]] = []
    ends: list[float] = []

    class Recording(DataCollatorWithPadding):
        def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
            out = super().__call__(features)
            seen.append({k: v.clone() for k, v in out.items()})
            return out

    class StepEnds(TrainerCallback):
        def on_step_end(self, *args: Any, **kwargs: Any) -> None:
            ends.append(time.perf_counter())

    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(
            output_dir=out, per_device_train_batch_size=batch, learning_rate=1e-4, num_train_epochs=1,
            logging_steps=10, eval_strategy="no", save_strategy="no", report_to="none",
            disable_tqdm=True, train_sampling_strategy="group_by_length", use_cpu=True, seed=0)
        Trainer(model=build_model("MiniLM"), args=args, train_dataset=train,
                data_collator=Recording(tokenizer), callbacks=[StepEnds()]).train()
    model = build_model("MiniLM")
    model.train()
    params = list(model.parameters())
    optimizer = torch.optim.AdamW(params, lr=1e-4, fused=True)
    loop = [sum(timed_step(model, b, params, optimizer)) for b in seen[:len(ends)]]
    return {"steps": len(ends), "tokens": sum(int(b["attention_mask"].sum()) for b in seen[1:len(ends)]),
            "trainer_s": ends[-1] - ends[0], "loop_s": sum(loop[1:])}


def render(rows: list[dict[str, Any]], batch: int, steps: int, rate: float, command: str,
           started_at: str, versus: dict[str, float] | None = None) -> str:
    lines = [
        BEGIN,
        "## Where a CPU training step's time goes, without padding (issue 5)",
        "",
        provenance(command, started_at),
        "",
        f"One training step as the Trainer runs it (fused AdamW, clipping at 1.0, fp32) on length-grouped "
        f"batches of {batch} tweets (the same {steps} batches for each row): ms per phase, "
        "averaged over two passes after a warm-up pass. " + mfu_definition(rate),
        "",
        "| model | setting | forward | backward | grad clip | optimizer | total | real / padded tokens "
        "| MFU of the step |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        f, b, c, o = row["phases"]
        lines.append(f"| {row['model']} | {row['setting']} | {f:.0f} | {b:.0f} | {c:.0f} | {o:.0f} | "
                     f"{row['total']:.0f} | {row['real_tokens']:.0f} / {row['padded_tokens']:.0f} | "
                     f"{row['mfu']:.1%} |")
    profiled = [row for row in rows if "shares" in row]
    lines += ["", "Share of the profiled step's operator time (self CPU time, torch.profiler, first "
              "setting):", "", "| operators | " + " | ".join(row["model"] for row in profiled) + " |",
              "|---|" + "---|" * len(profiled)]
    for category in profiled[0]["shares"]:
        lines.append(f"| {category} | " + " | ".join(f"{row['shares'][category]:.1%}" for row in profiled)
                     + " |")
    if versus:
        lines += ["", f"The Trainer's loop against the bare loop (MiniLM, one epoch of length-grouped "
                  f"batches of {batch}, steps 2–{versus['steps']:.0f}, the same batches in the same order):",
                  "", "| loop | seconds | real tokens/s | MFU |", "|---|---|---|---|"]
        for name, key in (("transformers Trainer", "trainer_s"), ("bare PyTorch loop", "loop_s")):
            seconds = versus[key]
            lines.append(f"| {name} | {seconds:.2f} | {versus['tokens'] / seconds:.0f} | "
                         f"{utilisation(rows[0]['nonembedding'], versus['tokens'], seconds, rate):.1%} |")
    return "\n".join(lines + ["", END]) + "\n"


def mfu_definition(rate: float) -> str:
    """The sentence that says how a step's MFU is computed, against the rate measured at the start."""
    return (f"MFU: 6 × non-embedding parameters × real tokens / step time / {rate:.0f} GFLOP/s (the best "
            "fp32 matmul rate measured at the start).")


def round_cells(rows: dict[str, list[dict[str, Any]]]) -> dict[str, str]:
    """Per side of `alternate`'s rows, its table cells: ms per step in each round, their median, MFU at
    the median and the speed-up over the first side."""
    medians = {side: statistics.median(r["total"] for r in runs) for side, runs in rows.items()}
    first = medians[next(iter(rows))]
    return {side: ", ".join(f"{r['total']:.0f}" for r in runs)
            + f" | {medians[side]:.0f} | {runs[0]['mfu'] * runs[0]['total'] / medians[side]:.1%} | "
            f"{first / medians[side]:.2f}×" for side, runs in rows.items()}


def alternate(model: str, sides: dict[str, str], batches: list[dict[str, Any]], rate: float,
              rounds: int, label: str = "") -> dict[str, list[dict[str, Any]]]:
    """`measure` each side's setting in turn, `rounds` times, so that a busy or drifting machine
    slows every side alike; each side's rows, round by round."""
    rows: dict[str, list[dict[str, Any]]] = {side: [] for side in sides}
    for round_ in range(rounds):
        for side, setting in sides.items():
            rows[side].append(measure(model, setting, batches, rate))
            print(f"{model}{label} round {round_ + 1} {side}: {rows[side][-1]['total']:.0f} ms", flush=True)
    return rows


def rounds_parser(doc: str, batch: int, steps: int) -> argparse.ArgumentParser:
    """The options of a benchmark that alternates two sides of MiniLM's step in rounds."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=batch)
    parser.add_argument("--steps", type=int, default=steps, help=f"distinct batches (default: {steps})")
    parser.add_argument("--models", nargs="+", choices=("MiniLM", "bert-base"), default=["MiniLM"])
    parser.add_argument("--no-write", action="store_true", help="print the section only")
    return parser


def setup(train_samples: int, batch: int, steps: int) -> tuple[float, Any, Any, list[dict[str, Any]]]:
    """The best fp32 matmul rate (GFLOP/s), the tokenizer, `train_samples` training tweets, and
    `steps` length-grouped batches of `batch` of them."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from _tweets import tweets
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    rate = max(matmul_rates()["fp32"].values())
    tokenizer, _, train = tweets(train_samples)
    return rate, tokenizer, train, grouped_batches(tokenizer, train, batch, steps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=12, help="distinct batches (default: 12)")
    parser.add_argument("--train-samples", type=int, default=1600)
    parser.add_argument("--models", nargs="+", choices=("MiniLM", "bert-base"),
                        default=["MiniLM", "bert-base"])
    parser.add_argument("--no-trainer", action="store_true", help="skip the Trainer against the bare loop")
    parser.add_argument("--no-write", action="store_true", help="print the section only")
    args = parser.parse_args()
    started_at = dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    rate, tokenizer, train, batches = setup(args.train_samples, args.batch, args.steps)
    rows = [measure(name, setting, batches, rate) for name in args.models for setting in SETTINGS]
    versus = None if args.no_trainer else trainer_against_loop(tokenizer, train, args.batch)
    section = render(rows, args.batch, args.steps, rate, command_line(), started_at, versus)
    publish(section, args.no_write, BEGIN, END)


if __name__ == "__main__":
    main()
