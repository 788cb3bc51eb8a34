"""End to end through the CLI on a tiny random BERT: storage, SwanLab runs, report, re-runs."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest
import torch
from conftest import queue_by_an_interrupted_run, without_write_permission

from ablation import cli, train
from ablation.config import load_spec

LOCAL_SWANLAB = 'backend = "swanlab"\nproject = "ablate-tests"\nmode = "local"'


def _study(path: Path) -> optuna.Study:
    spec = load_spec(path)
    return optuna.load_study(study_name=spec.name, storage=spec.experiment.storage)


def _swanlab_runs(output_dir: Path) -> list[tuple[str, int]]:
    """(experiment name, status) of every run in the local SwanLab database."""
    with sqlite3.connect(output_dir / "swanlog" / "runs.swanlab") as db:
        return list(db.execute("select name, status from experiment order by id"))


def test_run_writes_trials_runs_and_report_then_reuses_them(write_experiment, capsys):
    path = write_experiment(tracking=LOCAL_SWANLAB)
    output_dir = load_spec(path).output_dir

    assert cli.main(["run", str(path)]) == 0
    assert "swanlab:" not in capsys.readouterr().out  # SwanLab's greetings: ablate says where

    trials = _study(path).get_trials()
    assert [(t.user_attrs["variant"], t.user_attrs["seed"], t.state.name) for t in trials] == [
        ("baseline", 42, "COMPLETE"), ("baseline_bs32", 42, "COMPLETE")]
    for trial in trials:
        result = trial.user_attrs["result"]
        assert trial.value == pytest.approx(result["validation"]["macro_f1"])
        assert {"loss", "grad_norm", "learning_rate", "epoch"} <= set(result["history"][0])
        assert len(result["eval_history"]) >= 2  # eval_steps = 5 gives a curve, not a point
        assert {"accuracy", "macro_f1", "log_loss", "eval_loss"} <= set(result["test"])
        assert len(result["test_confusion"]) == 3
    assert trials[1].user_attrs["overrides"] == {"batch_size": 32}

    # One SwanLab run per trial, each finished.
    assert _swanlab_runs(output_dir) == [("baseline-s42", 1), ("baseline_bs32-s42", 1)]

    report = (output_dir / "report.md").read_text()
    assert "| **baseline" in report or "| baseline |" in report
    assert "baseline_bs32 | batch_size=32" in report or "**baseline_bs32** ★ | batch_size=32" in report
    assert "![train loss](plots/train_loss.png)" in report
    for name in ("train_loss", "eval_loss", "grad_norm"):
        assert (output_dir / "plots" / f"{name}.png").stat().st_size > 1000
    results = pd.read_csv(output_dir / "results.csv")
    assert list(results["variant"]) == ["baseline", "baseline_bs32"]
    assert (output_dir / "experiment.toml").read_text() == path.read_text()
    assert (output_dir / "resolved.json").exists()
    trial_log = (output_dir / "trials" / "baseline-s42" / "trial.log").read_text()
    assert "'grad_norm'" in trial_log and "'eval_macro_f1'" in trial_log
    assert not (output_dir / "trials" / "baseline-s42" / "checkpoints").exists()

    # Second run: nothing trains again, the report is regenerated.
    capsys.readouterr()
    assert cli.main(["run", str(path)]) == 0
    assert len(_study(path).get_trials()) == 2
    assert "re-using 2 completed trial(s)" in capsys.readouterr().out
    assert len(_swanlab_runs(output_dir)) == 2
    # A trial trained again is a run of its own, named apart from the one it supersedes.
    assert cli.main(["run", str(path), "--rerun", "baseline_bs32"]) == 0
    assert _swanlab_runs(output_dir)[2:] == [("baseline_bs32-s42-try2", 1)]


def test_only_and_set_add_just_the_named_variant_seeds(write_experiment):
    path = write_experiment(variants="bs32 = { batch_size = 32 }\nlr = { learning_rate = 5e-3 }\n")
    assert cli.main(["run", str(path), "--only", "baseline_lr"]) == 0
    assert [t.user_attrs["key"] for t in _study(path).get_trials()] == ["baseline_lr-s42"]

    assert cli.main(["run", str(path), "--only", "baseline_lr", "--only", "baseline",
                     "--set", "experiment.seeds=[42, 7]"]) == 0
    keys = [t.user_attrs["key"] for t in _study(path).get_trials()]
    assert keys == ["baseline_lr-s42", "baseline-s42", "baseline-s7", "baseline_lr-s7"]


def test_a_failing_trial_is_recorded_and_retried_on_the_next_run(write_experiment, monkeypatch,
                                                                  capsys):
    path = write_experiment()
    real_train = train.train_trial

    def train_or_fail(trial, *args, **kwargs):
        if trial.variant == "baseline_bs32":
            raise RuntimeError("simulated crash")
        return real_train(trial, *args, **kwargs)

    monkeypatch.setattr(train, "train_trial", train_or_fail)
    assert cli.main(["run", str(path)]) == 1
    states = {t.user_attrs["key"]: (t.state.name, t.user_attrs.get("error"))
              for t in _study(path).get_trials()}
    assert states == {"baseline-s42": ("COMPLETE", None),
                      "baseline_bs32-s42": ("FAIL", "RuntimeError: simulated crash")}
    output_dir = load_spec(path).output_dir
    log = (output_dir / "trials" / "baseline_bs32-s42" / "trial.log").read_text()
    assert "Traceback" in log and "simulated crash" in log
    report = (output_dir / "report.md").read_text()
    assert "`baseline_bs32-s42` (trial 1): RuntimeError: simulated crash" in report

    capsys.readouterr()
    assert cli.main(["status", str(path)]) == 1
    assert "FAIL" in capsys.readouterr().out

    monkeypatch.setattr(train, "train_trial", real_train)
    assert cli.main(["run", str(path)]) == 0
    trials = _study(path).get_trials()
    assert [(t.user_attrs["key"], t.state.name) for t in trials] == [
        ("baseline-s42", "COMPLETE"), ("baseline_bs32-s42", "FAIL"),
        ("baseline_bs32-s42", "COMPLETE")]
    assert cli.main(["status", str(path)]) == 0
    assert "Trials without a result" not in (output_dir / "report.md").read_text()


def test_dry_run_lists_the_plan_and_creates_nothing(write_experiment, capsys):
    path = write_experiment()
    assert cli.main(["run", str(path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "plan: 2 trial(s)" in out and "baseline_bs32-s42" in out and "to run" in out
    assert not load_spec(path).output_dir.exists()


def test_dry_run_says_what_data_the_trials_would_train_on(write_experiment, capsys):
    """Checking a file before a long run: the rows each split keeps after max_*_samples and the
    labels, as `run` says them (the dry run read the data and said nothing of it); data that
    cannot be read is refused in one line before anything is made."""
    path = write_experiment(variants="")
    assert cli.main(["run", str(path), "--dry-run", "--set", "data.max_train_samples=100"]) == 0
    lines = capsys.readouterr().out.splitlines()
    data = [line for line in lines if line.startswith("data: ")]
    assert data == ["data: validation carved from 'train': 24 rows (0.1, stratified)",
                    "data: [data] max_eval_samples = 40 is more than the 24 rows there are: all "
                    "are used",
                    "data: train 100, validation 24, test 60 rows; labels 0, 1, 2"]
    assert lines.index(data[-1]) < next(i for i, line in enumerate(lines) if line.startswith("plan:"))
    assert cli.main(["run", str(path), "--dry-run", "--set", 'data.label_column="sentiment"']) == 2
    err = capsys.readouterr().err
    assert err.startswith("ablate: error: --set 'data.label_column=\"sentiment\"': [data] "
                          "label_column = 'sentiment': split 'train' of ") and err.count("\n") == 1
    assert "no such column (columns: 'text', 'label')" in err
    assert not load_spec(path).output_dir.exists()


def test_dry_run_plans_as_run_does(write_experiment, monkeypatch, capsys):
    path = write_experiment()
    assert cli.main(["run", str(path)]) == 0

    def plan_of(*options: str) -> dict[str, str]:
        capsys.readouterr()
        assert cli.main(["run", str(path), "--dry-run", *options]) == 0
        lines = capsys.readouterr().out.splitlines()
        start = next(i for i, line in enumerate(lines) if line.startswith("plan:"))
        return {line.split()[0]: line[35:53].strip() for line in lines[start + 1:]
                if line.startswith("  ")}

    assert plan_of() == {"baseline-s42": "complete, re-used", "baseline_bs32-s42": "complete, re-used"}
    assert plan_of("--rerun", "baseline_bs32") == {"baseline_bs32-s42": "to run again"}
    assert plan_of("--retry-failed") == {"baseline-s42": "complete, re-used",
                                         "baseline_bs32-s42": "complete, re-used"}
    assert cli.main(["run", str(path), "--dry-run", "--rerun", "nope"]) == 2  # as run says

    def fails(*args, **kwargs):
        raise RuntimeError("flaky")

    monkeypatch.setattr(train, "train_trial", fails)
    assert cli.main(["run", str(path), "--rerun", "baseline"]) == 1  # superseded, then failed
    assert cli.main(["status", str(path)]) == 1
    assert cli.main(["report", str(path)]) == 0  # the report is written; the failure is in it
    assert "flaky" in (load_spec(path).output_dir / "report.md").read_text()
    assert plan_of() == {"baseline-s42": "to run", "baseline_bs32-s42": "complete, re-used"}
    assert plan_of("--retry-failed") == {"baseline-s42": "to run",
                                         "baseline_bs32-s42": "complete, re-used"}


def test_dry_run_refuses_what_run_refuses_once_the_data_and_models_load(
        write_experiment, tiny_data_dir, tmp_path, capsys):
    """A knob that does not fit the data, and data rows changed since the study ran."""
    path = write_experiment(variants="cw = { class_weight = [1.0, 2.0] }\n")
    for options in (["--dry-run"], []):
        capsys.readouterr()
        assert cli.main(["run", str(path), *options]) == 2
        err = capsys.readouterr().err
        assert "class_weight has 2 values but the data has 3 classes" in err, err

    data = shutil.copytree(tiny_data_dir, tmp_path / "data")
    sets = ["--set", f'data.dataset="{data}"', "--set", 'experiment.name="rows"',
            "--set", f'experiment.output_dir="{tmp_path / "rows"}"']
    path = write_experiment(variants="")
    assert cli.main(["run", str(path), *sets]) == 0
    train_csv = data / "train.csv"
    train_csv.write_text(train_csv.read_text().replace("great", "grand", 1))
    for command in (["run", "--dry-run"], ["run"], ["validate"]):  # validate: what run refuses
        capsys.readouterr()
        assert cli.main([command[0], str(path), *sets, *command[1:],
                         "--set", "experiment.seeds=[1]"]) == 2
        assert "other data rows" in capsys.readouterr().err


def test_dry_run_says_what_search_will_add(write_experiment, capsys):
    path = write_experiment(variants="", extra=(
        "[search]\nn_trials = 3\n[search.space]\n"
        "learning_rate = { low = 1e-4, high = 1e-2, log = true }\n"))
    assert cli.main(["run", str(path), "--dry-run"]) == 0
    assert ("then [search]: 3 more trial(s) proposed by the tpe sampler (n_trials 3, 0 made so far)"
            in capsys.readouterr().out)
    assert cli.main(["run", str(path)]) == 0
    capsys.readouterr()
    assert cli.main(["run", str(path), "--dry-run"]) == 0
    assert "then [search]: 0 more trial(s)" in capsys.readouterr().out


def test_report_and_status_commands_read_the_storage(write_experiment, capsys):
    path = write_experiment(variants="")
    assert cli.main(["run", str(path)]) == 0
    report = load_spec(path).output_dir / "report.md"
    report.unlink()
    assert cli.main(["report", str(path)]) == 0
    assert report.exists()
    capsys.readouterr()
    assert cli.main(["status", str(path)]) == 0
    assert "baseline-s42" in capsys.readouterr().out
    # A report by another metric than the trials were selected with would show the stored one.
    before = report.read_text()
    assert cli.main(["report", str(path), "--set", 'experiment.metric="accuracy"']) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--set 'experiment.metric=\"accuracy\"', but study 'tiny' was " \
        "run with metric = 'macro_f1'" in err and "a new [experiment] name" in err
    path.write_text(path.read_text().replace('name = "tiny"', 'name = "tiny"\nmetric = "eval_loss"'))
    assert cli.main(["report", str(path)]) == 2
    assert f"{path} says metric = 'eval_loss', but study 'tiny'" in capsys.readouterr().err
    assert report.read_text() == before
    assert cli.main(["status", str(path)]) == 0  # its values are macro_f1, and headed so
    header = capsys.readouterr().out.splitlines()[1]
    assert "macro_f1" in header and "eval_loss" not in header


@pytest.mark.parametrize("argv, expected", [
    (["run", "missing.toml"], "missing.toml: no such experiment file"),
    (["frobnicate"], "invalid choice"),
    (["run"], "the following arguments are required: file"),
])
def test_bad_command_lines_give_one_line_and_exit_2(argv, expected, capsys):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert expected in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_bad_input_exits_2_with_one_line_and_trains_nothing(write_experiment, capsys):
    path = write_experiment(variants="bad = { batch_size = 0 }\n")
    assert cli.main(["run", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ablate: error: ") and "batch_size = 0" in err and "\n" not in err
    assert not load_spec(path, ["variants.bad.batch_size=1"]).output_dir.exists()


def test_only_with_an_unknown_variant_is_bad_input(write_experiment, capsys):
    path = write_experiment()
    assert cli.main(["run", str(path), "--only", "bs32"]) == 2
    assert "--only 'bs32': no such variant" in capsys.readouterr().err


def test_status_of_a_study_never_run_is_bad_input_and_names_the_run_that_makes_it(
        write_experiment, capsys):
    path = write_experiment(variants="")
    named = ["--set", 'experiment.name="other"']
    assert cli.main(["status", str(path), *named]) == 2
    hint = re.search(r"run `ablate (.*)` first", capsys.readouterr().err)
    assert hint is not None and shlex.split(hint.group(1)) == ["run", str(path), *named]
    assert cli.main(shlex.split(hint.group(1))) == 0
    assert cli.main(["status", str(path), *named]) == 0


def test_ctrl_c_marks_the_trial_failed_finishes_its_run_and_exits_130(write_experiment,
                                                                      monkeypatch, capsys):
    path = write_experiment(tracking=LOCAL_SWANLAB)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(train, "train_trial", interrupted)
    assert cli.main(["run", str(path)]) == 130
    assert "interrupted" in capsys.readouterr().err
    trials = _study(path).get_trials()
    assert [(t.state.name, t.user_attrs.get("error")) for t in trials] == [
        ("FAIL", "interrupted (Ctrl+C or SIGTERM)"),
        ("WAITING", None)]  # still queued: the next run takes it
    runs = _swanlab_runs(load_spec(path).output_dir)
    assert runs == [("baseline-s42", runs[0][1])] and runs[0][1] != 1  # finished, as crashed

    monkeypatch.undo()
    assert cli.main(["run", str(path)]) == 0
    states = [(t.user_attrs["key"], t.state.name) for t in _study(path).get_trials()]
    assert states == [("baseline-s42", "FAIL"), ("baseline_bs32-s42", "COMPLETE"),
                      ("baseline-s42", "COMPLETE")]


def test_ctrl_c_after_the_file_was_edited_says_status_tells_whether_the_run_goes_on(
        write_experiment, monkeypatch, capsys):
    """A variant's knob edited while the run trained, then Ctrl+C: the line said the same `run`
    goes on from there, which then refuses the edited file; it says the file was edited and that
    `status` (which gives the `--rerun`) says whether it still does."""
    path = write_experiment()

    def edited_then_interrupted(*args, **kwargs):
        path.write_text(path.read_text().replace("batch_size = 32", "batch_size = 24"))
        raise KeyboardInterrupt

    monkeypatch.setattr(train, "train_trial", edited_then_interrupted)
    assert cli.main(["run", str(path)]) == 130
    err = capsys.readouterr().err
    assert (f"`ablate run {path}` goes on from there ({path} was edited since this run read it: "
            f"`ablate status {path}` says whether it still does)") in err, err


@pytest.mark.parametrize("storage", [
    "postgresql://nobody@127.0.0.1:1/none",  # no driver or no server: either way, bad input
    "sqlite:////proc/ablate-cannot-write-here/study.db",
    "nosuchdb://x",
])
def test_an_unusable_storage_is_bad_input(write_experiment, capsys, storage):
    path = write_experiment()
    assert cli.main(["run", str(path), "--set", f'experiment.storage="{storage}"']) == 2
    err = capsys.readouterr().err
    assert f"[experiment] storage = '{storage}' cannot be opened" in err
    assert err.count("\n") == 1


@pytest.mark.parametrize("content", ['text,label\ngreat fun,1\n', '{"text": "great fun", "label": 1}\n'])
@pytest.mark.parametrize("command", ["run", "status"])
def test_a_journal_storage_that_is_not_a_journal_is_named_so(write_experiment, tmp_path, capsys,
                                                            content, command):
    """journal:/// pointed at a data file: JSON Lines was read as a journal without any study
    ('no study yet; run it first', from run itself), a CSV gave json's 'Expecting value'; the
    file is left as it was."""
    data = tmp_path / "train.jsonl"
    data.write_text(content)
    path = write_experiment()
    assert cli.main([command, str(path), "--set", f'experiment.storage="journal:///{data}"']) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and (
        f"[experiment] storage = 'journal:///{data}' cannot be opened: {data} is not an Optuna "
        "journal (its first line is not one of a journal's records)") in err, err
    assert data.read_text() == content


@pytest.mark.parametrize("command", [["run"], ["run", "--dry-run"], ["status"], ["report"],
                                     ["worker"]])
def test_a_sqlite_storage_that_is_not_a_database_is_refused_and_leaves_nothing_beside(
        write_experiment, tmp_path, capsys, command):
    """sqlite:/// pointed at a data file: refused, but its lock file (FILE.lock) stayed beside
    the user's file; a refusal leaves the folder as it found it."""
    folder = tmp_path / "mine"
    folder.mkdir()
    data = folder / "train.csv"
    data.write_text("text,label\ngreat fun,1\n")
    path = write_experiment()
    assert cli.main([command[0], str(path), *command[1:],
                     "--set", f'experiment.storage="sqlite:///{data}"']) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and (
        f"[experiment] storage = 'sqlite:///{data}' cannot be opened: file is not a database") in err
    assert [p.name for p in folder.iterdir()] == ["train.csv"]
    assert data.read_text() == "text,label\ngreat fun,1\n"


def test_a_storage_without_its_driver_says_what_to_install(write_experiment, capsys):
    path = write_experiment()  # pymysql is no dependency: SQLAlchemy's mysql:// finds no driver
    assert cli.main(["run", str(path), "--dry-run", "--set",
                     'experiment.storage="mysql://u:p@127.0.0.1:1/db"']) == 2
    err = capsys.readouterr().err
    assert "cannot be opened: Failed to import DB access module" in err
    assert "For mysql: pip install pymysql, and a mysql+pymysql:// URL" in err and err.count("\n") == 1


def test_validate_checks_data_and_model_and_trains_nothing(write_experiment, capsys):
    path = write_experiment()
    assert cli.main(["validate", str(path)]) == 0
    out = capsys.readouterr().out
    assert "ok: 2 trial(s); train 216, validation 24, test 60 rows; labels 0, 1, 2" in out
    assert not load_spec(path).output_dir.exists()


@pytest.mark.parametrize("sets, expected", [
    (["data.text_column=body"], "--set 'data.text_column=body': [data] text_column = 'body': "
                                "split 'train'"),
    (["data.validation_split=dev"], "--set 'data.validation_split=dev': [data] of "),
    (["model.config.num_layerz=2"], "[model] config key 'num_layerz': BertConfig of "),
    (["variants.cw.class_weight=[1.0, 2.0]"], "baseline_cw: class_weight has 2 values but the "
                                               "data has 3 classes"),
    (["variants.half.precision=fp16"], "--set 'variants.half.precision=fp16': baseline_half: "
                                       "precision = 'fp16': fp16 needs a CUDA GPU"),
    (["baseline.precision=fp16"], "--set 'baseline.precision=fp16': baseline: precision = 'fp16'"),
    (["baseline.class_weight=[1.0, 2.0]"], "--set 'baseline.class_weight=[1.0, 2.0]': baseline: "
                                           "class_weight has 2 values"),
    (["variants.h3.model_config.num_attention_heads=3"],  # one key of a variant's model_config
     "--set 'variants.h3.model_config.num_attention_heads=3': baseline_h3: model_config = "
     "{ num_attention_heads = 3 }: BertConfig cannot build a model"),
    (["baseline.model_config.num_attention_heads=3"],
     "--set 'baseline.model_config.num_attention_heads=3': baseline: model_config = "
     "{ num_attention_heads = 3 }: BertConfig cannot build a model"),
])
def test_validate_reports_data_and_model_problems_in_one_line(write_experiment, capsys, sets,
                                                              expected):
    import torch

    if "fp16" in sets[0] and torch.cuda.is_available():
        pytest.skip("fp16 is valid on this GPU machine")
    path = write_experiment()
    assert cli.main(["validate", str(path), *[f"--set={s}" for s in sets]]) == 2
    err = capsys.readouterr().err
    assert expected in err and err.count("\n") == 1


def test_early_stopping_that_cannot_stop_gets_a_note(write_experiment, capsys):
    """216 training rows at batch 16: 14 steps an epoch, 28 in 2 epochs, an evaluation every 5:
    6 evaluations. The first is the best so far, so a patience of 5 stops at the 6th at the
    earliest, which is the last step: patience 5 and 6 never stop training early (the variant
    trains the baseline); 4 can stop at the 5th evaluation, step 25."""
    path = write_experiment(variants="p4 = { early_stopping_patience = 4 }\n"
                                     "p5 = { early_stopping_patience = 5 }\n"
                                     "p6 = { early_stopping_patience = 6 }\n")
    for command in (["validate"], ["run", "--dry-run"]):
        assert cli.main([command[0], str(path), *command[1:]]) == 0
        notes = [line for line in capsys.readouterr().out.splitlines() if "never stops" in line]
        assert notes == [f"note: baseline_p{p}: early_stopping_patience = {p} never stops training: "
                         "it evaluates 6 time(s) in its 28 steps (every 5), and the first "
                         f"evaluation is always the best so far, so {p} evaluation(s) without "
                         "improvement end no sooner than its last step; a smaller eval_steps or "
                         "patience lets it stop"
                         for p in (5, 6)]


def test_an_eval_steps_beyond_the_training_gets_a_note(write_experiment, capsys):
    """216 training rows at batch 16: 28 steps in 2 epochs (14 at batch 32). An eval_steps of 20
    evaluates the baseline at steps 20 and 28, but the bs32 variant once, at its last step: one
    validation point, the last checkpoint picked. eval_steps = 0 (once per epoch) is two."""
    path = write_experiment(baseline="learning_rate = 1e-3\nbatch_size = 16\nepochs = 2\n"
                                     "eval_steps = 20\n",
                            variants="bs32 = { batch_size = 32 }\n"
                                     "bs64 = { batch_size = 64 }\n"
                                     "epoch = { batch_size = 32, eval_steps = 0 }\n")
    for command in (["validate"], ["run", "--dry-run"]):
        assert cli.main([command[0], str(path), *command[1:]]) == 0
        notes = [line for line in capsys.readouterr().out.splitlines() if "eval_steps =" in line]
        assert notes == ["note: eval_steps = 20 is not less than the 8–14 training steps of "
                         "baseline_bs32, baseline_bs64: each evaluates once, at its last step, so "
                         "its curves have one validation point and the last checkpoint is the "
                         "one picked; a smaller eval_steps (or 0: once per epoch) evaluates "
                         "during training"]


def test_a_plateau_schedule_that_cannot_lower_the_rate_gets_a_note(write_experiment, capsys):
    """reduce_lr_on_plateau lowers the rate once 11 evaluations after the best did not improve on
    it (torch's patience of 10; the first evaluation is always the best so far), so at the 12th at
    the earliest, and only the steps after it train at the lower rate: a trial of 12 evaluations
    or fewer trains at a constant rate, whatever its evaluations say."""
    plateau = 'lr_scheduler = "reduce_lr_on_plateau"'
    path = write_experiment(variants=f"e10 = {{ {plateau}, eval_steps = 3 }}\n"  # 28 steps
                                     f"e12 = {{ {plateau}, max_steps = 24, eval_steps = 2 }}\n"
                                     f"e13 = {{ {plateau}, max_steps = 26, eval_steps = 2 }}\n")
    for command in (["validate"], ["run", "--dry-run"]):
        assert cli.main([command[0], str(path), *command[1:]]) == 0
        notes = [line for line in capsys.readouterr().out.splitlines() if "never lowers" in line]
        assert notes == [f"note: baseline_e{n}: lr_scheduler = 'reduce_lr_on_plateau' never lowers "
                         f"the learning rate: it evaluates {n} time(s) in its {steps} steps (every "
                         f"{every}), and the plateau lowers it once 11 evaluations after the best "
                         "did not improve on it (the first is always the best so far), so at the "
                         "12th at the earliest, for the steps after it; it trains as lr_scheduler "
                         "= 'constant' does; a smaller eval_steps gives it room"
                         for n, steps, every in ((10, 28, 3), (12, 24, 2))]


def test_a_dropout_equal_to_the_models_own_gets_a_note(write_experiment, capsys):
    """The tiny BERT's hidden and attention dropout are 0.1 (BertConfig's default): a variant
    with dropout 0.1 trains what the baseline, which leaves dropout unset, trains."""
    path = write_experiment(variants="d01 = { dropout = 0.1 }\nd02 = { dropout = 0.2 }\n")
    assert cli.main(["validate", str(path)]) == 0
    notes = [line for line in capsys.readouterr().out.splitlines() if "changes nothing" in line]
    assert len(notes) == 1 and notes[0].startswith(
        "note: baseline_d01: dropout=0.1 changes nothing: it is ")
    assert notes[0].endswith("'s own dropout, which the baseline (dropout unset) trains with")


def test_model_config_overrides_that_discard_pretrained_weights_get_a_note(write_experiment, capsys,
                                                                         tiny_model_dir):
    """A wider feed-forward layer or more layers than the checkpoint has cannot load those
    weights: transformers initialises them at random, and says so only in a load report ablate
    turns down, so such a variant compared a partly untrained model under the override's name.
    Fewer layers or another dropout keep every pretrained weight: no note."""
    from ablation.train import ModelSource, PretrainedWeights, load_model_config

    path = write_experiment(variants="ffn = { model_config = { intermediate_size = 128 } }\n"
                                     "deep = { model_config = { num_hidden_layers = 3 } }\n"
                                     "shallow = { model_config = { num_hidden_layers = 1 } }\n"
                                     "hdrop = { model_config = { hidden_dropout_prob = 0.3 } }\n")
    for command in (["validate"], ["run", "--dry-run"]):
        assert cli.main([command[0], str(path), *command[1:]]) == 0
        notes = [line for line in capsys.readouterr().out.splitlines() if "from scratch" in line]
        assert [note.split(":")[1].strip() for note in notes] == ["baseline_ffn", "baseline_deep"]
        assert "intermediate_size = 128" in notes[0] and "change the shape of 6 of its" in notes[0]
        assert "bert.encoder.layer.0.intermediate.dense.weight" in notes[0]
        assert "add 16 weights it has none of (bert.encoder.layer.2." in notes[1]
    # What the note says is what a trial starts from: those weights are not the checkpoint's.
    stock = PretrainedWeights().load(ModelSource(str(tiny_model_dir), None, {}),
                                     load_model_config(ModelSource(str(tiny_model_dir), None, {}),
                                                       ["a", "b", "c"])).state_dict()
    source = ModelSource(str(tiny_model_dir), None, {"num_hidden_layers": 3})
    deep = PretrainedWeights().load(source, load_model_config(source, ["a", "b", "c"])).state_dict()
    assert all(torch.equal(deep[name], stock[name]) for name in stock if "classifier" not in name)
    assert sum(name.startswith("bert.encoder.layer.2.") for name in deep) == 16


def test_a_study_whose_name_differs_only_in_case_is_told_its_folder_is_the_other_studys(
        write_experiment, tmp_path, capsys):
    """macOS: study 'TINY' after study 'tiny' finds reports/TINY holding tiny's files, as its file
    system ignores case; the refusal named a folder the user sees as another one. Simulated: a
    link reports/TINY to reports/tiny."""
    path = write_experiment(variants="")
    assert cli.main(["run", str(path)]) == 0
    (tmp_path / "reports" / "TINY").symlink_to(tmp_path / "reports" / "tiny")
    other = write_experiment(variants="", name="TINY")
    capsys.readouterr()
    assert cli.main(["validate", str(other)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert ("holds the files of study 'tiny' (its resolved.json: a file system that ignores case "
            "(macOS's, by default) makes TINY and tiny one folder); give study 'TINY' its own") in err


def test_a_study_is_refused_an_output_dir_that_holds_another_study(write_experiment, tmp_path, capsys):
    path = write_experiment(variants="")  # its output_dir is set in the file: reports/tiny
    assert cli.main(["run", str(path)]) == 0
    renamed = ["--set", 'experiment.name="tiny2"']
    for command in (["run"], ["run", "--dry-run"], ["validate"]):
        capsys.readouterr()
        assert cli.main([command[0], str(path), *command[1:], *renamed]) == 2
        err = capsys.readouterr().err
        assert err.startswith("ablate: error: --set 'experiment.name=\"tiny2\"': [experiment] "
                              "output_dir = ")
        assert "holds the files of study 'tiny' (its resolved.json); give study 'tiny2' its own" in err
    path.write_text(path.read_text().replace('name = "tiny"', 'name = "tiny3"'))
    assert cli.main(["validate", str(path)]) == 2  # the file's own name: the file's mistake
    assert capsys.readouterr().err.startswith(f"ablate: error: {path}: [experiment] output_dir")
    path.write_text(path.read_text().replace('name = "tiny3"', 'name = "tiny"'))
    spec = load_spec(path)
    assert optuna.load_study(study_name="tiny", storage=spec.experiment.storage).user_attrs
    assert cli.main(["report", str(path)]) == 0  # the folder's own study


def test_an_output_dir_holding_files_ablate_did_not_write_is_refused(write_experiment, tmp_path,
                                                                    capsys, monkeypatch):
    # output_dir = "." in a project folder: its own report.md, another experiment.toml, a plot
    # and trials/ would be replaced (or deleted by --force-new) without a word.
    project = tmp_path / "project"
    (project / "plots").mkdir(parents=True)
    (project / "trials").mkdir()
    theirs = {"report.md": "my notes\n", "experiment.toml": "# another study\n",
              "plots/metric.png": "mine", "trials/notes.txt": "mine"}
    for name, text in theirs.items():
        (project / name).write_text(text)
    path = write_experiment(variants="")
    text = path.read_text().replace(f'output_dir = "{tmp_path / "reports" / "tiny"}"',
                                    'output_dir = "."')
    (project / "tiny.toml").write_text(text)
    monkeypatch.chdir(project)
    for command in (["run"], ["run", "--dry-run"], ["validate"], ["run", "--force-new"]):
        capsys.readouterr()
        assert cli.main([command[0], "tiny.toml", *command[1:]]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err
        assert err.startswith(f"ablate: error: {project / 'tiny.toml'}: [experiment] output_dir = "
                              f"'{project}' holds files ablate did not write (experiment.toml, "
                              "report.md, trials, plots/metric.png), which it would replace or "
                              "delete there; give study 'tiny' a folder of its own")
    assert {name: (project / name).read_text() for name in theirs} == theirs
    assert sorted(p.name for p in project.iterdir()) == ["experiment.toml", "plots", "report.md",
                                                         "tiny.toml", "trials"]
    # `report` of a study run elsewhere, written into that folder by --set, is refused the same.
    assert cli.main(["run", str(path)]) == 0
    storage = json.dumps(load_spec(path).experiment.storage)
    capsys.readouterr()
    assert cli.main(["report", str(path), "--set", f"experiment.storage={storage}",
                     "--set", f'experiment.output_dir="{project}"']) == 2
    assert "holds files ablate did not write" in capsys.readouterr().err
    assert {name: (project / name).read_text() for name in theirs} == theirs
    # The file being run, experiment.toml in its own output folder, is its own copy.
    own = tmp_path / "own"
    own.mkdir()
    (own / "experiment.toml").write_text(text)
    monkeypatch.chdir(own)
    assert cli.main(["run", "experiment.toml"]) == 0
    assert (own / "experiment.toml").read_text() == text and (own / "report.md").is_file()
    assert cli.main(["run", "experiment.toml"]) == 0  # its own files now: re-used, rewritten


def test_a_worker_is_refused_an_output_dir_that_holds_another_study(write_experiment, tmp_path,
                                                                    capsys, monkeypatch):
    # A worker on a machine where the study's output_dir holds another study's folder trained
    # its trials there, replacing that study's trials/baseline-s42/trial.log with its own.
    path = write_experiment(variants="")
    assert cli.main(["run", str(path)]) == 0
    log = tmp_path / "reports" / "tiny" / "trials" / "baseline-s42" / "trial.log"
    before = log.read_text()
    other = write_experiment(variants="", name="other")
    queue_by_an_interrupted_run(monkeypatch, other, [])
    storage = json.dumps(load_spec(other).experiment.storage)
    given = f'experiment.output_dir="{tmp_path / "reports" / "tiny"}"'
    capsys.readouterr()
    assert cli.main(["worker", str(other), "--set", f"experiment.storage={storage}",
                     "--set", given]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"ablate: error: --set '{given}': [experiment] "
                                                   "output_dir = ")
    assert "holds the files of study 'tiny' (its resolved.json); give study 'other' its own" in err
    assert log.read_text() == before
    assert [t.state.name for t in optuna.load_study(
        study_name="other", storage=json.loads(storage)).trials] == ["WAITING"]


def test_an_output_dir_that_is_the_data_or_model_folder_is_refused(write_experiment, tmp_path,
                                                                   tiny_data_dir, tiny_model_dir,
                                                                   capsys):
    # The data folder: the next run read the results.csv and resolved.json the first one wrote
    # there as splits; the model folder: the next run refused the model as changed on disk.
    data, model = tmp_path / "data", tmp_path / "model"
    shutil.copytree(tiny_data_dir, data)
    shutil.copytree(tiny_model_dir, model)
    path = write_experiment(variants="")
    text = (path.read_text().replace(str(tiny_data_dir), str(data))
            .replace(str(tiny_model_dir), str(model)))
    for folder, said in ((data, f"is [data] dataset = '{data}', whose every data file is read as "
                                "a split"),
                         (model, f"is the model folder '{model}', whose files the study "
                                 "fingerprints")):
        before = sorted(p.name for p in folder.iterdir())
        path.write_text(text.replace(f'output_dir = "{tmp_path / "reports" / "tiny"}"',
                                     f'output_dir = "{folder}"'))
        for command in (["run"], ["run", "--dry-run"], ["validate"]):
            capsys.readouterr()
            assert cli.main([command[0], str(path), *command[1:]]) == 2
            err = capsys.readouterr().err
            assert err.count("\n") == 1 and "Traceback" not in err
            assert err.startswith(f"ablate: error: {path}: [experiment] output_dir = '{folder}' "
                                  f"{said}"), err
            assert err.endswith("; give study 'tiny' a folder of its own (without output_dir it "
                                "is reports/<name>)\n")
        assert sorted(p.name for p in folder.iterdir()) == before
    path.write_text(text)  # its own output folder
    assert cli.main(["run", str(path)]) == 0
    assert cli.main(["run", str(path)]) == 0  # re-used: the data and model read as they were


def test_a_run_that_waited_for_the_folder_another_study_took_is_refused(write_experiment,
                                                                         monkeypatch, capsys):
    # Two studies given one output_dir, started together: both found it empty, the second
    # waited for the planning lock while the first ran, then wrote its resolved.json over the
    # first's and trained into its trials/ folders.
    from ablation import queue

    first = write_experiment(variants="")
    second = first.with_name("tiny2.toml")
    second.write_text(first.read_text().replace('name = "tiny"', 'name = "tiny2"'))
    output_dir = load_spec(first).output_dir
    lock, ran = queue.planning_lock, []

    def the_first_study_runs_meanwhile(spec, echo):
        if spec.name == "tiny2" and not ran:
            ran.append(cli.main(["run", str(first)]))
        return lock(spec, echo)

    monkeypatch.setattr(queue, "planning_lock", the_first_study_runs_meanwhile)
    assert cli.main(["run", str(second)]) == 2
    assert ran == [0]
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "holds the files of study 'tiny' (its resolved.json); give study 'tiny2' its own" in err
    assert json.loads((output_dir / "resolved.json").read_text())["experiment"]["name"] == "tiny"
    assert "trial 0 (baseline-s42) starts" in (output_dir / "trials" / "baseline-s42" /
                                               "trial.log").read_text()
    assert [t.state.name for t in _study(first).trials] == ["COMPLETE"]
    monkeypatch.undo()
    assert cli.main(["report", str(first)]) == 0


def test_a_refused_run_removes_no_cache_another_run_made_while_it_waited(write_experiment,
                                                                          monkeypatch, capsys):
    # A run refused for bad input removes the tokenized data's cache it made; one that found no
    # cache when it started, and waited for the planning lock while another run of the study
    # tokenized and trained, removed that run's cache (its workers read it).
    from ablation import queue

    path = write_experiment(variants="")
    cache = load_spec(path).output_dir / "cache"
    lock, ran = queue.planning_lock, []

    def another_run_meanwhile(spec, echo):
        if not ran:
            ran.append(None)  # the other run takes the lock itself
            ran[0] = cli.main(["run", str(path)])
        return lock(spec, echo)

    monkeypatch.setattr(queue, "planning_lock", another_run_meanwhile)
    assert cli.main(["run", str(path), "--set", "data.max_train_samples=100"]) == 2
    assert ran == [0]
    assert "max_train_samples=100' says 100; use a new [experiment] name" in capsys.readouterr().err
    assert cache.is_dir() and any(cache.iterdir())


def test_report_where_the_output_dir_cannot_be_made_is_bad_input(write_experiment, tmp_path, capsys):
    path = write_experiment(variants="")
    assert cli.main(["run", str(path)]) == 0
    storage = json.dumps(load_spec(path).experiment.storage)
    (tmp_path / "a_file").write_text("x")
    elsewhere = ["--set", f"experiment.storage={storage}",
                 "--set", f'experiment.output_dir="{tmp_path / "a_file"}"']
    capsys.readouterr()
    assert cli.main(["report", str(path), *elsewhere, "--format", "json"]) == 2
    err = capsys.readouterr().err
    assert "output_dir" in err and "cannot be created" in err and err.count("\n") == 1


def test_dry_run_refuses_a_storage_that_run_would_refuse(write_experiment, capsys):
    path = write_experiment(variants="")
    database = load_spec(path).output_dir / "study.db"
    database.parent.mkdir(parents=True)
    database.write_text("garbage")
    for options in ([], ["--dry-run"]):
        capsys.readouterr()
        assert cli.main(["run", str(path), *options]) == 2
        assert "ablate: error: " in capsys.readouterr().err


def test_a_max_train_samples_variant_larger_than_the_data_is_refused(write_experiment, capsys):
    """It would train on every row under the name of a number it never saw."""
    path = write_experiment(variants="", extra="[sweep]\nmax_train_samples = [100000]\n")
    for options in (["--dry-run"], []):
        capsys.readouterr()
        assert cli.main(["run", str(path), *options]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1
        assert ("baseline_n100000" in err and "max_train_samples = 100000 is more than the 216 "
                "training rows there are") in err


def test_a_max_train_samples_variant_that_keeps_no_row_of_a_class_says_so(tmp_path, tiny_model_dir,
                                                                          capsys):
    """A learning-curve sweep on skewed data (3 rows of class '2' in 257): n20 keeps none of
    them, and nothing said so ([data] max_train_samples names such a class in a note), so its
    point of the curve was of a model that could not learn the class."""
    from conftest import make_texts, tiny_experiment

    data = tmp_path / "data"
    data.mkdir()
    texts = make_texts(400, seed=3)
    train_rows = pd.concat([texts[texts["label"] < 2], texts[texts["label"] == 2].head(3)])
    train_rows.to_csv(data / "train.csv", index=False)
    make_texts(30, seed=4).to_csv(data / "test.csv", index=False)
    path = tiny_experiment(tmp_path, tiny_model_dir, data, variants="",
                           extra="[sweep]\nmax_train_samples = [20, 100]\n")
    assert cli.main(["run", str(path), "--dry-run"]) == 0
    said = capsys.readouterr()
    lines = [line for line in (said.out + said.err).splitlines() if "baseline_n" in line
             and "keeps none" in line]
    assert len(lines) == 1, said
    assert ("baseline_n20: max_train_samples = 20 keeps none of the 3 training rows of class "
            "'2', so it cannot learn it") in lines[0], lines


def test_dry_run_names_queued_trials_as_to_run_and_a_first_rerun_as_to_run(write_experiment, capsys):
    from ablation import queue
    from ablation.variants import expand

    path = write_experiment()
    assert cli.main(["run", str(path), "--only", "baseline"]) == 0
    capsys.readouterr()
    assert cli.main(["run", str(path), "--dry-run", "--rerun", "baseline_bs32"]) == 0
    assert re.search(r"baseline_bs32-s42 +to run +batch_size=32", capsys.readouterr().out)  # never ran

    spec = load_spec(path)  # what an interrupted run leaves: a trial queued, never claimed
    queue.enqueue(queue.open_study(spec), [t for t in expand(spec) if t.variant == "baseline_bs32"])
    assert cli.main(["run", str(path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "plan: 2 trial(s), 1 to run" in out
    assert re.search(r"baseline_bs32-s42 +queued, to run", out)
    assert cli.main(["run", str(path)]) == 0  # and the run trains it
    assert "\nbaseline_bs32,42,1,COMPLETE," in (spec.output_dir / "results.csv").read_text()


def test_long_variant_names_keep_the_columns_of_status_and_the_plan(write_experiment, capsys):
    long = "a_rather_long_variant_name_for_the_columns"
    path = write_experiment(variants=f"{long} = {{ batch_size = 32 }}\n")
    assert cli.main(["run", str(path)]) == 0
    for command in (["run", str(path), "--dry-run"], ["status", str(path)]):
        capsys.readouterr()
        cli.main(command)
        lines = [line for line in capsys.readouterr().out.splitlines() if "-s42" in line]
        assert len(lines) == 2, lines
        key_ends = {line.index("-s42") + len("-s42") for line in lines}
        states = {len(line) - len(line[max(key_ends):].lstrip()) for line in lines}
        assert len(states) == 1, lines  # the column after the names starts at one place


def test_the_last_step_is_logged_whatever_logging_steps_says(write_experiment):
    """28 steps logged every 10: without a log at the end the curves and the report's final train
    loss would stop at step 20."""
    path = write_experiment(variants="", baseline="learning_rate = 1e-3\nbatch_size = 16\n"
                                                  "epochs = 2\nlogging_steps = 10\n")
    assert cli.main(["run", str(path)]) == 0
    (trial,) = _study(path).get_trials()
    steps = [point["step"] for point in trial.user_attrs["result"]["history"]]
    assert steps == [1, 10, 20, 28]  # the first step too, as ablate always logs it


def test_the_last_step_is_logged_when_training_stops_early(write_experiment, capsys):
    """Early stopping ends training at an evaluation (step 6 here, logging every 10): without a log
    there the curves, the tracker and the report's final train loss stopped at step 1. The plain
    line that ends the trial (logs, pipes, workers) says it stopped early, as the table does, and
    so do the report's Trial notes; both name the step whose checkpoint was selected (its metric
    is the one shown, not the last evaluation's)."""
    path = write_experiment(variants="", baseline="learning_rate = 1e-12\nbatch_size = 16\n"
                                                  "epochs = 2\nlogging_steps = 10\neval_steps = 3\n"
                                                  "early_stopping_patience = 1\n")
    assert cli.main(["run", str(path)]) == 0
    (trial,) = _study(path).get_trials()
    result = trial.user_attrs["result"]
    assert result["steps"] == 6  # no improvement at the second evaluation: stopped there
    assert result["best_step"] == 3  # the first evaluation's checkpoint is the one kept
    assert [point["step"] for point in result["history"]] == [1, 6]
    (line,) = [line for line in capsys.readouterr().out.splitlines() if " done: " in line]
    assert line.endswith(" s, stopped early at step 6 of 28 (selected: step 3)")
    report = (load_spec(path).output_dir / "report.md").read_text()
    assert ("- `baseline-s42`: early stopping ended it at step 6 of 28; its selected checkpoint, "
            "whose metrics the report shows, is step 3's") in report


def test_an_unknown_variant_gets_a_did_you_mean_only_for_a_close_name(write_experiment, capsys):
    """Every generated name starts with baseline_: the hint compares what follows it."""
    path = write_experiment()
    for typed, hint in (("bs32", "baseline_bs32"), ("baseline_bs23", "baseline_bs32"),
                        ("basline", "baseline"), ("baseline_lr", None)):
        assert cli.main(["run", str(path), "--only", typed]) == 2
        err = capsys.readouterr().err
        assert f"--only {typed!r}: no such variant" in err
        assert (f"did you mean {hint!r}?" in err) if hint else "did you mean" not in err


def test_a_set_that_adds_a_variant_says_so(write_experiment, capsys):
    """`--set variants.NAME.KNOB=...` adds NAME where the file has none (allowed): a note says so,
    as a misspelt name would otherwise train an extra trial unseen."""
    path = write_experiment()  # its [variants]: bs32 = { batch_size = 32 }
    assert cli.main(["run", str(path), "--dry-run", "--set", "variants.bs23.batch_size=16",
                     "--set", "variants.bs32.batch_size=16"]) == 0
    notes = [line for line in capsys.readouterr().out.splitlines() if "--set adds" in line]
    assert notes == [f"note: --set adds variant baseline_bs23 (batch_size=16), which {path.name} "
                     "does not have"]


def test_a_tokenizer_that_reads_much_of_the_text_as_unknown_is_noted(tmp_path, tiny_model_dir,
                                                                      capsys):
    """Text in a language the vocabulary lacks (Chinese reviews on an English BERT) becomes
    mostly [UNK]: validate says so before any trial trains on it."""
    from conftest import make_texts, tiny_experiment

    data = tmp_path / "data"
    data.mkdir()
    for split, n, seed in (("train", 120, 1), ("test", 30, 2)):
        frame = make_texts(n, seed)
        frame["text"] = frame["text"] + " 好吃 外卖"  # 4 characters, each a token: 4 of 10 unknown
        frame.to_csv(data / f"{split}.csv", index=False)
    path = tiny_experiment(tmp_path, tiny_model_dir, data)
    assert cli.main(["validate", str(path)]) == 0
    assert (f"note: {tiny_model_dir}'s tokenizer reads 40% of the training texts' tokens as [UNK] "
            "(of up to 1000 texts)") in capsys.readouterr().out


def test_texts_longer_than_max_length_are_noted(tmp_path, tiny_model_dir, capsys):
    """Long texts (movie reviews at max_length 128) lose their ends: validate says how many of the
    training texts a variant's max_length cuts, once per length; a length that cuts none is quiet."""
    from conftest import DEFAULT_BASELINE, make_texts, tiny_experiment

    data = tmp_path / "data"
    data.mkdir()
    for split, n, seed in (("train", 120, 1), ("validation", 30, 2), ("test", 30, 3)):
        frame = make_texts(n, seed)  # 6 words: 8 tokens with [CLS] and [SEP]
        frame.loc[::4, "text"] = frame["text"] + " the movie" * 10  # every 4th: 28 tokens
        frame.to_csv(data / f"{split}.csv", index=False)
    path = tiny_experiment(tmp_path, tiny_model_dir, data,
                           baseline=DEFAULT_BASELINE + "max_length = 16\n",
                           variants="bs32 = { batch_size = 32 }\nlong = { max_length = 32 }\n")
    path.write_text(path.read_text().replace("max_eval_samples = 40",
                                             'validation_split = "validation"'))
    assert cli.main(["validate", str(path)]) == 0
    notes = [line for line in capsys.readouterr().out.splitlines() if "max_length" in line]
    assert notes == [f"note: baseline: max_length = 16 truncates 25% of the training texts (30 of "
                     f"120): {tiny_model_dir}'s tokenizer makes them longer, and the model reads "
                     "only their first 16 tokens; a larger max_length (up to 64) reads more of "
                     "them"]


def test_english_text_on_its_own_vocabulary_gets_no_unknown_token_note(write_experiment, capsys):
    assert cli.main(["validate", str(write_experiment())]) == 0
    assert "[UNK]" not in capsys.readouterr().out


@pytest.mark.parametrize("command", [["run"], ["run", "--dry-run"], ["status"], ["worker"]])
def test_a_postgresql_storage_without_psycopg_says_what_to_install(write_experiment, capsys,
                                                                    monkeypatch, command):
    """`run` first takes PostgreSQL's planning lock, where SQLAlchemy's ImportError, not
    Optuna's words, tells of the missing driver: every command names what to install."""
    monkeypatch.setitem(sys.modules, "psycopg", None)  # `import psycopg` fails
    path = write_experiment()
    storage = "postgresql://nobody@127.0.0.1:1/none"
    assert cli.main([command[0], str(path), *command[1:], "--set",
                     f'experiment.storage="{storage}"']) == 2
    err = capsys.readouterr().err
    assert f"[experiment] storage = '{storage}' cannot be opened" in err
    assert 'For postgresql: pip install "ablate[postgres]" (psycopg 3)' in err
    assert err.count("\n") == 1


@pytest.mark.parametrize("command", ["run", "status"])
@pytest.mark.parametrize(("storage", "shown"), [
    ("postgresql://nobody:s3cret@127.0.0.1:1/none", "postgresql://nobody:***@127.0.0.1:1/none"),
    # libpq's password parameter, which SQLAlchemy passes on to psycopg, was printed as given
    ("postgresql://nobody@127.0.0.1:1/none?sslmode=disable&password=s3cret",
     "postgresql://nobody@127.0.0.1:1/none?sslmode=disable&password=***"),
])
def test_a_storage_password_is_never_printed(write_experiment, capsys, command, storage, shown):
    """A terminal log (a CI job's, a shared tmux) must not give the database away."""
    path = write_experiment()
    assert cli.main([command, str(path), "--set", f'experiment.storage="{storage}"']) == 2
    out, err = capsys.readouterr()
    assert "s3cret" not in out + err
    assert f"[experiment] storage = '{shown}' cannot be opened" in err


def test_resolved_json_keeps_no_storage_password(write_experiment):
    """resolved.json, written beside the report (a folder shared or committed), held a
    password given with --set or --storage as typed: it has *** as report.md does."""
    from ablation.sweep._runner import _write_study_files

    storage = "postgresql://nobody:s3cret@127.0.0.1:1/none?password=s3cret"
    spec = load_spec(write_experiment(), [f'experiment.storage="{storage}"'])
    spec.output_dir.mkdir(parents=True)
    _write_study_files(spec)
    resolved = json.loads((spec.output_dir / "resolved.json").read_text(encoding="utf-8"))
    assert resolved["experiment"]["storage"] == \
        "postgresql://nobody:***@127.0.0.1:1/none?password=***"
    assert resolved["experiment"]["name"] == spec.name  # the rest as resolved


def test_a_postgres_scheme_url_suggests_postgresql(write_experiment, capsys):
    """libpq and Heroku write postgres://; SQLAlchemy only knows postgresql://."""
    path = write_experiment()
    assert cli.main(["status", str(path), "--set",
                     'experiment.storage="postgres://u:pw@127.0.0.1:1/db"']) == 2
    err = capsys.readouterr().err
    assert "cannot be opened: " in err and err.count("\n") == 1
    assert err.rstrip().endswith("did you mean 'postgresql://u:***@127.0.0.1:1/db'?")


def test_a_postgresql_url_naming_a_driver_not_installed_suggests_the_one_that_is(
        write_experiment, capsys, monkeypatch):
    """A URL copied from another tool, `postgresql+psycopg2://...`, was told to `pip install
    "ablate[postgres]" (psycopg 3)`, which leaves psycopg2 missing and the URL refused again:
    the line names the driver it asks for and the URL that uses psycopg 3."""
    monkeypatch.setitem(sys.modules, "psycopg2", None)  # `import psycopg2` fails
    path = write_experiment()
    assert cli.main(["status", str(path), "--set",
                     'experiment.storage="postgresql+psycopg2://u:pw@127.0.0.1:1/db"']) == 2
    err = capsys.readouterr().err
    assert "cannot be opened: " in err and err.count("\n") == 1 and "pw@" not in err
    assert err.rstrip().endswith(
        "this URL asks for the psycopg2 driver: pip install psycopg2, or use "
        "'postgresql://u:***@127.0.0.1:1/db' (psycopg 3: pip install \"ablate[postgres]\")"), err


@pytest.mark.parametrize("what", ["dangling_symlink", "file"])
def test_something_not_a_folder_where_a_trial_folder_goes_is_refused_before_training(
        what: str, write_experiment, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    """trials/baseline-s43 a dangling symlink (its disk not mounted) or a file: `run` trained the
    seed-42 trials, then ended in a FileExistsError traceback at the next trial, which stayed
    RUNNING. It is one line naming the path, before any trial trains, and `--dry-run` says it."""
    path = write_experiment(variants="")
    assert cli.main(["run", str(path)]) == 0
    out = load_spec(path).output_dir
    place = out / "trials" / "baseline-s43"
    if what == "file":
        place.write_text("", encoding="utf-8")
        problem = "is a file, not a folder"
    else:
        place.symlink_to(tmp_path / "unmounted" / "baseline-s43")
        problem = f"is a symlink to {tmp_path / 'unmounted' / 'baseline-s43'}, which is missing"
    for dry_run in (["--dry-run"], []):
        capsys.readouterr()
        assert cli.main(["run", str(path), "--set", "experiment.seeds=[42, 43]", *dry_run]) == 2
        shown, err = capsys.readouterr()
        assert err == (f"ablate: error: {place} {problem}: trial baseline-s43 writes its log "
                       "there; move it away (or make the folder it names) and run again\n"), err
        assert "data: train" not in shown, shown  # refused before the data loads
    assert [t.state.name for t in optuna.load_study(
        study_name="tiny", storage=f"sqlite:///{out / 'study.db'}").trials] == ["COMPLETE"]


def test_a_study_in_a_folder_this_user_cannot_write_in(write_experiment):
    """A colleague's study on a shared machine (or `chmod -R a-w`): status reads it; report and
    run refuse with one line naming the folder, no traceback. A read-only study.db in a folder
    that is writable is named with SQLite's own reason, not Optuna's "invalid data"."""
    prefix = without_write_permission()
    path = write_experiment(variants="")
    assert cli.main(["run", str(path)]) == 0
    out = load_spec(path).output_dir
    modes = {p: p.stat().st_mode for p in [out, *out.rglob("*")]}

    def ablate(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*prefix, sys.executable, "-m", "ablation", *args], capture_output=True,
                              text=True, env=dict(os.environ, PYTHONUNBUFFERED="1"))

    try:
        for entry in modes:
            entry.chmod(modes[entry] & ~0o222)
        status = ablate("status", str(path))
        assert status.returncode == 0 and "baseline-s42" in status.stdout, status.stderr
        for command in (["report"], ["run"], ["run", "--dry-run"]):
            result = ablate(*command, str(path))
            assert result.returncode == 2, (command, result.stderr)
            assert result.stderr == (f"ablate: error: {path}: [experiment] output_dir = '{out}' "
                                     "cannot be written in: Permission denied\n"), (command, result.stderr)
        for entry in modes:
            entry.chmod(modes[entry])
        (out / "study.db").chmod(0o444)
        result = ablate("run", str(path))
        assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
        assert result.stderr.startswith(f"ablate: error: {path}: "), result.stderr  # the file gave it
        assert ("study.db' (the default: study.db in output_dir) cannot be opened: attempt to write "
                "a readonly database") in result.stderr
    finally:
        for entry in modes:
            entry.chmod(modes[entry])
    assert cli.main(["status", str(path)]) == 0


def test_a_storage_whose_folder_this_user_cannot_write_in_is_refused_before_training(
        write_experiment, tmp_path: Path):
    """`storage = "sqlite:///shared/s.db"` in a folder made read-only after the study ran (the
    file itself still writable): SQLite makes its journal beside the file, so the first write
    failed after the data loaded, as a storage that "stopped answering" (exit 1) and saying the
    same command goes on (a `worker`: once it claimed a trial). It is one line naming the folder,
    exit 2, before anything trains."""
    prefix = without_write_permission()
    folder = tmp_path / "shared"
    path = write_experiment(variants="", extra="")
    path.write_text(path.read_text(encoding="utf-8").replace(
        "[experiment]\n", f'[experiment]\nstorage = "sqlite:///{folder}/s.db"\n', 1),
        encoding="utf-8")
    assert cli.main(["run", str(path)]) == 0
    mode = folder.stat().st_mode
    folder.chmod(mode & ~0o222)
    try:
        results = [subprocess.run([*prefix, sys.executable, "-m", "ablation", *command, str(path),
                                   "--set", "experiment.seeds=[42, 43]"], capture_output=True,
                                  text=True) for command in (["run"], ["worker", "--wait", "0"])]
    finally:
        folder.chmod(mode)
    for result in results:  # `worker` joins a study it would record its trials in too
        assert result.returncode == 2 and result.stderr == (
            f"ablate: error: {path}: [experiment] storage = 'sqlite:///{folder}/s.db' cannot be "
            f"opened: {folder}: Permission denied (SQLite makes its journal beside the database)\n"
        ), result.stderr
        assert "data: train" not in result.stdout, result.stdout  # refused before the data loads
    assert cli.main(["status", str(path)]) == 0


def test_a_wait_for_a_locked_storage_is_said_once_it_lasts(write_experiment, monkeypatch,
                                                        capsys):
    """`sqlite3 study.db` holding a transaction when a command starts: ablate waited up to 60 s
    for its lock in silence. Once the wait lasts (2 s; here 0.2), one line says why nothing
    happens; the command goes on when the lock is let go."""
    import threading

    from ablation import queue

    path = write_experiment(variants="")
    assert cli.main(["run", str(path)]) == 0
    monkeypatch.setattr(queue, "SQLITE_LOCK_NOTE_AFTER", 0.2)
    database = load_spec(path).output_dir / "study.db"
    holder = sqlite3.connect(database, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN EXCLUSIVE")
    threading.Timer(1.5, holder.execute, ["ROLLBACK"]).start()
    try:
        capsys.readouterr()
        assert cli.main(["status", str(path)]) == 0
        out, err = capsys.readouterr()
        assert err == (f"note: {database} is locked by another program; waiting up to "
                       f"{queue.SQLITE_LOCK_WAIT} s for it\n"), err
        assert "baseline-s42" in out
        assert cli.main(["status", str(path)]) == 0  # no wait: nothing said
        assert capsys.readouterr().err == ""
    finally:
        holder.close()


def test_a_long_statement_that_works_is_not_said_to_wait_for_a_lock(tmp_path, monkeypatch,
                                                                    capsys):
    """A long read (a large study's trials) runs SQLite's instructions all along; only a
    statement that shows no work for the time is waiting for a lock."""
    from ablation import queue

    monkeypatch.setattr(queue, "SQLITE_LOCK_NOTE_AFTER", 0.2)
    storage = queue.make_storage(f"sqlite:///{tmp_path / 'study.db'}", 10)
    count = ("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000000) "
             "SELECT count(*) FROM n WHERE i % 7 = 3")
    with storage.engine.connect() as connection:
        started = time.monotonic()
        assert connection.exec_driver_sql(count).scalar() == 428572
        assert time.monotonic() - started > 0.5  # long enough to have been said
    assert capsys.readouterr().err == ""


def test_a_storage_locked_by_another_program_has_stopped_answering(write_experiment, monkeypatch,
                                                                   capsys):
    """`sqlite3 study.db` holding a transaction longer than ablate waits for it: the storage does
    not answer (exit 1, as when it stops mid-run), rather than the file said to be bad input.
    `status` and `report`, which train nothing, said "a trial it could not record trains again"
    too: they say nothing was changed and to run them again."""
    from ablation import queue

    path = write_experiment(variants="")
    assert cli.main(["run", str(path)]) == 0
    monkeypatch.setattr(queue, "SQLITE_LOCK_WAIT", 0.2)
    holder = sqlite3.connect(load_spec(path).output_dir / "study.db", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        capsys.readouterr()
        for command in ("status", "report", "run"):
            assert cli.main([command, str(path)]) == 1, command
            err = capsys.readouterr().err
            said = ("what it recorded is kept and a trial it could not record trains again" if
                    command == "run" else
                    "nothing was changed: run the same command again once it answers\n")
            assert err.startswith("ablate: error: the study storage stopped answering (database is "
                                  f"locked); {said}") and err.count("\n") == 1, err
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert cli.main(["status", str(path)]) == 0


def test_status_sums_its_trials_up_and_says_what_trains_those_without_a_result(write_experiment,
                                                                                 capsys):
    """Under the table: how many trials stand where (interrupted and failed told apart, a retried
    attempt not counted twice), the file's trials not queued yet, variants the file no longer
    has, and the command that trains what has no result, rather than rows to count by hand;
    `--json` gives the same sum under `summary`."""
    from ablation import records

    path = write_experiment(variants="bs32 = { batch_size = 32 }\n")
    assert cli.main(["run", str(path), "--set", "baseline.epochs=1"]) == 0
    study = _study(path)
    for error in ("RuntimeError: boom", "interrupted (Ctrl+C or SIGTERM)"):
        attempt = study.ask()  # two attempts of a variant, which failed: counted once
        for key, value in {records.VARIANT: "baseline_lr", records.SEED: 42,
                           records.KEY: "baseline_lr-s42", records.OVERRIDES: {"learning_rate": 2e-3},
                           records.ERROR: error}.items():
            attempt.set_user_attr(key, value)
        study.tell(attempt, state=optuna.trial.TrialState.FAIL)
    path.write_text(path.read_text().replace("bs32 = { batch_size = 32 }",
                                             "lr = { learning_rate = 2e-3 }\n"
                                             "wd = { weight_decay = 0.1 }"))
    capsys.readouterr()
    assert cli.main(["status", str(path), "--set", "baseline.epochs=1"]) == 1
    lines = capsys.readouterr().out.splitlines()
    # the failed attempt's row points to no log: a later attempt's (none here) would be in its place
    assert [line.split("  ")[-1].strip() for line in lines if "baseline_lr-s42" in line] == [
        "RuntimeError: boom", "interrupted (Ctrl+C or SIGTERM)"]
    assert lines[-4:] == [
        "4 trial(s): 2 complete, 1 not queued yet, 1 interrupted; 1 earlier attempt(s) not counted",
        "not queued yet: baseline_wd-s42",
        f"not in {path.name} now: baseline_bs32 (their results still count in the report)",
        f"next: `ablate run {path} --set baseline.epochs=1` trains the 2 without a result"]
    # The same sum for scripts, counted as the lines count (it had only the trials to count by hand)
    assert cli.main(["status", str(path), "--set", "baseline.epochs=1", "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["summary"] == {
        "trials": 4, "states": {"complete": 2, "pruned": 0, "running": 0, "queued": 0,
                                "not_queued_yet": 1, "failed": 0, "interrupted": 1,
                                "process_gone": 0},
        "earlier_attempts": 1, "repeated_proposals": 0, "not_queued_yet": ["baseline_wd-s42"],
        "not_in_file": ["baseline_bs32"], "without_result": 2,
        "next": f"ablate run {path} --set baseline.epochs=1", "retry_failed": None,
        "changed": {}}


def test_status_shows_a_running_trials_step_and_when_its_process_was_last_heard(write_experiment,
                                                                                 capsys):
    """A running trial's row said only which process trained it, not whether it got on. Its
    heartbeats now store the step the Trainer has reached (read in their own thread: the
    training loop does nothing more per step), and `status` shows it with the time since the
    process last beat, by the storage's clock; `--json` has them under `progress`."""
    path = write_experiment(baseline="learning_rate = 1e-3\nbatch_size = 8\nepochs = 200\n"
                                     "logging_steps = 100000\n", variants="")
    sets = ["--set", "experiment.heartbeat=1"]
    run = subprocess.Popen([sys.executable, "-m", "ablation", "run", str(path), *sets, "--quiet"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        progress = None
        deadline = time.monotonic() + 120
        while progress is None and time.monotonic() < deadline and run.poll() is None:
            time.sleep(0.5)
            capsys.readouterr()
            if cli.main(["status", str(path), *sets, "--json"]) != 0:
                continue  # no study yet
            trials = json.loads(capsys.readouterr().out)["trials"]
            running = [t["progress"] for t in trials if t["state"] == "RUNNING"]
            if running and running[0]["step"]:
                progress = running[0]
        assert progress is not None, "no step stored while the trial trained"
        assert 0 < progress["step"] < progress["max_steps"]
        assert progress["last_heard_s"] is not None and 0 <= progress["last_heard_s"] < 5
        capsys.readouterr()
        assert cli.main(["status", str(path), *sets]) == 0
        (row,) = [line for line in capsys.readouterr().out.splitlines() if "RUNNING" in line]
        assert re.search(rf"  in [^ ]+:{run.pid}, step \d+ of {progress['max_steps']}, last heard "
                         r"\d s ago$", row), row
    finally:
        run.terminate()
        run.wait(timeout=60)
    capsys.readouterr()
    assert cli.main(["status", str(path), *sets, "--json"]) == 1  # interrupted
    (trial,) = json.loads(capsys.readouterr().out)["trials"]
    assert trial["state"] == "FAIL" and trial["progress"] is None  # for running trials only
