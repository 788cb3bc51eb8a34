"""The command line around a study: a stored study that does not match the file is refused (or
replaced with --force-new), `init`, `status --json` and `report --format`."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import optuna
import pandas as pd
import pytest
from conftest import stored_study, use_offline_cache

from ablation import cli
from ablation.config import load_spec
from ablation.errors import AblateInputError
from ablation.starter import STARTER


def _trials(path: Path, sets: list[str] | None = None) -> list[tuple[int, str, str]]:
    spec = load_spec(path, sets)
    study = optuna.load_study(study_name=spec.name, storage=spec.experiment.storage)
    return [(t.number, t.user_attrs["key"], t.state.name) for t in study.get_trials()]


@pytest.fixture
def study_file(tmp_path: Path, tiny_model_dir: Path, tiny_data_dir: Path,
               monkeypatch: pytest.MonkeyPatch) -> Path:
    """A baseline-only study on a copy of the tiny data (so that a test may change its rows)."""
    monkeypatch.chdir(tmp_path)
    data = tmp_path / "data"
    shutil.copytree(tiny_data_dir, data)
    path = tmp_path / "tiny.toml"
    path.write_text(textwrap.dedent(f"""\
        [data]
        dataset = "{data}"
        max_eval_samples = 40

        [model]
        name = "{tiny_model_dir}"

        [tracking]
        backend = "none"

        [baseline]
        learning_rate = 1e-3
        batch_size = 32
        epochs = 1
        logging_steps = 2
        """), encoding="utf-8")
    return path


def _error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("ablate: error: ") and "Traceback" not in err
    return err.strip()


def test_a_stored_study_run_with_other_data_model_baseline_or_metric_is_refused(
        study_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["run", str(study_file)]) == 0
    stored = _trials(study_file)
    output_dir = load_spec(study_file).output_dir
    resolved = (output_dir / "resolved.json").read_text()
    report = (output_dir / "report.md").read_text()

    for item, stored_value, new in [
        ("data.max_train_samples=100", "data.max_train_samples=unset", "100"),
        ("model.config.num_hidden_layers=1", "model.config.num_hidden_layers=unset", "1"),
        ("baseline.learning_rate=5e-3", "baseline.learning_rate=0.001", "0.005"),
        ("baseline.epochs=3", "baseline.epochs=1", "3"),  # as written, not 1.0 and 3.0
        ("experiment.metric=accuracy", "metric='macro_f1'", "'accuracy'"),
    ]:
        capsys.readouterr()
        assert cli.main(["run", str(study_file), "--set", item]) == 2, item
        err = _error(capsys)
        assert f"holds study 'tiny' run with {stored_value}; --set {item!r} says {new}" in err
        assert "use a new [experiment] name, or --force-new" in err
        assert cli.main(["run", str(study_file), "--dry-run", "--set", item]) == 2  # said at once

    text = study_file.read_text()  # the same change made in the file is the file's
    study_file.write_text(text.replace("learning_rate = 1e-3", "learning_rate = 5e-3", 1))
    capsys.readouterr()
    assert cli.main(["run", str(study_file)]) == 2
    assert "run with baseline.learning_rate=0.001; this file says 0.005" in _error(capsys)
    study_file.write_text(text)

    # Nothing stored, written or superseded by the refused runs.
    assert _trials(study_file) == stored
    assert (output_dir / "resolved.json").read_text() == resolved
    assert (output_dir / "report.md").read_text() == report


def test_adding_variants_and_seeds_to_a_stored_study_is_fine(
        study_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["run", str(study_file)]) == 0
    assert cli.main(["run", str(study_file), "--set", "variants.bs16.batch_size=16",
                     "--set", "experiment.seeds=[42, 7]", "--only", "baseline_bs16"]) == 0
    assert [(key, state) for _, key, state in _trials(study_file)] == [
        ("baseline-s42", "COMPLETE"), ("baseline_bs16-s42", "COMPLETE"),
        ("baseline_bs16-s7", "COMPLETE")]


def test_trials_added_to_the_study_by_hand_with_optuna_are_left_out_not_a_traceback(
        study_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The storage is a plain Optuna one, and users reach it with Optuna: a trial added there
    without ablate's user attributes, or with some of them (a `variant` alone, a seed "abc"),
    made status, report, run and worker end in a KeyError or ValueError traceback (a worker
    after claiming a queued one, which it left RUNNING). They are no trial of the file's: left
    out, as a trial without any of them was, and left as they are."""
    assert cli.main(["run", str(study_file)]) == 0
    study = optuna.load_study(study_name="tiny", storage=load_spec(study_file).experiment.storage)
    study.tell(study.ask(), state=optuna.trial.TrialState.FAIL)  # none of ours
    half = study.ask()
    half.set_user_attr("variant", "baseline")  # no seed
    study.tell(half, 0.99)
    study.enqueue_trial({}, user_attrs={"variant": "baseline", "seed": "abc",
                                        "key": "baseline-sabc", "overrides": {}})
    study.enqueue_trial({}, user_attrs={"key": "mine-s1"})  # a queue of one's own
    hand = [(t.number, t.state.name) for t in study.get_trials()][1:]
    capsys.readouterr()
    for command in (["status"], ["report"], ["worker"], ["run"]):
        assert cli.main([command[0], str(study_file)]) == 0, command
        assert "Traceback" not in capsys.readouterr().err
    assert cli.main(["status", str(study_file), "--json"]) == 0
    assert [t["key"] for t in json.loads(capsys.readouterr().out)["trials"]] == ["baseline-s42"]
    assert [(t.number, t.state.name) for t in study.get_trials()][1:] == hand


@pytest.mark.parametrize("direction", ["minimize", "maximize"])
def test_an_optuna_study_of_another_program_under_the_files_name_is_refused_not_joined(
        study_file: Path, capsys: pytest.CaptureFixture[str], direction: str) -> None:
    """A shared storage holds the user's own Optuna study under the name the file gives: run
    took it over, adding its trials and attributes to it, and a minimized one stayed minimized
    (Optuna's best trial, and a search's sampler and pruner, then went for the lowest macro_f1)."""
    spec = load_spec(study_file)
    spec.output_dir.mkdir(parents=True)
    storage = spec.experiment.storage
    theirs = optuna.create_study(study_name="tiny", storage=storage, direction=direction)
    theirs.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=2)
    capsys.readouterr()
    what = ("Optuna direction minimize: a study ablate did not make" if direction == "minimize"
            else "2 trial(s) ablate did not make")
    for command in (["run"], ["run", "--dry-run"], ["worker"]):
        assert cli.main([command[0], str(study_file), *command[1:]]) == 2, command
        err = _error(capsys)
        assert f"holds study 'tiny' run with {what}" in err
        assert "give this file a new [experiment] name" in err and "--force-new" not in err
    study = optuna.load_study(study_name="tiny", storage=storage)
    assert len(study.trials) == 2 and study.user_attrs == {}


@pytest.mark.parametrize("foreign", [0, 2])
def test_report_of_a_study_holding_no_trial_of_ablates_is_one_line(
        study_file: Path, capsys: pytest.CaptureFixture[str], foreign: int) -> None:
    """A study of the file's name with no trial ablate queued (made with `optuna create-study`,
    or by a run stopped before it queued any; or trials of another program only) ended `report`
    in a KeyError traceback ('variant') from the empty results table."""
    spec = load_spec(study_file)
    spec.output_dir.mkdir(parents=True)
    study = optuna.create_study(study_name="tiny", storage=spec.experiment.storage,
                                direction="maximize")
    study.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=foreign)
    capsys.readouterr()
    for form in ("md", "json", "csv"):
        assert cli.main(["report", str(study_file), "--format", form]) == 2
        err = _error(capsys)
        assert "study 'tiny' in sqlite:///" in err and "holds no trial of this file's yet" in err
        assert (f"its {foreign} trial(s) were not queued by ablate" in err) == bool(foreign)
        assert "nothing to report: `ablate run tiny.toml` trains them" in err
    assert not (spec.output_dir / "report.md").exists()


def test_trials_of_a_study_an_earlier_ablate_named_by_a_sweep_value_are_its_own(
        study_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Before 2026-12-05 a [sweep] named a variant by its value as written: a model folder
    `my model` or `中文模型` gave `baseline_model-my model`, `baseline_model-中文模型`. Such a
    study's trials were left out of status and the report as not ablate's (their names hold
    characters today's names do not), and a worker no longer claimed its queued ones."""
    assert cli.main(["run", str(study_file)]) == 0
    study = optuna.load_study(study_name="tiny", storage=load_spec(study_file).experiment.storage)
    (done,) = study.get_trials()
    for variant in ("baseline_model-my model", "baseline_model-中文模型"):
        attrs = {**done.user_attrs, "variant": variant, "seed": 42, "key": f"{variant}-s42"}
        study.add_trial(optuna.trial.create_trial(value=done.value, user_attrs=attrs))
    capsys.readouterr()
    assert cli.main(["status", str(study_file), "--json"]) == 0
    assert [t["key"] for t in json.loads(capsys.readouterr().out)["trials"]] == [
        "baseline-s42", "baseline_model-my model-s42", "baseline_model-中文模型-s42"]


def test_data_rows_changed_on_disk_are_refused_and_rerun_supersedes_nothing(
        study_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["run", str(study_file)]) == 0
    stored = _trials(study_file)
    train = study_file.parent / "data" / "train.csv"
    frame = pd.read_csv(train)
    frame.loc[0, "text"] = "great love happy"
    frame.to_csv(train, index=False)

    capsys.readouterr()
    assert cli.main(["run", str(study_file), "--rerun", "baseline"]) == 2
    err = _error(capsys)
    assert "holds study 'tiny' run with other data rows (content fingerprint" in err
    assert "other files, or other keys that pick rows" in err
    assert _trials(study_file) == stored
    assert cli.main(["status", str(study_file)]) == 0
    assert "SUPERSEDED" not in capsys.readouterr().out


def test_force_new_deletes_the_stored_study_and_starts_afresh(
        study_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["run", str(study_file)]) == 0
    output_dir = load_spec(study_file).output_dir
    old_logs = [output_dir / "trials" / "old-s1" / "trial.log", output_dir / "swanlog" / "run-old" / "x"]
    for path in old_logs:  # what the deleted study's trials left (the tiny study tracks nothing)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("old")
    new_baseline = ["--set", "baseline.learning_rate=5e-3"]
    capsys.readouterr()
    assert cli.main(["run", str(study_file), *new_baseline, "--dry-run", "--force-new"]) == 0
    assert ("--force-new: would delete study 'tiny' (1 trial(s)), its trial logs and SwanLab runs in "
            in capsys.readouterr().out)
    assert len(_trials(study_file)) == 1 and all(path.exists() for path in old_logs)  # nothing deleted

    assert cli.main(["run", str(study_file), *new_baseline, "--force-new"]) == 0
    out = capsys.readouterr().out
    storage = load_spec(study_file).experiment.storage
    assert f"--force-new: deleted study 'tiny' (1 trial(s)) from {storage}; starting afresh" in out
    assert not any(path.exists() for path in old_logs)
    assert (output_dir / "trials" / "baseline-s42" / "trial.log").exists()  # the new study's
    assert [(n, key, state) for n, key, state in _trials(study_file)] == [
        (0, "baseline-s42", "COMPLETE")]
    study = optuna.load_study(study_name="tiny", storage=storage)
    assert study.user_attrs["baseline"]["learning_rate"] == 5e-3
    assert cli.main(["run", str(study_file), *new_baseline]) == 0  # the new study is the file's


def test_force_new_without_a_stored_study_says_what_it_removes_and_keeps_what_is_not_ablates(
        study_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["run", str(study_file)]) == 0
    spec = load_spec(study_file)
    output_dir, storage = spec.output_dir, spec.experiment.storage
    (output_dir / "study.db").unlink()  # the storage holds no study 'tiny' now; its folders stay
    run = output_dir / "swanlog" / "run-20260101_000000-abcdefgh"
    run.mkdir(parents=True)
    (run / "x").write_text("old")
    (output_dir / "trials" / "old-s1").mkdir()
    (output_dir / "trials" / "old-s1" / "trial.log").write_text("old")
    old = [output_dir / "trials" / "baseline-s42" / "trial.log", output_dir / "trials" / "old-s1", run]

    capsys.readouterr()
    assert cli.main(["run", str(study_file), "--dry-run", "--force-new"]) == 0
    assert (f"--force-new: storage {storage} holds no study 'tiny'; would remove the 2 trial "
            f"folder(s) (trials/) and 1 SwanLab run(s) (swanlog/) an earlier run left in {output_dir}, "
            "and start afresh") in capsys.readouterr().out
    assert all(path.exists() for path in old)  # nothing removed

    assert cli.main(["run", str(study_file), "--force-new"]) == 0
    assert (f"--force-new: storage {storage} holds no study 'tiny'; removed the 2 trial folder(s) "
            f"(trials/) and 1 SwanLab run(s) (swanlog/) an earlier run left in {output_dir}; "
            "starting afresh") in capsys.readouterr().out
    assert not any(path.exists() for path in old[1:])
    assert (output_dir / "trials" / "baseline-s42" / "trial.log").exists()  # the new study's

    # A trials/ or swanlog/ holding nothing ablate writes there is not its to remove: kept, said.
    (output_dir / "study.db").unlink()
    shutil.rmtree(output_dir / "trials")
    mine = [output_dir / "trials" / "notes.txt", output_dir / "swanlog" / "mine" / "x"]
    for path in mine:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("the user's")
    capsys.readouterr()
    assert cli.main(["run", str(study_file), "--force-new"]) == 0
    assert (f"--force-new: storage {storage} holds no study 'tiny'; nothing to remove in "
            f"{output_dir} (kept trials/, swanlog/: nothing in them is a trial folder or SwanLab "
            "run ablate writes); starting afresh") in capsys.readouterr().out
    assert all(path.exists() for path in mine)


def test_force_new_deletes_nothing_when_the_new_input_is_bad(
        study_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["run", str(study_file)]) == 0
    stored = _trials(study_file)
    capsys.readouterr()
    assert cli.main(["run", str(study_file), "--force-new", "--set", 'data.text_column="nope"']) == 2
    out, err = capsys.readouterr()
    assert "nope" in err and "deleted" not in out
    assert _trials(study_file) == stored


def test_force_new_is_refused_while_a_trial_of_the_study_trains_in_a_live_process(
        study_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from ablation import queue
    from ablation.sweep import select_trials

    spec = load_spec(study_file)
    study = queue.open_study(spec)
    queue.enqueue(study, select_trials(spec, None))
    claimed = queue.claim(study, None)
    with queue.Heartbeat(study, claimed):  # training, here standing for another process
        for dry in (["--dry-run"], []):
            capsys.readouterr()
            assert cli.main(["run", str(study_file), "--force-new", *dry]) == 2
            err = capsys.readouterr().err
            assert err.startswith("ablate: error: --force-new: study 'tiny' has 1 trial(s) running "
                                  "in another process (baseline-s42 in ")
            # a process killed a moment ago still counts: the line says for how long
            assert err.rstrip().endswith(
                "stop them first, or wait until they finish (a process already killed counts as "
                "running until its heartbeats have been silent for 30 s)") and err.count("\n") == 1
    assert [state for *_, state in _trials(study_file)] == ["RUNNING"]  # nothing deleted


# --------------------------------------------------------------------------- init


def test_init_writes_a_commented_starter_that_validates_as_written(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    assert cli.main(["init"]) == 0
    path = tmp_path / "experiment.toml"
    assert path.read_text(encoding="utf-8") == STARTER
    assert f"wrote {Path('experiment.toml')}" in capsys.readouterr().out

    spec = load_spec(path)
    assert spec.name == "experiment"
    assert spec.data.dataset == "mteb/tweet_sentiment_extraction"
    assert spec.model.name == "sentence-transformers/all-MiniLM-L6-v2"
    assert list(spec.variants) == ["bs32", "bs32_lr5e-5"]
    for section in ("experiment", "data", "model", "tracking", "baseline", "variants"):
        header = next(line for line in STARTER.splitlines() if line.startswith(f"[{section}]"))
        assert "#" in header, f"[{section}] has no comment saying what it is"


def test_the_starter_says_validation_is_carved_even_where_the_data_has_its_own(tmp_path: Path) -> None:
    """validation_size's comment said it was carved from train 'when there is no validation
    split': a data folder with its validation.csv was still carved from train (as `validation_split`
    is unset), which the comment had said it would not be. The starter now shows the key that uses
    the data's own split, commented out; uncommented, it is valid and is what the study uses."""
    lines = STARTER.splitlines()
    size = next(line for line in lines if line.startswith("validation_size = "))
    assert "no validation split" not in size
    split = next(line for line in lines if line.startswith("# validation_split = "))
    path = tmp_path / "own_split.toml"
    path.write_text(STARTER.replace(size + "\n", "").replace(split, split[2:]), encoding="utf-8")
    assert load_spec(path, need_data=False).data.validation_split == "validation"


def test_init_to_a_path_creates_its_folder_and_never_overwrites(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "studies" / "first.toml"
    assert cli.main(["init", str(path)]) == 0
    assert load_spec(path).name == "first"
    path.write_text("# mine\n", encoding="utf-8")
    assert cli.main(["init", str(path)]) == 2
    assert f"{path}: already exists" in _error(capsys)
    assert path.read_text(encoding="utf-8") == "# mine\n"


def test_init_dash_prints_the_starter_and_writes_no_file(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """`ablate init -` wrote a file named '-'; as tools read it, `-` is standard output (and the
    printed starter validates as the written one does)."""
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    assert cli.main(["init", "-"]) == 0
    printed = capsys.readouterr().out
    assert list(tmp_path.iterdir()) == []
    assert cli.main(["init", "written.toml"]) == 0
    assert printed == (tmp_path / "written.toml").read_text(encoding="utf-8")


def test_init_says_commands_that_run_as_printed_for_a_path_with_spaces(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """`ablate init 'my studies/first try.toml'` said `ablate validate my studies/first try.toml`,
    which the shell splits into three arguments; its commands (and the folder error's) quote it."""
    monkeypatch.chdir(tmp_path)
    path = Path("my studies") / "first try.toml"
    assert cli.main(["init", str(path)]) == 0
    out = capsys.readouterr().out
    for command in ("validate", "run"):
        said = out.split(f"`ablate {command} ")[1].split("`")[0]
        assert shlex.split(said) == [str(path)]
    assert cli.main(["init", "my studies"]) == 2
    said = _error(capsys).split("(ablate init ")[1].rsplit(")", 1)[0]
    assert shlex.split(said) == [str(Path("my studies") / "experiment.toml")]


@pytest.mark.parametrize("made", [False, True], ids=["new_folder", "existing_folder"])
def test_init_into_a_folder_path_ending_in_a_slash_writes_no_file_of_its_name(
        made: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """`ablate init studies/` (a folder, as the slash says) wrote the starter to a FILE named
    `studies` where that folder did not exist yet: a later `mkdir studies` fails, and the study was
    named after it. It is refused as a folder is, naming the file path to give."""
    monkeypatch.chdir(tmp_path)
    if made:
        (tmp_path / "studies").mkdir()
    assert cli.main(["init", f"studies{os.sep}"]) == 2
    err = _error(capsys)
    assert "is a folder" in err and f"(ablate init {Path('studies') / 'experiment.toml'})" in err
    assert (tmp_path / "studies").is_dir() == made and not (tmp_path / "studies").is_file()
    assert list(tmp_path.rglob("*.toml")) == []


@pytest.mark.parametrize("stem", ["bad\nname", "a" * 120, ".", "back\\slash"],
                         ids=["newline", "too_long", "dot", "backslash"])
def test_a_file_name_that_cannot_name_the_study_is_refused_by_init_and_by_validate(
        stem: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """The study name defaults to the file's name, which was taken unchecked: `ablate init ..toml`
    made study '.', whose output folder reports/. is reports/ itself, and a name with a newline,
    a backslash or of 120 characters passed, each refused as `name = ...`. init writes no file
    that would not validate, and a file so named is refused, naming [experiment] name."""
    monkeypatch.chdir(tmp_path)
    path = tmp_path / f"{stem}.toml"
    assert cli.main(["init", str(path)]) == 2
    err = _error(capsys)
    assert f"the study name defaults to the file's name, {stem!r}" in err, err
    assert "[experiment] name" in err
    assert list(tmp_path.iterdir()) == []
    path.write_text(STARTER, encoding="utf-8")
    with pytest.raises(AblateInputError, match="the study name defaults to the file's name"):
        load_spec(path)
    named = path.with_name("ok.toml")
    named.write_text(STARTER.replace('# name = "my_study"', 'name = "my_study"'), encoding="utf-8")
    assert load_spec(named).name == "my_study"


# --------------------------------------------------------------------------- status --json, report --format


@pytest.fixture
def finished_study(write_experiment) -> Path:
    """baseline and baseline_bs64, the first re-run once (its first result superseded)."""
    path = write_experiment(baseline="learning_rate = 1e-3\nbatch_size = 32\nepochs = 1\n"
                                     "logging_steps = 2\n", variants="bs64 = { batch_size = 64 }\n")
    assert cli.main(["run", str(path)]) == 0
    assert cli.main(["run", str(path), "--rerun", "baseline"]) == 0
    return path


def test_status_json_lists_every_trial_in_plain_json(finished_study: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert cli.main(["status", str(finished_study), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["study"] == "tiny" and status["metric"] == "macro_f1"
    trials = status["trials"]
    assert [(t["number"], t["key"], t["variant"], t["seed"], t["state"], t["superseded"])
            for t in trials] == [
        (0, "baseline-s42", "baseline", 42, "COMPLETE", True),
        (1, "baseline_bs64-s42", "baseline_bs64", 42, "COMPLETE", False),
        (2, "baseline-s42", "baseline", 42, "COMPLETE", False)]
    spec = load_spec(finished_study)
    study = optuna.load_study(study_name=spec.name, storage=spec.experiment.storage)
    assert [t["value"] for t in trials] == [t.value for t in study.get_trials()]
    assert all(t["error"] is None for t in trials)


def test_report_formats_write_their_file_and_print_its_path(
        finished_study: Path, capsys: pytest.CaptureFixture[str]) -> None:
    output_dir = load_spec(finished_study).output_dir
    for name in ("report.md", "results.csv"):
        (output_dir / name).unlink()
    capsys.readouterr()

    assert cli.main(["report", str(finished_study), "--format", "csv"]) == 0
    assert capsys.readouterr().out.strip() == f"report: {output_dir / 'results.csv'}"
    results = pd.read_csv(output_dir / "results.csv")
    # the newest attempt per key (baseline's is trial 2), in the study's order, not by number
    assert list(results["variant"]) == ["baseline", "baseline_bs64"]
    assert list(results["trial"]) == [2, 1]
    assert not (output_dir / "report.md").exists()

    assert cli.main(["report", str(finished_study), "--format", "json"]) == 0
    assert capsys.readouterr().out.strip() == f"report: {output_dir / 'report.json'}"
    report = json.loads((output_dir / "report.json").read_text())
    assert report["study"] == "tiny" and report["metric"] == "macro_f1"
    assert report["direction"] == "maximize" and report["label_names"] == ["0", "1", "2"]
    variants = {row["variant"]: row for row in report["variants"]}
    assert list(variants) == ["baseline", "baseline_bs64"]
    assert variants["baseline_bs64"]["changes"] == "batch_size=64"
    assert variants["baseline_bs64"]["delta"] == pytest.approx(
        variants["baseline_bs64"]["value"] - variants["baseline"]["value"])
    assert [e["variant"] for e in report["effects"]] == ["baseline_bs64"]
    effect = report["effects"][0]
    assert effect["reference"] == "baseline" and effect["verdict"] in ("better", "worse", "within noise")
    assert effect["ci_low"] <= effect["delta"] <= effect["ci_high"]
    assert [t["trial"] for t in report["trials"]] == [2, 1]

    assert cli.main(["report", str(finished_study)]) == 0  # md stays the default
    assert capsys.readouterr().out.strip() == f"report: {output_dir / 'report.md'}"
    assert (output_dir / "report.md").exists()


def test_a_knob_added_by_a_newer_ablate_does_not_make_a_stored_study_look_different():
    from ablation.sweep._study import _first_difference

    stored = {"learning_rate": 2e-5, "model_config": {}}
    newer = {"learning_rate": 2e-5, "model_config": {}, "group_by_length": False}
    assert _first_difference("baseline", stored, newer) is None
    changed = {"learning_rate": 2e-5, "model_config": {"num_hidden_layers": 2}}
    assert _first_difference("baseline", stored, changed) == (
        "baseline.model_config.num_hidden_layers", None, 2)


def test_the_command_imports_nothing_heavy_before_it_handles_ctrl_c():
    """`ablate` turns Ctrl+C into one line and exit 130 inside `main`; the imports before it (the
    package and the command line) must be quick, or an early Ctrl+C prints a traceback."""
    import subprocess
    import sys

    heavy = ("torch", "transformers", "sklearn", "scipy", "optuna", "pandas", "datasets")
    code = ("import sys, ablation, ablation.cli; "
            f"print(','.join(m for m in {heavy!r} if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == ""
    import ablation

    assert ablation.load_spec is load_spec and "run_study" in ablation.__all__  # the public names
    with pytest.raises(AttributeError):
        ablation.nope  # noqa: B018


def test_reading_a_search_section_imports_neither_transformers_nor_torch(write_experiment) -> None:
    """Every command reads [search]; only training needs its Trainer callback. Importing it with
    the section cost 1.7 s and 375 MiB of `status` and `report` on a [search] study."""
    path = write_experiment(extra='[search]\nn_trials = 2\nsampler = "random"\npruner = "median"\n'
                                  "[search.space]\nlearning_rate = { low = 1e-5, high = 1e-3 }\n")
    code = ("import sys\nfrom ablation.config import load_spec\n"
            "print(load_spec(sys.argv[1], need_data=False).search.pruner,\n"
            "      sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'transformers'}))")
    done = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "median []"
    from ablation import search
    from ablation.pruning import PruningCallback

    assert search.PruningCallback is PruningCallback  # where it was


def test_a_common_scheduler_is_taken_without_importing_transformers(write_experiment) -> None:
    """lr_scheduler = "cosine" imported transformers and torch to check the name (1.5 s of every
    `status`); the names taken without it are all transformers' own, and others still go to it."""
    from transformers.trainer_utils import SchedulerType

    from ablation.config import KNOWN_SCHEDULERS, UNSUPPORTED_SCHEDULERS

    assert set(KNOWN_SCHEDULERS) <= {s.value for s in SchedulerType} - set(UNSUPPORTED_SCHEDULERS)
    path = write_experiment()
    code = ("import sys\nfrom ablation.config import load_spec\n"
            "print([load_spec(sys.argv[1], [f'baseline.lr_scheduler=\"{name}\"'], need_data=False\n"
            "                 ).baseline.lr_scheduler for name in sys.argv[2:]],\n"
            "      sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'transformers'}))")
    done = subprocess.run([sys.executable, "-c", code, str(path), *KNOWN_SCHEDULERS],
                          capture_output=True, text=True, check=True)
    assert done.stdout.strip() == f"{list(KNOWN_SCHEDULERS)} []"
    with pytest.raises(AblateInputError, match="must be a transformers scheduler name: linear, cosine"):
        load_spec(path, ['baseline.lr_scheduler="cosine_with_min_lr"'], need_data=False)


# What `ablate COMMAND ARGS` imports, run in a fresh process: its exit code, then the heavy libraries.
IMPORTED_BY = ("import runpy, sys\n"
               "sys.argv = ['ablate', *sys.argv[1:]]\n"
               "try:\n"
               "    runpy.run_module('ablation', run_name='__main__')\n"
               "except SystemExit as done:\n"
               "    print(done.code, sorted({m.split('.')[0] for m in sys.modules}\n"
               "                            & {'torch', 'transformers', 'datasets'}))\n")


@pytest.mark.parametrize("search", [False, True], ids=["variants×seeds", "search"])
def test_status_and_report_import_neither_transformers_nor_datasets_nor_torch(write_experiment,
                                                                              search: bool) -> None:
    """They read the storage and write tables and plots. Importing transformers and datasets to
    quiet their logging, and torch with a [search]'s Trainer callback, cost 2-5 s of every call."""
    path = stored_study(write_experiment, 4, search)
    for command in (["status"], ["report", "--format", "json"]):
        done = subprocess.run([sys.executable, "-c", IMPORTED_BY, *command, str(path)],
                              capture_output=True, text=True, check=True)
        assert done.stdout.splitlines()[-1] == "0 []", (command, done.stdout, done.stderr)


def test_libraries_imported_after_the_command_starts_are_quieted_as_they_load(tmp_path: Path) -> None:
    """Their logging is turned down when they are imported, no longer up front: a command that
    imports them (run, validate, predict) still gets them quiet, without progress bars."""
    code = (f"{IMPORTED_BY}"
            "import datasets, optuna, transformers\n"
            "print(transformers.logging.get_verbosity(),\n"
            "      transformers.utils.logging.is_progress_bar_enabled(),\n"
            "      datasets.logging.get_verbosity(), datasets.is_progress_bar_enabled(),\n"
            "      optuna.logging.get_verbosity())\n")
    done = subprocess.run([sys.executable, "-c", code, "init", str(tmp_path / "x.toml")],
                          capture_output=True, text=True, check=True)
    *_, imported, levels = done.stdout.splitlines()
    assert imported == "0 []"  # init imports none of them itself
    assert levels.split() == ["40", "False", "40", "False", "30"]  # error, warning; stderr a pipe


def test_a_users_own_logging_variables_stand(tmp_path: Path) -> None:
    """The quieting is the libraries' own environment variables: one the user set, to see
    transformers' info lines or the download bars, is left as it is."""
    code = (f"{IMPORTED_BY}"
            "import transformers\n"
            "print(transformers.logging.get_verbosity(),\n"
            "      transformers.utils.logging.is_progress_bar_enabled())\n")
    env = {**os.environ, "TRANSFORMERS_VERBOSITY": "info", "HF_HUB_DISABLE_PROGRESS_BARS": "0"}
    done = subprocess.run([sys.executable, "-c", code, "init", str(tmp_path / "x.toml")],
                          capture_output=True, text=True, check=True, env=env)
    assert done.stdout.splitlines()[-1].split() == ["20", "True"]


def test_output_to_a_log_file_arrives_line_by_line_in_order_with_stderr(write_experiment, tmp_path):
    """`ablate run FILE > run.log 2>&1`: each line reaches the file as it is printed. Python
    buffers stdout 8 KB at a time outside a terminal, so the log stayed empty until the run ended,
    and a line on stderr (here the error) came before the lines printed to stdout ahead of it."""
    log = tmp_path / "run.log"
    env = {key: value for key, value in os.environ.items() if key != "PYTHONUNBUFFERED"}
    with log.open("w") as out:
        done = subprocess.run([sys.executable, "-m", "ablation", "run", str(write_experiment()),
                               "--rerun", "nope"], stdout=out, stderr=subprocess.STDOUT, env=env,
                              timeout=120)
    assert done.returncode == 2
    lines = log.read_text().splitlines()
    assert lines[0].startswith("study tiny: ") and lines[-1].startswith("ablate: error: --rerun")


def test_output_to_a_reader_that_stopped_exits_141_without_a_traceback(write_experiment):
    """`ablate ... | head`: the reader closes the pipe before ablate has written everything."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # nobody reads: the first write fails with EPIPE
    try:
        done = subprocess.run([sys.executable, "-m", "ablation", "validate",
                               str(write_experiment())], stdout=write_end, stderr=subprocess.PIPE,
                              text=True, timeout=120)
    finally:
        os.close(write_end)
    assert done.returncode == 141
    assert "Traceback" not in done.stderr and "BrokenPipeError" not in done.stderr


def test_a_terminal_that_cannot_show_unicode_gets_the_summary_in_ascii(write_experiment):
    """PYTHONIOENCODING=ascii (or a latin-1 locale): the summary's header has Δ and the
    baseline's ★; strict stdout raised UnicodeEncodeError (a traceback, exit 1) after every
    trial had trained."""
    env = {**os.environ, "PYTHONIOENCODING": "ascii"}
    done = subprocess.run([sys.executable, "-m", "ablation", "run", str(write_experiment())],
                          capture_output=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr.decode()
    out = done.stdout.decode("ascii")
    assert "delta" in out and "baseline *" in out and "Traceback" not in done.stderr.decode()


def test_an_error_line_escapes_the_control_characters_a_library_quotes(tiny_model_dir, capsys):
    """huggingface_hub's message repeats a --dataset raw: an ESC in it drove the terminal."""
    from ablation.cli import main

    assert main(["evaluate", str(tiny_model_dir), "--dataset", "da\x1bta\nx"]) == 2
    err = capsys.readouterr().err
    assert "\x1b" not in err and err.count("\n") == 1 and "da\\x1bta\\nx" in err


def test_characters_a_stream_cannot_encode_are_spelled_in_ascii():
    from ablation.cli import _spell_in_ascii  # noqa: F401  (registers the handler)

    assert "10⁻⁵ → Δ ± 这".encode("ascii", "ablate-ascii") == (
        b"10^-5 -> delta +/- \\u8fd9")
    assert "± Δ".encode("latin-1", "ablate-ascii") == "± delta".encode("latin-1")


def test_evaluate_reads_column_names_a_utf8_terminal_typed_under_an_ascii_locale():
    """LC_ALL=C with PYTHONUTF8=0 reads an argument's bytes past ASCII as lone surrogates:
    `ablate evaluate MODEL --dataset d.csv --text-column 文本` said d.csv had no column
    '\\udce6\\udc96...' beside its '文本'. Column names are read as the UTF-8 typed."""
    typed = {name: "".join(chr(0xDC00 + byte) for byte in name.encode())
             for name in ("文本", "第二", "类别")}  # as LC_ALL=C reads them
    args = cli.build_parser().parse_args(
        ["evaluate", "model", "--text-column", typed["文本"], "--text-pair-column", typed["第二"],
         "--label-column", typed["类别"]])
    assert (args.text_column, args.text_pair_column, args.label_column) == ("文本", "第二", "类别")


@pytest.mark.parametrize(("argv", "texts"), [
    (["--json", "great fun"], ["great fun"]),
    (["--batch-size", "8", "a", "b"], ["a", "b"]),
    (["a", "--json", "b", "--batch-size", "3", "c"], ["a", "b", "c"]),
])
def test_predict_takes_texts_before_and_after_its_options(argv, texts):
    assert cli.build_parser().parse_args(["predict", "model", *argv]).texts == texts


@pytest.mark.parametrize("options, resumed", [
    ([], []),
    (["--only", "a", "--workers", "2", "--graceful"], ["--only", "a", "--graceful", "--workers", "2"]),
    (["--rerun", "b"], []),  # its trials are queued: a plain run trains them, not again
    (["--only", "a", "--rerun", "b", "--retry-failed"], ["--only", "a", "--only", "b",
                                                        "--retry-failed"]),
])
def test_the_interrupted_line_gives_the_command_that_goes_on_with_the_same_selection(
        options, resumed):
    args = cli.build_parser().parse_args(["run", "x.toml", "--set", "baseline.epochs=1", *options])
    expected = shlex.join(["ablate", "run", "x.toml", "--set", "baseline.epochs=1", *resumed])
    assert cli._resume(args) == f"; `{expected}` goes on from there"


def test_the_interrupted_line_of_a_run_whose_file_was_edited_points_at_status(tmp_path):
    """The file edited while the run trained (a variant's knob changed): the same command then
    refuses the file, though the interrupted line said it goes on; it now says the file was
    edited and that `status` says whether it still does (and nothing where it was not)."""
    path = tmp_path / "x.toml"
    path.write_text("[variants]\nlr = { learning_rate = 2e-3 }\n")
    args = cli.build_parser().parse_args(["run", str(path), "--set", "baseline.epochs=1"])
    args.file_as_read = cli._file_bytes(path)
    command = shlex.join(["ablate", "run", str(path), "--set", "baseline.epochs=1"])
    assert cli._resume(args) == f"; `{command}` goes on from there"
    path.write_text("[variants]\nlr = { learning_rate = 5e-3 }\n")
    status = shlex.join(["ablate", "status", str(path), "--set", "baseline.epochs=1"])
    assert cli._resume(args) == (f"; `{command}` goes on from there ({path} was edited since this "
                                 f"run read it: `{status}` says whether it still does)")


@pytest.mark.parametrize("command", [["status"], ["report"], ["validate"], ["run", "--dry-run"]])
def test_an_interrupted_command_that_trains_nothing_says_so_alone(write_experiment, monkeypatch,
                                                                   capsys, command):
    """Ctrl+C during `status` (or report, validate, a dry run) said 'completed trials are kept in
    the storage', as an interrupted run does, though these train nothing."""
    from ablation import config

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    path = write_experiment()
    monkeypatch.setattr(config, "load_spec", interrupted)
    assert cli.main([command[0], str(path), *command[1:]]) == cli.EXIT_INTERRUPTED
    assert capsys.readouterr().err == "ablate: interrupted\n"


def test_status_says_at_which_step_a_trial_was_pruned(write_experiment,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """report.json had each trial's pruned_at_step; `status` showed a bare PRUNED."""
    from ablation import records
    from ablation.queue import open_study
    from ablation.variants import TrialSpec

    path = write_experiment(extra='[search]\nn_trials = 2\n[search.space]\nbatch_size = [8, 16]\n')
    spec = load_spec(path)
    study = open_study(spec)
    for number, step in ((0, 40), (1, None)):
        trial = TrialSpec.of(spec.baseline, f"search_{number}", 42, {})
        study.enqueue_trial({}, user_attrs=records.trial_attrs(trial))
        live = study.ask()
        if step is None:
            study.tell(live, 0.5)
        else:
            live.set_user_attr(records.RESULT, {"pruned_at_step": step})
            live.report(0.3, step)
            study.tell(live, state=optuna.trial.TrialState.PRUNED)
    capsys.readouterr()
    assert cli.main(["status", str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[2].split()[1:3] == ["search_0-s42", "PRUNED"]
    assert lines[2].endswith("  pruned at step 40") and "pruned" not in lines[3]
    assert cli.main(["status", str(path), "--json"]) == 0
    trials = json.loads(capsys.readouterr().out)["trials"]
    assert [t["pruned_at_step"] for t in trials] == [40, None]


def test_the_commands_report_and_status_print_repeat_the_runs_sets(write_experiment, monkeypatch,
                                                                    capsys):
    """`ablate report FILE` and `ablate status FILE` without the run's --set printed commands
    without it: pasted, they read other rows (refused) or ran other settings. The study keeps
    the --sets its run was given; their commands repeat them, shell-quoted, then their own."""
    from ablation import queue, records
    from ablation.queue import open_study

    path = write_experiment(variants="")
    sets = ["data.max_train_samples=16", 'experiment.description="two words"']
    assert cli.main(["run", str(path), *[p for item in sets for p in ("--set", item)]]) == 0
    assert cli.main(["report", str(path), "--set", "experiment.heartbeat=5"]) == 0
    quoted = shlex.join(["--set", sets[0], "--set", sets[1], "--set", "experiment.heartbeat=5"])
    report = (load_spec(path).output_dir / "report.md").read_text(encoding="utf-8")
    assert f"`ablate predict {path} 'some text' {quoted}`, `ablate evaluate {path} {quoted}`" in report
    assert f"regenerate with `ablate report {path} {quoted}`" in report
    capsys.readouterr()
    assert cli.main(["evaluate", str(path)]) == 2  # what report.md gave: other rows, refused
    assert cli.main(shlex.split(f"evaluate {path} {quoted}")) == 0  # pasted: the study's rows

    study = open_study(load_spec(path), create=False)  # a trial whose process is gone
    study.enqueue_trial({}, user_attrs={records.VARIANT: "baseline", records.SEED: 7,
                                        records.KEY: "baseline-s7", records.OVERRIDES: {}})
    claimed = queue.claim(study, None)
    monkeypatch.setattr(queue, "stale_numbers", lambda study: {claimed.number})
    capsys.readouterr()
    assert cli.main(["status", str(path)]) == 1
    line = [row for row in capsys.readouterr().out.splitlines()
            if row[:4].strip().isdigit()][-1]  # the last trial row: a summary follows
    run = shlex.join(["ablate", "run", str(path), "--set", sets[0], "--set", sets[1]])
    assert line.endswith(f"its process is gone; `{run}` runs it again"), line


def test_status_names_a_few_of_many_trials_not_queued_yet_and_counts_them(tmp_path):
    """A fourth seed added to a 61-variant study made `status` print one line of 61 trial keys
    (1,300 characters); it names the first 10 and how many (`--json` keeps every key)."""
    from ablation.status import StatusSummary

    keys = [f"baseline_lr{i}e-4-s4" for i in range(61)]
    summary = StatusSummary({"complete": 183, "not queued yet": 61}, keys, [], 0, None, None,
                            "big.toml")
    line = next(line for line in summary.lines() if line.startswith("not queued yet:"))
    assert line == "not queued yet: " + ", ".join(keys[:10]) + ", … (61 in all)"
    assert summary.to_json()["not_queued_yet"] == keys
    gone = StatusSummary({"complete": 20}, [], [f"v{i}" for i in range(20)], 0, None, None,
                         "big.toml")
    assert "not in big.toml now: v0, " in gone.lines()[1]
    assert ", v9, … (20 in all) (their results still count" in gone.lines()[1]


def test_status_reads_a_study_on_a_read_only_file_system(write_experiment, monkeypatch,
                                                          capsys) -> None:
    """A finished study on a disk mounted read-only (a backup, `mount -o remount,ro`): status
    read a colleague's unwritable folder but refused this one, naming the lock file beside
    study.db (`[Errno 30] Read-only file system`). Simulated: writes under the output folder
    fail as on such a mount."""
    import errno

    path = stored_study(write_experiment, 2)
    out = load_spec(path).output_dir
    real_open = Path.open

    def read_only(self: Path, mode: str = "r", *args, **kwargs):
        if out in Path(self).absolute().parents and any(c in mode for c in "wax+"):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))
        return real_open(self, mode, *args, **kwargs)

    monkeypatch.setattr(Path, "open", read_only)
    capsys.readouterr()
    assert cli.main(["status", str(path)]) == 0
    shown, err = capsys.readouterr()
    assert "baseline-s42" in shown and err == ""


def test_a_quoted_tilde_in_the_experiment_file_path_is_the_home_folder_for_every_command(
        write_experiment, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """`ablate init '~/studies/first.toml'` (quoted, or from a program: no shell expands it) made a
    folder named `~` in the working folder, and `ablate run '~/tiny.toml'` said no such file,
    though `predict '~/tiny.toml'` reads the home folder's, as `~` in the file's paths is."""
    path = write_experiment()
    monkeypatch.setenv("HOME", str(tmp_path))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    assert cli.main(["init", "~/studies/first.toml"]) == 0
    assert (tmp_path / "studies" / "first.toml").read_text(encoding="utf-8") == STARTER
    assert list(work.iterdir()) == []
    capsys.readouterr()
    assert cli.main(["run", f"~/{path.name}", "--dry-run"]) == 0, _error(capsys)
    assert f"study tiny: {path}" in capsys.readouterr().out


@pytest.mark.parametrize("key", ["output_dir", "dataset"])
def test_a_path_that_is_not_utf8_is_one_error_line_before_anything_runs(
        key: str, write_experiment, tmp_path: Path, tiny_data_dir: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Run from a folder whose name is not UTF-8 (a latin-1 archive's `caf\\xe9`), the default
    output folder reports/<name> under it passed `validate` and then `run` ended in pyarrow's
    UnicodeEncodeError traceback; so did a dataset path that a symlink resolves to such a folder."""
    path = write_experiment()
    text = path.read_text(encoding="utf-8")
    odd = Path(os.fsdecode(bytes(tmp_path) + b"/caf\xe9"))
    odd.mkdir()
    if key == "output_dir":
        path.write_text("\n".join(line for line in text.splitlines()
                                  if not line.startswith("output_dir =")) + "\n", encoding="utf-8")
        monkeypatch.chdir(odd)
    else:
        shutil.copytree(tiny_data_dir, odd / "data")
        (tmp_path / "data").symlink_to(odd / "data")
        path.write_text(text.replace(f'dataset = "{tiny_data_dir}"',
                                     f'dataset = "{tmp_path / "data"}"'), encoding="utf-8")
    for command in ("validate", "run"):
        capsys.readouterr()
        assert cli.main([command, str(path)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"[{'experiment' if key == 'output_dir' else 'data'}] {key}" \
            in err and "not UTF-8" in err and "0xe9" in err, err


@pytest.mark.parametrize("key", ["output_dir", "dataset", "cwd"])
def test_a_path_this_locale_cannot_name_in_utf8_is_one_error_line(
        key: str, write_experiment, tmp_path: Path, tiny_data_dir: Path) -> None:
    """LC_ALL=C with PYTHONUTF8=0 (a locale whose file names are ASCII; a latin-1 or GB18030
    locale names them in bytes other than UTF-8): `name = "外卖"`'s default output folder was a
    UnicodeEncodeError traceback (exit 1), a dataset `数据` on disk was 'no such file or folder',
    and a run from a folder `研究` was told its UTF-8 name was not UTF-8 and to rename it."""
    path = write_experiment()
    text = path.read_text(encoding="utf-8")
    work = tmp_path
    if key == "output_dir":
        text = "\n".join(line for line in text.splitlines()
                         if not line.startswith("output_dir =")).replace('name = "tiny"', 'name = "外卖"')
    elif key == "dataset":
        shutil.copytree(tiny_data_dir, tmp_path / "数据")
        text = text.replace(f'dataset = "{tiny_data_dir}"', f'dataset = "{tmp_path / "数据"}"')
    else:
        text = "\n".join(line for line in text.splitlines() if not line.startswith("output_dir ="))
        work = tmp_path / "研究"
        work.mkdir()
    path.write_text(text + "\n", encoding="utf-8")
    env = {**os.environ, "LC_ALL": "C", "PYTHONUTF8": "0", "PYTHONIOENCODING": ""}
    done = subprocess.run([sys.executable, "-m", "ablation", "validate", str(path)], cwd=work,
                          capture_output=True, env=env, timeout=120)
    err = done.stderr.decode("ascii")
    section = "data" if key == "dataset" else "experiment"
    assert done.returncode == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert f"[{section}] {'dataset' if key == 'dataset' else 'output_dir'}" in err, err
    assert "ascii" in err and "PYTHONUTF8=1" in err and "rename" not in err, err


def test_a_file_name_this_locale_reads_as_bytes_is_not_called_control_characters(
        write_experiment, tmp_path: Path) -> None:
    """LC_ALL=C with PYTHONUTF8=0: `ablate validate 实验.toml` (no [experiment] name) said the
    study name its UTF-8 file name gives held control characters (the bytes past ASCII, read as
    lone surrogates), rather than that this locale cannot name it."""
    text = write_experiment().read_text(encoding="utf-8")
    path = tmp_path / "实验.toml"
    path.write_text(text.replace('name = "tiny"\n', "", 1), encoding="utf-8")
    env = {**os.environ, "LC_ALL": "C", "PYTHONUTF8": "0", "PYTHONIOENCODING": ""}
    done = subprocess.run([sys.executable, "-m", "ablation", "validate", path.name], cwd=tmp_path,
                          capture_output=True, env=env, timeout=120)
    err = done.stderr.decode("ascii")
    assert done.returncode == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert "control characters" not in err and "PYTHONUTF8=1" in err, err


def test_a_model_folder_whose_path_is_not_utf8_is_said_so_not_called_damaged(
        tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`ablate predict caf\\xe9/model` said its weights were damaged or cut short and to copy the
    folder again: safetensors cannot open a path that is not UTF-8, whatever the file holds."""
    folder = Path(os.fsdecode(bytes(tmp_path) + b"/caf\xe9")) / "model"
    shutil.copytree(tiny_model_dir, folder)
    capsys.readouterr()
    for command in (["predict", str(folder), "great fun"], ["evaluate", str(folder), "--dataset",
                                                             str(tmp_path / "none.csv")]):
        assert cli.main(command) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "not UTF-8 (byte 0xe9" in err and "damaged" not in err, err


def test_an_experiment_file_given_through_a_symlink_keeps_its_name_in_every_command_it_prints(
        write_experiment, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """`current.toml -> v3.toml` (no [experiment] name): the study is `current`, after the name
    given, but the file was recorded by its target, so what read it again by that path
    (`run --workers N`'s workers, the commands it prints to paste) named study `v3` instead:
    the workers said "no study 'v3'", and the `predict` it suggested read another study."""
    path = write_experiment()
    target = tmp_path / "v3.toml"
    target.write_text("\n".join(line for line in path.read_text(encoding="utf-8").splitlines()
                                if not line.startswith(("name = \"tiny\"", "output_dir ="))) + "\n",
                      encoding="utf-8")
    (tmp_path / "current.toml").symlink_to(target.name)
    monkeypatch.chdir(tmp_path)
    spec = load_spec("current.toml")
    assert spec.name == "current" and load_spec(spec.path).name == "current"
    assert spec.command("status") == "ablate status current.toml"
    capsys.readouterr()
    assert cli.main(["run", "current.toml", "--dry-run"]) == 0
    assert f"study current: {tmp_path.resolve() / 'current.toml'}" in capsys.readouterr().out


def test_an_experiment_file_whose_name_starts_with_a_dash_is_named_so_commands_can_be_pasted(
        write_experiment, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """`ablate run -- -v2.toml` (or ./-v2.toml) ran, but every command it printed to paste
    (`try ablate predict -v2.toml 'some text'`, `ablate status -v2.toml`) read the name as an
    option: "the following arguments are required: file"."""
    path = write_experiment()
    (tmp_path / "-v2.toml").write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    spec = load_spec("-v2.toml")
    assert spec.command("predict", "some text") == "ablate predict ./-v2.toml 'some text'"
    assert cli.main(shlex.split(spec.command("validate"))[1:]) == 0
    capsys.readouterr()
    assert cli.main(["status", "--", "-v2.toml"]) == 2
    assert "run `ablate run ./-v2.toml` first" in capsys.readouterr().err


def test_predict_help_says_file_dash_reads_standard_input(capsys: pytest.CaptureFixture[str]) -> None:
    """`--file -` reads the texts from standard input (`tail -f app.log | ablate predict MODEL
    --file -`, as the README says), but `ablate predict --help` said only "one per line"."""
    with pytest.raises(SystemExit):
        cli.main(["predict", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "--file PATH" in help_text and "- reads standard input" in help_text


@pytest.mark.parametrize("dataset,model", [("data", "model"), ("./data", "./model")],
                         ids=["bare_names", "dot_slash"])
def test_relative_data_and_model_paths_beside_the_file_run_from_another_folder_are_named(
        dataset: str, model: str, write_experiment, tiny_model_dir: Path, tiny_data_dir: Path,
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """`dataset = "data"` and `name = "model"` beside the file, validated from the folder above:
    the error said the Hub could not be reached (or no such folder), nothing of the folder beside
    the file that the path names from there."""
    project = tmp_path / "project"
    shutil.copytree(tiny_data_dir, project / "data")
    shutil.copytree(tiny_model_dir, project / "model")
    path = write_experiment()
    text = path.read_text(encoding="utf-8").replace(f'dataset = "{tiny_data_dir}"',
                                                    f'dataset = "{dataset}"')
    (project / "bs.toml").write_text(text.replace(f'name = "{tiny_model_dir}"', f'name = "{model}"'),
                                     encoding="utf-8")
    use_offline_cache(monkeypatch, tmp_path / "hf")  # works in tmp_path; no Hub asked of "data"
    for sets, named in (([], "data"), (["--set", f"data.dataset={json.dumps(str(tiny_data_dir))}"],
                                       "model")):
        capsys.readouterr()
        assert cli.main(["validate", "project/bs.toml", *sets]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "is there beside the file, but relative paths start at the " \
            f"folder ablate runs in ({tmp_path}), not the file's: run it from " in err, err
        assert f"{Path('project') / named}'" in err, err
    monkeypatch.chdir(project)
    assert cli.main(["validate", "bs.toml"]) == 0


def test_windows_without_fcntl_is_one_line_not_an_import_traceback(write_experiment) -> None:
    """Windows has no fcntl, whose file locks every command takes: `validate` there ended in
    ModuleNotFoundError's traceback at its first lock (simulated: fcntl made unimportable)."""
    code = ("import runpy, sys\n"
            "sys.modules['fcntl'] = None\n"
            "sys.argv = ['ablate', *sys.argv[1:]]\n"
            "runpy.run_module('ablation', run_name='__main__')\n")
    done = subprocess.run([sys.executable, "-c", code, "validate", str(write_experiment())],
                          capture_output=True, text=True)
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [
        "ablate: error: ablate runs on Linux and macOS, not on Windows: its processes take turns "
        "through fcntl's file locks, which Windows lacks; run it under WSL 2 (the Windows "
        "Subsystem for Linux)"]
