"""What padding costs ablate on CPU, and what the two means against it buy: evaluation sets
sorted by length (always on: predictions come back in order, so results are the same) and
length-grouped training batches (the `group_by_length` knob: faster, but batches are less random,
so it is a recipe choice to ablate, not a default).

    source ../shared/offline-hf.sh
    python benchmarks/padding.py [--layers 2] [--repeats 3]

Runs alternate (A, B, A, B, ...) so that load on a shared machine hits both sides alike; the
median of each side is reported.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--train-samples", type=int, default=1024)
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
    from ablation.train import predict_in_order

    name = MODEL
    tokenizer, test, train = tweets(args.train_samples)
    model = AutoModelForSequenceClassification.from_pretrained(name, num_labels=3,
                                                               num_hidden_layers=args.layers)
    out = tempfile.mkdtemp()

    def trainer(group: bool) -> Trainer:
        return Trainer(model=model, data_collator=DataCollatorWithPadding(tokenizer), train_dataset=train,
                       args=TrainingArguments(
                           output_dir=out, per_device_eval_batch_size=64, per_device_train_batch_size=16,
                           max_steps=args.train_samples // 16, report_to="none", disable_tqdm=True,
                           save_strategy="no", use_cpu=True,
                           train_sampling_strategy="group_by_length" if group else "random"))

    lengths = np.array([len(x) for x in test["input_ids"]])
    print(f"{torch.get_num_threads()} threads; test set {len(test)} tweets, mean {lengths.mean():.1f} "
          f"tokens; model {args.layers} layers")
    sorted_test, restore = sorted_by_length(test)
    times: dict[str, list[float]] = {"eval, data order": [], "eval, sorted": [],
                                     "train, random batches": [], "train, grouped": []}
    predictions = {}
    for _ in range(args.repeats):
        for label, sort in (("eval, data order", False), ("eval, sorted", True)):
            t = trainer(False)
            start = time.perf_counter()
            output = (predict_in_order(t, sorted_test, restore, "test") if sort
                      else t.predict(test, metric_key_prefix="test"))
            times[label].append(time.perf_counter() - start)
            predictions[label] = output.predictions.argmax(-1)
        for label, group in (("train, random batches", False), ("train, grouped", True)):
            start = time.perf_counter()
            trainer(group).train()
            times[label].append(time.perf_counter() - start)
    same = bool((predictions["eval, data order"] == predictions["eval, sorted"]).all())
    print(f"sorted evaluation gives the same predictions: {same}")
    print("| run | median s | runs |\n|---|---|---|")
    for label, values in times.items():
        print(f"| {label} | {statistics.median(values):.2f} | {', '.join(f'{v:.2f}' for v in values)} |")


if __name__ == "__main__":
    main()
