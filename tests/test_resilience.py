"""Resilient sweeps on the tiny BERT: re-runs, retries, time-outs, graceful stops, several
workers on one study (exactly once), and kill -9 at random moments followed by a resume."""

from __future__ import annotations

import collections
import json
import multiprocessing
import multiprocessing.synchronize
import os
import random
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import optuna
import pytest
import torch
from conftest import processes_with, queue_by_an_interrupted_run, signal_self

from ablation import cli, interrupts, records, train
from ablation.config import load_spec
from ablation.queue import open_study
from ablation.sweep import Work, run_study
from ablation.sweep._runner import _waiting_note

FOUR_VARIANTS = ("bs32 = { batch_size = 32 }\nlr = { learning_rate = 5e-3 }\n"
                 "wd = { weight_decay = 0.01 }\n")


def _trials(path: Path, sets: list[str] | None = None) -> list[optuna.trial.FrozenTrial]:
    return open_study(load_spec(path, sets), create=False).get_trials()


def _complete_keys(trials) -> collections.Counter:
    return collections.Counter(t.user_attrs["key"] for t in trials if t.state.name == "COMPLETE")


def test_rerun_runs_a_variant_again_and_supersedes_its_old_result(write_experiment, capsys):
    path = write_experiment()
    assert cli.main(["run", str(path)]) == 0
    assert cli.main(["run", str(path), "--rerun", "baseline_bs32"]) == 0
    trials = _trials(path)
    assert [t.user_attrs["key"] for t in trials] == ["baseline-s42", "baseline_bs32-s42",
                                                      "baseline_bs32-s42"]
    capsys.readouterr()
    assert cli.main(["status", str(path)]) == 0
    status = capsys.readouterr().out
    assert "   1  baseline_bs32-s42                SUPERSEDED" in status
    results = (load_spec(path).output_dir / "results.csv").read_text().splitlines()
    assert len(results) == 3 and results[2].startswith("baseline_bs32,42,2,COMPLETE")


def test_rerun_of_an_unknown_variant_is_bad_input(write_experiment, capsys):
    path = write_experiment()
    assert cli.main(["run", str(path), "--rerun", "nope"]) == 2
    assert "--rerun 'nope': no such variant" in capsys.readouterr().err


@pytest.mark.parametrize("mode, changes, said, advice", [
    ("add-one", "", "variant 'baseline_plus_wd' was run with weight_decay=0.1",
     "or give the change a new name in [ablation.changes]"),
    ("both", "ls = { label_smoothing = 0.1 }\n", "variants were run with other changes",
     "or run the new recipes as a new study (a new [experiment] name): `full` keeps its name "
     "whatever the changes are called"),
])
def test_a_changed_ablation_change_is_renamed_in_ablation_changes(write_experiment, capsys, mode,
                                                                   changes, said, advice):
    """An [ablation] variant's name comes from its change: that is the name to give anew."""
    path = write_experiment(variants="", extra=f'[ablation]\nmode = "{mode}"\n[ablation.changes]\n'
                                               f"wd = {{ weight_decay = 0.1 }}\n{changes}")
    assert cli.main(["run", str(path)]) == 0
    capsys.readouterr()
    assert cli.main(["run", str(path), "--set", "ablation.changes.wd.weight_decay=0.2"]) == 2
    err = capsys.readouterr().err
    assert said in err and err.endswith(f"{advice}\n")


def test_a_change_added_to_a_leave_one_out_study_is_not_told_to_rename_changes(write_experiment,
                                                                              capsys):
    """Adding a change changes `full` and every `full_minus_*` stored: renaming changes in
    [ablation.changes] would leave `full` changed and be refused again, so the advice is --rerun
    or a new study, and the new study it points to runs."""
    ablation = ('[ablation]\nmode = "leave-one-out"\n[ablation.changes]\n'
                "wd = { weight_decay = 0.1 }\nls = { label_smoothing = 0.1 }\n")
    path = write_experiment(variants="", extra=ablation)
    assert cli.main(["run", str(path)]) == 0
    capsys.readouterr()
    added = ["--set", "ablation.changes.cw.class_weight=balanced"]
    assert cli.main(["run", str(path), *added, "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "variants were run with other changes" in err and err.count("\n") == 1
    assert "new names in [ablation.changes]" not in err
    assert "a new study (a new [experiment] name)" in err
    new_study = ["--set", "experiment.name=tiny2",
                 "--set", f"experiment.output_dir={path.parent / 'reports' / 'tiny2'}"]
    assert cli.main(["run", str(path), *added, *new_study, "--dry-run"]) == 0


def test_a_variant_changed_since_its_run_is_refused_until_it_is_rerun(write_experiment, capsys):
    """A complete result is never shown under changes it was not trained with."""
    path = write_experiment()
    assert cli.main(["run", str(path)]) == 0
    changed = ["--set", "variants.bs32.batch_size=8"]
    for dry in ([], ["--dry-run"]):
        capsys.readouterr()
        assert cli.main(["run", str(path), *changed, *dry]) == 2
        err = capsys.readouterr().err
        rerun = shlex.join(["ablate", "run", str(path), "--rerun", "baseline_bs32", *changed])
        assert ("variant 'baseline_bs32' was run with batch_size=32; the file with its --set "
                f"options now says batch_size=8: `{rerun}` trains it again") in err  # as typed
        assert err.count("\n") == 1
    assert len(_trials(path)) == 2  # nothing queued
    capsys.readouterr()
    assert cli.main(["validate", str(path), *changed]) == 2  # validate refuses what run refuses
    assert "variant 'baseline_bs32' was run with batch_size=32" in capsys.readouterr().err
    assert cli.main(["run", str(path), *changed, "--rerun", "baseline_bs32"]) == 0
    trials = _trials(path)
    assert [(t.user_attrs["key"], t.user_attrs["overrides"]) for t in trials] == [
        ("baseline-s42", {}), ("baseline_bs32-s42", {"batch_size": 32}),
        ("baseline_bs32-s42", {"batch_size": 8})]
    results = (load_spec(path).output_dir / "results.csv").read_text()
    assert "batch_size=8" in results and "batch_size=32" not in results
    assert cli.main(["run", str(path), *changed]) == 0  # the stored result now matches the file


def test_a_changed_variant_is_refused_also_at_a_seed_the_file_no_longer_lists(write_experiment,
                                                                               capsys):
    """Seeds 42 and 7 run with batch 32; the file then lists seed 42 only and batch 8. The seed-7
    result still counts in the variant's row, so the change is refused; --rerun supersedes it
    too, and the row holds one recipe."""
    path = write_experiment()
    two_seeds = ["--set", "experiment.seeds=[42, 7]"]
    assert cli.main(["run", str(path), *two_seeds]) == 0
    changed = ["--set", "experiment.seeds=[42]", "--set", "variants.bs32.batch_size=8"]
    capsys.readouterr()
    assert cli.main(["run", str(path), *changed]) == 2
    assert "variant 'baseline_bs32' was run with batch_size=32" in capsys.readouterr().err
    assert cli.main(["run", str(path), *changed, "--rerun", "baseline_bs32", "--dry-run"]) == 0
    assert "the 2 complete result(s) of the variants run again" in capsys.readouterr().out
    assert cli.main(["run", str(path), *changed, "--rerun", "baseline_bs32"]) == 0
    rows = [row for row in (load_spec(path).output_dir / "results.csv").read_text().splitlines()
            if row.startswith("baseline_bs32,")]
    assert len(rows) == 1 and "batch_size=8" in rows[0]
    assert cli.main(["run", str(path), *changed]) == 0  # the stored results match the file
    assert cli.main(["run", str(path), *two_seeds]) == 2  # batch 32 again: refused, not mixed


def test_a_renamed_variant_is_trained_again_with_a_note(write_experiment, capsys):
    """bs32 renamed big: the same changes under a new name train again (a rename may be meant),
    and the dry run and the run say which stored trial had them."""
    path = write_experiment()
    assert cli.main(["run", str(path)]) == 0
    path.write_text(path.read_text().replace("bs32 = {", "big = {"))
    note = ("note: baseline_big-s42 (batch_size=32) trains what stored trial baseline_bs32-s42 "
            "trained, again under a new name")
    for dry in (["--dry-run"], []):
        capsys.readouterr()
        assert cli.main(["run", str(path), *dry]) == 0
        assert note in capsys.readouterr().out


def test_rerun_supersedes_only_the_results_it_trains_again(write_experiment, capsys):
    path = write_experiment()
    assert cli.main(["run", str(path)]) == 0
    # Another seed: baseline-s7 trains; baseline-s42 is not trained again, so it stays.
    assert cli.main(["run", str(path), "--rerun", "baseline", "--set", "experiment.seeds=[7]"]) == 0
    # --retry-failed does not hold back a variant named by --rerun; --only adds nothing failed.
    assert cli.main(["run", str(path), "--only", "baseline", "--rerun", "baseline_bs32",
                     "--retry-failed"]) == 0
    keys = [t.user_attrs["key"] for t in _trials(path)]
    assert keys == ["baseline-s42", "baseline_bs32-s42", "baseline-s7", "baseline_bs32-s42"]
    capsys.readouterr()
    assert cli.main(["status", str(path)]) == 0
    superseded = [line.split()[1] for line in capsys.readouterr().out.splitlines()
                  if "SUPERSEDED" in line]
    assert superseded == ["baseline_bs32-s42"]  # trial 1, replaced by trial 3


def test_retry_failed_runs_only_the_failed_trials(write_experiment, monkeypatch):
    path = write_experiment()
    real_train = train.train_trial

    def fail_bs32(trial, *args, **kwargs):
        if trial.variant == "baseline_bs32":
            raise RuntimeError("flaky")
        return real_train(trial, *args, **kwargs)

    monkeypatch.setattr(train, "train_trial", fail_bs32)
    assert cli.main(["run", str(path)]) == 1
    monkeypatch.setattr(train, "train_trial", real_train)
    new_variant = ["--set", "variants.lr.learning_rate=5e-3"]
    assert cli.main(["run", str(path), "--retry-failed", *new_variant]) == 0
    keys = [(t.user_attrs["key"], t.state.name) for t in _trials(path)]
    assert keys == [("baseline-s42", "COMPLETE"), ("baseline_bs32-s42", "FAIL"),
                    ("baseline_bs32-s42", "COMPLETE")]  # baseline_lr was not run


def test_retry_failed_with_rerun_still_retries_every_failed_trial(write_experiment, monkeypatch, capsys):
    path = write_experiment(variants=FOUR_VARIANTS)
    real_train = train.train_trial

    def fail_two(trial, *args, **kwargs):
        if trial.variant in ("baseline_bs32", "baseline_lr"):
            raise RuntimeError("flaky")
        return real_train(trial, *args, **kwargs)

    monkeypatch.setattr(train, "train_trial", fail_two)
    assert cli.main(["run", str(path)]) == 1
    monkeypatch.setattr(train, "train_trial", real_train)
    options = ["--retry-failed", "--rerun", "baseline_wd"]
    capsys.readouterr()
    assert cli.main(["run", str(path), "--dry-run", *options]) == 0
    planned = capsys.readouterr().out
    assert "plan: 4 trial(s), 3 to run" in planned  # both failed ones and the --rerun one
    assert cli.main(["run", str(path), *options]) == 0
    latest = {t.user_attrs["key"]: t.state.name for t in _trials(path)}  # the last attempt of each
    assert latest == dict.fromkeys(["baseline-s42", "baseline_bs32-s42", "baseline_lr-s42",
                                    "baseline_wd-s42"], "COMPLETE")
    assert len(_trials(path)) == 7  # 4, then the two failed ones and baseline_wd again


def test_a_changed_variant_is_refused_even_when_another_is_selected_and_all_are_named(
        write_experiment, capsys):
    """--only/--rerun of one variant does not let the report mix another's old recipe with the file's."""
    path = write_experiment(variants=FOUR_VARIANTS)
    assert cli.main(["run", str(path)]) == 0
    changed = ["--set", "variants.bs32.batch_size=8", "--set", "variants.wd.weight_decay=0.1"]
    for options in (["--rerun", "baseline_bs32"], ["--only", "baseline"], ["--dry-run"]):
        capsys.readouterr()
        assert cli.main(["run", str(path), *changed, *options]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1
        if options[0] == "--rerun":  # only the one not rerun is left to name
            assert "variant 'baseline_wd' was run with weight_decay=0.01" in err
        else:
            assert ("2 variants were run with other changes than the file with its --set options "
                    "now says (baseline_bs32: batch_size=32 → batch_size=8; baseline_wd: "
                    "weight_decay=0.01 → weight_decay=0.1): `ablate run ") in err
            assert "--rerun baseline_bs32 --rerun baseline_wd --set " in err
    assert len(_trials(path)) == 4  # nothing queued
    assert cli.main(["run", str(path), *changed, "--rerun", "baseline_bs32", "--rerun", "baseline_wd"]) == 0


def test_trials_running_past_trial_timeout_fail_and_the_study_goes_on(write_experiment):
    # Every trial needs minutes (5000 epochs) against a 1 s limit: independent of machine load.
    path = write_experiment(variants="bs32 = { batch_size = 32 }\n",
                            baseline="learning_rate = 1e-3\nepochs = 5000\nlogging_steps = 50\n")
    assert cli.main(["run", str(path), "--set", "experiment.trial_timeout=1"]) == 1
    states = [(t.user_attrs["key"], t.state.name, t.user_attrs.get("error", "")) for t in _trials(path)]
    assert [s[:2] for s in states] == [("baseline-s42", "FAIL"), ("baseline_bs32-s42", "FAIL")]
    for _, _, error in states:
        assert error.startswith("TrialTimeout: ran ") and "longer than trial_timeout = 1 s" in error


def test_a_failed_trial_is_one_line_on_the_terminal_and_its_traceback_is_in_its_log(write_experiment):
    path = write_experiment(baseline="learning_rate = 1e-3\nepochs = 5000\nlogging_steps = 50\n")
    run = subprocess.run([sys.executable, "-m", "ablation", "run", str(path), "--quiet", "--only",
                          "baseline", "--set", "experiment.trial_timeout=1"],
                         capture_output=True, text=True, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    assert run.returncode == 1
    assert "Traceback" not in run.stdout + run.stderr
    assert "trial 0 baseline-s42 FAILED: TrialTimeout: ran " in run.stdout + run.stderr
    trial_log = load_spec(path).output_dir / "trials" / "baseline-s42" / "trial.log"
    assert "Traceback (most recent call last)" in trial_log.read_text()
    # status names the log beside the one line too (it gave the line alone)
    status = subprocess.run([sys.executable, "-m", "ablation", "status", str(path)],
                            capture_output=True, text=True)
    [row] = [line for line in status.stdout.splitlines() if "baseline-s42" in line]
    assert "TrialTimeout: ran " in row and row.endswith(f" (log: {trial_log})")


def test_a_trial_log_that_a_full_disk_cannot_flush_does_not_stop_the_study(write_experiment,
                                                                          monkeypatch):
    """No space left for the last lines of a trial's log: the study goes on with its next trial
    (closing the log raised out of the trial, and the run crashed with a traceback)."""
    import errno
    import logging

    class FullDisk(logging.FileHandler):
        def close(self) -> None:
            super().close()
            if "baseline-s42" in self.baseFilename:
                raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(logging, "FileHandler", FullDisk)
    path = write_experiment()
    assert cli.main(["run", str(path)]) == 0
    assert _complete_keys(_trials(path)) == {"baseline-s42": 1, "baseline_bs32-s42": 1}


def test_graceful_stop_finishes_the_running_trial_and_leaves_the_rest_queued(write_experiment,
                                                                           monkeypatch):
    path = write_experiment()
    spec = load_spec(path)
    stop = threading.Event()
    real_train = train.train_trial

    def train_then_ask_to_stop(*args, **kwargs):
        stop.set()  # as if Ctrl+C came during the first trial
        return real_train(*args, **kwargs)

    monkeypatch.setattr(train, "train_trial", train_then_ask_to_stop)
    outcome = run_study(spec, stop=stop, echo=lambda line: None)
    assert outcome.completed == ["baseline-s42"]
    assert [(t.user_attrs["key"], t.state.name) for t in _trials(path)] == [
        ("baseline-s42", "COMPLETE"), ("baseline_bs32-s42", "WAITING")]
    monkeypatch.setattr(train, "train_trial", real_train)
    assert cli.main(["run", str(path)]) == 0
    assert _complete_keys(_trials(path)) == {"baseline-s42": 1, "baseline_bs32-s42": 1}


def test_a_graceful_stop_of_a_rerun_gives_the_command_that_goes_on_without_rerunning_again(
        write_experiment, monkeypatch, capsys):
    """`run --rerun baseline --graceful`, Ctrl+C during its first trial: the line names the
    command that goes on (its trials are queued by then), not "the same command", whose --rerun
    would supersede and train again the trial this run just finished."""
    path = write_experiment()
    sets = ["--set", "experiment.seeds=[1, 2]"]
    assert cli.main(["run", str(path), *sets]) == 0
    real_train = train.train_trial

    def ctrl_c_then_train(*args, **kwargs):
        signal.raise_signal(signal.SIGINT)  # Ctrl+C while the first trial trains
        return real_train(*args, **kwargs)

    monkeypatch.setattr(train, "train_trial", ctrl_c_then_train)
    capsys.readouterr()
    assert cli.main(["run", str(path), *sets, "--rerun", "baseline", "--graceful"]) == 0
    err = capsys.readouterr().err
    goes_on = ["run", str(path), *sets, "--graceful"]
    assert f"`{shlex.join(['ablate', *goes_on])}` goes on from there" in err, err
    assert "run the same command again" not in err
    monkeypatch.setattr(train, "train_trial", real_train)
    assert cli.main(goes_on) == 0
    trials = _trials(path, sets[1::2])
    assert _complete_keys(trials) == {"baseline-s1": 2, "baseline-s2": 2, "baseline_bs32-s1": 1,
                                      "baseline_bs32-s2": 1}  # each baseline trained once more
    assert len(trials) == 6


def test_graceful_stop_and_only_reach_the_worker_processes(write_experiment):
    """Ctrl+C once on `run --workers 2 --graceful`: the workers finish their running trials and
    stop, exit 0. Then `--only` workers claim only that variant's queued trials."""
    path = write_experiment(variants=FOUR_VARIANTS)
    sets = ["--set", "experiment.seeds=[1, 2]", "--set", "baseline.epochs=20",
            "--set", "baseline.eval_steps=100"]
    log = path.parent / "run.err"
    with log.open("w") as err:
        run = _ablate("run", str(path), "--workers", "2", "--graceful", *sets, stderr=err)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        running = [t for t in _trials_if_any(path, sets) if t.state.name == "RUNNING"]
        if len(running) == 2:
            break
        time.sleep(0.2)
    assert len(running) == 2, "two workers each started a trial"
    run.send_signal(signal.SIGINT)  # what Ctrl+C sends to the run (the workers have their own session)
    assert run.wait(timeout=300) == 0
    states = collections.Counter(t.state.name for t in _trials(path, sets[1::2]))
    assert states == {"COMPLETE": 2, "WAITING": 6}  # finished, not failed; the rest still queued
    said = log.read_text()  # once, by the run, not once more by each worker it passed Ctrl+C to
    assert said.count("stopping after the running trial") == 1, said
    assert said.count("stopped by Ctrl+C with no trial left half-done") == 1, said

    assert cli.main(["run", str(path), *sets, "--only", "baseline_wd", "--workers", "2"]) == 0
    left = {t.user_attrs["key"] for t in _trials(path, sets[1::2]) if t.state.name == "WAITING"}
    assert left == {"baseline_bs32-s1", "baseline_bs32-s2", "baseline_lr-s1", "baseline_lr-s2"}


def test_graceful_ctrl_c_with_swanlab_finishes_the_trial_and_its_run(write_experiment):
    """SwanLab installs its own Ctrl+C handler, which would finish the run under the trial's feet;
    ablate keeps Ctrl+C: the trial completes and its run is finished normally."""
    path = write_experiment(tracking='backend = "swanlab"\nproject = "ablate-tests"\nmode = "local"')
    sets = ["--set", "baseline.epochs=30", "--set", "baseline.eval_steps=100"]
    run = _ablate("run", str(path), "--graceful", *sets)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not any(
            t.state.name == "RUNNING" for t in _trials_if_any(path, sets)):
        time.sleep(0.2)
    time.sleep(2)  # well inside the trial, its SwanLab run started
    run.send_signal(signal.SIGINT)
    assert run.wait(timeout=300) == 0
    assert [(t.user_attrs["key"], t.state.name) for t in _trials(path, sets[1::2])] == [
        ("baseline-s42", "COMPLETE"), ("baseline_bs32-s42", "WAITING")]


def _wait_running(path: Path, sets: list[str], count: int) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if sum(t.state.name == "RUNNING" for t in _trials_if_any(path, sets)) >= count:
            return
        time.sleep(0.2)
    raise AssertionError(f"{count} trial(s) never ran")


def test_sigterm_interrupts_like_ctrl_c_and_records_the_trial(write_experiment):
    """kill (SIGTERM), as a job scheduler sends it: exit 130 and the running trial recorded as
    interrupted, not left RUNNING by a process that is gone."""
    path = write_experiment()
    sets = ["--set", "baseline.epochs=30", "--set", "baseline.eval_steps=100"]
    run = _ablate("run", str(path), *sets)
    _wait_running(path, sets, 1)
    run.send_signal(signal.SIGTERM)
    assert run.wait(timeout=120) == 130
    assert [(t.user_attrs["key"], t.state.name, t.user_attrs.get("error"))
            for t in _trials(path, sets[1::2])] == [
        ("baseline-s42", "FAIL", "interrupted (Ctrl+C or SIGTERM)"),
        ("baseline_bs32-s42", "WAITING", None)]


def test_sigterm_stops_graceful_workers_at_once(write_experiment):
    """SIGTERM to `run --workers 2 --graceful` (a job scheduler's stop) stops its workers now, as
    it stops a run in one process: their first Ctrl+C would only ask them to finish their trials."""
    path = write_experiment(variants=FOUR_VARIANTS)
    sets = ["--set", "baseline.epochs=300", "--set", "baseline.eval_steps=1000"]
    run = _ablate("run", str(path), "--workers", "2", "--graceful", *sets)
    _wait_running(path, sets, 2)
    run.send_signal(signal.SIGTERM)
    assert run.wait(timeout=120) == 130
    states = collections.Counter((t.state.name, t.user_attrs.get("error"))
                                 for t in _trials(path, sets[1::2]))
    assert states == {("FAIL", "interrupted (Ctrl+C or SIGTERM)"): 2, ("WAITING", None): 2}


def test_an_interrupt_inside_held_is_raised_at_its_end() -> None:
    done = []
    with interrupts.handled(graceful=False), pytest.raises(KeyboardInterrupt):
        with interrupts.held():
            signal_self(signal.SIGINT)
            done.append("the held block went on")
        done.append("not reached")
    assert done == ["the held block went on"]
    with interrupts.handled(graceful=True) as stop:  # the first Ctrl+C only asks to stop
        signal_self(signal.SIGINT)
        assert stop.is_set()
        with pytest.raises(KeyboardInterrupt):
            signal_self(signal.SIGINT)


class _InterruptedWhileCollected:
    """An object whose `__del__` receives the signal: Python prints "Exception ignored" for the
    KeyboardInterrupt its handler raises there, and goes on."""

    def __init__(self, number: int) -> None:
        self.number = number

    def __del__(self) -> None:
        signal_self(self.number)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # on purpose
def test_an_interrupt_python_swallowed_is_raised_again_by_check() -> None:
    with interrupts.handled(graceful=False):
        interrupts.check()  # nothing came: nothing raised
        _InterruptedWhileCollected(signal.SIGTERM)  # collected at once: swallowed inside __del__
        with pytest.raises(KeyboardInterrupt):
            interrupts.check()
    interrupts.check()  # the block that handled it is over: a later run starts afresh


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # on purpose
@pytest.mark.parametrize("number", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_an_interrupt_swallowed_in_a_del_during_training_still_stops_the_trial(
        write_experiment, monkeypatch, number):
    """The worker that trained the queue on after its `run` was killed (a CI failure): its
    parent-death SIGTERM came while a `__del__` ran, the KeyboardInterrupt was swallowed, and
    SIGTERM was ignored from then on. The trial stops at the next step, recorded as interrupted."""
    path = write_experiment()
    real = train.TrackerCallback.on_step_end

    def step_end(callback, args, state, control, **kwargs):
        real(callback, args, state, control, **kwargs)
        if state.global_step == 2:
            _InterruptedWhileCollected(number)

    monkeypatch.setattr(train.TrackerCallback, "on_step_end", step_end)
    assert cli.main(["run", str(path)]) == 130
    assert [(t.user_attrs["key"], t.state.name, t.user_attrs.get("error"))
            for t in _trials(path)] == [
        ("baseline-s42", "FAIL", "interrupted (Ctrl+C or SIGTERM)"),
        ("baseline_bs32-s42", "WAITING", None)]


@pytest.mark.parametrize("number", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_an_interrupt_during_a_claim_records_the_claimed_trial(write_experiment, monkeypatch,
                                                               number):
    """Ctrl+C or kill after a claim made the trial RUNNING but before the claim returned (a
    worker killed with its `run` hit this): the trial is recorded as interrupted, not left
    RUNNING until its heartbeats go stale."""
    path = write_experiment()
    real = records.this_worker

    def interrupted_claim() -> str:  # called by queue.claim once the trial is RUNNING
        signal_self(number)
        return real()

    monkeypatch.setattr(records, "this_worker", interrupted_claim)
    assert cli.main(["run", str(path)]) == 130
    assert [(t.user_attrs["key"], t.state.name, t.user_attrs.get("error"))
            for t in _trials(path)] == [
        ("baseline-s42", "FAIL", "interrupted (Ctrl+C or SIGTERM)"),
        ("baseline_bs32-s42", "WAITING", None)]


def test_an_interrupt_while_a_result_is_recorded_keeps_the_result(write_experiment, monkeypatch):
    """Ctrl+C between a finished trial's result and its state: the trial is kept complete (its
    training is not thrown away as interrupted), then the run stops with 130."""
    path = write_experiment()
    real = optuna.Trial.set_user_attr

    def interrupted_write(trial: optuna.Trial, key: str, value: object) -> None:
        real(trial, key, value)
        if key == records.RESULT:
            signal_self(signal.SIGINT)

    monkeypatch.setattr(optuna.Trial, "set_user_attr", interrupted_write)
    assert cli.main(["run", str(path)]) == 130
    baseline, queued = _trials(path)
    assert (baseline.state.name, queued.state.name) == ("COMPLETE", "WAITING")
    assert baseline.value == baseline.user_attrs[records.RESULT]["validation"]["macro_f1"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's")
def test_workers_stop_when_the_run_that_started_them_is_killed(write_experiment):
    """kill -9 of `run --workers 2`: its workers get SIGTERM from the kernel (a parent-death
    signal) and exit, instead of training on unseen; their trials are recorded as interrupted
    (or, where a worker was stopped before it could write that, go stale) and the next run trains
    every trial exactly once."""
    path = write_experiment(variants=FOUR_VARIANTS)
    sets = ["--set", "baseline.epochs=30", "--set", "baseline.eval_steps=100",
            "--set", "experiment.heartbeat=1"]
    run = _ablate("run", str(path), "--workers", "2", *sets)
    _wait_running(path, sets, 2)
    run.send_signal(signal.SIGKILL)
    run.wait(timeout=60)
    output_dir = str(load_spec(path, sets[1::2]).output_dir)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and processes_with(output_dir):
        time.sleep(0.5)
    assert not processes_with(output_dir), "the workers exited"
    trials = _trials(path, sets[1::2])
    states = collections.Counter(t.state.name for t in trials)
    seen = [(t.number, t.state.name, t.user_attrs.get("key"), t.user_attrs.get("worker"),
             t.user_attrs.get("error"), t.datetime_start, t.datetime_complete) for t in trials]
    # nothing trained on after the kill (seen: which process had each trial, and when, if not)
    assert states["COMPLETE"] == 0 and states["WAITING"] == 2, (run.pid, time.time(), seen)
    interrupted = [t for t in _trials(path, sets[1::2]) if t.state.name == "FAIL"]
    assert all(t.user_attrs["error"] == "interrupted (Ctrl+C or SIGTERM)" for t in interrupted)

    time.sleep(4)  # a trial a worker could not record is stale after 3 missed beats
    assert cli.main(["run", str(path), *sets, "--workers", "2"]) == 0
    assert _complete_keys(_trials(path, sets[1::2])) == {
        f"{name}-s42": 1 for name in ("baseline", "baseline_bs32", "baseline_lr", "baseline_wd")}


# A process of ablate's that watches as off Linux (macOS: no parent-death signal), then waits:
# argv, the pid it was started by and the one it also watches ('' for none of either).
_WATCHING = ("import sys, time\n"
             "import psutil\n"  # before: it picks its platform's module as it is imported
             "sys.platform = 'darwin'\n"
             "from ablation import interrupts\n"
             "interrupts.watch_parent(*(int(a) if a else None for a in sys.argv[1:3]))\n"
             "print('watching', flush=True)\n"
             "time.sleep(60)\n")


def _ended_within(pid: int, seconds: float) -> bool:
    import psutil

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:  # init reaps it later
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.1)
    return False


def test_off_linux_a_worker_stops_when_the_run_that_started_it_is_killed() -> None:
    """macOS has no parent-death signal: a worker of a `run --workers` killed with kill -9 went
    on training unseen there. It watches its run itself (simulated here: sys.platform darwin)."""
    start = ("import os, subprocess, sys, time\n"
             f"watching = subprocess.Popen([sys.executable, '-c', {_WATCHING!r}, str(os.getpid()), ''])\n"
             "print(watching.pid, flush=True)\n"
             "time.sleep(60)\n")
    run = subprocess.Popen([sys.executable, "-c", start], stdout=subprocess.PIPE, text=True)
    try:
        lines = {run.stdout.readline().strip(), run.stdout.readline().strip()}
        lines.discard("watching")
        (worker,) = (int(line) for line in lines)
        time.sleep(2 * interrupts.WATCH_EVERY_S)
        assert not _ended_within(worker, 0), "it waits while its run lives"
        run.kill()
        run.wait()
        assert _ended_within(worker, 10), "the worker ended with its run"
    finally:
        run.kill()


def test_off_linux_a_trials_processes_stop_when_the_worker_that_owns_it_is_killed() -> None:
    """macOS: torchrun, in a session of its own, outlives a worker killed with kill -9, and its
    processes trained on unseen; each watches the worker too (simulated: sys.platform darwin)."""
    worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    rank = subprocess.Popen([sys.executable, "-c", _WATCHING, "", str(worker.pid)],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert rank.stdout.readline().strip() == "watching"
        time.sleep(2 * interrupts.WATCH_EVERY_S)
        assert rank.poll() is None, "it trains while its worker lives"
        worker.kill()
        worker.wait()
        assert rank.wait(timeout=10) == -signal.SIGTERM
    finally:
        worker.kill()
        rank.kill()


def test_worker_processes_keep_every_local_swanlab_run_and_point(write_experiment):
    """Two workers write one local SwanLab database: every trial is a run with all its points."""
    import json
    import sqlite3

    path = write_experiment(tracking='backend = "swanlab"\nproject = "ablate-tests"\nmode = "local"')
    sets = ["--set", "experiment.seeds=[1, 2]"]
    assert cli.main(["run", str(path), "--workers", "2", *sets]) == 0
    swanlog = load_spec(path).output_dir / "swanlog"
    store = sqlite3.connect(f"file:{swanlog}/runs.swanlab?mode=ro", uri=True)
    runs = store.execute("select id, run_id, name from experiment").fetchall()
    results = {t.user_attrs["key"]: t.user_attrs["result"] for t in _trials(path, sets[1::2])}
    assert sorted(name for _, _, name in runs) == sorted(results)

    def points(run: int, run_id: str, tag: str) -> int:
        (folder,) = store.execute("select folder from tag where experiment_id=? and name=?",
                                  (run, tag)).fetchone()
        files = (swanlog / run_id / "logs" / folder).glob("*.log")
        return len({json.loads(line)["index"] for file in files for line in file.open()})

    for run, run_id, name in runs:
        assert points(run, run_id, "train/loss") == len(results[name]["history"]), name
        assert points(run, run_id, "eval/macro_f1") == len(results[name]["eval_history"]), name
        assert points(run, run_id, "test/macro_f1") == 1, name
        assert points(run, run_id, "validation/macro_f1") == 1, name
        assert points(run, run_id, "test/f1_0") == points(run, run_id, "validation/f1_2") == 1


def test_a_killed_trials_local_swanlab_run_ends_as_crashed_when_its_trial_is_failed_as_stale(
        write_experiment):
    """kill -9 mid-trial: the study fails the trial as stale and trains it again (`-try2`), but
    the killed attempt's run stayed `running` in the local dashboard forever. The run that takes
    the trial over now ends the dead run as crashed, as the study records its trial."""
    import sqlite3

    path = write_experiment(tracking='backend = "swanlab"\nproject = "ablate-tests"\nmode = "local"',
                            variants="")
    sets = ["--set", "baseline.epochs=8", "--set", "baseline.eval_steps=100",
            "--set", "experiment.heartbeat=1"]
    swanlog = load_spec(path, sets[1::2]).output_dir / "swanlog"

    def runs() -> list[tuple[str, int]]:
        try:
            store = sqlite3.connect(f"file:{swanlog}/runs.swanlab?mode=ro", uri=True)
            try:
                return list(store.execute("select name, status from experiment order by id"))
            finally:
                store.close()
        except sqlite3.Error:  # not made yet
            return []

    run = _ablate("run", str(path), *sets)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not runs():
        time.sleep(0.2)
    time.sleep(0.5)  # a few points logged
    run.send_signal(signal.SIGKILL)
    run.wait(timeout=60)
    assert runs() == [("baseline-s42", 0)]  # running: nothing of ablate's ran after the kill

    time.sleep(4)  # stale after 3 missed beats
    assert cli.main(["run", str(path), *sets]) == 0
    (trial, retry) = _trials(path, sets[1::2])
    assert (trial.state.name, retry.state.name) == ("FAIL", "COMPLETE")
    assert runs() == [("baseline-s42", -1), ("baseline-s42-try2", 1)]  # -1: crashed


def _trials_if_any(path: Path, sets: list[str]) -> list[optuna.trial.FrozenTrial]:
    try:
        return _trials(path, sets[1::2])
    except Exception:  # not created yet
        return []


@pytest.mark.parametrize("storage", ["sqlite", "journal"])
def test_four_workers_run_every_trial_exactly_once(write_experiment, tmp_path, storage):
    path = write_experiment(variants=FOUR_VARIANTS)
    # Trials of a few seconds: the workers start up a second or more apart on 2 busy cores.
    sets = ["--set", "experiment.seeds=[1, 2]", "--set", "baseline.epochs=6"]
    if storage == "journal":
        sets += ["--set", f'experiment.storage="journal:///{tmp_path}/study.journal"']
    assert cli.main(["run", str(path), "--workers", "4", *sets]) == 0
    trials = _trials(path, [s for s in sets if s != "--set"])
    assert len(trials) == 8  # nothing claimed twice, no stray trial
    assert set(_complete_keys(trials).values()) == {1} and len(_complete_keys(trials)) == 8
    # Trained by the worker processes, each claiming from the queue (not by this one). Which
    # worker gets how many depends on when each is up (one may get none), so only "more than one".
    processes = {t.user_attrs["worker"] for t in trials}
    assert records.this_worker() not in processes and len(processes) >= 2, processes


def test_a_run_again_after_an_interruption_trains_the_queued_trials_in_its_workers(
        write_experiment, monkeypatch):
    """Interrupted after planning, a run leaves every trial queued: the same command with
    --workers trains them in worker processes, not alone in this one."""
    from ablation.sweep import _runner as sweep

    path = write_experiment()

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(sweep, "work", interrupted)
        assert cli.main(["run", str(path)]) == 130
    assert {t.state.name for t in _trials(path, [])} == {"WAITING"}
    assert cli.main(["run", str(path), "--workers", "2"]) == 0
    trials = _trials(path, [])
    assert len(trials) == 2 and {t.state.name for t in trials} == {"COMPLETE"}
    assert records.this_worker() not in {t.user_attrs["worker"] for t in trials}


def test_an_interrupted_worker_names_the_run_that_trains_its_stopped_trial_again(
        write_experiment, monkeypatch, capsys):
    """Ctrl+C on `ablate worker` records its trial as interrupted, which no worker claims again
    (the same worker command trains only the queued ones): its line names the `ablate run`, with
    the worker's --storage and --sets, that does. Stopped with no trial of its own, it names the
    same worker command (no --wait: the study is there)."""
    from ablation.sweep import _runner as sweep

    path = write_experiment()
    sets = ["--set", "baseline.epochs=1"]
    storage = load_spec(path).experiment.storage
    queue_by_an_interrupted_run(monkeypatch, path, sets)  # the trials wait queued
    worker = ["worker", str(path), "--storage", storage, *sets]
    with monkeypatch.context() as patch:  # Ctrl+C before it claimed a trial: the same worker
        patch.setattr(sweep, "work", lambda *args, **kwargs: signal_self(signal.SIGINT))
        capsys.readouterr()
        assert cli.main([*worker, "--wait", "5"]) == 130
    assert capsys.readouterr().err == (
        "ablate: interrupted; completed trials are kept in the storage; "
        f"`{shlex.join(['ablate', *worker[:4], *sets])}` goes on with the trials still queued\n")
    real_train = train.train_trial

    def ctrl_c_then_train(*args, **kwargs):
        signal.raise_signal(signal.SIGINT)  # Ctrl+C while the worker's first trial trains
        return real_train(*args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(train, "train_trial", ctrl_c_then_train)
        capsys.readouterr()
        assert cli.main(worker) == 130
    err = capsys.readouterr().err
    stopped = [t.user_attrs["key"] for t in _trials(path, sets[1::2]) if t.state.name == "FAIL"]
    assert len(stopped) == 1, err
    goes_on = ["ablate", "run", str(path), *sets, "--set", f"experiment.storage={json.dumps(storage)}"]
    assert err == (f"ablate: interrupted; completed trials are kept in the storage; {stopped[0]} is "
                   "recorded as interrupted and no worker trains it again: "
                   f"`{shlex.join(goes_on)}` does, with the trials still queued\n"), err
    assert cli.main(worker) == 0  # the queued trial alone
    assert [t.state.name for t in _trials(path, sets[1::2])
            if t.user_attrs["key"] == stopped[0]] == ["FAIL"]
    assert cli.main(goes_on[1:]) == 0
    assert _complete_keys(_trials(path, sets[1::2])) == {"baseline-s42": 1, "baseline_bs32-s42": 1}


def test_a_graceful_worker_names_the_worker_command_that_goes_on(write_experiment, monkeypatch,
                                                                 capsys):
    """`ablate worker --graceful`, Ctrl+C once: its trial finishes, and its last line names the
    same worker command (no --wait), which trains the trials left queued."""

    path = write_experiment()
    sets = ["--set", "baseline.epochs=1"]
    queue_by_an_interrupted_run(monkeypatch, path, sets)  # the trials wait queued
    real_train = train.train_trial

    def ctrl_c_then_train(*args, **kwargs):
        signal.raise_signal(signal.SIGINT)  # Ctrl+C while the worker's first trial trains
        return real_train(*args, **kwargs)

    worker = ["worker", str(path), "--graceful", *sets]
    with monkeypatch.context() as patch:
        patch.setattr(train, "train_trial", ctrl_c_then_train)
        capsys.readouterr()
        assert cli.main([*worker, "--wait", "5"]) == 0
    last = capsys.readouterr().out.splitlines()[-1]
    assert last.endswith("; stopped by Ctrl+C with no trial left half-done; "
                         f"`{shlex.join(['ablate', *worker])}` goes on with the trials still "
                         "queued"), last
    assert cli.main(worker) == 0
    assert _complete_keys(_trials(path, sets[1::2])) == {"baseline-s42": 1, "baseline_bs32-s42": 1}


def test_worker_processes_train_on_what_the_studys_sets_say(write_experiment, capfd):
    """`--workers` starts `ablate worker` processes: they read the data through the same --sets
    (here 16 training rows), so they train exactly what one process would."""
    path = write_experiment(variants="bs4 = { batch_size = 4 }\n")
    sets = ["--set", "data.max_train_samples=16"]
    assert cli.main(["run", str(path), "--workers", "2", *sets]) == 0
    assert "error" not in capfd.readouterr().err  # no worker refused the study's data
    alone = ["--set", 'experiment.name="alone"', "--set",
             f'experiment.output_dir="{path.parent / "reports" / "alone"}"']
    assert cli.main(["run", str(path), *sets, *alone]) == 0

    def results(sets: list[str]) -> dict[str, tuple]:
        return {t.user_attrs["key"]: (t.user_attrs["result"]["steps"], t.value)
                for t in _trials(path, sets[1::2])}

    assert results(sets) == results(sets + alone)
    assert results(sets)["baseline_bs4-s42"][0] == 4 * load_spec(path).baseline.epochs  # 16 / 4


def test_a_worker_reading_other_rows_is_refused_before_it_claims_a_trial(write_experiment, capsys,
                                                                         tiny_data_dir, tmp_path):
    """The same [data] keys, another machine's copy of the files with a row changed."""
    path = write_experiment()
    assert cli.main(["run", str(path), "--only", "baseline"]) == 0
    study = open_study(load_spec(path), create=False)
    # work waiting for a worker
    study.enqueue_trial({}, user_attrs={records.VARIANT: "baseline", records.SEED: 7,
                                        records.KEY: "baseline-s7", records.OVERRIDES: {}})
    copy = shutil.copytree(tiny_data_dir, tmp_path / "copied-data")
    train = (copy / "train.csv").read_text().splitlines()
    train[1] = "a changed text," + train[1].rsplit(",", 1)[1]
    (copy / "train.csv").write_text("\n".join(train) + "\n")
    capsys.readouterr()
    assert cli.main(["worker", str(path), "--set", f'data.dataset="{copy}"']) == 2
    err = capsys.readouterr().err
    assert "other data rows" in err and "--set options of the `ablate run`" in err
    assert err.count("\n") == 1
    assert [t.state.name for t in study.get_trials()] == ["COMPLETE", "WAITING"]


def test_a_worker_leaves_a_trial_not_of_ablate_in_a_shared_storage_as_it_is(write_experiment,
                                                                            tmp_path, capsys):
    """A trial put in a shared storage by another program or by hand, of variant `../../x`: a
    worker claimed it and made its folder trials/../../x-s1, outside the output folder, emptying
    what was there before training into it; the report and status listed its name."""
    from ablation import queue
    from ablation.sweep import select_trials

    path = write_experiment(variants="")
    spec = load_spec(path)
    study = open_study(spec)
    outside = tmp_path / "precious-s1"
    outside.mkdir()
    (outside / "notes.txt").write_text("mine")
    variant = os.path.relpath(tmp_path / "precious", spec.output_dir / "trials")
    study.enqueue_trial({}, user_attrs={"variant": variant, "seed": 1, "key": f"{variant}-s1",
                                        "overrides": {}})
    study.enqueue_trial({}, user_attrs={"variant": "baseline\nline", "seed": 1,
                                        "key": "baseline\nline-s1", "overrides": {}})
    queue.enqueue(study, select_trials(spec, None))
    assert cli.main(["worker", str(path)]) == 0
    assert "precious" not in capsys.readouterr().out
    assert [p.name for p in outside.iterdir()] == ["notes.txt"]
    assert [t.state.name for t in _trials(path)] == ["WAITING", "WAITING", "COMPLETE"]
    assert [r.key for r in records.load_records(open_study(spec, create=False))] == ["baseline-s42"]


def test_a_worker_started_while_a_run_plans_waits_for_its_queue(write_experiment):
    """Started beside `ablate run` (a job scheduler starts both at once), a worker found the
    study the run had just made, with nothing queued yet, and stopped at once."""
    from ablation import queue
    from ablation.sweep import select_trials

    path = write_experiment()
    assert cli.main(["run", str(path), "--only", "baseline"]) == 0
    spec = load_spec(path)
    with queue.planning_lock(spec, print):  # a run loading its data, its trials not yet queued
        worker = subprocess.Popen([sys.executable, "-m", "ablation", "worker", str(path)],
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        lines = []
        for line in worker.stdout:
            lines.append(line)
            if "waiting for another `ablate run`" in line or "worker done" in line:
                break
        queue.enqueue(open_study(spec, create=False),
                      [t for t in select_trials(spec, None) if t.variant == "baseline_bs32"])
    output = "".join(lines) + worker.communicate(timeout=300)[0]
    assert worker.returncode == 0, output
    assert "worker done: 1 trial(s) complete, 0 failed" in output


def test_a_worker_started_before_the_run_waits_for_its_study_and_trials(write_experiment,
                                                                        monkeypatch, capsys):
    """A job scheduler starts `ablate worker` on several machines and `ablate run` on one at about
    the same time: a worker first was refused (`no study ... yet`). It waits, in one line, while
    the study is missing and while the run that made it still plans (no trial queued yet)."""
    from ablation import queue
    from ablation.sweep import select_trials

    path = write_experiment(variants="")
    spec = load_spec(path)
    real_open, looks = queue.open_study, []

    def the_run_goes_on_meanwhile(spec_: Any, create: bool = True, **options: Any) -> optuna.Study:
        looks.append((create, options.get("writes")))
        if len(looks) == 2:  # the run has made the study and loads its data
            real_open(spec)
        elif len(looks) == 4:  # and has queued its trials
            queue.enqueue(real_open(spec, create=False), select_trials(spec, None))
        return real_open(spec_, create, **options)

    monkeypatch.setattr(queue, "STUDY_POLL_SECONDS", 0.01)
    monkeypatch.setattr(queue, "open_study", the_run_goes_on_meanwhile)
    assert cli.main(["worker", str(path)]) == 0
    out = capsys.readouterr().out
    waiting = [line for line in out.splitlines() if line.startswith("waiting for")]
    assert waiting == [f"waiting for `ablate run {path}` to create study 'tiny' in "
                       f"sqlite:///{spec.output_dir}/study.db (Ctrl+C to stop)"], out
    assert "worker done: 1 trial(s) complete, 0 failed" in out
    # the storage's folder checked for writing (a probe file) until the study is found, not at
    # every poll after
    assert looks[:4] == [(False, True), (False, True), (False, False), (False, False)], looks


def test_a_worker_waits_at_most_wait_seconds_for_its_study(write_experiment, monkeypatch, capsys):
    from ablation import queue

    path = write_experiment(variants="")
    monkeypatch.setattr(queue, "STUDY_POLL_SECONDS", 0.01)
    assert cli.main(["worker", str(path), "--wait", "0.2"]) == 2
    captured = capsys.readouterr()
    assert "waiting for `ablate run" in captured.out
    assert captured.err.count("\n") == 1 and captured.err.startswith("ablate: error: no study 'tiny'")
    assert "(this worker waited 0.2 s for it: --wait)" in captured.err
    assert cli.main(["worker", str(path), "--wait", "0"]) == 2  # refused at once, as before
    captured = capsys.readouterr()
    assert "waiting" not in captured.out and "; run `ablate run" in captured.err
    assert cli.main(["worker", str(path), "--wait", "soon"]) == 2
    assert "'soon' is not a number of seconds >= 0" in capsys.readouterr().err
    assert not (load_spec(path).output_dir / "study.db").exists()  # looking made nothing


def test_ctrl_c_stops_a_worker_waiting_for_its_study_in_one_line(write_experiment):
    path = write_experiment(variants="")
    worker = subprocess.Popen([sys.executable, "-m", "ablation", "worker", str(path)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = []
    for line in worker.stdout:  # printed at once, also into a pipe or a log file
        lines.append(line)
        if line.startswith("waiting for"):
            break
    assert lines and lines[-1].endswith("(Ctrl+C to stop)\n"), lines
    worker.send_signal(signal.SIGINT)
    out, err = worker.communicate(timeout=60)
    assert worker.returncode == 130, err
    assert err.startswith("ablate: interrupted") and err.count("\n") == 1, err


def test_graceful_ctrl_c_of_a_worker_waiting_for_its_study_says_it_stopped_waiting(
        write_experiment):
    """--graceful's first Ctrl+C said "stopping after the running trial" to a worker that only
    waited for its `run` to make the study: nothing ran. It stops waiting at once, and says so."""
    path = write_experiment(variants="")
    worker = subprocess.Popen([sys.executable, "-m", "ablation", "worker", str(path), "--graceful"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in worker.stdout:
        if line.startswith("waiting for"):
            break
    worker.send_signal(signal.SIGINT)
    out, err = worker.communicate(timeout=60)
    assert worker.returncode == 0, err
    assert err == "\nablate: stopped waiting for the study (nothing was running)\n", err
    assert "worker done: 0 trial(s) complete, 0 failed" in out


def test_graceful_ctrl_c_of_a_worker_waiting_on_a_planning_run_says_so_and_takes_no_trial(
        write_experiment):
    """The same for a worker waiting while another `run` of a study plans (it holds the planning
    lock, which cannot be waited on with a stop): the line says it stops once that run has
    queued, and it then takes no trial."""
    from ablation import queue
    from ablation.sweep import select_trials

    path = write_experiment(variants="")
    spec = load_spec(path)
    with queue.planning_lock(spec, print):  # a second run of the study plans
        queue.enqueue(open_study(spec), select_trials(spec, None))
        worker = subprocess.Popen([sys.executable, "-m", "ablation", "worker", str(path),
                                   "--graceful"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True)
        for line in worker.stdout:
            if line.startswith("waiting for another"):
                break
        worker.send_signal(signal.SIGINT)
        time.sleep(1)  # the line is printed while the lock is still held
    out, err = worker.communicate(timeout=120)
    assert worker.returncode == 0, err
    assert err == ("\nablate: stopping once the other `ablate run` has queued its trials (nothing "
                   "was running; Ctrl+C again to stop now)\n"), err
    assert "worker done: 0 trial(s) complete, 0 failed" in out
    assert [t.state.name for t in open_study(spec, create=False).get_trials()] == ["WAITING"]


def test_graceful_ctrl_c_while_a_run_plans_says_it_stops_once_queued_and_trains_nothing(
        write_experiment, monkeypatch, capsys):
    """--graceful's first Ctrl+C while the run planned said "stopping after the running trial":
    nothing ran. It says the run stops once its trials are queued, and none of them trains."""
    from ablation.sweep import _runner

    path = write_experiment(variants="")
    real_plan = _runner._plan_and_queue

    def ctrl_c_while_planning(*args, **kwargs):
        signal_self(signal.SIGINT)
        return real_plan(*args, **kwargs)

    monkeypatch.setattr(_runner, "_plan_and_queue", ctrl_c_while_planning)
    assert cli.main(["run", str(path), "--graceful"]) == 0
    said = capsys.readouterr().err.splitlines()
    assert said[:2] == ["", "ablate: stopping once this run has queued its trials (nothing was "
                            "running; Ctrl+C again to stop now)"], said
    assert said[2].startswith("stopped by Ctrl+C with no trial left half-done"), said
    assert [t.state.name for t in open_study(load_spec(path), create=False).get_trials()] == [
        "WAITING"]


def test_a_worker_started_while_a_run_plans_a_new_study_waits_for_it(write_experiment, capsys):
    """A run makes a new study only once its data and plan have passed every check: a worker
    started before that waits for it and trains its trials; looking for the study makes
    nothing."""
    from ablation import queue
    from ablation.sweep import select_trials

    path = write_experiment(variants="")
    spec = load_spec(path)
    assert cli.main(["worker", str(path), "--wait", "0"]) == 2
    assert "no study 'tiny' in" in capsys.readouterr().err
    assert not spec.output_dir.exists()
    with queue.planning_lock(spec, print):  # a run checking its data; no study made yet
        worker = subprocess.Popen([sys.executable, "-m", "ablation", "worker", str(path)],
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        lines = []
        for line in worker.stdout:
            lines.append(line)
            if line.startswith("waiting for") or "error" in line:
                break
        queue.enqueue(open_study(spec), select_trials(spec, None))  # the checks passed
    output = "".join(lines) + worker.communicate(timeout=300)[0]
    assert worker.returncode == 0, output
    assert "worker done: 1 trial(s) complete, 0 failed" in output


def test_status_and_report_while_a_new_studys_first_run_plans_name_that_run(
        write_experiment, monkeypatch, capsys):
    """`ablate status` in a second terminal while the first `ablate run` of a new study loads and
    checks its data (the study is made only once they pass) said `no study ... yet; run ...
    first`, exit 2, as if nothing ran. It names the planning run, exit 0 (nothing failed);
    `report`, which has nothing to write yet, says why, exit 2 as for a study never run. A run
    killed while it planned is not taken for one still planning."""
    import datetime
    import json
    import socket

    from ablation.sweep import _runner as sweep

    path = write_experiment(variants="")
    spec = load_spec(path)
    planner = f"{socket.gethostname()}:{os.getpid()}"  # the run below, in this process
    seen: dict[str, tuple[int, Any]] = {}
    real_preflight = sweep.preflight

    def look_while_it_plans(*args: Any, **kwargs: Any) -> Any:
        if not seen:  # the run's checks of its data: no study yet
            capsys.readouterr()
            for name, command in {"status": ["status", str(path)],
                                  "json": ["status", str(path), "--json"],
                                  "report": ["report", str(path)]}.items():
                seen[name] = cli.main(command), capsys.readouterr()
        return real_preflight(*args, **kwargs)

    monkeypatch.setattr(sweep, "preflight", look_while_it_plans)
    started = time.time()
    assert cli.main(["run", str(path)]) == 0
    code, captured = seen["status"]
    assert code == 0 and captured.err == "", captured.err
    assert captured.out.splitlines() == [
        f"study tiny (sqlite:///{spec.output_dir}/study.db): not made yet: its first `ablate run` "
        f"({planner}, since {captured.out.split(', since ')[1].split(')')[0]}) is still planning "
        "(loading, checking and tokenizing the data); nothing has trained yet"], captured.out
    code, captured = seen["json"]
    status = json.loads(captured.out)
    assert code == 0 and status["trials"] == [] and status["study"] == "tiny"
    assert status["summary"] is None  # no study to sum up yet
    assert status["planning"]["process"] == planner
    since = datetime.datetime.fromisoformat(status["planning"]["since"]).timestamp()
    assert started - 1 <= since <= time.time()
    code, captured = seen["report"]
    assert code == 2 and captured.err.count("\n") == 1, captured.err
    assert captured.err.startswith(f"ablate: error: no study 'tiny' in sqlite:///{spec.output_dir}"
                                   f"/study.db yet: its first `ablate run` ({planner}, since ")
    assert "still planning" in captured.err and "nothing has trained yet" in captured.err
    assert "run `ablate run" not in captured.err  # it runs: running it again is not the advice

    capsys.readouterr()
    assert cli.main(["status", str(path), "--json"]) == 0  # planned and trained: no run plans
    assert json.loads(capsys.readouterr().out)["planning"] is None
    (spec.output_dir / "study.db").unlink()  # as if that run had been killed while it planned
    (spec.output_dir / ".queue.lock").write_text(json.dumps({"process": planner, "since": 0}))
    assert cli.main(["status", str(path)]) == 2
    assert "no study 'tiny' in" in capsys.readouterr().err
    assert cli.main(["report", str(path)]) == 2
    assert "; run `ablate run" in capsys.readouterr().err


def test_a_worker_with_another_heartbeat_is_refused(write_experiment, capsys):
    """Each process takes another's trial over after 3 of its own heartbeats: a worker beating
    every 30 s beside a run that waits 3 × 2 s would have its trials taken over while alive."""
    path = write_experiment(variants="")
    assert cli.main(["run", str(path), "--set", "experiment.heartbeat=2"]) == 0
    capsys.readouterr()
    assert cli.main(["worker", str(path), "--set", "experiment.heartbeat=30"]) == 2
    err = capsys.readouterr().err
    assert "run with experiment.heartbeat=2; this worker's is 30" in err and err.count("\n") == 1


def test_a_worker_with_another_model_config_is_refused_and_one_at_another_path_works(
        write_experiment, capsys, tiny_model_dir, tmp_path):
    """A worker's [model] config trains another model under the study's trial names: refused.
    Its model's path may differ (another machine)."""
    path = write_experiment(variants="")
    assert cli.main(["run", str(path), "--only", "baseline"]) == 0
    elsewhere = shutil.copytree(tiny_model_dir, tmp_path / "copied-model")
    assert cli.main(["worker", str(path), "--set", f'model.name="{elsewhere}"']) == 0
    study = open_study(load_spec(path), create=False)
    # work waiting for a worker
    study.enqueue_trial({}, user_attrs={records.VARIANT: "baseline", records.SEED: 7,
                                        records.KEY: "baseline-s7", records.OVERRIDES: {}})
    capsys.readouterr()
    assert cli.main(["worker", str(path), "--set", "model.config={ num_hidden_layers = 1 }"]) == 2
    err = capsys.readouterr().err
    assert "run with model.config.num_hidden_layers=unset" in err and "says 1" in err
    assert "--set options of the `ablate run`" in err and err.count("\n") == 1
    assert [t.state.name for t in study.get_trials()] == ["COMPLETE", "WAITING"]


def test_a_worker_with_another_data_key_is_refused_naming_it(write_experiment, capsys):
    """A worker without the run's [data] --set reads other rows: the line names the key, as run
    and evaluate do, not only that the rows' fingerprint differs."""
    path = write_experiment(variants="")
    assert cli.main(["run", str(path), "--only", "baseline"]) == 0
    capsys.readouterr()
    assert cli.main(["worker", str(path), "--set", "data.max_eval_samples=20"]) == 2
    err = capsys.readouterr().err
    assert "data.max_eval_samples=40" in err and "says 20" in err, err
    assert "fingerprint" not in err and err.count("\n") == 1


def test_a_trial_taken_over_by_another_process_stops_in_one_line_and_the_run_goes_on(
        write_experiment, monkeypatch, capsys):
    """A process suspended past 3 heartbeats has its trial failed as stale and queued again by
    another: when it wakes, it stops that trial with one line (no traceback, nothing stored over
    the other attempt) and goes on to the report."""
    from ablation import queue

    path = write_experiment(variants="")
    real_train = train.train_with_backoff
    attempts = []

    def taken_over_while_training(trial, spec, *args, **kwargs):
        attempts.append(trial.key)
        if len(attempts) == 1:  # what queue.requeue_stale does in the other process
            study = open_study(spec, create=False)
            [running] = study.get_trials(states=(optuna.trial.TrialState.RUNNING,))
            study._storage.set_trial_user_attr(running._trial_id, records.ERROR, queue.STALE_ERROR)
            study._storage.set_trial_state_values(running._trial_id,
                                                  state=optuna.trial.TrialState.FAIL)
            queue.enqueue_again(study, study._storage.get_trial(running._trial_id))
        return real_train(trial, spec, *args, **kwargs)

    monkeypatch.setattr(train, "train_with_backoff", taken_over_while_training)
    assert cli.main(["run", str(path)]) == 0  # the queued attempt is trained here, then reported
    out = capsys.readouterr().out
    assert "trial 0 baseline-s42: another process took this trial over: this one sent no " \
           "heartbeat for 30 s" in out
    assert "Traceback" not in out and "report:" in out
    first, second = _trials(path)
    assert first.state.name == "FAIL" and records.RESULT not in first.user_attrs
    assert first.user_attrs[records.ERROR] == queue.STALE_ERROR  # not overwritten by this process
    assert second.state.name == "COMPLETE" and attempts == ["baseline-s42"] * 2


def test_a_trial_taken_over_during_its_final_evaluation_saves_no_model(write_experiment,
                                                                        monkeypatch, capsys):
    """Taken over after its last step (its test evaluation outlasted 3 heartbeats): it does not
    save its model into the trial folder the new attempt trains in."""
    from ablation import queue

    path = write_experiment(variants="")
    real_predict, real_keep = train.predict_in_order, train.keep_trial_model
    saved, taken = [], []

    def taken_over_while_testing(trainer, dataset, restore, prefix):
        if prefix == "test" and not taken:  # what queue.requeue_stale does in the other process
            taken.append(True)
            study = open_study(load_spec(path, ["experiment.heartbeat=1"]), create=False)
            [running] = study.get_trials(states=(optuna.trial.TrialState.RUNNING,))
            study._storage.set_trial_user_attr(running._trial_id, records.ERROR, queue.STALE_ERROR)
            study._storage.set_trial_state_values(running._trial_id,
                                                  state=optuna.trial.TrialState.FAIL)
            queue.enqueue_again(study, study._storage.get_trial(running._trial_id))
            time.sleep(3)  # this process's heartbeat (every second) sees it
        return real_predict(trainer, dataset, restore, prefix)

    def keep(*args, **kwargs):
        saved.append(True)
        return real_keep(*args, **kwargs)

    monkeypatch.setattr(train, "predict_in_order", taken_over_while_testing)
    monkeypatch.setattr(train, "keep_trial_model", keep)
    assert cli.main(["run", str(path), "--set", "experiment.heartbeat=1"]) == 0
    assert "another process took this trial over" in capsys.readouterr().out
    first, second = _trials(path)
    assert first.state.name == "FAIL" and second.state.name == "COMPLETE"
    assert saved == [True]  # the second attempt's model alone


def test_the_heartbeat_tells_a_trial_it_was_taken_over_and_training_stops_at_the_next_step(
        write_experiment):
    from ablation import queue
    from ablation.sweep import select_trials

    path = write_experiment(variants="")
    spec = load_spec(path, ["experiment.heartbeat=1"])
    study = open_study(spec)
    queue.enqueue(study, select_trials(spec, None))
    claimed = queue.claim(study, {"baseline-s42"})
    with queue.Heartbeat(study, claimed) as beat:
        stop = train.StopWhenTakenOver(beat.lost)
        stop.on_step_end(None, None, None)  # still ours: training goes on
        study._storage.set_trial_state_values(claimed._trial_id, state=optuna.trial.TrialState.FAIL)
        assert beat.lost.wait(timeout=10)
        with pytest.raises(queue.TrialTakenOver):
            stop.on_step_end(None, None, None)


def test_a_trial_whose_process_is_gone_is_said_so_by_the_waiting_note_and_the_dry_run(
        write_experiment, capsys):
    """As status says: a RUNNING trial whose process on this machine has exited is not "running
    elsewhere": the run queues it again once its heartbeats stop, and trains it."""
    import socket

    from ablation import queue
    from ablation.sweep import select_trials

    path = write_experiment()
    spec = load_spec(path)
    study = open_study(spec)
    queue.enqueue(study, select_trials(spec, ["baseline"]))
    claimed = queue.claim(study, {"baseline-s42"})
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    gone = f"{socket.gethostname()}:{dead.pid}"
    claimed.set_user_attr(records.WORKER, gone)
    running = study.get_trials(states=(optuna.trial.TrialState.RUNNING,))
    note = _waiting_note(Work(spec, study, lambda line: None), running)
    assert note == (f"waiting for baseline-s42 (its process {gone} is gone; queued again once its "
                    "heartbeats stop)")
    capsys.readouterr()
    assert cli.main(["run", str(path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "plan: 2 trial(s), 2 to run" in out
    assert [line.split()[1:4] for line in out.splitlines() if "baseline-s42" in line] == [
        ["process", "gone,", "to"]]
    # --rerun of it is refused (a plain run queues it again: both would train it), saying so
    # rather than that it runs in another process, to wait for
    for dry in (["--dry-run"], []):
        assert cli.main(["run", str(path), "--rerun", "baseline", *dry]) == 2
        assert capsys.readouterr().err == (
            f"ablate: error: --rerun baseline: trial baseline-s42 was running in another process "
            f"({gone}), which is gone; `ablate run {path}` trains it again, without --rerun\n")


@pytest.mark.parametrize("storage", ["sqlite", "journal"])
def test_rerun_of_a_trial_left_running(write_experiment, tmp_path, capsys, storage):
    """Journal storage has no heartbeats: a trial whose process died stays RUNNING until
    `--rerun`, which fails it and runs it again. With heartbeats a running trial is alive (or
    soon re-queued): `--rerun` is refused."""
    from ablation import queue, records
    from ablation.sweep import select_trials

    path = write_experiment()
    sets = ([f'experiment.storage="journal:///{tmp_path}/study.journal"']
            if storage == "journal" else [])
    options = [part for item in sets for part in ("--set", item)]
    assert cli.main(["run", str(path), "--only", "baseline_bs32", *options]) == 0
    spec = load_spec(path, sets)
    study = open_study(spec, create=False)
    queue.enqueue(study, select_trials(spec, ["baseline"]))
    assert queue.claim(study, {"baseline-s42"}) is not None  # then its process "died"
    running = study.get_trials(states=(optuna.trial.TrialState.RUNNING,))
    note = _waiting_note(Work(spec, study, lambda line: None), running)
    assert note.startswith(f"waiting for baseline-s42 (running in process {records.this_worker()})")
    capsys.readouterr()
    assert cli.main(["status", str(path), *options]) == 0
    (line,) = [line for line in capsys.readouterr().out.splitlines() if "RUNNING" in line]
    # with heartbeats, also how long ago its process last beat (the claim's beat: no training)
    heard = r", last heard \d s ago" if storage == "sqlite" else ""
    assert re.search(rf"in {re.escape(records.this_worker())}{heard}$", line), line
    assert (f"`ablate run {path} --rerun baseline" in note) == (storage == "journal")

    if storage == "journal":  # what --rerun replaces there is the abandoned attempt
        capsys.readouterr()
        assert cli.main(["run", str(path), "--rerun", "baseline", "--dry-run", *options]) == 0
        assert ("the 1 abandoned running trial(s) of the variants run again would be kept as "
                "superseded") in capsys.readouterr().out
    capsys.readouterr()
    code = cli.main(["run", str(path), "--rerun", "baseline", *options])
    if storage == "sqlite":  # alive (this process): where it runs, and the ways on
        assert code == 2
        assert capsys.readouterr().err == (
            f"ablate: error: --rerun baseline: trial baseline-s42 is running in another process "
            f"({records.this_worker()}); run it again once it has finished (`ablate status "
            f"{path}` shows it); if that process was killed, `ablate run {path}` trains it again "
            "once its heartbeats have been silent for 30 s\n")
        return
    assert code == 0
    trials = study.get_trials()
    assert [(t.user_attrs["key"], t.state.name) for t in trials] == [
        ("baseline_bs32-s42", "COMPLETE"), ("baseline-s42", "FAIL"), ("baseline-s42", "COMPLETE")]
    assert trials[1].user_attrs[records.ERROR] == queue.ABANDONED_ERROR
    assert trials[1].number in study.user_attrs[records.SUPERSEDED]  # not counted as a failure


@pytest.mark.parametrize("storage", ["sqlite", "journal"])
def test_simultaneous_claims_of_a_trial_give_it_to_one_worker(tmp_path, storage):
    """Each worker has its own connection; both try to claim the one waiting trial at once."""
    from ablation import queue

    url = (f"sqlite:///{tmp_path}/claims.db" if storage == "sqlite"
           else f"journal:///{tmp_path}/claims.journal")
    study = optuna.create_study(study_name="claims", storage=queue.make_storage(url, 10))
    workers = [optuna.load_study(study_name="claims", storage=queue.make_storage(url, 10))
               for _ in range(2)]

    def claim(worker: optuna.Study, start: threading.Barrier, won: list[int]) -> None:
        start.wait()
        trial = queue.claim(worker, None)
        if trial is not None:
            won.append(trial.number)

    for round_ in range(40):
        study.enqueue_trial({}, user_attrs={records.VARIANT: f"trial{round_}", records.SEED: 0,
                                            records.KEY: f"trial{round_}-s0",
                                            records.OVERRIDES: {}})  # as ablate queues one
        start, won = threading.Barrier(2), []
        threads = [threading.Thread(target=claim, args=(worker, start, won)) for worker in workers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert won == [round_], f"round {round_}: claimed by {len(won)} workers"
        study.tell(round_, 0.0)


def test_a_worker_killed_right_after_its_claim_leaves_a_trial_that_goes_stale(tmp_path):
    """The claim beats before the trial turns RUNNING: with no beat after it (the worker died before
    its heartbeat thread began), the trial is stale after the grace period and runs again."""
    from ablation import queue

    study = optuna.create_study(study_name="claims", storage=queue.make_storage(
        f"sqlite:///{tmp_path}/claims.db", 1))
    study.enqueue_trial({}, user_attrs={records.VARIANT: "baseline", records.SEED: 42,
                                        records.KEY: "baseline-s42", records.OVERRIDES: {}})
    claimed = queue.claim(study, None)  # and nothing more: no Heartbeat, as if killed here
    assert claimed is not None and queue.requeue_stale(study) == []  # fresh: not stale yet
    time.sleep(queue.STALE_AFTER_HEARTBEATS + 1.5)
    assert queue.requeue_stale(study) == ["baseline-s42"]
    states = [t.state for t in study.get_trials()]
    assert states == [optuna.trial.TrialState.FAIL, optuna.trial.TrialState.WAITING]


def test_status_shows_a_running_trial_whose_process_is_gone(write_experiment, capsys):
    """A trial left RUNNING by a process that died (kill -9): `status` says so and exits 1,
    rather than show it running."""
    from ablation import queue

    path = write_experiment()
    sets = ["--set", "experiment.heartbeat=1"]
    assert cli.main(["run", str(path), *sets, "--only", "baseline"]) == 0
    study = open_study(load_spec(path, sets[1::2]))
    study.enqueue_trial({}, user_attrs={records.VARIANT: "baseline_bs32", records.SEED: 42,
                                        records.KEY: "baseline_bs32-s42",
                                        records.OVERRIDES: {"batch_size": 32}})
    assert queue.claim(study, None) is not None  # and nothing more, as if killed here
    time.sleep(queue.STALE_AFTER_HEARTBEATS + 1.5)
    capsys.readouterr()
    assert cli.main(["status", str(path), *sets]) == 1
    out = capsys.readouterr().out
    line = [row for row in out.splitlines()
            if row[:4].strip().isdigit()][-1]  # the last trial row: a summary follows
    assert "baseline_bs32-s42" in line and "RUNNING" in line
    assert "its process is gone; `ablate run" in line
    # the summary's next step counts it among those `run` trains (it said nothing: none was
    # queued, failed or interrupted, and it was not counted as one running)
    assert f"next: `ablate run {path} --set experiment.heartbeat=1` trains the 1 without a result" \
        in out
    assert cli.main(["status", str(path), *sets, "--json"]) == 1
    import json

    trials = json.loads(capsys.readouterr().out)["trials"]
    assert [t["process_gone"] for t in trials] == [False, True]


def test_status_knows_at_once_a_trial_whose_process_on_this_machine_exited(write_experiment,
                                                                           capsys):
    """Right after a kill -9 the heartbeats have not gone stale yet; a trial whose process ran
    here and no longer exists is shown as gone all the same, while a live one is not."""
    import socket

    from ablation import queue

    path = write_experiment()
    assert cli.main(["run", str(path), "--only", "baseline"]) == 0
    study = open_study(load_spec(path))
    study.enqueue_trial({}, user_attrs={records.VARIANT: "baseline_bs32", records.SEED: 42,
                                        records.KEY: "baseline_bs32-s42",
                                        records.OVERRIDES: {"batch_size": 32}})
    claimed = queue.claim(study, None)  # by this process: alive
    capsys.readouterr()
    assert cli.main(["status", str(path)]) == 0
    exited = subprocess.Popen(["true"])
    exited.wait()
    claimed.set_user_attr(records.WORKER, f"{socket.gethostname()}:{exited.pid}")
    assert cli.main(["status", str(path)]) == 1
    line = [row for row in capsys.readouterr().out.splitlines()
            if row[:4].strip().isdigit()][-1]  # the last trial row: a summary follows
    assert f"was in {socket.gethostname()}:{exited.pid}: its process is gone" in line


def test_status_tells_a_paused_worker_from_a_gone_one(write_experiment, monkeypatch, capsys):
    """Ctrl+Z stops a worker's heartbeats as kill -9 does; status says it is paused, not gone."""
    import signal
    import socket

    from ablation import queue

    path = write_experiment()
    study = open_study(load_spec(path))
    study.enqueue_trial({}, user_attrs={records.VARIANT: "baseline", records.SEED: 42,
                                        records.KEY: "baseline-s42", records.OVERRIDES: {}})
    claimed = queue.claim(study, None)
    paused = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        paused.send_signal(signal.SIGSTOP)
        worker = f"{socket.gethostname()}:{paused.pid}"
        claimed.set_user_attr(records.WORKER, worker)
        monkeypatch.setattr(queue, "stale_numbers", lambda study: {claimed.number})  # beats stopped
        capsys.readouterr()
        assert cli.main(["status", str(path)]) == 1
        line = [row for row in capsys.readouterr().out.splitlines()
            if row[:4].strip().isdigit()][-1]  # the last trial row: a summary follows
        assert f"was in {worker}, which is paused (Ctrl+Z) and sends no heartbeats: `fg` it" in line
        paused.send_signal(signal.SIGCONT)
        assert not queue.paused_here(worker)
    finally:
        paused.kill()
        paused.wait()


def _open_storage(url: str, start: multiprocessing.synchronize.Barrier, out: multiprocessing.Queue) -> None:
    from ablation import queue

    start.wait()
    try:
        queue.make_storage(url, 10)
        out.put("ok")
    except Exception as err:  # noqa: BLE001 - reported to the test
        out.put(f"{type(err).__name__}: {err}")


def test_two_processes_opening_a_new_sqlite_storage_at_once_both_succeed(tmp_path):
    """Optuna creates the tables of a new file without IF NOT EXISTS (a run and `status` started
    together: "table studies already exists")."""
    for round_ in range(4):
        url = f"sqlite:///{tmp_path}/new{round_}.db"
        start, out = multiprocessing.Barrier(2), multiprocessing.Queue()
        processes = [multiprocessing.Process(target=_open_storage, args=(url, start, out))
                     for _ in range(2)]
        for process in processes:
            process.start()
        for process in processes:
            process.join(timeout=120)
        assert [out.get(timeout=10), out.get(timeout=10)] == ["ok", "ok"]


def _ablate(*args: str, stderr: Any = subprocess.DEVNULL) -> subprocess.Popen:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", "ablation", *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=stderr, text=True)


def test_two_runs_of_one_study_at_once_train_each_trial_once(write_experiment):
    """The second waits while the first queues, then finds the trials queued and helps."""
    path = write_experiment(variants=FOUR_VARIANTS)
    runs = [_ablate("run", str(path)) for _ in range(2)]
    assert [run.wait(timeout=300) for run in runs] == [0, 0]
    trials = _trials(path)
    assert len(trials) == 4 and set(_complete_keys(trials).values()) == {1}


def test_kill_9_at_random_moments_then_resume_gives_the_uninterrupted_results(write_experiment):
    """Training is deterministic on CPU, so the resumed study must match the reference exactly."""
    variants = FOUR_VARIANTS
    reference = write_experiment(name="reference", variants=variants)
    assert cli.main(["run", str(reference)]) == 0
    expected = {t.user_attrs["key"]: t.user_attrs["result"]["validation"]
                for t in _trials(reference)}

    path = write_experiment(name="killed", variants=variants)
    # A dead worker's trial is stale after 3 s; its re-run resumes from its last checkpoint.
    sets = ["--set", "experiment.heartbeat=1", "--set", "experiment.checkpoint_steps=3"]
    rng = random.Random(7)
    for _ in range(4):
        process = _ablate("run", str(path), *sets)
        time.sleep(rng.uniform(4.0, 12.0))  # imports take a few seconds; kill anywhere after
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert cli.main(["run", str(path), *sets]) == 0

    trials = _trials(path)
    complete = _complete_keys(trials)
    assert complete == {key: 1 for key in expected}, "every trial stored exactly once"
    got = {t.user_attrs["key"]: t.user_attrs["result"]["validation"] for t in trials
           if t.state.name == "COMPLETE"}
    assert got == expected
    assert not [t for t in trials if t.state.name in ("RUNNING", "WAITING")]
    resumed = [t.user_attrs["result"]["resumed_from_step"] for t in trials if t.state.name == "COMPLETE"]
    print("resumed from steps:", resumed)
    report = (load_spec(path).output_dir / "report.md").read_text()
    for key in expected:
        assert key.removesuffix("-s42") in report


@pytest.mark.parametrize("workers", ["1", "3"])
def test_search_runs_n_trials_in_total_and_reports_them(write_experiment, workers):
    """n_trials for the study however many workers ask the sampler at once."""
    path = write_experiment(variants="", extra=(
        '[search]\nn_trials = 6\nsampler = "random"\npruner = "median"\n'
        '[search.space]\nlearning_rate = { low = 1e-4, high = 1e-2, log = true }\n'
        'batch_size = [8, 16, 32]\n'))
    assert cli.main(["run", str(path), "--workers", workers]) == 0
    trials = _trials(path)
    searched = [t for t in trials if t.user_attrs["variant"].startswith("search_")]
    assert len(searched) == 6 and len(trials) == 7  # plus the baseline
    for t in searched:
        assert t.user_attrs["variant"] == f"search_{t.number}"
        assert 1e-4 <= t.params["learning_rate"] <= 1e-2 and t.params["batch_size"] in (8, 16, 32)
        assert t.user_attrs["overrides"] == t.params
        assert t.state.name in ("COMPLETE", "PRUNED")
        if t.state.name == "PRUNED":
            assert t.user_attrs["result"]["pruned_at_step"] > 0
    assert cli.main(["run", str(path)]) == 0  # n_trials is for the study, not per invocation
    assert len(_trials(path)) == 7
    report = (load_spec(path).output_dir / "report.md").read_text()
    assert "## Search" in report and "6 of 6 search trials" in report
    assert "- **Best**: `search_" in report
    assert "No comparisons: the [search] trials are not compared with the baseline" in report


def _crash_at_step_11(monkeypatch, step: int = 11) -> Any:
    """Make training raise at step 11 (after checkpoints at 4 and 8), or at `step`; returns the
    real callback."""
    real_step_end = train.TrackerCallback.on_step_end

    def crash_at_step_11(self, args, state, control, **kwargs):
        if state.global_step == step:
            raise RuntimeError("the machine went away")
        return real_step_end(self, args, state, control, **kwargs)

    monkeypatch.setattr(train.TrackerCallback, "on_step_end", crash_at_step_11, raising=False)
    return real_step_end


def _validation_peaks_at(monkeypatch, step: int) -> None:
    """Make the selection metric (macro_f1) best at `step`'s evaluation, whatever the tiny model
    scores there: its scores tie and part by a hair, and which checkpoint is the best (kept, and
    the others rotated out) moved with the data order and with the tests run before in the
    same process."""
    real_evaluate = train.AblateTrainer.evaluate

    def peaking(self, *args, **kwargs):
        metrics = real_evaluate(self, *args, **kwargs)
        if "eval_macro_f1" in metrics:
            metrics["eval_macro_f1"] = 1.0 if self.state.global_step == step else 0.5
        return metrics

    monkeypatch.setattr(train.AblateTrainer, "evaluate", peaking)


def _crashed_with_checkpoints(write_experiment, monkeypatch) -> tuple[Path, list[str], Path]:
    """A one-trial study run with checkpoints every 4 steps that crashed at step 11, the crash
    taken away again: (its file, the --set that gave the checkpoints, the trial's checkpoints)."""
    _validation_peaks_at(monkeypatch, 5)  # checkpoints 4 and 8 kept, whatever step 10 scores
    sets = ["--set", "experiment.checkpoint_steps=4"]
    path = write_experiment(variants="")
    real_step_end = _crash_at_step_11(monkeypatch)
    assert cli.main(["run", str(path), *sets]) == 1
    monkeypatch.setattr(train.TrackerCallback, "on_step_end", real_step_end)
    checkpoints = load_spec(path, sets[1::2]).output_dir / "trials" / "baseline-s42" / "checkpoints"
    return path, sets, checkpoints


SLOW_STEP_S = 0.3


def test_a_failed_trial_resumes_from_its_last_checkpoint_with_the_same_results(
        write_experiment, monkeypatch):
    """checkpoint_steps: the retried trial starts at its last full checkpoint (optimizer, scheduler,
    RNG and data order restored), and ends where an uninterrupted trial without checkpoints ends."""
    sets = ["--set", "experiment.checkpoint_steps=4"]
    reference = write_experiment(name="reference", variants="")
    assert cli.main(["run", str(reference)]) == 0
    [expected] = _trials(reference)

    path = write_experiment(name="crashed", variants="")
    real_step_end = _crash_at_step_11(monkeypatch)
    real_step_begin = train.TrackerCallback.on_step_begin

    def slow_step(self, args, state, control, **kwargs):
        time.sleep(SLOW_STEP_S)
        return real_step_begin(self, args, state, control, **kwargs)

    monkeypatch.setattr(train.TrackerCallback, "on_step_begin", slow_step)
    assert cli.main(["run", str(path), *sets]) == 1
    monkeypatch.setattr(train.TrackerCallback, "on_step_begin", real_step_begin)
    checkpoints = load_spec(path, sets[1::2]).output_dir / "trials" / "baseline-s42" / "checkpoints"
    last = max(int(p.name.split("-")[1]) for p in checkpoints.glob("checkpoint-*"))

    monkeypatch.setattr(train.TrackerCallback, "on_step_end", real_step_end)
    summaries: list[dict] = []  # the end-of-training figures SwanLab gets (summary/...)
    real_on_log = train.TrackerCallback.on_log

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "train_runtime" in logs:
            summaries.append(dict(logs))
        return real_on_log(self, args, state, control, logs=logs, **kwargs)

    monkeypatch.setattr(train.TrackerCallback, "on_log", on_log)
    assert cli.main(["run", str(path), "--retry-failed", *sets]) == 0
    failed, resumed = _trials(path, sets[1::2])
    assert failed.state.name == "FAIL" and resumed.state.name == "COMPLETE"
    result, reference_result = resumed.user_attrs["result"], expected.user_attrs["result"]
    assert result["resumed_from_step"] == last and 8 <= last < 11
    assert reference_result["resumed_from_step"] is None
    assert result["steps"] == reference_result["steps"]
    # Bit for bit, as README's "What is reproducible" promises on CPU.
    for key in ("validation", "test", "history", "eval_history", "test_predictions"):
        assert result[key] == reference_result[key], key
    assert not checkpoints.exists(), "checkpoints are removed once the trial is complete"
    # Its runtime and speed are the whole trial's: the attempt that wrote the checkpoint (slowed
    # down here, so that its share cannot be lost in the noise) plus the resumed one. They were the
    # resumed attempt's alone, a few steps: a resumed variant read as faster.
    earlier = result["earlier_attempts_s"]
    assert earlier >= last * SLOW_STEP_S
    assert result["runtime_s"] > earlier and result["train_runtime_s"] > last * SLOW_STEP_S
    samples = reference_result["train_samples_per_s"] * reference_result["train_runtime_s"]
    assert result["train_samples_per_s"] * result["train_runtime_s"] == pytest.approx(samples, rel=1e-3)
    # SwanLab's summary/ reads the same whole-trial figures (it had the resumed attempt's).
    [summary] = summaries
    assert summary["train_runtime"] == result["train_runtime_s"]
    assert summary["train_samples_per_second"] == result["train_samples_per_s"]
    assert summary["train_steps_per_second"] == pytest.approx(result["steps"] / result["train_runtime_s"])
    report = (load_spec(path, sets[1::2]).output_dir / "report.md").read_text()
    assert (f"- `baseline-s42`: resumed from its checkpoint at step {last} (its runtime includes "
            f"the {earlier:.0f} s earlier attempts took to reach it)") in report


def test_a_group_by_length_trial_resumed_in_its_second_epoch_trains_the_same_batches(
        write_experiment, monkeypatch):
    """group_by_length's second epoch was ordered by torch's generator as the epoch began (after
    the first epoch's dropout masks); resumed there, the generator had not come that far, so the
    resumed epoch skipped the batches of another order and trained on others."""
    from conftest import DEFAULT_BASELINE

    baseline = DEFAULT_BASELINE + "group_by_length = true\n"
    sets = ["--set", "experiment.checkpoint_steps=4"]
    reference = write_experiment(name="reference", variants="", baseline=baseline)
    assert cli.main(["run", str(reference)]) == 0
    [expected] = _trials(reference)
    path = write_experiment(name="crashed", variants="", baseline=baseline)
    real_step_end = _crash_at_step_11(monkeypatch, step=19)  # epoch 2 is steps 15 to 28
    assert cli.main(["run", str(path), *sets]) == 1
    monkeypatch.setattr(train.TrackerCallback, "on_step_end", real_step_end)
    assert cli.main(["run", str(path), "--retry-failed", *sets]) == 0
    failed, resumed = _trials(path, sets[1::2])
    assert failed.state.name == "FAIL" and resumed.state.name == "COMPLETE"
    result, reference_result = resumed.user_attrs["result"], expected.user_attrs["result"]
    assert result["resumed_from_step"] == 16
    for key in ("validation", "test", "history", "eval_history", "test_predictions"):
        assert result[key] == reference_result[key], key


def test_a_checkpoint_between_logging_steps_resumes_the_same_logged_train_loss(
        write_experiment, monkeypatch):
    """Checkpoints every 3 steps, a train loss logged every 2: resumed from step 9, the loss
    logged at step 10 is still the mean of steps 9 and 10 (it was step 10's alone)."""
    sets = ["--set", "experiment.checkpoint_steps=3"]
    reference = write_experiment(name="reference", variants="")
    assert cli.main(["run", str(reference), *sets]) == 0
    [expected] = _trials(reference, sets[1::2])

    path = write_experiment(name="crashed", variants="")
    real_step_end = _crash_at_step_11(monkeypatch, step=10)
    assert cli.main(["run", str(path), *sets]) == 1
    monkeypatch.setattr(train.TrackerCallback, "on_step_end", real_step_end)
    assert cli.main(["run", str(path), "--retry-failed", *sets]) == 0
    result = _trials(path, sets[1::2])[-1].user_attrs["result"]
    assert result["resumed_from_step"] == 9
    assert result["history"] == expected.user_attrs["result"]["history"]


def test_a_resumed_trials_train_loss_summary_averages_every_step_not_the_resumed_ones(
        write_experiment, monkeypatch):
    """The Trainer's end-of-training train_loss (SwanLab's summary/train_loss, "averaged over all
    steps") of a trial resumed at step 9 averaged steps 10 to the end only: 0.17 for a trial whose
    mean was 0.48. It is the mean of every step, as the uninterrupted trial's is."""
    logged: list[float] = []
    real_on_log = train.TrackerCallback.on_log

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "train_loss" in logs:
            logged.append(logs["train_loss"])
        return real_on_log(self, args, state, control, logs=logs, **kwargs)

    monkeypatch.setattr(train.TrackerCallback, "on_log", on_log)
    sets = ["--set", "experiment.checkpoint_steps=3"]
    reference = write_experiment(name="reference", variants="")
    assert cli.main(["run", str(reference), *sets]) == 0
    path = write_experiment(name="crashed", variants="")
    real_step_end = _crash_at_step_11(monkeypatch, step=10)
    assert cli.main(["run", str(path), *sets]) == 1
    monkeypatch.setattr(train.TrackerCallback, "on_step_end", real_step_end)
    assert cli.main(["run", str(path), "--retry-failed", *sets]) == 0
    assert _trials(path, sets[1::2])[-1].user_attrs["result"]["resumed_from_step"] == 9
    expected, resumed = logged
    assert resumed == pytest.approx(expected, rel=1e-5)


def _crashed_then_resumed(write_experiment, monkeypatch, owner: Any, name: str,
                          crashing: Any) -> tuple[dict, dict]:
    """A study whose first run crashes where `crashing(real)` replaces `owner.name` (checkpoints
    every 3 steps), then `--retry-failed`: the resumed trial's result, and an uninterrupted one's."""
    sets = ["--set", "experiment.checkpoint_steps=3"]
    reference = write_experiment(name="reference", variants="")
    assert cli.main(["run", str(reference), *sets]) == 0
    [expected] = _trials(reference, sets[1::2])

    path = write_experiment(name="crashed", variants="")
    real = getattr(owner, name)
    monkeypatch.setattr(owner, name, crashing(real))
    assert cli.main(["run", str(path), *sets]) == 1
    monkeypatch.setattr(owner, name, real)
    assert cli.main(["run", str(path), "--retry-failed", *sets]) == 0
    return _trials(path, sets[1::2])[-1].user_attrs["result"], expected.user_attrs["result"]


def test_a_run_killed_as_a_checkpoint_is_completed_resumes_the_same_logged_train_loss(
        write_experiment, monkeypatch):
    """The Trainer writes trainer_state.json last, which makes a checkpoint resumable; the train
    loss summed since the last logged step was written after it. Killed between the two, the
    resumed trial logged at step 10 the loss of step 10 alone, not the mean of steps 9 and 10."""
    from transformers import Trainer

    def killed_after_step_9s_save(real_save):
        def save(self, model, trial):
            real_save(self, model, trial)
            if self.state.global_step == 9:
                raise RuntimeError("the machine went away")
        return save

    result, expected = _crashed_then_resumed(write_experiment, monkeypatch, Trainer,
                                             "_save_checkpoint", killed_after_step_9s_save)
    assert result["resumed_from_step"] == 9
    assert result["history"] == expected["history"]


def test_a_checkpoint_whose_trainer_state_a_kill_cut_short_is_not_resumed(write_experiment,
                                                                          monkeypatch, capsys):
    """trainer_state.json, written last, marks a checkpoint complete; killed while it was being
    written, it was there but cut short, and every retry of the trial resumed from it and failed
    on its JSON. The trial now resumes from the checkpoint before it, and says why (it said
    'resuming from checkpoint-6' alone, the 3 steps after it silently trained again)."""
    from transformers import TrainerState

    def killed_while_writing_step_9s_state(real_save):
        def save(self, json_path):
            real_save(self, json_path)
            if self.global_step == 9:
                text = Path(json_path).read_text()
                Path(json_path).write_text(text[: len(text) // 2])
                raise RuntimeError("the machine went away")
        return save

    result, expected = _crashed_then_resumed(write_experiment, monkeypatch, TrainerState,
                                             "save_to_json", killed_while_writing_step_9s_state)
    assert result["resumed_from_step"] == 6
    assert result["history"] == expected["history"]
    assert result["validation"] == expected["validation"]
    assert ("  baseline-s42: checkpoint-9 is incomplete (its save was cut short): resuming from "
            "checkpoint-6\n") in capsys.readouterr().out


def test_a_trial_whose_only_checkpoint_a_kill_cut_short_says_it_starts_over(tmp_path):
    """The incomplete checkpoint is removed and the trial trains from step 0: resumable_checkpoint
    names it, for the line that says so."""
    folder = tmp_path / "checkpoints"
    (folder / "checkpoint-4").mkdir(parents=True)
    (folder / "checkpoint-4" / "trainer_state.json").write_text('{"global_st')
    (folder / train.CHECKPOINT_IDENTITY).write_text(json.dumps({"seed": 42}))
    passed_over: list[str] = []
    assert train.resumable_checkpoint(folder, {"seed": 42}, passed_over) is None
    assert passed_over == ["checkpoint-4"] and not folder.exists()


def test_a_resumed_trial_saves_again_the_checkpoint_a_kill_left_incomplete(write_experiment,
                                                                          monkeypatch):
    """Killed while it saved step 9, the trial resumes from step 6; at step 9 it found the
    incomplete checkpoint-9/ there and took it for its own save, so a second failure at step 11
    sent it back to step 6 again. The incomplete folder is replaced: the next retry starts at 9."""
    from transformers import TrainerState

    _validation_peaks_at(monkeypatch, 5)  # checkpoint-9 kept, whatever step 10 scores
    sets = ["--set", "experiment.checkpoint_steps=3"]
    path = write_experiment(name="crashed", variants="")
    checkpoints = load_spec(path, sets[1::2]).output_dir / "trials" / "baseline-s42" / "checkpoints"
    real_save = TrainerState.save_to_json

    def killed_while_writing_step_9s_state(self, json_path):
        real_save(self, json_path)
        if self.global_step == 9:
            text = Path(json_path).read_text()
            Path(json_path).write_text(text[: len(text) // 2])
            raise RuntimeError("the machine went away")

    monkeypatch.setattr(TrainerState, "save_to_json", killed_while_writing_step_9s_state)
    assert cli.main(["run", str(path), *sets]) == 1
    assert not train._whole_json(checkpoints / "checkpoint-9" / "trainer_state.json")
    monkeypatch.setattr(TrainerState, "save_to_json", real_save)
    _crash_at_step_11(monkeypatch)
    assert cli.main(["run", str(path), "--retry-failed", *sets]) == 1
    assert json.loads((checkpoints / "checkpoint-9" / "trainer_state.json").read_text())[
        "global_step"] == 9
    identity = json.loads((checkpoints / train.CHECKPOINT_IDENTITY).read_text())
    assert train.resumable_checkpoint(checkpoints, identity) == checkpoints / "checkpoint-9"


def test_a_resumed_trial_s_tracker_run_holds_its_whole_curves(write_experiment, monkeypatch):
    """The resumed attempt is a run of its own (baseline-s42-try2): its curves start at step 1,
    as the trial's stored history does, not at the first step after the checkpoint."""
    from ablation.sweep import _runner as sweep
    from ablation.tracking import NullTracker

    runs: dict[str, list[tuple[int, dict]]] = {}

    class Recorder(NullTracker):
        def start(self, name, group, config):
            self.points = runs.setdefault(name, [])

        def log(self, metrics, step):
            self.points.append((step, metrics))

    monkeypatch.setattr(sweep, "make_tracker", lambda spec, output_dir: Recorder())
    sets = ["--set", "experiment.checkpoint_steps=4"]
    path = write_experiment(name="crashed", variants="")
    real_step_end = _crash_at_step_11(monkeypatch)
    assert cli.main(["run", str(path), *sets]) == 1
    monkeypatch.setattr(train.TrackerCallback, "on_step_end", real_step_end)
    assert cli.main(["run", str(path), "--retry-failed", *sets]) == 0
    result = _trials(path, sets[1::2])[-1].user_attrs["result"]
    assert result["resumed_from_step"] >= 4 and set(runs) == {"baseline-s42", "baseline-s42-try2"}

    def curve(key, points):
        return [(step, metrics[key]) for step, metrics in points if key in metrics]

    resumed = runs["baseline-s42-try2"]
    assert curve("train/loss", resumed) == [(p["step"], p["loss"]) for p in result["history"]]
    assert curve("eval/loss", resumed) == [(p["step"], p["loss"]) for p in result["eval_history"]]


@pytest.mark.parametrize("layout", ["beside", "inside"])
def test_a_resumed_trial_reads_its_train_loss_window_beside_or_inside_the_checkpoint(tmp_path,
                                                                                   layout):
    """The window is written beside checkpoint-<step>/ now; a checkpoint an earlier ablate wrote
    holds it inside. A study upgraded mid-trial read neither and logged the first train loss after
    the resume from the steps after the checkpoint alone."""
    import types

    checkpoint = tmp_path / "checkpoints" / "checkpoint-9"
    checkpoint.mkdir(parents=True)
    window = (checkpoint.parent / train.LOG_WINDOW.format(step=9, process=0) if layout == "beside"
              else checkpoint / "log_window-0.json")  # the name an earlier ablate gave it
    window.write_text(json.dumps({"loss": 1.5, "last_logged": 8}))
    trainer = types.SimpleNamespace(_tr_loss=torch.tensor(0.0), _globalstep_last_logged=9)
    train.ResumeLogWindow(trainer, checkpoint).on_train_begin(
        types.SimpleNamespace(process_index=0), types.SimpleNamespace(global_step=9), None)
    assert trainer._tr_loss.item() == 1.5 and trainer._globalstep_last_logged == 8
    assert trainer.resumed_step == 9 and trainer.resumed_logged_loss is None


def test_a_checkpoint_of_an_ablate_that_ordered_the_data_otherwise_is_not_resumed(
        write_experiment, monkeypatch):
    """Resumed, a trial skips the batches its checkpoint trained: those of the order it was
    trained in. A checkpoint whose identity lacks data_order was written by an ablate that
    ordered the data otherwise (train.DATA_ORDER): the trial starts over."""
    path, sets, checkpoints = _crashed_with_checkpoints(write_experiment, monkeypatch)
    identity = json.loads((checkpoints / train.CHECKPOINT_IDENTITY).read_text())
    assert identity.pop("data_order") == train.DATA_ORDER
    (checkpoints / train.CHECKPOINT_IDENTITY).write_text(json.dumps(identity))
    assert cli.main(["run", str(path), "--retry-failed", *sets]) == 0
    assert _trials(path, sets[1::2])[-1].user_attrs["result"]["resumed_from_step"] is None


def test_a_checkpoint_of_another_recipe_is_not_resumed(tmp_path):
    folder = tmp_path / "checkpoints"
    (folder / "checkpoint-8").mkdir(parents=True)
    for name in ("trainer_state.json", "optimizer.pt"):
        (folder / "checkpoint-8" / name).write_text("{}")
    (folder / train.CHECKPOINT_IDENTITY).write_text('{"recipe": {"batch_size": 16}}')
    assert train.resumable_checkpoint(folder, {"recipe": {"batch_size": 16}}) == folder / "checkpoint-8"
    assert train.resumable_checkpoint(folder, {"recipe": {"batch_size": 8}}) is None
    assert not folder.exists(), "a checkpoint that cannot be resumed is removed"


@pytest.mark.parametrize("graceful", [False, True])
def test_stopping_a_run_that_waits_on_a_gone_trial_without_heartbeats_names_its_rerun(
        write_experiment, tmp_path, capsys, monkeypatch, graceful):
    """Journal storage has no heartbeats: the same command would wait for a dead process's trial
    again; the line printed on Ctrl+C (and on --graceful's) gives the --rerun that moves it."""
    import socket
    import types

    from ablation import queue
    from ablation.sweep import _runner as sweep
    from ablation.sweep import select_trials

    path = write_experiment()
    sets = [f'experiment.storage="journal:///{tmp_path}/study.journal"']
    spec = load_spec(path, sets)
    study = open_study(spec)
    queue.enqueue(study, select_trials(spec, ["baseline"]))
    claimed = queue.claim(study, {"baseline-s42"})
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    claimed.set_user_attr(records.WORKER, f"{socket.gethostname()}:{dead.pid}")
    clock = types.SimpleNamespace(**vars(sweep.time))
    clock.sleep = lambda seconds: os.kill(os.getpid(), signal.SIGINT)  # Ctrl+C while it waits
    monkeypatch.setattr(sweep, "time", clock)
    capsys.readouterr()
    code = cli.main(["run", str(path), "--only", "baseline", "--set", sets[0],
                     *(["--graceful"] if graceful else [])])
    err = capsys.readouterr().err
    assert code == (0 if graceful else 130)
    rerun = f"`ablate run {path} --rerun baseline --set {shlex.quote(sets[0])}` trains them again"
    assert ("lost their process and this storage has no heartbeats to queue them again: "
            + rerun) in err
    assert "goes on from there" not in err and "run the same command again" not in err
    assert [t.state.name for t in study.get_trials()] == ["RUNNING"]  # nothing else touched


def test_a_lock_file_its_holder_removes_is_not_held_by_a_waiter_on_the_removed_file(tmp_path):
    """A refused run removes the planning lock it made (and the then empty output folder). A run
    that waited on that lock got it on the removed file, while a third run made the file again
    and locked that one: both planned at once, each queueing every trial. The waiter now locks
    the file at the path (made again, with its folder) and a newcomer waits for it."""
    import fcntl

    from ablation.locking import file_lock

    path = tmp_path / "reports" / "tiny" / ".queue.lock"
    path.parent.mkdir(parents=True)
    waiting, got, release = threading.Event(), threading.Event(), threading.Event()

    def waiter() -> None:
        with file_lock(path, on_wait=waiting.set):
            got.set()
            release.wait(30)

    thread = threading.Thread(target=waiter)
    with file_lock(path):
        thread.start()
        assert waiting.wait(30)
        time.sleep(0.3)  # the waiter is in flock now
        path.unlink()
        path.parent.rmdir()  # what a refused run does while it holds the lock
    try:
        assert got.wait(30)
        with path.open("a") as newcomer:  # a third run: the lock at the path is taken
            with pytest.raises(BlockingIOError):
                fcntl.flock(newcomer, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        release.set()
        thread.join(30)


def _locked_by_another(lock: Path) -> bool:
    """Whether another open of `lock` holds an exclusive fcntl lock on it now (asked without
    waiting)."""
    import fcntl

    with lock.open("a") as other:
        try:
            fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
    return False


def _lock_held_at(monkeypatch: pytest.MonkeyPatch, lock: Path,
                  *places: tuple[Any, str]) -> list[bool]:
    """Whether `lock` is held (by another open of it) each time the function at `places` (one
    function, where each module holds it) is called: the list, filled as it is called."""
    owner, name = places[0]
    real, held = getattr(owner, name), []

    def recorded(*args, **kwargs):
        held.append(_locked_by_another(lock))
        return real(*args, **kwargs)

    for owner, name in places:
        monkeypatch.setattr(owner, name, recorded)
    return held


def test_a_refused_run_removes_its_planning_lock_while_it_holds_it(write_experiment, monkeypatch,
                                                                    capsys):
    """Removed after it was let go, a run that took it in between would hold the removed file
    (see the test above): the refused run removes what it made before it lets go."""
    from ablation.sweep import _runner as sweep

    path = write_experiment()
    lock = load_spec(path).output_dir / ".queue.lock"
    held = _lock_held_at(monkeypatch, lock, (sweep, "_remove_made"))
    assert cli.main(["run", str(path), "--set", "data.text_column=body"]) == 2
    assert held == [True]
    assert not lock.parent.exists()


def test_two_runs_ending_together_export_the_best_model_one_at_a_time(write_experiment,
                                                                       monkeypatch):
    """Each run of a study exports best_model/ as it ends: two ending together each cleared the
    other's staging folder or found the trial's model already moved. A run now exports (and
    writes its report) holding the output folder's report lock."""
    from ablation import models

    path = write_experiment(variants="")
    lock = load_spec(path).output_dir / ".report.lock"
    held = _lock_held_at(monkeypatch, lock, (models, "export_best_model"))
    assert cli.main(["run", str(path)]) == 0
    assert held == [True]
    assert (load_spec(path).output_dir / "best_model" / "config.json").is_file()


@pytest.mark.parametrize("form", ["md", "csv", "json"])
def test_ablate_report_reads_and_writes_the_study_holding_the_report_lock(write_experiment,
                                                                          monkeypatch, capsys, form):
    """`ablate report` run as the study's `run` ends read the study (one trial still running),
    then wrote its files after the run had written the final ones: report.md said a trial was
    running when all were done, and the plots the run drew were deleted as an earlier report's.
    It now reads and writes under the report lock the run's end holds (one after the other, each
    whole from one reading of the study)."""
    from conftest import stored_study

    from ablation import report
    from ablation.report import _write

    path = stored_study(write_experiment, 2)
    lock = load_spec(path).output_dir / ".report.lock"
    held = _lock_held_at(monkeypatch, lock, (report, "build_report"), (_write, "build_report"))
    assert cli.main(["report", str(path), "--format", form]) == 0
    assert held == [True]
    assert capsys.readouterr().out.startswith("report: ")


def test_a_report_lock_that_cannot_be_opened_is_one_line(write_experiment, capsys):
    """Since `ablate report` takes the output folder's report lock, a `.report.lock` it cannot
    open (a folder in its place; a folder that cannot be written) ended it in a traceback,
    where a report file that cannot be written is one line, exit 2."""
    from conftest import stored_study

    path = stored_study(write_experiment, 2)
    lock = load_spec(path).output_dir / ".report.lock"
    lock.mkdir(parents=True)
    assert cli.main(["report", str(path)]) == 2
    err = capsys.readouterr().err
    assert err == (f"ablate: error: {lock} cannot be written: a folder is in its place; move it "
                   f"out of the way, then `ablate report {path}` writes it again\n")


def _count_workers_started(monkeypatch) -> list[int]:
    """How many worker processes each `run --workers` would start; nothing trains (the run
    stops as at Ctrl+C, exit 130)."""
    from ablation.sweep import _runner as sweep

    started: list[int] = []

    def start(spec, workers, *args, **kwargs):
        started.append(workers)
        raise KeyboardInterrupt

    monkeypatch.setattr(sweep, "_run_worker_processes", start)
    return started


def test_workers_beyond_the_trials_to_train_are_not_started(write_experiment, monkeypatch, capsys):
    """`--workers 1000000` (a typo for 10) started a million processes, each importing torch:
    no more are started than there are trials to train (here the baseline and bs32)."""
    path = write_experiment()
    started = _count_workers_started(monkeypatch)
    assert cli.main(["run", str(path), "--workers", "1000000"]) == 130
    assert started == [2]


def test_trials_not_of_ablate_queued_in_the_study_start_no_worker(write_experiment, monkeypatch):
    """A trial queued in the study by hand or by another program is no worker's to claim: it
    counted as work still, and `run --workers` started a process more for each, which found
    nothing to claim (here the baseline and bs32 are to train, beside two such trials)."""
    from ablation import queue
    from ablation.sweep import select_trials

    path = write_experiment()
    spec = load_spec(path)
    study = open_study(spec)
    queue.enqueue(study, select_trials(spec, None))  # an earlier run's, interrupted
    study.enqueue_trial({}, user_attrs={"key": "mine-s1"})  # a queue of one's own
    study.enqueue_trial({}, user_attrs={"variant": "../x", "seed": 1, "key": "../x-s1",
                                        "overrides": {}})
    started = _count_workers_started(monkeypatch)
    assert cli.main(["run", str(path), "--workers", "8"]) == 130
    assert started == [2]


class _Killed(BaseException):
    """A kill -9 at this point: nothing after it runs (no except or finally of ablate's)."""


@pytest.mark.parametrize("point", ["between the two moves", "before the study recorded it"])
def test_a_run_killed_while_it_exports_the_best_model_leaves_it_to_the_next_run(
        write_experiment, monkeypatch, capsys, point):
    """export_best_model moves trials/<key>/model to .best_model.tmp, then into best_model/, then
    records it in the study. Killed between those steps, the next run said the best trial "kept
    no model" (and to train it again) while its model sat in .best_model.tmp or best_model/."""
    from ablation import models

    path = write_experiment(variants="")
    out = load_spec(path).output_dir
    real_rmtree, real_set_user_attr = shutil.rmtree, optuna.Study.set_user_attr

    def rmtree(folder, *args, **kwargs):
        if Path(folder) == out / models.BEST_MODEL and point == "between the two moves":
            raise _Killed
        return real_rmtree(folder, *args, **kwargs)

    def set_user_attr(study, key, value):
        if key == models.STUDY_ATTR and value and point == "before the study recorded it":
            raise _Killed
        return real_set_user_attr(study, key, value)

    monkeypatch.setattr(shutil, "rmtree", rmtree)
    monkeypatch.setattr(optuna.Study, "set_user_attr", set_user_attr)
    with pytest.raises(_Killed):
        cli.main(["run", str(path)])
    monkeypatch.undo()
    capsys.readouterr()

    assert cli.main(["run", str(path)]) == 0
    said = capsys.readouterr().out
    assert "kept no model" not in said and f"best model: {out / 'best_model'}" in said
    assert models.model_info(out / "best_model")["trial"] == "baseline-s42"
    assert not (out / ".best_model.tmp").exists()
    assert open_study(load_spec(path), create=False).user_attrs["best_model"]["key"] == "baseline-s42"
    assert "**Best model**: `best_model/`" in (out / "report.md").read_text()


def test_a_trial_resumed_in_a_moved_output_folder_still_selects_its_best_checkpoint(
        write_experiment, monkeypatch, tmp_path):
    """trainer_state.json names the best checkpoint by its absolute path: the output folder
    moved (or renamed) between the kill and the resume, the Trainer dropped it ('does not exist
    anymore', in trial.log only), and a trial that did not improve after the resume kept its last
    weights: the report showed their metrics as those of the best step's checkpoint."""
    _validation_peaks_at(monkeypatch, 10)  # in both runs
    reference = write_experiment(name="reference", variants="")
    assert cli.main(["run", str(reference)]) == 0
    [expected] = _trials(reference)
    steps, best = expected.user_attrs["result"]["steps"], expected.user_attrs["result"]["best_step"]
    assert best == 10 < steps - 1, "the best checkpoint comes before the resumed steps"

    # A checkpoint at the step before the last, a crash at the last: the resume trains one step.
    sets = ["--set", f"experiment.checkpoint_steps={steps - 1}"]
    path = write_experiment(name="crashed", variants="")
    real_step_end = _crash_at_step_11(monkeypatch, step=steps)
    assert cli.main(["run", str(path), *sets]) == 1
    moved = tmp_path / "moved"
    load_spec(path, sets[1::2]).output_dir.rename(moved)
    monkeypatch.setattr(train.TrackerCallback, "on_step_end", real_step_end)
    sets += ["--set", f"experiment.output_dir={moved}"]
    assert cli.main(["run", str(path), "--retry-failed", *sets]) == 0
    result = _trials(path, sets[1::2])[-1].user_attrs["result"]
    assert result["resumed_from_step"] == steps - 1 and result["best_step"] == best
    assert result["validation"] == expected.user_attrs["result"]["validation"]


def test_a_trial_resumed_from_a_checkpoint_without_its_time_says_its_runtime_is_the_attempts():
    """A checkpoint an earlier ablate wrote carries no time: the runtime is the resumed
    attempt's alone, and the note says so rather than counting earlier attempts as 0 s."""
    from ablation.report._write import trial_notes

    stored = {"resumed_from_step": 15, "steps": 28, "earlier_attempts_s": None}
    assert trial_notes(stored) == [
        "resumed from its checkpoint at step 15 (its runtime is of the resumed attempt only: "
        "steps 16 to 28)"]
    assert trial_notes(stored | {"earlier_attempts_s": 33.2}) == [
        "resumed from its checkpoint at step 15 (its runtime includes the 33 s earlier attempts "
        "took to reach it)"]


def test_a_trial_resumed_with_checkpoint_steps_turned_off_keeps_its_early_stopping_count(
        write_experiment, monkeypatch):
    """checkpoint_steps taken out of the file after a crash: the trial still resumes from its
    checkpoint, but early stopping's count of evaluations without improvement was only restored
    with checkpoint_steps on, so it started again at 0 and the trial trained on past the step
    where the uninterrupted one stopped (README: resumed is uninterrupted)."""
    patience = ["--set", "baseline.early_stopping_patience=2"]
    reference = write_experiment(name="reference", variants="")
    assert cli.main(["run", str(reference), *patience]) == 0
    expected = _trials(reference, patience[1::2])[0].user_attrs["result"]
    assert expected["steps"] < expected["max_steps"], "early stopping ends it"
    history = expected["eval_history"]
    # A checkpoint after the first evaluation without improvement, before the one that stops it.
    first_worse = next(point["step"] for point in history[1:] if point["step"] > expected["best_step"])
    assert first_worse < expected["steps"]
    every = first_worse + 2

    path = write_experiment(name="crashed", variants="")
    sets = [*patience, "--set", f"experiment.checkpoint_steps={every}"]
    real_step_end = _crash_at_step_11(monkeypatch, step=every + 1)
    assert cli.main(["run", str(path), *sets]) == 1
    monkeypatch.setattr(train.TrackerCallback, "on_step_end", real_step_end)
    sets[-1] = "experiment.checkpoint_steps=0"
    assert cli.main(["run", str(path), "--retry-failed", *sets]) == 0
    result = _trials(path, sets[1::2])[-1].user_attrs["result"]
    assert result["resumed_from_step"] == every
    assert result["steps"] == expected["steps"] and result["eval_history"] == history
    assert result["validation"] == expected["validation"]


def test_the_log_windows_of_rotated_checkpoints_do_not_pile_up_while_a_trial_trains(
        write_experiment, monkeypatch):
    """checkpoint_steps: the Trainer keeps the best and the latest checkpoint, and removes the
    others, but the log window beside each (log_window-<step>-<process>.json) stayed: one file
    more at every checkpoint for the whole trial (a long trial with checkpoint_steps = 100 left
    thousands). Those of checkpoints no longer there are removed as each checkpoint is saved."""
    seen: list[tuple[set[str], set[str]]] = []
    real_save = train.AblateTrainer._save_checkpoint

    def save(self, model, trial):
        real_save(self, model, trial)
        folder = Path(self.args.output_dir)
        steps = {path.name.split("-")[-1] for path in folder.glob("checkpoint-*")}
        windows = {path.name.split("-")[1] for path in folder.glob("log_window-*.json")}
        seen.append((steps, windows))

    monkeypatch.setattr(train.AblateTrainer, "_save_checkpoint", save)
    sets = ["--set", "experiment.checkpoint_steps=2"]
    path = write_experiment(variants="")
    assert cli.main(["run", str(path), *sets]) == 0
    assert len(seen) >= 6  # a checkpoint every 2 steps (and at each evaluation that improved)
    assert max(len(steps) for steps, _ in seen) <= 3  # rotated: the best, the latest (and one saving)
    for steps, windows in seen:
        assert windows <= steps, "a window beside a checkpoint no longer there"
        assert steps - windows == set()


def test_a_resumed_trial_counts_its_earlier_attempts_time_against_trial_timeout(
        write_experiment, monkeypatch):
    """trial_timeout bounds the trial's time as its runtime_s counts it: a resumed trial got the
    whole timeout again at every attempt, so a trial killed (or timed out and retried) and resumed
    time after time trained on for good. It now has what its earlier attempts left of it (their
    time until its checkpoint: here as if they had taken 1000 s), and a larger trial_timeout lets
    it resume from that checkpoint."""
    path, sets, checkpoints = _crashed_with_checkpoints(write_experiment, monkeypatch)
    window = checkpoints / train.LOG_WINDOW.format(step=8, process=0)
    assert (checkpoints / "checkpoint-8").is_dir()
    window.write_text(json.dumps(json.loads(window.read_text()) | {"trial_s": 1000.0}))

    timeout = ["--set", "experiment.trial_timeout=100"]
    assert cli.main(["run", str(path), "--retry-failed", *sets, *timeout]) == 1
    error = _trials(path, sets[1::2])[-1].user_attrs["error"]
    assert error.startswith("TrialTimeout: ran 10") and "longer than trial_timeout = 100 s" in error
    assert "1000 s of them in the attempts before its checkpoint at step 8" in error

    timeout = ["--set", "experiment.trial_timeout=2000"]
    assert cli.main(["run", str(path), "--retry-failed", *sets, *timeout]) == 0
    trial = _trials(path, sets[1::2])[-1]
    assert trial.state.name == "COMPLETE"
    assert trial.user_attrs["result"]["resumed_from_step"] == 8
    assert trial.user_attrs["result"]["earlier_attempts_s"] == 1000.0
