"""GPU speed of ablate: training tokens/s and utilisation, inference over the tweet test set, and
the GPU paths of a study (bf16 auto, fp16, fp32, out-of-memory back-off, memory between trials).

The model is a randomly initialised BERT of the shape asked for (bert-base: `BertConfig()`), built
here with the given tokenizer, because speed does not depend on the weights and pretrained ones may
not be reachable. Data: the tweet sentiment CSVs (train.csv, test.csv with text,label).

    python benchmarks/gpu_speed.py --data DIR --tokenizer DIR --out results.json [--tiny]

Prints a markdown summary; `benchmarks/RESULTS.md` records the figures of a run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]


def matmul_tflops(dtype: torch.dtype, size: int, device: str) -> float:
    """Best sustained dense matmul rate over a few timed products (after warm-up)."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    best = 0.0
    for _ in range(5):
        _sync(device)
        start = time.perf_counter()
        for _ in range(10):
            a @ b
        _sync(device)
        best = max(best, 10 * 2 * size**3 / (time.perf_counter() - start) / 1e12)
    return best


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def build_model(tokenizer_dir: Path, folder: Path, tiny: bool) -> int:
    """A random BERT (bert-base shape, or a tiny one) saved with the tokenizer; its non-embedding
    parameter count."""
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    shape = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                 intermediate_size=128) if tiny else {}
    config = BertConfig(vocab_size=len(tokenizer), num_labels=3, **shape)
    model = BertForSequenceClassification(config)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    embeddings = sum(p.numel() for p in model.bert.embeddings.parameters())
    return model.num_parameters() - embeddings


def run_ablate(experiment: Path, out_dir: Path, extra: list[str] | None = None) -> dict[str, Any]:
    """`ablate run` in a subprocess; each trial's stored result, by variant."""
    import optuna

    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "ablation", "run", str(experiment), *(extra or [])],
                          env=env,
                          capture_output=True, text=True)
    wall = time.perf_counter() - started
    print(proc.stdout[-4000:], proc.stderr[-4000:], sep="\n")
    study = optuna.load_study(study_name=experiment.stem, storage=f"sqlite:///{out_dir}/study.db")
    trials = {t.user_attrs["variant"]: {"state": t.state.name, "error": t.user_attrs.get("error"),
                                        **t.user_attrs.get("result", {})} for t in study.trials}
    return {"returncode": proc.returncode, "wall_s": wall, "trials": trials}


def experiment_text(name: str, model: Path, data: Path, out: Path, baseline: str, variants: str) -> str:
    return textwrap.dedent(f"""\
        [experiment]
        name = "{name}"
        output_dir = "{out}"
        [data]
        dataset = "{data}"
        label_column = "label"
        label_names = ["negative", "neutral", "positive"]
        [model]
        name = "{model}"
        [tracking]
        backend = "none"
        [baseline]
        """) + baseline + "\n[variants]\n" + variants


def token_count(tokenizer_dir: Path, texts: list[str], max_length: int) -> int:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    return sum(len(ids) for ids in tokenizer(texts, truncation=True, max_length=max_length)["input_ids"])


def inference(model_dir: Path, texts: list[str], batch_size: int, repeats: int = 5) -> dict[str, float]:
    """Classify every text: length-sorted batches, bf16 weights, SDPA; median of `repeats` timed
    passes after a warm-up, with and without tokenization."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(
        model_dir, dtype=dtype, attn_implementation="sdpa").to(device).eval()

    def classify() -> tuple[float, float]:
        start = time.perf_counter()
        # Sorted by length (characters: a free proxy of tokens) so that batches pad little; the
        # tokenizer pads each batch itself, in Rust, on all cores.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        batches = []
        for first in range(0, len(order), batch_size):
            padded = tokenizer([texts[i] for i in order[first:first + batch_size]], truncation=True,
                               max_length=128, padding=True, return_tensors="pt")
            batches.append({k: v.to(device, non_blocking=True) for k, v in padded.items()})
        tokenized = time.perf_counter()
        labels = []
        with torch.inference_mode():
            for batch in batches:
                labels.append(model(**batch).logits.argmax(-1))
        predicted = torch.cat(labels).cpu()  # one host sync, at the end
        assert len(predicted) == len(texts)
        end = time.perf_counter()
        return end - start, end - tokenized

    def through_ablate() -> float:
        """ablate's own path (`ablate predict` / `evaluate`): texts in, logits out, in order."""
        from ablation.inference import class_logits

        start = time.perf_counter()
        logits = class_logits(model, tokenizer, texts, max_length=128, batch_size=batch_size,
                              precision="bf16" if device == "cuda" else "fp32")
        assert len(logits) == len(texts)
        return time.perf_counter() - start

    classify()  # warm-up: kernels, allocator
    runs = sorted(classify() for _ in range(repeats))
    total, forward = runs[len(runs) // 2]
    model.float()  # ablate keeps fp32 weights and runs bf16 autocast, as the trial evaluated
    through_ablate()
    ablate_s = sorted(through_ablate() for _ in range(repeats))[repeats // 2]
    return {"texts": len(texts), "total_s": total, "forward_s": forward,
            "texts_per_s": len(texts) / total, "batch_size": batch_size,
            "ablate_class_logits_s": ablate_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="folder with train.csv, test.csv")
    parser.add_argument("--tokenizer", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True, help="JSON file for the figures")
    parser.add_argument("--tiny", action="store_true", help="a tiny model and sample (smoke run)")
    parser.add_argument("--train-samples", type=int, default=16000)
    parser.add_argument("--parts", default="training,inference,paths,workers",
                        help="comma-separated: training, inference, paths, workers")
    args = parser.parse_args()

    import pandas as pd
    import transformers

    device = "cuda" if torch.cuda.is_available() else "cpu"
    figures: dict[str, Any] = {
        "device": torch.cuda.get_device_name() if device == "cuda" else platform.processor(),
        "torch": torch.__version__, "transformers": transformers.__version__,
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
    }
    size = 512 if args.tiny else 8192
    figures["matmul_tflops"] = {"bf16": matmul_tflops(torch.bfloat16, size, device)}
    if device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        figures["matmul_tflops"]["tf32"] = matmul_tflops(torch.float32, size, device)
        torch.backends.cuda.matmul.allow_tf32 = False
    figures["matmul_tflops"]["fp32"] = matmul_tflops(torch.float32, size, device)

    work = Path(tempfile.mkdtemp(prefix="ablate-gpu-"))
    model_dir = work / "model"
    figures["non_embedding_params"] = build_model(args.tokenizer, model_dir, args.tiny)
    samples = 256 if args.tiny else args.train_samples
    train_csv = work / "data" / "train.csv"
    train_csv.parent.mkdir()
    train = pd.read_csv(args.data / "train.csv").dropna(subset=["text"]).head(samples)
    train.to_csv(train_csv, index=False)
    test = pd.read_csv(args.data / "test.csv").dropna(subset=["text"])
    test.to_csv(train_csv.parent / "test.csv", index=False)

    parts = set(args.parts.split(","))
    if "training" in parts:
        figures["training"] = training_speed(args, figures, model_dir, train_csv, train)
    if "inference" in parts:
        os.environ["TOKENIZERS_PARALLELISM"] = "true"
        texts = test["text"].astype(str).tolist()
        figures["inference"] = {f"batch_{n}": inference(model_dir, texts, batch_size=n)
                                for n in (256, 1024)}
    if "paths" in parts and device == "cuda":
        figures["paths"] = gpu_paths(model_dir, train_csv, work, args.tiny)
    if "workers" in parts:
        figures["workers"] = workers_on_one_device(model_dir, train_csv, work, args.tiny)
    args.out.write_text(json.dumps(figures, indent=2, default=str))
    print(json.dumps(figures, indent=2, default=str))


def training_speed(args: Any, figures: dict[str, Any], model_dir: Path, train_csv: Path,
                   train: Any) -> dict[str, Any]:
    """ablate's own training path (precision auto: bf16 on a GPU), one epoch."""
    work = model_dir.parent
    speed_out = work / "speed"
    speed = work / "speed.toml"
    speed.write_text(experiment_text(
        "speed", model_dir, train_csv.parent, speed_out,
        "learning_rate = 3e-5\nbatch_size = 32\neval_batch_size = 256\nepochs = 1\nmax_length = 128\n"
        "eval_steps = 0\nlogging_steps = 50\n", ""))
    ran = run_ablate(speed, speed_out)
    baseline = ran["trials"]["baseline"]
    train_rows = baseline["train_examples"]
    # The trained rows are a stratified 90 % of `train`: their tokens, from the mean length.
    texts = train["text"].astype(str).tolist()
    tokens = round(token_count(args.tokenizer, texts, 128) / len(texts) * train_rows)
    train_s = baseline["train_runtime_s"]
    precision = baseline["precision"]
    peak = figures["matmul_tflops"]["bf16" if precision in ("bf16", "fp16") else "fp32"]
    speed = {
        "precision": precision, "examples": train_rows, "tokens": tokens, "train_s": train_s,
        "samples_per_s": train_rows / train_s, "tokens_per_s": tokens / train_s,
        "achieved_tflops": 6 * figures["non_embedding_params"] * tokens / train_s / 1e12,
        "study_wall_s": ran["wall_s"], "trial_runtime_s": baseline["runtime_s"],
        "test_samples_per_s_trainer_predict": baseline.get("test_samples_per_s"),
        "peak_gpu_memory_mb": baseline.get("peak_gpu_memory_mb"),
    }
    speed["mfu"] = speed["achieved_tflops"] / peak
    return speed


def gpu_paths(model_dir: Path, train_csv: Path, work: Path, tiny: bool) -> dict[str, Any]:
    """bf16 auto, fp16, fp32, a batch that cannot fit (back-off), and the memory each trial finds
    at its start (what earlier trials left behind)."""
    paths_out = work / "paths"
    paths = work / "paths.toml"
    huge = 2048 if tiny else 65536
    paths.write_text(experiment_text(
        "paths", model_dir, train_csv.parent, paths_out,
        "learning_rate = 3e-5\nbatch_size = 32\neval_batch_size = 256\nmax_steps = 60\n"
        "max_length = 128\neval_steps = 30\nlogging_steps = 10\nmax_train_samples = 4000\n",
        f'fp16 = {{ precision = "fp16" }}\nfp32 = {{ precision = "fp32" }}\n'
        f"huge = {{ batch_size = {huge}, max_length = 512, max_steps = 2 }}\n"
        'after = { learning_rate = 5e-5 }\n'))
    ran = run_ablate(paths, paths_out)
    return {"returncode": ran["returncode"], "wall_s": ran["wall_s"], "trials": {
        name: {k: trial.get(k) for k in (
            "state", "error", "precision", "device_name", "gpu_memory_at_start_mb",
            "peak_gpu_memory_mb", "oom_backoff", "batch_size", "gradient_accumulation_steps",
            "train_runtime_s", "train_samples_per_s")} | {
            "macro_f1": (trial.get("validation") or {}).get("macro_f1")}
        for name, trial in ran["trials"].items()}}


def workers_on_one_device(model_dir: Path, train_csv: Path, work: Path, tiny: bool) -> dict[str, Any]:
    """The same 8 short trials with 1 and with 4 worker processes sharing the device: a trial of
    batch 32 keeps one CPU core busy launching kernels while the GPU mostly waits."""
    out: dict[str, Any] = {}
    variants = "".join(f'lr{i} = {{ learning_rate = {i + 1}e-5 }}\n' for i in range(7))
    for workers in (1, 4):
        folder = work / f"workers{workers}"
        experiment = work / f"workers{workers}.toml"
        experiment.write_text(experiment_text(
            f"workers{workers}", model_dir, train_csv.parent, folder,
            f"learning_rate = 3e-5\nbatch_size = 32\neval_batch_size = 256\n"
            f"max_steps = {10 if tiny else 100}\nmax_length = 128\neval_steps = {10 if tiny else 100}\n"
            "logging_steps = 50\nmax_train_samples = 8000\n", variants))
        ran = run_ablate(experiment, folder, ["--workers", str(workers)])
        done = [t for t in ran["trials"].values() if t["state"] == "COMPLETE"]
        out[f"workers_{workers}"] = {"trials": len(done), "wall_s": ran["wall_s"],
                                     "mean_train_s": sum(t["train_runtime_s"] for t in done) / len(done)}
    out["speed_up"] = out["workers_1"]["wall_s"] / out["workers_4"]["wall_s"]
    return out


if __name__ == "__main__":
    main()
