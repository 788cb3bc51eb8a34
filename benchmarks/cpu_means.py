"""The remaining CPU means of issue 5, each against ablate's setting on the same data: larger
evaluation batches, thread count, DataLoader worker processes, and `torch.compile`.

    source ../shared/offline-hf.sh
    python benchmarks/cpu_means.py [--layers 2] [--repeats 3]

MiniLM cut to `--layers` layers; evaluation is `Trainer.predict` over the 3,534 test tweets sorted
by length (as ablate evaluates); training is 64 steps of batch 16 on 1,024 tweets with random
batches. Runs alternate (A, B, A, B, ...) so that load on a shared machine hits both sides alike;
the median of each side is reported. `torch.compile` runs once (its first steps include the
compilation, which every trial would pay again in a fresh model).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--train-samples", type=int, default=1024)
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile run")
    args = parser.parse_args()

    import torch
    from _tweets import MODEL, tweets  # benchmarks/, this script's folder
    from transformers import (
        AutoModelForSequenceClassification,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
    )

    from ablation.data import sorted_by_length

    name = MODEL
    tokenizer, test, train = tweets(args.train_samples)
    test, _ = sorted_by_length(test)
    out = tempfile.mkdtemp()
    threads = torch.get_num_threads()

    def model() -> torch.nn.Module:
        return AutoModelForSequenceClassification.from_pretrained(name, num_labels=3,
                                                                  num_hidden_layers=args.layers)

    shared = model()

    def trainer(eval_batch: int = 64, workers: int = 0, compile_: bool = False,
                net: torch.nn.Module | None = None) -> Trainer:
        return Trainer(model=net or shared, data_collator=DataCollatorWithPadding(tokenizer),
                       train_dataset=train, args=TrainingArguments(
                           output_dir=out, per_device_eval_batch_size=eval_batch,
                           per_device_train_batch_size=16, max_steps=args.train_samples // 16,
                           report_to="none", disable_tqdm=True, save_strategy="no", use_cpu=True,
                           dataloader_num_workers=workers, torch_compile=compile_))

    def with_threads(n: int, run: Callable[[], object]) -> Callable[[], object]:
        def wrapped() -> object:
            torch.set_num_threads(n)
            try:
                return run()
            finally:
                torch.set_num_threads(threads)
        return wrapped

    pairs: list[tuple[str, Callable[[], object], str, Callable[[], object]]] = [
        ("eval, batch 64 (ablate's default)", lambda: trainer(64).predict(test),
         "eval, batch 256", lambda: trainer(256).predict(test)),
        (f"train, {threads} threads (torch's default here)", lambda: trainer().train(),
         "train, 1 thread", with_threads(1, lambda: trainer().train())),
        ("train, DataLoader in the process (ablate)", lambda: trainer().train(),
         "train, 1 DataLoader worker process", lambda: trainer(workers=1).train()),
    ]
    print(f"{threads} threads; test set {len(test)} tweets; model {args.layers} layers; "
          f"{args.train_samples // 16} training steps of batch 16")
    times: dict[str, list[float]] = {}
    for label_a, run_a, label_b, run_b in pairs:
        for _ in range(args.repeats):
            for label, run in ((label_a, run_a), (label_b, run_b)):
                start = time.perf_counter()
                run()
                times.setdefault(label, []).append(time.perf_counter() - start)
    if not args.no_compile:
        label = "train, torch.compile (a fresh model: compilation included)"
        start = time.perf_counter()
        try:
            trainer(compile_=True, net=model()).train()
            times[label] = [time.perf_counter() - start]
        except Exception as err:  # report, do not hide: compile support varies by platform
            print(f"torch.compile failed after {time.perf_counter() - start:.0f} s: "
                  f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}")
    print("| run | median s | runs |\n|---|---|---|")
    for label, values in times.items():
        print(f"| {label} | {statistics.median(values):.2f} | {', '.join(f'{v:.2f}' for v in values)} |")


if __name__ == "__main__":
    main()
