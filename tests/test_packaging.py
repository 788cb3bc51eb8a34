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
