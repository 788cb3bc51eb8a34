"""Costs of MiniLM's CPU training step, each against what ablate does instead, measured in pairs:
dropout masks from uniform floats (one draw an element, ablate until 2026-12-03) against uniform
integers (four elements from one 63-bit draw, `ablation.cpu_dropout.keep_mask`), and the word
embeddings' gradient as torch builds it (a fresh zeroed 30,522 × 384 tensor every step) against
ablate's kept buffer (`ablation.embedding_gradient`); then both together; then packed layers'
attention while training as autograd records `Packing.attend` (ablate until 2026-12-03) against
cpu_dropout's `_PackedDropoutAttention` (the batch in two groups of similar lengths, each copied
into its own padded layout and back, its backward written out); then AdamW over the whole word
embeddings' table against over the rows the training tweets reach (`step_reachable_rows`, two
models taking turns, as `ablate run` clips and steps them). Last, what the kept buffer's
written rows save: gradient clipping and zeroing on those rows only, against the whole; one
layer's packed attention alone; and the AdamW step alone over the whole table or those rows.

First the time to draw one mask at the shapes of MiniLM's step. Then the step as `ablate run`
trains on CPU (packed layers, step_ops' step: fused AdamW, clipping at 1.0, fp32) on random
batches: one model steps every batch once per side, the sides taking turns step by step
(`step_ops.paired_steps`), because on a shared virtual machine the speed drifts by more than these
costs between runs of a few seconds.

    source ../shared/offline-hf.sh
    python benchmarks/step_pairs.py [--passes 6] [--batch 16] [--steps 16]

Writes its section of benchmarks/RESULTS.md (between the step_pairs markers).
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import time
from collections.abc import Callable
from typing import Any

from packing import random_batches  # benchmarks/, this script's folder
from step_ops import SETTINGS, mfu_definition, paired_steps, prepared, setup
from study_speed import command_line, provenance, publish, utilisation

BEGIN, END = "<!-- step_pairs:begin -->", "<!-- step_pairs:end -->"
# Mask shapes of MiniLM's step on a batch of 16 tweets: attention weights (batch × heads × length²)
# and a packed layer's hidden states (real tokens × 384).
REACHABLE_SIDES = ("the whole table", "the rows the training data reaches (ablate)")
SHAPES = {"attention weights 16 × 12 × 40 × 40": (16, 12, 40, 40), "hidden states 330 × 384": (1, 330, 384)}


def float_mask(shape: Any, p: float, device: Any = None) -> Any:
    """The previous keep mask: one uniform float32 per element."""
    import torch

    return torch.rand(shape, device=device) >= p


def autograd_attention(packing: Any, query: Any, key: Any, value: Any, scaling: float, p: float) -> Any:
    """Packed attention while training as ablate ran it until 2026-12-03: `Packing.attend`'s
    autograd graph around `cpu_dropout.attention`."""
    from ablation import cpu_dropout

    return packing.attend(cpu_dropout.attention, None, query, key, value, scaling=scaling, dropout=p)


def switches() -> dict[str, dict[str, Callable[[Any], None]]]:
    """Per comparison, its sides (before, then ablate's) as functions that switch a model to them."""
    import torch

    from ablation import cpu_dropout
    from ablation.embedding_gradient import KeptGradientEmbedding, keep_embedding_gradient

    integer_mask, function = cpu_dropout.keep_mask, cpu_dropout._attend_packed

    def switch(masks: Callable[..., Any], embedding: type,
               attend: Callable[..., Any] = function) -> Callable[[Any], None]:
        def to_side(model: Any) -> None:
            cpu_dropout.keep_mask = masks
            cpu_dropout._attend_packed = attend
            if type(model.get_input_embeddings()) is torch.nn.Embedding:
                keep_embedding_gradient(model)  # hooks the weight once; the class says which side
            model.get_input_embeddings().__class__ = embedding
        return to_side

    kept, stock = KeptGradientEmbedding, torch.nn.Embedding
    return {
        "dropout masks": {"uniform floats": switch(float_mask, kept),
                          "uniform integers (ablate)": switch(integer_mask, kept)},
        "word embeddings' gradient": {"a fresh zeroed tensor a step (torch)": switch(integer_mask, stock),
                                      "kept buffer (ablate)": switch(integer_mask, kept)},
        "both": {"floats, fresh tensor (ablate before)": switch(float_mask, stock),
                 "integers, kept buffer (ablate now)": switch(integer_mask, kept)},
        "packed attention": {"autograd graph": switch(integer_mask, kept, autograd_attention),
                             "one Function, two length groups (ablate)": switch(integer_mask, kept)},
    }


def adamw_sides(token_ids: Any) -> dict[str, tuple[Any, Any]]:
    """Per side of `REACHABLE_SIDES`, MiniLM as `ablate run` trains it on CPU (packed, the kept
    gradient buffer) and fused AdamW without weight decay: over the whole table, then over the rows
    of `token_ids` (`step_reachable_rows`)."""
    import torch

    from ablation.embedding_gradient import keep_embedding_gradient, step_reachable_rows

    sides = {}
    for side in REACHABLE_SIDES:
        model, params, _ = prepared("MiniLM", SETTINGS[4])
        keep_embedding_gradient(model)
        optimizer = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.0, fused=True)
        if side == REACHABLE_SIDES[1] and not step_reachable_rows(model, optimizer, token_ids):
            raise SystemExit("the reachable rows could not be stepped apart")
        sides[side] = model, optimizer
    return sides


def reachable_pairs(batches: list[dict[str, Any]], token_ids: Any, passes: int) -> dict[str, Any]:
    """AdamW over the whole word embeddings' table against over the rows the training data reaches
    (`embedding_gradient.step_reachable_rows`): two models, as `ablate run` steps them (ablate's
    clipping, fused AdamW without weight decay, the kept gradient buffer), step each batch in turn
    (`paired_steps`' order and result; the sides' dropout draws differ, their costs do not)."""
    from ablation.embedding_gradient import clip_grad_norm

    sides = adamw_sides(token_ids)

    def step(model: Any, optimizer: Any, batch: dict[str, Any]) -> float:
        start = time.perf_counter()
        model(**batch).loss.backward()
        clip_grad_norm(model, 1.0)
        optimizer.step()
        model.zero_grad()
        return time.perf_counter() - start

    for batch in batches:
        for model, optimizer in sides.values():
            step(model, optimizer, batch)
    seconds: dict[str, list[float]] = {side: [] for side in sides}
    for pass_ in range(passes):
        for i, batch in enumerate(batches):
            for side in REACHABLE_SIDES if (i + pass_) % 2 == 0 else REACHABLE_SIDES[::-1]:
                seconds[side].append(step(*sides[side], batch))
    model = sides[REACHABLE_SIDES[0]][0]
    first, last = (seconds[side] for side in REACHABLE_SIDES)
    return {"ms": {side: 1000 * statistics.mean(s) for side, s in seconds.items()},
            "nonembedding": sum(p.numel() for n, p in model.named_parameters() if ".embeddings." not in n),
            "differences": {REACHABLE_SIDES[1]: [1000 * (a - b) for a, b in zip(first, last, strict=True)]}}


def adamw_ms(batch: dict[str, Any], token_ids: Any) -> dict[str, float]:
    """MiniLM's fused AdamW step (no weight decay) after one backward pass on `batch`, over the whole
    word embeddings' table against over the rows the training data reaches (with writing them back
    into the weight): both sides' median ms."""
    calls = {}
    for side, (model, optimizer) in adamw_sides(token_ids).items():
        rows = model.get_input_embeddings().reachable_rows if side == REACHABLE_SIDES[1] else None
        model(**batch).loss.backward()
        grad = rows.param.grad if rows else None

        def step(optimizer: Any = optimizer, rows: Any = rows, grad: Any = grad) -> None:
            optimizer.step()
            if rows:
                rows.param.grad = grad  # dropped after each step: the same gradient for the next call
        calls[side] = step
    return alternating_ms(calls)


def attention_ms(batch: dict[str, Any]) -> dict[str, float]:
    """One MiniLM layer's packed attention while training (12 heads of 32, dropout 0.1) on `batch`'s
    padding, forward and backward, random queries, keys and values: both sides' median ms."""
    import torch

    from ablation import cpu_dropout
    from ablation.packing import Packing

    real = batch["attention_mask"].bool()
    mask = torch.zeros(real.shape[0], 1, 1, real.shape[1]).masked_fill(~real[:, None, None, :],
                                                                       torch.finfo(torch.float32).min)
    packing = Packing.of(mask)
    inputs = [torch.randn(1, int(real.sum()), 12, 32).transpose(1, 2).requires_grad_() for _ in range(3)]

    def step(attend: Callable[..., Any]) -> Callable[[], None]:
        def run() -> None:
            output = attend(packing, *inputs, 32 ** -0.5, 0.1)[0]
            output.backward(torch.ones_like(output))
        return run

    return alternating_ms({"autograd graph": step(autograd_attention),
                           "one Function, two length groups (ablate)": step(cpu_dropout._attend_packed)})


def alternating_ms(calls: dict[str, Callable[[], Any]], repeats: int = 200) -> dict[str, float]:
    """Median ms of each call over `repeats`, the calls taking turns (order swapped every round)."""
    times: dict[str, list[float]] = {name: [] for name in calls}
    for i in range(repeats + 1):  # the first round warms up
        for name in list(calls) if i % 2 else list(calls)[::-1]:
            start = time.perf_counter()
            calls[name]()
            if i:
                times[name].append(time.perf_counter() - start)
    return {name: 1000 * statistics.median(t) for name, t in times.items()}


def embedding_rows_ms(batch: dict[str, Any]) -> dict[str, dict[str, float]]:
    """After one backward pass of MiniLM on `batch` with the kept embedding gradient: gradient
    clipping (max norm 1,000, so the gradients stay as they are) by torch over every weight against
    ablate's on the written rows, and zeroing the buffer whole against zeroing those rows."""
    import torch

    from ablation.embedding_gradient import _kept_rows_hook, clip_grad_norm, keep_embedding_gradient

    model, params, _ = prepared("MiniLM", SETTINGS[4])
    keep_embedding_gradient(model)
    model(**batch).loss.backward()
    weight, hook = _kept_rows_hook(model)
    _, rows = hook.kept_gradient(weight)
    spare = torch.zeros_like(hook.buffer)  # zeroing timed on a copy: the gradient stays as it is
    return {
        "gradient clipping": alternating_ms({
            "torch, every weight": lambda: torch.nn.utils.clip_grad_norm_(params, 1e3),
            "ablate, the written rows": lambda: clip_grad_norm(model, 1e3)}),
        "zeroing the kept buffer": alternating_ms({
            "whole": spare.zero_, "ablate, the written rows": lambda: spare.index_fill_(0, rows, 0.0)}),
    }


def main() -> None:
    import torch

    from ablation import cpu_dropout
    from ablation.cpu_dropout import _attend_packed, keep_mask

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--passes", type=int, default=6, help="timed passes over the batches per comparison")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=16, help="distinct batches (default: 16)")
    parser.add_argument("--no-write", action="store_true", help="print the section only")
    args = parser.parse_args()
    started_at = dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    rate, tokenizer, train, _ = setup(1600, args.batch, args.steps)
    batches = random_batches(tokenizer, train, args.batch, args.steps)
    real = sum(int(b["attention_mask"].sum()) for b in batches) / len(batches)
    title = ("CPU step costs in pairs: dropout draws, the word embeddings' gradient, packed attention, "
             "AdamW's rows")
    lines = [BEGIN, f"## {title} (issue 5)", "",
             provenance(command_line(), started_at), "",
             "Median ms to draw one keep mask (p = 0.1), over 200 draws per side, the sides taking turns:",
             "", "| mask | uniform floats | uniform integers (ablate) | speed-up |", "|---|---|---|---|"]
    for name, shape in SHAPES.items():
        size = torch.Size(shape)
        floats, integers = alternating_ms({"floats": lambda size=size: float_mask(size, 0.1),
                                           "integers": lambda size=size: keep_mask(size, 0.1)}).values()
        lines.append(f"| {name} | {floats:.3f} | {integers:.3f} | {floats / integers:.2f}× |")
    lines += ["", "MiniLM's training step as `ablate run` trains on CPU (packed layers, fused AdamW, "
              f"clipping at 1.0, fp32) on {args.steps} random batches of {args.batch} tweets "
              f"({real:.0f} real tokens a batch on average): per comparison one model, each batch "
              "stepped once per side in turn, "
              f"{args.passes} passes after a warm-up pass. " + mfu_definition(rate), "",
              "| comparison | side | ms per step (mean) | MFU | saved per step: median of the pairs "
              "| speed-up |",
              "|---|---|---|---|---|---|"]
    reached = {i for ids in train["input_ids"] for i in ids} | {tokenizer.pad_token_id}
    token_ids = torch.tensor(sorted(reached))
    comparisons = {**switches(), "AdamW over the word embeddings": None}
    try:
        for comparison, sides in comparisons.items():
            result = (paired_steps("MiniLM", SETTINGS[4], sides, batches, args.passes) if sides else
                      reachable_pairs(batches, token_ids, args.passes))
            (first, before), (last, after) = result["ms"].items()
            saved = statistics.median(result["differences"][last])
            for side, ms in result["ms"].items():
                paired = f"{saved:.1f} ms" if side == last else ""
                lines.append(f"| {comparison} | {side} | {ms:.0f} | "
                             f"{utilisation(result['nonembedding'], real, ms / 1000, rate):.1%} | {paired} | "
                             f"{before / ms:.3f}× |")
            print(f"{comparison}: {first} {before:.0f} → {last} {after:.0f} ms, median pair {saved:.1f} ms",
                  flush=True)
    finally:
        cpu_dropout.keep_mask, cpu_dropout._attend_packed = keep_mask, _attend_packed
    lines += ["", f"The word embeddings' kept gradient after one backward pass (the first batch, "
              f"{int(batches[0]['attention_mask'].sum())} real tokens): median ms over 200 calls per side, "
              "the sides taking turns:", "", "| operation | side | ms | speed-up |", "|---|---|---|---|"]
    for operation, sides in embedding_rows_ms(batches[0]).items():
        before = next(iter(sides.values()))
        lines += [f"| {operation} | {side} | {ms:.2f} | {before / ms:.2f}× |" for side, ms in sides.items()]
    for operation, sides in {"one layer's packed attention, forward and backward": attention_ms(batches[0]),
                             "fused AdamW, no weight decay": adamw_ms(batches[0], token_ids)}.items():
        before = next(iter(sides.values()))
        lines += [f"| {operation} | {side} | {ms:.2f} | {before / ms:.2f}× |" for side, ms in sides.items()]
    publish("\n".join(lines + ["", END]) + "\n", args.no_write, BEGIN, END)


if __name__ == "__main__":
    main()
