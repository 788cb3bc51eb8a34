"""The one error type for bad user input, the exit codes every command shares, and the flag that
keeps a failed trial's traceback off the terminal."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

EXIT_OK = 0
EXIT_TRIALS_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: the program reading the output stopped (`| head`)
# A log record flagged so goes to trial.log, not to the terminal. Here, not in sweep, so that the
# CLI's console filter does not import the study's machinery (optuna) for every command.
TRIAL_LOG_ONLY = "trial_log_only"


class AblateInputError(Exception):
    """Bad input (experiment file, data, command line).

    The CLI prints ``str(error)`` as a single line and exits with code 2, so the message
    must name the file, key or row at fault and say what is allowed.
    """

    def _render_traceback_(self) -> list[str]:
        """What IPython (a Jupyter cell) shows of it uncaught: that line, not a traceback through
        ablate's code."""
        return [f"{type(self).__name__}: {self}"]


def first_line(err: BaseException) -> str:
    """An exception's first line (or its type's name): what one error line can quote of it."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def as_typed(text: str) -> str:
    """A command-line argument as a UTF-8 terminal typed it: a locale that names files in ASCII
    (LC_ALL=C with PYTHONUTF8=0) reads each byte past ASCII as a lone surrogate (U+DC00 + byte);
    where those bytes are UTF-8, the text they are. Otherwise (Latin-1 bytes) as it is: its user
    refuses it. Not for paths, which such a locale opens by the surrogates."""
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8")
    except UnicodeError:
        return text


def escaped_byte(text: str) -> str | None:
    """`byte 0xe9` for the first byte of `text` that was not UTF-8 where it was read (Python keeps
    such a byte b of an argument or a file name as the lone surrogate U+DC00 + b), else None."""
    odd = re.search("[\udc80-\udcff]", text)
    return None if odd is None else f"byte {ord(odd.group()) - 0xDC00:#04x}"


def set_shown(item: str) -> str:
    """`--set 'ITEM'` as the user typed it for the shell (single quotes, a quote inside escaped):
    Python's repr doubled each backslash, so an error showed `"a\\\\b"` for `"a\\b"`."""
    return "--set '" + item.replace("'", "'\\''") + "'"


def some_of(values: list, shown: int = 5, total: int | None = None) -> str:
    """At most `shown` values, then how many there are in all (`total` when `values` holds only
    the first few): a line names a few of many classes, trials or variants, not all of them.
    Where a name holds a comma (or spaces around it), each is quoted."""
    total = len(values) if total is None else total
    # 'good, really' and 'bad' are two classes: joined bare, they read as three
    quoted = any(isinstance(v, str) and ("," in v or v != v.strip()) for v in values)
    text = ", ".join(repr(v) if quoted and isinstance(v, str) else str(v) for v in values[:shown])
    return text + (f", … ({total} in all)" if total > shown else "")


def error_chain(err: BaseException, limit: int | None = 10) -> Iterator[BaseException]:
    """`err`, then each error that led to it (its `__cause__`, else its `__context__`), at most
    `limit` in all (None: the whole chain): where libraries hide the error that says what
    happened behind their own."""
    seen: BaseException | None = err
    while seen is not None and (limit is None or limit > 0):
        yield seen
        seen = seen.__cause__ or seen.__context__
        limit = None if limit is None else limit - 1


def os_error_behind(err: BaseException) -> OSError | None:
    """The operating system's error (a full disk, a read-only file system, no permission) that
    `err` is or that led to it, else None: libraries hide it behind their own (datasets' map
    re-raises a full disk as "I/O operation on closed file")."""
    return next((seen for seen in error_chain(err)
                 if isinstance(seen, OSError) and seen.errno is not None), None)


def as_list(items: str | Iterable[str] | None) -> list[str] | None:
    """A list of names or --set items as the Python API takes it: one string is one item (a
    notebook's `only="bs32"`, not the characters of "bs32"); None stays None."""
    if items is None or isinstance(items, list):
        return items
    return [items] if isinstance(items, str) else list(items)
