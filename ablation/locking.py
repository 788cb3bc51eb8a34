"""Lock files: processes on one machine (or a shared file system) take turns at a step that
their shared store does not make safe by itself."""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO


@contextlib.contextmanager
def file_lock(path: Path, on_wait: Callable[[], None] | None = None) -> Iterator[IO[str]]:
    """Hold an exclusive fcntl lock on `path` (created if missing); `on_wait` is called once
    when another process holds it, before waiting. Yields the file, opened for appending, for
    a holder that says in it who holds the lock."""
    with path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait is not None:
                on_wait()
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield handle
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def held_by_another(handle: IO[str]) -> bool:
    """Whether another open of the file (another process) holds `file_lock` on it now; asks
    without waiting, by taking a shared lock for an instant."""
    try:
        fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    fcntl.flock(handle, fcntl.LOCK_UN)
    return False
