"""OpenMP settings against MiniLM's CPU training step: thread binding and the wait policy.

torch's CPU wheel runs its operators on GNU OpenMP (libgomp). A MiniLM step is many short
operators, so how the two threads wait between them (`OMP_WAIT_POLICY`) and whether they stay on
their cores (`OMP_PROC_BIND`, `OMP_PLACES`) could matter. Each setting runs in a fresh process
(libgomp reads them at start): step_ops's measurement of its first row (12 length-grouped batches
of 32, fused AdamW, clipping at 1.0; ms per step over two passes after a warm-up pass); the
settings alternate for `--rounds` rounds.

    source ../shared/offline-hf.sh
    python benchmarks/omp_settings.py [--rounds 2]

Prints a markdown table; the reading is in benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

SETTINGS: dict[str, dict[str, str]] = {
    "libgomp's defaults": {},
    "OMP_PROC_BIND=close OMP_PLACES=cores": {"OMP_PROC_BIND": "close", "OMP_PLACES": "cores"},
    "OMP_WAIT_POLICY=ACTIVE": {"OMP_WAIT_POLICY": "ACTIVE"},
    "OMP_WAIT_POLICY=PASSIVE": {"OMP_WAIT_POLICY": "PASSIVE"},
}


def step_ms() -> float:
    """ms per MiniLM training step in this process, timed as step_ops times it."""
    from _tweets import tweets
    from step_ops import SETTINGS as STEP_SETTINGS
    from step_ops import grouped_batches, measure
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    tokenizer, _, train = tweets(1600)
    batches = grouped_batches(tokenizer, train, 32, 12)
    return measure("MiniLM", STEP_SETTINGS[0], batches, rate=1.0)["total"]  # the rate only scales MFU


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    if args.child:
        print(json.dumps(step_ms()))
        return
    runs: dict[str, list[float]] = {name: [] for name in SETTINGS}
    for _ in range(args.rounds):
        for name, env in SETTINGS.items():
            out = subprocess.run([sys.executable, __file__, "--child"], env=os.environ | env,
                                 capture_output=True, text=True, check=True)
            runs[name].append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(f"  {name}: {runs[name][-1]:.0f} ms", flush=True)
    print("| setting | ms per step, each round |\n|---|---|")
    for name, ms in runs.items():
        print(f"| {name} | {', '.join(f'{m:.0f}' for m in ms)} |")


if __name__ == "__main__":
    main()
