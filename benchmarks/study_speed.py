"""The same 4-variant study run three ways on this machine, timed, with the results in RESULTS.md.

    python benchmarks/study_speed.py            # default: 2-layer MiniLM, 384 train tweets
    python benchmarks/study_speed.py --full     # the real model: 6 layers, 1600 train tweets
    python benchmarks/study_speed.py --tiny     # smoke run: a few steps, to check the harness
                                                # (prints its section; RESULTS.md only with --results)

On 2 CPU cores the default takes about 10 minutes, 8 of them in way 1 (its 512-token padding);
--tiny about 3; --full 83–94 minutes, 76–86 of them in way 1: the size where the models leave the loss
plateau the default sits on, so that the accuracies of the ways can be compared, and small enough
to run within one 3-hour session. Run it on a quiet machine: a second busy process on 2 cores
slows torch's two threads several-fold.

The study: tweet sentiment (mteb/tweet_sentiment_extraction) with
sentence-transformers/all-MiniLM-L6-v2; variants baseline, lr 5e-5, dropout 0.3 and balanced class
weights; one seed; the same rows, optimizer steps, evaluation points and final evaluation (best
checkpoint by macro-F1 on validation, then test) in every way:

1. "the usual way" (benchmarks/study_speed_usual.py): a tutorial script run once per variant in a
   fresh process, padding every text to 512 tokens, tokenizing in every run, Trainer defaults;
2. "a careful hand-written Trainer script" (benchmarks/study_speed_careful.py): all variants in one
   process, tokenized once, dynamic padding, ablate's TrainingArguments, no tracker or storage;
3. `ablate run` on a generated experiment file, SwanLab tracking in its default local mode.

It also measures the machine's dense matmul rate (fp32, and bf16 where the CPU has it) and reports
the training's model-FLOPs utilisation, 6 x non-embedding parameters x trained (non-pad) tokens /
train time / matmul rate, and checks the targets (PASS/FAIL). "Train time" is the Trainer's
train_runtime minus the evaluations that ran inside it, in every way (checkpoint saving stays in).
The results replace the section between the study_speed markers in benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import ast
import datetime as dt
import json
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
MODEL = "sentence-transformers/all-MiniLM-L6-v2"
DATASET = "mteb/tweet_sentiment_extraction"
def markers(size: str) -> tuple[str, str]:
    """The comments around this size's section of RESULTS.md (the default keeps its old ones)."""
    name = "study_speed" if size == "default" else f"study_speed:{size}"
    return f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
SEED = 42
TARGET_SPEEDUP, TARGET_F1_POINTS, TARGET_OVERHEAD, TARGET_MFU = 10.0, 1.0, 0.05, 0.50


@dataclass(frozen=True)
class Size:
    name: str
    layers: int | None  # None: the model's own 6
    train: int
    validation: int
    test: int
    batch_size: int
    eval_steps: int
    learning_rate: float = 2e-5
    variant_learning_rate: float = 5e-5  # the learning-rate variant's
    model: str = MODEL  # a Hub id or a local folder (mfu_recipes' randomly initialised BERT-base)

    @property
    def variants(self) -> dict[str, dict[str, Any]]:
        """The study's variants: the baseline, a higher learning rate, dropout 0.3, balanced class weights."""
        return {"baseline": {}, f"lr{self.variant_learning_rate:.0e}".replace("e-0", "e-"):
                {"learning_rate": self.variant_learning_rate},
                "dropout0.3": {"dropout": 0.3}, "cw-balanced": {"class_weight": "balanced"}}


SIZES = {
    "tiny": Size("tiny", 2, 64, 32, 32, 8, 4),
    "default": Size("default", 2, 384, 192, 192, 16, 12),
    # 100 steps at lr 2e-5 left three of the four variants on the loss plateau (macro-F1 0.19-0.38 in
    # every way), where run-to-run noise hides whether two ways reach equal accuracy. At 1e-4 all
    # four leave it (ablate: 0.65-0.76); at 5e-5 dropout 0.3 stayed on it (0.28).
    "full": Size("full", None, 1600, 400, 400, 16, 50, learning_rate=1e-4, variant_learning_rate=5e-5),
}
VARIANTS = SIZES["default"].variants


@dataclass
class Way:
    label: str
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)  # variant -> measurements
    wall_s: float = 0.0
    peak_rss_mb: float = 0.0
    notes: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- machine


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def memory_gib() -> float:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError):
        return float("nan")


def versions() -> dict[str, str]:
    from importlib.metadata import version

    out = {}
    for package in ("torch", "transformers", "datasets", "optuna", "swanlab"):
        try:
            out[package] = version(package)
        except Exception:  # not installed
            out[package] = "—"
    return out


MATMUL_SIZES = (512, 1024, 2048, 4096)  # the square sizes whose best rate MFU divides by


def timed_products(a: Any, b: Any, seconds: float, out: Any = None) -> tuple[float, int]:
    """One untimed product a × b (it warms the caches and the threads), then products for at least
    `seconds`: (seconds taken, products timed)."""
    import torch

    torch.matmul(a, b, out=out)
    reps, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        torch.matmul(a, b, out=out)
        reps += 1
    return time.perf_counter() - started, reps


def matmul_rates(seconds: float = 1.0) -> dict[str, dict[int, float]]:
    """GFLOP/s of torch.matmul on square matrices, per dtype and size (each size timed for about
    `seconds` after a warm-up); bf16 only where the CPU has bf16 instructions."""
    import torch

    dtypes = {"fp32": torch.float32}
    if {"avx512_bf16", "amx_bf16"} & cpu_flags():
        dtypes["bf16"] = torch.bfloat16
    rates: dict[str, dict[int, float]] = {}
    for name, dtype in dtypes.items():
        rates[name] = {}
        for n in MATMUL_SIZES:
            elapsed, reps = timed_products(torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype),
                                           seconds)
            rates[name][n] = 2 * n**3 * reps / elapsed / 1e9
    return rates


def step_shapes_rate(tokens: int, hidden: int, intermediate: int, seconds: float = 2.0) -> float:
    """fp32 GFLOP/s of the dense products one encoder layer's training step makes at `tokens`
    (padded) tokens per batch: the four attention projections and the two feed-forward layers,
    each forward, input-gradient and weight-gradient. The ceiling this workload's own matrix
    shapes reach, which is lower than a square 4096 product's."""
    import torch

    products = []
    for k, n in [(hidden, hidden)] * 4 + [(hidden, intermediate), (intermediate, hidden)]:
        x, w, g = torch.randn(tokens, k), torch.randn(k, n), torch.randn(tokens, n)
        products += [(x, w), (g, w.T), (x.T, g)]
    flops = sum(2 * a.shape[0] * a.shape[1] * b.shape[1] for a, b in products)
    for a, b in products:  # warm-up
        torch.matmul(a, b)
    reps, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        for a, b in products:
            torch.matmul(a, b)
        reps += 1
    return flops * reps / (time.perf_counter() - started) / 1e9


def parameter_counts(size: Size) -> tuple[int, int]:
    """(all parameters, embedding parameters) of the study's model with 3 classes."""
    from transformers import AutoConfig, AutoModelForSequenceClassification

    config = AutoConfig.from_pretrained(size.model, num_labels=3, **model_config(size))
    model = AutoModelForSequenceClassification.from_config(config)
    total = sum(p.numel() for p in model.parameters())
    embedding = sum(p.numel() for n, p in model.named_parameters() if ".embeddings." in n)
    return total, embedding


def model_config(size: Size) -> dict[str, Any]:
    return {} if size.layers is None else {"num_hidden_layers": size.layers}


# --------------------------------------------------------------------------- data


def prepare_data(size: Size, data_dir: Path) -> dict[str, Any]:
    """The exact rows ablate trains on (its own loader and stratified sampling), written as JSON
    lines for ways 1 and 2; token lengths of the training texts."""
    import numpy as np
    from transformers import AutoTokenizer

    from ablation.config import DataSpec
    from ablation.data import load_labeled_splits

    spec = DataSpec(dataset=DATASET, max_train_samples=size.train,
                    max_eval_samples=size.validation, max_test_samples=size.test)
    splits = load_labeled_splits(spec)
    data_dir.mkdir(parents=True, exist_ok=True)
    for name, frame in splits.split_items():
        frame[["text", "label"]].to_json(data_dir / f"{name}.jsonl", orient="records", lines=True)
    tokenizer = AutoTokenizer.from_pretrained(MODEL)
    lengths = np.array([len(ids) for ids in tokenizer(
        list(splits.train["text"]), truncation=True, max_length=128)["input_ids"]])
    return {"label_names": splits.label_names, "train_lengths": lengths,
            "validation_labels": splits.validation["label"].tolist(),
            "rows": {name: len(frame) for name, frame in splits.split_items()}}


def padding_waste(lengths: Any, batch_size: int) -> dict[str, float]:
    """Padded tokens / real tokens for random batches (the Trainer's default sampler) and for
    length-grouped batches (megabatches of 50 batches sorted by length, as LengthGroupedSampler),
    averaged over 20 shuffles; and for padding to 512."""
    import numpy as np

    rng = np.random.default_rng(0)
    real = lengths.sum()

    def padded(order: Any) -> int:
        return sum(int(lengths[order[i:i + batch_size]].max()) * len(order[i:i + batch_size])
                   for i in range(0, len(order), batch_size))

    random_pad, grouped_pad = [], []
    for _ in range(20):
        order = rng.permutation(len(lengths))
        random_pad.append(padded(order))
        mega = batch_size * 50
        grouped = np.concatenate([sorted(order[i:i + mega], key=lambda j: -lengths[j])
                                  for i in range(0, len(order), mega)])
        grouped_pad.append(padded(grouped))
    return {"random": float(np.mean(random_pad) / real), "grouped": float(np.mean(grouped_pad) / real),
            "max_length_512": float(len(lengths) * 512 / real)}


# --------------------------------------------------------------------------- running the ways


def run_process(command: list[str], log: Path, env: dict[str, str] | None = None,
                on_line: Any = None) -> tuple[float, float, int]:
    """Run a command; returns (wall seconds, peak RSS in MiB of it and its children, exit code).
    Its output goes to `log`; `on_line(seconds since start, line)` sees each stdout line."""
    started = time.perf_counter()
    with log.open("w", encoding="utf-8") as out:
        process = subprocess.Popen(command, cwd=ROOT, env=env, text=True,
                                   stdout=subprocess.PIPE if on_line else out,
                                   stderr=subprocess.STDOUT)
        try:
            if on_line:
                for line in process.stdout:  # type: ignore[union-attr]
                    out.write(line)
                    on_line(time.perf_counter() - started, line.rstrip("\n"))
            _, status, usage = os.wait4(process.pid, 0)
        except BaseException:  # Ctrl+C (or an error) in the harness: the way's process goes too
            process.kill()
            process.wait()
            raise
        process.returncode = os.waitstatus_to_exitcode(status)
    return time.perf_counter() - started, usage.ru_maxrss / 1024, process.returncode


def study_file(size: Size, work: Path, data: dict[str, Any]) -> Path:
    work.mkdir(parents=True, exist_ok=True)
    study = {"model": MODEL, "model_config": model_config(size), "data_dir": str(work / "data"),
             "work_dir": str(work), "seed": SEED, "max_length": 128,
             "label_names": data["label_names"], "variants": size.variants,
             "recipe": {"learning_rate": size.learning_rate, "batch_size": size.batch_size,
                        "eval_batch_size": 64, "epochs": 1, "eval_steps": size.eval_steps,
                        "logging_steps": 10}}
    path = work / "study.json"
    path.write_text(json.dumps(study, indent=1), encoding="utf-8")
    return path


def way_usual(size: Size, study: Path, work: Path) -> Way:
    way = Way("1. the usual way (tutorial script, 512 padding, a process per variant)")
    for variant in size.variants:
        out = work / f"usual-{variant}.json"
        wall, rss, code = run_process([sys.executable, str(HERE / "study_speed_usual.py"),
                                       str(study), variant, str(out)], work / f"usual-{variant}.log")
        if code != 0:
            raise SystemExit(f"way 1, {variant}: exit {code}; see {work / f'usual-{variant}.log'}")
        way.runs[variant] = json.loads(out.read_text()) | {"process_wall_s": wall}
        way.wall_s += wall
        way.peak_rss_mb = max(way.peak_rss_mb, rss)
        print(f"  way 1 {variant}: {wall:.1f} s", flush=True)
    return way


def way_careful(study: Path, work: Path) -> Way:
    way = Way("2. careful hand-written Trainer script (one process, dynamic padding)")
    out = work / "careful.json"
    way.wall_s, way.peak_rss_mb, code = run_process(
        [sys.executable, str(HERE / "study_speed_careful.py"), str(study), str(out)],
        work / "careful.log")
    if code != 0:
        raise SystemExit(f"way 2: exit {code}; see {work / 'careful.log'}")
    result = json.loads(out.read_text())
    way.runs = result["runs"]
    way.notes.append(f"imports {result['import_s']:.1f} s, tokenizing once {result['tokenize_s']:.1f} s")
    print(f"  way 2: {way.wall_s:.1f} s", flush=True)
    return way


def ablate_toml(size: Size, work: Path, name: str, precision: str,
                variants: dict[str, dict[str, Any]] | None = None, seed: int = SEED) -> Path:
    """work/<name>.toml: the study of `size` (and of `variants`, the baseline's `{}` left out)."""
    table = "\n".join(f'"{variant}" = {{ {", ".join(f"{k} = {json.dumps(v)}" for k, v in o.items())} }}'
                      for variant, o in (variants or size.variants).items() if o)
    config = (f"config = {{ num_hidden_layers = {size.layers} }}" if size.layers else "")
    text = textwrap.dedent(f"""\
        [experiment]
        name = "{name}"
        seeds = [{seed}]
        metric = "macro_f1"
        output_dir = "{work / name}"

        [data]
        dataset = "{DATASET}"
        max_train_samples = {size.train}
        max_eval_samples = {size.validation}
        max_test_samples = {size.test}

        [model]
        name = "{size.model}"
        {config}

        [tracking]
        backend = "swanlab"
        project = "study-speed"
        mode = "local"

        [baseline]
        learning_rate = {size.learning_rate}
        batch_size = {size.batch_size}
        epochs = 1
        eval_steps = {size.eval_steps}
        precision = "{precision}"

        [variants]
        """) + table + "\n"
    path = work / f"{name}.toml"
    path.write_text(text, encoding="utf-8")
    return path


TRIAL_START = re.compile(r"^trial (\d+) (\S+): ")
TRIAL_DONE = re.compile(r"^trial (\d+) (\S+) done: ")


def way_ablate(size: Size, work: Path, precision: str = "auto", name: str = "",
               variants: dict[str, dict[str, Any]] | None = None, seed: int = SEED,
               ablate: list[str] | None = None) -> tuple[Way, dict[str, Any]]:
    """`ablate run` on the study of `size` (or on `variants` of its baseline), timed: the measurements
    per variant, and the study's fixed costs from its output. `ablate`: the command that stands for
    `ablate` (default: this interpreter's `-m ablation`)."""
    import optuna

    from ablation import records

    name = name or ("ablate" if precision == "auto" else f"ablate_{precision}")
    way = Way("3. `ablate run` (SwanLab local tracking)" if precision == "auto" else
              f"(extra) `ablate run` with `precision = \"{precision}\"`")
    toml = ablate_toml(size, work, name, precision, variants, seed)
    shutil.rmtree(work / name, ignore_errors=True)
    events: list[tuple[float, str]] = []
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    way.wall_s, way.peak_rss_mb, code = run_process(
        [*(ablate or [sys.executable, "-m", "ablation"]), "run", str(toml)], work / f"{name}.log", env=env,
        on_line=lambda t, line: events.append((t, line)))
    if code != 0:
        raise SystemExit(f"{name}: exit {code}; see {work / f'{name}.log'}")
    print(f"  {name}: {way.wall_s:.1f} s", flush=True)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{work / name / 'study.db'}")
    starts, dones = {}, {}
    for t, line in events:
        if match := TRIAL_DONE.match(line):
            dones[match.group(2)] = t
        elif match := TRIAL_START.match(line):
            starts[match.group(2)] = t
    for record in records.load_records(study):
        r = record.result
        short = "baseline" if record.variant == "baseline" else record.variant.removeprefix("baseline_")
        in_train_eval, evaluations = 0.0, 0
        for line in (work / name / "trials" / record.key / "trial.log").read_text().splitlines():
            if match := re.search(r" step \d+: (\{.*\})$", line):
                try:
                    logs = ast.literal_eval(match.group(1))
                except (ValueError, SyntaxError):
                    continue
                if "eval_runtime" in logs:
                    in_train_eval += logs["eval_runtime"]
                    evaluations += 1
        n_val, n_test = len(r["validation_labels"]), len(r.get("test_labels", []))
        way.runs[short] = {
            "key": record.key, "train_runtime_s": r["train_runtime_s"], "in_train_eval_s": in_train_eval,
            "evaluations": evaluations, "steps": r["steps"],
            "validation": {k: r["validation"][k] for k in ("accuracy", "macro_f1")},
            "validation_samples_per_s": r["validation_samples_per_s"],
            "validation_s": n_val / r["validation_samples_per_s"],
            "test": {k: r["test"][k] for k in ("accuracy", "macro_f1")} if "test" in r else {},
            "test_s": n_test / r["test_samples_per_s"] if n_test else 0.0,
            "validation_labels": r["validation_labels"], "runtime_s": r["runtime_s"],
            "trial_wall_s": dones.get(record.key, float("nan")) - starts.get(record.key, float("nan")),
        }
    first_line = events[0][0] if events else float("nan")
    data_line = next((t for t, line in events if line.startswith("data: train")), float("nan"))
    first_trial = min(starts.values(), default=float("nan"))
    last_done = max(dones.values(), default=float("nan"))
    report_line = next((t for t, line in events if line.startswith("report: ")), float("nan"))
    fixed = {
        "start → spec parsed (Python, CLI and config imports, TOML)": first_line,
        "→ data loaded (storage opened, optuna/datasets imports, Hub data, split)": data_line - first_line,
        "→ first trial starts (tokenizer, preflight config, tokenization, enqueue)":
            first_trial - data_line,
        "trials: model load + Trainer set-up (sum)": sum(
            r["runtime_s"] - r["train_runtime_s"] - r["validation_s"] - r["test_s"]
            for r in way.runs.values()),
        "trials: tracker start/finish, storage, trial log (sum of trial wall − train_trial)": sum(
            r["trial_wall_s"] - r["runtime_s"] for r in way.runs.values()),
        "last trial done → report written (report, plots, summary)": report_line - last_done,
        "report written → process exit": way.wall_s - report_line,
    }
    return way, fixed


def import_cost() -> float:
    """Seconds to import what `ablate run` imports, in a fresh interpreter (median of 3)."""
    code = ("import time; t = time.perf_counter(); import ablation.cli, ablation.sweep, "
            "ablation.train, ablation.report, swanlab, optuna, datasets; "
            "print(time.perf_counter() - t)")
    times = sorted(float(subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True,
                                        capture_output=True, text=True).stdout.strip())
                   for _ in range(3))
    return times[1]


def timed_step(model: Any, batch: dict[str, Any], params: list[Any], optimizer: Any,
               bf16: bool = False) -> tuple[float, float, float, float]:
    """One training step as the Trainer runs it (clipping at 1.0, then the optimizer): seconds of
    its forward, backward, gradient clipping and optimizer phases."""
    import torch

    t0 = time.perf_counter()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        loss = model(**batch).loss
    t1 = time.perf_counter()
    loss.backward()
    t2 = time.perf_counter()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    t3 = time.perf_counter()
    optimizer.step()
    optimizer.zero_grad()
    t4 = time.perf_counter()
    return t1 - t0, t2 - t1, t3 - t2, t4 - t3


def step_profile(size: Size, data_dir: Path, label_count: int, steps: int = 12) -> list[dict[str, Any]]:
    """Milliseconds per phase of one training step on real batches of the study's data (dynamic
    padding, the study's batch size), as the Trainer runs it (fused AdamW, gradient clipping at
    1.0): fp32; bf16 autocast; fp32 with the word embeddings frozen (their AdamW update skipped).
    Two passes over the same batches: the first meets each batch shape for the first time (oneDNN
    creates its kernels per shape), the second is the steady state the phases are taken from."""
    import pandas as pd
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()  # no "Loading weights" bar per model load (as ablation/cli.py)
    texts = pd.read_json(data_dir / "train.jsonl", lines=True)
    tokenizer = AutoTokenizer.from_pretrained(MODEL)
    starts = [(i * size.batch_size) % (len(texts) - size.batch_size + 1) for i in range(steps)]
    batches = [tokenizer(list(texts["text"][i:i + size.batch_size]), truncation=True, max_length=128,
                         padding=True, return_tensors="pt") | {
        "labels": torch.tensor(texts["label"][i:i + size.batch_size].to_numpy())} for i in starts]
    rows = []
    for setting in ("fp32", "bf16 autocast", "fp32, word embeddings frozen"):
        torch.manual_seed(SEED)
        model = AutoModelForSequenceClassification.from_pretrained(
            MODEL, num_labels=label_count, **model_config(size))
        model.train()
        if "frozen" in setting:
            model.get_input_embeddings().weight.requires_grad_(False)
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=size.learning_rate, fused=True)
        phases = dict.fromkeys(("forward", "backward", "clip", "optimizer"), 0.0)
        tokens, first_pass = 0, 0.0
        for i, batch in enumerate(batches + batches):  # the second pass sees known shapes
            step = timed_step(model, batch, params, optimizer, bf16="bf16" in setting)
            if i >= len(batches):
                for phase, seconds in zip(phases, step, strict=True):
                    phases[phase] += seconds
                tokens += int(batch["attention_mask"].sum())
            elif i > 0:  # the very first step also allocates the optimizer state
                first_pass += sum(step)
        rows.append({"setting": setting, **{k: 1000 * v / steps for k, v in phases.items()},
                     "first_pass": 1000 * first_pass / (steps - 1),
                     "real_tokens_per_step": tokens / steps})
        del model, optimizer
    return rows


# --------------------------------------------------------------------------- aggregation


def train_seconds(run: dict[str, Any]) -> float:
    """A run's training time: the Trainer's train_runtime minus the evaluations inside it
    (checkpoint saving stays in)."""
    return run["train_runtime_s"] - run["in_train_eval_s"]


def utilisation(nonembedding: int, tokens: float, seconds: float, gflops: float) -> float:
    """Model-FLOPs utilisation: 6 × non-embedding parameters × tokens trained / seconds / the
    matmul rate (GFLOP/s)."""
    return 6 * nonembedding * tokens / seconds / (gflops * 1e9)


def provenance(command: str, started_at: str) -> str:
    """The line that opens a RESULTS.md section: the command, when, the CPU and the versions."""
    return (f"Command: `{command}` ({started_at}). Machine: {cpu_model()}, {os.cpu_count()} cores; "
            + ", ".join(f"{k} {v}" for k, v in versions().items()) + ".")


def command_line() -> str:
    """How this benchmark was started, as RESULTS.md quotes it: paths relative to the repository."""
    return "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(sys.argv[0], ROOT), *sys.argv[1:]])


def summarize(way: Way, data: dict[str, Any], nonembedding: int, rate_fp32: float) -> dict[str, Any]:
    runs = list(way.runs.values())
    n_train = data["rows"]["train"]
    real_tokens = int(data["train_lengths"].sum())
    train_s = sum(train_seconds(r) for r in runs)
    val_n = len(runs[0]["validation_labels"])
    s = {
        "wall_s": way.wall_s,
        "train_s": train_s,
        "train_samples_per_s": n_train * len(runs) / train_s,
        "train_tokens_per_s": real_tokens * len(runs) / train_s,
        "eval_samples_per_s": val_n * len(runs) / sum(r["validation_s"] for r in runs),
        "peak_rss_mb": way.peak_rss_mb,
        "accuracy": sum(r["validation"]["accuracy"] for r in runs) / len(runs),
        "macro_f1": sum(r["validation"]["macro_f1"] for r in runs) / len(runs),
        "mfu": utilisation(nonembedding, real_tokens * len(runs), train_s, rate_fp32),
    }
    padded = [r.get("padded_train_tokens") for r in runs]
    if all(padded):
        s["padded_per_real"] = sum(padded) / (real_tokens * len(runs))
        s["hw_util"] = utilisation(nonembedding, sum(padded), train_s, rate_fp32)
    return s


def fmt_s(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds >= 100 else f"{seconds:.1f} s"


NOISY_DRIFT = 0.10  # the start and end matmul rates differ by more: other work shared the cores


def rate_drift(rates: list[dict[str, dict[int, float]]]) -> float:
    """How far the best fp32 matmul rate moved between the start and the end of the run, as a
    fraction of the higher one: on an idle machine it stays within a few %."""
    start, end = (max(rates[i]["fp32"].values()) for i in (0, -1))
    return abs(start - end) / max(start, end)


def noisy_note(told: bool, rates: list[dict[str, dict[int, float]]]) -> str:
    """The warning heading results taken on a busy machine: told so (--note-noisy), or seen in
    the matmul rate's drift, which another process's work moves."""
    drift = rate_drift(rates)
    if drift > NOISY_DRIFT:
        return (f" **The fp32 matmul rate moved {100 * drift:.0f} % between the start and the end "
                "of the run: other work shared the cores, timings are noisy.**")
    return " **Taken on a shared machine while other work ran: timings are noisy.**" if told else ""


def pass_fail(ok: bool) -> str:
    return "**PASS**" if ok else "**FAIL**"


def render(args: argparse.Namespace, size: Size, machine: dict[str, Any], data: dict[str, Any],
           ways: dict[str, Way], summaries: dict[str, dict[str, Any]], fixed: dict[str, float] | None,
           imports_s: float | None, params: tuple[int, int], profile: list[dict[str, Any]],
           started_at: str, total_s: float) -> str:
    rates = machine["matmul"]
    best = {dtype: max(max(r.values()) for r in (m[dtype] for m in rates)) for dtype in rates[0]}
    lines = [
        markers(size.name)[0],
        "## One study three ways: tutorial script, careful script, `ablate run` (issue 5)"
        + ("" if size.name == "default" else f", size `{size.name}`"),
        "",
        f"Command: `{machine['command']}` (size `{size.name}`; {started_at}, {total_s / 60:.1f} min in all)."
        + noisy_note(args.note_noisy, rates),
        "",
        f"Machine: {machine['cpu']}, {machine['cores']} cores (torch {machine['threads']} threads), "
        f"{machine['memory_gib']:.0f} GiB, no GPU used; "
        + ", ".join(f"{k} {v}" for k, v in machine["versions"].items()) + ".",
        "",
        f"Study: {DATASET}, {MODEL}"
        + (f" cut to {size.layers} layers" if size.layers else " (6 layers)")
        + f" ({params[0] / 1e6:.1f} M parameters, {(params[0] - params[1]) / 1e6:.2f} M outside the "
        f"embeddings); {data['rows']['train']} train / {data['rows']['validation']} validation / "
        f"{data['rows']['test']} test tweets (ablate's stratified samples, the same rows in every way); "
        f"variants {', '.join(size.variants)}; lr {size.learning_rate:g}, batch {size.batch_size}, "
        f"1 epoch, evaluation every {size.eval_steps} steps, best checkpoint by macro-F1, then "
        "validation and test once; fp32. "
        f"Train tweets average {data['train_lengths'].mean():.1f} tokens.",
        "",
        "Matmul rate (torch.matmul, square n×n, best of the start and end of the run, GFLOP/s): "
        + "; ".join(f"{dtype} " + ", ".join(
            f"n={n}: {max(m[dtype][n] for m in rates):.0f}" for n in rates[0][dtype])
            for dtype in rates[0])
        + ". Best sustained: " + ", ".join(f"{d} {v:.0f} GFLOP/s" for d, v in best.items())
        + " (start of run: " + ", ".join(f"{d} {max(rates[0][d].values()):.0f}" for d in rates[0])
        + "; end: " + ", ".join(f"{d} {max(rates[-1][d].values()):.0f}" for d in rates[-1]) + ").",
        "",
        "| way | wall time, whole study | train time (sum) | train samples/s | train tokens/s (non-pad) "
        "| eval samples/s | peak RSS | val accuracy (mean) | val macro-F1 (mean) | MFU |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key, way in ways.items():
        s = summaries[key]
        lines.append(
            f"| {way.label} | {fmt_s(s['wall_s'])} | {fmt_s(s['train_s'])} | "
            f"{s['train_samples_per_s']:.1f} | {s['train_tokens_per_s']:.0f} | "
            f"{s['eval_samples_per_s']:.1f} | {s['peak_rss_mb']:.0f} MiB | {s['accuracy']:.4f} | "
            f"{s['macro_f1']:.4f} | {100 * s['mfu']:.1f} % |")
    lines += [
        "",
        "Train time: the Trainer's train_runtime minus the evaluations inside it (checkpoint saving "
        "stays in), summed over the 4 variants; samples/s and tokens/s are over that time. Eval "
        "samples/s: the final validation pass. MFU: 6 × non-embedding parameters × non-pad tokens "
        f"trained / train time / the best fp32 matmul rate ({best['fp32']:.0f} GFLOP/s)"
        + (f"; the bf16 row against the best bf16 rate ({best['bf16']:.0f} GFLOP/s)"
           if "bf16" in best else "") + ".",
        "",
    ]
    shapes = machine.get("step_shapes")
    if shapes:
        lines += [f"Matmul rate at the training step's own shapes (fp32; the forward, input-gradient "
                  f"and weight-gradient products of one encoder layer at {shapes['tokens']} padded "
                  f"tokens per batch, {size.batch_size} tweets): {shapes['gflops']:.0f} GFLOP/s, "
                  f"{100 * shapes['gflops'] / best['fp32']:.0f} % of the best square rate. That is "
                  "the most the matrix products of this workload reach on this CPU; attention, "
                  "layer norms, activations, the loss, gradient clipping and the optimizer come on "
                  "top.", ""]
    if "1" in ways and "padded_per_real" in summaries["1"]:
        s = summaries["1"]
        lines += [f"Way 1 computes on {s['padded_per_real']:.1f}× as many tokens as it trains on "
                  f"(padding to 512); counting the pad tokens its utilisation is "
                  f"{100 * s['hw_util']:.1f} %.", ""]
    if "2" in ways and "padded_per_real" in summaries["2"]:
        s = summaries["2"]
        lines += [f"Dynamic padding (way 2, and ablate with the same sampler) computes on "
                  f"{s['padded_per_real']:.2f}× the real tokens; length-grouped batches would "
                  f"compute on {data['padding']['grouped']:.2f}× (simulated over 20 shuffles of "
                  f"these lengths; random batches simulate at {data['padding']['random']:.2f}×).", ""]

    names = {k: f"way {k}" if k.isdigit() else f"ablate {k}" for k in ways}
    ratio = {"2", "3"} <= ways.keys()  # ablate / way 2 train, right after way 3's train column
    train_heads = [f"{names[k]} train" + (" | ablate / way 2 train" if ratio and k == "3" else "")
                   for k in ways]
    lines += ["Per variant (train time in s; validation macro-F1):", "",
              "| variant | " + " | ".join(train_heads) + " | "
              + " | ".join(f"{names[k]} F1" for k in ways) + " |",
              "|---|" + "---|" * (2 * len(ways) + ratio),
              ]
    for variant in size.variants:
        cells = []
        for k in ways:
            cells.append(f"{train_seconds(ways[k].runs[variant]):.1f}")
            if ratio and k == "3":
                train_3, train_2 = (train_seconds(ways[w].runs[variant]) for w in ("3", "2"))
                cells.append(f"{train_3 / train_2:.3f}")
        cells += [f"{ways[k].runs[variant]['validation']['macro_f1']:.4f}" for k in ways]
        lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    lines.append("")

    if fixed is not None:
        lines += ["`ablate run` fixed costs (from its own output, timestamped as printed, and its "
                  "trial records):", "", "| phase | seconds |", "|---|---|"]
        lines += [f"| {phase} | {seconds:.1f} |" for phase, seconds in fixed.items()]
        trials = ways["3"].runs.values()
        lines += [f"| (for scale) training inside the trials, sum | "
                  f"{sum(train_seconds(r) for r in trials):.1f} |",
                  f"| (for scale) evaluations inside the trials (in training, validation, test), sum | "
                  f"{sum(r['in_train_eval_s'] + r['validation_s'] + r['test_s'] for r in trials):.1f} |"]
        if imports_s is not None:
            lines.append(f"| imports alone (ablation, torch, transformers, swanlab, optuna, datasets; "
                         f"fresh interpreter, median of 3) | {imports_s:.1f} |")
        lines.append("")

    nonembedding = params[0] - params[1]
    lines += ["One training step on 12 real batches of this data (batch "
              f"{size.batch_size}, dynamic padding, fused AdamW, clipping at 1.0), ms per step: "
              "phases from a second pass over the same batches (shapes already seen); the first "
              "pass meets each shape for the first time:", "",
              "| setting | forward | backward | grad clip | optimizer | total | first pass, total "
              "| non-pad tokens | MFU of the step |", "|---|---|---|---|---|---|---|---|---|"]
    for row in profile:
        total = row["forward"] + row["backward"] + row["clip"] + row["optimizer"]
        rate = best["bf16" if "bf16" in row["setting"] and "bf16" in best else "fp32"]
        mfu = utilisation(nonembedding, row["real_tokens_per_step"], total / 1000, rate)
        lines.append(f"| {row['setting']} | {row['forward']:.0f} | {row['backward']:.0f} | "
                     f"{row['clip']:.0f} | {row['optimizer']:.0f} | {total:.0f} | {row['first_pass']:.0f} | "
                     f"{row['real_tokens_per_step']:.0f} | {100 * mfu:.1f} % "
                     f"({'bf16' if rate != best['fp32'] else 'fp32'} rate) |")
    lines += ["", "Targets:", ""]
    if {"1", "3"} <= ways.keys():
        speedup = summaries["1"]["wall_s"] / summaries["3"]["wall_s"]
        deltas = [100 * (ways["3"].runs[v]["validation"]["macro_f1"]
                         - ways["1"].runs[v]["validation"]["macro_f1"]) for v in size.variants]
        # The study's accuracy: the mean over its variants. One variant's single-seed F1 moves by
        # several points from the seed alone (dropout masks, and padding to 512 draws them anew).
        study_deltas = {m: 100 * (summaries["3"][m] - summaries["1"][m]) for m in ("macro_f1", "accuracy")}
        comparable = max(abs(d) for d in study_deltas.values()) <= TARGET_F1_POINTS
        lines.append(
            f"- ablate ≥ {TARGET_SPEEDUP:.0f}× faster than way 1 for the whole study at equal accuracy "
            f"(the study's mean over its variants, ±{TARGET_F1_POINTS:.0f} point): "
            f"{pass_fail(speedup >= TARGET_SPEEDUP and comparable)} — {speedup:.2f}× "
            f"({fmt_s(summaries['1']['wall_s'])} vs {fmt_s(summaries['3']['wall_s'])})"
            + ("" if speedup >= TARGET_SPEEDUP else f", short of {TARGET_SPEEDUP:.0f}× by "
               f"{100 * (1 - speedup / TARGET_SPEEDUP):.0f} %")
            + f"; mean validation macro-F1 ablate − way 1: {study_deltas['macro_f1']:+.2f} points, "
            f"accuracy {study_deltas['accuracy']:+.2f}"
            + ("" if comparable else f" — **not equal within ±{TARGET_F1_POINTS:.0f} point**")
            + "; per variant (single seed, so seed noise included): "
            + ", ".join(f"{d:+.1f}" for d in deltas) + " points")
    if {"2", "3"} <= ways.keys():
        def train_s(way: str, variant: str) -> float:
            return train_seconds(ways[way].runs[variant])

        ratios = {v: train_s("3", v) / train_s("2", v) for v in size.variants}
        train_ratio = (sum(train_s("3", v) for v in size.variants)
                       / sum(train_s("2", v) for v in size.variants))
        # ablate's whole trial as the study pays it: from the claim to the result stored, tracker
        # start and finish included; way 2's from its model load to its test predictions.
        trial_ratio = (sum(r["trial_wall_s"] for r in ways["3"].runs.values())
                       / sum(r["runtime_s"] for r in ways["2"].runs.values()))
        lines.append(
            f"- ablate within {100 * TARGET_OVERHEAD:.0f} % of way 2 per trial (whole trials, "
            "summed over the variants, ablate's from claiming the trial to storing its result, "
            f"tracker included): {pass_fail(trial_ratio <= 1 + TARGET_OVERHEAD)} — {trial_ratio:.3f}; "
            f"train time alone, summed: {train_ratio:.3f} (per variant "
            + ", ".join(f"{v} {r:.3f}" for v, r in ratios.items())
            + f"); whole study wall {summaries['3']['wall_s'] / summaries['2']['wall_s']:.2f}×")
    if "3" in ways:
        mfu = summaries["3"]["mfu"]
        lines.append(
            f"- ablate's training ≥ {100 * TARGET_MFU:.0f} % of the measured fp32 matmul rate: "
            f"{pass_fail(mfu >= TARGET_MFU)} — {100 * mfu:.1f} %"
            + ("" if mfu >= TARGET_MFU else f", {TARGET_MFU / mfu:.1f}× short")
            + (f" (against the bf16 rate: {100 * mfu * best['fp32'] / best['bf16']:.1f} %)"
               if "bf16" in best else "")
            + (f"; against the rate of the step's own shapes ({shapes['gflops']:.0f} GFLOP/s): "
               f"{100 * mfu * best['fp32'] / shapes['gflops']:.1f} %" if shapes else ""))
    lines += ["", markers(size.name)[1]]
    return "\n".join(lines) + "\n"


def write_results(section: str, path: Path, size: str) -> None:
    replace_section(path, section, *markers(size))


def publish(section: str, no_write: bool, begin: str, end: str) -> None:
    """Print a benchmark's section and, unless `no_write`, put it in benchmarks/RESULTS.md."""
    print(section)
    if not no_write:
        replace_section(HERE / "RESULTS.md", section, begin, end)


def replace_section(path: Path, section: str, begin: str, end: str) -> None:
    """Put `section` (which starts with `begin` and ends with `end`) in place of the one between
    those markers in the markdown file at `path`, or at its end."""
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmark results\n"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + section.rstrip("\n") + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section
    partial = path.with_name(path.name + ".partial")  # written whole, then renamed: never half a file
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)


# --------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--full", action="store_true", help="the real model: 6 layers, 1600 train")
    group.add_argument("--tiny", action="store_true", help="a smoke run of a few steps")
    parser.add_argument("--ways", nargs="+", choices=("1", "2", "3"), default=["1", "2", "3"],
                        help="run only these ways (the targets need all three)")
    parser.add_argument("--workdir", type=Path, help="keep the runs here (default: a temp folder); "
                        "an existing one's data/, study.json and ablate*/ runs are replaced")
    parser.add_argument("--results", type=Path,
                        help="the markdown file whose study_speed section is replaced (default: "
                        "benchmarks/RESULTS.md; --tiny writes one only when given it)")
    parser.add_argument("--no-write", action="store_true", help="print the section only")
    parser.add_argument("--no-bf16", action="store_true",
                        help="skip the extra `ablate run` with precision bf16")
    parser.add_argument("--note-noisy", action="store_true",
                        help="label the results as taken on a busy machine")
    args = parser.parse_args()
    if args.results is None:  # a smoke run checks the harness: its figures are not results
        args.no_write = args.no_write or args.tiny
        args.results = HERE / "RESULTS.md"
    check_paths(parser, args)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="study_speed-"))
    try:
        run(args, work)
    except KeyboardInterrupt:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
        print(f"study_speed: interrupted; {args.results} left as it was"
              + ("" if args.workdir is None else f", the runs so far in {work}"), file=sys.stderr)
        raise SystemExit(130) from None
    # A way that failed leaves the temporary folder: its message names the log to read there.
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)


def check_paths(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse, before any measuring, a --workdir that is not a folder and a --results that cannot
    be written; make --workdir absolute (the ways' processes run in the repository root)."""
    if args.workdir is not None:
        if args.workdir.exists() and not args.workdir.is_dir():
            parser.error(f"--workdir {args.workdir}: not a folder")
        args.workdir = args.workdir.resolve()
    if not args.no_write:
        if args.results.is_dir():
            parser.error(f"--results {args.results}: a folder; give a markdown file")
        if not args.results.parent.is_dir():
            parser.error(f"--results {args.results}: no folder {args.results.parent}")


def run(args: argparse.Namespace, work: Path) -> None:
    size = SIZES["full" if args.full else "tiny" if args.tiny else "default"]
    started, started_at = time.perf_counter(), dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.path.insert(0, str(ROOT))

    work.mkdir(parents=True, exist_ok=True)
    print(f"study_speed ({size.name}) in {work}", flush=True)
    import torch

    machine = {"cpu": cpu_model(), "cores": os.cpu_count(), "threads": torch.get_num_threads(),
               "memory_gib": memory_gib(), "versions": versions(),
               "command": command_line(),
               "matmul": [matmul_rates()]}
    print("  matmul GFLOP/s: " + json.dumps({d: {n: round(v) for n, v in r.items()}
                                            for d, r in machine["matmul"][0].items()}), flush=True)
    data = prepare_data(size, work / "data")
    data["padding"] = padding_waste(data["train_lengths"], size.batch_size)
    params = parameter_counts(size)
    study = study_file(size, work, data)

    ways: dict[str, Way] = {}
    fixed = None
    if "1" in args.ways:
        ways["1"] = way_usual(size, study, work)
    if "2" in args.ways:
        ways["2"] = way_careful(study, work)
    if "3" in args.ways:
        ways["3"], fixed = way_ablate(size, work)
        if not args.no_bf16 and "bf16" in machine["matmul"][0]:
            ways["bf16"], _ = way_ablate(size, work, "bf16")
    imports_s = import_cost() if "3" in args.ways else None
    profile = step_profile(size, work / "data", len(data["label_names"]))
    machine["matmul"].append(matmul_rates())
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(MODEL)
    padded_per_step = data["padding"]["random"] * data["train_lengths"].mean() * size.batch_size
    machine["step_shapes"] = {
        "tokens": round(padded_per_step),
        "gflops": step_shapes_rate(round(padded_per_step), config.hidden_size, config.intermediate_size)}

    for key, way in ways.items():
        if [r["validation_labels"] for r in way.runs.values()][0] != data["validation_labels"]:
            raise SystemExit(f"way {key} evaluated other validation rows than the harness exported")
    best_fp32 = max(max(m["fp32"].values()) for m in machine["matmul"])
    best_bf16 = max(max(m.get("bf16", {0: 0.0}).values()) for m in machine["matmul"])
    summaries = {k: summarize(w, data, params[0] - params[1], best_bf16 if k == "bf16" else best_fp32)
                 for k, w in ways.items()}
    section = render(args, size, machine, data, ways, summaries, fixed, imports_s, params,
                     profile, started_at, time.perf_counter() - started)
    print(section)
    if not args.no_write:
        write_results(section, args.results, size.name)
        print(f"written: {args.results}")


if __name__ == "__main__":
    main()
