"""What one single-seed comparison of the report costs: the paired bootstrap interval with
McNemar's p (accuracy) against the same with the paired permutation p (macro-F1).

Usage: python benchmarks/report_stats.py [--examples N] [--repeats R]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from ablation.report.effects import BOOTSTRAP_RESAMPLES
from ablation.report.stats import metric_function, paired_bootstrap_difference


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=3534)  # the demo's test tweets
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    for flag, value in (("--examples", args.examples), ("--repeats", args.repeats)):
        if value < 1:
            parser.error(f"{flag} {value}: give 1 or more")
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, args.examples)
    ours = np.where(rng.random(args.examples) < 0.75, labels, rng.integers(0, 3, args.examples))
    theirs = np.where(rng.random(args.examples) < 0.74, labels, rng.integers(0, 3, args.examples))
    for name in ("accuracy", "macro_f1"):
        metric = metric_function(name, classes=range(3))
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            result = paired_bootstrap_difference(ours, theirs, labels, metric,
                                                 n_resamples=BOOTSTRAP_RESAMPLES, seed=0)
            times.append(time.perf_counter() - start)
        print(f"{name:<9} {result.method:<22} median {np.median(times):.3f} s "
              f"(runs {', '.join(f'{t:.3f}' for t in times)}), p {result.p_value:.4f}")


if __name__ == "__main__":
    main()
