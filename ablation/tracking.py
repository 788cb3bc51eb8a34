"""Experiment trackers: a small contract, a registry, and the SwanLab and "none" backends.

One tracker run per trial: ``start`` → ``log``… → ``finish``. The sweep always calls ``finish``
(also when the trial fails), because SwanLab's own transformers callbacks never do, and an unfinished
run makes the next trial's points collide with it.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import importlib.util
import logging
import os
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

from . import interrupts
from .config import TrackingSpec, named_by
from .environment import variables_left_out
from .errors import AblateInputError, first_line
from .locking import file_lock

log = logging.getLogger(__name__)


class Tracker(Protocol):
    def start(self, name: str, group: str, config: dict[str, Any]) -> None: ...

    def log(self, metrics: dict[str, float], step: int) -> None: ...

    def finish(self, error: str | None = None, *, interrupted: bool = False,
               pruned_at_step: int | None = None) -> None:
        """End the run: `error` says why the trial failed, or (`interrupted`) that Ctrl+C or
        SIGTERM stopped it; a trial the pruner stopped ends with the step it stopped at."""

    def start_over(self, suffix: str, reason: str, changes: dict[str, Any]) -> None:
        """The trial trains again from step 0 in this process (an out-of-memory back-off): its
        points go to a new run, `<name><suffix>`, if the failed attempt logged any; `changes`
        (what it now trains with) are added to the run's config."""


class NullTracker:
    """`backend = "none"`: tracking off."""

    def start(self, name: str, group: str, config: dict[str, Any]) -> None:
        pass

    def log(self, metrics: dict[str, float], step: int) -> None:
        pass

    def finish(self, error: str | None = None, *, interrupted: bool = False,
               pruned_at_step: int | None = None) -> None:
        pass

    def start_over(self, suffix: str, reason: str, changes: dict[str, Any]) -> None:
        pass


_UNSET = object()
LOG_DIR_VARIABLE = "SWANLAB_LOG_DIR"


class SwanLabTracker:
    """One SwanLab run per trial, written under ``<output_dir>/swanlog`` unless mode is online."""

    def __init__(self, spec: TrackingSpec, output_dir: Path) -> None:
        self.project = spec.project
        self.mode = spec.mode  # always explicit: SwanLab's own default is online
        self.requested_mode = spec.mode
        self.log_dir = output_dir / "swanlog"
        self._run: Any = None
        self._started: tuple[str, str, dict[str, Any]] | None = None  # start()'s arguments
        self._logged = False  # since start(): any point at all
        self._root: str | None = None  # the trial's run name, once start_over suffixed it
        self._offline_dirs: list[str] = []  # the trial's runs, every attempt's, that fell back
        self._local_dirs: list[str] = []  # the trial's runs, every attempt's, in mode local
        # Told the folders of the trial's local runs as each starts (an out-of-memory retry's too)
        self.on_local_runs: Callable[[list[str]], None] | None = None
        self._warned: set[str] = set()
        self._log_dir_variable: Any = _UNSET  # SWANLAB_LOG_DIR before the run started

    def start(self, name: str, group: str, config: dict[str, Any]) -> None:
        """Start the trial's run; a tracker that cannot start (online without a key, unwritable
        folder) falls back to offline, then to no tracking, with one warning: the trial still runs."""
        self._offline_dirs, self._local_dirs, self._root = [], [], None
        self._start_run(name, group, config)

    def _start_run(self, name: str, group: str, config: dict[str, Any]) -> None:
        """Start one run of the trial: its first, or a retry's (start_over). A Ctrl+C or SIGTERM
        meanwhile comes once the run is ours to finish: inside swanlab.init it left a folder
        that no dashboard lists and a trial recorded as interrupted without its run. Not online,
        where init waits on the network for as long as it takes: there Ctrl+C stops it at once."""
        waits = interrupts.held() if self.mode != "online" else contextlib.nullcontext()
        with waits:
            self._started, self._logged = (name, group, config), False
            self._start_mode(name, group, config)
            folder = self._fell_back_dir()
            if folder is not None:
                self._offline_dirs.append(folder)
            if self._run is not None and self.mode == "local":
                with contextlib.suppress(Exception):  # another SwanLab version without Run.dir
                    self._local_dirs.append(str(self._run.dir))
                if self.on_local_runs is not None:
                    self.on_local_runs(list(self._local_dirs))

    def _start_mode(self, name: str, group: str, config: dict[str, Any]) -> None:
        modes = [self.mode] + (["offline"] if self.mode not in ("offline", "disabled") else [])
        for mode in modes:
            try:
                self._run = self._init(name, group, config, mode)
            except Exception as err:
                reason = first_line(err)
                if mode == modes[-1]:
                    self._warn_once(f"SwanLab could not start ({reason}); this study runs without "
                                    "tracking")
                    self.mode = "disabled"
                    self._run = None
                    return
                self._warn_once(f"SwanLab mode {mode!r} could not start ({reason}); logging "
                                f"offline under {self.log_dir} instead (sync later with `swanlab "
                                "sync`)")
                self.mode = "offline"
                continue
            return

    @property
    def offline_run_dirs(self) -> list[str]:
        """The folders of this trial's runs (an out-of-memory retry logs to a run of its own)
        that were asked for online and logged offline instead: stored with the trial, so
        `ablate dashboard` can say what to `swanlab sync`."""
        return list(self._offline_dirs)

    @property
    def local_run_dirs(self) -> list[str]:
        """The folders of this trial's runs in mode local: stored with the trial, so that a run
        whose process is killed can be ended as crashed (end_dead_runs) once the trial is failed."""
        return list(self._local_dirs)

    def _fell_back_dir(self) -> str | None:
        """The folder of the run just started, when it was asked for online and logs offline."""
        if self._run is None or self.requested_mode != "online" or self.mode != "offline":
            return None
        try:
            return str(self._run.dir)
        except Exception:  # another SwanLab version without Run.dir: the folder is still there
            return str(self.log_dir)

    def _init(self, name: str, group: str, config: dict[str, Any], mode: str) -> Any:
        import swanlab

        if mode == "disabled":
            return None
        self.log_dir.mkdir(parents=True, exist_ok=True)
        if mode == "local":
            _lock_local_store(self.log_dir / ".store.lock")
            _quick_tag_column_check()
        _quiet_swanlab_console(mode != "online")  # online: it prints the run's cloud address
        _quiet_swanlab_log_errors()
        # interactive=False: online without a key raises (and falls back to offline) instead of
        # asking "Enter your choice [1/2/3]" on a terminal, which held the study at its first trial
        handler = signal.getsignal(signal.SIGINT)
        if self._log_dir_variable is _UNSET:  # the user's, before the trial's first run
            self._log_dir_variable = os.environ.get(LOG_DIR_VARIABLE)
        with _without_run_variables(swanlab):
            settings = swanlab.Settings(
                interactive=False,
                probe=swanlab.Settings.Probe(monitor=False, requirements=False, git=False))
            run = swanlab.init(
                project=self.project, name=name, group=group, config=config, mode=mode,
                log_dir=str(self.log_dir), reinit=True, settings=settings)
        if threading.current_thread() is threading.main_thread():
            # SwanLab's own Ctrl+C handler finishes the run at once and calls ours after: with
            # --graceful the trial then goes on logging to a finished run and fails. Ablate
            # handles Ctrl+C itself and finishes the run (as aborted) when the trial stops.
            signal.signal(signal.SIGINT, handler)
        return run

    def _warn_once(self, message: str) -> None:
        if message not in self._warned:
            self._warned.add(message)
            log.warning(message)

    def log(self, metrics: dict[str, float], step: int) -> None:
        if self._run is not None and metrics:
            self._run.log(metrics, step=step)
            self._logged = True

    def finish(self, error: str | None = None, *, interrupted: bool = False,
               pruned_at_step: int | None = None) -> None:
        """An interrupted trial's run ends as aborted, as SwanLab ends its own on Ctrl+C (online
        it reads Aborted, not Crashed). SwanLab has no pruned state, and its local dashboard shows
        aborted as Crashed: a pruned trial's run ends as success, its config saying where the
        pruner stopped it (it read as a trial trained to the end)."""
        if self._run is None:
            self._give_back_log_dir_variable()
            return
        run, self._run = self._run, None
        try:
            if pruned_at_step is not None:
                run.config.update({"pruned_at_step": pruned_at_step})
            if error is None:
                run.finish(state="success")
            else:
                run.finish(state="aborted" if interrupted else "crashed", error=error)
            del run
            gc.collect()  # SwanLab's local database connections close only when collected
        finally:
            self._give_back_log_dir_variable()

    def _give_back_log_dir_variable(self) -> None:
        """SwanLab's local mode sets SWANLAB_LOG_DIR to the study's swanlog folder for its run (its
        database reads it) and leaves it set: a notebook's own `swanlab.init()` after a
        `run_study` logged into the study's folder, and its dashboard listed that run. It is the
        user's again once the run ends."""
        if self._log_dir_variable is _UNSET:
            return
        if self._log_dir_variable is None:
            os.environ.pop(LOG_DIR_VARIABLE, None)
        else:
            os.environ[LOG_DIR_VARIABLE] = self._log_dir_variable
        self._log_dir_variable = _UNSET

    def start_over(self, suffix: str, reason: str, changes: dict[str, Any]) -> None:
        """SwanLab keeps the first point logged at a step and drops later ones: the new attempt's
        curves, logged at the same steps, would show the failed attempt's start instead. Its
        config says the batch it trains with, which the trial's recipe no longer does."""
        if self._run is None or self._started is None:
            return
        name, group, config = self._started
        if not self._logged:  # nothing logged yet (out of memory at the first step): it goes on
            self._run.config.update(changes)
            self._started = (name, group, config | changes)
            return
        root = self._root or name  # a second back-off: baseline-s42-oom2, not ...-oom1-oom2
        self.finish(error=f"{reason}; the trial goes on in run {root}{suffix}")
        self._start_run(root + suffix, group, config | changes)
        self._root = root


def _run_sections(swanlab: Any) -> set[str]:
    """The names of SwanLab's settings' sections (PROJECT, RUN, PROBE, ...)."""
    sections = {name.upper() for name, field in getattr(swanlab.Settings, "model_fields", {}).items()
                if isinstance(field.annotation, type) and hasattr(field.annotation, "model_fields")}
    return sections | {"PROJECT", "EXPERIMENT", "RUN", "PROBE"}  # another version's settings


def _is_run_variable(name: str, sections: set[str]) -> bool:
    """A SWANLAB_* variable that would decide what ablate decides for each run, read by SwanLab's
    settings when a run starts: SWANLAB_PROJECT (and the other names of its settings' sections,
    SWANLAB_RUN, SWANLAB_PROBE, ...), which SwanLab 0.10.3 cannot parse, so that every trial ran
    untracked; SWANLAB_RUN_ID and SWANLAB_RESUME, one run id for every trial; SWANLAB_RUN_DIR,
    one folder. The key and host of `mode = "online"` are not."""
    name = name.upper()
    return name.startswith("SWANLAB_") and (
        name[len("SWANLAB_"):] in sections or name.startswith("SWANLAB_RUN_")
        or name == "SWANLAB_RESUME")


@contextlib.contextmanager
def _without_run_variables(swanlab: Any) -> Iterator[None]:
    """Those variables out of the environment while a run starts (the user's again after), and
    out of the working folder's `.env`."""
    sections = _run_sections(swanlab)
    with variables_left_out(lambda name: _is_run_variable(name, sections)), \
            _env_file_without_run_lines(swanlab, sections):
        yield


@contextlib.contextmanager
def _env_file_without_run_lines(swanlab: Any, sections: set[str]) -> Iterator[None]:
    """SwanLab's settings read the working folder's `.env` too (a project's .env with
    SWANLAB_PROJECT left every trial untracked): it is not read while a run starts, its other
    SWANLAB_* lines (SWANLAB_API_KEY) set as the environment's where the environment lacks them,
    as SwanLab ranks the two."""
    config = getattr(swanlab.Settings, "model_config", None)
    env_file = config.get("env_file") if isinstance(config, dict) else None
    added: list[str] = []
    read_env_file = isinstance(env_file, (str, Path)) and Path(env_file).is_file()
    if read_env_file:
        try:
            from dotenv import dotenv_values

            lines = dotenv_values(env_file)
        except Exception:  # an unreadable file: SwanLab reads it as it can
            read_env_file = False
        else:
            for name, value in lines.items():
                upper = name.upper()
                if (upper.startswith("SWANLAB_") and value is not None
                        and not _is_run_variable(upper, sections) and upper not in os.environ):
                    os.environ[upper] = value
                    added.append(upper)
            config["env_file"] = None
    try:
        yield
    finally:
        for name in added:
            os.environ.pop(name, None)
        if read_env_file:
            config["env_file"] = env_file


def _quiet_swanlab_console(quiet: bool) -> None:
    """SwanLab greets each run in the terminal (its version, its folder, `swanlab watch` to view
    it: ablate prints its own `ablate dashboard`), 4-6 lines a trial that bury ablate's own, even
    with --quiet. Its console is a rich Console, made quiet; another SwanLab version that keeps
    it elsewhere keeps its lines."""
    try:
        from swanlab.sdk.internal.pkg import console

        console.c.quiet = quiet
    except (ImportError, AttributeError):
        pass


def _quiet_swanlab_log_errors() -> None:
    """SwanLab writes a diagnostic log of its own (each run's debug/debug.log). A line it cannot
    write there (a full disk) made Python's logging print its traceback on the terminal, some 50
    lines per line not written and 5,000 for a trial, burying ablate's own line that says what
    happened (SwanLab could not start, the storage stopped answering). Such a line is now lost
    unsaid, as a trial log's is; another SwanLab version without this handler keeps its own."""
    try:
        from swanlab.sdk.internal.pkg.console import log as swanlab_log

        handler = swanlab_log.SecureRotatingFileHandler
    except (ImportError, AttributeError):
        return
    handler.handleError = lambda self, record: None


def end_dead_runs(folders: list[str], error: str) -> None:
    """End as crashed the local runs (their folders) of a trial whose process died: killed (kill -9,
    out of host memory), nothing of it finished its run, and the local dashboard showed it as
    running for good while the study failed the trial as stale. A run ended meanwhile is left
    as it is; a database that cannot be written is left too (the trial goes on regardless)."""
    import sqlite3
    from datetime import UTC, datetime

    for folder in map(Path, folders):
        store = folder.parent / "runs.swanlab"
        if not store.is_file():
            continue
        try:
            with file_lock(folder.parent / ".store.lock"), contextlib.closing(
                    sqlite3.connect(store, timeout=30)) as db, db:
                ended = db.execute(
                    "update experiment set status = -1, finish_time = ?, update_time = ? "
                    "where run_id = ? and status = 0",
                    (now := datetime.now(UTC).isoformat(), now, folder.name)).rowcount
            console = folder / "console"
            # a run its process ended (a data-parallel rank 0 that failed, not killed) keeps its
            # own error: the owner's would be a second one in its console log
            if ended and console.is_dir():
                with (console / "error.log").open("a", encoding="utf-8") as out:
                    print(datetime.now(), error, sep="\n", file=out)
        except (OSError, sqlite3.Error) as err:
            log.warning("could not end the SwanLab run %s as crashed: %s", folder, first_line(err))


# SwanLab's local mode keeps every run of a folder in one SQLite database (runs.swanlab), written
# with check-then-insert steps (the project, each chart and namespace) from each run's background
# thread. Worker processes sharing the folder interleave them, and a run, or a run's points, is
# lost. Each of those writes is made under an fcntl lock on a file beside the database.
_LOCAL_STORE_WRITES = ("on_run_initialized", "on_scalar_flush", "on_media_flush", "on_run_finished")
_local_store_lock: list[Path] = []  # the lock file of this process's study


def _lock_local_store(path: Path) -> None:
    """Make SwanLab's local-store writes take the lock file `path` (once per process)."""
    from swanlab.deprecated.local import LocalCallbacker

    _local_store_lock[:] = [path]
    if getattr(LocalCallbacker, "_ablate_locked", False):
        return
    for name in _LOCAL_STORE_WRITES:
        write = getattr(LocalCallbacker, name)

        @functools.wraps(write)
        def locked(self: Any, *args: Any, _write: Any = write, **kwargs: Any) -> Any:
            with file_lock(_local_store_lock[-1]):
                return _write(self, *args, **kwargs)

        setattr(LocalCallbacker, name, locked)
    LocalCallbacker._ablate_locked = True


def _quick_tag_column_check() -> None:
    """SwanLab's local mode, at each run's start, checks that the database's tag table has its
    `folder` column (a migration adds it to older databases) by reading every tag of every run
    there, with one more query per tag for the tag's run: 12 tags a trial, a study's 150th run
    made 1,800 queries before it trained, and each start took longer than the last (more than
    the training, in a study of small trials). The column is checked here with one row (an
    older swanboard that lacks these names keeps its own check)."""
    try:
        from peewee import OperationalError
        from swanboard.db import Tag
    except ImportError:
        return
    if getattr(Tag, "_ablate_quick_check", False):
        return

    def field_exists(cls: Any, field: str) -> bool:
        try:
            list(cls.select(getattr(cls, field)).limit(1))
        except OperationalError:  # no such column: swanboard adds it, as its own check did
            return False
        return True

    Tag.field_exists = classmethod(field_exists)
    Tag._ablate_quick_check = True


def local_store_installed() -> bool:
    """Whether SwanLab's mode "local" can record runs: in the database of the `swanboard` package
    (`swanlab[dashboard]`). Without it SwanLab writes each run's files and leaves it out of the
    database, with no word said (its error is one of the console lines ablate turns off), and the
    dashboard never shows the run."""
    return importlib.util.find_spec("swanboard") is not None


LOCAL_STORE_MISSING = ("SwanLab's local runs database (the swanboard package) is not installed: "
                       "pip install 'swanlab[dashboard]'")


def check_installed(spec: Any) -> None:
    """Before anything trains (`validate`, `run`, `worker`): mode "local" without its database
    would train every trial and log none where the dashboard reads."""
    tracking = spec.tracking
    if tracking.backend == "swanlab" and tracking.mode == "local" and not local_store_installed():
        raise AblateInputError(
            f'{named_by(spec.path, spec.sets, "tracking.mode", "tracking.backend")}: [tracking] '
            f'mode = "local" cannot record its runs: {LOCAL_STORE_MISSING}, or set mode = "offline" '
            '(files only; `swanlab sync` uploads them) or backend = "none"')


TRACKERS: dict[str, Callable[[TrackingSpec, Path], Tracker]] = {
    "swanlab": SwanLabTracker,
    "none": lambda spec, output_dir: NullTracker(),
}


def make_tracker(spec: TrackingSpec, output_dir: Path) -> Tracker:
    return TRACKERS[spec.backend](spec, output_dir)


# What the Trainer logs once, when training ends: a panel of their own, not points on the
# training curves (train_loss, the mean over all steps, beside train/loss at the last step).
SUMMARY_KEYS = ("train_runtime", "train_samples_per_second", "train_steps_per_second",
                "total_flos", "train_loss")


def tracker_keys(logs: dict[str, Any]) -> dict[str, float]:
    """Trainer log keys → dashboard keys grouped by panel: train/loss, eval/macro_f1 (each
    evaluation), validation/… (the selected checkpoint), test/…, summary/… (the end of training)"""
    out: dict[str, float] = {}
    for key, value in logs.items():
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            continue
        if key in SUMMARY_KEYS:
            out[f"summary/{key}"] = float(value)
            continue
        for prefix in ("eval_", "validation_", "test_"):
            if key.startswith(prefix):
                out[f"{prefix[:-1]}/{key[len(prefix):]}"] = float(value)
                break
        else:
            out[f"train/{key}"] = float(value)
    return out
