"""The study storage as a work queue shared by any number of worker processes.

- Only the coordinator (`ablate run`) enqueues trials, one `run` of a study at a time (on a
  machine, and on PostgreSQL across machines: `planning_lock`); workers only claim them, so a
  variant × seed is never queued twice.
- Claiming moves a WAITING trial to RUNNING in the storage, which succeeds for exactly one process
  (Optuna's RDB and journal storages check the previous state atomically).
- A running trial sends heartbeats (Optuna's RDB heartbeat), the first one before its claim makes
  it RUNNING, so that no RUNNING trial is without one. A trial whose worker died goes stale;
  the one process that wins its RUNNING → FAIL transition queues it again, so it runs again once.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import json
import os
import re
import sqlite3
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import optuna
from optuna.exceptions import ExperimentalWarning
from optuna.storages.journal import JournalFileBackend, JournalStorage
from optuna.trial import TrialState

from . import records
from .config import ExperimentSpec, last_set, named_by, password_parameter_hidden, shown_storage
from .errors import AblateInputError, error_chain, first_line, set_shown
from .locking import file_lock, held_by_another
from .quiet import quiet_optuna
from .variants import TrialSpec

# Heartbeats are an "experimental" Optuna feature meant for Study.optimize; ablate drives them
# itself (see Heartbeat), so these two warnings say nothing to a user.
warnings.filterwarnings("ignore", message=".*heartbeat_interval.*", category=ExperimentalWarning)
warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with")

JOURNAL_PREFIX = "journal:///"
STALE_AFTER_HEARTBEATS = 3
SQLITE_LOCK_WAIT = 60  # seconds a SQLite write waits for another process's lock
STUDY_POLL_SECONDS = 5.0  # how often a worker started before its `run` looks for the study
SQLITE_LOCK_NOTE_AFTER = 2  # seconds of that wait before it is said on stderr
PLANNING_LOCK = ".queue.lock"  # in the output folder; its holder writes itself in it
STALE_ERROR = "its worker stopped sending heartbeats (killed or crashed); queued again"


def _check_journal(path: Path) -> None:
    """A file given as the journal must be one (or empty, or new): a data file's JSON Lines were
    replayed as a journal holding no study ('run it first', said by run itself), a CSV failed
    in json's words. Its first line is read, nothing written."""
    try:
        with path.open("rb") as file:
            first = file.readline(1 << 20).strip()
    except (FileNotFoundError, IsADirectoryError):
        return  # made by the journal; a folder is refused in Optuna's words
    if not first:
        return
    try:
        record = json.loads(first)
    except ValueError:
        record = None
    if not isinstance(record, dict) or "op_code" not in record:
        raise ValueError(f"{path} is not an Optuna journal (its first line is not one of a "
                         "journal's records): give a new file's path, or a journal ablate wrote")


class StudyNotFound(AblateInputError):
    """The storage holds no study of this name (it was never run)."""


def _journal_path(url: str) -> Path:
    return Path("/" + url[len(JOURNAL_PREFIX):].lstrip("/"))


def make_storage(url: str, heartbeat: int) -> optuna.storages.BaseStorage:
    """SQLite, PostgreSQL, MySQL (with heartbeats), or a journal file: journal:///path/to/file."""
    if url.startswith(JOURNAL_PREFIX):
        path = _journal_path(url)
        path.parent.mkdir(parents=True, exist_ok=True)
        _check_journal(path)
        return JournalStorage(_WatchedJournal(path))
    engine_kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):  # several local workers: wait for the file lock, don't fail
        engine_kwargs = {"connect_args": {"timeout": SQLITE_LOCK_WAIT,
                                          "factory": _LockWaitsSaid}}
    elif url.startswith("postgresql"):
        # A pooled connection can die while a trial trains (a server restart, a firewall closing
        # idle connections): checked before each use and replaced, as Optuna does for MySQL,
        # rather than fail the trial's result with a traceback and leave it RUNNING.
        engine_kwargs = {"pool_pre_ping": True}
    with _creation_lock(url):
        storage = optuna.storages.RDBStorage(
            url, engine_kwargs=engine_kwargs, heartbeat_interval=heartbeat,
            grace_period=heartbeat * STALE_AFTER_HEARTBEATS)
    if url.startswith("sqlite"):
        _begin_immediate(storage.engine)
        _watch_for_deletion(storage.engine, url)
    return storage


class _LockWaitNote:
    """One line on stderr once a statement has waited SQLITE_LOCK_NOTE_AFTER seconds for SQLite's
    lock (SQLite waits inside the statement, in silence, up to SQLITE_LOCK_WAIT): a command
    blocked by `sqlite3 study.db` seemed hung for a minute. A statement waits where it has run
    that long with no sign of work: SQLite runs no instruction while it waits for a lock, and
    a long read reports its progress (`alive`). Said once while statements wait (a heartbeat's
    may wait beside the main thread's), and again for a later wait. One watching thread for
    the process: a statement only notes when it starts, works and ends."""

    def __init__(self) -> None:
        # a thread's statement -> (its start or last sign of work, database)
        self._running: dict[int, tuple[float, str]] = {}
        self._watcher: threading.Thread | None = None
        self._start_lock = threading.Lock()

    @contextlib.contextmanager
    def around(self, database: str) -> Iterator[None]:
        token = id(threading.current_thread())  # one statement at a time per thread
        self._running[token] = (time.monotonic(), database)
        if self._watcher is None or not self._watcher.is_alive():  # not yet, or lost to a fork
            self._start_watcher()
        try:
            yield
        finally:
            self._running.pop(token, None)

    def alive(self, database: str) -> None:
        """The statement of this thread is working, not waiting."""
        token = id(threading.current_thread())
        if token in self._running:
            self._running[token] = (time.monotonic(), database)

    def _start_watcher(self) -> None:
        with self._start_lock:
            if self._watcher is None or not self._watcher.is_alive():
                self._watcher = threading.Thread(target=self._watch, name="ablate-sqlite-lock",
                                                 daemon=True)
                self._watcher.start()

    def _watch(self) -> None:
        said = False
        while True:
            time.sleep(min(0.5, SQLITE_LOCK_NOTE_AFTER / 4))
            now = time.monotonic()
            waiting = [database for started, database in self._running.copy().values()
                       if now - started >= SQLITE_LOCK_NOTE_AFTER]
            if waiting and not said:
                print(f"note: {waiting[0]} is locked by another program; waiting up to "
                      f"{SQLITE_LOCK_WAIT:g} s for it", file=sys.stderr, flush=True)
            said = bool(waiting)


_LOCK_WAITS = _LockWaitNote()


class _LockWaitsSaidCursor(sqlite3.Cursor):
    def execute(self, *args: Any) -> Any:
        with _LOCK_WAITS.around(self.connection.database_path):
            return super().execute(*args)

    def executemany(self, *args: Any) -> Any:
        with _LOCK_WAITS.around(self.connection.database_path):
            return super().executemany(*args)


class _LockWaitsSaid(sqlite3.Connection):
    """The storage's SQLite connections (sqlite3.connect's factory): each statement says a long
    wait for the database's lock (see _LockWaitNote)."""

    def __init__(self, database: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(database, *args, **kwargs)
        self.database_path = path = str(database)
        # Every 100,000 SQLite instructions (about 1 ms); 0: go on. A closure, not a method: the
        # connection would hold itself.
        self.set_progress_handler(lambda: _LOCK_WAITS.alive(path) or 0, 100_000)

    def cursor(self, *args: Any, **kwargs: Any) -> Any:
        return super().cursor(*args, **kwargs) if args or kwargs else super().cursor(
            _LockWaitsSaidCursor)


GONE = "ablate_storage_gone"  # on a SQLite error whose database file was deleted: what is gone


def _sqlite_path(url: str) -> Path | None:
    """The database file of a sqlite:/// URL, absolute; None for other URLs and :memory:."""
    if not url.startswith("sqlite:///") or url[len("sqlite:///"):] in ("", ":memory:"):
        return None
    return Path(url[len("sqlite:///"):]).absolute()


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_dev, stat.st_ino


def _what_is_gone(path: Path, opened: tuple[Any, Any]) -> str | None:
    """What became of the storage file `path` since it was opened (`opened`: the identities of
    it and its folder), by inode (a trial's folder made again recreates the output folder),
    else None."""
    now = (_identity(path), _identity(path.parent))
    if now[1] != opened[1]:
        return f"the study storage {path} is gone: its folder {path.parent} was deleted"
    if now[0] != opened[0]:
        return f"the study storage {path} was deleted or replaced"
    return None


def _watch_for_deletion(engine: Any, url: str) -> None:
    """A SQLite file deleted under a running command (its output folder removed) fails the next
    write as "readonly database" or "unable to open": not a storage that stopped answering, whose
    records are kept. Each error of this engine is checked against the file (and folder) opened
    and marked with what is gone (see `storage_lost`)."""
    from sqlalchemy import event

    database = _sqlite_path(url)
    if database is None:
        return
    opened = (_identity(database), _identity(database.parent))

    @event.listens_for(engine, "handle_error")
    def _mark_gone(context: Any) -> None:
        what = _what_is_gone(database, opened)
        if what is not None and context.sqlalchemy_exception is not None:  # None: not wrapped
            setattr(context.sqlalchemy_exception, GONE, what)


class StorageGone(Exception):
    """The journal file of the study storage was deleted or replaced under this command."""


class _WatchedJournal(JournalFileBackend):
    """A journal file backend that refuses to read or write once its file was deleted or
    replaced: Optuna's would append to a new empty file and read it from the old offsets
    (JSONDecodeError, or a run waiting without end for trials the new file never names)."""

    def __init__(self, path: Path) -> None:
        super().__init__(str(path))  # creates the file where it is missing
        self._watched = path.absolute()
        self._opened = (_identity(self._watched), _identity(self._watched.parent))

    def _check(self) -> None:
        what = _what_is_gone(self._watched, self._opened)
        if what is not None:
            raise StorageGone(what)

    def read_logs(self, log_number_from: int) -> Iterator[dict[str, Any]]:
        self._check()
        yield from super().read_logs(log_number_from)

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        self._check()
        super().append_logs(logs)


class StoppedWhileWaiting(RuntimeError):
    """The storage a worker waited on for its study stopped answering: it recorded nothing."""


def storage_lost(err: BaseException, trains: bool = True) -> str | None:
    """The line for a study storage that stopped answering mid-run (a database server down or
    restarting, a network cut), else None. Optuna raises it as StorageInternalError blaming
    "invalid data in the commit"; the connection error behind it is what the user must see.
    `trains`: the command trains trials (`run`, `worker`); `status` and `report` record none,
    and their line says nothing of trials trained again."""
    gone = storage_gone(err)
    if gone is not None:  # not "kept": what it recorded went with the file
        return f"{gone} while ablate ran; every trial it recorded is lost, this run's included"
    cause = _database_error(err)
    if cause is None:
        return None
    if not trains or isinstance(err, StoppedWhileWaiting):
        return (f"the study storage stopped answering ({first_line(cause)}); nothing was "
                "changed: run the same command again once it answers")
    return (f"the study storage stopped answering ({first_line(cause)}); what it "
            "recorded is kept and a trial it could not record trains again")


def storage_gone(err: BaseException) -> str | None:
    """What is gone ("the study storage PATH is gone: ...") where `err` came from a SQLite or
    journal file deleted under this command, else None."""
    for seen in error_chain(err, limit=None):
        if isinstance(seen, StorageGone):
            return str(seen)
        if getattr(seen, GONE, None) is not None:  # SQLAlchemy's error, marked by the engine
            return getattr(seen, GONE)
    return None


def _database_error(err: BaseException, kind: str = "OperationalError") -> BaseException | None:
    """The database's own error behind `err`, which Optuna wraps in a StorageInternalError
    blaming "invalid data in the commit" and so hides, else None. `kind` is the SQLAlchemy class
    looked for: OperationalError (the connection failed, the database is locked) or DBAPIError
    (any error of the driver: a role that may not read Optuna's tables gets psycopg's
    "permission denied for table ...")."""
    if "sqlalchemy" not in sys.modules:  # no database was opened
        return None
    import sqlalchemy.exc

    wrapper = getattr(sqlalchemy.exc, kind)
    for seen in error_chain(err, limit=None):
        if isinstance(seen, wrapper):
            return seen.orig if seen.orig is not None else seen
    return None


@contextlib.contextmanager
def _creation_lock(url: str) -> Iterator[None]:
    """Optuna creates a new SQLite file's tables without IF NOT EXISTS: two processes opening it
    at once (a run and its status, a run and a worker) failed with "table studies already
    exists". They take turns, on a lock file beside the database."""
    database = Path(url[len("sqlite:///"):]) if url.startswith("sqlite:///") else None
    if database is None or database.name == ":memory:" or not database.parent.is_dir():
        yield
        return
    lock = database.with_name(database.name + ".lock")
    had_lock = lock.exists()
    if database.is_file() and not _can_open(lock):
        # A study read in a folder this user may not write in (a colleague's, on a shared
        # machine): `status` and `report` read it; its tables exist, so nothing is created.
        yield
        return
    with file_lock(lock):
        try:
            yield
        except BaseException:
            # A storage refused (a data file given as the database: "file is not a database")
            # leaves nothing beside the file that was not there: the lock made for it goes,
            # removed while held (a process waiting for it then locks the path anew).
            if not had_lock:
                with contextlib.suppress(OSError):
                    lock.unlink()
            raise


def _can_open(lock: Path) -> bool:
    """Whether this process may write the lock file: not in a folder another user owns, nor on
    a file system mounted read-only (a backup, a finished study's disk)."""
    try:
        lock.open("a").close()
    except PermissionError:
        return False
    except OSError as err:
        if err.errno == errno.EROFS:
            return False
        raise
    return True


def _begin_immediate(engine: Any) -> None:
    """Make each SQLite transaction take the write lock when it begins.

    Python's sqlite3 begins a transaction only at the first write, so a claim's read of WAITING
    and its write of RUNNING are not one step: two workers both read WAITING, both write, and
    both train the trial (19 of 60 simultaneous claims in a probe). With BEGIN IMMEDIATE the
    second waits for the first to commit, then reads RUNNING. (SQLAlchemy's recipe for pysqlite.)"""
    from sqlalchemy import event

    @event.listens_for(engine, "connect")
    def _no_implicit_begin(dbapi_connection: Any, record: Any) -> None:
        dbapi_connection.isolation_level = None

    @event.listens_for(engine, "begin")
    def _begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    engine.dispose()  # connections made before the listeners are not reused


def open_study(spec: ExperimentSpec, create: bool = True,
               writes: bool | None = None) -> optuna.Study:
    """Open (or create) the study; an unusable storage URL is bad input. `writes`: the command
    records trials in it (by default where it may create it; `worker` joins one it does not)."""
    url = spec.experiment.storage
    never_run = StudyNotFound(
        f"no study {spec.name!r} in {shown_storage(url)} yet; run `{spec.command('run')}` first")
    try:
        if url.startswith("sqlite:///"):
            database = Path(url[len("sqlite:///"):])
            if not create and not database.exists():
                _refuse_uncreatable(url, database.parent)
                raise never_run
            database.parent.mkdir(parents=True, exist_ok=True)
            if (create if writes is None else writes) and database.is_file():
                # A folder this user may not write in (made read-only after the study ran):
                # SQLite's first write, once the data has loaded, would fail to make its journal.
                _refuse_uncreatable(url, database.parent,
                                    "SQLite makes its journal beside the database")
        if url.startswith(JOURNAL_PREFIX) and not create:
            if not _journal_path(url).exists():
                _refuse_uncreatable(url, _journal_path(url).parent)
                raise never_run
        storage = make_storage(url, spec.experiment.heartbeat)
        search: dict[str, Any] = {}
        if spec.search is not None:
            from .search import make_pruner, make_sampler

            search = {"sampler": make_sampler(spec.search, seed=spec.experiment.seeds[0]),
                      "pruner": make_pruner(spec.search)}
        if not create:
            return optuna.load_study(study_name=spec.name, storage=storage, **search)
        with quiet_optuna():  # its "Using an existing study" line: the caller says what matters
            return optuna.create_study(study_name=spec.name, storage=storage,
                                       direction=spec.experiment.direction, load_if_exists=True,
                                       **search)
    except StudyNotFound:
        raise
    except AblateInputError as err:
        raise _storage_blamed(spec, err) from None
    except KeyError:  # load_study: no study of that name in the storage
        raise never_run from None
    except Exception as err:  # bad URL, missing driver, unreachable server, unwritable folder
        if "database is locked" in str(_database_error(err) or ""):
            # Another program holds SQLite's lock longer than the 60 s waited for it: the storage
            # does not answer (exit 1, as when it stops mid-run), the file is not at fault.
            raise
        raise _storage_blamed(spec, _unusable(url, err)) from None


def password_hidden(text: str) -> str:
    """A --set that holds a storage URL, its password as *** (as shown_storage shows the URL)."""
    return password_parameter_hidden(re.sub(r"([\w+]+://[^:/@\s]*:)[^@\s]+@", r"\1***@", text))


def _storage_blamed(spec: ExperimentSpec, err: AblateInputError) -> AblateInputError:
    """A storage that cannot be opened, blamed on whoever gave it: the --set of
    experiment.storage, the file's storage, or (for the default storage, study.db in the output
    folder) the --set or file that gave output_dir or the study name."""
    import tomllib

    given = last_set(spec.sets, "experiment.storage")
    if given:
        return AblateInputError(f"{set_shown(password_hidden(given))}: {err}")
    if "storage" in tomllib.loads(spec.text).get("experiment", {}):
        return AblateInputError(f"{spec.path}: {err}")
    shown = f"[experiment] storage = {shown_storage(spec.experiment.storage)!r}"
    text = str(err).replace(shown, f"{shown} (the default: study.db in output_dir)", 1)
    return AblateInputError(
        f"{named_by(spec.path, spec.sets, 'experiment.output_dir', 'experiment.name')}: {text}")


def wait_for_study(spec: ExperimentSpec, echo: Callable[[str], None], stop: threading.Event,
                   limit: float | None = None) -> optuna.Study | None:
    """`ablate worker` started before its `run` has made the study and queued trials in it (a job
    scheduler, or a user on several machines, starts them all at once): wait, saying so in one
    line, rather than refuse or find an empty study and stop. A study with no trial yet is one
    whose `run` still plans: on a journal shared by machines with their own output folders no
    lock says so. `limit`: seconds, after which a study still missing is refused as before and an
    empty one joined. None when `stop` is set while waiting (--graceful's Ctrl+C)."""
    deadline = None if limit is None else time.monotonic() + limit
    said = answered = found = False
    while True:
        try:
            # Whether this worker may write beside the database: checked once it is there (the
            # check writes and removes a file), not at every poll while the run queues.
            study: optuna.Study | None = open_study(spec, create=False, writes=not found)
        except StudyNotFound as missing:
            if deadline is not None and time.monotonic() >= deadline:
                waited = f" (this worker waited {limit:g} s for it: --wait)" if limit else ""
                raise StudyNotFound(f"{missing}{waited}") from None
            study = None
        except AblateInputError as err:
            # A storage that answered a moment ago (a server restarting) is not a bad URL: it
            # stopped answering, which ends the command as it does a trial's (exit 1).
            if answered and storage_lost(err) is not None:
                raise StoppedWhileWaiting(str(err)) from err
            raise
        answered, found = True, study is not None
        if study is not None and (study.get_trials(deepcopy=False)
                                  or (deadline is not None and time.monotonic() >= deadline)):
            return study
        if not said:
            where = f"study {spec.name!r} in {shown_storage(spec.experiment.storage)}"
            echo(f"waiting for `{spec.command('run')}` to "
                 + (f"queue trials in {where}" if study is not None else f"create {where}")
                 + " (Ctrl+C to stop)")
            said = True
        left = STUDY_POLL_SECONDS if deadline is None else deadline - time.monotonic()
        if stop.wait(max(0.0, min(STUDY_POLL_SECONDS, left))):
            return None


def uncreatable(folder: Path) -> str | None:
    """Why `folder` could not be made with its parents (or, where it exists, written in), or None;
    leaves nothing on disk. What `run --dry-run` checks in place of the folders `run` makes."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return "Not a directory" if existing != folder else "File exists"
    try:  # a folder made there (or, where it exists, a file written in it)
        if existing == folder:
            handle, name = tempfile.mkstemp(dir=folder)
            os.close(handle)
            os.unlink(name)
        else:
            os.rmdir(tempfile.mkdtemp(dir=existing))
    except OSError as err:
        return err.strerror or str(err)
    return None


def _refuse_uncreatable(url: str, folder: Path, why: str = "") -> None:
    """A storage whose folder cannot be made: what `run` would refuse, `status` or a dry run
    (which open the study without creating it) refuse too, rather than say it never ran.
    `why`: what is to be made there, said after the problem."""
    problem = uncreatable(folder)
    if problem:
        raise AblateInputError(f"[experiment] storage = {url!r} cannot be opened: {folder}: "
                               f"{problem}" + (f" ({why})" if why else ""))


DRIVERS = {"postgresql": "pip install \"ablate[postgres]\" (psycopg 3)",
           "mysql": "pip install pymysql, and a mysql+pymysql:// URL"}


def _unusable(url: str, err: Exception) -> AblateInputError:
    reason = first_line(_database_error(err) or _database_error(err, "DBAPIError") or err)
    scheme = url.split(":", 1)[0].split("+", 1)[0]
    # Optuna's words for a missing driver; SQLAlchemy's own (`run`'s PostgreSQL lock) an ImportError
    driver = url.split(":", 1)[0].partition("+")[2]
    if (("DB access module" in reason or isinstance(err, ImportError)) and scheme == "postgresql"
            and driver and driver != "psycopg"):
        # A URL from another tool (postgresql+psycopg2://): ablate's extra installs psycopg 3,
        # which that URL does not use.
        plain = shown_storage("postgresql" + url[len(f"postgresql+{driver}"):])
        reason = (f"{reason.rstrip('.')}; this URL asks for the {driver} driver: pip install "
                  f"{driver}, or use {plain!r} (psycopg 3: {DRIVERS[scheme].split(' (')[0]})")
    elif ("DB access module" in reason or isinstance(err, ImportError)) and scheme in DRIVERS:
        reason += ("" if reason.endswith(".") else ".") + f" For {scheme}: {DRIVERS[scheme]}"
    if url.startswith(("postgres://", "postgres+")):  # libpq's and Heroku's name; SQLAlchemy's is postgresql
        reason += f"; did you mean {shown_storage('postgresql' + url[len('postgres'):])!r}?"
    return AblateInputError(f"[experiment] storage = {shown_storage(url)!r} cannot be opened: {reason}")


def check_none_running(study: optuna.Study) -> None:
    """`--force-new` deletes the study under the processes training it (they would crash and
    lose their trial): refused while a trial runs in a live process. Without heartbeats (a
    journal) a RUNNING trial may be long dead, and is not taken as alive."""
    if not has_heartbeats(study):
        return
    gone = stale_numbers(study)
    alive = [t for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
             if t.number not in gone]
    if alive:
        key = alive[0].user_attrs.get(records.KEY, f"#{alive[0].number}")
        worker = alive[0].user_attrs.get(records.WORKER)
        raise AblateInputError(
            f"--force-new: study {study.study_name!r} has {len(alive)} trial(s) running in another "
            f"process ({key}" + (f" in {worker}" if worker else "") + "); deleting it would "
            "crash them and lose their trials: stop them first, or wait until they finish (a "
            "process already killed counts as running until its heartbeats have been silent for "
            f"{stale_after_s(study):g} s)")


def stale_after_s(study: optuna.Study) -> float:
    """Seconds of silence after which a running trial's process counts as gone (on another
    machine; this one's are known at once): a refusal for a running trial says it, since the
    process may be gone already and the same command then goes ahead."""
    return study._storage.get_heartbeat_interval() * STALE_AFTER_HEARTBEATS


def delete_study(spec: ExperimentSpec) -> int | None:
    """`run --force-new`: delete the study of this name from the storage; returns how many
    trials it held, or None when there was none."""
    try:
        study = open_study(spec, create=False)
    except StudyNotFound:
        return None
    count = len(study.get_trials(deepcopy=False))
    optuna.delete_study(study_name=spec.name, storage=study._storage)
    return count


@contextlib.contextmanager
def planning_lock(spec: ExperimentSpec, echo: Callable[[str], None]) -> Iterator[None]:
    """Held by `ablate run` from reading the study's trials to queueing its own: two runs of one
    study at once would each queue every trial the other had not queued yet, and train it twice.
    A lock file in the output folder, which the runs of a study on one machine share, and on
    PostgreSQL a lock in the database, which runs on every machine share."""
    spec.output_dir.mkdir(parents=True, exist_ok=True)

    def waiting() -> None:
        echo("waiting for another `ablate run` of this study to queue its trials")

    with file_lock(spec.output_dir / PLANNING_LOCK, waiting) as lock, \
            _database_lock(spec.experiment.storage, spec.name, waiting):
        # Who plans (`host:pid`, as a trial names the process training it), for `status` and
        # `report` while a new study is not made yet (see `planning_run`); emptied before the
        # lock is let go.
        import socket

        holder = {"process": f"{socket.gethostname()}:{os.getpid()}", "since": time.time()}
        _write_holder(lock, json.dumps(holder))
        try:
            yield
        finally:
            _write_holder(lock, "")


def _write_holder(lock: IO[str], text: str) -> None:
    """The lock file's text, written through the locked file (its path may have been removed);
    a file that cannot be written (a full disk) only names no one."""
    with contextlib.suppress(OSError):
        lock.truncate(0)
        lock.write(text)
        lock.flush()


@dataclass(frozen=True)
class PlanningRun:
    """An `ablate run` holding a study's planning lock: `process` its `host:pid`, `since` when it
    took the lock (seconds since the epoch); either None where its lock file does not say."""

    process: str | None
    since: float | None

    def named(self) -> str:
        """`host:pid, since 2025-01-31 14:03:12`, for a line that names it."""
        when = "" if self.since is None else ", since " + time.strftime(
            "%Y-%m-%d %H:%M:%S", time.localtime(self.since))
        return (self.process or "another process") + when

    def to_json(self) -> dict[str, str | None]:
        since = None if self.since is None else datetime.datetime.fromtimestamp(
            self.since).astimezone().isoformat(timespec="seconds")
        return {"process": self.process, "since": since}


def planning_run(spec: ExperimentSpec) -> PlanningRun | None:
    """The `ablate run` of this study that plans now, holding its planning lock (on this machine,
    or on the file system its output folder is shared on), or None: what `status` and `report`
    say of a study not made yet, whose first run is still loading and checking its data. The
    lock is tried only where a holder wrote itself in the file: trying takes it for an instant,
    and a run starting at that instant would say it waits for another."""
    try:
        with (spec.output_dir / PLANNING_LOCK).open() as lock:
            if not lock.read().strip() or not held_by_another(lock):
                return None  # none planning, or one killed while it planned left its line
            lock.seek(0)
            text = lock.read()
    except OSError:  # no lock file (no run made the output folder), or none we may read
        return None
    try:
        holder = json.loads(text)
    except ValueError:
        holder = None
    if not isinstance(holder, dict):  # read while it was written: a run all the same
        return PlanningRun(None, None)
    process, since = holder.get("process"), holder.get("since")
    return PlanningRun(process if isinstance(process, str) else None,
                       float(since) if isinstance(since, (int, float)) else None)


@contextlib.contextmanager
def _database_lock(url: str, study_name: str, on_wait: Callable[[], None]) -> Iterator[None]:
    """PostgreSQL's advisory lock on a key made from the study's name, held by this connection
    (and released by the server if the process dies). Other storages: nothing to hold."""
    if not url.startswith("postgres"):
        yield
        return
    import hashlib

    import sqlalchemy

    key = int.from_bytes(hashlib.blake2b(f"ablate:{study_name}".encode(), digest_size=8).digest(),
                         "big", signed=True)
    try:  # the first contact with the server: a wrong URL or no server is bad input
        engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
        connection = engine.connect()
    except Exception as err:
        raise _unusable(url, err) from None
    try:
        with connection:
            sql = sqlalchemy.text
            if not connection.execute(sql("SELECT pg_try_advisory_lock(:key)"), {"key": key}).scalar():
                on_wait()
                connection.execute(sql("SELECT pg_advisory_lock(:key)"), {"key": key})
            try:
                yield
            finally:
                connection.execute(sql("SELECT pg_advisory_unlock(:key)"), {"key": key})
    finally:
        engine.dispose()


def enqueue(study: optuna.Study, trials: list[TrialSpec]) -> None:
    """Queue each trial; a search trial tried again keeps its parameters (see `enqueue_again`)."""
    for trial in trials:
        params = dict(trial.overrides) if records.is_search_variant(trial.variant) else {}
        study.enqueue_trial(params, user_attrs=records.trial_attrs(trial))


def _is_search(frozen: optuna.trial.FrozenTrial) -> bool:
    return records.is_search_variant(frozen.user_attrs.get(records.VARIANT))


def enqueue_again(study: optuna.Study, frozen: optuna.trial.FrozenTrial) -> None:
    """Queue a trial once more under its own name. A search trial keeps its parameters: they are
    the trial's fixed params, recorded again when it is claimed (see `sweep._runner._work`), so that the
    sampler and the importances see the retry like any other search trial."""
    params = dict(frozen.user_attrs.get(records.OVERRIDES, {})) if _is_search(frozen) else {}
    study.enqueue_trial(params, user_attrs={k: frozen.user_attrs[k] for k in records.IDENTITY})


def claim(study: optuna.Study, wanted: set[str] | None, search: bool = False) -> optuna.Trial | None:
    """Move the oldest waiting trial (of `wanted` keys, or any of ours; with `search`, any search
    trial too) to RUNNING; None when there is none left. Never creates a trial, unlike
    study.ask()."""
    storage = study._storage
    beats = optuna.storages._heartbeat.is_heartbeat_enabled(storage)
    waiting = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
    for frozen in sorted(waiting, key=lambda t: t.number):
        key = frozen.user_attrs.get(records.KEY)
        searched = search and _is_search(frozen)
        if not records.is_ours(frozen.user_attrs) \
                or (wanted is not None and key not in wanted and not searched):
            continue  # one enqueued by hand (not ours), or another worker's to take
        if beats:
            # Beat before the trial turns RUNNING: stale detection only sees RUNNING trials that
            # have a heartbeat, so a worker killed between its claim and its first beat would
            # otherwise leave the trial RUNNING for good (tests/test_resilience.py's kill -9 test
            # hit that window once). A beat on a trial another worker then wins is harmless.
            storage.record_heartbeat(frozen._trial_id)
        if storage.set_trial_state_values(frozen._trial_id, state=TrialState.RUNNING):
            storage.set_trial_user_attr(frozen._trial_id, records.WORKER, records.this_worker())
            return optuna.Trial(study, frozen._trial_id)
    return None


def requeue_stale(study: optuna.Study) -> list[str]:
    """Fail the running trials whose worker died, and queue each again once; returns their keys.
    Only the process whose RUNNING → FAIL update succeeds re-queues, so nothing runs twice."""
    storage = study._storage
    if not optuna.storages._heartbeat.is_heartbeat_enabled(storage):
        return []
    requeued = []
    for trial_id in storage._get_stale_trial_ids(study._study_id):  # what fail_stale_trials uses
        try:
            storage.set_trial_user_attr(trial_id, records.ERROR, STALE_ERROR)
            won = storage.set_trial_state_values(trial_id, state=TrialState.FAIL)
        except optuna.exceptions.UpdateFinishedTrialError:
            won = False
        if not won:
            continue
        frozen = storage.get_trial(trial_id)
        if frozen.user_attrs.get(records.LOCAL_RUNS):  # its process left them running
            from .tracking import end_dead_runs

            end_dead_runs(frozen.user_attrs[records.LOCAL_RUNS], STALE_ERROR)
        if records.is_ours(frozen.user_attrs):
            enqueue_again(study, frozen)
            if _is_search(frozen):
                # The report counts a search's trials by attempt: the retry replaces this one.
                records.supersede(study, [frozen.number])
            requeued.append(frozen.user_attrs[records.KEY])
    return requeued


def stale_numbers(study: optuna.Study) -> set[int]:
    """The RUNNING trials whose process is gone, read only: their heartbeats stopped, or their
    process ran on this machine and has exited (known at once, before the heartbeats tell).
    `status` shows them as such; the next run or worker fails and queues them again."""
    storage = study._storage
    stale: set[int] = set()
    if optuna.storages._heartbeat.is_heartbeat_enabled(storage):
        stale = set(storage._get_stale_trial_ids(study._study_id))
    return {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
            if t._trial_id in stale or _exited_here(t.user_attrs.get(records.WORKER))}


def _pid_here(worker: str | None) -> int | None:
    """The pid of a trial's `host:pid` where that host is this machine; None elsewhere."""
    import socket

    host, _, pid = (worker or "").rpartition(":")
    return int(pid) if host == socket.gethostname() and pid.isdigit() else None


def _exited_here(worker: str | None) -> bool:
    """Whether a trial's `host:pid` names a process of this machine that no longer exists."""
    import os

    pid = _pid_here(worker)
    if pid is None:
        return False
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return True
    except OSError:  # exists, another user's
        return False
    return False


def paused_here(worker: str | None) -> bool:
    """Whether a trial's `host:pid` names a process of this machine that is stopped (Ctrl+Z,
    SIGSTOP): its heartbeats stop as a dead one's do, but it goes on when continued."""
    import psutil

    pid = _pid_here(worker)
    if pid is None:
        return False
    try:
        return psutil.Process(pid).status() == psutil.STATUS_STOPPED
    except psutil.Error:  # gone, or not ours to ask
        return False


def last_heard_s(study: optuna.Study) -> dict[int, float]:
    """Seconds since each RUNNING trial's last heartbeat, by trial number, by the storage's own
    clock (as the stale check reads it: machines whose clocks differ agree); empty without
    heartbeats. One query, whatever the number of trials."""
    storage = study._storage
    if not optuna.storages._heartbeat.is_heartbeat_enabled(storage):
        return {}
    import sqlalchemy
    from optuna.storages._rdb import models
    from optuna.storages._rdb.storage import _create_scoped_session

    backend = getattr(storage, "_backend", storage)  # below optuna.load_study's cache
    with _create_scoped_session(backend.scoped_session) as session:
        now = session.execute(sqlalchemy.func.now()).scalar_one().replace(tzinfo=None)
        beats = (session.query(models.TrialModel.number, models.TrialHeartbeatModel.heartbeat)
                 .join(models.TrialHeartbeatModel,
                       models.TrialHeartbeatModel.trial_id == models.TrialModel.trial_id)
                 .filter(models.TrialModel.study_id == study._study_id,
                         models.TrialModel.state == TrialState.RUNNING)
                 .all())
    return {number: max(0.0, (now - beat.replace(tzinfo=None)).total_seconds())
            for number, beat in beats}


def has_heartbeats(study: optuna.Study) -> bool:
    """False for the journal storage: there a trial whose process died stays RUNNING."""
    return optuna.storages._heartbeat.is_heartbeat_enabled(study._storage)


def left_to_train(study: optuna.Study) -> set[str]:
    """The keys of the trials an earlier run left for the next to train: queued (an interrupted
    run's), or RUNNING in a process that is gone, which a run queues again (with heartbeats)."""
    gone = stale_numbers(study) if has_heartbeats(study) else set()
    return {t.user_attrs[records.KEY]
            for t in study.get_trials(deepcopy=False, states=(TrialState.WAITING, TrialState.RUNNING))
            if records.is_ours(t.user_attrs) and (t.state == TrialState.WAITING or t.number in gone)}


ABANDONED_ERROR = "abandoned: its process was gone when `run --rerun` queued it again"


REPLACED_QUEUED_ERROR = ("replaced: queued with other changes than the file now says; "
                         "`run --rerun` queued the file's instead")


def fail_abandoned(study: optuna.Study, numbers: list[int]) -> None:
    """`--rerun` of a trial left RUNNING in a storage without heartbeats, or queued with other
    changes than the file's: record it as failed, so that no process waits for it or trains it."""
    storage = study._storage
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING)):
        if trial.number in numbers:
            error = ABANDONED_ERROR if trial.state == TrialState.RUNNING else REPLACED_QUEUED_ERROR
            storage.set_trial_user_attr(trial._trial_id, records.ERROR, error)
            storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL)


class TrialTakenOver(Exception):
    """This process's trial was failed as stale and queued again by another process (this one
    sent no heartbeat for 3 intervals: suspended, or too busy): its attempt is not stored."""


class Heartbeat:
    """Records a running trial's heartbeat every interval, in a daemon thread, and sets `lost`
    once the trial is no longer RUNNING: another process took it over as stale. Once training
    follows (`follow`), a beat also stores the step it has reached, for `status`."""

    def __init__(self, study: optuna.Study, trial: optuna.Trial) -> None:
        self.storage = study._storage
        self.trial_id = trial._trial_id
        self.interval = (self.storage.get_heartbeat_interval()
                         if optuna.storages._heartbeat.is_heartbeat_enabled(self.storage) else None)
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._training: Any = None  # the Trainer's state, whose steps the beats read
        self._stored: dict[str, int] | None = None  # the progress last stored

    def follow(self, training: Any) -> None:
        """Training began (again, after an out-of-memory back-off) with the Trainer's `state`: the
        beats read its step in their own thread, so that the training loop does nothing more per
        step for `status` to show it (no storage write, no wait, no device sync)."""
        self._training = training

    def _store_progress(self) -> None:
        """The step training has reached, where it changed since the last beat stored it."""
        if self._training is None:
            return
        progress = {"step": int(self._training.global_step),
                    "max_steps": int(self._training.max_steps)}
        if progress != self._stored:
            self.storage.set_trial_user_attr(self.trial_id, records.PROGRESS, progress)
            self._stored = progress

    def __enter__(self) -> Heartbeat:
        if self.interval:
            self.storage.record_heartbeat(self.trial_id)
            self._thread = threading.Thread(target=self._beat, name="ablate-heartbeat", daemon=True)
            self._thread.start()
        return self

    def _beat(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                if self.storage.get_trial(self.trial_id).state != TrialState.RUNNING:
                    self.lost.set()  # failed as stale by another process: no more beats
                    return
                self.storage.record_heartbeat(self.trial_id)
                self._store_progress()
            except Exception:  # a storage hiccup must not kill training; the next beat retries
                pass

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
