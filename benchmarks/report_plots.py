"""How long the report's curve plots and metric plot take on a big study, and how tall the metric
plot is, in one process (no storage: synthetic trials with real-sized curves).

    python benchmarks/report_plots.py [--kinds seeds search] [--repeats 3]

`seeds`: 60 variants × 5 seeds; `search`: the baseline and 299 [search] trials; each trial with 200
logged steps and 20 evaluations. To time another commit's plots, put its `ablation/` on PYTHONPATH
(`git archive COMMIT ablation | tar -x -C DIR`): before the `ranking` argument existed every
variant is named, as the report then drew them. Prints the best of --repeats and the number of
distinct warnings matplotlib raised.
"""

from __future__ import annotations

import argparse
import inspect
import math
import tempfile
import time
import warnings
from pathlib import Path

from ablation import records
from ablation.report import plots


def synthetic(kind: str) -> tuple[list[str], list[records.TrialRecord], list[float]]:
    """Variant names, their trials and their metric, spread so that variants differ."""
    names, seeds = (["baseline", *[f"search_{i}" for i in range(1, 300)]], [42]) if kind == "search" \
        else (["baseline", *[f"v{i:03d}" for i in range(1, 60)]], [42, 43, 44, 45, 46])
    means = [(i * 7 % 13) / 13 for i in range(len(names))]
    chosen = []
    for index, name in enumerate(names):
        for seed in seeds:
            scale = 1 + means[index] / 4 + seed / 1000
            history = [{"step": s, "epoch": s / 100, "loss": scale / s ** 0.5, "grad_norm": scale,
                        "learning_rate": 1e-3} for s in range(1, 201)]
            evals = [{"step": s, "epoch": s / 100, "loss": scale / s ** 0.3} for s in range(10, 201, 10)]
            chosen.append(records.TrialRecord(
                number=len(chosen), variant=name, seed=seed, overrides={}, state="COMPLETE",
                value=means[index], result={"history": history, "eval_history": evals}))
    return names, chosen, means


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kinds", nargs="+", choices=("seeds", "search"), default=["seeds", "search"])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    ranked = "ranking" in inspect.signature(plots.plot_curves).parameters
    for kind in args.kinds:
        names, chosen, means = synthetic(kind)
        ranking = [names[i] for i in sorted(range(len(names)), key=lambda i: -means[i])]
        best = {"curves": math.inf, "metric": math.inf}
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for _ in range(args.repeats):
                out = Path(tempfile.mkdtemp())
                start = time.perf_counter()
                plots.plot_curves(chosen, out, names, *([ranking] if ranked else []))
                best["curves"] = min(best["curves"], time.perf_counter() - start)
                start = time.perf_counter()
                plots.plot_metric(names, means, [math.nan] * len(names), [math.nan] * len(names),
                                  "macro_f1", ranking[0], out / "metric.png")
                best["metric"] = min(best["metric"], time.perf_counter() - start)
        height = plots.plt.imread(out / "metric.png").shape[0]
        print(f"{kind}: {len(chosen)} trials, {len(names)} variants: curves {best['curves']:.2f} s, "
              f"metric {best['metric']:.2f} s, metric plot {height} px tall, "
              f"{len({str(w.message) for w in caught})} distinct warnings")


if __name__ == "__main__":
    main()
