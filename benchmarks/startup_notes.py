"""What the data notes added to every study's start cost: the unknown-token share of a tokenizer
(preflight, once per model), the share of training texts a max_length truncates (preflight, once
per model and max_length) and the train/validation/test overlap count (once per data load).

Usage: python benchmarks/startup_notes.py [FILE] [--repeats R]   (default FILE: the demo study;
offline, `source ../shared/offline-hf.sh` first)
"""

from __future__ import annotations

import argparse
import statistics
import time

from ablation.config import load_spec
from ablation.data import count_cut, load_study_splits, unknown_token_share
from ablation.data._splits import _overlap_notes
from ablation.errors import AblateInputError


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", nargs="?", default="experiments/bs_lr.toml")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error(f"--repeats {args.repeats}: give 1 or more")
    from transformers import AutoTokenizer

    try:
        spec = load_spec(args.file)
        splits = load_study_splits(spec)
    except AblateInputError as err:
        parser.error(str(err))
    tokenizer = AutoTokenizer.from_pretrained(spec.model.name)
    others = [("validation", splits.validation), ("test", splits.test)]
    length = spec.baseline.max_length
    for name, call in (("unknown-token share", lambda: unknown_token_share(splits, tokenizer)),
                       (f"truncated share at max_length {length}",
                        lambda: count_cut(splits, tokenizer, length)),
                       ("overlap notes", lambda: _overlap_notes(splits.train, others))):
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            call()
            times.append(time.perf_counter() - start)
        print(f"{name}: median {statistics.median(times) * 1000:.0f} ms over {args.repeats} "
              f"(train {len(splits.train)} rows; {', '.join(f'{t * 1000:.0f}' for t in times)} ms)")


if __name__ == "__main__":
    main()
