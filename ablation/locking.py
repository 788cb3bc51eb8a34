"""Lock files and whole-file writes: processes on one machine (or a shared file system) take
turns at a step that their shared store does not make safe by itself, and never see half of a
file another is writing."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from .errors import AblateInputError

try:
    import fcntl
except ImportError:  # Windows: ablate's processes cannot take turns there (see cli.main)
    raise ImportError("ablate runs on Linux and macOS, not on Windows: its processes take turns "
                      "through fcntl's file locks, which Windows lacks; run it under WSL 2 (the "
                      "Windows Subsystem for Linux)") from None


# What flock answers on a file system that keeps no locks (an NFS share mounted with nolock, some
# FUSE mounts): ablate's processes could not take turns there.
NO_LOCKS = frozenset({errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS})


def _flock(handle: IO[str], operation: int) -> None:
    """fcntl.flock, a file system without locks refused in one line (bad input: the folder the
    experiment puts its files in) rather than a traceback."""
    try:
        fcntl.flock(handle, operation)
    except OSError as err:
        if err.errno not in NO_LOCKS:
            raise
        raise AblateInputError(
            f"{handle.name}: its file system takes no file locks ({err.strerror}), which ablate's "
            "processes take turns by: give output_dir (and a sqlite:/// or journal:/// storage) a "
            "folder on a file system that does (a local disk, or NFS mounted with locking)"
        ) from None


@contextlib.contextmanager
def file_lock(path: Path, on_wait: Callable[[], None] | None = None) -> Iterator[IO[str]]:
    """Hold an exclusive fcntl lock on `path` (created if missing); `on_wait` is called once
    when another process holds it, before waiting. Yields the file, opened for appending, for
    a holder that says in it who holds the lock. A holder may remove the file (a refused run
    leaves nothing): a process that waited then locks the file at the path, made again, not the
    removed one, which a newcomer would not see locked."""
    waited = False
    while True:
        with path.open("a") as handle:
            try:
                _flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if on_wait is not None and not waited:
                    on_wait()
                waited = True
                _flock(handle, fcntl.LOCK_EX)
            if _is_at(handle, path):
                try:
                    yield handle
                finally:
                    _flock(handle, fcntl.LOCK_UN)
                return
            _flock(handle, fcntl.LOCK_UN)
        path.parent.mkdir(parents=True, exist_ok=True)  # removed with its folder


def _is_at(handle: IO[str], path: Path) -> bool:
    """Whether the open file `handle` is still the file at `path` (not removed or replaced)."""
    try:
        now = path.stat()
    except OSError:
        return False
    opened = os.fstat(handle.fileno())
    return (opened.st_dev, opened.st_ino) == (now.st_dev, now.st_ino)


def held_by_another(handle: IO[str]) -> bool:
    """Whether another open of the file (another process) holds `file_lock` on it now; asks
    without waiting, by taking a shared lock for an instant."""
    try:
        _flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    _flock(handle, fcntl.LOCK_UN)
    return False


@contextlib.contextmanager
def written_beside(path: Path, own_folder: bool = False) -> Iterator[Path]:
    """A file of this writer's own beside `path` to write into, put in place when the block ends:
    a reader sees the previous file or the whole new one, and a failed write leaves no file beside.
    Its own because two runs of one study ending together each write the report: one shared name
    let the first to finish move the other's file away. `own_folder`: the file is in a folder of
    its own beside `path`, for a library that writes temporary files of its own beside the file
    it is given (datasets' map), removed with it.

    The writer holds a lock on its file beside until it is in place; a process killed before that
    (kill -9) leaves the file unlocked, and the next whole write of `path` removes it (files
    beside of the names this gives only, never a live writer's)."""
    partial, handle = _own_partial(path)
    target = _folder_of(partial) / path.name if own_folder else partial
    try:
        if own_folder:
            target.parent.mkdir()
        yield target
        target.replace(path)
    finally:
        if own_folder:
            shutil.rmtree(target.parent, ignore_errors=True)
        with contextlib.suppress(OSError):
            partial.unlink(missing_ok=True)
        handle.close()
    _clear_left_beside(path)


def _folder_of(partial: Path) -> Path:
    return partial.with_name(partial.name + ".d")


def _own_partial(path: Path) -> tuple[Path, IO[str]]:
    """A new file beside `path`, made and locked by this writer (see `_clear_left_beside`)."""
    while True:
        partial = path.with_name(f".{path.name}.{secrets.token_hex(4)}.partial")
        try:
            handle = partial.open("x")
        except FileExistsError:
            continue
        _flock(handle, fcntl.LOCK_EX)
        if _is_at(handle, partial):
            return partial, handle
        handle.close()  # a clearing write took it for a killed writer's before it was locked


def _clear_left_beside(path: Path) -> None:
    """Remove the files beside `path` that writers killed before they put theirs in place left:
    those `written_beside` names, that no live writer holds locked."""
    left = re.compile(rf"\.{re.escape(path.name)}\.[0-9a-f]{{8}}\.partial")
    with contextlib.suppress(OSError):
        for candidate in path.parent.iterdir():
            if not left.fullmatch(candidate.name):
                continue
            try:  # opened for writing: a lock on NFS needs it; never created here
                fd = os.open(candidate, os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW)
            except OSError:
                continue
            with os.fdopen(fd, "a") as handle:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:  # a live writer's
                    continue
                if _is_at(handle, candidate):  # its folder first: none is left without it
                    shutil.rmtree(_folder_of(candidate), ignore_errors=True)
                    with contextlib.suppress(OSError):
                        candidate.unlink()
