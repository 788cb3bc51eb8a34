"""Which ablate trained a trial: the release, and where it runs from a git checkout (as `make
demo` sets it up), the commit. The release number stays the same from one commit to the next, so a
study trained over days from a clone that was pulled or edited in between could not tell its
trials' code apart by it."""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path

GIT_TIMEOUT_S = 5.0


@functools.cache
def ablate_version() -> str:
    """`0.1.0`, or `0.1.0+g<commit>` running from a git checkout of ablate (`.dirty` added where
    the package's own files differ from that commit): PEP 440's local version, which pip and
    packaging read."""
    from . import __version__

    return checkout_version(Path(__file__).resolve().parent, __version__)


def checkout_version(package: Path, release: str) -> str:
    """`release`, with the commit of the git checkout whose top folder holds `package`. A package
    installed from a wheel, a machine without git, or a package that lies inside some other
    repository (a virtual environment in the user's own project) is the release alone."""
    try:
        top = _git(package, "rev-parse", "--show-toplevel")
        if (Path(top) / package.name).resolve() != package.resolve():
            return release
        commit = _git(package, "rev-parse", "--short=12", "HEAD")
        dirty = _git(package, "status", "--porcelain", "--untracked-files=no", "--", ".")
    except (OSError, subprocess.SubprocessError):
        return release
    return f"{release}+g{commit}{'.dirty' if dirty else ''}"


def _git(where: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(where), *args], capture_output=True, text=True,
                          timeout=GIT_TIMEOUT_S, check=True)
    return done.stdout.strip()
