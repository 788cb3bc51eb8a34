"""`ablate`: a thin command line over the library. Parses, calls, prints; exit codes 0/1/2/130."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any, NoReturn

from .errors import EXIT_BAD_INPUT, EXIT_INTERRUPTED, EXIT_OK, EXIT_TRIALS_FAILED, AblateInputError


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line and exit code 2, like every other bad input."""

    def error(self, message: str) -> NoReturn:
        raise AblateInputError(f"{self.prog}: {message} (see `{self.prog} --help`)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="ablate", description="Ablation studies for fine-tuning transformer "
                     "text classifiers: baseline + variants × seeds as Optuna trials.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def add(name: str, help: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=help)
        sub.add_argument("file", type=Path, help="experiment file (TOML)")
        sub.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                         help="override a key of the file, e.g. --set baseline.epochs=2 (repeat)")
        return sub

    run = add("run", "run every variant × seed not yet complete, then write the report")
    run.add_argument("--only", action="append", default=[], metavar="NAME",
                     help="run only this variant, by full name (baseline_bs32); repeat for more")
    run.add_argument("--dry-run", action="store_true", help="print the plan; train nothing")
    add("report", "regenerate the report from the study storage")
    add("status", "list the study's trials and their states")
    add("validate", "check the file, the data and the model; train nothing")
    return parser


def _quiet_libraries() -> None:
    console = logging.StreamHandler()
    console.setLevel(logging.WARNING)  # the console shows warnings; each trial.log gets INFO too
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s",
                        handlers=[console])
    logging.getLogger("ablation").setLevel(logging.INFO)
    import optuna
    import transformers

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()  # per-trial weight loading/saving bars
    import datasets

    datasets.logging.set_verbosity_error()
    if not sys.stderr.isatty():
        datasets.disable_progress_bars()


def _print_spec(spec: Any) -> None:
    print(f"study {spec.name}: {spec.path}")
    print(f"  storage: {spec.experiment.storage}")
    print(f"  output:  {spec.output_dir}")
    print(f"  data:    {spec.data.dataset}" + (f" ({spec.data.config})" if spec.data.config else ""))
    print(f"  model:   {spec.model.name}")


def cmd_run(args: argparse.Namespace) -> int:
    from .config import load_spec
    from .sweep import run_study, select_trials

    spec = load_spec(args.file, args.sets)
    _print_spec(spec)
    if args.dry_run:
        return _dry_run(spec, select_trials(spec, args.only))
    outcome = run_study(spec, only=args.only or None)
    _print_summary(spec, outcome.report)
    if outcome.failed:
        print(f"{len(outcome.failed)} trial(s) failed: {', '.join(outcome.failed)}; "
              f"see `ablate status {args.file}`", file=sys.stderr)
        return EXIT_TRIALS_FAILED
    return EXIT_OK


def _dry_run(spec: Any, trials: list) -> int:
    from .records import load_records
    from .sweep import open_study
    from .variants import describe_changes

    done: set[str] = set()
    storage_file = spec.experiment.storage.removeprefix("sqlite:///")
    if not spec.experiment.storage.startswith("sqlite:///") or Path(storage_file).exists():
        try:
            done = {r.key for r in load_records(open_study(spec, create=False)) if r.complete}
        except AblateInputError:
            pass
    print(f"plan: {len(trials)} trial(s)")
    for trial in trials:
        state = "complete, re-used" if trial.key in done else "to run"
        print(f"  {trial.key:<32} {state:<18} {describe_changes(trial.overrides)}")
    return EXIT_OK


def _print_summary(spec: Any, built: dict[str, Any]) -> None:
    from .report.effects import fmt_interval
    from .report.markdown import fmt, fmt_delta

    variants, metric = built["variants"], built["metric"]
    if len(variants):
        print(f"\n{'variant':<28} {metric:>18} {'Δ':>9}  changes")
        for _, row in variants.iterrows():
            mark = " ★" if row["best"] else ""
            delta = "—" if row["variant"] == "baseline" else fmt_delta(row["delta"])
            print(f"{row['variant'] + mark:<28} {fmt(row['value'], row['value_std']):>18} "
                  f"{delta:>9}  {row['changes']}")
    if built["effects"]:
        print("\nwhat mattered (Δ vs reference, 95 % CI):")
        for effect in built["effects"]:
            print(f"  {effect.variant:<28} vs {effect.reference:<9} "
                  f"{fmt_delta(effect.interval.estimate):>8} {fmt_interval(effect.interval):>20}  "
                  f"{effect.verdict}")
    print(f"\nreport: {spec.output_dir / 'report.md'}")
    if spec.tracking.backend == "swanlab" and spec.tracking.mode == "local":
        print(f"dashboard: swanlab watch {spec.output_dir / 'swanlog'} -h 127.0.0.1")


def cmd_report(args: argparse.Namespace) -> int:
    from .config import load_spec
    from .report import write_report
    from .sweep import open_study

    spec = load_spec(args.file, args.sets)
    path = write_report(spec, open_study(spec, create=False))
    print(f"report: {path}")
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    from .config import load_spec
    from .records import load_records
    from .sweep import open_study

    spec = load_spec(args.file, args.sets)
    records = load_records(open_study(spec, create=False))
    print(f"study {spec.name} ({spec.experiment.storage}): {len(records)} trial(s)")
    print(f"{'#':>4}  {'trial':<32} {'state':<9} {spec.experiment.metric:>10}  error")
    for r in records:
        value = "" if r.value is None else f"{r.value:.4f}"
        print(f"{r.number:>4}  {r.key:<32} {r.state:<9} {value:>10}  {r.error or ''}")
    return EXIT_TRIALS_FAILED if any(r.state == "FAIL" for r in _latest(records)) else EXIT_OK


def _latest(records: list) -> list:
    from .records import latest_by_key

    return list(latest_by_key(records).values())


def cmd_validate(args: argparse.Namespace) -> int:
    from .config import load_spec
    from .data import load_labeled_splits
    from .sweep import TrialInputs, preflight, select_trials

    spec = load_spec(args.file, args.sets)
    _print_spec(spec)
    trials = select_trials(spec, None)
    splits = load_labeled_splits(spec.data)
    for note in splits.notes:
        print(f"data: {note}")
    preflight(spec, trials, TrialInputs(spec, splits))
    print(f"ok: {len(trials)} trial(s); train {len(splits.train)}, validation "
          f"{len(splits.validation)}, test {0 if splits.test is None else len(splits.test)} rows; "
          f"labels {', '.join(splits.label_names)}")
    return EXIT_OK


COMMANDS = {"run": cmd_run, "report": cmd_report, "status": cmd_status, "validate": cmd_validate}


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        args = build_parser().parse_args(argv)
        _quiet_libraries()
        return COMMANDS[args.command](args)
    except AblateInputError as err:
        print(f"ablate: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("ablate: interrupted; completed trials are kept in the storage", file=sys.stderr)
        return EXIT_INTERRUPTED


def entry_point() -> None:
    sys.exit(main())
