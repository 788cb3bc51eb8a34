"""Does the cost of a study grow linearly with examples and with variants, with the fixed costs
paid once? `ablate run` on tweets (MiniLM cut to 2 layers, SwanLab local tracking, as
study_speed.py's default), once per grid point, each in a fresh process and a fresh study.

    source ../shared/offline-hf.sh
    python benchmarks/scaling.py [--examples 192 384 768] [--variants 1 2 4]

Examples: one variant at each training-set size; the trial's training time should be a line
through (nearly) the origin, the whole trial a line whose intercept is the per-trial fixed cost
(model, tracker, the evaluations of a fixed validation and test set). Variants: 384 examples,
1, 2 and 4 variants; the study's wall time should be a line whose intercept is the per-study fixed
cost (imports, data, tokenization, report) and whose slope is one trial. Prints markdown.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from study_speed import VARIANTS, Size, ablate_toml  # benchmarks/, this script's folder

ROOT = Path(__file__).resolve().parents[1]


def study(work: Path, name: str, examples: int, variants: int) -> Path:
    """study_speed.py's default study (its first `variants` variants) at `examples`."""
    size = Size(name, 2, examples, 192, 192, 16, 12)
    return ablate_toml(size, work, name, "auto", dict(list(VARIANTS.items())[:variants]))


def run(path: Path) -> tuple[float, list[dict]]:
    """Wall time of `ablate run` and the stored results of its trials."""
    import optuna

    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "ablation", "run", str(path), "--quiet"], check=True,
                   cwd=ROOT, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    name = path.stem
    storage = f"sqlite:///{path.parent / name / 'study.db'}"
    trials = optuna.load_study(study_name=name, storage=storage).get_trials()
    return wall, [t.user_attrs["result"] for t in trials]


def line(xs: list[float], ys: list[float]) -> str:
    from scipy.stats import linregress

    fit = linregress(xs, ys)
    return f"{fit.intercept:.2f} s + {fit.slope:.4g} s × x (R² {fit.rvalue ** 2:.4f})"


def measure(work: Path) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, nargs="+", default=[192, 384, 768])
    parser.add_argument("--variants", type=int, nargs="+", default=[1, 2, 4], choices=[1, 2, 3, 4])
    args = parser.parse_args()

    print("| run | examples | variants | study wall | trial wall (mean) | train time (mean) |")
    print("|---|---|---|---|---|---|")
    by_examples, by_variants = [], []
    for examples in args.examples:
        wall, results = run(study(work, f"e{examples}", examples, 1))
        trial, train = results[0]["runtime_s"], results[0]["train_runtime_s"]
        by_examples.append((examples, trial, train))
        print(f"| examples | {examples} | 1 | {wall:.1f} s | {trial:.2f} s | {train:.2f} s |")
    for variants in args.variants:
        wall, results = run(study(work, f"v{variants}", 384, variants))
        by_variants.append((variants, wall))
        trial = sum(r["runtime_s"] for r in results) / len(results)
        train = sum(r["train_runtime_s"] for r in results) / len(results)
        print(f"| variants | 384 | {variants} | {wall:.1f} s | {trial:.2f} s | {train:.2f} s |")
    print()
    if len(by_examples) > 1:
        xs = [float(e) for e, _, _ in by_examples]
        print(f"- training time against examples: {line(xs, [t for _, _, t in by_examples])}")
        print(f"- whole trial against examples: {line(xs, [t for _, t, _ in by_examples])}")
    if len(by_variants) > 1:
        xs = [float(v) for v, _ in by_variants]
        print(f"- study wall against variants: {line(xs, [w for _, w in by_variants])}")


def main() -> None:
    # Removed at the end, stopped or not: the studies' databases, checkpoints and SwanLab folders.
    with tempfile.TemporaryDirectory(prefix="scaling-", ignore_cleanup_errors=True) as work:
        measure(Path(work))


if __name__ == "__main__":
    main()
