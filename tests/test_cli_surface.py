"""The command line around a study: a stored study that does not match the file is refused (or
replaced with --force-new)."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import optuna
import pandas as pd
import pytest

from ablation import cli
from ablation.config import load_spec


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

    for item, difference in [
        ("data.max_train_samples=100", "data.max_train_samples=unset; this file says 100"),
        ("model.config.num_hidden_layers=1",
         "model.config.num_hidden_layers=unset; this file says 1"),
        ("baseline.learning_rate=5e-3", "baseline.learning_rate=0.001; this file says 0.005"),
        ("experiment.metric=accuracy", "metric='macro_f1'; this file says 'accuracy'"),
    ]:
        capsys.readouterr()
        assert cli.main(["run", str(study_file), "--set", item]) == 2, item
        err = _error(capsys)
        assert f"holds study 'tiny' run with {difference}" in err
        assert "use a new [experiment] name, or --force-new" in err
        assert cli.main(["run", str(study_file), "--dry-run", "--set", item]) == 2  # said at once

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
    assert "its files changed" in err
    assert _trials(study_file) == stored
    assert cli.main(["status", str(study_file)]) == 0
    assert "SUPERSEDED" not in capsys.readouterr().out


def test_force_new_deletes_the_stored_study_and_starts_afresh(
        study_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["run", str(study_file)]) == 0
    new_baseline = ["--set", "baseline.learning_rate=5e-3"]
    capsys.readouterr()
    assert cli.main(["run", str(study_file), *new_baseline, "--dry-run", "--force-new"]) == 0
    assert "--force-new: would delete study 'tiny' (1 trial(s))" in capsys.readouterr().out
    assert len(_trials(study_file)) == 1  # a dry run deletes nothing

    assert cli.main(["run", str(study_file), *new_baseline, "--force-new"]) == 0
    out = capsys.readouterr().out
    storage = load_spec(study_file).experiment.storage
    assert f"--force-new: deleted study 'tiny' (1 trial(s)) from {storage}; starting afresh" in out
    assert [(n, key, state) for n, key, state in _trials(study_file)] == [
        (0, "baseline-s42", "COMPLETE")]
    study = optuna.load_study(study_name="tiny", storage=storage)
    assert study.user_attrs["baseline"]["learning_rate"] == 5e-3
    assert cli.main(["run", str(study_file), *new_baseline]) == 0  # the new study is the file's
