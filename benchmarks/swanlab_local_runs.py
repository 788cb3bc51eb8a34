"""What starting a trial's SwanLab run (mode = "local") costs as the study's runs pile up in one
local store (`<output_dir>/swanlog/runs.swanlab`).

Usage: python benchmarks/swanlab_local_runs.py [--runs 200] [--keys 12] [--swanboard-check]

Each run is ablate's own SwanLabTracker: start, one point of `--keys` metrics (each a tag of the
run, as a trial's train/, eval/, validation/ and test/ keys are), finish. Printed per block of
runs: the mean wall and CPU seconds (this process, all its threads: CPU time varies less than wall
time on a shared machine) of `start` alone, and of the whole run. `--swanboard-check` puts back
swanboard's own check of the tag table at each start (it reads every tag of every run): the cost
before ablate replaced it.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from ablation.config import TrackingSpec
from ablation.tracking import SwanLabTracker, _quick_tag_column_check


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--keys", type=int, default=12)
    parser.add_argument("--block", type=int, default=25)
    parser.add_argument("--swanboard-check", action="store_true")
    args = parser.parse_args()
    if args.swanboard_check:
        from swanboard.db import Tag
        from swanboard.db.model import SwanModel

        _quick_tag_column_check()  # marks it done, so that ablate leaves what follows alone
        Tag.field_exists = classmethod(SwanModel.field_exists.__func__)
    with tempfile.TemporaryDirectory() as folder:
        tracker = SwanLabTracker(TrackingSpec(backend="swanlab", mode="local"), Path(folder))
        rows: list[tuple[float, float, float, float]] = []
        for run in range(1, args.runs + 1):
            wall, cpu = time.perf_counter(), time.process_time()
            tracker.start(f"trial-{run}", "bench", {"run": run})
            started = (time.perf_counter() - wall, time.process_time() - cpu)
            tracker.log({f"train/k{k}": float(k) for k in range(args.keys)}, step=1)
            tracker.finish()
            rows.append((*started, time.perf_counter() - wall, time.process_time() - cpu))
            if run % args.block == 0:
                block = rows[-args.block:]
                means = [statistics.mean(r[i] for r in block) for i in range(4)]
                print(f"runs {run - args.block + 1:>4}-{run:<4}  start: wall {means[0]:.3f} s, "
                      f"cpu {means[1]:.3f} s   whole run: wall {means[2]:.3f} s, "
                      f"cpu {means[3]:.3f} s", flush=True)


if __name__ == "__main__":
    main()
