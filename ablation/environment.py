"""The user's environment variables that would decide what a recipe decides, left out for a while.

A trial trains as its recipe says, not as variables meant for another tool say (ACCELERATE_*
trained every trial in bf16; SWANLAB_RUN_ID gave every trial one run): those variables are out of
the environment while the trial trains or its run starts, and the user's again after it, so that a
Python caller's process keeps its own.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator


@contextlib.contextmanager
def variables_left_out(is_left_out: Callable[[str], bool]) -> Iterator[dict[str, str]]:
    """The variables `is_left_out` names out of `os.environ` inside the block (yielded, by name),
    the user's values again after it; one a library set meanwhile goes too."""
    saved = {name: os.environ.pop(name) for name in list(os.environ) if is_left_out(name)}
    try:
        yield saved
    finally:
        for name in [name for name in os.environ if is_left_out(name)]:
            del os.environ[name]
        os.environ.update(saved)
