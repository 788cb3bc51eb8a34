"""`python -m ablation` is the `ablate` command (worker processes are started this way)."""

from .cli import entry_point

entry_point()
