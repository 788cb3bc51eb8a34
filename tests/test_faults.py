"""Faults a study must survive: out of memory (injected, as CUDA would raise it), a tracker that
cannot start."""

from __future__ import annotations

import logging
import shlex
from pathlib import Path

import optuna
import pytest
import torch
import transformers
import yaml

from ablation import cli, records, train
from ablation.config import load_spec


def _trials(path):
    spec = load_spec(path)
    return optuna.load_study(study_name=spec.name, storage=spec.experiment.storage).get_trials()


@pytest.fixture
def oom_above(monkeypatch):
    """Make Trainer.train raise CUDA's out-of-memory error above a per-device batch size."""
    real_train = transformers.Trainer.train

    def install(limit: int, only: str = "") -> None:
        def train(self, *args, **kwargs):
            if self.args.per_device_train_batch_size > limit and only in self.args.output_dir:
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
            return real_train(self, *args, **kwargs)

        monkeypatch.setattr(transformers.Trainer, "train", train)

    return install


def test_out_of_memory_halves_the_batch_and_doubles_accumulation(write_experiment, oom_above):
    path = write_experiment(variants="", baseline="learning_rate = 1e-3\nbatch_size = 32\n"
                                                  "epochs = 1\neval_steps = 5\nlogging_steps = 2\n")
    oom_above(8)
    assert cli.main(["run", str(path)]) == 0
    (trial,) = _trials(path)
    result = trial.user_attrs["result"]
    assert trial.state.name == "COMPLETE"
    assert result["oom_backoff"] == [{"batch_size": 32, "gradient_accumulation_steps": 1},
                                     {"batch_size": 16, "gradient_accumulation_steps": 2}]
    assert (result["batch_size"], result["gradient_accumulation_steps"]) == (8, 4)  # 32 per step
    report = (load_spec(path).output_dir / "report.md").read_text()
    assert ("- `baseline-s42`: out of memory at batch_size 32 × accumulation 1; out of memory at "
            "batch_size 16 × accumulation 2; ran at batch_size 8 × accumulation 4") in report


def test_out_of_memory_mid_training_gives_the_retry_its_own_swanlab_run(write_experiment,
                                                                        monkeypatch):
    """Out of memory after points were logged (at an evaluation, whose batch is larger): the
    retry logs from step 0 again, which SwanLab would drop as repeats of the failed attempt's
    steps; it gets a run of its own, and the failed attempt's run ends as crashed, saying why."""
    import json
    import sqlite3

    real = train.TrackerCallback.on_step_end

    def step_end(callback, args, state, control, **kwargs):
        real(callback, args, state, control, **kwargs)
        if state.global_step == 3 and args.per_device_train_batch_size > 8:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(train.TrackerCallback, "on_step_end", step_end)
    path = write_experiment(variants="", tracking='backend = "swanlab"\nmode = "local"',
                            baseline="batch_size = 32\nepochs = 1\nlogging_steps = 1\n")
    assert cli.main(["run", str(path)]) == 0
    (trial,) = _trials(path)
    history = trial.user_attrs["result"]["history"]
    swanlog = load_spec(path).output_dir / "swanlog"
    store = sqlite3.connect(f"file:{swanlog}/runs.swanlab?mode=ro", uri=True)
    runs = {name: (run, run_id) for run, run_id, name in
            store.execute("select id, run_id, name from experiment")}
    assert sorted(runs) == ["baseline-s42", "baseline-s42-oom1", "baseline-s42-oom2"]  # 32, 16, 8

    def losses(name: str) -> dict[int, float]:
        run, run_id = runs[name]
        (folder,) = store.execute("select folder from tag where experiment_id=? and name=?",
                                  (run, "train/loss")).fetchone()
        lines = [json.loads(line) for file in (swanlog / run_id / "logs" / folder).glob("*.log")
                 for line in file.open()]
        return {line["index"]: line["data"] for line in lines}

    assert sorted(losses("baseline-s42")) == [1, 2]  # the failed attempts', kept apart
    assert sorted(losses("baseline-s42-oom1")) == [1, 2]
    retry = losses("baseline-s42-oom2")
    assert len(retry) == len(history)
    assert [retry[entry["step"]] for entry in history] == pytest.approx(
        [entry["loss"] for entry in history])

    # Each run's config says the batch it trained with, as the stored result does: the retries'
    # configs showed the file's batch_size 32 for runs that trained at 16 and at 8.
    def config(name: str) -> dict:
        text = (swanlog / runs[name][1] / "files" / "config.yaml").read_text()
        return {key: value["value"] for key, value in yaml.safe_load(text).items()}

    assert "oom_backoff" not in config("baseline-s42")
    result = trial.user_attrs["result"]
    retried = config("baseline-s42-oom2")
    assert retried["oom_backoff"] == result["oom_backoff"]
    assert (retried["batch_size"], retried["gradient_accumulation_steps"]) == (
        result["batch_size"], result["gradient_accumulation_steps"]) == (8, 4)
    assert config("baseline-s42-oom1")["oom_backoff"] == result["oom_backoff"][:1]


def test_a_trial_keeps_its_out_of_memory_retries_local_runs_as_each_starts(write_experiment,
                                                                             monkeypatch):
    """A trial stores the folders of its local runs, so that, killed, its runs are ended as
    crashed when it is failed as stale: an out-of-memory retry's run was stored only once the
    trial ended, and a trial killed during its retry left that run running for good."""
    real = train.TrackerCallback.on_step_end
    seen: list[list[str]] = []

    def step_end(callback, args, state, control, **kwargs):
        real(callback, args, state, control, **kwargs)
        if state.global_step == 3 and args.per_device_train_batch_size > 8:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        if state.global_step == 1 and args.per_device_train_batch_size == 8:  # the last retry
            (running,) = [t for t in _trials(path) if t.state.name == "RUNNING"]
            seen.append(running.user_attrs.get(records.LOCAL_RUNS, []))

    monkeypatch.setattr(train.TrackerCallback, "on_step_end", step_end)
    path = write_experiment(variants="", tracking='backend = "swanlab"\nmode = "local"',
                            baseline="batch_size = 32\nepochs = 1\nlogging_steps = 1\n")
    assert cli.main(["run", str(path)]) == 0
    swanlog = load_spec(path).output_dir / "swanlog"
    assert len(seen) == 1 and len(seen[0]) == 3  # 32, 16 and 8: each its own run
    assert sorted(seen[0]) == sorted(str(run) for run in swanlog.glob("run-*"))


def test_out_of_memory_before_any_point_keeps_the_run_and_says_the_batch_it_trained_with(
        write_experiment, oom_above):
    """Out of memory at the first step: the run goes on (nothing of the failed attempt in it), and
    its config now says the batch the trial trained with, not only the file's."""
    import sqlite3

    path = write_experiment(variants="", tracking='backend = "swanlab"\nmode = "local"',
                            baseline="batch_size = 32\nmax_steps = 2\nlogging_steps = 1\n")
    oom_above(8)
    assert cli.main(["run", str(path)]) == 0
    (trial,) = _trials(path)
    result = trial.user_attrs["result"]
    swanlog = load_spec(path).output_dir / "swanlog"
    with sqlite3.connect(swanlog / "runs.swanlab") as db:
        ((name, run_id),) = db.execute("select name, run_id from experiment").fetchall()
    assert name == "baseline-s42"
    text = (swanlog / run_id / "files" / "config.yaml").read_text()
    config = {key: value["value"] for key, value in yaml.safe_load(text).items()}
    assert config["recipe"]["batch_size"] == 32  # the trial's recipe, as the file gives it
    assert config["oom_backoff"] == result["oom_backoff"]
    assert (config["batch_size"], config["gradient_accumulation_steps"]) == (8, 4)


def test_out_of_memory_at_batch_one_fails_the_trial_and_the_study_goes_on(write_experiment,
                                                                         oom_above):
    path = write_experiment(variants="big = { batch_size = 4 }\n")
    oom_above(0, only="baseline_big")  # even batch 1 does not fit, for this variant only
    assert cli.main(["run", str(path)]) == 1
    states = {t.user_attrs["key"]: (t.state.name, t.user_attrs.get("error")) for t in _trials(path)}
    assert states["baseline-s42"][0] == "COMPLETE"
    assert states["baseline_big-s42"][0] == "FAIL"
    assert states["baseline_big-s42"][1].startswith(
        "OutOfMemoryAtBatchOne: out of memory even at batch_size 1 (tried [4, 2] before)")


def test_ctrl_c_while_the_swanlab_run_starts_leaves_a_crashed_run(write_experiment, monkeypatch):
    """Ctrl+C (`run --workers` passes it on to its workers) inside swanlab.init, before the run
    was made: the trial was recorded as interrupted with no run in the dashboard, only a stray
    folder outside SwanLab's database. The signal now waits until the run has started, which
    then ends as crashed, as any interrupted trial's run does."""
    import signal
    import sqlite3

    import swanlab
    from conftest import signal_self

    real_init = swanlab.init

    def init(*args, **kwargs):
        signal_self(signal.SIGINT)
        return real_init(*args, **kwargs)

    monkeypatch.setattr(swanlab, "init", init)
    path = write_experiment(variants="", tracking='backend = "swanlab"\nmode = "local"')
    assert cli.main(["run", str(path)]) == 130
    (trial,) = _trials(path)
    assert (trial.state.name, trial.user_attrs["error"]) == ("FAIL", "interrupted (Ctrl+C or SIGTERM)")
    swanlog = load_spec(path).output_dir / "swanlog"
    with sqlite3.connect(swanlog / "runs.swanlab") as db:
        assert list(db.execute("select name, status from experiment")) == [("baseline-s42", -1)]
    assert len(list(swanlog.glob("run-*"))) == 1


def test_ctrl_c_while_an_online_run_starts_stops_at_once(tmp_path, monkeypatch):
    """Online, swanlab.init waits on the network for as long as it takes (a slow or hung
    connection): Ctrl+C there must not wait for it to end."""
    import signal

    from conftest import signal_self

    from ablation import interrupts
    from ablation.config import TrackingSpec
    from ablation.tracking import SwanLabTracker

    went_on = []

    def init(self, name, group, config, mode):
        signal_self(signal.SIGINT)
        went_on.append(mode)  # the network wait, after Ctrl+C

    monkeypatch.setattr(SwanLabTracker, "_init", init)
    tracker = SwanLabTracker(TrackingSpec(backend="swanlab", mode="online"), tmp_path)
    with interrupts.handled(graceful=False), pytest.raises(KeyboardInterrupt):
        tracker.start("baseline-s42", "study", {})
    assert went_on == []


def test_a_tracker_that_cannot_start_online_logs_offline_with_one_warning(write_experiment,
                                                                          monkeypatch, caplog,
                                                                          capsys):
    import swanlab

    real_init = swanlab.init

    def init(*args, mode=None, **kwargs):
        if mode == "online":
            raise RuntimeError("api key not configured")
        return real_init(*args, mode=mode, **kwargs)

    monkeypatch.setattr(swanlab, "init", init)
    path = write_experiment(tracking='backend = "swanlab"\nmode = "online"')
    with caplog.at_level(logging.WARNING, logger="ablation"):
        assert cli.main(["run", str(path)]) == 0
    warnings = [r.getMessage() for r in caplog.records if "SwanLab" in r.getMessage()]
    assert len(warnings) == 1
    assert "mode 'online' could not start (api key not configured); logging offline" in warnings[0]
    runs = sorted(str(run) for run in (load_spec(path).output_dir / "swanlog").glob("run-*"))
    assert len(runs) == 2
    # Each trial keeps where its run went; `ablate dashboard` names them to upload, not only the
    # cloud where they are not.
    assert sorted(t.user_attrs["tracked_offline"] for t in _trials(path)) == [[run] for run in runs]
    capsys.readouterr()
    assert cli.main(["dashboard", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "https://swanlab.cn" in err, err
    assert f"2 SwanLab run(s) could not log online and logged offline: upload them with `swanlab sync " \
           f"{runs[0]} {runs[1]}`" in err or f"swanlab sync {runs[1]} {runs[0]}`" in err, err


def test_every_run_of_a_trial_that_fell_back_offline_is_kept_to_sync(write_experiment, monkeypatch,
                                                                     capsys):
    """Out of memory after points were logged starts the trial's retry in a run of its own
    (baseline-s42-oom1): only the first run's folder was kept, so `ablate dashboard` named that one
    to `swanlab sync` and the retry's run, the one that trained the result, was never uploaded."""
    import swanlab

    real_init = swanlab.init

    def init(*args, mode=None, **kwargs):
        if mode == "online":
            raise RuntimeError("api key not configured")
        return real_init(*args, mode=mode, **kwargs)

    real_step_end = train.TrackerCallback.on_step_end

    def step_end(callback, args, state, control, **kwargs):
        real_step_end(callback, args, state, control, **kwargs)
        if state.global_step == 3 and args.per_device_train_batch_size > 8:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(swanlab, "init", init)
    monkeypatch.setattr(train.TrackerCallback, "on_step_end", step_end)
    path = write_experiment(variants="", tracking='backend = "swanlab"\nmode = "online"',
                            baseline="batch_size = 16\nepochs = 1\nlogging_steps = 1\n")
    assert cli.main(["run", str(path)]) == 0
    runs = sorted(str(run) for run in (load_spec(path).output_dir / "swanlog").glob("run-*"))
    assert len(runs) == 2  # baseline-s42 (batch 16, out of memory at step 3), baseline-s42-oom1
    (trial,) = _trials(path)
    assert sorted(trial.user_attrs["tracked_offline"]) == runs
    capsys.readouterr()
    assert cli.main(["dashboard", str(path)]) == 2
    err = capsys.readouterr().err
    assert "2 SwanLab run(s) could not log online and logged offline" in err, err
    assert all(run in err.split("swanlab sync ", 1)[1] for run in runs), err


def test_an_unwritable_tracker_folder_runs_the_study_untracked(write_experiment, caplog):
    path = write_experiment(tracking='backend = "swanlab"\nmode = "local"')
    output_dir = load_spec(path).output_dir
    output_dir.mkdir(parents=True)
    (output_dir / "swanlog").write_text("a file where the folder should be")
    with caplog.at_level(logging.WARNING, logger="ablation"):
        assert cli.main(["run", str(path)]) == 0
    assert [t.state.name for t in _trials(path)] == ["COMPLETE", "COMPLETE"]
    assert any("this study runs without tracking" in r.getMessage() for r in caplog.records)


def test_online_without_a_key_on_a_terminal_falls_back_without_a_prompt(tmp_path, monkeypatch,
                                                                         caplog):
    """On a TTY, SwanLab's online mode without a key asks 'Enter your choice [1/2/3]' and waits:
    an unattended study would hang at its first trial (the prompt drawn into the live table)."""
    import builtins

    from swanlab.sdk.internal.pkg import helper

    from ablation.config import TrackingSpec
    from ablation.tracking import SwanLabTracker

    monkeypatch.delenv("SWANLAB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no saved key (swanlab login's .netrc)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(helper, "is_interactive", lambda: True)  # as on a terminal

    def prompt(*args, **kwargs):
        raise AssertionError(f"SwanLab prompted: {args}")

    monkeypatch.setattr(builtins, "input", prompt)
    tracker = SwanLabTracker(TrackingSpec(project="t", mode="online"), tmp_path / "out")
    with caplog.at_level(logging.WARNING, logger="ablation"):
        tracker.start("baseline-s42", "study", {"seed": 42})
        tracker.finish()
    warnings = [r.getMessage() for r in caplog.records if "SwanLab" in r.getMessage()]
    assert len(warnings) == 1 and "no API key" in warnings[0], warnings
    assert "logging offline" in warnings[0] and tracker.mode == "offline"
    assert len(list((tmp_path / "out" / "swanlog").glob("run-*"))) == 1


def test_swanlab_on_a_full_disk_prints_no_logging_tracebacks(tmp_path: Path, monkeypatch,
                                                             capsys):
    """SwanLab's own diagnostic log (debug/debug.log) on a full disk: Python's logging printed
    about 50 lines of traceback for each line it could not write, 5,000 in a trial's run."""
    import errno
    import logging.handlers

    from ablation.config import TrackingSpec
    from ablation.tracking import SwanLabTracker

    def full(self, record):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(logging.handlers.RotatingFileHandler, "shouldRollover", full)
    monkeypatch.setattr(logging, "raiseExceptions", True)  # as outside pytest
    tracker = SwanLabTracker(TrackingSpec(project="t", mode="local"), tmp_path / "out")
    tracker.start("baseline-s42", "study", {"seed": 42})
    tracker.log({"train/loss": 1.0}, step=1)
    tracker.finish(error="RuntimeError: a failure swanlab logs")
    err = capsys.readouterr().err
    assert "Logging error" not in err and "Traceback" not in err, err[:2000]


def test_a_full_disk_behind_a_librarys_error_is_named_in_the_trials_error(write_experiment,
                                                                         monkeypatch, capsys):
    """torch.save on a full disk raises "unexpected pos ..." from the ENOSPC it hit: the trial's
    error names the full disk, and the trial log's failed writes print no logging tracebacks."""
    import errno

    from ablation import train
    from ablation.sweep import _runner as sweep

    def save_fails(*args, **kwargs):
        logging.getLogger("ablation.train").warning("a line the full disk cannot take")
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError:  # raised while handling it: the ENOSPC is only its __context__
            raise RuntimeError(  # noqa: B904
                "[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 42")

    monkeypatch.setattr(train, "train_trial", save_fails)
    monkeypatch.setattr(sweep._TrialLogHandler, "emit",
                        lambda self, record: self.handleError(record))  # every write fails
    path = write_experiment(variants="")
    assert cli.main(["run", str(path)]) == 1
    (trial,) = _trials(path)
    assert trial.user_attrs["error"] == (
        "RuntimeError: [enforce fail at inline_container.cc:672] . unexpected pos 64 vs 42 "
        "(OSError: [Errno 28] No space left on device)")
    assert "Logging error" not in capsys.readouterr().err


def test_torch_saves_full_disk_is_named_with_the_disks_free_space(write_experiment,
                                                                  monkeypatch):
    """torch.save on a real full disk (a checkpoint's optimizer.pt) keeps no OSError behind its
    "unexpected pos 576 vs 534", only "basic_ios::clear: iostream error": the trial's error said
    nothing of the disk. It now says torch could not write and how much the disk has free. An
    OSError that is the full disk itself is said once, not again in brackets."""
    import errno
    import shutil

    from ablation import train
    from ablation.sweep import _runner as sweep

    errors = iter([
        (RuntimeError("basic_ios::clear: iostream error"),
         RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534")),
        (OSError(errno.ENOSPC, "No space left on device"),
         OSError(errno.ENOSPC, "No space left on device"))])

    def save_fails(*args, **kwargs):
        first, then = next(errors)
        try:
            raise first
        except type(first):
            raise then  # noqa: B904

    monkeypatch.setattr(train, "train_trial", save_fails)
    monkeypatch.setattr(sweep.shutil, "disk_usage",
                        lambda folder: shutil._ntuple_diskusage(10 << 20, 10 << 20, 12 * 1024))
    path = write_experiment(variants="")
    trial_dir = load_spec(path).output_dir / "trials" / "baseline-s42"
    assert cli.main(["run", str(path)]) == 1
    assert _trials(path)[0].user_attrs["error"] == (
        "RuntimeError: [enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534 "
        f"(torch could not write a file; 12.0 KB free on the disk of {trial_dir})")
    assert cli.main(["run", str(path)]) == 1  # the next run tries it once more
    assert _trials(path)[-1].user_attrs["error"] == "OSError: [Errno 28] No space left on device"


def test_a_worker_whose_storage_stops_answering_names_the_run_that_goes_on(write_experiment,
                                                                            monkeypatch, capsys):
    """`ablate worker` losing its storage as it stores a result: the trial it could not record is
    trained again by a `run` (which queues it again and waits for it), not reliably by the same
    worker (it claims queued trials only, and stops when none is left). Its line names that
    `run`, with the worker's --sets and --storage."""
    import json

    import sqlalchemy.exc
    from conftest import queue_by_an_interrupted_run

    path = write_experiment()
    sets = ["--set", "baseline.epochs=1"]
    storage = load_spec(path).experiment.storage
    queue_by_an_interrupted_run(monkeypatch, path, sets)  # the trials wait queued
    real = optuna.storages.RDBStorage.set_trial_state_values

    def set_state(self, trial_id, state, values=None):
        if state == optuna.trial.TrialState.COMPLETE:
            down = sqlalchemy.exc.OperationalError(
                "UPDATE trials", {}, Exception("connection to server at \"127.0.0.1\", port "
                                               "5432 failed: Connection refused"))
            raise optuna.exceptions.StorageInternalError("invalid data in the commit") from down
        return real(self, trial_id, state, values)

    with monkeypatch.context() as patch:
        patch.setattr(optuna.storages.RDBStorage, "set_trial_state_values", set_state)
        capsys.readouterr()
        assert cli.main(["worker", str(path), "--storage", storage, *sets]) == 1
    err = capsys.readouterr().err
    goes_on = ["ablate", "run", str(path), *sets, "--set", f"experiment.storage={json.dumps(storage)}"]
    assert err == ("ablate: error: the study storage stopped answering (connection to server at "
                   "\"127.0.0.1\", port 5432 failed: Connection refused); what it recorded is kept "
                   f"and a trial it could not record trains again; `{shlex.join(goes_on)}` goes on "
                   "from there\n"), err
    assert cli.main(goes_on[1:]) == 0
    assert {t.user_attrs["key"] for t in _trials(path) if t.state.name == "COMPLETE"} == {
        "baseline-s42", "baseline_bs32-s42"}


@pytest.mark.parametrize("refused", ["Connection refused", "Connection refused\x1b[0m\x07"])
def test_a_storage_that_stops_answering_ends_the_run_in_one_line_and_the_run_goes_on_later(
        refused, write_experiment, monkeypatch, capsys):
    """A database server that is down when a trial's result is stored (PostgreSQL restarting):
    Optuna raises StorageInternalError, blaming "invalid data", from the driver's connection
    error. One line names the lost connection and the command that goes on; running it trains
    the trial that could not be recorded, and keeps the one that was. The driver's message is
    quoted with its control characters escaped, as in every error line."""
    import sqlalchemy.exc

    path = write_experiment()
    real = optuna.storages.RDBStorage.set_trial_state_values
    calls = []

    def set_state(self, trial_id, state, values=None):
        if state == optuna.trial.TrialState.COMPLETE:
            calls.append(trial_id)
            if len(calls) == 2:  # the second trial's result
                down = sqlalchemy.exc.OperationalError(
                    "UPDATE trials", {}, Exception("connection to server at \"127.0.0.1\", port "
                                                   f"5432 failed: {refused}"))
                raise optuna.exceptions.StorageInternalError(
                    "An exception is raised during the commit. This typically happens due to "
                    "invalid data in the commit, e.g. exceeding max length.") from down
        return real(self, trial_id, state, values)

    monkeypatch.setattr(optuna.storages.RDBStorage, "set_trial_state_values", set_state)
    capsys.readouterr()
    assert cli.main(["run", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith("ablate: error: the study storage stopped answering (")
    assert "Connection refused" in err and "invalid data" not in err
    assert "\x1b" not in err and "\x07" not in err and ("\\x1b" in err) == ("\x1b" in refused)
    assert f"`ablate run {path}` goes on from there" in err
    monkeypatch.setattr(optuna.storages.RDBStorage, "set_trial_state_values", real)
    assert cli.main(["run", str(path)]) == 0
    states = sorted(t.state.name for t in _trials(path) if t.state.name != "FAIL")
    assert states == ["COMPLETE", "COMPLETE"], [(t.state.name, t.user_attrs) for t in _trials(path)]


@pytest.mark.parametrize("deleted", ["folder", "database"])
def test_a_study_database_deleted_mid_run_is_said_lost_not_kept(write_experiment, monkeypatch,
                                                                capsys, deleted):
    """The output folder (holding study.db, the default storage) or study.db alone deleted while
    a trial trains: the next write fails, and the line said "what it recorded is kept" and that
    the same command "goes on from there", when everything recorded went with the file."""
    import shutil

    path = write_experiment(variants="")
    output_dir = load_spec(path).output_dir
    real_train = transformers.Trainer.train

    def train_after_deleting(self, *args, **kwargs):
        if deleted == "folder":
            shutil.rmtree(output_dir)
        else:
            (output_dir / "study.db").unlink()
        return real_train(self, *args, **kwargs)

    monkeypatch.setattr(transformers.Trainer, "train", train_after_deleting)
    capsys.readouterr()
    assert cli.main(["run", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    gone = (f"the study storage {output_dir / 'study.db'} is gone: its folder {output_dir} was "
            "deleted" if deleted == "folder" else
            f"the study storage {output_dir / 'study.db'} was deleted or replaced")
    assert err.startswith(f"ablate: error: {gone} while ablate ran; every trial it recorded is "
                          "lost, this run's included"), err
    assert "kept" not in err and "goes on from there" not in err, err
    assert err.endswith(f"; `ablate run {path}` starts the study over\n"), err


@pytest.mark.parametrize("when", ["training", "between trials"])
def test_a_journal_file_deleted_mid_run_is_said_lost_not_kept(write_experiment, monkeypatch,
                                                              capsys, tmp_path, when):
    """A journal storage (journal:///FILE) deleted while a trial trains, or between two trials:
    Optuna appended to a new empty file and read it from the old offsets, and the run ended in a
    JSONDecodeError or FileNotFoundError traceback, or exit 130 saying it was interrupted and
    that the same command goes on from there, when everything recorded went with the file."""
    from ablation.sweep import _runner as sweep

    journal = tmp_path / "journal" / "study.log"
    path = write_experiment(variants="" if when == "training" else None)
    sets = ["--set", f'experiment.storage="journal:///{journal}"']
    real_train, real_run_one = transformers.Trainer.train, sweep._run_one
    started = []

    def train_after_deleting(self, *args, **kwargs):
        journal.unlink()
        return real_train(self, *args, **kwargs)

    def run_one_after_deleting(*args, **kwargs):
        started.append(1)
        if len(started) == 2:
            journal.unlink()
        return real_run_one(*args, **kwargs)

    if when == "training":
        monkeypatch.setattr(transformers.Trainer, "train", train_after_deleting)
    else:
        monkeypatch.setattr(sweep, "_run_one", run_one_after_deleting)
    capsys.readouterr()
    assert cli.main(["run", str(path), *sets]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith(f"ablate: error: the study storage {journal} was deleted or replaced "
                          "while ablate ran; every trial it recorded is lost, this run's "
                          "included"), err
    assert "kept" not in err and "goes on from there" not in err, err
    again = shlex.join(["ablate", "run", str(path), *sets])
    assert err.endswith(f"; `{again}` starts the study over\n"), err


def test_a_worker_waiting_for_its_study_whose_storage_stops_answering_says_so(
        write_experiment, monkeypatch, capsys):
    """`ablate worker` waiting for `ablate run` to make its study, on a storage that answered
    (no such study yet), then stopped (a PostgreSQL server restarting): it ended with exit 2 and
    `.../x.toml: [experiment] storage = ... cannot be opened`, blaming the file for a storage it
    had read a moment before. It is the storage that stopped answering: exit 1, that line."""
    import sqlalchemy.exc

    from ablation import queue

    path = write_experiment()
    storage = load_spec(path).experiment.storage
    Path(storage[len("sqlite:///"):]).parent.mkdir(parents=True)
    optuna.create_study(study_name="another", storage=storage)  # the storage answers: no study
    real = optuna.load_study
    calls = []

    def load_study(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # the second look, 5 s later: the server is down
            down = sqlalchemy.exc.OperationalError(
                "SELECT studies", {}, Exception('connection to server at "127.0.0.1", port 5432 '
                                                "failed: Connection refused"))
            raise optuna.exceptions.StorageInternalError("An exception is raised during the "
                                                         "commit.") from down
        return real(*args, **kwargs)

    monkeypatch.setattr(optuna, "load_study", load_study)
    monkeypatch.setattr(queue, "STUDY_POLL_SECONDS", 0.05)
    assert cli.main(["worker", str(path), "--wait", "30"]) == 1
    err = capsys.readouterr().err
    assert err == ("ablate: error: the study storage stopped answering (connection to server at "
                   '"127.0.0.1", port 5432 failed: Connection refused); nothing was changed: run '
                   "the same command again once it answers\n"), err


@pytest.mark.parametrize("errno_name", ["ENOLCK", "EOPNOTSUPP", "ENOSYS"])
def test_a_file_system_without_locks_is_one_line_before_anything_trains(
        write_experiment, monkeypatch, capsys, errno_name):
    """An output folder on a file system that keeps no locks (an NFS share mounted nolock, some
    FUSE mounts): flock's OSError ended `run` in a traceback. One line names the lock file and
    what to do; nothing trained."""
    import errno

    from ablation import locking

    def no_locks(handle, operation):
        code = getattr(errno, errno_name)
        raise OSError(code, f"flock: {errno_name}")

    monkeypatch.setattr(locking.fcntl, "flock", no_locks)
    path = write_experiment()
    assert cli.main(["run", str(path)]) == 2
    err = capsys.readouterr().err
    lock = load_spec(path).output_dir / ".queue.lock"
    assert err == (f"ablate: error: {lock}: its file system takes no file locks (flock: {errno_name}), "
                   "which ablate's processes take turns by: give output_dir (and a sqlite:/// or "
                   "journal:/// storage) a folder on a file system that does (a local disk, or NFS "
                   "mounted with locking)\n")
    assert not (load_spec(path).output_dir / "trials").exists()
