"""What `pip install ablate` (the wheel, no extras) brings: the project's declared dependencies
against what the package needs to run its defaults. Fast: reads pyproject.toml, installs nothing."""

from __future__ import annotations

import tomllib
from pathlib import Path

from packaging.requirements import Requirement

from ablation.config import TrackingSpec

ROOT = Path(__file__).resolve().parents[1]


def core_requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return [Requirement(text) for text in project["dependencies"]]


def test_the_default_tracking_mode_is_installed_without_extras():
    """SwanLab's mode "local" (the default, and `ablate init`'s) records its runs in the database
    of the `swanboard` package, `swanlab[dashboard]`: installed with plain `swanlab`, every run
    went to files only, without a word, and `ablate dashboard` then said there were no runs."""
    default = TrackingSpec()
    assert (default.backend, default.mode) == ("swanlab", "local")
    swanlab = [req for req in core_requirements() if req.name == "swanlab"]
    assert swanlab and all("dashboard" in req.extras for req in swanlab), swanlab


def test_mode_local_without_its_database_package_is_refused_before_training(
        write_experiment, monkeypatch, capsys):
    """Installed without swanboard (`pip install --no-deps`, an environment of its own), mode
    "local" ran every trial and logged them to files that no dashboard shows; `ablate dashboard`
    then said 'no SwanLab runs yet: run the study first'. Now validate, run and worker refuse it
    first, and the dashboard says what is missing."""
    from ablation import cli, tracking

    monkeypatch.setattr(tracking, "local_store_installed", lambda: False)
    path = write_experiment(tracking='backend = "swanlab"\nmode = "local"')
    for command in (["validate", str(path)], ["run", str(path)], ["worker", str(path)],
                    ["dashboard", str(path), "--no-browser"]):
        assert cli.main(command) == 2, command
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "swanboard" in err[0] and "swanlab[dashboard]" in err[0], (command, err)
        if command[0] != "dashboard":
            assert err[0].startswith(f"ablate: error: {path}: [tracking] mode = \"local\""), err
    assert not (path.parent / "reports" / "tiny" / "trials").exists()
    # mode offline needs no database: it is not refused for it
    assert cli.main(["run", str(path), "--dry-run", "--set", 'tracking.mode="offline"']) == 0


# Imported only to reach into swanboard (tracking.py), which swanlab[dashboard] brings.
PROVIDED_BY = {"swanboard": "swanlab", "peewee": "swanlab"}


def imported_modules() -> set[str]:
    """The top-level names of every `import` in the package, at any depth (most are inside
    functions, so that `ablate --help` imports nothing heavy)."""
    import ast

    names = set()
    for path in (ROOT / "ablation").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names


def test_every_package_ablation_imports_is_a_declared_dependency():
    """A module the package imports that comes only with another dependency's dependencies
    (numpy, huggingface_hub, accelerate, sqlalchemy...) breaks the day that dependency drops it,
    and one that comes only with the dev extra (pytest) breaks `pip install ablate` at once."""
    import importlib.metadata
    import sys

    from packaging.utils import canonicalize_name

    declared = {canonicalize_name(req.name) for req in core_requirements()}
    distributions = importlib.metadata.packages_distributions()
    missing = {}
    for module in sorted(imported_modules() - set(sys.stdlib_module_names) - {"ablation"}):
        provided = PROVIDED_BY.get(module)
        names = [provided] if provided else distributions.get(module, [module])
        if not any(canonicalize_name(name) in declared for name in names):
            missing[module] = names
    assert not missing, f"imported by ablation/ but not in pyproject's dependencies: {missing}"


def test_the_wheel_holds_every_package_file_its_type_marker_its_license_and_the_command(tmp_path):
    """What `pip install ablate` puts in site-packages, built (no network, no new environment) from
    a copy of the project, so that the checkout gets no build/ folder. The package's type hints
    reach a user's type checker only with `py.typed` (PEP 561): without it mypy skipped `from
    ablation import run_study` as 'missing library stubs or py.typed marker'. The license the
    project declares (Apache-2.0) asks that its text go with every copy: it had no LICENSE file."""
    import shutil
    import subprocess
    import sys
    import zipfile

    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "ablation", source / "ablation",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    # --no-build-isolation: the build backend of this environment (setuptools>=77, which torch
    # 2.13 requires too), rather than one fetched from an index
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-build-isolation", "--no-deps",
                            "--no-index", "-q", "-w", str(tmp_path / "dist"), str(source)],
                           timeout=300, capture_output=True, text=True)
    assert built.returncode == 0, built.stderr[-3000:]
    [wheel] = (tmp_path / "dist").glob("ablate-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points = next(archive.read(n).decode() for n in names if n.endswith("entry_points.txt"))
        metadata = next(archive.read(n).decode() for n in names if n.endswith(".dist-info/METADATA"))
        licenses = [archive.read(n).decode() for n in names if ".dist-info/licenses/" in n]
    package = {path.relative_to(source).as_posix() for path in (source / "ablation").rglob("*")
               if path.is_file()}
    assert "ablation/py.typed" in package
    assert package <= names, sorted(package - names)
    assert "ablate = ablation.cli:entry_point" in entry_points
    assert "License-Expression: Apache-2.0" in metadata and "License-File: LICENSE" in metadata
    assert len(licenses) == 1 and "Apache License" in licenses[0] and "Version 2.0" in licenses[0]
