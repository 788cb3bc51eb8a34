"""One trial on several devices: data-parallel training (DDP) in `devices_per_trial` processes.

The worker that claimed the trial stays its owner (it holds the claim and sends the heartbeats);
it writes what the trial needs to a file and starts `torchrun`, whose processes each train the
same recipe on their share of every global batch. Rank 0 alone logs to the tracker and writes the
result, which the owner then stores — so a distributed trial is recorded exactly like any other.

`batch_size` stays the global batch (the same optimization as on one device): each of the N
processes takes batch_size / N examples per step. On CPU the processes use the gloo backend.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
import os
import pickle
import re
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from . import interrupts

PAYLOAD = "distributed_trial.pkl"
RESULT = "result.json"
ERRORS = "error.rank*.json"
OFFLINE = "tracked_offline.json"  # rank 0's runs that fell back offline, whatever the trial's end
LOCAL = "tracked_local.json"  # rank 0's runs in mode local, written as each starts
TRIAL_OWNER = "ABLATE_TRIAL_OWNER"  # the pid of the worker whose trial the processes train
POLL_S = 0.5  # how soon the processes of a trial another process took over are stopped

log = logging.getLogger(__name__)


class DistributedTrialError(Exception):
    """A rank of a distributed trial failed: the first error line of the rank that failed first
    (the others then fail only because a peer is gone), or torchrun's exit code."""


def per_device_recipe(recipe: Any, devices: int) -> Any:
    """The recipe each process trains: its share of the global train and evaluation batch."""
    return dataclasses.replace(recipe, batch_size=recipe.batch_size // devices,
                               eval_batch_size=max(1, -(-recipe.eval_batch_size // devices)))


def train_distributed(trial: Any, spec: Any, data: Any, tokenizer: Any, trial_dir: Path,
                      run_name: str, tracker_config: dict[str, Any],
                      echo: Callable[[str], None] = print,
                      lost: threading.Event | None = None,
                      on_local_runs: Callable[[list[str]], None] | None = None) -> dict[str, Any]:
    """Train `trial` with torchrun on spec.experiment.devices_per_trial processes; its result.
    `lost` (queue.Heartbeat's): set when another process took the trial over; its processes are
    then stopped and queue.TrialTakenOver raised. `on_local_runs`: told the folders of rank 0's
    local SwanLab runs as each starts (the owner stores them with the trial, as a one-process
    trial's tracker does), so that a killed trial's runs can be ended as crashed."""
    devices = spec.experiment.devices_per_trial
    (trial_dir / RESULT).unlink(missing_ok=True)
    (trial_dir / OFFLINE).unlink(missing_ok=True)
    (trial_dir / LOCAL).unlink(missing_ok=True)
    for stale in trial_dir.glob(ERRORS):
        stale.unlink()
    payload = trial_dir / PAYLOAD
    with payload.open("wb") as handle:
        pickle.dump({"trial": trial, "spec": spec, "data": data, "tokenizer": tokenizer,
                     "run_name": run_name, "tracker_config": tracker_config}, handle)
    env = {**os.environ, TRIAL_OWNER: str(os.getpid())}
    if not _has_cuda():  # share this worker's threads (`run --workers` gives each its share of
        import torch  # the cores) between the processes instead of oversubscribing the cores

        env["OMP_NUM_THREADS"] = str(max(1, torch.get_num_threads() // devices))
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc-per-node={devices}", "-m", "ablation.distributed", str(payload)]
    echo(f"  {trial.key}: data-parallel on {devices} {'GPUs' if _has_cuda() else 'CPU processes'}")
    # In a session of its own, stopped by this process alone: Ctrl+C in the terminal does not
    # reach it (--graceful's first one lets the trial finish), an interrupt here stops it with
    # SIGTERM, which torchrun passes on to its processes before it exits, and so does the kernel
    # when this process dies (kill -9): no process trains on unseen.
    # Its messages and its processes' tracebacks go to the trial's log, as a one-process trial's
    # do: the terminal gets the progress (rank 0's stdout) and the one line of a failure.
    with (trial_dir / "trial.log").open("a", encoding="utf-8") as trial_log:
        torchrun = subprocess.Popen(command, env=env, stderr=trial_log, start_new_session=True,
                                    preexec_fn=interrupts.stop_with_parent)
    local = _LocalRuns(trial_dir / LOCAL, on_local_runs)
    try:
        returncode = _wait(torchrun, lost, local.read)
    except BaseException:
        with interrupts.held():  # a second Ctrl+C waits for the processes to be gone
            torchrun.terminate()
            torchrun.wait()
        raise
    finally:
        payload.unlink(missing_ok=True)
        local.read()  # a run started since the last look
        (trial_dir / LOCAL).unlink(missing_ok=True)
    if returncode != 0 or not (trial_dir / RESULT).is_file():
        error = (first_error(trial_dir) or _killed(trial_dir / "trial.log")
                 or f"torchrun exited with code {returncode}")
        local.end_unfinished(error)
        raise DistributedTrialError(error)
    result = json.loads((trial_dir / RESULT).read_text())
    (trial_dir / RESULT).unlink()
    return result


def offline_runs(trial_dir: Path) -> list[str]:
    """The folders of the SwanLab runs rank 0 logged offline instead of online, read once after
    torchrun is gone, whether the trial completed or failed: each is a run to `swanlab sync`
    (records.TRACKED_OFFLINE), which `ablate dashboard` names."""
    path = trial_dir / OFFLINE
    if not path.is_file():
        return []
    folders = json.loads(path.read_text())
    path.unlink()
    return folders


class _LocalRuns:
    """The folders of rank 0's local SwanLab runs, read from the file rank 0 writes as each starts
    (`_write_local_runs`) and passed on to `told` when they change. Rank 0 killed (kill -9, the
    out-of-memory killer) ends none of them, nor does its owner killed: the owner stores them with
    the trial as they start, for the process that fails the trial as stale (queue.requeue_stale),
    and ends them itself where torchrun fails while it lives."""

    def __init__(self, path: Path, told: Callable[[list[str]], None] | None) -> None:
        self.path, self.told, self.folders = path, told, []

    def read(self) -> None:
        try:
            folders = json.loads(self.path.read_text())
        except (OSError, ValueError):  # none yet
            return
        if folders != self.folders:
            self.folders = folders
            if self.told is not None:
                self.told(list(folders))

    def end_unfinished(self, error: str) -> None:
        """End as crashed those of the runs that rank 0 did not end (it was killed)."""
        if self.folders:
            from .tracking import end_dead_runs

            end_dead_runs(self.folders, error)


def _write_local_runs(trial_dir: Path, folders: list[str]) -> None:
    """Rank 0's local runs, for its owner (`_LocalRuns`): written whole, then moved in place."""
    partial = trial_dir / f".{LOCAL}.partial"
    with contextlib.suppress(OSError):  # a full disk: the trial trains on, its runs unstored
        partial.write_text(json.dumps(folders))
        os.replace(partial, trial_dir / LOCAL)


def _wait(torchrun: subprocess.Popen, lost: threading.Event | None,
          each: Callable[[], None] = lambda: None) -> int:
    """torchrun's exit code, waited for in steps: a trial another process took over as stale
    stops (as a one-process trial stops at its next step) rather than training on, its rank 0
    saving its model into the folder of the trial's new attempt. `each` is called at each step."""
    with _stopped_with_this_process(torchrun.pid):
        while True:
            try:
                return torchrun.wait(timeout=POLL_S)
            except subprocess.TimeoutExpired:
                each()
                if lost is not None and lost.is_set():
                    from .queue import TrialTakenOver

                    raise TrialTakenOver from None


@contextlib.contextmanager
def _stopped_with_this_process(torchrun: int) -> Iterator[None]:
    """Ctrl+Z stops the terminal's process group, and torchrun and its processes each have a
    session of their own (torchrun starts them so): while they run, this process stops them with
    itself and continues them with itself, so that a paused worker pauses its trial (and finds it
    taken over when it wakes, as a one-process trial does)."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGTSTP"):
        yield  # signal handlers are the main thread's
        return
    import psutil

    def stop(signum: int, frame: Any) -> None:
        try:
            root = psutil.Process(torchrun)
            tree = [root, *root.children(recursive=True)]
        except psutil.Error:  # gone meanwhile
            tree = []
        for process in tree:
            with contextlib.suppress(psutil.Error):
                process.suspend()
        signal.signal(signal.SIGTSTP, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTSTP)  # stopped here until continued (fg, bg, SIGCONT)
        signal.signal(signal.SIGTSTP, stop)
        for process in tree:
            with contextlib.suppress(psutil.Error):
                process.resume()

    previous = signal.signal(signal.SIGTSTP, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTSTP, previous)


# How gloo reports that a peer process is gone: the consequence of another rank's failure.
PEER_LOST = ("Connection closed by peer", "Connection reset by peer", "remote worker crash")


def first_error(trial_dir: Path) -> str | None:
    """The error of the rank that failed first: when one rank fails, its peers fail next with
    "connection closed by peer", which says nothing about the cause (such errors come last even
    if written first)."""
    errors = [json.loads(path.read_text()) for path in trial_dir.glob(ERRORS)]
    return min(errors, key=lambda error: (any(sign in error["error"] for sign in PEER_LOST),
                                          error["time"]))["error"] if errors else None


def _killed(trial_log: Path) -> str | None:
    """What a process killed by a signal (which records no error of its own) left: torchrun's
    report of it in the trial's log, said in one line."""
    text = trial_log.read_text(encoding="utf-8", errors="replace") if trial_log.is_file() else ""
    signals = re.findall(r"Signal \d+ \((SIG\w+)\) received by PID \d+", text)  # torch's words
    if not signals:
        return None
    return (f"a process of the trial was killed by {signals[-1]} before it could record an error "
            "(the system's out-of-memory killer sends SIGKILL); torchrun's report is in trial.log")


def _write_error(trial_dir: Path, rank: int, err: BaseException) -> str:
    """Record this rank's error and when it happened, for `first_error`."""
    text = str(err).strip()
    line = f"{type(err).__name__}: {text.splitlines()[0] if text else ''}".rstrip(": ")
    record = {"time": time.time(), "rank": rank, "error": line}
    (trial_dir / f"error.rank{rank}.json").write_text(json.dumps(record))
    return line


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _rank_main(payload_path: Path) -> int:
    """One torchrun process: train the trial; rank 0 tracks, logs and writes the result."""
    from . import train
    from .tracking import NullTracker, make_tracker

    # torchrun passes a SIGTERM on to its processes before it exits; one it did not (it was
    # killed, or its own handler's exception was lost) left them training unseen (a CI failure).
    interrupts.stop_with_parent()
    interrupts.watch_parent(also=int(os.environ[TRIAL_OWNER]))  # macOS: and the worker's death
    rank = int(os.environ.get("RANK", "0"))
    with payload_path.open("rb") as handle:
        work = pickle.load(handle)
    trial, spec = work["trial"], work["spec"]
    trial_dir = payload_path.parent
    if rank == 0:
        handler = logging.FileHandler(trial_dir / "trial.log", encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s rank0 %(name)s: %(message)s"))
        logging.getLogger().addHandler(handler)
        logging.getLogger("ablation").setLevel(logging.INFO)
    _quiet_libraries()
    tracker = make_tracker(spec.tracking, spec.output_dir) if rank == 0 else NullTracker()
    if hasattr(tracker, "on_local_runs"):  # for the owner, as each starts: see _LocalRuns
        tracker.on_local_runs = functools.partial(_write_local_runs, trial_dir)
    devices = int(os.environ.get("WORLD_SIZE", "1"))
    local = dataclasses.replace(trial, recipe=per_device_recipe(trial.recipe, devices))
    tracker.start(work["run_name"], spec.name, work["tracker_config"])
    try:
        result = train.train_with_backoff(local, spec, work["data"], work["tokenizer"], trial_dir,
                                          tracker, echo=print if rank == 0 else _silent)
    except BaseException as err:
        line = _write_error(trial_dir, rank, err)
        if rank == 0:
            log.error("distributed trial %s failed:\n%s", trial.key, traceback.format_exc())
            _write_offline_runs(trial_dir, tracker)  # its logged points are to sync all the same
            tracker.finish(error=line, interrupted=isinstance(err, KeyboardInterrupt))
        raise
    if rank == 0:
        result |= {"devices_per_trial": devices, "per_device_batch_size": local.recipe.batch_size}
        _write_offline_runs(trial_dir, tracker)
        (trial_dir / RESULT).write_text(json.dumps(result))
        tracker.finish()
    return 0


def _write_offline_runs(trial_dir: Path, tracker: Any) -> None:
    """For the parent (`offline_runs`), which stores them with the trial."""
    folders = getattr(tracker, "offline_run_dirs", [])
    if folders:
        (trial_dir / OFFLINE).write_text(json.dumps(folders))


def _silent(line: str) -> None:
    pass


def _quiet_libraries() -> None:
    from .quiet import quiet_transformers

    quiet_transformers()  # the user's own TRANSFORMERS_VERBOSITY stands, as in the parent


if __name__ == "__main__":
    sys.exit(_rank_main(Path(sys.argv[1])))
