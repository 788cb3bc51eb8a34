"""`ablate`: a thin command line over the library. Parses, calls, prints; exit codes 0/1/2/130."""

from __future__ import annotations

import argparse
import codecs
import contextlib
import difflib
import errno
import json
import logging
import os
import shlex
import sys
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

from . import interrupts
from .errors import (
    EXIT_BAD_INPUT,
    EXIT_BROKEN_PIPE,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_TRIALS_FAILED,
    AblateInputError,
    as_typed,
    set_shown,
    some_of,
)


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line and exit code 2, like every other bad input."""

    def error(self, message: str) -> NoReturn:
        unknown = [item for item in getattr(self, "given", ()) if item.startswith("-")]
        if message.endswith("required: command") and unknown:  # `ablate --verison`: no command
            message = f"unrecognized arguments: {' '.join(unknown)}{self._option_meant(None, unknown)}"
        raise AblateInputError(f"{self.prog}: {message} (see `{self.prog} --help`)")

    def parse_args(self, args: Any = None, namespace: Any = None) -> argparse.Namespace:
        """An unknown option is the command's: `ablate run --help` lists what it takes."""
        self.given = list(sys.argv[1:] if args is None else args)
        parsed, extra = self.parse_known_args(args, namespace)
        if extra and getattr(parsed, "command", None) == "predict" and not any(
                item.startswith("-") for item in extra):
            # Texts after an option (`predict MODEL --json "text"`): argparse takes a positional
            # list in one place only. They come back in the order given.
            parsed.texts, extra = [*parsed.texts, *extra], []
        if extra:
            command = getattr(parsed, "command", None)
            prog = f"{self.prog} {command}" if command else self.prog
            raise AblateInputError(f"{prog}: unrecognized arguments: {' '.join(extra)}"
                                   f"{self._option_meant(command, extra)} (see `{prog} --help`)")
        return parsed

    def _option_meant(self, command: str | None, extra: list[str]) -> str:
        """`; did you mean '--dry-run'?` for `--dryrun`: the command's option closest to the first
        unknown one that has a close one."""
        parser: argparse.ArgumentParser = self
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction) and command in action.choices:
                parser = action.choices[command]
        options = [option for action in parser._actions for option in action.option_strings]
        for item in extra:
            close = difflib.get_close_matches(item.split("=", 1)[0], options, n=1)
            if item.startswith("-") and close:
                return f"; did you mean {close[0]!r}?"
        return ""

    def _check_value(self, action: argparse.Action, value: Any) -> None:
        """A command or choice one typo off (`ablate rn`, `--format jsn`) names the one meant."""
        try:
            super()._check_value(action, value)  # type: ignore[misc]
        except argparse.ArgumentError as err:
            close = difflib.get_close_matches(str(value), [str(c) for c in action.choices or ()],
                                              n=1)
            if not close:
                raise
            raise argparse.ArgumentError(action, f"{err.message}; did you mean {close[0]!r}?"
                                         ) from None


class _Interrupted(KeyboardInterrupt):
    """Ctrl+C in a command that trains nothing (predict, evaluate): `said` is what was done, in
    place of the line about completed trials."""

    def __init__(self, said: str) -> None:
        super().__init__()
        self.said = said


class _Version(argparse.Action):
    """`ablate --version`: asked of git only when given (version.ablate_version)."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *args: Any) -> NoReturn:
        from .version import ablate_version

        print(f"ablate {ablate_version()}")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="ablate", description="Ablation studies for fine-tuning transformer "
                     "text classifiers: baseline + variants × seeds as Optuna trials.")
    parser.add_argument("--version", action=_Version,
                        help="print ablate's version (and commit, run from a git checkout)")
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
    run.add_argument("--rerun", action="append", default=[], metavar="NAME",
                     help="run this variant again; its old results are kept as superseded")
    run.add_argument("--retry-failed", action="store_true",
                     help="run only the trials whose attempts all failed")
    run.add_argument("--workers", type=_positive_int, default=1, metavar="N",
                     help="train in N worker processes on this machine (one GPU each if there are N)")
    graceful = {"action": "store_true",
                "help": "on Ctrl+C, finish the running trial first (Ctrl+C again stops at once)"}
    run.add_argument("--graceful", **graceful)
    run.add_argument("--force-new", action="store_true",
                     help="delete the stored study of this name (every trial of it) and start afresh")
    run.add_argument("--quiet", action="store_true",
                     help="plain lines, one per trial (no live table, no per-evaluation lines)")
    worker = add("worker", "join a study (from any machine) and train its queued trials")
    worker.add_argument("--storage", metavar="URL", type=_storage_url,
                        help="the study's storage URL (default: the file's [experiment] storage)")
    worker.add_argument("--only", action="append", default=[], metavar="NAME",
                        help="claim only this variant's trials, by full name; repeat for more")
    worker.add_argument("--wait", type=_seconds, default=None, metavar="SECONDS",
                        help="wait at most SECONDS for `ablate run` to create the study and queue "
                        "its trials (default: until it does; 0: refuse a study not there)")
    worker.add_argument("--graceful", **graceful)
    report = add("report", "regenerate the report from the study storage")
    report.add_argument("--format", choices=("md", "csv", "json"), default="md",
                        help="md: report.md with results.csv and plots (default); csv: results.csv "
                        "only; json: report.json (per-variant table, effects, not_compared, "
                        "search, trials, diagnosis)")
    status = add("status", "list the study's trials and their states")
    status.add_argument("--json", action="store_true", help="print the trials as JSON")
    add("validate", "check the file, the data and the model; train nothing")
    dashboard = add("dashboard", "serve the study's SwanLab runs (mode \"local\") on 127.0.0.1 until Ctrl+C")
    dashboard.add_argument("--port", type=_port, default=5092, help="port (default: 5092)")
    dashboard.add_argument("--no-browser", action="store_true", help="do not open a web browser")
    _add_model_commands(commands)
    init = commands.add_parser("init", help="write a commented starter experiment file",
                               description="write a commented starter experiment file")
    init.add_argument("file", nargs="?", default="experiment.toml",  # str: Path drops a final /
                      help="where to write it (default: experiment.toml; - prints it); never "
                      "overwritten")
    return parser


def _port(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (1-65535)")
    return int(text)


MODEL_OR_STUDY = ("a model folder (a study's best_model/, or trials/<trial>/model/), or an experiment "
                  "file whose best_model/ is used")


TRIAL_HELP = ("with an experiment file: this trial's model (e.g. baseline_bs32-s42) instead of the "
              "best one; save_models = \"all\" keeps every trial's")


def _add_model_commands(commands: Any) -> None:
    """`predict` and `evaluate`: using a trained model (see ablation/inference/)."""
    predict = commands.add_parser(
        "predict", help="label new texts with a trained model (a study's best model)",
        description="label new texts with a trained model: top label and every probability")
    predict.add_argument("model", metavar="MODEL_OR_STUDY", help=MODEL_OR_STUDY)
    predict.add_argument("texts", nargs="*", default=[], metavar="TEXT",  # optional: or --file
                         help="texts to classify")
    predict.add_argument("--pair", dest="pairs", action="append", default=None, metavar="TEXT",
                         help="for a model trained on text pairs (or a folder with no "
                              "ablate.json: a cross-encoder): a TEXT's second text, one "
                              "--pair per TEXT in the same order")
    predict.add_argument("--file", type=Path, action="append", default=[], metavar="PATH",
                         help="more texts, one per line (repeat for more files; - reads standard "
                              "input); for a model trained on text pairs, TEXT<TAB>SECOND TEXT lines")
    predict.add_argument("--trial", metavar="TRIAL", help=TRIAL_HELP)
    predict.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                         help="override a key of the experiment file (as for run)")
    predict.add_argument("--json", action="store_true",
                         help="print one JSON object per text (JSON lines)")
    predict.add_argument("--batch-size", type=_positive_int, default=None, metavar="N",
                         help="at most N texts per batch (default 1024 on a GPU, 64 on CPU; "
                              "batches also stay within 65,536 padded tokens)")
    evaluate = commands.add_parser(
        "evaluate", help="every metric of a trained model on labelled data",
        description="every metric of a trained model on labelled data (default: the study's test "
        "split), or of each kept checkpoint of a trial with --checkpoints")
    evaluate.add_argument("model", metavar="MODEL_OR_STUDY", help=MODEL_OR_STUDY)
    evaluate.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                          help="override a key of the experiment file (as for run)")
    evaluate.add_argument("--dataset", metavar="DATASET", help="a Hub id or a local file or folder "
                          "(default: the study's [data])")
    evaluate.add_argument("--config", metavar="NAME", help="Hub config name of --dataset")
    evaluate.add_argument("--split", default=None, metavar="SPLIT",
                          help="split to evaluate (default: test; validation with --checkpoints)")
    evaluate.add_argument("--text-column", metavar="NAME", type=as_typed,
                          help="text column of --dataset (default: the study's, else text)")
    evaluate.add_argument("--text-pair-column", metavar="NAME", type=as_typed,
                          help="second-text column of --dataset, for a model trained on text "
                          "pairs (default: the column it was trained with)")
    evaluate.add_argument("--label-column", metavar="NAME", type=as_typed,
                          help="label column of --dataset: label names or class ids (default: the "
                          "study's, else label)")
    evaluate.add_argument("--labels", choices=("names", "ids"), default=None,
                          help="read --dataset's labels as the model's label names or as its class "
                          "ids (needed only where they are both and the two differ: digit names)")
    evaluate.add_argument("--trial", metavar="TRIAL", help=TRIAL_HELP)
    evaluate.add_argument("--checkpoints", metavar="TRIAL",
                          help="evaluate every kept checkpoint of this trial of the study "
                          "(e.g. baseline-s42) and show where the metric peaked")
    evaluate.add_argument("--batch-size", type=_positive_int, default=None, metavar="N",
                          help="at most N examples per batch (default 1024 on a GPU, 64 on CPU; "
                               "batches also stay within 65,536 padded tokens)")
    evaluate.add_argument("--json", action="store_true", help="print the results as JSON")


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds >= 0")
    return value


def _storage_url(text: str) -> str:
    """`--storage "$DB"` with DB unset is empty: taken as no --storage, the worker trained into the
    file's own storage (a local SQLite file), not the shared one."""
    if not text.strip():
        raise argparse.ArgumentTypeError(f"{text!r} is empty: give the study's storage URL (an "
                                         "unset shell variable?), or leave --storage out to use "
                                         "the file's [experiment] storage")
    return text


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer >= 1")
    return value


class _ConsoleHandler(logging.StreamHandler):
    """Writes to sys.stderr as it is at each record: the live table swaps it for a stream that
    prints above the table (a handler holding the real stderr wrote onto the table's last line,
    and its next redraw wiped the warning)."""

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


# Each library reads these when it is first imported (transformers' progress bars follow
# huggingface_hub's): set before any import, they quiet it without importing it, which cost
# `status` and `report` (they use neither transformers nor datasets) 1.5-3 s of every call. A
# user's own setting of any of them stands.
QUIET_LIBRARIES_ENVIRONMENT = {"TRANSFORMERS_VERBOSITY": "error", "DATASETS_VERBOSITY": "error",
                               "HF_HUB_DISABLE_PROGRESS_BARS": "1"}


def _quiet_libraries() -> None:
    from .errors import TRIAL_LOG_ONLY

    console = _ConsoleHandler()
    console.setLevel(logging.WARNING)  # the console shows warnings; each trial.log gets INFO too
    console.addFilter(lambda record: not getattr(record, TRIAL_LOG_ONLY, False))  # tracebacks
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s",
                        handlers=[console])
    logging.getLogger("ablation").setLevel(logging.INFO)
    for name, value in QUIET_LIBRARIES_ENVIRONMENT.items():
        os.environ.setdefault(name, value)
    if not sys.stderr.isatty():  # now: the live table swaps sys.stderr later
        os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")  # datasets.map's bars
    if "transformers" in sys.modules:  # imported before the command (a test, a notebook)
        sys.modules["transformers"].logging.set_verbosity_error()
        sys.modules["transformers"].utils.logging.disable_progress_bar()
    if "datasets" in sys.modules:
        sys.modules["datasets"].logging.set_verbosity_error()
        if not sys.stderr.isatty():
            sys.modules["datasets"].disable_progress_bars()
    import optuna  # has no such variable; every command but init and predict imports it anyway

    optuna.logging.set_verbosity(optuna.logging.WARNING)


def _print_spec(spec: Any) -> None:
    from .config import shown_storage

    print(f"study {spec.name}: {spec.path}")
    print(f"  storage: {shown_storage(spec.experiment.storage)}")
    print(f"  output:  {spec.output_dir}")
    print(f"  data:    {spec.data.dataset}" + (f" ({spec.data.config})" if spec.data.config else ""))
    print(f"  model:   {spec.model.name}")
    from .variants import redundant_variants, variants_sets_add

    for note in variants_sets_add(spec) + redundant_variants(spec):
        print(f"note: {note}")


def cmd_run(args: argparse.Namespace) -> int:
    from .config import load_spec
    from .sweep import dry_run, run_study

    args.file_as_read = _file_bytes(args.file)  # see _resume: edited while it runs
    spec = load_spec(args.file, args.sets)
    _print_spec(spec)
    _check_reruns(spec, args.rerun)
    if args.dry_run:
        dry_run(spec, args.only, args.rerun, args.retry_failed, args.force_new)
        return EXIT_OK
    progress = _progress(spec, args)
    try:
        with interrupts.handled(args.graceful) as stop:
            outcome = run_study(spec, only=args.only or None, rerun=args.rerun,
                                retry_failed=args.retry_failed, workers=args.workers, stop=stop,
                                force_new=args.force_new, echo=progress, graceful=args.graceful)
    finally:
        progress.close()
    _print_summary(spec, outcome.report)
    if stop.is_set():
        print("stopped by Ctrl+C with no trial left half-done"
              + (_rerun_gone(outcome.rerun_gone) if outcome.rerun_gone else _resume(args)),
              file=sys.stderr)
    if outcome.failed:
        print(f"{len(outcome.failed)} trial(s) failed: {', '.join(outcome.failed)}; "
              f"see `{spec.command('status')}`", file=sys.stderr)
        return EXIT_TRIALS_FAILED
    return EXIT_OK


def _check_reruns(spec: Any, names: list[str]) -> None:
    """An unknown --rerun name is bad input before anything runs; so is a search trial other than
    one left running where no heartbeat will end it (see `search.reruns`, which `run` asks again
    once it holds the planning lock)."""
    from .queue import StudyNotFound, open_study
    from .search import rerun_names, reruns
    from .sweep import select_trials

    searched = rerun_names(spec, names)
    for name in names:
        if name not in searched:
            select_trials(spec, [name], option="--rerun")
    if searched:
        try:
            study = open_study(spec, create=False)
        except StudyNotFound:
            study = None
        reruns(study, spec, searched)


def _progress(spec: Any, args: argparse.Namespace) -> Any:
    """A live table of the trials on a terminal; plain lines in logs, pipes and with --quiet.
    With several worker processes, each prints its own lines. A terminal that cannot move its
    cursor (TERM=dumb, as in Emacs' shell; rich's own test) gets plain lines too: there the table
    was drawn once, at the end, and nothing showed between a trial's start and end lines."""
    from .progress import Lines, LiveTable, dumb_terminal

    if args.quiet or args.workers > 1 or not sys.stdout.isatty() or dumb_terminal():
        return Lines(quiet=args.quiet)
    return LiveTable(spec.experiment.metric)


def _value_cell(row: Any, fmt: Any) -> str:
    """A variant's mean ± std, or why it has none: pruned (at which step) or failed."""
    from .report.tables import pruned_step

    pruned = pruned_step(row)
    if pruned is not None:
        return f"pruned at step {pruned}"
    if row["seeds"] == 0 and row["failed"]:
        return "failed"
    return fmt(row["value"], row["value_std"])


# The end of `run` names this many of the comparisons where neither side learned, then counts
# them (a sweep whose 59 variants all collapsed printed a line of 2,000 characters).
CONSTANT_NAMED = 5


SUMMARY_NAME_WIDTH = 30  # the run's summary: its variant column at most


def _print_summary(spec: Any, built: dict[str, Any]) -> None:
    from .models import best_model_reads_pairs, exported_elsewhere, stale_best_model
    from .report._write import neither_learned
    from .report.effects import fmt_interval, fmt_p, tentative
    from .report.markdown import fmt, fmt_delta
    from .variants import FULL, reference_of

    variants, metric = built["variants"], built["metric"]
    # The name column fits the names up to SUMMARY_NAME_WIDTH: one of 90 characters padded every
    # row to it, each line wrapped over two on an 80-column terminal; a longer name is a line of
    # its own, its row's figures under it.
    width = max([28, *(min(len(v) + 2, SUMMARY_NAME_WIDTH) for v in variants["variant"])]
                ) if len(variants) else 28

    def named(name: str, indent: str = "") -> str:
        return (f"{indent}{name:<{width}}" if len(name) < width
                else f"{indent}{name}\n{indent}{'':<{width}}")

    if len(variants):
        print(f"\n{'variant':<{width}} {metric + ' (validation)':>24} {'Δ':>9}  changes")
        for _, row in variants.iterrows():
            mark = " ★" if row["best"] else ""
            delta = "—" if row["variant"] == "baseline" else fmt_delta(row["delta"])
            print(f"{named(row['variant'] + mark)} {_value_cell(row, fmt):>24} "
                  f"{delta:>9}  {row['changes']}")
        if any(reference_of(name, built["order"]) == FULL for name in variants["variant"]):
            # the report says it under its table; a full_minus_* row's Δ read as the baseline's
            print("Δ is against the baseline (full_minus_*: against full)")
    if built["effects"]:
        splits = sorted({effect.split for effect in built["effects"]})
        # p beside the interval: a verdict of "within noise" next to an interval that leaves out
        # 0 (a bootstrap CI and McNemar's p can disagree near the edge) is explained by it.
        print(f"\nwhat mattered (Δ vs reference on the {' and '.join(splits)} split, 95 % CI, p):")
        for effect in built["effects"]:
            print(f"{named(effect.variant, '  ')} vs {effect.reference:<9} "
                  f"{fmt_delta(effect.interval.estimate):>8} {fmt_interval(effect.interval):>20} "
                  f"{'p ' + fmt_p(effect.interval.p_value):>9}  {effect.verdict}"
                  + (f" (Δ {effect.metric})" if effect.metric != metric else ""))
        weak = tentative(built["effects"], built["holm"])
        if weak:
            print(f"  tested together (Holm's correction over {len(built['holm'])}): "
                  f"{', '.join(e.variant for e in weak)} no longer at p < 0.05; treat as tentative")
        constant = neither_learned(built)
        if constant:
            # each comparison with its reference, as the report names it: a full_minus_* row's
            # other side is full, not the baseline the line would be read against
            named = some_of([f"{e.variant} vs {e.reference}" for e in constant], CONSTANT_NAMED)
            print("  neither side learned from the text (one class predicted; see the report's "
                  f"Diagnosis): {named}; "
                  + ("its Δ compares" if len(constant) == 1 else "their Δ compare")
                  + " constant guesses")
        single = [e.variant for e in built["effects"] if e.seeds == 1]
        if len(single) == len(built["effects"]):
            print("  one seed: these intervals leave out the training's own randomness; "
                  "run more seeds before trusting a small effect")
        elif single:  # the others are paired over seeds: name the rows it is said of
            print(f"  one seed ({', '.join(single)}): "
                  + ("its interval leaves" if len(single) == 1 else "their intervals leave")
                  + " out the training's own randomness; the others are paired over seeds")
    if built.get("not_compared"):  # a row of the table above without a line here said nothing
        print("\nnot compared: " + "; ".join(
            f"{variant} ({reason.replace('`', '')})"
            for variant, reason in built["not_compared"].items()))
    print(f"\nreport: {spec.output_dir / 'report.md'}")
    best_model = built.get("best_model")
    stale = stale_best_model(spec, built)
    if stale:
        print(f"best model: {stale}")
    elif best_model and exported_elsewhere(spec, best_model):
        pass  # where it is was said as the run exported
    elif best_model:
        usage = spec.command("predict", "some text", *(
            ("--pair", "second text") if best_model_reads_pairs(spec, best_model) else ()))
        # A model that predicts one class gives every text the same answer: `predict` then read
        # as a model that works (the report's Best variant line says it; the terminal did not)
        unlearned = ("; it has not learned from the text: it predicts one class (the report's "
                     "Diagnosis)" if best_model.get("variant") in built.get("unlearned", set())
                     else "")
        print(f"best model: {spec.output_dir / best_model['path']} (trial {best_model['key']}; "
              f"try `{usage}`{unlearned})")
    elif spec.experiment.save_models == "none":
        print('best model: not kept (save_models = "none")')
    if spec.tracking.backend == "swanlab" and spec.tracking.mode == "local":
        print(f"dashboard: {spec.command('dashboard')}")


def cmd_worker(args: argparse.Namespace) -> int:
    from .config import load_spec, shown_storage
    from .sweep import run_worker

    storage_set = f"experiment.storage={json.dumps(args.storage)}"
    sets = args.sets + ([storage_set] if args.storage else [])
    spec = load_spec(args.file, sets)
    # A worker of `run --workers N` leaves the study's lines to its run: N copies said nothing more.
    by_run = interrupts.started_by_run()
    if by_run:  # macOS: stopped when its run dies (Linux's kernel stops it; see stop_with_parent)
        interrupts.watch_parent(int(os.environ[interrupts.STARTED_BY_RUN]))
    else:
        print(f"worker on study {spec.name}: {shown_storage(spec.experiment.storage)}")
    with interrupts.handled(args.graceful) as stop:
        try:
            outcome = run_worker(spec, echo=_print_now, stop=stop, only=args.only or None,
                                 wait=args.wait)
        except AblateInputError as err:  # a storage blamed on the --set that --storage became
            from .queue import password_hidden

            blamed = f"{set_shown(password_hidden(storage_set))}: "
            if args.storage and str(err).startswith(blamed):
                raise AblateInputError(f"--storage {shown_storage(args.storage)!r}: "
                                       f"{str(err)[len(blamed):]}") from None
            raise
    pruned = f"{len(outcome.pruned)} pruned, " if outcome.pruned else ""  # neither of the others
    repeated = (f", {len(outcome.repeated)} search proposal(s) of earlier parameters not trained "
                "again" if outcome.repeated else "")
    if not by_run:  # the run's summary counts the study's trials
        print(f"worker done: {len(outcome.completed)} trial(s) complete, {pruned}"
              f"{len(outcome.failed)} failed{repeated}"
              + (f"; stopped by Ctrl+C with no trial left half-done; `{_worker_command(args)}` "
                 "goes on with the trials still queued" if stop.is_set() else ""))
    return EXIT_TRIALS_FAILED if outcome.failed else EXIT_OK


def _print_now(line: str) -> None:
    """A worker's lines reach a log file or a scheduler's output as they happen (a worker waiting
    for its `run` says so at once, not when its buffer fills)."""
    print(line, flush=True)


def cmd_report(args: argparse.Namespace) -> int:
    from .config import load_spec, shown_storage
    from .records import load_records, with_run_sets
    from .report import (
        build_report,
        report_lock,
        write_report,
        write_report_json,
        write_results_csv,
    )
    from .status import still_planning, study_or_planning
    from .sweep import REPORT_LOCK, check_own_output_dir, make_output_dir

    spec = load_spec(args.file, args.sets, need_data=False)
    study, planning = study_or_planning(spec)
    if study is None:  # nothing trained yet: no report to write, as for a study never run
        raise AblateInputError(
            f"no study {spec.name!r} in {shown_storage(spec.experiment.storage)} yet: "
            f"{still_planning(planning)}, so there is nothing to report: that run writes "
            f"report.md when it ends, and `{spec.command('status')}` shows its trials meanwhile")
    _check_report_metric(spec, study)
    spec = with_run_sets(spec, study)  # the commands report.md gives run the study's settings
    make_output_dir(spec)  # on another machine, or deleted: made again; a file there is bad input
    check_own_output_dir(spec, inputs=False)  # the report reads neither the data nor the model
    # As a `run` of the study ends, it reads the study and writes its report holding this lock:
    # read before it and written after it, this report would replace the final one with an
    # older reading (a trial still running) and delete the plots it drew as an earlier report's.
    with report_lock(spec.output_dir / REPORT_LOCK, spec.command("report"), on_wait=lambda: print(
            "note: another ablate process is writing this study's report; waiting for it to "
            "finish, then writing this one", file=sys.stderr, flush=True)):
        records = load_records(study)  # in the lock, as the run's final report reads them
        _check_something_to_report(spec, study, records)
        built = build_report(spec, study, records)
        if args.format == "md":
            path = write_report(spec, study, built)
        else:
            write = write_results_csv if args.format == "csv" else write_report_json
            path = write(spec, built)
    print(f"report: {path}")
    return EXIT_OK


def _check_something_to_report(spec: Any, study: Any, records: list[Any]) -> None:
    """A study of the file's name that holds no trial ablate queued (made by `optuna
    create-study`, or by a run stopped before it queued any; or another program's, with its own
    trials only) has no results table to write: said as for a study not made yet. `records`:
    the study's, as load_records reads them."""
    from .config import shown_storage

    if records:
        return
    theirs = len(study.get_trials(deepcopy=False))
    raise AblateInputError(
        f"study {spec.name!r} in {shown_storage(spec.experiment.storage)} holds no trial of this "
        "file's yet" + (f" (its {theirs} trial(s) were not queued by ablate)" if theirs else "")
        + f": nothing to report: `{spec.command('run')}` trains them")


def _check_report_metric(spec: Any, study: Any) -> None:
    """A report compares by the metric its trials were selected with (their value, the checkpoint
    each kept): a file or --set asking for another metric would silently get the stored one."""
    from .config import from_here, last_set

    for key in ("metric", "direction"):
        stored, wanted = study.user_attrs.get(key), getattr(spec.experiment, key)
        if stored is None or stored == wanted:
            continue
        given = last_set(spec.sets, f"experiment.{key}")
        source = set_shown(given) if given else f"{from_here(spec.path)} says {key} = {wanted!r}"
        raise AblateInputError(
            f"{source}, but study {spec.name!r} was run with {key} = {stored!r}: its trials' "
            f"values and kept checkpoints were selected by that, and its report compares by it; "
            f"report without changing the {key} (every metric is in the report's table), or "
            f"select by {wanted!r} in a new study (a new [experiment] name)")


def cmd_status(args: argparse.Namespace) -> int:
    from .config import load_spec, shown_storage
    from .status import still_planning, study_status

    status = study_status(load_spec(args.file, args.sets, need_data=False))
    spec = status.spec
    if args.json:
        print(json.dumps(status.to_json(), indent=2, allow_nan=False))
        return EXIT_TRIALS_FAILED if status.failed else EXIT_OK
    if status.planning is not None:  # its first run checks its data: under way, nothing failed
        print(f"study {spec.name} ({shown_storage(spec.experiment.storage)}): not made yet: "
              + still_planning(status.planning))
        return EXIT_OK
    records = status.records
    print(f"study {spec.name} ({shown_storage(spec.experiment.storage)}): {len(records)} trial(s)")
    width = max([32, *(len(r.key) for r in records)])  # long names keep the columns
    print(f"{'#':>4}  {'trial':<{width}} {'state':<10} {status.metric:>10}  error / process")
    for r in records:
        value = "" if r.value is None else f"{r.value:.4f}"
        state = "SUPERSEDED" if r.superseded else r.state
        print(f"{r.number:>4}  {r.key:<{width}} {state:<10} {value:>10}  {status.note(r)}".rstrip())
    for line in status.summary().lines():
        print(line)
    return EXIT_TRIALS_FAILED if status.failed else EXIT_OK


def cmd_init(args: argparse.Namespace) -> int:
    from .starter import STARTER, write_starter

    if args.file == "-":  # the usual `-`: standard output (`ablate init - | less`), not a file '-'
        sys.stdout.write(STARTER)
        return EXIT_OK
    path = write_starter(args.file)  # a str: `studies/`, a folder, ends with its slash
    quoted = shlex.quote(str(path))  # a path with spaces runs as printed
    print(f"wrote {path}: set [data] and [model], then `ablate validate {quoted}` and "
          f"`ablate run {quoted}`")
    return EXIT_OK


def cmd_validate(args: argparse.Namespace) -> int:
    from .config import load_spec
    from .data import load_study_splits
    from .preflight import TrialInputs, preflight
    from .search import probe_trials
    from .sweep import check_own_output_dir, select_trials
    from .tracking import check_installed

    spec = load_spec(args.file, args.sets)
    _print_spec(spec)
    check_own_output_dir(spec)  # what run refuses first
    check_installed(spec)
    trials = select_trials(spec, None)
    splits = load_study_splits(spec)
    for note in splits.notes:
        print(f"data: {note}")
    _check_against_stored(spec, trials, splits)
    probes = probe_trials(spec) if spec.search is not None else []
    for note in preflight(spec, trials + probes, TrialInputs(spec, splits)):
        print(f"note: {note}")
    search = (f" and {spec.search.n_trials} [search] trial(s) in all ({spec.search.sampler} sampler)"
              if spec.search is not None else "")
    print(f"ok: {len(trials)} trial(s){search}; {splits.summary()}")
    return EXIT_OK


def _check_against_stored(spec: Any, trials: list, splits: Any) -> None:
    """Where the storage already holds this study, what `run` would refuse of it: another
    baseline, model or metric, variants changed since they ran, other data rows. (`validate`
    saying ok to a file that `run` then refuses would be no check at all.)"""
    from .queue import StudyNotFound, open_study
    from .sweep import check_same_data, check_same_models, checked_plan

    try:
        study = open_study(spec, create=False)
    except StudyNotFound:  # never run: nothing to be consistent with
        return
    checked_plan(study, spec, trials, [], False)
    check_same_data(study, spec, splits.fingerprint(), source=splits.source)
    check_same_models(study, spec, trials)


def cmd_dashboard(args: argparse.Namespace) -> int:
    from .config import load_spec
    from .dashboard import serve_dashboard

    spec = load_spec(args.file, args.sets, need_data=False)
    return serve_dashboard(spec, port=args.port, open_browser=not args.no_browser)


def cmd_predict(args: argparse.Namespace) -> int:
    from .config import home_path
    from .inference import IncomingTexts, pair_arguments, prediction_chunks, prediction_table
    from .models import model_info, one_class_note, resolve_model
    from .progress import CountLine

    folder, spec, tokenizer = resolve_model(args.model, args.sets, need_data=False,
                                            trial=args.trial)
    _note_stale_best_model(spec, args)
    # every text gets the same label, read as a model that works: said once the first rows are
    # out (a model that cannot be loaded, or output that cannot be written, is the one line)
    guess = one_class_note(folder, model_info(folder))
    pairs = pair_arguments(folder, spec, args.texts, args.pairs)  # None: the model reads single texts
    files = [home_path(file) for file in args.file]  # '~/texts.txt' quoted: the home folder
    texts = IncomingTexts(args.texts, files, pairs=pairs)  # --file's lines are read as labelled
    printed, progress = 0, CountLine("labelled", texts.total, "texts", share=texts.share)

    def counted(chunks: Iterator[list[dict[str, Any]]]) -> Iterator[list[dict[str, Any]]]:
        nonlocal printed
        for rows in chunks:
            yield rows
            if guess and not printed:
                print(f"note: {guess}", file=sys.stderr)
            printed += len(rows)  # asked for the next chunk: these rows are out

    # Each chunk's rows are printed as soon as it is labelled: a reader (`| head`, another tool)
    # gets them while the rest are read and labelled, and neither the texts nor the rows are all
    # held at once.
    try:
        chunks = counted(prediction_chunks(folder, texts, args.batch_size, spec, progress,
                                           tokenizer=tokenizer))
        if args.json:
            for rows in chunks:
                progress.clear()  # the rows may go to the same terminal
                _emit("\n".join(_json(row) for row in rows))
        else:
            for lines in prediction_table(chunks, full_width=texts.streamed):
                progress.clear()
                _emit(lines)
    except KeyboardInterrupt:  # a stream's usual end (`tail -f`): its total is not known
        of = f" of {texts.total:,}" if texts.total is not None else ""
        raise _Interrupted(f"the first {printed:,}{of} texts were labelled and printed"
                           if printed else "no text was labelled") from None
    finally:
        progress.clear()
    return EXIT_OK


def _json(value: Any, **options: Any) -> str:
    """`value` as --json prints it: its text as it is (差评, as predict prints it) where standard
    output can hold it, else in JSON's own escapes: the stream's ASCII spelling (`_spell_in_ascii`:
    👍 as `\\U0001f44d`, Δ as `delta`) would give a reader invalid JSON, or other text."""
    text = json.dumps(value, ensure_ascii=False, **options)
    try:
        text.encode(getattr(sys.stdout, "encoding", None) or "utf-8")
    except (UnicodeEncodeError, LookupError):
        return json.dumps(value, **options)
    return text


def _emit(text: str) -> None:
    """Print a command's output, written out now: a disk filled by `> out.txt` (or a closed
    standard output) is said in one line that the output is incomplete, not a traceback.
    (A reader that stopped, `| head`, is BrokenPipeError: main's own exit.)"""
    if sys.stdout is None:
        raise AblateInputError("standard output is closed: the output has nowhere to go; "
                               "redirect it to a file or a pipe")
    try:
        print(text)
        sys.stdout.flush()
    except BrokenPipeError:
        raise
    except OSError as err:
        raise AblateInputError(f"standard output cannot be written ({err.strerror or err}): what "
                               "it holds is incomplete; free space where it goes, or redirect it "
                               "elsewhere") from None


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .data import row_count
    from .inference import (
        evaluate,
        evaluation_frame,
        format_evaluation,
        model_label_names,
        trained_pair_column,
    )
    from .models import model_info, resolve_model
    from .progress import CountLine

    if args.dataset is None:  # they describe --dataset; the study's own data has its [data]
        given = [option for option, value in (("--config", args.config),
                                              ("--text-column", args.text_column),
                                              ("--text-pair-column", args.text_pair_column),
                                              ("--label-column", args.label_column),
                                              ("--labels", args.labels)) if value]
        if given:
            raise AblateInputError(
                f"evaluate: {given[0]} describes --dataset, which is not given; without it the "
                "study's own data is read with its [data] keys")
    if args.checkpoints is not None:
        if args.trial is not None:
            raise AblateInputError("evaluate: give --trial or --checkpoints, not both: --trial "
                                   "scores a trial's model, --checkpoints each of its checkpoints")
        return _evaluate_checkpoints(args)
    folder, spec, tokenizer = resolve_model(args.model, args.sets,
                                            need_data=args.dataset is None, trial=args.trial)
    _note_stale_best_model(spec, args)
    label_names, info, notes = model_label_names(folder), model_info(folder), []
    pair_column = trained_pair_column(info, spec)
    if spec is None and "text_pair_column" not in info and args.text_pair_column:
        pair_column = args.text_pair_column  # no record of what it read: the user says pairs
    frame, source = evaluation_frame(spec, label_names, args.dataset, args.config,
                                     args.split, args.text_column, args.label_column,
                                     pair_column=pair_column, notes=notes,
                                     labels=args.labels, pair_column_given=args.text_pair_column,
                                     trained_columns=info)
    _print_notes(notes, frame, label_names)
    progress = CountLine("evaluated", len(frame), "rows")
    try:
        result = evaluate(folder, frame, args.batch_size, progress=progress, tokenizer=tokenizer)
    finally:
        progress.clear()
    trial = info.get("trial")
    if args.json:
        _emit(_json({"model": str(folder), "trial": trial, "data": source, **result.to_json()},
                    indent=2, allow_nan=False))
        return EXIT_OK
    _emit(f"model: {folder}" + (f" (trial {trial})" if trial else "")
          + f"\ndata:  {source}: {row_count(result.examples)}\n\n{format_evaluation(result)}")
    return EXIT_OK


def _note_stale_best_model(spec: Any, args: argparse.Namespace) -> None:
    """A study's best_model/ that holds a trial no longer the best is said, as `run` and the
    report say it (to stderr: --json keeps stdout JSON)."""
    from .models import stale_best_model_note

    stale = stale_best_model_note(spec) if spec is not None and args.trial is None else None
    if stale:
        print(f"note: best model: {stale}", file=sys.stderr)


def _print_notes(notes: list[str], frame: Any, label_names: list[str]) -> None:
    """What reading the data did, and classes it lacks (to stderr: --json keeps stdout JSON)."""
    present = set(frame["label"].tolist())
    absent = [name for index, name in enumerate(label_names) if index not in present]
    if absent:
        notes.append(f"no rows of class {', '.join(map(repr, absent))}: the macro averages "
                     f"count {'its' if len(absent) == 1 else 'their'} F1, precision and recall as 0")
    for note in notes:
        print(f"note: {note}", file=sys.stderr)


def _evaluate_checkpoints(args: argparse.Namespace) -> int:
    """`evaluate STUDY --checkpoints TRIAL`: each kept checkpoint on validation (or --split)."""
    from .config import home_path, load_spec
    from .data import row_count
    from .inference import (
        checkpoint_folders,
        evaluate,
        evaluation_frame,
        model_label_names,
        trained_pair_column,
    )
    from .models import BEST_MODEL, MODEL_DIR, model_info
    from .progress import CountLine

    experiment_file = home_path(args.model)  # '~/x.toml' quoted: the home folder, as predict reads it
    if not experiment_file.is_file():
        raise AblateInputError(f"--checkpoints needs an experiment file as MODEL_OR_STUDY, not "
                               f"{args.model!r}")
    spec = load_spec(experiment_file, args.sets, need_data=args.dataset is None)
    folders = checkpoint_folders(spec, args.checkpoints)
    metric, greater = spec.experiment.metric, spec.greater_is_better
    # A checkpoint folder carries no ablate.json: its trial's model's says how the trial read
    # its texts (where it truncated, which second text), as its trial scored it.
    kept = spec.output_dir / "trials" / args.checkpoints / MODEL_DIR
    if not model_info(kept) and model_info(spec.output_dir / BEST_MODEL).get("trial") == args.checkpoints:
        kept = spec.output_dir / BEST_MODEL  # save_models = "best" moved it there
    trained = model_info(kept)
    label_names, notes = model_label_names(folders[0]), []
    frame, source = evaluation_frame(spec, label_names, args.dataset, args.config,
                                     args.split, args.text_column, args.label_column,
                                     pair_column=trained_pair_column(trained, spec), notes=notes,
                                     default_split="validation", labels=args.labels,
                                     pair_column_given=args.text_pair_column)
    _print_notes(notes, frame, label_names)
    max_length = trained.get("max_length")
    rows = []
    # Each checkpoint is a model loaded and every row scored: `checkpoint-40 (2 of 6): evaluated
    # 16,384 of 50,000 rows (32 %, ...)` on a terminal, not minutes of nothing.
    progress = CountLine("evaluated", len(frame), "rows")
    try:
        for number, folder in enumerate(folders, 1):
            progress.restart(f"{folder.name} ({number} of {len(folders)}): evaluated")
            result = evaluate(folder, frame, args.batch_size, max_length, progress=progress)
            rows.append({"step": int(folder.name.split("-")[-1]), "checkpoint": str(folder),
                         **{k: result.metrics[k] for k in ("accuracy", "macro_f1", "eval_loss",
                                                          metric)}})
    finally:
        progress.clear()
    peak = (max if greater else min)(rows, key=lambda row: row[metric])
    selected = trained.get("best_step")
    if args.json:
        _emit(_json({"trial": args.checkpoints, "data": source, "metric": metric,
                     "peak_step": peak["step"], "selected_step": selected, "checkpoints": rows},
                    indent=2, allow_nan=False))
        return EXIT_OK
    columns = list(dict.fromkeys(["accuracy", "macro_f1", "eval_loss", metric]))
    lines = [f"trial {args.checkpoints}: {len(rows)} checkpoint(s) on {source}: "
             f"{row_count(len(frame))}\n", f"{'step':>8}  " + "  ".join(f"{c:>10}" for c in columns)]
    for row in rows:
        mark = "  ★ peak" if row is peak else ""
        lines.append(f"{row['step']:>8}  " + "  ".join(f"{row[c]:>10.4f}" for c in columns) + mark)
    lines.append(f"\n{metric} peaked at step {peak['step']} ({peak[metric]:.4f})"
                 + (f"; the trial selected step {selected}" if selected is not None else ""))
    _emit("\n".join(lines))
    return EXIT_OK


COMMANDS = {"run": cmd_run, "worker": cmd_worker, "report": cmd_report, "status": cmd_status,
            "validate": cmd_validate, "init": cmd_init, "dashboard": cmd_dashboard,
            "predict": cmd_predict, "evaluate": cmd_evaluate}


# A terminal or pipe that cannot show a character ablate prints (PYTHONIOENCODING=ascii, a
# latin-1 locale) gets an ASCII spelling of it; any other character its \u escape.
_ASCII_SPELLINGS = {"→": "->", "×": "x", "—": "-", "–": "-", "−": "-",
                    "…": "...", "Δ": "delta", "±": "+/-", "·": "-", "★": "*"}
_SUPERSCRIPTS = str.maketrans("⁰¹²³⁴⁵⁶⁷⁸⁹⁻ᵀ",
                              "0123456789-T")


def _spell_in_ascii(err: UnicodeError) -> tuple[str, int]:
    """Codec error handler: the characters `err` could not encode, spelled in ASCII."""
    if not isinstance(err, UnicodeEncodeError):
        raise err
    text = err.object[err.start:err.end]
    if text.translate(_SUPERSCRIPTS).isascii():  # 10⁻⁵: a power, 10^-5
        return "^" + text.translate(_SUPERSCRIPTS), err.end
    return "".join(_ASCII_SPELLINGS.get(char) or char.encode("ascii", "backslashreplace").decode()
                   for char in text), err.end


codecs.register_error("ablate-ascii", _spell_in_ascii)


def _set_up_output() -> None:
    """Each line reaches a log file or a pipe when it is printed. Python buffers stdout 8 KB at
    a time there: `ablate run FILE > run.log` showed nothing until the run ended, and a line on
    stderr (an error, `2 trial(s) failed`) came before the lines printed ahead of it.
    A stream that cannot encode Δ or ★ spells them in ASCII: strict stdout raised
    UnicodeEncodeError at the summary's header after every trial had trained."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)  # a test's capture may have none
        if reconfigure is not None:
            with contextlib.suppress(ValueError, OSError):
                reconfigure(errors="ablate-ascii", line_buffering=stream is sys.stdout or None)


def _one_line(text: str) -> str:
    """An error line with its control characters escaped: a value quoted from a library's message
    (`--dataset` with an ESC in it, which huggingface_hub's error repeats raw) drove the terminal,
    and a newline split the one line."""
    return "".join(char.encode("unicode_escape").decode() if unicodedata.category(char) == "Cc"
                   else char for char in text)


def _check_platform() -> None:
    """Windows has no fcntl, whose locks every command but `--help` and `--version` takes or
    imports: one line that says so, not an import's traceback at the first lock."""
    try:
        from . import locking  # noqa: F401
    except ImportError as err:
        raise AblateInputError(str(err)) from None


def main(argv: list[str] | None = None) -> int:
    args = None
    _set_up_output()
    try:
        args = build_parser().parse_args(argv)
        _check_platform()
        # predict and evaluate tokenize a chunk of texts per call and never fork: every core helps.
        # Elsewhere the tokenizer's threads would make each fork (datasets, torchrun) warn.
        os.environ.setdefault("TOKENIZERS_PARALLELISM",
                              "true" if args.command in ("predict", "evaluate") else "false")
        _quiet_libraries()
        return COMMANDS[args.command](args)
    except AblateInputError as err:
        print(f"ablate: error: {_one_line(str(err))}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except _Interrupted as err:
        print(f"ablate: interrupted; {err.said}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except KeyboardInterrupt as err:
        if args is not None and args.command in ("predict", "evaluate"):  # they train nothing
            done = "no text was labelled" if args.command == "predict" else "no metrics were printed"
            print(f"ablate: interrupted; {done}", file=sys.stderr)
        elif not _trains(args):  # status, report, validate, --dry-run: no trials to keep
            print("ablate: interrupted", file=sys.stderr)
        elif not interrupts.started_by_run():  # the run that started workers says it once
            resume = (_rerun_gone(err.command) if isinstance(err, interrupts.WaitedOnGone)
                      else _worker_resume(args, err) if args.command == "worker"
                      else _resume(args))
            print(f"ablate: interrupted; completed trials are kept in the storage{resume}",
                  file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `ablate predict ... | head`: the reader has what it wanted
        # What is still buffered would fail again at exit: it goes nowhere (Python's own recipe).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except Exception as err:
        if isinstance(err, OSError) and err.errno == errno.ENAMETOOLONG:
            # A path given on the command line (`predict`'s model, `evaluate --dataset`) with a
            # part longer than the file system allows: checking whether it exists raised.
            print(f"ablate: error: {_one_line(_name_too_long(err))}", file=sys.stderr)
            return EXIT_BAD_INPUT
        lost = _storage_lost(err, args)
        if lost is None:
            raise
        print(f"ablate: error: {_one_line(lost)}", file=sys.stderr)
        return EXIT_TRIALS_FAILED


def _name_too_long(err: OSError) -> str:
    from .config import NAME_MAX

    path = "a path" if err.filename is None else os.fsdecode(err.filename)
    return (f"{path}: a part of this path between slashes is longer than "
            f"a file system allows ({NAME_MAX} bytes in one file or folder name); give a shorter "
            "path")


def _storage_lost(err: BaseException, args: argparse.Namespace | None) -> str | None:
    """The line for a storage lost mid-command, with what to run next: the same command goes on
    where the storage stopped answering; where its database file was deleted, nothing is left to
    go on from."""
    if "ablation.queue" not in sys.modules:  # no storage was opened: not a lost storage
        return None
    from .queue import StoppedWhileWaiting, storage_gone, storage_lost

    lost = storage_lost(err, trains=_trains(args))
    if lost is None:
        return None
    if storage_gone(err) is None:
        # A worker's trial it could not record is queued again by a `run`, which waits for it
        # to go stale; a worker claims only queued trials. A `run`'s worker: its run says it.
        if (args is not None and args.command == "worker" and not interrupts.started_by_run()
                and not isinstance(err, StoppedWhileWaiting)):
            return f"{lost}; `{_worker_run(args)}` goes on from there"
        return lost + _resume(args)
    if args is None or args.command != "run":
        return lost
    return f"{lost}; `{shlex.join(_run_command(args))}` starts the study over"


def _run_command(args: argparse.Namespace) -> list[str]:
    """`ablate run` of the same file with the same --sets."""
    return ["ablate", "run", str(args.file), *[p for item in args.sets for p in ("--set", item)]]


def _trains(args: argparse.Namespace | None) -> bool:
    """Whether the command trains trials (`run` but for --dry-run, `worker`): only then has an
    interrupted one completed trials to keep and a command that goes on."""
    return args is not None and (args.command == "worker"
                                 or (args.command == "run" and not args.dry_run))


def _resume(args: argparse.Namespace | None) -> str:
    """The command that goes on with an interrupted run: the same file, --sets, selection,
    workers and --graceful. Not --rerun: its trials were superseded and queued when it planned
    (the run goes on with them; naming it again would train those it finished once more), but
    with --only its variants stay selected."""
    from .records import is_search_variant

    if args is None or args.command != "run":
        return ""
    command = _run_command(args)
    # A search trial's --rerun is done once it has planned: the search's retries go on with it.
    selected = args.only + [n for n in args.rerun if not is_search_variant(n)] if args.only else []
    command += [p for name in dict.fromkeys(selected) for p in ("--only", name)]
    command += ["--retry-failed"] * args.retry_failed + ["--graceful"] * args.graceful
    command += ["--workers", str(args.workers)] if args.workers > 1 else []
    edited = ""
    if getattr(args, "file_as_read", None) not in (None, _file_bytes(args.file)):
        # an edited variant makes that command refuse the file: status says what goes on
        status = shlex.join(["ablate", "status", str(args.file),
                             *[p for item in args.sets for p in ("--set", item)]])
        edited = (f" ({args.file} was edited since this run read it: `{status}` says whether "
                  "it still does)")
    return f"; `{shlex.join(command)}` goes on from there{edited}"


def _file_bytes(path: str | Path) -> bytes | None:
    """The experiment file as it is now (None: unreadable)."""
    from .config import home_path

    try:
        return home_path(path).read_bytes()
    except OSError:
        return None


def _worker_command(args: argparse.Namespace) -> str:
    """The same `ablate worker`, but for --wait (the study is there by now)."""
    return shlex.join(["ablate", "worker", str(args.file),
                       *(["--storage", args.storage] if args.storage else []),
                       *[p for name in args.only for p in ("--only", name)],
                       *(["--graceful"] if args.graceful else []),
                       *[p for item in args.sets for p in ("--set", item)]])


def _worker_run(args: argparse.Namespace) -> str:
    """`ablate run` of the worker's study (its --storage a --set), its --only and --graceful:
    what queues again a trial the worker stopped (a worker claims only queued trials)."""
    storage = ["--set", f"experiment.storage={json.dumps(args.storage)}"] if args.storage else []
    return shlex.join([*_run_command(args), *storage,
                       *[p for name in args.only for p in ("--only", name)],
                       *(["--graceful"] if args.graceful else [])])


def _worker_resume(args: argparse.Namespace, err: BaseException) -> str:
    """What goes on after an interrupted worker: the trial it stopped is recorded as interrupted,
    which another worker does not claim, and only a `run` queues again; with none stopped, the
    same worker goes on with the queued trials."""
    key = interrupts.trial_stopped(err)
    if key is None:
        return f"; `{_worker_command(args)}` goes on with the trials still queued"
    return (f"; {key} is recorded as interrupted and no worker trains it again: "
            f"`{_worker_run(args)}` does, with the trials still queued")


def _rerun_gone(command: str) -> str:
    return (f"; the trials it waited on lost their process and this storage has no heartbeats "
            f"to queue them again: `{command}` trains them again")


def entry_point() -> None:
    sys.exit(main())
