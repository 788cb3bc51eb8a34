"""Running a study: plan and enqueue it, work the queue (one process or several workers), and
train and record each trial.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import gc
import itertools
import json
import logging
import os
import shutil
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ParamSpec

import optuna

from .. import hub, interrupts, queue, records
from ..config import ExperimentSpec, last_set, shown_storage
from ..errors import (
    TRIAL_LOG_ONLY,
    AblateInputError,
    as_list,
    error_chain,
    first_line,
    set_shown,
)
from ..preflight import TrialInputs, check_launcher_environment, preflight
from ..progress import Lines, as_progress, fmt_duration
from ..quiet import quiet_libraries
from ..tracking import NullTracker, check_installed, make_tracker
from ..variants import TrialSpec, describe_changes
from ._plan import checked_plan, run_selection, select_trials
from ._study import (
    DATA_FINGERPRINT,
    HEARTBEAT,
    MODEL_FINGERPRINTS,
    NEW_STUDY,
    SAME_AS_RUN,
    check_same_data,
    check_same_models,
    check_same_study,
    other_rows_note,
    record_study_attrs,
    refusal,
    study_elsewhere,
)

STARTED_BY_RUN = interrupts.STARTED_BY_RUN
INTERRUPTED = records.INTERRUPTED  # a trial's error when its process was stopped

log = logging.getLogger(__name__)
REPORT_LOCK = ".report.lock"  # in the output folder: one run at a time exports and reports
FORCE_NEW_FOLDERS = ("trials", "swanlog")  # under output_dir: per-trial logs, SwanLab's local runs



@dataclass
class RunOutcome:
    planned: list[TrialSpec]
    skipped: list[str] = field(default_factory=list)  # keys already complete
    completed: list[str] = field(default_factory=list)
    pruned: list[str] = field(default_factory=list)  # search trials the pruner stopped: neither
    failed: dict[str, str] = field(default_factory=dict)  # key -> error line
    repeated: list[str] = field(default_factory=list)  # search proposals of earlier parameters
    report: dict[str, Any] = field(default_factory=dict)  # build_report() of the final state
    rerun_gone: str | None = None  # stopped waiting on gone trials: the command that moves them



def _error_line(err: BaseException, folder: Path | None = None) -> str:
    """What the storage and the terminal say of a failure: the error's type and first line, and
    a full disk behind it, which libraries hide. torch.save keeps no trace of the OS's error at
    all ("unexpected pos 576 vs 534" from "basic_ios::clear: iostream error"): for it, the free
    space of `folder`'s disk (the trial's folder, where it was writing) is said."""
    if isinstance(err, KeyboardInterrupt):  # also while a claimed trial is being prepared
        return INTERRUPTED
    line = f"{type(err).__name__}: {first_line(err)}"
    for cause in itertools.islice(error_chain(err, 11), 1, None):  # the 10 errors behind it
        if isinstance(cause, OSError) and cause.errno in (errno.ENOSPC, errno.EDQUOT):
            said = f"{type(cause).__name__}: {first_line(cause)}"
            return line if said == line else f"{line} ({said})"
    if folder is not None and _torch_write_failed(err):
        try:
            free = shutil.disk_usage(folder).free
        except OSError:
            return line
        return f"{line} (torch could not write a file; {_size(free)} free on the disk of {folder})"
    return line


def _torch_write_failed(err: BaseException) -> bool:
    """Whether `err` is torch.save's failed write of a file (its C++ stream writer's error)."""
    return any(("unexpected pos" in text and "inline_container" in text) or "iostream error" in text
               for text in map(str, error_chain(err)))


def _size(n: float) -> str:
    if n < 1024:
        return f"{n:.0f} bytes"
    for unit in ("KB", "MB", "GB"):
        n /= 1024
        if n < 1024 or unit == "GB":
            break
    return f"{n:.1f} {unit}"


class _TrialLogHandler(logging.FileHandler):
    """A trial's log: a line it cannot write (a full disk) is lost without logging's own report
    of it, some 20 lines of traceback on the terminal per record; the trial's error says why."""

    def handleError(self, record: logging.LogRecord) -> None:
        pass


def make_output_dir(spec: ExperimentSpec, dry_run: bool = False) -> None:
    """Create the output folder first: one that cannot be created is bad input, found before
    the storage is touched. `dry_run`: only find out whether it could be (nothing is left)."""
    existed = spec.output_dir.is_dir()
    if dry_run:
        problem = queue.uncreatable(spec.output_dir)
    else:
        try:
            spec.output_dir.mkdir(parents=True, exist_ok=True)
            # A folder that is there but not ours to write in (chmod, another user's): its
            # lock file, study files and trials could not be made.
            problem = queue.uncreatable(spec.output_dir) if existed else None
        except OSError as err:
            problem = err.strerror or str(err)
    if problem:
        given = last_set(spec.sets, "experiment.output_dir", "experiment.name")
        raise AblateInputError(
            (f"{set_shown(given)}: " if given else f"{spec.path}: ")
            + f"[experiment] output_dir = {str(spec.output_dir)!r} cannot be "
            + ("written in" if existed else "created") + f": {problem}")


def trial_folder_problem(spec: ExperimentSpec, key: str) -> str | None:
    """What stands where trial `key`'s folder (trials/<key> in the output folder) goes and is no
    folder (a symlink to a disk not mounted, a file), else None: making it failed mid-run."""
    for place in (spec.output_dir / "trials", spec.output_dir / "trials" / key):
        if place.is_dir():
            continue
        if place.is_symlink():
            target = os.readlink(place)
            return (f"{place} is a symlink to {target}, which is "
                    + ("not a folder" if place.exists() else "missing"))
        return f"{place} is a file, not a folder" if place.exists() else None
    return None


def check_trial_folders(trials: list[TrialSpec], spec: ExperimentSpec) -> None:
    """Refuse, before anything trains, a trial to train whose folder cannot be made."""
    for trial in trials:
        problem = trial_folder_problem(spec, trial.key)
        if problem:
            raise AblateInputError(f"{problem}: trial {trial.key} writes its log there; move it "
                                   "away (or make the folder it names) and run again")


def check_own_output_dir(spec: ExperimentSpec, inputs: bool = True) -> None:
    """An output folder holds one study's report, best model and trial folders: another study
    writing there (an output_dir set in the file, a name changed by --set) would mix them.
    `inputs`: the command reads the study's data and model (not `report`), whose folders are
    no output folder either."""
    if inputs:
        _check_not_an_input_folder(spec)
    resolved = spec.output_dir / "resolved.json"
    try:
        owner = json.loads(resolved.read_text(encoding="utf-8"))["experiment"]["name"]
    except (OSError, ValueError, KeyError, TypeError):
        _check_no_files_of_others(spec)  # a new folder, or not one of ours
        return
    if owner != spec.name:
        given = last_set(spec.sets, "experiment.output_dir", "experiment.name")
        # reports/BS for study 'BS' where study 'bs' ran: a file system that ignores case found it
        case = (f": a file system that ignores case (macOS's, by default) makes "
                f"{spec.name} and {owner} one folder" if isinstance(owner, str)
                and owner.casefold() == spec.name.casefold() == spec.output_dir.name.casefold() else "")
        raise AblateInputError(
            (f"{set_shown(given)}: " if given else f"{spec.path}: ")
            + f"[experiment] output_dir = {str(spec.output_dir)!r} holds the files of study {owner!r} "
            f"(its resolved.json{case}); give study {spec.name!r} its own output_dir (without one it is "
            f"reports/<name>), or delete that folder if study {owner!r} is no longer wanted")


def _check_not_an_input_folder(spec: ExperimentSpec) -> None:
    """output_dir = the data folder, whose every data file is read as a split (the run's
    results.csv, resolved.json and report.json too), or a model folder, whose top-level files
    the study fingerprints: the first run went well, and the next one was refused for a split
    `resolved` or for a model 'changed on disk', which --force-new, deleting the study, 'fixed'."""
    from ..config import home_path

    out = spec.output_dir
    if not out.is_dir():
        return
    models = {spec.model.name} | {t.recipe.model for t in select_trials(spec, None) if t.recipe.model}
    folders = [(f"[data] dataset = {spec.data.dataset!r}", "whose every data file is read as a "
                "split: the results.csv, resolved.json and report.json a run writes there would be "
                "read as splits by the next command", spec.data.dataset)]
    folders += [(f"the model folder {name!r}", "whose files the study fingerprints: the files a "
                 "run writes there would make the next run refuse the model as changed on disk",
                 name) for name in sorted(models)]
    for what, why, name in folders:
        folder = home_path(name)
        with contextlib.suppress(OSError):
            if not (folder.is_dir() and out.samefile(folder)):
                continue
            given = last_set(spec.sets, "experiment.output_dir", "experiment.name")
            raise AblateInputError(
                (f"{set_shown(given)}: " if given else f"{spec.path}: ")
                + f"[experiment] output_dir = {str(out)!r} is {what}, {why}; give study "
                f"{spec.name!r} a folder of its own (without output_dir it is reports/<name>)")


# Only ablate makes these in an output folder: a run (resolved.json), a run or worker (its
# planning lock), a report (its lock), the first thing each writes there.
OWN_MARKS = ("resolved.json", queue.PLANNING_LOCK, REPORT_LOCK)
# What ablate replaces or deletes in an output folder, by name (and the plots it draws): files,
# and folders (one of these names that is a file is refused as it is written, not deleted).
WRITTEN_FILES = ("experiment.toml", "report.md", "results.csv", "report.json")
WRITTEN_FOLDERS = ("best_model", *FORCE_NEW_FOLDERS)


def _check_no_files_of_others(spec: ExperimentSpec) -> None:
    """A folder no ablate command has written in (`output_dir = "."` in a project folder, a data
    folder) that holds a file of a name ablate writes there: the user's own report.md,
    experiment.toml, plots or trials/ would be replaced or deleted without a word. The file
    being run, as experiment.toml beside itself, is its own copy."""
    out = spec.output_dir
    if not out.is_dir() or any((out / mark).exists() for mark in OWN_MARKS):
        return
    theirs = ([name for name in WRITTEN_FILES if (out / name).is_file()]
              + [name for name in WRITTEN_FOLDERS if (out / name).is_dir()])
    with contextlib.suppress(OSError):
        if "experiment.toml" in theirs and (out / "experiment.toml").samefile(spec.path):
            theirs.remove("experiment.toml")
    if (out / "plots").is_dir():
        from ..report.plots import plot_names

        theirs += [f"plots/{name}.png" for name in plot_names()
                   if (out / "plots" / f"{name}.png").is_file()]
    if theirs:
        given = last_set(spec.sets, "experiment.output_dir", "experiment.name")
        raise AblateInputError(
            (f"{set_shown(given)}: " if given else f"{spec.path}: ")
            + f"[experiment] output_dir = {str(out)!r} holds files ablate did not write "
            f"({', '.join(theirs[:4])}{', ...' if len(theirs) > 4 else ''}), which it would "
            f"replace or delete there; give study {spec.name!r} a folder of its own (without "
            "output_dir it is reports/<name>), or move those files out of the way")


def force_new_leftovers(spec: ExperimentSpec, dry_run: bool) -> tuple[str, list[str]]:
    """`--force-new` where the storage holds no study of this name (a study.db deleted, another
    storage given): the line that says what it removes from the output folder (or, `dry_run`,
    would), and the folders of FORCE_NEW_FOLDERS to remove. A folder holding no trial folder
    (one with its trial.log) nor SwanLab run (run-*, or the runs database) is not ablate's
    to remove: kept, and said so."""
    out = spec.output_dir
    trials = [p for p in _entries(out / "trials") if (p / "trial.log").is_file()]
    runs = [p for p in _entries(out / "swanlog") if p.name.startswith("run-") and p.is_dir()]
    said = {"trials": f"{len(trials)} trial folder(s) (trials/)" if trials else "",
            "swanlog": f"{len(runs)} SwanLab run(s) (swanlog/)" if runs
            else "SwanLab runs database (swanlog/)" if (out / "swanlog" / "runs.swanlab").is_file()
            else ""}
    folders = [name for name in FORCE_NEW_FOLDERS if said[name]]
    kept = [f"{name}/" for name in FORCE_NEW_FOLDERS
            if name not in folders and _entries(out / name)]
    line = (f"--force-new: storage {shown_storage(spec.experiment.storage)} holds no study "
            f"{spec.name!r}; ")
    if folders:
        line += (f"{'would remove' if dry_run else 'removed'} the "
                 f"{' and '.join(said[name] for name in folders)} an earlier run left in {out}")
    else:
        line += f"nothing to remove in {out}"
    if kept:
        line += (f" (kept {', '.join(kept)}: nothing in {'them' if len(kept) > 1 else 'it'} is a "
                 "trial folder or SwanLab run ablate writes)")
    return line + (", and start afresh" if dry_run else "; starting afresh"), folders


def _entries(folder: Path) -> list[Path]:
    """What a folder holds; none where it is not one (or cannot be read)."""
    try:
        return sorted(folder.iterdir()) if folder.is_dir() else []
    except OSError:
        return []


def _write_study_files(spec: ExperimentSpec) -> None:
    """A copy of the experiment file and the fully resolved recipe, beside the report. The
    recipe's storage URL has its password as *** (as report.md shows it): one given with --set
    or --storage would otherwise be written to disk, in a folder often shared or committed."""
    (spec.output_dir / "experiment.toml").write_text(spec.text, encoding="utf-8")
    resolved = spec.to_dict()
    resolved["experiment"]["storage"] = shown_storage(spec.experiment.storage)
    (spec.output_dir / "resolved.json").write_text(
        json.dumps(resolved, indent=2, default=str) + "\n", encoding="utf-8")



@dataclass
class Work:
    """What one process needs to train claimed trials; data and models load on first use."""

    spec: ExperimentSpec
    study: optuna.Study  # None only while `run` checks its input, before a new study is made
    echo: Lines  # a plain message callable is wrapped on construction
    stop: threading.Event = field(default_factory=threading.Event)  # --graceful: finish, then stop
    inputs: TrialInputs | None = None
    tracker: Any = None
    # Claim any [search] trial and ask the sampler for new ones; off where --only, --rerun or
    # --retry-failed select other trials (their own search retries are among the wanted keys).
    search: bool = True

    def __post_init__(self) -> None:
        self.echo = as_progress(self.echo)

    def prepare(self) -> TrialInputs:
        from ..data import load_study_splits

        if self.inputs is None:
            splits = load_study_splits(self.spec)
            if not interrupts.started_by_run():  # whose run said them, as its N workers would
                for note in splits.notes:
                    self.echo(f"data: {note}")
                self.echo(f"data: {splits.summary()}")
            self.inputs = TrialInputs(self.spec, splits)
            self.tracker = make_tracker(self.spec.tracking, self.spec.output_dir)
        return self.inputs


def work(job: Work, wanted: set[str] | None, outcome: RunOutcome, wait_for_others: bool) -> None:
    """Claim and train queued trials until none is left (of `wanted` keys; None: any).

    With `wait_for_others`, also wait while other workers still run wanted trials, re-queueing
    any whose worker died, so that the caller sees every wanted trial finished."""
    from ..train import PRETRAINED  # imports torch and transformers, before the freeze below

    # Each trial ends with full garbage collections (freeing the model; SwanLab closes its files
    # only then). Frozen, the long-lived objects of torch, transformers and the data are not
    # scanned again: 0.16 s → 0.01 s per collection here.
    gc.collect()
    gc.freeze()
    try:
        _work(job, wanted, outcome, wait_for_others)
    finally:
        gc.unfreeze()
        PRETRAINED.clear()  # read once per worker and study; a later study reads the files anew


def _work(job: Work, wanted: set[str] | None, outcome: RunOutcome, wait_for_others: bool) -> None:
    waited_for: set[str] = set()
    while not job.stop.is_set():
        interrupts.check()  # one swallowed during the last trial does not start the next
        queue.requeue_stale(job.study)
        searching = job.search and job.spec.search is not None
        optuna_trial = None
        try:
            with interrupts.held():  # a claim is not cut in half: the trial is ours to record
                optuna_trial = queue.claim(job.study, wanted, search=searching)
        except KeyboardInterrupt as err:
            _fail_if_running(job.study, optuna_trial, err)
            raise
        if optuna_trial is None:
            if searching and _search_once(job, outcome):
                continue
            running = [t for t in job.study.get_trials(
                deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
                if wanted is None or t.user_attrs.get(records.KEY) in wanted]
            if not (wait_for_others and running):
                return
            keys = {t.user_attrs.get(records.KEY) for t in running}
            if keys - waited_for:  # said once, not at every poll
                waited_for |= keys
                job.echo(_waiting_note(job, running))
            try:
                time.sleep(min(job.spec.experiment.heartbeat, 5))
            except KeyboardInterrupt:
                command = _rerun_gone(job, running)
                if command:
                    raise interrupts.WaitedOnGone(command) from None
                raise
            if job.stop.is_set():
                outcome.rerun_gone = _rerun_gone(job, running)
            continue
        try:
            with queue.Heartbeat(job.study, optuna_trial) as beat:  # from the claim until told
                trial = _spec_from_attrs(job.spec, optuna_trial.user_attrs)
                pruning = _search_retry(job, optuna_trial, trial)
                tokenizer, data = _inputs_for(job, optuna_trial, trial)
                run_name = tracker_run_name(job.study, optuna_trial.number, trial.key)
                job.echo(f"trial {optuna_trial.number} {trial.key}: {_describe(trial)}")
                job.echo.trial_started(trial.key, trial.seed)
                _run_one(job.study, optuna_trial, trial, job.spec, data, tokenizer, job.tracker,
                         run_name, outcome, job.echo, pruning, beat.lost, beat.follow)
        except KeyboardInterrupt as err:  # between the claim and training too: recorded, not left RUNNING
            _fail_if_running(job.study, optuna_trial, err)
            raise


def tracker_run_name(study: optuna.Study, number: int, key: str) -> str:
    """The SwanLab run's name: the trial's key (`baseline-s42`, as its folder and `status` name
    it), and `-try2`, `-try3` for a trial trained again (a --rerun, a retry, an interrupted one),
    whose earlier attempts' runs stay in the dashboard under their own names."""
    earlier = sum(1 for t in study.get_trials(deepcopy=False)
                  if t.number < number and t.user_attrs.get(records.KEY) == key)
    return key if earlier == 0 else f"{key}-try{earlier + 1}"


def _fail_if_running(study: optuna.Study, optuna_trial: optuna.Trial | None,
                     err: KeyboardInterrupt) -> None:
    """Record a trial this process claimed as interrupted, unless it was told already; `err`, the
    interrupt, then names it (interrupts.stopped_trial)."""
    if optuna_trial is None:
        return
    if study._storage.get_trial(optuna_trial._trial_id).state == optuna.trial.TrialState.RUNNING:
        _fail(study, optuna_trial, None, INTERRUPTED)
        interrupts.stopped_trial(err, str(optuna_trial.user_attrs.get(records.KEY)))


def _search_retry(job: Work, optuna_trial: optuna.Trial, trial: TrialSpec) -> Any:
    """A claimed search trial tried again (it failed, or its worker died): record its parameters
    (queued as fixed params) so that the sampler and the importances count it, and prune it like
    any search trial. Returns its pruning callback, or None for other trials."""
    from ..search import pruning_callback, suggest

    search = job.spec.search
    if (search is None or not records.is_search_variant(trial.variant)
            or set(trial.overrides) != set(search.space)):
        return None
    try:
        suggest(optuna_trial, search)
    except Exception as err:  # an interrupt is recorded as one by the caller
        _fail(job.study, optuna_trial, None, _error_line(err))
        raise
    return pruning_callback(optuna_trial, job.spec, trial)


def _waiting_note(job: Work, running: list[optuna.trial.FrozenTrial]) -> str:
    where = {str(t.user_attrs.get(records.KEY)): t.user_attrs.get(records.WORKER) for t in running}
    stale = queue.stale_numbers(job.study)
    gone = {str(t.user_attrs.get(records.KEY)) for t in running if t.number in stale}
    beats = queue.has_heartbeats(job.study)

    def state(key: str) -> str:
        if key in gone:  # known on this machine at once; the heartbeats tell everyone later
            process = f"its process {where[key]}" if where[key] else "its process"
            return f"{process} is gone" + ("; queued again once its heartbeats stop" if beats else "")
        return f"running in process {where[key]}" if where[key] else "running elsewhere"

    note = "waiting for " + ", ".join(f"{key} ({state(key)})" for key in sorted(where))
    if beats:
        return note
    return (f"{note} (this storage has no heartbeats: if that process is gone, stop this and "
            f"`{_rerun_command(job.spec, running)}`)")


def _rerun_command(spec: ExperimentSpec, trials: list[optuna.trial.FrozenTrial]) -> str:
    """`ablate run FILE --rerun V ...` for the variants of these stored trials."""
    variants = sorted({str(t.user_attrs.get(records.VARIANT)) for t in trials})
    return spec.command("run", *[part for v in variants for part in ("--rerun", v)])


def _rerun_gone(job: Work, running: list[optuna.trial.FrozenTrial]) -> str | None:
    """The command that trains again the waited-on trials whose process is gone, where no
    heartbeat will ever queue them again (the same command would only wait once more)."""
    if queue.has_heartbeats(job.study):
        return None
    gone = queue.stale_numbers(job.study)
    lost = [t for t in running if t.number in gone]
    return _rerun_command(job.spec, lost) if lost else None


def _inputs_for(job: Work, optuna_trial: optuna.Trial, trial: TrialSpec) -> tuple[Any, Any]:
    """Tokenizer and data for a claimed trial; bad input found this late fails the trial first."""
    try:
        inputs = job.prepare()
        preflight(job.spec, [trial], inputs)
        return inputs.for_trial(trial)
    except BaseException as err:
        _fail(job.study, optuna_trial, None, _error_line(err))
        raise


def _search_once(job: Work, outcome: RunOutcome) -> bool:
    """Run one trial proposed by the [search] sampler; False once the study holds n_trials
    search trials. A failed one still counts: the next run tries it again (`search.retries`)."""

    from ..search import (
        check_same_search,
        make_sampler,
        pruning_callback,
        repeated_trial,
        search_names,
        search_trial_name,
        suggest,
        trial_seed,
    )

    search = job.spec.search
    optuna_trial = None
    with contextlib.ExitStack() as beating:
        try:
            # Counted and made under the study's lock: two workers would both see n_trials - 1
            # and both add one.
            with queue.planning_lock(job.spec, lambda line: None):
                # Again under the lock: another process may have begun the search with another
                # space.
                check_same_search(job.study, job.spec, NEW_STUDY)
                made = search_names(job.study)
                if len(made) >= search.n_trials:
                    return False
                # Seeded from the number the new trial gets: each proposal draws afresh, in every
                # process and every later run (numbers only grow under this lock). Not the grid:
                # its seed orders the grid points that the stored grid ids number, so it is the
                # study's, or a later proposal would read the ids in another order and repeat one.
                number = len(job.study.get_trials(deepcopy=False))
                first_seed = job.spec.experiment.seeds[0]
                job.study.sampler = make_sampler(search, first_seed if search.sampler == "grid"
                                                 else trial_seed(first_seed, number))
                with interrupts.held():  # the new trial is ours to record once ask() made it
                    optuna_trial = job.study.ask()
                    # From its creation: a process killed now leaves a trial that goes stale.
                    beat = beating.enter_context(queue.Heartbeat(job.study, optuna_trial))
                try:
                    overrides = suggest(optuna_trial, search)
                    trial = TrialSpec.of(job.spec.baseline, search_trial_name(optuna_trial.number),
                                         job.spec.experiment.seeds[0], overrides)
                    for key, value in records.trial_attrs(trial).items():
                        optuna_trial.set_user_attr(key, value)
                    optuna_trial.set_user_attr(records.WORKER, records.this_worker())
                    earlier = repeated_trial(job.study, optuna_trial, trial.seed)
                    if earlier is not None:  # not trained again: it takes that trial's result
                        with interrupts.held():
                            optuna_trial.set_user_attr(records.REPEAT_OF, earlier.number)
                            job.study.tell(optuna_trial, earlier.value)
                        outcome.repeated.append(trial.key)
                        job.echo.trial_repeated(trial.key, trial.seed, earlier.value)
                        job.echo(f"trial {optuna_trial.number} {trial.key}: {_describe(trial)} "
                                 f"(search {len(made) + 1}/{search.n_trials}): the parameters of "
                                 f"{earlier.user_attrs[records.VARIANT]}, whose result it takes "
                                 f"({job.spec.experiment.metric} {earlier.value:.4f}); not "
                                 "trained again")
                        return True
                except Exception as err:  # never leave a trial RUNNING that no one will finish
                    _fail(job.study, optuna_trial, None, _error_line(err))
                    raise
            tokenizer, data = _inputs_for(job, optuna_trial, trial)
            pruning = pruning_callback(optuna_trial, job.spec, trial)
            job.echo(f"trial {optuna_trial.number} {trial.key}: {_describe(trial)} "
                     f"(search {len(made) + 1}/{search.n_trials})")
            job.echo.trial_started(trial.key, trial.seed)
            _run_one(job.study, optuna_trial, trial, job.spec, data, tokenizer, job.tracker,
                     tracker_run_name(job.study, optuna_trial.number, trial.key), outcome,
                     job.echo, pruning, beat.lost, beat.follow)
        except KeyboardInterrupt as err:  # before training too: recorded, not left RUNNING
            _fail_if_running(job.study, optuna_trial, err)
            raise
    return True


P = ParamSpec("P")


def _one_call(func: Callable[P, RunOutcome]) -> Callable[P, RunOutcome]:
    """`func`, a call of the Python API, in which a Hub found unreachable stays offline (see
    hub.per_call) and the libraries' chatter is off (quiet_libraries): the process going on after
    it (a notebook's) is neither left offline nor left quiet."""

    @functools.wraps(func)
    def called(*args: P.args, **kwargs: P.kwargs) -> RunOutcome:
        with hub.per_call(), quiet_libraries():
            return func(*args, **kwargs)

    return called


@_one_call
def run_study(spec: ExperimentSpec, only: str | list[str] | None = None,
              echo: Callable[[str], None] = print, *, rerun: str | list[str] | None = None,
              retry_failed: bool = False, workers: int = 1,
              stop: threading.Event | None = None, force_new: bool = False,
              graceful: bool = False) -> RunOutcome:
    """Queue every selected trial not yet complete, train them (here, or in `workers` worker
    processes, which get `only`/`rerun` and `graceful` too), wait for the study's other
    workers, then write the report.

    A stored study of the same name but another data, model, baseline or metric is refused;
    `force_new` deletes it, once every check of this run's input has passed. `only` and `rerun`
    are variant names (one string: one name)."""
    from ..search import SELECTOR, left_running, search_names, selected

    only, rerun = as_list(only), as_list(rerun)
    echo = as_progress(echo)  # messages, and the trials' progress where the terminal shows it
    trials = run_selection(spec, only, rerun, retry_failed)
    retry_search, propose = selected(spec, only, rerun, retry_failed)
    outcome = RunOutcome(planned=trials)
    check_installed(spec)
    made = [path for path in _made_while_planning(spec) if not path.exists()]
    make_output_dir(spec)
    check_own_output_dir(spec)
    # Planning is not cut short by --graceful's first Ctrl+C: the trials are queued, none starts.
    with queue.planning_lock(spec, echo), interrupts.only_waiting(
            "stopping once this run has queued its trials (nothing was running; Ctrl+C again to "
            "stop now)"):
        # Another study given this folder may have taken it while this run waited for the lock:
        # refused before anything is written (what is there is that run's: nothing is removed).
        check_own_output_dir(spec)
        # A cache there now was made by another run of the study while this one waited (its
        # trials, and its workers, read it): not this run's to remove if it is refused.
        made = [path for path in made if path != spec.output_dir / "cache" or not path.exists()]
        try:
            job, to_queue = _plan_and_queue(spec, trials, outcome, echo, stop, rerun,
                                            retry_failed, force_new, retry_search, propose)
        except AblateInputError:
            _remove_made(spec, made)  # the lock too, while held: see locking.file_lock
            raise
    job.search = propose
    study = job.study
    wanted = {t.key for t in trials} | {t.key for t in to_queue}  # and the search's retries
    if retry_search:  # and its trials left running, killed or elsewhere: waited for, as variants
        wanted |= {t.key for t in left_running(study, spec)}
    # Trials queued by an earlier, interrupted run are waiting too: they are this run's work (one
    # queued by hand or another program is no worker's: records.is_ours).
    waiting = [t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,))
               if records.is_ours(t.user_attrs)
               and (t.user_attrs[records.KEY] in wanted or not (only or rerun or retry_failed))]
    names = []  # no selection: every queued trial, and the search
    if only or rerun or retry_failed:  # the selected variants; the search if selected
        names = sorted({t.variant for t in trials}) + ([SELECTOR] if propose else [])
    # A selection with no variant and no search (`--rerun search_N`) is trained here: a worker
    # given no --only would propose new search trials.
    if workers > 1 and (to_queue or propose or waiting) and (names or not (only or rerun or retry_failed)):
        # A process beyond one per trial to train has nothing to claim: `--workers 100000` (a
        # typo) would start every one of them, each importing torch, until the machine ran out.
        proposals = max(0, spec.search.n_trials - len(search_names(study))) if propose and spec.search else 0
        workers = min(workers, max(1, len(waiting) + proposals))
        _run_worker_processes(spec, workers, echo, job.stop, names, graceful)
    work(job, wanted, outcome, wait_for_others=True)
    _collect_outcome(study, wanted, outcome)

    from ..models import export_best_model
    from ..report import build_report, report_lock, write_report

    # Two runs of the study ending together: one exports best_model/ at a time (each would clear
    # the other's staging folder, or find the trial's model already moved), the later one seeing
    # it exported; each report then names what is there.
    with report_lock(spec.output_dir / REPORT_LOCK, spec.command("report")):
        outcome.report = build_report(spec, study)
        export_best_model(spec, study, outcome.report, echo)  # best_model/, before the report names it
        write_report(spec, study, outcome.report)
    return outcome


def _made_while_planning(spec: ExperimentSpec) -> list[Path]:
    """What a run may make before a new study's checks have passed, innermost first: the
    tokenized data's cache, the planning lock, the output folder and its parents (a new study
    and the study files are made after the checks)."""
    return [spec.output_dir / "cache", spec.output_dir / queue.PLANNING_LOCK,
            spec.output_dir, *spec.output_dir.parents]


def _remove_made(spec: ExperimentSpec, made: list[Path]) -> None:
    """A run refused for bad input leaves nothing new behind: `made` (those of
    `_made_while_planning` not there before it) goes; a folder only when nothing else is in it."""
    for path in made:
        with contextlib.suppress(OSError):
            if path == spec.output_dir / "cache":
                shutil.rmtree(path)
            elif path.is_dir():
                path.rmdir()  # not empty: what is there is not this run's
            else:
                path.unlink(missing_ok=True)


def _plan_and_queue(spec: ExperimentSpec, trials: list[TrialSpec], outcome: RunOutcome,
                    echo: Lines, stop: threading.Event | None, rerun: list[str] | None,
                    retry_failed: bool, force_new: bool, retry_search: bool = False,
                    propose: bool = False) -> tuple[Work, list[TrialSpec]]:
    """Check everything, then queue what is to run; nothing is written (superseded, deleted,
    queued, a new study made, the study files) before every check has passed. With
    `retry_search`, failed search trials are queued again too (after the variants; they are
    checked when claimed, like proposals)."""
    from ..search import reruns, retries, run_probes, search_names

    try:
        stored = queue.open_study(spec, create=False)
    except queue.StudyNotFound:  # made once the data and the plan have passed every check
        stored = None
    if force_new and stored is not None:
        queue.check_none_running(stored)
    elsewhere = study_elsewhere(spec) if stored is None else None
    if elsewhere:
        echo(f"note: {elsewhere}")
    # Opened as a run writes to it: a storage this run cannot write in is refused now.
    study = queue.open_study(spec) if stored is not None and not force_new else None
    retried: list[tuple[TrialSpec, int]] = []
    if study is None:  # a new study (or --force-new's): every selected trial
        rerun_keys = {t.key for t in trials if t.variant in (rerun or [])}
        # --retry-failed of a study never run: nothing failed yet, as `plan` finds
        to_queue = [t for t in trials if force_new or not retry_failed or t.key in rerun_keys]
        replaced, notes = [], []
    else:
        to_queue, outcome.skipped, replaced, notes = checked_plan(study, spec, trials, rerun,
                                                                  retry_failed)
        if retry_search:
            retried = retries(study, spec)
    # `--rerun search_N` of one left running (a journal's); moot where --force-new deletes it.
    reran = reruns(study, spec, rerun) if study is not None else []
    # The sampler proposes search trials mid-study: the values it can propose are checked now.
    probes = run_probes(spec, study, propose, bool(retried or reran))
    if outcome.skipped:
        echo(f"re-using {len(outcome.skipped)} completed trial(s): {', '.join(outcome.skipped)}")
    for note in notes:
        echo(f"note: {note}")
    made = len(search_names(study)) if study is not None else 0
    echo.planned([(t.key, t.seed) for t in trials if t.key not in outcome.skipped]
                 + [(t.key, t.seed) for t, _ in retried + reran],
                 proposals=max(0, spec.search.n_trials - made) if propose and spec.search else 0)
    job = Work(spec, study, echo, stop or threading.Event())
    models: dict[str, str] = {}
    # What an earlier run queued and left (interrupted, killed) this run trains too: checked
    # against the study's rows and models as new trials are, not trained on other ones.
    left_keys = queue.left_to_train(study) if study is not None else set()  # one storage read
    left = [t for t in trials if t.key in left_keys]
    check_trial_folders(to_queue + [t for t, _ in retried + reran] + left, spec)
    if to_queue or retried or reran or probes or left:
        inputs = job.prepare()
        if study is not None:
            check_same_data(study, spec, inputs.splits.fingerprint(), source=inputs.splits.source)
        for note in preflight(spec, to_queue + probes, inputs):  # every problem before training
            echo(f"note: {note}")
        # After preflight, which loaded every model: a Hub model's cache is at the commit trained.
        models = check_same_models(study, spec, to_queue + probes + left)
        for trial in to_queue:  # tokenize once, before any worker starts
            inputs.for_trial(trial)
    elif study is not None:  # nothing to train: the stored trials are re-used, their rows unchecked
        note = other_rows_note(study, spec)
        if note:
            echo(f"note: {note}")
    _write_study_files(spec)
    if force_new:
        deleted = queue.delete_study(spec)
        folders = list(FORCE_NEW_FOLDERS)  # the deleted trials' logs and SwanLab runs go with them
        if deleted is not None:
            echo(f"--force-new: deleted study {spec.name!r} ({deleted} trial(s)) from "
                 f"{shown_storage(spec.experiment.storage)}; starting afresh")
        else:  # what an earlier run of a study no longer stored left: only where ablate's
            line, folders = force_new_leftovers(spec, dry_run=False)
            echo(line)
        for folder in folders:
            shutil.rmtree(spec.output_dir / folder, ignore_errors=True)
    if job.study is None:
        job.study = queue.open_study(spec)
    if to_queue:
        record_study_attrs(job.study, spec, job.prepare().splits, models)
        if replaced:  # --rerun: only now, so that bad input supersedes nothing
            queue.fail_abandoned(job.study, replaced)
            records.supersede(job.study, replaced)
        queue.enqueue(job.study, to_queue)
    if retried:  # the failed attempts are superseded: the report counts each search trial once
        echo(f"[search]: trying {len(retried)} failed search trial(s) again: "
             + ", ".join(trial.key for trial, _ in retried))
        records.supersede(job.study, [number for _, number in retried])
        queue.enqueue(job.study, [trial for trial, _ in retried])
    if reran:  # as a variant's --rerun: the abandoned attempt is failed, superseded, trained again
        echo(f"[search]: --rerun: training {', '.join(trial.key for trial, _ in reran)} again; "
             "the attempt left running is kept as failed and superseded")
        numbers = [number for _, number in reran]
        queue.fail_abandoned(job.study, numbers)
        records.supersede(job.study, numbers)
        queue.enqueue(job.study, [trial for trial, _ in reran])
    return job, to_queue + [trial for trial, _ in retried + reran]


@_one_call
def run_worker(spec: ExperimentSpec, echo: Callable[[str], None] = print,
               stop: threading.Event | None = None, only: str | list[str] | None = None,
               wait: float | None = None) -> RunOutcome:
    """`ablate worker`: join a study, train queued trials (of the `only` variants; one string:
    one name) until none is left. A study not made yet is waited for (at most `wait` seconds;
    None: until it is)."""
    from ..search import check_same_search, selected

    check_installed(spec)
    # Before any trial is claimed: preflight's refusal of a launcher's variables (a Kubeflow pod's
    # WORLD_SIZE) came once a trial was claimed, and failed it in the shared study.
    check_launcher_environment()
    # Its trials' folders, logs and SwanLab runs go in the output folder: not another study's.
    check_own_output_dir(spec)
    only = as_list(only)
    wanted = {t.key for t in select_trials(spec, only)} if only else None
    stop = stop or threading.Event()
    with interrupts.only_waiting("stopped waiting for the study (nothing was running)"):
        study = queue.wait_for_study(spec, echo, stop, wait)
    if study is None:  # --graceful's Ctrl+C while it waited: nothing claimed, nothing to stop
        return RunOutcome(planned=[])
    # A run that is still planning (loading and tokenizing the data: minutes on a large set) has
    # queued nothing yet, nor recorded what the checks below compare: wait for its queue, rather
    # than find it empty and stop at once. That wait cannot be cut short; --graceful's Ctrl+C
    # during it takes no trial after it.
    with interrupts.only_waiting("stopping once the other `ablate run` has queued its trials "
                                 "(nothing was running; Ctrl+C again to stop now)"):
        with queue.planning_lock(spec, echo):
            pass
    if stop.is_set():
        return RunOutcome(planned=[])
    # What the trials' recipes are built from; the data and model may sit at other paths on
    # another machine, but the model's config overrides and revision, and the [data] keys that
    # pick the rows, are the study's (a differing one is named before the rows are compared).
    check_same_study(study, spec, keys=("data", "baseline", "model", "metric", "direction"),
                     advice=SAME_AS_RUN, elsewhere=("data.dataset", "model.name"))
    check_same_search(study, spec, SAME_AS_RUN)
    stored = study.user_attrs.get(HEARTBEAT)
    if stored is not None and stored != spec.experiment.heartbeat:
        raise refusal(spec, f"experiment.heartbeat={stored}; this worker's is "
                             f"{spec.experiment.heartbeat} (a process takes a trial over as "
                             "dead after 3 of its own heartbeats without one from it)", SAME_AS_RUN)
    job = Work(spec, study, echo, stop,
               search=selected(spec, only, None, False)[1])  # --only X: no search trials
    if DATA_FINGERPRINT in study.user_attrs:  # before any trial is claimed: none fails for it
        splits = job.prepare().splits
        check_same_data(study, spec, splits.fingerprint(), advice=SAME_AS_RUN, source=splits.source)
    if MODEL_FINGERPRINTS in study.user_attrs:  # by content, wherever the model sits
        check_same_models(study, spec, select_trials(spec, None)[:1], advice=SAME_AS_RUN)
    outcome = RunOutcome(planned=[])
    work(job, wanted, outcome, wait_for_others=False)
    return outcome


def _run_worker_processes(spec: ExperimentSpec, workers: int, echo: Callable[[str], None],
                          stop: threading.Event, only: list[str], graceful: bool) -> None:
    """Start `workers` processes of `ablate worker` on this study (one GPU each when there are
    enough) and wait for them.

    They run in their own session, so that each Ctrl+C reaches them once, from here: with
    --graceful the first one (which sets `stop` here) lets their running trials finish."""
    import os
    import signal
    import subprocess
    import sys

    import torch

    gpus = torch.cuda.device_count()
    per_trial = spec.experiment.devices_per_trial
    threads = max(1, (os.cpu_count() or 1) // workers)  # oversubscribed CPU threads thrash
    # The study's own --sets (data, model and tracking are read from them), then where it is.
    # `--wait 0`: the study is made; with `--only search` it may hold no trial until this run's
    # first proposal, which its workers need not wait for.
    command = [sys.executable, "-m", "ablation", *spec.arguments(
        "worker", "--wait", "0", *[part for name in only for part in ("--only", name)],
        *(["--graceful"] if graceful else []),
        sets=(f"experiment.storage={json.dumps(spec.experiment.storage)}",
              f"experiment.output_dir={json.dumps(str(spec.output_dir))}"))]
    processes = []
    for index in range(workers):
        env = dict(os.environ)
        if gpus >= workers * per_trial:  # each worker its own GPUs, one per trial process
            env["CUDA_VISIBLE_DEVICES"] = ",".join(
                str(index * per_trial + offset) for offset in range(per_trial))
        elif gpus == 0:
            env.setdefault("OMP_NUM_THREADS", str(threads))
        env[STARTED_BY_RUN] = str(os.getpid())
        # Their lines go to `echo`, as this process's do: written to this process's stdout, they
        # went past a caller's echo (run_study from a notebook or a script that logs them).
        processes.append(subprocess.Popen(command, env=env, start_new_session=True,
                                          preexec_fn=interrupts.stop_with_parent,
                                          stdout=subprocess.PIPE, text=True, errors="replace"))
    echo(f"started {workers} worker processes")
    echo_failed: list[BaseException] = []

    def relay(stream: Any) -> None:
        """Each line to `echo`; once echo fails (`| head` has gone), the rest is read and
        dropped, so that no worker blocks on a full pipe; the failure is raised below."""
        with stream:
            for line in stream:
                if not echo_failed:
                    try:
                        echo(line.rstrip("\n"))
                    except Exception as err:
                        echo_failed.append(err)

    relays = [threading.Thread(target=relay, args=(process.stdout,), daemon=True)
              for process in processes]
    for thread in relays:
        thread.start()

    def signal_all(number: int) -> None:
        for process in processes:
            if process.poll() is None:
                process.send_signal(number)

    forwarded = False
    try:
        while any(process.poll() is None for process in processes):
            interrupts.check()
            if stop.is_set() and not forwarded:
                signal_all(signal.SIGINT)  # --graceful's first Ctrl+C: they finish their trials
                forwarded = True
            time.sleep(0.2)
    except KeyboardInterrupt:  # Ctrl+C without --graceful, a second one, or SIGTERM: stop now
        signal_all(signal.SIGTERM)  # which a --graceful worker does not take as its first Ctrl+C
        for process in processes:
            try:
                process.wait(timeout=60)  # each records its trial as failed, then exits
            except subprocess.TimeoutExpired:
                process.kill()
        raise
    finally:
        for thread in relays:  # the workers' last lines, before the run's own
            thread.join(timeout=10)
    if echo_failed:
        raise echo_failed[0]


def _collect_outcome(study: optuna.Study, wanted: set[str], outcome: RunOutcome) -> None:
    """Trials of this invocation that other processes ran count in the outcome too."""
    latest = records.latest_by_key(records.load_records(study))
    for key in wanted:
        record = latest.get(key)
        if record is None or key in outcome.skipped:
            continue
        if record.complete:
            outcome.failed.pop(key, None)
            if key not in outcome.completed:
                outcome.completed.append(key)
        elif record.state == "PRUNED":
            outcome.failed.pop(key, None)
            if key not in outcome.pruned:
                outcome.pruned.append(key)
        elif record.state == "FAIL" and key not in outcome.failed:
            outcome.failed[key] = record.error or "failed"


def _spec_from_attrs(spec: ExperimentSpec, attrs: dict[str, Any]) -> TrialSpec:
    """The trial a queued Optuna trial stands for (its user attributes say which)."""
    return TrialSpec.of(spec.baseline, attrs[records.VARIANT], int(attrs[records.SEED]),
                        attrs.get(records.OVERRIDES, {}))


def _describe(trial: TrialSpec) -> str:
    return "baseline recipe" if not trial.overrides else describe_changes(trial.overrides)


def _run_one(study: optuna.Study, optuna_trial: optuna.Trial, trial: TrialSpec,
             spec: ExperimentSpec, data: Any, tokenizer: Any, tracker: Any, run_name: str,
             outcome: RunOutcome, echo: Lines, pruning: Any = None,
             lost: threading.Event | None = None,
             follow: Callable[[Any], None] | None = None) -> None:
    """Train one claimed trial and record its end. `lost`: set by its heartbeat once another
    process took it over; `follow`: its heartbeat's, handed the Trainer's state when training
    begins, so that its beats store the step for `status` (one-process trials)."""
    from .. import train

    trial_dir = spec.output_dir / "trials" / trial.key
    check_trial_folders([trial], spec)  # made since the run's check, or a worker's trial
    trial_dir.mkdir(parents=True, exist_ok=True)
    for old in trial_dir.iterdir():  # an earlier attempt's files; its checkpoints may be resumed
        if old.name != "checkpoints":
            shutil.rmtree(old) if old.is_dir() else old.unlink()
    handler = _TrialLogHandler(trial_dir / "trial.log", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    tracker_config = {"study": spec.name, "variant": trial.variant, "seed": trial.seed,
                      "overrides": trial.overrides, "recipe": trial.recipe.to_dict(),
                      "data": spec.to_dict()["data"], "model": spec.to_dict()["model"],
                      "metric": spec.experiment.metric}
    try:
        log.info("trial %s (%s) starts: %s", optuna_trial.number, trial.key, tracker_config)
        try:
            if spec.experiment.devices_per_trial > 1:  # its rank 0 tracks the trial
                from ..distributed import offline_runs, train_distributed

                tracker = NullTracker()
                try:
                    result = train_distributed(
                        trial, spec, data, tokenizer, trial_dir, run_name, tracker_config, echo,
                        lost, on_local_runs=functools.partial(_store_local_runs, optuna_trial))
                finally:  # rank 0's runs that fell back offline, whatever the trial's end
                    _store_offline_runs(optuna_trial, offline_runs(trial_dir))
            else:
                if hasattr(tracker, "on_local_runs"):  # stored as each starts: see _store_local_runs
                    tracker.on_local_runs = functools.partial(_store_local_runs, optuna_trial)
                tracker.start(run_name, spec.name, tracker_config)
                kept = _keep_offline_runs(optuna_trial, tracker, [])
                extra = [pruning] if pruning is not None else []
                if lost is not None:
                    extra.append(train.StopWhenTakenOver(lost, follow))
                try:
                    result = train.train_with_backoff(
                        trial, spec, data, tokenizer, trial_dir, tracker, echo=echo,
                        extra_callbacks=extra)
                finally:  # an out-of-memory retry's run fell back too, whatever the trial's end
                    _keep_offline_runs(optuna_trial, tracker, kept)
                    if hasattr(tracker, "on_local_runs"):
                        tracker.on_local_runs = None
            if lost is not None and lost.is_set():
                raise queue.TrialTakenOver
        except KeyboardInterrupt as err:
            _fail(study, optuna_trial, tracker, INTERRUPTED, interrupted=True)
            interrupts.stopped_trial(err, trial.key)
            raise
        except queue.TrialTakenOver:
            _taken_over(optuna_trial, trial, spec, tracker, echo)
            return
        except Exception as err:
            log.error("trial %s failed:\n%s", trial.key, traceback.format_exc(),
                      extra={TRIAL_LOG_ONLY: True})  # the terminal gets the one line below
            message = _error_line(err, trial_dir)
            _fail(study, optuna_trial, tracker, message)
            outcome.failed[trial.key] = message
            echo.trial_ended(trial.key, "FAIL")
            echo(f"trial {optuna_trial.number} {trial.key} FAILED: {message} "
                 f"(log: {trial_dir / 'trial.log'})")
            train.release_memory()
            return
        value = result["validation"][spec.experiment.metric]
        # What the trial computed is kept: an interrupt now waits until it is recorded.
        with interrupts.held(), _unless_taken_over(optuna_trial, trial, spec, tracker, echo):
            if pruning is not None and pruning.pruned_at_step is not None:
                result["pruned_at_step"] = pruning.pruned_at_step
                optuna_trial.set_user_attr(records.RESULT, result)
                study.tell(optuna_trial, state=optuna.trial.TrialState.PRUNED)
                echo.trial_ended(trial.key, "PRUNED", value)
                tracker.finish(pruned_at_step=pruning.pruned_at_step)
                outcome.pruned.append(trial.key)
                echo(f"trial {optuna_trial.number} {trial.key} pruned at step "
                     f"{pruning.pruned_at_step}")
                return
            optuna_trial.set_user_attr(records.RESULT, result)
            study.tell(optuna_trial, value)
            echo.trial_ended(trial.key, "COMPLETE", value)
            tracker.finish()
            outcome.completed.append(trial.key)
            log.info("trial %s complete: %s = %s", trial.key, spec.experiment.metric, value)
            echo(f"trial {optuna_trial.number} {trial.key} done: {spec.experiment.metric} "
                 f"{value:.4f} in {fmt_duration(result['runtime_s'])}{_stopped_early(result)}")
    finally:
        root.removeHandler(handler)
        # A full disk fails the flush of the log's last lines: the trial is recorded already, and
        # the study goes on (it crashed here, leaving the next trials and the report undone).
        with contextlib.suppress(OSError):
            handler.close()


def _stopped_early(result: dict[str, Any]) -> str:
    """`, stopped early at step 6 of 28 (selected: step 3)` where early stopping ended the trial
    (the live table says `stopped early`; the plain line of logs, pipes and workers said nothing):
    the metric on the line is the selected step's, not the last evaluation's."""
    if not records.stopped_early(result):
        return ""
    selected = result.get("best_step")
    return (f", stopped early at step {result['steps']} of {result['max_steps']}"
            + (f" (selected: step {selected})" if selected is not None else ""))


def _taken_over(optuna_trial: optuna.Trial, trial: TrialSpec, spec: ExperimentSpec,
                tracker: Any, echo: Lines) -> None:
    """One line instead of a traceback: another process failed this trial as stale and queued it
    again; its attempt there is the one the study keeps."""
    message = (f"another process took this trial over: this one sent no heartbeat for "
               f"{3 * spec.experiment.heartbeat:g} s (suspended, or too busy), so its trial was "
               "failed as stale and queued again; this attempt is not stored")
    log.warning("trial %s: %s", trial.key, message)
    tracker.finish(error=message)
    echo.trial_ended(trial.key, "FAIL")
    echo(f"trial {optuna_trial.number} {trial.key}: {message}")
    from .. import train

    train.release_memory()


@contextlib.contextmanager
def _unless_taken_over(optuna_trial: optuna.Trial, trial: TrialSpec, spec: ExperimentSpec,
                       tracker: Any, echo: Lines) -> Any:
    """Storing the result of a trial that was taken over in the meantime (between the last beat
    and now) fails as Optuna's finished-trial error: said in one line, the run goes on."""
    try:
        yield
    except optuna.exceptions.UpdateFinishedTrialError:
        _taken_over(optuna_trial, trial, spec, tracker, echo)


def _keep_offline_runs(optuna_trial: optuna.Trial, tracker: Any, kept: list[str]) -> list[str]:
    """Store with the trial the folders of its runs that logged offline instead of online (its
    first run, and each out-of-memory retry's), unless `kept` already holds them all: each is a
    run to `swanlab sync`, which `ablate dashboard` names. Returns what is stored."""
    folders = getattr(tracker, "offline_run_dirs", [])
    if folders != kept:
        _store_offline_runs(optuna_trial, folders)
    return folders


def _store_local_runs(optuna_trial: optuna.Trial, folders: list[str]) -> None:
    """Store with the trial the folders of its local runs (records.LOCAL_RUNS), each as it starts
    (an out-of-memory retry's too): killed, its process leaves them running, and the process that
    fails the trial as stale ends them as crashed (queue.requeue_stale)."""
    with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):  # taken over
        optuna_trial.set_user_attr(records.LOCAL_RUNS, folders)


def _store_offline_runs(optuna_trial: optuna.Trial, folders: list[str]) -> None:
    """Store with the trial the folders of its runs that logged offline (records.TRACKED_OFFLINE);
    none: nothing to store."""
    if folders:
        with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):  # taken over
            optuna_trial.set_user_attr(records.TRACKED_OFFLINE, folders)


def _fail(study: optuna.Study, optuna_trial: optuna.Trial, tracker: Any, message: str,
          interrupted: bool = False) -> None:
    with interrupts.held():  # a second Ctrl+C leaves neither the trial nor its run unfinished
        with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):  # taken over
            optuna_trial.set_user_attr(records.ERROR, message)
            study.tell(optuna_trial, state=optuna.trial.TrialState.FAIL)
        if tracker is not None:
            tracker.finish(error=message, interrupted=interrupted)
