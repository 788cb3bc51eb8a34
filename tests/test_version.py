"""ablate's version names the commit it runs from: a study trained from a clone that was pulled
or edited between trials shows which trials trained under which code."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

import ablation
from ablation import cli
from ablation.version import ablate_version, checkout_version


def _git(where: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(where), *args], capture_output=True, text=True,
                          check=True).stdout.strip()


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A git repository whose top folder holds a package `ablation/`, committed once."""
    package = tmp_path / "repo" / "ablation"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("x = 1\n")
    _git(tmp_path / "repo", "init", "-q")
    _git(tmp_path / "repo", "add", ".")
    _git(tmp_path / "repo", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one")
    return package


def test_a_checkout_adds_its_commit_and_dirty_only_for_the_package_own_changes(checkout):
    commit = _git(checkout, "rev-parse", "--short=12", "HEAD")
    assert checkout_version(checkout, "0.1.0") == f"0.1.0+g{commit}"
    (checkout.parent / "notes.txt").write_text("a user's file beside the package\n")
    (checkout / "new_module.py").write_text("untracked\n")
    assert checkout_version(checkout, "0.1.0") == f"0.1.0+g{commit}"
    (checkout / "__init__.py").write_text("x = 2\n")
    assert checkout_version(checkout, "0.1.0") == f"0.1.0+g{commit}.dirty"


def test_a_package_inside_another_repository_or_none_is_the_release_alone(checkout, tmp_path,
                                                                          monkeypatch):
    installed = checkout.parent / ".venv" / "lib" / "site-packages" / "ablation"
    installed.mkdir(parents=True)  # installed into a virtual environment in the user's project
    assert checkout_version(installed, "0.1.0") == "0.1.0"
    loose = tmp_path / "wheel" / "ablation"
    loose.mkdir(parents=True)
    assert checkout_version(loose, "0.1.0") == "0.1.0"
    monkeypatch.setenv("PATH", str(tmp_path / "no-git-here"))  # a machine without git
    assert checkout_version(checkout, "0.1.0") == "0.1.0"


def test_version_option_and_trained_versions_name_the_same_version(capsys):
    from ablation.train import trained_versions

    with pytest.raises(SystemExit) as stopped:
        cli.build_parser().parse_args(["--version"])
    assert stopped.value.code == 0
    assert capsys.readouterr().out == f"ablate {ablate_version()}\n"
    assert ablate_version().startswith(ablation.__version__)
    assert trained_versions()["ablate"] == ablate_version()


def test_the_package_and_its_distribution_give_one_release_number():
    """The release is written twice, in pyproject.toml (what pip records) and in
    ablation.__version__ (what `ablate --version`, results.csv and the report print): a bump of
    one alone would name trials by a release the installed package is not."""
    import tomllib

    project = tomllib.loads((Path(ablation.__file__).parents[1] / "pyproject.toml")
                            .read_text(encoding="utf-8"))["project"]
    assert project["version"] == ablation.__version__
