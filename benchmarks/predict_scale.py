"""`ablate predict` and `ablate evaluate` on large inputs: peak memory, time to the first row, and
the inference path's cost against a hand-written loop.

    python benchmarks/predict_scale.py --work /tmp/predict-scale --rows 200000 --parts cli,paths
    python benchmarks/predict_scale.py --work /tmp/predict-scale --model path/to/model_folder ...

`cli` runs the command line as a user would (a fresh process per command; output to a pipe read
here): wall time, seconds until the first output byte, peak RSS (the child's own, from wait4).
`paths` times, in one process on one thread (CPU seconds, the least disturbed by other load on
a shared machine; best of --reps), a plain loop in input order and sorted by length, ablate's
class_logits with every text in one chunk and in its default chunks, and predict's rows as
JSON lines. Without --model, a tiny random 2-layer BERT (hidden 32, as tests/conftest.py builds
it) is written to --work: there the tokenizer and ablate's own code are most of the cost.
Texts: 1 % of 1,000–1,600 words (up to ~9,000 characters, cut at max_length 128), 1 % of a
single word, the rest 3–30 words.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]  # this checkout's ablation, the tests' vocabulary
from conftest import FILLER, WORDS  # noqa: E402  the tests' tiny vocabulary

LABELS = ["negative", "neutral", "positive"]


def tiny_model(folder: Path) -> Path:
    """A random 2-layer BERT with ablate.json (max_length 128), as a study's best_model/ looks."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    if (folder / "ablate.json").is_file():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *FILLER, *(w for ws in WORDS.values() for w in ws)]
    BertTokenizerFast(vocab={word: i for i, word in enumerate(vocab)}).save_pretrained(folder)
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64, num_labels=3,
                        id2label=dict(enumerate(LABELS)), label2id={n: i for i, n in enumerate(LABELS)})
    torch.manual_seed(0)
    BertForSequenceClassification(config).save_pretrained(folder)
    (folder / "ablate.json").write_text(json.dumps({"trial": "baseline-s42", "max_length": 128,
                                                    "text_pair_column": None, "precision": "fp32"}))
    return folder


def write_texts(work: Path, rows: int) -> tuple[Path, Path]:
    """texts.txt (one a line) and data.csv (text,label) of the same texts."""
    import csv

    texts_file, csv_file = work / f"texts{rows}.txt", work / f"data{rows}.csv"
    if texts_file.is_file() and csv_file.is_file():
        return texts_file, csv_file
    rng, words = random.Random(0), [*FILLER, *(w for ws in WORDS.values() for w in ws)]
    texts = []
    for i in range(rows):
        draw = rng.random()
        count = rng.randint(1000, 1600) if draw < 0.01 else 1 if draw < 0.02 else rng.randint(3, 30)
        texts.append(rng.choice(words) if count == 1 else f"{i} " + " ".join(rng.choices(words, k=count)))
    texts_file.write_text("\n".join(texts) + "\n", encoding="utf-8")
    with csv_file.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        writer.writerows([text, rng.choice(LABELS)] for text in texts)
    return texts_file, csv_file


def run_cli(args: list[str], checkout: Path) -> dict[str, float]:
    """One `python -m ablation ...` process of `checkout`'s sources: wall s, first output byte s,
    peak RSS MiB, lines."""
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "ablation", *args], stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": str(checkout)})
    first, lines = None, 0
    while chunk := process.stdout.read1(1 << 16):
        first = first or time.perf_counter() - started
        lines += chunk.count(b"\n")
    _, status, usage = os.wait4(process.pid, 0)
    return {"exit": os.waitstatus_to_exitcode(status), "wall_s": round(time.perf_counter() - started, 1),
            "first_byte_s": round(first or 0.0, 1), "peak_rss_mib": round(usage.ru_maxrss / 1024),
            "lines": lines}


def paths(model_dir: Path, texts_file: Path, rows: int, reps: int) -> dict[str, float]:
    """CPU seconds (best of reps, one thread) of each way to the logits of the same texts."""
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    import numpy as np
    import torch

    from ablation import inference

    torch.set_num_threads(1)
    texts = [t for t in texts_file.read_text(encoding="utf-8").split("\n") if t.strip()][:rows]
    tokenizer, model, _ = inference.load_classifier(model_dir)
    max_length = inference.max_length_of(model_dir, tokenizer, model)

    def plain(order: list[int]) -> np.ndarray:
        out: list = [None] * len(texts)
        with torch.inference_mode():
            for start in range(0, len(order), 64):
                rows_ = order[start:start + 64]
                batch = tokenizer([texts[i] for i in rows_], padding=True, truncation=True,
                                  max_length=max_length, return_tensors="pt")
                for i, logits in zip(rows_, model(**batch).logits.numpy(), strict=True):
                    out[i] = logits
        return np.stack(out)

    def chunked(chunk_batches: int):
        def run() -> np.ndarray:
            default, inference._model.CHUNK_BATCHES = inference._model.CHUNK_BATCHES, chunk_batches
            try:
                return inference.class_logits(model, tokenizer, texts, max_length=max_length)
            finally:
                inference._model.CHUNK_BATCHES = default
        return run

    def json_lines() -> int:
        return sum(len("\n".join(json.dumps(r, ensure_ascii=False) for r in rows_))
                   for rows_ in inference.prediction_chunks(model_dir, texts))

    ways = {"plain loop, input order, batch 64": lambda: plain(list(range(len(texts)))),
            "plain loop, sorted by characters, batch 64":
                lambda: plain(sorted(range(len(texts)), key=lambda i: len(texts[i]))),
            "class_logits, every text in one chunk": chunked(10**9),
            f"class_logits, chunks of {inference.CHUNK_BATCHES} batches (default)":
                chunked(inference.CHUNK_BATCHES),
            "prediction_chunks: rows as JSON lines (model load included)": json_lines}
    best: dict[str, float] = {}
    for _ in range(reps):
        for name, way in ways.items():
            started = time.process_time()
            way()
            best[name] = min(best.get(name, float("inf")), time.process_time() - started)
    return {name: round(seconds, 2) for name, seconds in best.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, required=True, help="folder for the model and texts")
    parser.add_argument("--model", type=Path, help="a model folder (default: a tiny random BERT)")
    parser.add_argument("--rows", type=int, default=200_000, help="texts for the cli part")
    parser.add_argument("--path-rows", type=int, default=20_000, help="texts for the paths part")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--parts", default="cli,paths")
    parser.add_argument("--checkout", type=Path, default=ROOT,
                        help="the cli part runs this checkout's ablation (another commit: before/after)")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    model_dir = args.model or tiny_model(args.work / "best_model")
    texts_file, csv_file = write_texts(args.work, args.rows)
    results: dict = {"rows": args.rows, "model": str(model_dir)}
    if "cli" in args.parts:
        model, texts, data = str(model_dir), str(texts_file), str(csv_file)
        for name, command in (("predict --file --json", ["predict", model, "--file", texts, "--json"]),
                              ("predict --file (table)", ["predict", model, "--file", texts]),
                              ("evaluate --dataset csv", ["evaluate", model, "--dataset", data])):
            results[name] = run_cli(command, args.checkout)
    if "paths" in args.parts:
        results["paths_cpu_s"] = paths(model_dir, texts_file, args.path_rows, args.reps)
        results["path_rows"] = args.path_rows
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
