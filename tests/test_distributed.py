"""devices_per_trial: one trial trained data-parallel by torchrun in 2 CPU processes (gloo).

With batch_size as the global batch, DDP over 2 processes of 4 examples is the same optimization
as one process of 8: the same examples per step, gradients averaged. When no batch is uneven (216
train rows, batches of 8) and dropout is off (its masks are drawn per process), the two trials log
the same losses and metrics up to floating-point summation order."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import processes_with

from ablation import cli, distributed
from ablation.config import load_spec
from ablation.queue import open_study
from ablation.train import TrialTimeout

EVEN_BATCHES = """\
learning_rate = 3e-3
batch_size = 8
eval_batch_size = 8
epochs = 2
eval_steps = 9
logging_steps = 3
dropout = 0.0
"""


def _result(path, sets):
    (trial,) = open_study(load_spec(path, sets), create=False).get_trials()
    assert trial.state.name == "COMPLETE", trial.user_attrs.get("error")
    return trial.user_attrs["result"]


def test_two_gloo_processes_log_what_one_process_logs_for_the_same_global_batch(write_experiment):
    single = write_experiment(name="single", variants="", baseline=EVEN_BATCHES)
    assert cli.main(["run", str(single)]) == 0
    ddp = write_experiment(name="ddp", variants="", baseline=EVEN_BATCHES,
                           tracking='backend = "swanlab"\nmode = "local"')
    sets = ["experiment.devices_per_trial=2"]
    assert cli.main(["run", str(ddp), "--set", sets[0]]) == 0

    one, two = _result(single, []), _result(ddp, sets)
    assert (two["devices_per_trial"], two["per_device_batch_size"]) == (2, 4)
    assert one["steps"] == two["steps"] == 54
    assert [p["step"] for p in two["history"]] == [p["step"] for p in one["history"]]
    for key in ("loss", "grad_norm", "learning_rate"):
        assert [p[key] for p in two["history"]] == pytest.approx([p[key] for p in one["history"]],
                                                                 rel=1e-3, abs=1e-4), key
    for a, b in zip(one["eval_history"], two["eval_history"], strict=True):
        assert b["loss"] == pytest.approx(a["loss"], abs=1e-4)
        assert b["macro_f1"] == pytest.approx(a["macro_f1"], abs=1e-6)
    assert two["validation"] == pytest.approx(one["validation"], abs=1e-4)
    assert two["test"] == pytest.approx(one["test"], abs=1e-4)
    assert two["validation_predictions"] == one["validation_predictions"]
    assert len(two["test_predictions"]) == 60  # gathered from both processes, none twice
    runs = list((load_spec(ddp, sets).output_dir / "swanlog").glob("run-*"))
    assert len(runs) == 1, "rank 0 alone logs the trial"


def test_the_global_batch_must_split_evenly_over_the_processes(write_experiment, capsys):
    path = write_experiment(variants="odd = { batch_size = 9 }\n")
    assert cli.main(["run", str(path), "--set", "experiment.devices_per_trial=2"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("baseline_odd: batch_size = 9 is the global batch of devices_per_trial = 2 "
                        "processes: it must be a multiple of 2")


def test_pruning_is_refused_for_data_parallel_trials(write_experiment, capsys):
    path = write_experiment(extra='[search]\nn_trials = 2\npruner = "median"\n'
                                  '[search.space]\nlearning_rate = { low = 1e-4, high = 1e-2 }\n')
    assert cli.main(["validate", str(path), "--set", "experiment.devices_per_trial=2"]) == 2
    assert "[search] pruner = 'median' cannot prune a trial trained on devices_per_trial = 2" in (
        capsys.readouterr().err)


@pytest.mark.parametrize(("space", "ok"), [
    ("{ low = 8, high = 32 }", False),  # every integer between: 9, 11, ... cannot split
    ("{ low = 8, high = 256, log = true }", False),
    ("{ low = 9, high = 33, step = 2 }", False),
    ("{ low = 8, high = 32, step = 3 }", False),
    ("{ low = 8, high = 32, step = 2 }", True),
    ("{ low = 8, high = 32, step = 4 }", True),
    ("[8, 16, 32]", True)])
def test_a_batch_size_range_that_can_propose_an_odd_global_batch_is_refused_up_front(
        write_experiment, capsys, space, ok):
    """validate said ok for batch_size = { low = 8, high = 32 } with devices_per_trial = 2 (only
    the ends were checked); the search then stopped on its second proposal, batch_size = 31, and
    every later run retried that trial and stopped again (the space could no longer change)."""
    path = write_experiment(extra=f"[search]\nn_trials = 2\n[search.space]\nbatch_size = {space}\n")
    code = cli.main(["validate", str(path), "--set", "experiment.devices_per_trial=2"])
    err = capsys.readouterr().err.strip()
    if ok:
        assert code == 0, err
        return
    assert code == 2 and "\n" not in err
    assert (f"[search.space] batch_size = {space}: with devices_per_trial = 2 every batch_size "
            "must be a multiple of 2") in err


def test_a_failing_rank_fails_the_trial_with_its_error_and_the_study_goes_on(write_experiment,
                                                                            capfd):
    path = write_experiment(variants="")
    # 40 epochs take well over the 1 s allowed (2 epochs take about 1 s).
    sets = ["experiment.devices_per_trial=2", "experiment.trial_timeout=1", "baseline.epochs=40"]
    assert cli.main(["run", str(path), *[arg for s in sets for arg in ("--set", s)]]) == 1
    (trial,) = open_study(load_spec(path, sets), create=False).get_trials()
    assert trial.state.name == "FAIL"
    # Whichever rank timed out first, the other then fails on a closed connection: the cause is kept.
    assert trial.user_attrs["error"].startswith("DistributedTrialError: TrialTimeout: ran ")
    # As for a trial in one process: the terminal gets one line, the trial's log the tracebacks.
    terminal = capfd.readouterr()
    assert "Traceback" not in terminal.out + terminal.err
    assert "baseline-s42 FAILED: DistributedTrialError: TrialTimeout: ran " in terminal.out
    trial_log = (load_spec(path, sets).output_dir / "trials" / "baseline-s42" / "trial.log").read_text()
    assert "]: Traceback" in trial_log and "ChildFailedError" in trial_log


def test_the_rank_that_failed_first_names_the_error(tmp_path, monkeypatch):
    """Rank 1 fails; rank 0 then loses its peer. The trial's error is rank 1's, not the gloo one."""
    clock = iter([100.0, 100.5, 101.0])
    monkeypatch.setattr(distributed.time, "time", lambda: next(clock))
    distributed._write_error(tmp_path, 1, TrialTimeout("ran 2 s, longer than 1 s\nmore"))
    distributed._write_error(tmp_path, 0, RuntimeError("Connection closed by peer [127.0.0.1]:27008"))
    assert distributed.first_error(tmp_path) == "TrialTimeout: ran 2 s, longer than 1 s"
    # A peer's lost connection, even written first, is not the cause.
    (tmp_path / "error.rank1.json").unlink()
    distributed._write_error(tmp_path, 2, TrialTimeout("ran 3 s, longer than 1 s"))
    assert distributed.first_error(tmp_path) == "TrialTimeout: ran 3 s, longer than 1 s"
    assert distributed.first_error(tmp_path / "absent") is None


def test_the_processes_share_the_threads_of_their_worker(tmp_path, monkeypatch):
    """`run --workers 4` on 16 cores gives each worker 4 threads; its trial's 2 processes take 2
    each (not 16 / 2 = 8 each: 32 threads on 16 cores)."""
    import types

    import torch

    started = []

    class Torchrun:
        pid = -1

        def __init__(self, command, env, **kwargs):
            started.append(env)

        def wait(self, timeout=None):
            return 1

    monkeypatch.setattr(distributed.subprocess, "Popen", Torchrun)
    monkeypatch.setattr(distributed, "_has_cuda", lambda: False)
    monkeypatch.setattr(distributed.os, "cpu_count", lambda: 16)
    spec = types.SimpleNamespace(experiment=types.SimpleNamespace(devices_per_trial=2))
    threads = torch.get_num_threads()
    torch.set_num_threads(4)  # what OMP_NUM_THREADS=4 from `run --workers 4` gives the worker
    try:
        with pytest.raises(distributed.DistributedTrialError):
            distributed.train_distributed(types.SimpleNamespace(key="baseline-s42"), spec, None,
                                          None, tmp_path, "run", {}, echo=lambda line: None)
    finally:
        torch.set_num_threads(threads)
    assert started[0]["OMP_NUM_THREADS"] == "2"


def _run_in_a_terminal(path, sets, *args):
    """`ablate run` on 2 processes, in a session of its own as a terminal starts it."""
    options = [part for value in ["experiment.devices_per_trial=2", *sets] for part in ("--set", value)]
    return subprocess.Popen([sys.executable, "-m", "ablation", "run", str(path), *options, *args],
                            env=dict(os.environ, PYTHONUNBUFFERED="1"), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)


def _wait_for_training(trial_dir, timeout=120):
    """Until torchrun's 2 processes (their command lines name the trial's folder) train: rank 0
    has logged a step."""
    deadline = time.monotonic() + timeout
    while "INFO rank0 ablation.train: step" not in _text(trial_dir / "trial.log"):
        assert time.monotonic() < deadline, "torchrun's processes never trained"
        time.sleep(0.2)
    assert len(processes_with(str(trial_dir))) == 3  # torchrun and its 2 processes


def _left_after(trial_dir, seconds):
    """The trial's processes still there after waiting up to `seconds` for them to exit."""
    deadline = time.monotonic() + seconds
    while processes_with(str(trial_dir)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return processes_with(str(trial_dir))


def _kill_left(trial_dir):
    for pid in processes_with(str(trial_dir)):
        os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def _training_for_hours(write_experiment):
    """`ablate run` of a data-parallel trial that would train for hours, in a terminal, once it
    trains: (the run, the trial's folder). Whatever the test did, nothing of it is left after."""
    path = write_experiment(variants="")
    sets = ["baseline.epochs=10000", "baseline.eval_steps=100000"]  # hours
    trial_dir = load_spec(path, sets).output_dir / "trials" / "baseline-s42"
    run = _run_in_a_terminal(path, sets)
    try:
        _wait_for_training(trial_dir)
        yield run, trial_dir
    finally:
        _kill_left(trial_dir)
        run.kill()
        run.wait(timeout=60)


def _text(path):
    return path.read_text() if path.is_file() else ""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's")
def test_the_processes_of_a_trial_stop_when_torchrun_dies_without_stopping_them(write_experiment):
    """torchrun passes a SIGTERM on to its processes; killed itself (or had it not passed one on:
    a CI run found both processes training a minute after the worker's kill -9), they got none."""
    with _training_for_hours(write_experiment) as (run, trial_dir):
        (torchrun,) = [pid for pid in processes_with(str(trial_dir))
                       if b"torch.distributed.run" in Path(f"/proc/{pid}/cmdline").read_bytes()]
        os.kill(torchrun, signal.SIGKILL)
        assert not _left_after(trial_dir, 60), "the trial's processes exited"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's")
@pytest.mark.parametrize("number", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_the_processes_of_a_trial_stop_with_the_process_that_owns_it(write_experiment, number):
    """kill (a job scheduler, or `run --workers` stopping its workers) or kill -9 of the worker
    that owns a data-parallel trial: torchrun and its processes exit too, instead of training on
    unseen and writing into the folder of the trial's next attempt."""
    with _training_for_hours(write_experiment) as (run, trial_dir):
        run.send_signal(number)
        assert run.wait(timeout=120) == (130 if number == signal.SIGTERM else -signal.SIGKILL)
        assert not _left_after(trial_dir, 60), "torchrun and its processes exited"


def test_graceful_ctrl_c_in_the_terminal_lets_a_data_parallel_trial_finish(write_experiment):
    """Ctrl+C reaches every process of the terminal's process group: torchrun and its processes
    must leave it to their owner, whose first Ctrl+C with --graceful lets the trial finish."""
    path = write_experiment(variants="")
    sets = ["baseline.epochs=20", "baseline.eval_steps=1000"]
    run = _run_in_a_terminal(path, sets, "--graceful")
    _wait_for_training(load_spec(path, sets).output_dir / "trials" / "baseline-s42")
    os.killpg(run.pid, signal.SIGINT)
    assert run.wait(timeout=300) == 0
    assert _result(path, ["experiment.devices_per_trial=2", *sets])["steps"] == 20 * 14


def test_a_trial_taken_over_stops_its_processes_and_says_so(tmp_path, monkeypatch):
    """The heartbeat finds the trial taken over by another process (`lost`): its processes stop
    instead of training on and saving a model into the folder of the trial's new attempt."""
    import threading
    import types

    from ablation.queue import TrialTakenOver

    started, popen = [], subprocess.Popen

    def training(command, **kwargs):  # stands for torchrun: a process that trains for minutes
        started.append(popen([sys.executable, "-c", "import time; time.sleep(600)"],
                                        **kwargs))
        return started[-1]

    monkeypatch.setattr(distributed.subprocess, "Popen", training)
    spec = types.SimpleNamespace(experiment=types.SimpleNamespace(devices_per_trial=2))
    lost = threading.Event()
    threading.Timer(1.0, lost.set).start()
    begun = time.monotonic()
    with pytest.raises(TrialTakenOver):
        distributed.train_distributed(types.SimpleNamespace(key="baseline-s42"), spec, None, None,
                                      tmp_path, "run", {}, echo=lambda line: None, lost=lost)
    assert time.monotonic() - begun < 30
    assert started[0].poll() is not None  # stopped, not left training
    assert not (tmp_path / distributed.PAYLOAD).exists()


def _state(pid):
    """A process's state letter in /proc: T when stopped."""
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()[0]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_ctrl_z_pauses_the_processes_of_a_data_parallel_trial_and_fg_continues_them(
        write_experiment):
    """torchrun has a session of its own, which the terminal's Ctrl+Z does not reach: the worker
    stops and continues it with itself, so that a paused study pauses its training too."""
    path = write_experiment(variants="")
    sets = ["baseline.epochs=10000", "baseline.eval_steps=100000"]  # hours
    trial_dir = load_spec(path, sets).output_dir / "trials" / "baseline-s42"
    # A job of its own in this session, as a shell starts one: not an orphaned process group,
    # which the kernel would not stop on SIGTSTP.
    options = [part for value in ["experiment.devices_per_trial=2", *sets]
               for part in ("--set", value)]
    run = subprocess.Popen([sys.executable, "-m", "ablation", "run", str(path), *options],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, process_group=0)
    try:
        _wait_for_training(trial_dir)
        trainers = processes_with(str(trial_dir))

        def states():
            return {_state(pid) for pid in [run.pid, *trainers]}

        os.killpg(run.pid, signal.SIGTSTP)  # Ctrl+Z: the terminal's foreground group
        deadline = time.monotonic() + 30
        while states() != {"T"} and time.monotonic() < deadline:
            time.sleep(0.1)
        assert states() == {"T"}, "the worker, torchrun and its processes are stopped"
        os.killpg(run.pid, signal.SIGCONT)  # fg
        deadline = time.monotonic() + 30
        while "T" in states() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "T" not in states(), "all of them go on"
    finally:
        run.kill()
        run.wait()
        for pid in processes_with(str(trial_dir)):
            os.kill(pid, signal.SIGKILL)


def test_a_process_killed_by_a_signal_is_named_in_the_trials_error(tmp_path, monkeypatch):
    """A rank killed (kill -9, the out-of-memory killer) records no error of its own: the trial's
    error says which signal torchrun reported, not only torchrun's exit code."""
    import types

    popen = subprocess.Popen

    def torchrun(command, **kwargs):  # torch's report of a rank killed by SIGKILL, then exit 1
        report = "traceback : Signal 9 (SIGKILL) received by PID 4242"
        return popen([sys.executable, "-c", f"import sys; sys.stderr.write({report!r}); sys.exit(1)"],
                     **kwargs)

    monkeypatch.setattr(distributed.subprocess, "Popen", torchrun)
    spec = types.SimpleNamespace(experiment=types.SimpleNamespace(devices_per_trial=2))
    with pytest.raises(distributed.DistributedTrialError, match="killed by SIGKILL before it could"):
        distributed.train_distributed(types.SimpleNamespace(key="baseline-s42"), spec, None, None,
                                      tmp_path, "run", {}, echo=lambda line: None)


RANK_0_FAILS_AFTER_LOGGING = """\
import sys
from pathlib import Path

import swanlab

from ablation import distributed, train

real_init = swanlab.init


def init(*args, mode=None, **kwargs):  # no SwanLab key: the run falls back offline
    if mode == "online":
        raise RuntimeError("api key not configured")
    return real_init(*args, mode=mode, **kwargs)


def fails(*args, **kwargs):
    raise RuntimeError("rank 0 failed after logging")


swanlab.init, train.train_with_backoff = init, fails
sys.exit(distributed._rank_main(Path(sys.argv[1])))
"""


def test_a_failed_data_parallel_trial_keeps_its_runs_that_logged_offline(write_experiment,
                                                                         monkeypatch, capsys):
    """Rank 0 passed back the SwanLab runs that fell back offline with a result alone: a trial
    that failed after logging lost them, and `ablate dashboard`'s `swanlab sync` missed them.
    (torchrun stands in as rank 0 alone, whose online run falls back and whose training fails.)"""
    popen = subprocess.Popen

    def rank_0(command, **kwargs):
        return popen([sys.executable, "-c", RANK_0_FAILS_AFTER_LOGGING, command[-1]], **kwargs)

    monkeypatch.setattr(distributed.subprocess, "Popen", rank_0)
    path = write_experiment(variants="", tracking='backend = "swanlab"\nmode = "online"')
    sets = ["experiment.devices_per_trial=2"]
    assert cli.main(["run", str(path), "--set", sets[0]]) == 1
    (trial,) = open_study(load_spec(path, sets), create=False).get_trials()
    assert trial.user_attrs["error"] == "DistributedTrialError: RuntimeError: rank 0 failed after logging"
    runs = [str(run) for run in (load_spec(path, sets).output_dir / "swanlog").glob("run-*")]
    assert len(runs) == 1 and trial.user_attrs.get("tracked_offline") == runs
    capsys.readouterr()
    assert cli.main(["dashboard", str(path), "--set", sets[0]]) == 2
    assert f"upload them with `swanlab sync {runs[0]}`" in capsys.readouterr().err


RANK_0_KILLED_AFTER_ITS_RUN_STARTS = """\
import json
import os
import signal
import sys
import time
from pathlib import Path

from ablation import distributed, records, train
from ablation.queue import open_study


def killed(trial, spec, *args, **kwargs):  # kill -9 once its owner could know the run (or never)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        (stored,) = open_study(spec, create=False).get_trials()
        if stored.user_attrs.get(records.LOCAL_RUNS):
            (spec.output_dir / "stored.json").write_text(
                json.dumps(stored.user_attrs[records.LOCAL_RUNS]))
            break
        time.sleep(0.2)
    os.kill(os.getpid(), signal.SIGKILL)


train.train_with_backoff = killed
sys.exit(distributed._rank_main(Path(sys.argv[1])))
"""


def test_a_killed_data_parallel_trials_local_run_is_stored_as_it_starts_and_ends_as_crashed(
        write_experiment, monkeypatch):
    """Rank 0's local SwanLab run reached the trial's owner only with a result: killed (kill -9,
    the out-of-memory killer), the run stayed `running` in the local dashboard for good, and so
    did it where the owner was killed (the process that fails the trial as stale did not know
    it). The owner now stores it with the trial as it starts, and ends it as crashed when torchrun
    fails. (torchrun stands in as rank 0 alone, killed once its run could be known.)"""
    import sqlite3

    popen = subprocess.Popen

    def rank_0(command, **kwargs):
        return popen([sys.executable, "-c", RANK_0_KILLED_AFTER_ITS_RUN_STARTS, command[-1]],
                     **kwargs)

    monkeypatch.setattr(distributed.subprocess, "Popen", rank_0)
    path = write_experiment(variants="", tracking='backend = "swanlab"\nmode = "local"')
    sets = ["experiment.devices_per_trial=2"]
    assert cli.main(["run", str(path), "--set", sets[0]]) == 1
    spec = load_spec(path, sets)
    (trial,) = open_study(spec, create=False).get_trials()
    assert trial.state.name == "FAIL"
    runs = [str(run) for run in (spec.output_dir / "swanlog").glob("run-*")]
    assert len(runs) == 1
    stored = spec.output_dir / "stored.json"
    assert stored.is_file(), "the run was stored with the trial while rank 0 ran"
    assert json.loads(stored.read_text()) == runs == trial.user_attrs["swanlab_local_runs"]
    with sqlite3.connect(f"file:{spec.output_dir}/swanlog/runs.swanlab?mode=ro", uri=True) as db:
        assert list(db.execute("select name, status from experiment")) == [("baseline-s42", -1)]


def test_a_failed_data_parallel_trials_run_that_rank_0_ended_keeps_its_own_error(tmp_path):
    """When torchrun fails, its owner ends as crashed the local runs rank 0 left unfinished
    (killed). A rank 0 that failed with an error ends its run itself, with that error in its
    console log: the owner appended its own error there too, a second one in a run it did not
    end, at every failed data-parallel trial."""
    import sqlite3

    from ablation.config import TrackingSpec
    from ablation.tracking import SwanLabTracker

    tracker = SwanLabTracker(TrackingSpec(backend="swanlab", mode="local"), tmp_path)
    tracker.start("baseline-s42", "study", {})
    tracker.finish("RuntimeError: out of memory in rank 0")
    (folder,) = tracker.local_run_dirs
    error_log = Path(folder) / "console" / "error.log"
    written = error_log.read_text()
    assert "out of memory in rank 0" in written
    runs = distributed._LocalRuns(tmp_path / distributed.LOCAL, None)
    runs.folders = [folder]
    runs.end_unfinished("torchrun exited with code 1")
    assert error_log.read_text() == written
    with sqlite3.connect(f"file:{tmp_path}/swanlog/runs.swanlab?mode=ro", uri=True) as db:
        assert list(db.execute("select status from experiment")) == [(-1,)]
