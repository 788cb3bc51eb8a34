"""Resilient sweeps on the tiny BERT: re-runs, retries, time-outs, graceful stops, several
workers on one study (exactly once), and kill -9 at random moments followed by a resume."""

from __future__ import annotations

import collections
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import optuna
import pytest

from ablation import cli, train
from ablation.config import load_spec
from ablation.queue import open_study
from ablation.sweep import run_study

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


def test_trials_running_past_trial_timeout_fail_and_the_study_goes_on(write_experiment):
    # Every trial needs minutes (5000 epochs) against a 1 s limit: independent of machine load.
    path = write_experiment(variants="bs32 = { batch_size = 32 }\n",
                            baseline="learning_rate = 1e-3\nepochs = 5000\nlogging_steps = 50\n")
    assert cli.main(["run", str(path), "--set", "experiment.trial_timeout=1"]) == 1
    states = [(t.user_attrs["key"], t.state.name, t.user_attrs.get("error", "")) for t in _trials(path)]
    assert [s[:2] for s in states] == [("baseline-s42", "FAIL"), ("baseline_bs32-s42", "FAIL")]
    for _, _, error in states:
        assert error.startswith("TrialTimeout: ran ") and "longer than trial_timeout = 1 s" in error


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


@pytest.mark.parametrize("storage", ["sqlite", "journal"])
def test_four_workers_run_every_trial_exactly_once(write_experiment, tmp_path, storage):
    path = write_experiment(variants=FOUR_VARIANTS)
    sets = ["--set", "experiment.seeds=[1, 2]"]
    if storage == "journal":
        sets += ["--set", f'experiment.storage="journal:///{tmp_path}/study.journal"']
    assert cli.main(["run", str(path), "--workers", "4", *sets]) == 0
    trials = _trials(path, [s for s in sets if s != "--set"])
    assert len(trials) == 8  # nothing claimed twice, no stray trial
    assert set(_complete_keys(trials).values()) == {1} and len(_complete_keys(trials)) == 8
    starts = sorted(t.datetime_start for t in trials)
    ends = sorted(t.datetime_complete for t in trials)
    assert starts[1] < ends[0], "trials ran side by side in several processes"


def _ablate(*args: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", "ablation", *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


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


def test_search_runs_n_trials_in_total_and_reports_them(write_experiment):
    path = write_experiment(variants="", extra=(
        '[search]\nn_trials = 6\nsampler = "random"\npruner = "median"\n'
        '[search.space]\nlearning_rate = { low = 1e-4, high = 1e-2, log = true }\n'
        'batch_size = [8, 16, 32]\n'))
    assert cli.main(["run", str(path)]) == 0
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


def test_a_failed_trial_resumes_from_its_last_checkpoint_with_the_same_results(
        write_experiment, monkeypatch):
    """checkpoint_steps: the retried trial starts at its last full checkpoint (optimizer, scheduler,
    RNG and data order restored), and ends where an uninterrupted trial ends."""
    sets = ["--set", "experiment.checkpoint_steps=4"]
    reference = write_experiment(name="reference", variants="")
    assert cli.main(["run", str(reference), *sets]) == 0
    [expected] = _trials(reference, sets[1::2])

    path = write_experiment(name="crashed", variants="")
    real_step_end = train.TrackerCallback.on_step_end

    def crash_at_step_11(self, args, state, control, **kwargs):
        if state.global_step == 11:
            raise RuntimeError("the machine went away")
        return real_step_end(self, args, state, control, **kwargs)

    monkeypatch.setattr(train.TrackerCallback, "on_step_end", crash_at_step_11, raising=False)
    assert cli.main(["run", str(path), *sets]) == 1
    checkpoints = load_spec(path, sets[1::2]).output_dir / "trials" / "baseline-s42" / "checkpoints"
    last = max(int(p.name.split("-")[1]) for p in checkpoints.glob("checkpoint-*"))

    monkeypatch.setattr(train.TrackerCallback, "on_step_end", real_step_end)
    assert cli.main(["run", str(path), "--retry-failed", *sets]) == 0
    failed, resumed = _trials(path, sets[1::2])
    assert failed.state.name == "FAIL" and resumed.state.name == "COMPLETE"
    result, reference_result = resumed.user_attrs["result"], expected.user_attrs["result"]
    assert result["resumed_from_step"] == last and 8 <= last < 11
    assert reference_result["resumed_from_step"] is None
    assert result["steps"] == reference_result["steps"]
    assert result["validation"] == pytest.approx(reference_result["validation"], abs=1e-6)
    assert [p["loss"] for p in result["history"]] == pytest.approx(
        [p["loss"] for p in reference_result["history"]], abs=1e-6)
    assert not checkpoints.exists(), "checkpoints are removed once the trial is complete"
    report = (load_spec(path, sets[1::2]).output_dir / "report.md").read_text()
    assert f"- `baseline-s42`: resumed from its checkpoint at step {last}" in report


def test_a_checkpoint_of_another_recipe_is_not_resumed(tmp_path):
    folder = tmp_path / "checkpoints"
    (folder / "checkpoint-8").mkdir(parents=True)
    for name in ("trainer_state.json", "optimizer.pt"):
        (folder / "checkpoint-8" / name).write_text("{}")
    (folder / train.CHECKPOINT_IDENTITY).write_text('{"recipe": {"batch_size": 16}}')
    assert train.resumable_checkpoint(folder, {"recipe": {"batch_size": 16}}) == folder / "checkpoint-8"
    assert train.resumable_checkpoint(folder, {"recipe": {"batch_size": 8}}) is None
    assert not folder.exists(), "a checkpoint that cannot be resumed is removed"
