"""`ablate dashboard`: serve a study's SwanLab runs (mode "local") with `swanlab watch`, offline.

The SwanLab dashboard (the `swanboard` package, `swanlab[dashboard]`, a dependency) reads the
runs database ``<output_dir>/swanlog/runs.swanlab`` that every trial of a ``mode = "local"``
study writes. This module checks the inputs, starts ``swanlab watch`` on 127.0.0.1, waits until
its API answers, prints the address and serves until Ctrl+C, then stops the server.
"""

from __future__ import annotations

import collections
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import webbrowser
from pathlib import Path
from typing import Any

from . import tracking as _tracking
from .errors import EXIT_OK, EXIT_TRIALS_FAILED, AblateInputError
from .interrupts import stop_with_parent

HOST = "127.0.0.1"
DEFAULT_PORT = 5092  # swanlab watch's own default
STARTUP_TIMEOUT_S = 60.0
CLOUD_URL = "https://swanlab.cn"


def swanlog_dir(spec: Any) -> Path:
    """Where the study's local SwanLab runs are: the tracker writes them there."""
    return spec.output_dir / "swanlog"


def check_dashboard_inputs(spec: Any, port: int) -> Path:
    """The swanlog folder to serve, or AblateInputError with one line saying what to do."""
    from .config import named_by

    tracking = spec.tracking

    def said(key: str) -> str:  # who said it: a --set, else the file
        return named_by(spec.path, spec.sets, f"tracking.{key}")

    file = said("backend")
    if tracking.backend != "swanlab":
        raise AblateInputError(
            f'{file}: [tracking] backend = "{tracking.backend}" logs no runs; the dashboard shows '
            'SwanLab runs logged with backend = "swanlab" and mode = "local"')
    file = said("mode")
    if tracking.mode == "online":
        offline = offline_runs(spec)
        fell_back = (f", but {len(offline)} SwanLab run(s) could not log online and logged offline: "
                     f"upload them with `swanlab sync {' '.join(offline)}`" if offline else "")
        raise AblateInputError(
            f'{file}: [tracking] mode = "online" logs to SwanLab cloud: open {CLOUD_URL} '
            f'(project {tracking.project!r}){fell_back}; the local dashboard shows runs of '
            'mode = "local"')
    if tracking.mode != "local":
        hint = (f"; sync them to the cloud with `swanlab sync {swanlog_dir(spec)}/run-*`"
                if tracking.mode == "offline" else "")
        raise AblateInputError(
            f'{file}: [tracking] mode = "{tracking.mode}": the local dashboard shows runs logged '
            f'with mode = "local"{hint}')
    if not _tracking.local_store_installed():  # first: without it no run was recorded in the database
        raise AblateInputError(f"the SwanLab dashboard cannot start: {_tracking.LOCAL_STORE_MISSING}")
    folder = swanlog_dir(spec)
    if not (folder / "runs.swanlab").is_file():
        raise AblateInputError(
            f"no SwanLab runs under {folder} yet: run the study first (`{spec.command('run')}`)")
    if _on_read_only_file_system(folder):
        raise AblateInputError(
            f"{folder} is on a read-only file system, where the SwanLab dashboard cannot open its "
            f"runs database (it writes to it): {_serve_a_copy(spec, folder, port)}")
    if not port_is_free(port):
        raise AblateInputError(f"port {port} is in use on {HOST}: choose another with --port N")
    return folder


def _serve_a_copy(spec: Any, folder: Path, port: int) -> str:
    """What to do where the server cannot write to the folder's runs database."""
    copy = Path(tempfile.gettempdir()) / f"swanlog-{spec.name}"
    serve = shlex.join(["cp", "-r", str(folder), str(copy)]) + " && " + shlex.join(
        ["swanlab", *watch_arguments(copy, port)])
    return f"copy the folder somewhere writable and serve the copy: `{serve}`"


def _on_read_only_file_system(folder: Path) -> bool:
    """The folder's file system is mounted read-only (a backup, a finished study's disk): swanboard
    opens its database for writing and ended in `unable to open database file`. Not a folder this
    user merely lacks permission on: os.statvfs's flag says which (none on Windows)."""
    statvfs = getattr(os, "statvfs", None)
    try:
        return statvfs is not None and bool(statvfs(folder).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def offline_runs(spec: Any) -> list[str]:
    """The run folders of the study's trials that were asked for online but logged offline (no
    SwanLab key, no network), as stored with each trial (each out-of-memory retry's run too); none
    when the study cannot be read."""
    from .queue import open_study
    from .records import TRACKED_OFFLINE

    try:
        study = open_study(spec, create=False)
    except AblateInputError:
        return []
    folders = []
    for trial in study.get_trials(deepcopy=False):
        kept = trial.user_attrs.get(TRACKED_OFFLINE) or []
        folders += [kept] if isinstance(kept, str) else kept  # a string: stored before a retry's run was kept
    return list(dict.fromkeys(f for f in folders if f and Path(f).is_dir()))


def port_is_free(port: int, host: str = HOST) -> bool:
    """True when nothing listens on the port (swanlab watch would silently take another one).
    Bound as the server binds, with SO_REUSEADDR: the connections of a dashboard just stopped
    (TIME-WAIT, a minute) do not keep it from serving there again; a listening socket does."""
    for address in (host, "0.0.0.0"):  # swanlab checks 0.0.0.0, then binds `host`
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((address, port))
            except OSError:
                return False
    return True


# `python -m swanlab`, except that `swanlab watch` serves on the port it is given. Its own check
# binds 0.0.0.0 without SO_REUSEADDR and, failing, serves on another port: for a minute after a
# dashboard stopped (its connections in TIME-WAIT) it would not serve on the same port again.
# port_is_free has checked the port as the server binds it; a real clash is the server's
# "address already in use", which wait_ready reports.
_WATCH = """\
import runpy
try:  # macOS: stopped when ablate is, kill -9 included (Linux's kernel does it: stop_with_parent)
    from ablation.interrupts import watch_parent
    watch_parent()
except ImportError:
    pass
try:
    import swanlab.deprecated.local as local
    local._get_free_port = lambda address="0.0.0.0", default_port=5092: default_port
except ImportError:
    pass
runpy.run_module("swanlab", run_name="__main__", alter_sys=True)
"""


# SQLite's words where the server's first write (its `journal_mode = wal`) is refused.
_READ_ONLY_DATABASE = "attempt to write a readonly database"


def watch_arguments(folder: Path, port: int) -> list[str]:
    """`swanlab ...`: serve the folder on HOST:port."""
    return ["watch", str(folder), "-h", HOST, "-p", str(port)]


def serve_dashboard(spec: Any, port: int = DEFAULT_PORT, open_browser: bool = True) -> int:
    """Serve until Ctrl+C (or SIGTERM): exit code 0; 1 when the server stops by itself."""
    folder = check_dashboard_inputs(spec, port)
    url = f"http://{HOST}:{port}"
    server = _Server(watch_arguments(folder, port))
    # Ctrl+C, and SIGINT/SIGTERM from other programs (SIGINT is ignored in background jobs)
    previous = {sig: signal.signal(sig, _raise_interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.wait_ready(url, port, cannot_write=(  # a folder this user cannot write in (chmod)
            f"the SwanLab dashboard cannot write to its runs database {folder / 'runs.swanlab'} "
            f"(this user cannot write in {folder} or that file): {_serve_a_copy(spec, folder, port)}"))
        print(f"dashboard: {url}", flush=True)
        print(f"  {_count_runs(folder)} SwanLab run(s) of project {spec.tracking.project!r} from "
              f"{folder}; Ctrl+C to stop", flush=True)
        if open_browser and _has_display():
            webbrowser.open(url)
        code = server.process.wait()
        print(f"ablate: the dashboard server stopped (exit code {code}): "
              f"{server.last_lines() or 'no output'}", file=sys.stderr)
        return EXIT_TRIALS_FAILED
    except KeyboardInterrupt:
        print("\nablate: dashboard stopped", file=sys.stderr)
        return EXIT_OK
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        server.stop()


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _has_display() -> bool:
    """A browser can open: not on a headless Linux server (where a text browser would take over)."""
    return sys.platform in ("darwin", "win32") or bool(
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def _count_runs(folder: Path) -> int | str:
    import sqlite3

    try:
        with sqlite3.connect(f"file:{folder / 'runs.swanlab'}?mode=ro", uri=True) as db:
            return db.execute("select count(*) from experiment").fetchone()[0]
    except sqlite3.Error:
        return "?"


class _Server:
    """`swanlab watch` as a child process, stopped with us (kill -9 included); its output is kept
    (the last lines) for errors."""

    def __init__(self, arguments: list[str]) -> None:
        self.command = ["swanlab", *arguments]  # as errors show it
        self._lines: collections.deque[str] = collections.deque(maxlen=20)
        command = [sys.executable, "-c", _WATCH, *arguments]
        self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True, errors="replace",
                                        preexec_fn=stop_with_parent)  # no server left behind
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.strip():
                self._lines.append(line.strip())

    def last_lines(self) -> str:
        return " | ".join(self._lines)

    def wait_ready(self, url: str, port: int, cannot_write: str) -> None:
        """Until the API answers; one line and exit 2 when the server cannot start (cannot_write
        where it could not write to its database)."""
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            if any("occupied" in line or "already in use" in line for line in self._lines):
                raise AblateInputError(f"port {port} is in use on {HOST}: choose another with --port N")
            if self.process.poll() is not None:
                self._reader.join(timeout=2)
                if any(_READ_ONLY_DATABASE in line for line in self._lines):
                    raise AblateInputError(cannot_write)
                raise AblateInputError(f"`{shlex.join(self.command)}` exited with code "
                                       f"{self.process.returncode}: {self.last_lines() or 'no output'}")
            try:
                with urllib.request.urlopen(f"{url}/api/v1/project", timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.2)
        raise AblateInputError(f"the dashboard did not answer on {url} within {STARTUP_TIMEOUT_S:.0f} s: "
                               f"{self.last_lines() or 'no output'}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._reader.join(timeout=2)
