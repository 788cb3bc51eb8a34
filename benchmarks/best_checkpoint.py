"""What a new best checkpoint costs a trial: written to disk, as the Trainer does with
save_strategy="best", against kept in memory, as ablate does where only the trial itself reads it
back (`AblateTrainer.best_in_memory`). Also the load back at the end of training, each way.

An AblateTrainer with MiniLM, then with a randomly initialised BERT-base, saves a
best checkpoint `--saves` times per way, the two ways taking turns so that the machine's drift
touches both alike, into a temporary folder on the same disk as ablate's output; then loads the
best model back. Seconds per call, median and range.

    source ../shared/offline-hf.sh
    python benchmarks/best_checkpoint.py [--saves 8] [--models MiniLM bert-base] [--no-write]

Writes its section of benchmarks/RESULTS.md (between the best_checkpoint markers).
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from study_speed import ROOT, command_line, provenance, publish  # benchmarks/, this script's folder

BEGIN, END = "<!-- best_checkpoint:begin -->", "<!-- best_checkpoint:end -->"
WAYS = {"on disk (the Trainer)": False, "in memory (ablate)": True}


def trainer(model_name: str, folder: Path) -> Any:
    import torch
    from _tweets import MODEL
    from transformers import (
        AutoModelForSequenceClassification,
        BertConfig,
        BertForSequenceClassification,
        TrainingArguments,
    )

    from ablation.train import AblateTrainer

    torch.manual_seed(0)
    model = (BertForSequenceClassification(BertConfig(num_labels=3)) if model_name == "bert-base"
             else AutoModelForSequenceClassification.from_pretrained(MODEL, num_labels=3))
    args = TrainingArguments(output_dir=str(folder), save_strategy="best", save_total_limit=1,
                             save_only_model=True, eval_strategy="steps", eval_steps=1,
                             load_best_model_at_end=True, metric_for_best_model="loss",
                             report_to="none", use_cpu=True)
    return AblateTrainer(model=model, args=args, eval_dataset=[{}])  # evaluation is never run


def measure(model_name: str, saves: int) -> dict[str, dict[str, list[float]]]:
    """Seconds per best-checkpoint save (later saves of a trial: in memory they copy into the host
    tensors of the first) and per load back, for each way."""
    times: dict[str, dict[str, list[float]]] = {way: {"save": [], "load": []} for way in WAYS}
    with tempfile.TemporaryDirectory(dir=ROOT) as tmp:
        t = trainer(model_name, Path(tmp))
        for phase in ("save", "load"):
            for i in range(saves + 1):  # the first round warms up both ways; not counted
                for way in list(WAYS) if i % 2 == 0 else list(WAYS)[::-1]:
                    t.best_in_memory = WAYS[way]
                    t.state.global_step = t.state.best_global_step = 2 * i + 1 + (way == list(WAYS)[1])
                    started = time.perf_counter()
                    t._save_checkpoint(t.model, None)
                    saved = time.perf_counter()
                    if phase == "load":
                        t._load_best_model()  # in memory: the kept weights are released
                    if i:
                        times[way][phase].append((saved - started) if phase == "save"
                                                 else time.perf_counter() - saved)
    return times


PARAMETERS = {"MiniLM": 22.7e6, "bert-base": 109.5e6}


def render(times: dict[str, dict[str, dict[str, list[float]]]], saves: int, command: str,
           started_at: str) -> str:
    """The section: per model and way, seconds per save and per load back, median (range)."""
    lines = [BEGIN, "## The best checkpoint: on disk or in memory (issue 5)", "",
             provenance(command, started_at), "",
             "Seconds per new best checkpoint (`AblateTrainer._save_checkpoint`, weights only) and per "
             f"load back at the end of training (`_load_best_model`), {saves} of each per way, the ways "
             "taking turns; median (range).", "",
             "| model | way | save a new best | load it back |", "|---|---|---|---|"]
    for model, ways in times.items():
        for way, calls in ways.items():
            cells = [f"{statistics.median(s):.3f} ({min(s):.3f}–{max(s):.3f})" for s in calls.values()]
            lines.append(f"| {model} ({PARAMETERS[model] / 1e6:.1f} M parameters) | {way} | "
                         f"{' | '.join(cells)} |")
    return "\n".join(lines + ["", END]) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=list(PARAMETERS), default=list(PARAMETERS))
    parser.add_argument("--saves", type=int, default=8, help="saves per way (default: 8)")
    parser.add_argument("--no-write", action="store_true", help="print the section only")
    args = parser.parse_args()
    started_at = dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    sys.path.insert(0, str(ROOT))
    times = {model: measure(model, args.saves) for model in args.models}
    publish(render(times, args.saves, command_line(), started_at), args.no_write, BEGIN, END)


if __name__ == "__main__":
    main()
