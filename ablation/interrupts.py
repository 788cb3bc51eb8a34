"""Ctrl+C and SIGTERM while `ablate run` or `ablate worker` trains.

Both interrupt at once (as KeyboardInterrupt), so that the running trial is recorded as
interrupted instead of being left RUNNING by a process that is gone. With --graceful the first
Ctrl+C only asks the loop to stop after the running trial.

Some storage writes must not be cut in half: a claim and the attributes that make the trial this
process's, a finished trial's result and its state. Inside `held()` an interrupt waits for the
block's end and is raised there.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

_depth = 0  # how many held() blocks the main thread is in (signal handlers run there)
_pending = False  # an interrupt came inside one
_interrupted = False  # one came at all (until `handled` ends): see check()
# What --graceful's first Ctrl+C says it does; `only_waiting` replaces it where nothing runs.
_graceful_line = "stopping after the running trial (Ctrl+C again to stop now)"


@contextlib.contextmanager
def held() -> Iterator[None]:
    """An interrupt that comes inside this block is raised when the block ends (only while
    `handled` has installed the handlers; elsewhere Python's own Ctrl+C handler applies)."""
    global _depth, _pending
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        if not _depth and _pending:
            _pending = False
            raise KeyboardInterrupt


@contextlib.contextmanager
def only_waiting(line: str) -> Iterator[None]:
    """Inside this block the process only waits (a worker for its `run` to make the study, or
    for another run's planning): --graceful's first Ctrl+C says `line` (what the wait does on
    its event), not that a running trial is let finish (there is none)."""
    global _graceful_line
    previous, _graceful_line = _graceful_line, line
    try:
        yield
    finally:
        _graceful_line = previous


def stopped_trial(err: BaseException, key: str) -> None:
    """Note on the interrupt `err` that it stopped this process's trial `key`, now recorded as
    interrupted: a worker's line then says what trains it again (a worker claims only queued
    trials)."""
    err.ablate_trial_stopped = key  # type: ignore[attr-defined]


def trial_stopped(err: BaseException) -> str | None:
    """The key of the trial the interrupt `err` stopped and recorded as interrupted, if any."""
    return getattr(err, "ablate_trial_stopped", None)


class WaitedOnGone(KeyboardInterrupt):
    """Ctrl+C while a run waited on trials whose process is gone, in a storage without
    heartbeats: the same command would wait for them again; `command` (their --rerun) moves them."""

    def __init__(self, command: str) -> None:
        super().__init__()
        self.command = command


STARTED_BY_RUN = "ABLATE_STARTED_BY_RUN"  # in the environment of the workers `run` starts


def started_by_run() -> bool:
    """A worker process of `ablate run --workers`: the run speaks for it to the terminal."""
    return os.environ.get(STARTED_BY_RUN) is not None


def _interrupt(signum: int, frame: Any) -> None:
    global _pending, _interrupted
    _interrupted = True
    if signum == signal.SIGTERM:
        # Once: a second SIGTERM (a parent-death signal can come twice) would interrupt the
        # recording of the running trial as interrupted, and leave it RUNNING.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if _depth:
        _pending = True
        return
    raise KeyboardInterrupt


def check() -> None:
    """Raise again an interrupt whose KeyboardInterrupt was lost: raised while the main thread ran
    a `__del__` or a weakref callback, Python prints "Exception ignored" and goes on, and with
    SIGTERM now ignored a worker whose `run` was killed trained the queue on. Called after every
    training and evaluation step and before each claim."""
    if _interrupted and not _depth:
        raise KeyboardInterrupt


@contextlib.contextmanager
def handled(graceful: bool) -> Iterator[threading.Event]:
    """Install the handlers for the block; yields the event --graceful's first Ctrl+C sets.

    SIGTERM (kill, a job scheduler, a parent `ablate run` that died) interrupts at once, as
    Ctrl+C does; with `graceful` the second Ctrl+C does (the trial is then recorded as failed)."""
    global _pending, _interrupted
    stop = threading.Event()

    def ctrl_c(signum: int, frame: Any) -> None:
        if stop.is_set() or not graceful:
            _interrupt(signum, frame)
            return
        stop.set()
        if not started_by_run():  # the run's Ctrl+C reaches its workers too: said once
            print(f"\nablate: {_graceful_line}", file=sys.stderr)

    previous = {number: signal.signal(number, handler)
                for number, handler in ((signal.SIGTERM, _interrupt), (signal.SIGINT, ctrl_c))}
    try:
        yield stop
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        _pending = _interrupted = False


def stop_with_parent() -> None:
    """In a child process (a worker, the dashboard's server), before it starts: SIGTERM when the
    `ablate` process that started it dies (kill -9 included), instead of going on unseen. Linux
    alone (the kernel's parent-death signal): elsewhere the process watches its parent itself
    (`watch_parent`)."""
    if sys.platform.startswith("linux"):
        import ctypes

        PR_SET_PDEATHSIG = 1  # noqa: N806 (the name in <sys/prctl.h>)
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


WATCH_EVERY_S = 0.5


def watch_parent(parent: int | None = None, also: int | None = None) -> None:
    """In a process of ablate's own that another started (a worker of `run --workers`, a
    torchrun process, the dashboard's server): SIGTERM to itself when its parent dies, kill -9
    included (`parent`, where given, is the pid it was started by: one gone before this call is
    seen too), or when the process `also` does (the worker whose torchrun started this one), as
    Linux's kernel sends it there (`stop_with_parent`, which the starter asked for). Elsewhere
    (macOS) no kernel does: a thread looks twice a second."""
    if sys.platform.startswith("linux"):
        return
    import psutil

    parent = os.getppid() if parent is None else parent

    def watch() -> None:
        while os.getppid() == parent and (also is None or psutil.pid_exists(also)):
            time.sleep(WATCH_EVERY_S)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="ablate-watch-parent", daemon=True).start()
