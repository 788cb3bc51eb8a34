"""Where a training step's time goes on a GPU: a plain PyTorch loop (the ceiling) against the
transformers Trainer as ablate configures it, at two batch sizes, plus a profiler table of the
Trainer's step. bert-base shape, random weights, tweets with dynamic padding.

    python benchmarks/gpu_train_profile.py --data DIR --tokenizer DIR --out FILE.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch

STEPS = 120


def batches(tokenizer: Any, texts: list[str], labels: list[int], size: int, n: int) -> list[dict]:
    out = []
    for i in range(n):
        first = (i * size) % (len(texts) - size)
        enc = tokenizer(texts[first:first + size], truncation=True, max_length=128, padding=True,
                        return_tensors="pt")
        enc["labels"] = torch.tensor(labels[first:first + size])
        out.append(enc)
    return out


def plain_loop(model: Any, data: list[dict], compile_model: bool = False) -> dict[str, float]:
    """bf16 autocast, fused AdamW, batches already on the GPU: the step's compute alone."""
    device_data = [{k: v.cuda() for k, v in b.items()} for b in data]
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-5, fused=True)
    step_fn = torch.compile(model) if compile_model else model
    model.train()

    def step(batch: dict) -> None:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = step_fn(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for batch in device_data[:10]:
        step(batch)
    torch.cuda.synchronize()
    start = time.perf_counter()
    for batch in device_data[10:]:
        step(batch)
    torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    tokens = sum(int(b["attention_mask"].sum()) for b in data[10:])
    return {"step_ms": 1000 * elapsed / (len(data) - 10), "tokens_per_s": tokens / elapsed}


def trainer_run(model: Any, tokenizer: Any, texts: list[str], labels: list[int], size: int,
                profile: bool) -> dict[str, Any]:
    from datasets import Dataset
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

    n = size * STEPS
    ds = Dataset.from_dict({"text": texts[:n], "label": labels[:n]}).map(
        lambda b: tokenizer(b["text"], truncation=True, max_length=128), batched=True,
        remove_columns=["text"])
    args = TrainingArguments(output_dir="/tmp/profile-trainer", per_device_train_batch_size=size,
                             max_steps=STEPS, bf16=True, logging_steps=50, save_strategy="no",
                             report_to="none", disable_tqdm=True, learning_rate=3e-5,
                             dataloader_num_workers=0)
    trainer = Trainer(model=model, args=args, train_dataset=ds,
                      data_collator=DataCollatorWithPadding(tokenizer))
    result: dict[str, Any] = {}
    if profile:
        from torch.profiler import ProfilerActivity
        from torch.profiler import profile as torch_profile

        with torch_profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            out = trainer.train()
        result["profile_top_cpu"] = prof.key_averages().table(sort_by="self_cpu_time_total",
                                                              row_limit=25)
    else:
        out = trainer.train()
    tokens = sum(len(x) for x in ds["input_ids"])
    result |= {"step_ms": 1000 * out.metrics["train_runtime"] / STEPS,
               "tokens_per_s": tokens / out.metrics["train_runtime"]}
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--tokenizer", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    import pandas as pd
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    torch.backends.cuda.matmul.allow_tf32 = True
    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    frame = pd.read_csv(args.data / "train.csv").dropna(subset=["text"])
    texts, labels = frame["text"].astype(str).tolist(), frame["label"].astype(int).tolist()

    def fresh() -> Any:
        torch.manual_seed(0)
        return BertForSequenceClassification(BertConfig(vocab_size=len(tokenizer), num_labels=3)).cuda()

    figures: dict[str, Any] = {}
    for size in (32, 128):
        data = batches(tokenizer, texts, labels, size, STEPS)
        figures[f"plain_bs{size}"] = plain_loop(fresh(), data)
        figures[f"trainer_bs{size}"] = trainer_run(fresh(), tokenizer, texts, labels, size,
                                                   profile=False)
        print(json.dumps(figures, indent=1), flush=True)
    figures["plain_bs32_compiled"] = plain_loop(fresh(), batches(tokenizer, texts, labels, 32, STEPS),
                                                compile_model=True)
    figures["trainer_bs32_profiled"] = trainer_run(fresh(), tokenizer, texts, labels, 32, profile=True)
    print(figures["trainer_bs32_profiled"].pop("profile_top_cpu"))
    args.out.write_text(json.dumps(figures, indent=1))
    print(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
