"""Experiment trackers: a small contract, a registry, and the SwanLab and "none" backends.

One tracker run per trial: ``start`` → ``log``… → ``finish``. The sweep always calls ``finish``
(also when the trial fails), because SwanLab's own transformers callbacks never do, and an unfinished
run makes the next trial's points collide with it.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from .config import TrackingSpec

log = logging.getLogger(__name__)


class Tracker(Protocol):
    def start(self, name: str, group: str, config: dict[str, Any]) -> None: ...

    def log(self, metrics: dict[str, float], step: int) -> None: ...

    def finish(self, error: str | None = None) -> None: ...


class NullTracker:
    """`backend = "none"`: tracking off."""

    def start(self, name: str, group: str, config: dict[str, Any]) -> None:
        pass

    def log(self, metrics: dict[str, float], step: int) -> None:
        pass

    def finish(self, error: str | None = None) -> None:
        pass


class SwanLabTracker:
    """One SwanLab run per trial, written under ``<output_dir>/swanlog`` unless mode is online."""

    def __init__(self, spec: TrackingSpec, output_dir: Path) -> None:
        self.project = spec.project
        self.mode = spec.mode  # always explicit: SwanLab's own default is online
        self.log_dir = output_dir / "swanlog"
        self._run: Any = None
        self._warned: set[str] = set()

    def start(self, name: str, group: str, config: dict[str, Any]) -> None:
        """Start the run; a tracker that cannot start (online without a key, unwritable folder)
        falls back to offline, then to no tracking, with one warning: the trial still runs."""
        modes = [self.mode] + (["offline"] if self.mode not in ("offline", "disabled") else [])
        for mode in modes:
            try:
                self._run = self._init(name, group, config, mode)
            except Exception as err:
                reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
                if mode == modes[-1]:
                    self._warn_once(f"SwanLab could not start ({reason}); this study runs without "
                                    "tracking")
                    self.mode = "disabled"
                    self._run = None
                    return
                self._warn_once(f"SwanLab mode {mode!r} could not start ({reason}); logging "
                                f"offline under {self.log_dir} instead (sync later with `swanlab "
                                "sync`)")
                self.mode = "offline"
                continue
            return

    def _init(self, name: str, group: str, config: dict[str, Any], mode: str) -> Any:
        import swanlab

        if mode == "disabled":
            return None
        self.log_dir.mkdir(parents=True, exist_ok=True)
        settings = swanlab.Settings(
            probe=swanlab.Settings.Probe(monitor=False, requirements=False, git=False))
        return swanlab.init(
            project=self.project, name=name, group=group, config=config, mode=mode,
            log_dir=str(self.log_dir), reinit=True, settings=settings)

    def _warn_once(self, message: str) -> None:
        if message not in self._warned:
            self._warned.add(message)
            log.warning(message)

    def log(self, metrics: dict[str, float], step: int) -> None:
        if self._run is not None and metrics:
            self._run.log(metrics, step=step)

    def finish(self, error: str | None = None) -> None:
        if self._run is None:
            return
        run, self._run = self._run, None
        if error is None:
            run.finish(state="success")
        else:
            run.finish(state="crashed", error=error)
        del run
        gc.collect()  # SwanLab's local database connections close only when collected


TRACKERS: dict[str, Callable[[TrackingSpec, Path], Tracker]] = {
    "swanlab": SwanLabTracker,
    "none": lambda spec, output_dir: NullTracker(),
}


def make_tracker(spec: TrackingSpec, output_dir: Path) -> Tracker:
    return TRACKERS[spec.backend](spec, output_dir)


def tracker_keys(logs: dict[str, Any]) -> dict[str, float]:
    """Trainer log keys → dashboard keys grouped by panel: train/loss, eval/macro_f1, test/…"""
    out: dict[str, float] = {}
    for key, value in logs.items():
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            continue
        for prefix in ("eval_", "test_"):
            if key.startswith(prefix):
                out[f"{prefix[:-1]}/{key[len(prefix):]}"] = float(value)
                break
        else:
            out[f"train/{key}"] = float(value)
    return out
