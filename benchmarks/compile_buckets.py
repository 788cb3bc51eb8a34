"""Would `torch.compile` pay for CPU training if batches were padded to a few bucket lengths? And
does SDPA attention (BERT's default) beat the eager attention on CPU?

Plain `torch.compile` recompiles for every padded length (cpu_means.py: 7.6× slower in a short
trial). Padding each batch to a multiple of `--multiple` leaves a few shapes, so compilation is paid
a few times; the question is whether the compiled step then beats the eager one by more than the
extra padding costs. The training step of the study (MiniLM, 6 layers, batches of 16 tweets, fused
AdamW, clipping at 1.0) runs `--steps` batches twice; the second pass is the steady state.

    source ../shared/offline-hf.sh
    python benchmarks/compile_buckets.py [--steps 40] [--multiple 32]

Prints one line per setting: eager with dynamic padding (SDPA attention), the same with the eager
attention, eager padded to the multiple, compiled padded to the multiple.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from _tweets import MODEL, tweets  # benchmarks/, this script's folder


def batches(tokenizer: Any, train: Any, steps: int, multiple: int | None) -> list[dict[str, Any]]:
    import torch

    out = []
    for i in range(0, 16 * steps, 16):
        rows = train[i:i + 16]
        batch = tokenizer.pad({"input_ids": rows["input_ids"], "attention_mask": rows["attention_mask"]},
                              pad_to_multiple_of=multiple, return_tensors="pt")
        out.append(dict(batch) | {"labels": torch.tensor(rows["label"])})
    return out


def time_steps(compiled: bool, steps: list[dict[str, Any]], attention: str = "sdpa") -> tuple[float, float]:
    """(seconds for both passes, compilation included; steady-state ms per step)."""
    import torch
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(MODEL, num_labels=3,
                                                               attn_implementation=attention)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    forward = torch.compile(model, dynamic=False) if compiled else model
    started, steady = time.perf_counter(), []
    for second_pass in (False, True):
        for batch in steps:
            t = time.perf_counter()
            forward(**batch).loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad()
            if second_pass:
                steady.append(time.perf_counter() - t)
    return time.perf_counter() - started, 1000 * sum(steady) / len(steady)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--multiple", type=int, default=32)
    args = parser.parse_args()
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    tokenizer, _, train = tweets(16 * args.steps)
    print("| setting | padded lengths | both passes, compilation included | steady ms/step |")
    print("|---|---|---|---|")
    bucket = f"padded to a multiple of {args.multiple}"
    for label, compiled, multiple, attention in [
            ("eager, dynamic padding", False, None, "sdpa"),
            ("eager, dynamic padding, eager attention (not SDPA)", False, None, "eager"),
            (f"eager, {bucket}", False, args.multiple, "sdpa"),
            (f"torch.compile, {bucket}", True, args.multiple, "sdpa")]:
        steps = batches(tokenizer, train, args.steps, multiple)
        lengths = sorted({int(b["input_ids"].shape[1]) for b in steps})
        total, steady = time_steps(compiled, steps, attention)
        print(f"| {label} | {len(lengths)} ({lengths[0]}–{lengths[-1]}) | {total:.1f} s | {steady:.0f} |",
              flush=True)


if __name__ == "__main__":
    main()
