"""Trial throughput against the number of worker processes, with short trials on a tiny BERT.

    python benchmarks/workers_throughput.py [--trials 16] [--workers 1 2 4] [--storage sqlite|postgres]

Each measurement is a fresh study of N trials of 30 optimizer steps; the figure is completed
trials per minute of wall time for `ablate run --workers W` (W = 1 trains in the ablate process).
Prints a markdown table; paste it, with the machine, into benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from conftest import FILLER, WORDS, make_texts  # noqa: E402  (the tests' tiny data and vocab)


def tiny_model(folder: Path) -> None:
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *FILLER]
    vocab += [w for words in WORDS.values() for w in words]
    BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)}).save_pretrained(folder)
    BertForSequenceClassification(BertConfig(
        vocab_size=len(vocab), hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=128, max_position_embeddings=64, num_labels=3)).save_pretrained(folder)


def study_file(root: Path, trials: int, workers: int, storage: str) -> Path:
    seeds = list(range(trials))
    path = root / f"w{workers}.toml"
    path.write_text(textwrap.dedent(f"""\
        [experiment]
        name = "throughput_w{workers}_{int(time.time())}"
        seeds = {seeds}
        output_dir = "{root / f'w{workers}'}"
        {f'storage = "{storage}"' if storage else ''}
        [data]
        dataset = "{root / 'data'}"
        [model]
        name = "{root / 'model'}"
        [tracking]
        backend = "none"
        [baseline]
        learning_rate = 1e-3
        batch_size = 16
        max_steps = 30
        eval_steps = 15
        """), encoding="utf-8")
    return path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--storage", choices=("sqlite", "postgres"), default="sqlite")
    args = parser.parse_args()
    storage = ""
    if args.storage == "postgres":
        storage = os.environ["ABLATE_TEST_POSTGRES"]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "data").mkdir()
        make_texts(400, 1).to_csv(root / "data" / "train.csv", index=False)
        make_texts(100, 2).to_csv(root / "data" / "test.csv", index=False)
        tiny_model(root / "model")
        for workers in args.workers:
            path = study_file(root, args.trials, workers, storage)
            started = time.perf_counter()
            subprocess.run([sys.executable, "-m", "ablation", "run", str(path),
                            "--workers", str(workers)], check=True, capture_output=True)
            elapsed = time.perf_counter() - started
            rows.append((workers, elapsed, args.trials / elapsed * 60))
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs; storage: {args.storage}; "
          f"{args.trials} trials of 30 steps")
    print("| workers | wall time (s) | trials / minute |\n|---|---|---|")
    for workers, elapsed, rate in rows:
        print(f"| {workers} | {elapsed:.1f} | {rate:.1f} |")


if __name__ == "__main__":
    main()
