"""How far `ablate run`'s training gets towards the CPU's matmul rate when the recipe changes how
much of each step is matrix products: random against length-grouped batches, batch 16, 32 and 64;
and whether those recipes cost accuracy beyond what another seed moves it.

The study is study_speed.py's `--full` one (MiniLM, 6 layers, 1,600 training tweets, lr 1e-4, one
epoch, SwanLab local tracking); each recipe is one variant of it, so every variant trains on the same
tweets once, with each of `--seeds`. Utilisation (MFU) is study_speed's: 6 × non-embedding
parameters × real (non-pad) tokens trained / training time without the evaluations inside it / the
best fp32 matmul rate; the padded tokens per real one are simulated for each sampler and batch (20
shuffles). The rate (the best of four square sizes) is measured before and after the study, and
between the steps of every trial (`_rate_probe.py`: the sizes in turn, warm products timed after
an optimizer step, their time taken out of the training time). This virtual machine's speed
drifts by a quarter within seconds, so the last, measured in the same seconds as the training, is
the one the utilisation target is read against; `--no-probe` runs `ablate run` without them.
`--repeats N` runs the study N times per seed: each run's MFU against the rate between its own
steps, their mean and range (one run moves by several points with the machine).
Accuracy is reported beside it: these are recipe changes, which a study should ablate,
not free speed-ups.

`--model bert-base` trains a randomly initialised BERT-base (`BertConfig()`: 12 layers, hidden 768,
85 M parameters outside the embeddings) instead, saved to a local folder with MiniLM's tokenizer (the
same vocabulary): its layers are twice as wide, so matrix products are a larger share of each step.
Its accuracy after one epoch from random weights means nothing and is left out.

    source ../shared/offline-hf.sh
    python benchmarks/mfu_recipes.py [--seeds 42 43 44] [--model bert-base] [--layers 2] [--train 384]
                                     [--recipes [grouped bs32 ...]] [--repeats 5] [--no-probe]

Writes its section of benchmarks/RESULTS.md (between the mfu_recipes markers, one pair per model).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from study_speed import (  # benchmarks/, this script's folder
    MODEL,
    ROOT,
    SEED,
    SIZES,
    command_line,
    matmul_rates,
    padding_waste,
    parameter_counts,
    prepare_data,
    provenance,
    publish,
    train_seconds,
    utilisation,
    way_ablate,
)

RECIPES: dict[str, dict[str, Any]] = {
    "baseline": {},
    "grouped": {"group_by_length": True},
    "bs32": {"batch_size": 32},
    "grouped-bs32": {"group_by_length": True, "batch_size": 32},
    "grouped-bs64": {"group_by_length": True, "batch_size": 64},
}
MODELS = ("minilm", "bert-base")


def markers(model: str) -> tuple[str, str]:
    """The comments around this model's section of RESULTS.md (MiniLM keeps its first ones)."""
    name = "mfu_recipes" if model == "minilm" else f"mfu_recipes:{model}"
    return f"<!-- {name}:begin -->", f"<!-- {name}:end -->"


def random_bert_base(folder: Path) -> Path:
    """A randomly initialised BERT-base classifier (3 labels) with MiniLM's tokenizer, saved to `folder`."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    torch.manual_seed(SEED)
    BertForSequenceClassification(BertConfig(num_labels=3)).save_pretrained(folder)
    AutoTokenizer.from_pretrained(MODEL).save_pretrained(folder)
    return folder


def probed_seconds(run: dict[str, Any]) -> float:
    """A run's training time without the evaluations inside it nor the rate probes between steps."""
    return train_seconds(run) - run.get("probe", {}).get("seconds", 0.0)


def probe_rate(runs: list[dict[str, Any]]) -> float | None:
    """The best fp32 matmul rate (GFLOP/s) of the sizes timed between these runs' steps (per size,
    all its products together), or None when none was."""
    timed: dict[str, list[float]] = {}
    for run in runs:
        for size, measured in run.get("probe", {}).get("sizes", {}).items():
            seconds, flops = timed.setdefault(size, [0.0, 0.0])
            timed[size] = [seconds + measured["seconds"], flops + measured["flops"]]
    return max((flops / seconds / 1e9 for seconds, flops in timed.values() if seconds), default=None)


def render(size: Any, model: str, runs: dict[Any, dict[str, dict[str, Any]]], data: dict[str, Any],
           nonembedding: int, rate: float, command: str, started_at: str,
           rate_after: float | None = None) -> str:
    """The section: per recipe, training time, tokens/s and MFU averaged over the runs, and (for the
    pretrained MiniLM) validation macro-F1's mean and its range over them. `runs` are keyed by
    seed, or by (seed, repeat) where each seed ran more than once (`--repeats`). `rate_after`:
    the rate measured again after the runs, shown beside the first (a shared machine's speed
    drifts). Where the runs carry rate probes (`_rate_probe.py`), each recipe's rate between its
    steps and its MFU against that rate too: each run's against its own rate, their mean and
    range where there are several."""
    real = int(data["train_lengths"].sum())
    keys = sorted(runs)
    seeds = sorted({key[0] if isinstance(key, tuple) else key for key in keys})
    repeats = len(keys) // len(seeds)
    accuracy = model == "minilm"
    probed = probe_rate([run for per_recipe in runs.values() for run in per_recipe.values()]) is not None
    described = (f"study_speed's `{size.name}` one ({size.layers or 6} layers" if accuracy else
                 "study_speed's `full` one with a randomly initialised BERT-base "
                 f"({size.layers or 12} layers, hidden 768")
    title = "" if accuracy else ", BERT-base width"
    begin, end = markers(model)
    lines = [
        begin,
        f"## Training utilisation by recipe: length grouping and batch size{title} (issue 5)",
        "",
        provenance(command, started_at),
        "",
        f"Study: {described}, {size.train} training tweets averaging "
        f"{data['train_lengths'].mean():.1f} tokens, lr {size.learning_rate:g}, 1 epoch, fp32; "
        f"{nonembedding / 1e6:.1f} M parameters outside the embeddings); each recipe one variant, "
        f"seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}"
        + (f", each run {repeats} times" if repeats > 1 else "") + ". MFU: 6 × non-embedding "
        "parameters × real tokens / training time (evaluations inside it excluded) / "
        f"{rate:.0f} GFLOP/s (the best fp32 matmul rate measured at the start"
        + (f"; {rate_after:.0f} GFLOP/s measured again at the end)" if rate_after else ")")
        + ("; train time, tokens/s and MFU are means over the runs." if len(keys) > 1 else ".")
        + (" Rate between steps: the best fp32 matmul rate of the same sizes measured between the "
           "recipe's training steps (`_rate_probe.py`), the probes' time taken out of the train time; "
           "the MFU against it is the one measured in the same seconds as the training"
           + (" (each run's against its own rate: their mean, and their range in brackets)."
              if len(keys) > 1 else ".") if probed else ""),
        "",
        "| recipe | batch | sampler | padded / real tokens | steps | train time | real tokens/s | MFU |"
        + (" rate between steps | MFU against it |" if probed else "")
        + (" val macro-F1 |" if accuracy else ""),
        "|---|---|---|---|---|---|---|---|" + ("---|---|" if probed else "") + ("---|" if accuracy else ""),
    ]
    for name, recipe in RECIPES.items():
        if name not in runs[keys[0]]:
            continue  # not asked for (--recipes)
        per_run = [runs[key][name] for key in keys]
        batch = recipe.get("batch_size", size.batch_size)
        grouped = recipe.get("group_by_length", False)
        waste = padding_waste(data["train_lengths"], batch)["grouped" if grouped else "random"]
        train_s = sum(probed_seconds(run) for run in per_run) / len(per_run)
        mfu = utilisation(nonembedding, real, train_s, rate)
        row = (f"| {name} | {batch} | {'length-grouped' if grouped else 'random'} | {waste:.2f} | "
               f"{per_run[0]['steps']} | {train_s:.1f} s | {real / train_s:.0f} | {mfu:.1%} |")
        if probed:
            between = probe_rate(per_run)
            each = [utilisation(nonembedding, real, probed_seconds(run), rated)
                    for run in per_run if (rated := probe_rate([run]))]
            spread = f" ({min(each):.1%}–{max(each):.1%})" if len(each) > 1 else ""
            row += (f" {between:.0f} GFLOP/s | {sum(each) / len(each):.1%}{spread} |" if each else " | |")
        if accuracy:
            f1 = [run["validation"]["macro_f1"] for run in per_run]
            spread = f" ({min(f1):.4f}–{max(f1):.4f})" if len(f1) > 1 else ""
            row += f" {sum(f1) / len(f1):.4f}{spread} |"
        lines.append(row)
    return "\n".join(lines + ["", end]) + "\n"


def measure(work: Path) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=MODELS, default="minilm",
                        help="the pretrained MiniLM (default) or a randomly initialised BERT-base")
    parser.add_argument("--seeds", type=int, nargs="+", default=[SEED], help="seeds (default: 42)")
    parser.add_argument("--layers", type=int, help="cut the model to N layers (default: all of its own)")
    parser.add_argument("--train", type=int, help="training tweets (default: 1600)")
    parser.add_argument("--recipes", nargs="*", choices=[name for name in RECIPES if name != "baseline"],
                        help="the recipes besides the baseline (default: all; none: the baseline alone)")
    parser.add_argument("--repeats", type=int, default=1,
                        help="run the study this many times per seed (MFU's mean and range over the runs)")
    parser.add_argument("--no-probe", action="store_true",
                        help="no matmul rate probes between training steps")
    parser.add_argument("--no-write", action="store_true", help="print the section only")
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error(f"--repeats {args.repeats}: give 1 or more")
    size = SIZES["full"]
    size = dataclasses.replace(size, layers=args.layers or size.layers, train=args.train or size.train)
    started_at = dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.path.insert(0, str(ROOT))
    if args.model == "bert-base":
        size = dataclasses.replace(size, model=str(random_bert_base(work / "bert-base")))
    rate = max(matmul_rates()["fp32"].values())
    data = prepare_data(size, work / "data")
    total, embedding = parameter_counts(size)
    probes = work / "probes.jsonl"
    ablate = None if args.no_probe else [sys.executable, str(Path(__file__).with_name("_rate_probe.py")),
                                         str(probes)]
    variants = {name: recipe for name, recipe in RECIPES.items()
                if name == "baseline" or args.recipes is None or name in args.recipes}
    runs: dict[Any, dict[str, dict[str, Any]]] = {}
    for seed in args.seeds:
        for repeat in range(args.repeats):
            key: Any = (seed, repeat) if args.repeats > 1 else seed
            name = f"mfu-s{seed}-r{repeat}" if args.repeats > 1 else f"mfu-s{seed}"
            runs[key] = way_ablate(size, work, name=name, variants=variants, seed=seed, ablate=ablate)[0].runs
    if probes.exists():
        by_key = {(record := json.loads(line))["key"]: record for line in probes.read_text().splitlines()}
        for per_recipe in runs.values():
            for run in per_recipe.values():
                run["probe"] = by_key.get(run["key"], {})
    rate_after = max(matmul_rates()["fp32"].values())
    section = render(size, args.model, runs, data, total - embedding, rate, command_line(), started_at,
                     rate_after)
    publish(section, args.no_write, *markers(args.model))


def main() -> None:
    # Removed at the end, stopped or not: the studies' databases, checkpoints and SwanLab folders.
    with tempfile.TemporaryDirectory(prefix="mfu_recipes-", ignore_cleanup_errors=True) as work:
        measure(Path(work))


if __name__ == "__main__":
    main()
