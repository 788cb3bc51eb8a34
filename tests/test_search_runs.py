"""`[search]` over several runs of the real CLI on the tiny BERT: a changed space is refused before
any trial is made, every run and every worker proposes new parameters, a failed or interrupted
search trial is tried again with its parameters, and --only / --rerun / --retry-failed add no
search trials."""

from __future__ import annotations

import contextlib
import json
import tomllib
from pathlib import Path

import optuna
import pytest

from ablation import cli, search, train
from ablation.config import load_spec
from ablation.errors import AblateInputError
from ablation.queue import StudyNotFound, open_study
from ablation.sweep import run_worker
from ablation.variants import TrialSpec

# Four optimizer steps a trial: these tests are about which trials run, not what they learn.
QUICK = "learning_rate = 1e-3\nbatch_size = 16\nmax_steps = 4\neval_steps = 2\nlogging_steps = 2\n"
CONTINUOUS = ("learning_rate = { low = 1e-4, high = 1e-2, log = true }\n"
              "dropout = { low = 0.0, high = 0.3 }\n")


def searched(write_experiment, n_trials: int, space: str = CONTINUOUS, sampler: str = "random",
             name: str = "tiny", variants: str = "", tracking: str = 'backend = "none"') -> Path:
    return write_experiment(name=name, baseline=QUICK, variants=variants, tracking=tracking, extra=(
        f'[search]\nn_trials = {n_trials}\nsampler = "{sampler}"\n[search.space]\n{space}'))


def trials(path: Path, *sets: str) -> list[optuna.trial.FrozenTrial]:
    return open_study(load_spec(path, list(sets)), create=False).get_trials()


def search_trials(path: Path, *sets: str) -> list[optuna.trial.FrozenTrial]:
    return [t for t in trials(path, *sets) if str(t.user_attrs.get("variant")).startswith("search_")]


def proposals(path: Path, *sets: str) -> list[tuple]:
    return [tuple(sorted(t.params.items())) for t in search_trials(path, *sets)]


def run(path: Path, *options: str) -> int:
    return cli.main(["run", str(path), *options])


# --------------------------------------------------------------------------- H1: a changed space


def test_a_changed_search_space_is_refused_before_any_trial_is_made(write_experiment, capsys):
    path = searched(write_experiment, 1, "batch_size = [8, 16]\n")
    assert run(path) == 0
    before = [(t.number, t.state.name) for t in trials(path)]
    changed = [
        ("search.space.batch_size=[32, 64]",
         ["--set 'search.space.batch_size=[32, 64]': [search.space] batch_size: study 'tiny' proposed "
          "its 1 search trial(s) with batch_size = [8, 16]; this --set now says batch_size = "
          "[32, 64]: restore it to go on with that search, "
          "or use a new [experiment] name, or --force-new"]),
        ("search.space.dropout={ low = 0.0, high = 0.2 }",
         ["[search.space] dropout:", "without dropout; this --set now adds dropout = "
          "{ low = 0.0, high = 0.2 }: remove it"]),
        ("search.space.batch_size={ low = 8, high = 16 }",
         ["[search.space] batch_size:", "this --set now says batch_size = { low = 8, high = 16 }"]),
    ]
    for setting, words in changed:
        for options in (["--dry-run"], []):
            capsys.readouterr()
            assert run(path, "--set", setting, "--set", "search.n_trials=3", *options) == 2
            err = capsys.readouterr().err
            assert err.count("\n") == 1 and "Traceback" not in err, err
            for word in words:
                assert word in err, err
    # Nothing was made: no RUNNING trial without attributes, no new trial at all.
    assert [(t.number, t.state.name) for t in trials(path)] == before
    # A worker given the changed file is refused the same way, before it claims anything.
    spec = load_spec(path, ["search.space.batch_size=[32, 64]"])
    with pytest.raises(AblateInputError, match=r"\[search.space\] batch_size: .* start the worker"):
        run_worker(spec, echo=lambda line: None)
    # The file itself changed: the file is named.
    original = path.read_text()
    path.write_text(original.replace("batch_size = [8, 16]", "batch_size = [8, 32]"))
    assert run(path, "--dry-run") == 2
    err = capsys.readouterr().err
    assert f"{path}: [search.space] batch_size:" in err and "the file now says batch_size = [8, 32]" in err
    path.write_text(original)
    # n_trials, sampler and pruner may change: the search goes on.
    assert run(path, "--set", "search.n_trials=2", "--set", 'search.sampler="tpe"') == 0
    assert len(search_trials(path, "search.n_trials=2")) == 2


def test_a_failure_inside_suggestion_leaves_no_running_trial(write_experiment, monkeypatch):
    path = searched(write_experiment, 2)

    def interrupted(trial, spec):  # Ctrl+C while the sampler proposes
        raise KeyboardInterrupt

    monkeypatch.setattr(search, "suggest", interrupted)
    assert run(path) == 130
    states = [(t.state.name, t.user_attrs.get("variant")) for t in trials(path)]
    assert states == [("COMPLETE", "baseline"), ("FAIL", None)]  # told FAIL, not left RUNNING
    monkeypatch.undo()
    assert run(path) == 0  # the half-made trial is not one of the search's
    assert [t.state.name for t in search_trials(path)] == ["COMPLETE", "COMPLETE"]


# --------------------------------------------------------------------------- H2: new proposals


def test_later_runs_and_workers_propose_new_parameters(write_experiment):
    path = searched(write_experiment, 2)
    assert run(path) == 0
    assert run(path, "--set", "search.n_trials=4") == 0  # raised: two more, not the first two again
    first = proposals(path)
    assert len(first) == 4 and len(set(first)) == 4, first

    # The same file run from scratch proposes the same trials: the study is reproducible.
    again = searched(write_experiment, 2, name="again")
    assert run(again) == 0
    assert proposals(again) == first[:2]

    workers = searched(write_experiment, 4, name="workers")
    assert run(workers, "--workers", "2") == 0
    made = proposals(workers)
    assert len(made) == 4 and len(set(made)) == 4, made


def test_tpe_uses_the_constant_liar_and_seeds_differ_by_trial() -> None:
    spec = search.parse_search({"n_trials": 3, "space": {"dropout": {"low": 0.0, "high": 0.3}}},
                               Path("s.toml"))
    assert search.make_sampler(spec, seed=1)._constant_liar
    assert search.trial_seed(42, 5) == search.trial_seed(42, 5)
    assert len({search.trial_seed(seed, number) for seed in (1, 42) for number in range(50)}) == 100


# --------------------------------------------------------------------------- H3: retried, not lost


def interrupted_in_search_2(path, monkeypatch) -> None:
    """`ablate run` stopped by Ctrl+C as search_2 starts training (exit 130); training is then
    itself again."""
    real_train = train.train_trial

    def ctrl_c_in_search_2(trial, *args, **kwargs):
        if trial.variant == "search_2":
            raise KeyboardInterrupt
        return real_train(trial, *args, **kwargs)

    monkeypatch.setattr(train, "train_trial", ctrl_c_in_search_2)
    assert run(path) == 130
    monkeypatch.undo()


def test_search_trials_swanlab_runs_are_named_by_their_key_as_status_names_them(write_experiment,
                                                                                monkeypatch):
    """A new search trial's run was named `search_2`, and its retry `search_2-s42-try2`: the
    dashboard's names matched neither `status` and the trial's folder nor each other."""
    import sqlite3

    path = searched(write_experiment, 2, tracking='backend = "swanlab"\nmode = "local"')
    interrupted_in_search_2(path, monkeypatch)
    assert run(path) == 0
    output_dir = load_spec(path).output_dir
    with sqlite3.connect(output_dir / "swanlog" / "runs.swanlab") as db:
        runs = list(db.execute("select name, status from experiment order by id"))
    assert runs == [("baseline-s42", 1), ("search_1-s42", 1), ("search_2-s42", -1),
                    ("search_2-s42-try2", 1)]
    assert {name for name, _ in runs[:3]} == {folder.name for folder in (output_dir / "trials").iterdir()}


def test_an_interrupted_search_trial_is_tried_again_with_its_parameters(write_experiment,
                                                                        monkeypatch, capsys):
    path = searched(write_experiment, 2)
    interrupted_in_search_2(path, monkeypatch)
    [interrupted] = [t for t in search_trials(path) if t.state.name == "FAIL"]
    assert interrupted.user_attrs["variant"] == "search_2"

    capsys.readouterr()
    assert run(path, "--dry-run") == 0
    out = capsys.readouterr().out
    assert "search_2-s42" in out and "then [search]: 0 more trial(s)" in out
    assert [line.split()[1] for line in out.splitlines() if "search_2-s42" in line] == ["to"]

    assert run(path) == 0
    retried = [t for t in search_trials(path) if t.user_attrs["variant"] == "search_2"]
    assert [t.state.name for t in retried] == ["FAIL", "COMPLETE"]
    assert retried[1].params == interrupted.params == retried[1].user_attrs["overrides"]
    assert len({t.user_attrs["variant"] for t in search_trials(path)}) == 2  # n_trials = 2
    capsys.readouterr()
    assert cli.main(["status", str(path)]) == 0
    assert f"{interrupted.number:>4}  search_2-s42" in (status := capsys.readouterr().out)
    assert "SUPERSEDED" in status
    report = (load_spec(path).output_dir / "report.md").read_text()
    assert "2 of 2 search trials: 2 complete, 0 pruned, 0 failed" in report

    assert run(path) == 0  # done: nothing more to retry or to propose
    assert len(search_trials(path)) == 3


def test_a_search_trial_whose_process_was_killed_is_waited_for_and_trained_again(
        write_experiment, capsys):
    """kill -9 in a search trial leaves it RUNNING, and it counts toward n_trials: the next run
    waits for its heartbeats to stop and trains it again, as it does a variant's, rather than end
    at once with the trial still RUNNING (status then said `ablate run` would run it again)."""


    path = searched(write_experiment, 1)
    sets = ["--set", "experiment.heartbeat=1"]
    assert run(path, "--only", "baseline", *sets) == 0
    killed, overrides = _kill_a_search_trial(path, ["experiment.heartbeat=1"])
    killed.study._storage.record_heartbeat(killed._trial_id)

    capsys.readouterr()
    assert run(path, "--dry-run", *sets) == 0
    out = capsys.readouterr().out
    assert "plan: 2 trial(s), 1 to run" in out
    assert [line.split()[1:4] for line in out.splitlines() if "search_1-s42" in line] == [
        ["process", "gone,", "to"]]
    assert run(path, *sets) == 0
    attempts = [t for t in search_trials(path, *sets[1:]) if t.user_attrs["variant"] == "search_1"]
    assert [t.state.name for t in attempts] == ["FAIL", "COMPLETE"]
    assert attempts[1].params == overrides
    assert len(search_trials(path, *sets[1:])) == 2  # n_trials = 1: nothing new proposed
    assert "waiting for search_1-s42" in capsys.readouterr().out


def _kill_a_search_trial(path: Path, sets: list[str]) -> tuple[optuna.Trial, dict]:
    """A search trial made as `_search_once` makes it, whose process then died (kill -9): it
    stays RUNNING, its worker a pid of this machine that no longer exists."""
    import socket
    import subprocess
    import sys

    from ablation import records

    spec = load_spec(path, sets)
    study = open_study(spec, create=False)
    killed = study.ask()
    overrides = search.suggest(killed, spec.search)
    trial = TrialSpec.of(spec.baseline, search.search_trial_name(killed.number), 42, overrides)
    for key, value in records.trial_attrs(trial).items():
        killed.set_user_attr(key, value)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    killed.set_user_attr(records.WORKER, f"{socket.gethostname()}:{dead.pid}")
    return killed, overrides


def test_a_killed_search_trial_on_a_journal_is_trained_again_by_the_rerun_ablate_names(
        write_experiment, tmp_path, capsys, monkeypatch):
    """A journal has no heartbeats: a search trial whose process was killed stays RUNNING.
    `status`, the run that waits for it, and that run's Ctrl+C name `--rerun search_1`, which
    records the attempt as failed and superseded and trains it again with its parameters, as
    for a variant (it was refused, exit 2, and a plain run ended with the trial RUNNING)."""
    import os
    import shlex
    import signal
    import types

    from ablation import queue, records
    from ablation.sweep import _runner as sweep

    path = searched(write_experiment, 1)
    journal = f'experiment.storage="journal:///{tmp_path}/study.journal"'
    sets = ["--set", journal]
    assert run(path, "--only", "baseline", *sets) == 0
    killed, overrides = _kill_a_search_trial(path, [journal])
    rerun = f"ablate run {path} --rerun search_1 --set {shlex.quote(journal)}"

    capsys.readouterr()
    assert cli.main(["status", str(path), *sets]) == 1
    assert f"its process is gone; `{rerun}` runs it again" in capsys.readouterr().out
    assert run(path, "--dry-run", *sets) == 0
    out = capsys.readouterr().out
    assert "plan: 2 trial(s), 0 to run" in out
    (line,) = [line for line in out.splitlines() if "search_1-s42" in line]
    assert line.split()[1:5] == ["process", "gone:", "--rerun", "it"]
    # The run waits for it (it counts toward n_trials), and its Ctrl+C says what moves it.
    clock = types.SimpleNamespace(**vars(sweep.time))
    clock.sleep = lambda seconds: os.kill(os.getpid(), signal.SIGINT)
    with monkeypatch.context() as patch:
        patch.setattr(sweep, "time", clock)
        assert run(path, *sets) == 130
    captured = capsys.readouterr()
    assert f"stop this and `{rerun}`" in captured.out
    assert f"`{rerun}` trains them again" in captured.err
    assert [t.state.name for t in search_trials(path, journal)] == ["RUNNING"]

    assert run(path, "--rerun", "search_1", "--dry-run", *sets) == 0
    out = capsys.readouterr().out
    assert "plan: 1 trial(s), 1 to run" in out and "search_1-s42" in out and "to run again" in out
    assert "search_1-s42 would be kept as failed and superseded" in out
    assert run(path, "--rerun", "search_1", *sets) == 0
    attempts = search_trials(path, journal)
    assert [t.state.name for t in attempts] == ["FAIL", "COMPLETE"]
    assert attempts[0].user_attrs[records.ERROR] == queue.ABANDONED_ERROR
    assert attempts[1].params == overrides and attempts[1].user_attrs["variant"] == "search_1"
    study = open_study(load_spec(path, [journal]), create=False)
    assert killed.number in study.user_attrs[records.SUPERSEDED]
    assert run(path, *sets) == 0  # n_trials = 1: done, nothing new proposed
    assert len(search_trials(path, journal)) == 2
    # Only a running one is taken: now it is complete, the sampler's choice is refused as before.
    capsys.readouterr()
    assert run(path, "--rerun", "search_1", *sets) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot be chosen one by one" in err


def test_rerun_of_a_running_search_trial_is_refused_where_heartbeats_tell(write_experiment, capsys):
    path = searched(write_experiment, 1)
    sets = ["--set", "experiment.heartbeat=1"]
    assert run(path, "--only", "baseline", *sets) == 0
    _kill_a_search_trial(path, ["experiment.heartbeat=1"])
    for options in (["--dry-run"], []):
        capsys.readouterr()
        assert run(path, "--rerun", "search_1", *sets, *options) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1, err
        assert ("--rerun search_1: trial search_1-s42 is running in another process; if that process "
                f"is gone, `ablate run {path} --set experiment.heartbeat=1` trains it again") in err
    assert [t.state.name for t in search_trials(path, "experiment.heartbeat=1")] == ["RUNNING"]


@pytest.mark.parametrize("storage", ["heartbeats", "journal"])
def test_dry_run_keeps_its_columns_for_every_state(write_experiment, tmp_path, capsys, storage):
    """`process gone, to run` (heartbeats) and `process gone: --rerun it` (a journal) are wider
    than the other states: the changes after them were pushed out of their column."""
    path = searched(write_experiment, 1, variants="bs8 = { batch_size = 8 }\n")
    setting = ("experiment.heartbeat=1" if storage == "heartbeats"
               else f'experiment.storage="journal:///{tmp_path}/study.journal"')
    assert run(path, "--only", "baseline", "--set", setting) == 0
    killed, _ = _kill_a_search_trial(path, [setting])
    if storage == "heartbeats":
        killed.study._storage.record_heartbeat(killed._trial_id)
    capsys.readouterr()
    assert run(path, "--dry-run", "--set", setting) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if "-s42 " in line]
    gone = "process gone, to run" if storage == "heartbeats" else "process gone: --rerun it"
    assert len(lines) == 3 and gone in lines[2]
    changes = ("—", "batch_size=", "learning_rate=")
    starts = {line.index(change) for line, change in zip(lines, changes, strict=True)}
    assert len(starts) == 1, lines


def test_a_failed_search_trial_is_retried_once_per_run(write_experiment, monkeypatch):
    path = searched(write_experiment, 1)

    def fails(trial, *args, **kwargs):
        raise RuntimeError("no luck")

    monkeypatch.setattr(train, "train_trial", fails)
    assert run(path) == 1
    assert run(path) == 1  # baseline and search_1 tried again, once each
    assert [t.state.name for t in search_trials(path)] == ["FAIL", "FAIL"]
    assert {t.user_attrs["variant"] for t in search_trials(path)} == {"search_1"}


# --------------------------------------------------------------------------- M1: selections


def test_only_rerun_and_retry_failed_add_no_search_trials(write_experiment, capsys):
    path = searched(write_experiment, 1, variants="bs32 = { batch_size = 32 }\n")
    for options in (["--only", "baseline"], ["--retry-failed"], ["--rerun", "baseline"]):
        capsys.readouterr()
        assert run(path, *options, "--dry-run") == 0
        assert "then [search]: no new trials" in capsys.readouterr().out
    assert run(path, "--only", "baseline") == 0
    assert run(path, "--rerun", "baseline") == 0
    assert run(path, "--retry-failed") == 0
    assert search_trials(path) == []
    # A worker that claims only a variant proposes nothing either.
    run_worker(load_spec(path), echo=lambda line: None, only=["baseline_bs32"])
    assert search_trials(path) == []

    capsys.readouterr()
    assert run(path, "--only", "search", "--dry-run") == 0
    assert "then [search]: 1 more trial(s)" in capsys.readouterr().out
    assert run(path, "--only", "search") == 0  # the search, and nothing else
    assert len(search_trials(path)) == 1
    assert "baseline_bs32-s42" not in [t.user_attrs["key"] for t in trials(path)]


def test_search_trials_of_a_search_taken_out_of_the_file_are_said_to_stay_in_the_report(
        write_experiment, capsys):
    """As for a variant taken out of the file: run, --dry-run and status say that the search
    trials of a [search] section the file no longer has stay in the report."""
    path = searched(write_experiment, 2)
    assert run(path) == 0
    capsys.readouterr()
    assert run(path, "--dry-run") == 0  # with [search]: nothing to say
    assert "no longer makes" not in capsys.readouterr().out
    names = [t.user_attrs["variant"] for t in search_trials(path)]
    text = path.read_text()
    path.write_text(text[:text.index("[search]")])
    for dry in (["--dry-run"], []):
        capsys.readouterr()
        assert run(path, *dry) == 0
        assert (f"note: the study holds 2 [search] trial(s) ({', '.join(names)}), which the file, "
                "with no [search] section now, no longer makes: they stay in the report (its "
                "Search section)") in capsys.readouterr().out
    capsys.readouterr()
    assert cli.main(["status", str(path)]) == 0
    assert (f"not in {path.name} now: {', '.join(sorted(names))} (their results still count in "
            "the report)") in capsys.readouterr().out


def test_only_search_needs_a_search(write_experiment, capsys):
    path = write_experiment(baseline=QUICK)
    assert run(path, "--only", "search", "--dry-run") == 2
    err = capsys.readouterr().err
    assert "--only 'search': no such variant" in err and "selects the [search]" not in err


@pytest.mark.parametrize("option", ["--rerun", "--only"])
def test_a_search_trial_is_not_chosen_by_name_and_the_error_says_what_to_do(write_experiment, capsys,
                                                                            option):
    path = searched(write_experiment, 1)
    assert run(path, option, "search_1", "--dry-run") == 2
    err = capsys.readouterr().err
    assert f"{option} 'search_1': the [search] trials of {path.name} cannot be chosen one by one" in err
    assert "give them a name in [variants]" in err and "Traceback" not in err


def test_a_value_the_search_could_propose_but_not_train_is_refused_before_any_trial(
        write_experiment, capsys):
    """fp16 on a CPU is refused by `validate` and by `run` up front: no study (so no failed
    search trial) is left, so the file can be fixed and run again."""
    path = searched(write_experiment, 2, 'precision = ["fp32", "fp16"]\n', sampler="grid")
    for command in (["validate", str(path)], ["run", str(path)], ["run", str(path), "--dry-run"]):
        assert cli.main(command) == 2
        assert "[search.space] precision: precision = 'fp16': fp16 needs a CUDA GPU" in \
            capsys.readouterr().err
    with pytest.raises(StudyNotFound):  # the refused run made nothing
        trials(path)
    assert run(path, "--set", 'search.space.precision=["fp32", "bf16"]') == 0
    assert sorted(p for (p,) in proposals(path, 'search.space.precision=["fp32", "bf16"]')) \
        == [("precision", "bf16"), ("precision", "fp32")]
    report = (load_spec(path).output_dir / "report.md").read_text()
    # The parameters end at the notes, e.g. "; tied with `search_1` (...)": fp32 and bf16 may tie.
    best = report.split("- **Best**: ")[1].split("\n")[0].split(" with ")[1].split("; ")[0]
    assert tomllib.loads(best.strip("`"))["precision"] in ("fp32", "bf16")  # pasteable TOML


def test_a_value_a_set_gave_the_search_space_is_refused_as_that_sets(write_experiment, capsys):
    """What the machine or the data refuse of a [search.space] value a --set gave is that --set's,
    as it is for [baseline] and [variants] (it was blamed on the file, which says otherwise)."""
    path = searched(write_experiment, 2)
    setting = 'search.space.precision=["fp32", "fp16"]'
    assert cli.main(["validate", str(path), "--set", setting]) == 2
    err = capsys.readouterr().err
    assert f"--set {setting!r}: [search.space] precision: precision = 'fp16': fp16 needs" in err, err
    assert cli.main(["validate", str(path), "--set", "search.space.max_train_samples=[5, 100000]"]) == 2
    assert "--set 'search.space.max_train_samples=[5, 100000]': [search.space] max_train_samples: " \
        "max_train_samples = 100000 is more than" in capsys.readouterr().err


def test_grid_trains_every_point_once_over_variants_and_several_proposals(write_experiment):
    """Each grid point once: the grid's order is the study's, not reshuffled for each proposal
    (a reshuffle read the stored grid ids in another order: one point twice, one never)."""
    path = searched(write_experiment, 4, "batch_size = [8, 16]\neval_steps = { low = 2, high = 4, "
                    "step = 2 }\n", sampler="grid", variants="[variants.lr]\nlearning_rate = 2e-3\n")
    assert run(path) == 0
    assert sorted(proposals(path)) == [(("batch_size", b), ("eval_steps", e))
                                       for b in (8, 16) for e in (2, 4)]


def test_validate_counts_the_search_trials_too(write_experiment, capsys):
    path = searched(write_experiment, 3)
    capsys.readouterr()
    assert cli.main(["validate", str(path)]) == 0
    assert "ok: 1 trial(s) and 3 [search] trial(s) in all (random sampler); train " in \
        capsys.readouterr().out


def test_a_pruned_trial_is_counted_as_pruned_by_the_worker(write_experiment, monkeypatch, capsys):
    """`worker done: N trial(s) complete, M failed` left out the trials the pruner stopped."""
    from types import SimpleNamespace

    from ablation import records, sweep
    from ablation.progress import Lines
    from ablation.tracking import NullTracker

    spec = load_spec(searched(write_experiment, 1))
    study = open_study(spec)
    trial = TrialSpec.of(spec.baseline, search.search_trial_name(0), 42, {})
    study.enqueue_trial({}, user_attrs=records.trial_attrs(trial))
    monkeypatch.setattr(train, "train_with_backoff", lambda *args, **kwargs: {
        "validation": {spec.experiment.metric: 0.5}, "runtime_s": 1.0})
    outcome = sweep.RunOutcome(planned=[])
    sweep._runner._run_one(study, study.ask(), trial, spec, None, None, NullTracker(), "run", outcome,
                   Lines(quiet=True), pruning=SimpleNamespace(pruned_at_step=2))
    assert outcome.pruned == [trial.key] and not outcome.completed and not outcome.failed

    monkeypatch.setattr(sweep, "run_worker", lambda *args, **kwargs: outcome)
    capsys.readouterr()
    assert cli.main(["worker", str(spec.path)]) == 0
    assert "worker done: 0 trial(s) complete, 1 pruned, 0 failed\n" in capsys.readouterr().out


def test_a_pruned_trials_swanlab_run_says_where_the_pruner_stopped_it(write_experiment,
                                                                      monkeypatch):
    """A pruned trial's run ended as success with nothing else to tell it from a trial trained
    to the end: its config now holds pruned_at_step (its state stays success: SwanLab has no
    pruned state, and its local dashboard shows aborted as Crashed)."""
    import sqlite3
    from types import SimpleNamespace

    import yaml

    from ablation import records, sweep
    from ablation.progress import Lines
    from ablation.tracking import SwanLabTracker

    spec = load_spec(searched(write_experiment, 1, tracking='backend = "swanlab"\nmode = "local"'))
    study = open_study(spec)
    trial = TrialSpec.of(spec.baseline, search.search_trial_name(0), 42, {})
    study.enqueue_trial({}, user_attrs=records.trial_attrs(trial))
    monkeypatch.setattr(train, "train_with_backoff", lambda *args, **kwargs: {
        "validation": {spec.experiment.metric: 0.5}, "runtime_s": 1.0})
    sweep._runner._run_one(study, study.ask(), trial, spec, None, None,
                   SwanLabTracker(spec.tracking, spec.output_dir), trial.key,
                   sweep.RunOutcome(planned=[]), Lines(quiet=True),
                   pruning=SimpleNamespace(pruned_at_step=2))
    swanlog = spec.output_dir / "swanlog"
    with sqlite3.connect(swanlog / "runs.swanlab") as db:
        ((name, run_id, status),) = db.execute("select name, run_id, status from experiment")
    config = yaml.safe_load((swanlog / run_id / "files" / "config.yaml").read_text())
    assert (name, status, config["pruned_at_step"]["value"]) == (trial.key, 1, 2)


def test_an_interrupted_trials_run_ends_as_aborted_as_swanlab_ends_its_own_on_ctrl_c(
        write_experiment, monkeypatch):
    """Ctrl+C ended the trial's run as crashed, beside the trials that failed: online it now
    reads Aborted, the state SwanLab gives its own runs on Ctrl+C; a failure stays crashed."""
    from ablation import records, sweep
    from ablation.progress import Lines

    spec = load_spec(searched(write_experiment, 1))
    study = open_study(spec)
    ended = []

    class Recording:
        def start(self, name, group, config):
            pass

        def finish(self, error=None, *, interrupted=False, pruned_at_step=None):
            ended.append((error, interrupted))

    for fault in (KeyboardInterrupt, RuntimeError("no")):
        def train_with_backoff(*args, fault=fault, **kwargs):
            raise fault

        monkeypatch.setattr(train, "train_with_backoff", train_with_backoff)
        trial = TrialSpec.of(spec.baseline, "baseline", 42 + len(ended), {})
        study.enqueue_trial({}, user_attrs=records.trial_attrs(trial))
        with contextlib.suppress(KeyboardInterrupt):
            sweep._runner._run_one(study, study.ask(), trial, spec, None, None, Recording(), "run",
                           sweep.RunOutcome(planned=[]), Lines(quiet=True))
    assert ended == [(sweep.INTERRUPTED, True), ("RuntimeError: no", False)]


def test_a_proposal_of_earlier_parameters_takes_their_result_without_training(
        write_experiment, monkeypatch, capsys):
    """Random and TPE can draw a point of a small space again: it trained again at the same seed
    (the same result, for the whole cost of a trial). Now it takes the earlier trial's result,
    and the report, status and the run say so; it still counts toward n_trials."""
    from ablation import records
    from ablation.sweep import _runner as sweep

    # Seeded by trial number, random draws 8 for trials 1-6 and 16 for trial 7.
    path = searched(write_experiment, 7, "batch_size = [8, 16]\n")
    trained = []
    real = sweep._run_one
    monkeypatch.setattr(sweep, "_run_one", lambda study, optuna_trial, trial, *args, **kwargs: (
        trained.append(trial.overrides.get("batch_size", "baseline")),
        real(study, optuna_trial, trial, *args, **kwargs))[1])
    assert run(path) == 0
    out = capsys.readouterr().out
    found = search_trials(path)
    assert len(found) == 7 and all(t.state.name == "COMPLETE" for t in found)
    firsts = [t for t in found if records.REPEAT_OF not in t.user_attrs]
    repeats = [t for t in found if records.REPEAT_OF in t.user_attrs]
    # Each point trained once, whatever order the sampler drew them in.
    assert sorted(trained, key=str) == [16, 8, "baseline"] and len(firsts) == 2
    assert len(repeats) == 5
    by_number = {t.number: t for t in firsts}
    for repeat in repeats:
        earlier = by_number[repeat.user_attrs[records.REPEAT_OF]]
        assert repeat.params == earlier.params and repeat.value == earlier.value
        assert (f"{repeat.user_attrs['variant']}-s42: batch_size={repeat.params['batch_size']} "
                f"(search {repeat.number}/7): the parameters of {earlier.user_attrs['variant']}, "
                "whose result it takes") in out, out

    report = (path.parent / "reports" / "tiny" / "report.md").read_text()
    assert ("7 of 7 search trials: 2 complete, 0 pruned, 0 failed, 5 proposed the parameters of an "
            "earlier trial and took its result, not trained again") in report
    first = repeats[0]
    assert (f"`{first.user_attrs['variant']}` = "
            f"`{by_number[first.user_attrs[records.REPEAT_OF]].user_attrs['variant']}`") in report
    # The report's tables have rows for the points trained, none for the proposals that were not.
    rows = {line.split(" |")[0] for line in report.splitlines() if line.startswith("| search_")}
    assert rows == {f"| {t.user_attrs['variant']}" for t in firsts}

    assert cli.main(["status", str(path)]) == 0
    status = capsys.readouterr().out
    assert status.count("its result, not trained again") == 5, status
    # The sum under the table counted the 5 repeats as "earlier attempt(s) not counted", as if
    # trials had been retried: they are proposals, said apart.
    assert ("3 trial(s): 3 complete; 5 search proposal(s) that repeated an earlier trial's "
            "parameters, not trained") in status, status
    assert "earlier attempt" not in status
    assert cli.main(["status", str(path), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)["summary"]
    assert (summary["earlier_attempts"], summary["repeated_proposals"]) == (0, 5)

    # Both points trained: a worker's further proposals are all repeats, and it says so.
    assert cli.main(["worker", str(path), "--set", "search.n_trials=9"]) == 0
    assert ("worker done: 0 trial(s) complete, 0 failed, 2 search proposal(s) of earlier "
            "parameters not trained again") in capsys.readouterr().out
