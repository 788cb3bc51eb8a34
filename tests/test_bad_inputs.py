"""The bad-input corpus: every case in tests/bad_inputs/ must end in exit code 2 and exactly one
line on stderr, `ablate: error: ...`, holding the fragments the case expects (the file, key or row
at fault and what is allowed), never a traceback.

A case is one experiment file whose leading comment block says what it is and what must happen
(see tests/bad_inputs/README.md). Placeholders are replaced before the file is written to the
test's own folder, which is also the working folder: {model} and {data} (the tiny model and data
of conftest.py), {cases} (tests/bad_inputs), {tmp} (the test's folder), {file} (the case's
experiment file as written there).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import optuna
import pytest
from conftest import tiny_experiment

import ablation
from ablation import cli

CASES_DIR = Path(__file__).parent / "bad_inputs"
DIRECTIVE = re.compile(r"^# (args|expect|env|via): (.*)$")


@dataclass
class Case:
    """One bad input, read from the comment block at the top of its file."""

    path: Path
    description: list[str] = field(default_factory=list)
    args: str = "validate {file}"
    expect: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    subprocess: bool = False

    @classmethod
    def read(cls, path: Path) -> Case:
        case = cls(path)
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.startswith("#"):
                break
            match = DIRECTIVE.match(line)
            if match is None:
                case.description.append(line.lstrip("# ").strip())
            elif match[1] == "args":
                case.args = match[2]
            elif match[1] == "expect":
                case.expect.append(match[2])
            elif match[1] == "env":
                key, _, value = match[2].partition("=")
                case.env[key.strip()] = value.strip()
            else:
                case.subprocess = match[2].strip() == "subprocess"
        return case


def _cases() -> list[Case]:
    return [Case.read(path) for path in sorted(CASES_DIR.glob("*.toml"))]


def _fill(text: str, places: dict[str, str]) -> str:
    for name, value in places.items():
        text = text.replace("{" + name + "}", value)
    return text


def test_the_corpus_is_large_and_every_case_says_what_it_checks() -> None:
    cases = _cases()
    assert len(cases) >= 45
    for case in cases:
        assert case.expect, f"{case.path.name}: no `# expect:` line"
        assert any(case.description), f"{case.path.name}: no description line"


def _run_ablate(argv: list[str], tmp_path: Path) -> tuple[int, str, str]:
    """`python -m ablation ARGV` from this checkout, in tmp_path."""
    root = str(Path(ablation.__file__).resolve().parents[1])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))
    done = subprocess.run([sys.executable, "-m", "ablation", *argv], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    return done.returncode, done.stdout, done.stderr


@pytest.mark.parametrize("case", _cases(), ids=lambda case: case.path.stem)
def test_bad_input_is_one_error_line_and_exit_code_2(case: Case, tmp_path: Path, tiny_model_dir: Path,
                                                     tiny_data_dir: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    for key, value in case.env.items():
        monkeypatch.setenv(key, value)
    file = tmp_path / case.path.name
    places = {"model": str(tiny_model_dir), "data": str(tiny_data_dir), "cases": str(CASES_DIR),
              "tmp": str(tmp_path), "file": str(file)}
    file.write_text(_fill(case.path.read_text(encoding="utf-8"), places), encoding="utf-8")
    argv = shlex.split(_fill(case.args, places))

    if case.subprocess:
        code, out, err = _run_ablate(argv, tmp_path)
    else:
        code = cli.main(argv)
        out, err = capsys.readouterr()

    assert code == 2, f"exit code {code}; stderr: {err}"
    assert "Traceback" not in err + out
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"expected one error line, got: {err!r}"
    assert lines[0].startswith("ablate: error: ")
    for fragment in case.expect:
        assert _fill(fragment, places) in lines[0]


# --------------------------------------------------------------------------- accepted, not refused


def _validate_local(data: Path, tmp_path: Path, model: Path, capsys: pytest.CaptureFixture[str]
                    ) -> tuple[int, str, str]:
    file = tmp_path / "accepted.toml"
    file.write_text(f'[data]\ndataset = "{data}"\n\n[model]\nname = "{model}"\n\n[baseline]\n',
                    encoding="utf-8")
    code = cli.main(["validate", str(file)])
    out, err = capsys.readouterr()
    return code, out, err


def test_rows_with_an_empty_text_or_no_label_are_dropped_with_a_note(
        tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """A drop is not an error: two empty texts and one missing label out of 40 rows."""
    monkeypatch.chdir(tmp_path)
    code, out, err = _validate_local(CASES_DIR / "data" / "dropped_rows.csv", tmp_path, tiny_model_dir,
                                     capsys)
    assert code == 0, err
    assert "data: split 'train': dropped 3 rows with an empty text or missing label" in out
    assert "ok: 1 trial(s); train 33, validation 4, test 0 rows; labels 0, 1" in out
    assert err == ""


def test_a_csv_with_a_utf8_byte_order_mark_is_simply_read(
        tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    bom = CASES_DIR / "data" / "bom.csv"
    assert bom.read_bytes().startswith(b"\xef\xbb\xbftext,label")
    code, out, err = _validate_local(bom, tmp_path, tiny_model_dir, capsys)
    assert code == 0, err
    assert "ok: 1 trial(s); train 36, validation 4, test 0 rows; labels 0, 1" in out
    assert "dropped" not in out and err == ""


# --------------------------------------------------------------------------- a refused run's traces


@pytest.mark.parametrize("bad_data", [
    'data.label_names=["neg", "pos"]',  # the data has label 2: outside the named classes
    "data.text_column=body",  # no such column
    f"data.dataset={json.dumps(str(CASES_DIR / 'data' / 'empty_test'))}",  # a split left empty
], ids=["label_outside_the_label_set", "text_column_missing", "empty_split"])
def test_a_run_refused_for_bad_data_leaves_no_study_behind(
        bad_data: str, tmp_path: Path, tiny_model_dir: Path, tiny_data_dir: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """The study and its output folder were made before the data was read: a refused run left an
    empty study behind (`status`: 0 trial(s)), its folder, lock and copies of the file."""
    path = tiny_experiment(tmp_path, tiny_model_dir, tiny_data_dir)
    assert cli.main(["run", str(path), "--set", bad_data]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("ablate: error: "), err
    assert sorted(p.name for p in tmp_path.rglob("*")) == [path.name]  # not even reports/
    assert cli.main(["status", str(path)]) == 2
    assert f"no study 'tiny' in sqlite:///{tmp_path}/reports/tiny/study.db yet" in capsys.readouterr().err


def test_a_run_refused_for_bad_data_keeps_the_study_it_found(
        tmp_path: Path, tiny_model_dir: Path, tiny_data_dir: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Only what the refused run made goes: a study run before, its trials and files stay."""
    data = tmp_path / "data"
    shutil.copytree(tiny_data_dir, data)
    path = tiny_experiment(tmp_path, tiny_model_dir, data)
    assert cli.main(["run", str(path), "--only", "baseline"]) == 0
    output_dir = tmp_path / "reports" / "tiny"
    before = sorted(p.relative_to(output_dir) for p in output_dir.rglob("*"))
    with (data / "train.csv").open("a", encoding="utf-8") as rows:
        rows.write("a great movie,seven\n")  # a word among integer labels
    capsys.readouterr()
    assert cli.main(["run", str(path)]) == 2  # bs32 still to run: the data is read
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "seven" in err, err
    assert sorted(p.relative_to(output_dir) for p in output_dir.rglob("*")) == before
    assert cli.main(["status", str(path)]) == 0
    assert "tiny (sqlite:" in capsys.readouterr().out
    assert [t.state.name for t in optuna.load_study(
        study_name="tiny", storage=f"sqlite:///{output_dir / 'study.db'}").get_trials()] == ["COMPLETE"]
