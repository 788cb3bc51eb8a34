"""How `ablate status`, `status --json`, `report` and the report step at the end of `run` scale with
the number of trials in a study.

    python benchmarks/report_scaling.py --from STUDY.toml [--sizes 10 50 150 300] [--kinds seeds search]

STUDY.toml is a study that has run (any small one: its trials' stored records are the real thing).
Its complete trials are cloned, with Optuna's API, into new studies of each size in a temporary
folder, each with an experiment file naming the cloned variants, so that ablate reads them as its
own:

- `seeds`: variants × 5 seeds (10 trials = 2 variants, 150 = 30 variants, 300 = 60 variants);
- `search`: a [search] study: the baseline and N − 1 search trials, at one seed;
- `one`: N variants at one seed (each compared with the baseline on its stored predictions).

Each clone gets the source's curves, metrics and predictions with its values moved a little (and a
few predictions changed), so that the comparisons have something to compute. `--examples N` and
`--curve-points N` stretch the stored predictions and curves to a real study's length (the tiny
test study stores 24 validation and 60 test predictions). Each command runs in a fresh process, as a
user runs it: wall seconds, peak memory, and how often the storage was read for all trials
(`get_all_trials`), from a second, in-process run of the same command.
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SEEDS = [42, 43, 44, 45, 46]
COMMANDS = {"status": ["status"], "status --json": ["status", "--json"], "report": ["report"],
            "report --format json": ["report", "--format", "json"]}


def _toml_table(name: str, table: dict[str, Any]) -> str:
    from ablation.config import toml_value

    return f"[{name}]\n" + "".join(f"{key} = {toml_value(value)}\n" for key, value in table.items())


def experiment_text(source: dict[str, Any], name: str, folder: Path, kind: str, n: int) -> str:
    """The experiment file of a clone: the source's [data], [model], [tracking] and [baseline]."""
    experiment = {"name": name, "output_dir": str(folder / name),
                  "seeds": SEEDS if kind == "seeds" else SEEDS[:1]}
    text = _toml_table("experiment", experiment)
    for section in ("data", "model", "tracking", "baseline"):
        if section in source:
            text += "\n" + _toml_table(section, source[section])
    variants = (n // len(SEEDS) - 1 if kind == "seeds" else n - 1) if kind != "search" else 0
    text += "\n[variants]\n" + "".join(
        f"v{i:03d} = {{ learning_rate = {1e-4 * (i + 1):.6g} }}\n" for i in range(variants))
    if kind == "search":
        text += (f'\n[search]\nn_trials = {n - 1}\nsampler = "random"\n[search.space]\n'
                 "learning_rate = { low = 1e-5, high = 1e-2, log = true }\n"
                 "batch_size = [8, 16, 32]\n")
    return text


def _stretch(values: list[Any], n: int) -> list[Any]:
    return (values * (n // max(1, len(values)) + 1))[:n] if values and n else values


def _moved_result(result: dict[str, Any], metric: str, value: float, rng: random.Random,
                  examples: int, curve_points: int) -> dict[str, Any]:
    """A source trial's result as another trial's: its value, a few predictions changed."""
    moved = copy.deepcopy(result)
    for split in ("validation", "test"):
        if isinstance(moved.get(split), dict):
            moved[split][metric] = value if split == "validation" else min(1.0, max(
                0.0, value + rng.uniform(-0.02, 0.02)))
        predictions, labels = moved.get(f"{split}_predictions"), moved.get(f"{split}_labels")
        if predictions and labels:
            if examples:
                predictions = _stretch(predictions, examples if split == "test" else examples // 3)
                labels = _stretch(labels, len(predictions))
            classes = max(labels) + 1
            moved[f"{split}_predictions"] = [rng.randrange(classes) if rng.random() < 0.1 else p
                                             for p in predictions]
            moved[f"{split}_labels"] = labels
    if curve_points:
        for curve in ("history", "eval_history"):
            points = moved.get(curve) or []
            if points:
                last = points[-1].get("epoch", 1) or 1
                moved[curve] = [dict(p, epoch=last * (i + 1) / curve_points)
                                for i, p in enumerate(_stretch(points, curve_points))]
    return moved


def clone_study(source_file: Path, folder: Path, kind: str, n: int, examples: int = 0,
                curve_points: int = 0) -> Path:
    """Write folder/<kind>_<n>.toml and its study of n trials, cloned from source_file's trials."""
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    from ablation import records
    from ablation.config import load_spec
    from ablation.queue import open_study
    from ablation.variants import expand

    source_spec = load_spec(source_file, need_data=False)
    source = open_study(source_spec, create=False)
    done = [t for t in source.get_trials(deepcopy=False) if t.state.name == "COMPLETE"
            and records.VARIANT in t.user_attrs]
    if not done:
        raise SystemExit(f"{source_file}: its study has no complete trial to clone")
    name = f"{kind}_{n}"
    path = folder / f"{name}.toml"
    path.write_text(experiment_text(tomllib.loads(source_file.read_text(encoding="utf-8")),
                                    name, folder, kind, n), encoding="utf-8")
    spec = load_spec(path, need_data=False)
    study = open_study(spec)
    for key, value in source.user_attrs.items():
        if key not in ("best_model", records.SUPERSEDED):
            study.set_user_attr(key, value)
    metric = source.user_attrs.get("metric") or spec.experiment.metric
    rng = random.Random(n)
    if kind == "search":
        trials = expand(spec)[:1] + [None] * (n - 1)
    else:
        trials = expand(spec)
    space = {"learning_rate": FloatDistribution(1e-5, 1e-2, log=True),
             "batch_size": CategoricalDistribution((8, 16, 32))}
    frozen = []
    for number, trial in enumerate(trials):
        template = done[number % len(done)]
        value = min(1.0, max(0.0, (template.value or 0.5) + rng.uniform(-0.05, 0.05)))
        params: dict[str, Any] = {}
        if trial is None:  # a search trial, named by its number
            params = {"learning_rate": 10 ** rng.uniform(-5, -2), "batch_size": rng.choice((8, 16, 32))}
            attrs = {records.VARIANT: f"{records.SEARCH_PREFIX}{number}", records.SEED: SEEDS[0],
                     records.KEY: f"{records.SEARCH_PREFIX}{number}-s{SEEDS[0]}",
                     records.OVERRIDES: params}
        else:
            attrs = records.trial_attrs(trial)
        result = _moved_result(template.user_attrs.get(records.RESULT, {}), metric, value, rng,
                               examples, curve_points)
        frozen.append(optuna.trial.create_trial(
            state=optuna.trial.TrialState.COMPLETE, value=value, params=params,
            distributions={k: space[k] for k in params},
            intermediate_values=dict(template.intermediate_values) if params else None,
            user_attrs={**attrs, records.RESULT: result,
                        records.WORKER: template.user_attrs.get(records.WORKER)}))
    study.add_trials(frozen)
    return path


def _child(*args: str) -> str:
    """This script's own step in a fresh process (the parent stays small: a child forked from a
    process holding optuna and matplotlib would count their memory as its own)."""
    done = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{done.stderr}")
    return done.stdout.strip().splitlines()[-1]


def run_timed(args: list[str], repeats: int) -> tuple[float, float]:
    """Best wall seconds of `repeats` runs of `python -m ablation ARGS`, each in a fresh process,
    and its peak resident memory (MiB, from /usr/bin/time where the machine has it; else NaN)."""
    best, peak = float("inf"), float("nan")
    for _ in range(repeats):
        with tempfile.NamedTemporaryFile("r") as measured:
            timer = ["/usr/bin/time", "-o", measured.name, "-f", "%M"] if Path(
                "/usr/bin/time").exists() else []
            start = time.perf_counter()
            done = subprocess.run([*timer, sys.executable, "-m", "ablation", *args],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                  env={**os.environ, "PYTHONPATH": str(ROOT)})
            best = min(best, time.perf_counter() - start)
            if done.returncode not in (0, 1):  # 1: a failed trial (none here)
                raise SystemExit(f"ablate {' '.join(args)} failed: {done.stderr}")
            if timer:
                peak = int(measured.read().split()[-1]) / 1024
    return best, peak


def storage_reads(args: list[str]) -> str:
    """How often `ablate ARGS`, run in this process, asks for the study's trials (Study.get_trials)
    and how often that reads the database (Optuna's cache re-reads only unfinished trials)."""
    import contextlib
    import io

    from optuna.storages import RDBStorage
    from optuna.storages._cached_storage import _CachedStorage

    from ablation.cli import main

    counts = {"asked": 0, "read": 0}

    def counted(real: Any, name: str) -> Any:
        def wrapper(*a: Any, **k: Any) -> Any:
            counts[name] += 1
            return real(*a, **k)
        return wrapper

    asked, read = _CachedStorage.get_all_trials, RDBStorage._get_trials
    _CachedStorage.get_all_trials = counted(asked, "asked")
    RDBStorage._get_trials = counted(read, "read")
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            main(args)
    finally:
        _CachedStorage.get_all_trials, RDBStorage._get_trials = asked, read
    return f"{counts['asked']}/{counts['read']}"


def run_report_step(path: Path) -> float:
    """The report step at the end of `ablate run` (sweep.run_study's last lines), in this process,
    from the opened study on: what a run adds after its last trial."""
    from ablation.config import load_spec
    from ablation.models import export_best_model
    from ablation.queue import open_study
    from ablation.report import build_report, write_report

    spec = load_spec(path, need_data=False)
    study = open_study(spec, create=False)
    start = time.perf_counter()
    built = build_report(spec, study)
    export_best_model(spec, study, built, echo=lambda line: None)
    write_report(spec, study, built)
    return time.perf_counter() - start


def _step(args: list[str]) -> None:
    """A child's step: `clone SOURCE FOLDER KIND N EXAMPLES POINTS`, `reads ARGS...`, `step FILE`."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if args[0] == "clone":
        source, folder, kind, n, examples, points = args[1:]
        print(clone_study(Path(source), Path(folder), kind, int(n), int(examples), int(points)))
    elif args[0] == "reads":
        print(storage_reads(args[1:]))
    else:
        print(f"{run_report_step(Path(args[1])):.3f}")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--step":
        _step(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--from", dest="source", type=Path, required=True,
                        help="the experiment file of a study that has run")
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 50, 150, 300])
    parser.add_argument("--kinds", nargs="+", choices=("seeds", "search", "one"),
                        default=["seeds", "search"])
    parser.add_argument("--examples", type=int, default=0,
                        help="test predictions per trial (validation: a third); 0: as stored")
    parser.add_argument("--curve-points", type=int, default=0,
                        help="points per training curve; 0: as stored")
    parser.add_argument("--repeats", type=int, default=2, help="runs per command; the best counts")
    parser.add_argument("--commands", nargs="+", choices=list(COMMANDS), default=list(COMMANDS))
    parser.add_argument("--keep", type=Path, help="build the studies here and keep them")
    args = parser.parse_args()
    folder = args.keep or Path(tempfile.mkdtemp(prefix="report_scaling_"))
    folder.mkdir(parents=True, exist_ok=True)
    print(f"python {platform.python_version()}, {os.cpu_count()} cores; studies in {folder}")
    print(f"{'study':<12} {'command':<20} {'wall s':>8} {'peak MiB':>9} {'asked/read':>10}")
    for kind in args.kinds:
        for n in args.sizes:
            path = _child("--step", "clone", str(args.source.absolute()), str(folder), kind,
                          str(n), str(args.examples), str(args.curve_points))
            for label in args.commands:
                command = [*COMMANDS[label], path]
                seconds, peak = run_timed(command, args.repeats)
                reads = _child("--step", "reads", *command)
                print(f"{kind + '_' + str(n):<12} {label:<20} {seconds:>8.2f} {peak:>9.0f} "
                      f"{reads:>10}", flush=True)
            seconds = min(float(_child("--step", "step", path)) for _ in range(args.repeats))
            print(f"{kind + '_' + str(n):<12} {'run: report step':<20} {seconds:>8.2f}", flush=True)


if __name__ == "__main__":
    main()
