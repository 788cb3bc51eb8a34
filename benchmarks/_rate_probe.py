"""`ablate run` with the CPU's fp32 matmul rate measured between its training steps.

MFU divides training's FLOP rate by the machine's matmul rate. On a shared virtual machine that
rate drifts by more than a quarter within seconds (RESULTS.md: 96-187 GFLOP/s), so a rate measured
before the study and training that runs minutes later disagree about the machine they describe.
Here every trial's Trainer measures the rate as study_speed's `matmul_rates` does (square fp32
products of each size, the best size's rate) between its steps (a `TrainerCallback`, the only
change to the run): the rate and the training are measured in the same seconds. After a step, one
size in turn gets an untimed product (a product right after a step runs cold: a single 512 product
measures a quarter of the warm rate) and then timed ones for at least `TIMED_S`. The probes take
at most `BUDGET` of the time the steps took so far; their time is reported so that it can be taken
out of the training time. A probe evicts the caches, so the step after it starts cold: if anything,
training is measured a little slower than it runs.

    python benchmarks/_rate_probe.py PROBES.jsonl run STUDY.toml [ablate run options]

One JSON line per trial is appended to PROBES.jsonl: the trial's key, its probes, their seconds in
all, the seconds inside training steps (forward to optimizer, without loading batches, logging and
evaluating between them), and per size the timed seconds and FLOPs.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from study_speed import MATMUL_SIZES, timed_products  # benchmarks/, this script's folder
from transformers import TrainerCallback

SIZES = MATMUL_SIZES
TIMED_S = 0.05  # timed products per probe: at least this long
BUDGET = 0.4  # probes' time at most this fraction of the steps' time


class RateProbe(TrainerCallback):
    """Measures the fp32 matmul rate of `sizes`, one size in turn, between training steps."""

    def __init__(self, sizes: tuple[int, ...] = SIZES, budget: float = BUDGET,
                 timed_s: float = TIMED_S) -> None:
        self.sizes, self.budget, self.timed_s = sizes, budget, timed_s
        self.step_seconds, self.step_started = 0.0, 0.0
        self.probes, self.seconds = 0, 0.0
        self.timed: dict[int, list[float]] = {n: [0.0, 0.0] for n in sizes}  # seconds, FLOPs
        self.operands: dict[int, tuple[Any, Any, Any]] = {}  # made once per size

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.step_started = time.perf_counter()

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        started = time.perf_counter()
        self.step_seconds += started - self.step_started
        if self.seconds <= self.budget * self.step_seconds:
            self.probe(self.sizes[self.probes % len(self.sizes)])
            self.seconds += time.perf_counter() - started

    def probe(self, n: int) -> None:
        import torch

        if n not in self.operands:  # from a generator of its own: the trial's draws stay its own
            generator = torch.Generator().manual_seed(n)
            a, b = (torch.randn(n, n, generator=generator) for _ in range(2))
            self.operands[n] = a, b, torch.empty(n, n)
        a, b, out = self.operands[n]
        elapsed, reps = timed_products(a, b, self.timed_s, out=out)  # after an untimed warm-up
        self.timed[n][0] += elapsed
        self.timed[n][1] += 2 * n**3 * reps
        self.probes += 1

    def record(self, key: str) -> dict[str, Any]:
        return {"key": key, "probes": self.probes, "seconds": self.seconds, "step_seconds": self.step_seconds,
                "sizes": {str(n): {"seconds": s, "flops": f} for n, (s, f) in self.timed.items() if s}}


def main(argv: list[str]) -> int:
    probes_file, ablate_argv = Path(argv[0]), argv[1:]
    from ablation import train
    from ablation.cli import main as ablate

    stock = train.train_trial

    def probed(trial: Any, *args: Any, extra_callbacks: list[Any] | None = None, **kwargs: Any) -> Any:
        probe = RateProbe(SIZES, BUDGET, TIMED_S)
        try:
            return stock(trial, *args, extra_callbacks=[*(extra_callbacks or []), probe], **kwargs)
        finally:
            with probes_file.open("a", encoding="utf-8") as out:
                out.write(json.dumps(probe.record(trial.key)) + "\n")

    train.train_trial = probed  # train_with_backoff looks it up in the module at each call
    return ablate(ablate_argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
