"""300 short trials in one process: threads, open files and memory stay flat.

Training is a stub so that this runs in about a minute; everything around it is real: the SQLite
queue, the heartbeat thread, the per-trial log file, a SwanLab run per trial (init and finish:
with watchdog 7 each leaked an inotify instance and run 129 failed), and memory release.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from ablation import cli, train


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _open_files() -> int:
    return len(os.listdir("/proc/self/fd"))


def _file_kinds() -> dict[str, int]:
    """Open file descriptors by target, for the failure message."""
    kinds: dict[str, int] = {}
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        key = target.split("/")[-1] if "/" in target else target.split(":")[0]
        kinds[key] = kinds.get(key, 0) + 1
    return kinds


def test_300_trials_keep_threads_files_and_memory_flat(write_experiment, monkeypatch):
    path = write_experiment(variants="", tracking='backend = "swanlab"\nmode = "local"')
    samples: dict[int, tuple[int, int, float]] = {}
    calls = {"n": 0}

    def stub_train(trial, spec, data, tokenizer, trial_dir, tracker, echo=print, extra_callbacks=None):
        calls["n"] += 1
        tracker.log({"train/loss": 1.0 / calls["n"]}, step=1)
        if calls["n"] in (30, 300):
            samples[calls["n"]] = (threading.active_count(), _open_files(), _rss_mb())
        return {"validation": {"macro_f1": 0.5, "accuracy": 0.5}, "history": [],
                "eval_history": [], "runtime_s": 0.0}

    monkeypatch.setattr(train, "train_trial", stub_train)
    seeds = "[" + ", ".join(str(s) for s in range(300)) + "]"
    assert cli.main(["run", str(path), "--set", f"experiment.seeds={seeds}"]) == 0
    assert calls["n"] == 300
    threads_30, files_30, rss_30 = samples[30]
    threads_300, files_300, rss_300 = samples[300]
    assert threads_300 <= threads_30 + 1, (threads_30, threads_300)
    kinds = sorted(_file_kinds().items(), key=lambda kv: -kv[1])[:6]
    assert files_300 <= files_30 + 5, (files_30, files_300, kinds)
    assert rss_300 - rss_30 < 100, (rss_30, rss_300)  # MB, over 270 trials


def test_a_swanlab_runs_start_reads_as_much_of_the_local_store_at_its_20th_run_as_at_its_5th(
        tmp_path, monkeypatch):
    """SwanLab's local mode checked, at each run's start, that its database's tag table has the
    `folder` column by reading every tag of every run in it, each with one more query for the
    tag's run: a study of 180 trials spent more time starting its runs than training them, and
    each start took longer than the last. ablate checks the column with one row."""
    import peewee

    from ablation.config import TrackingSpec
    from ablation.tracking import SwanLabTracker

    tracker = SwanLabTracker(TrackingSpec(backend="swanlab", mode="local"), tmp_path)
    statements = {"n": 0}
    execute_sql = peewee.SqliteDatabase.execute_sql

    def counted(self, *args, **kwargs):
        statements["n"] += 1
        return execute_sql(self, *args, **kwargs)

    monkeypatch.setattr(peewee.SqliteDatabase, "execute_sql", counted)
    at_start = {}
    for run in range(1, 21):
        before = statements["n"]
        tracker.start(f"trial-{run}", "soak", {"run": run})
        at_start[run] = statements["n"] - before
        tracker.log({f"train/k{k}": float(k) for k in range(8)}, step=1)
        tracker.finish()
    assert at_start[20] <= at_start[5] + 2, (at_start[5], at_start[20])
