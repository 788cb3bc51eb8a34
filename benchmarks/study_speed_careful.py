"""Way 2 of benchmarks/study_speed.py: a careful hand-written Trainer script.

Every variant of the study in one process; the data tokenized once without padding and padded per
batch (DataCollatorWithPadding); the same TrainingArguments as ablate (evaluation batch 64, keep only
the best checkpoint, no optimizer state saved). No tracker, no study storage: what ablate adds on top
of this is what the comparison measures.

    python benchmarks/study_speed_careful.py STUDY.json OUT.json
"""

from __future__ import annotations

import time

STARTED = time.perf_counter()

import json  # noqa: E402
import resource  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from _trainer_figures import trainer_figures  # noqa: E402  (benchmarks/, this script's folder)
from datasets import Dataset  # noqa: E402
from sklearn.metrics import accuracy_score, f1_score  # noqa: E402
from sklearn.utils.class_weight import compute_class_weight  # noqa: E402
from transformers import (  # noqa: E402
    AutoConfig,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    Trainer,
    TrainingArguments,
    set_seed,
)
from transformers.utils import logging as hf_logging  # noqa: E402

IMPORTED = time.perf_counter()


class CountingCollator(DataCollatorWithPadding):
    """Dynamic padding that also counts the padded tokens of training batches."""

    counting = True
    padded_tokens = 0

    def __call__(self, features):  # type: ignore[no-untyped-def]
        batch = super().__call__(features)
        if self.counting:
            self.padded_tokens += int(batch["input_ids"].numel())
        return batch


class MeasuredTrainer(Trainer):
    """Stops the padded-token count while evaluating."""

    def evaluation_loop(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        collator = self.data_collator
        collator.counting = False
        try:
            return super().evaluation_loop(*args, **kwargs)
        finally:
            collator.counting = True


def compute_metrics(prediction):  # type: ignore[no-untyped-def]
    predictions = prediction.predictions.argmax(-1)
    return {"accuracy": accuracy_score(prediction.label_ids, predictions),
            "macro_f1": f1_score(prediction.label_ids, predictions, average="macro")}


def weighted_loss(weights: np.ndarray):  # type: ignore[no-untyped-def]
    weight = torch.tensor(weights, dtype=torch.float32)

    def loss_fn(outputs, labels, num_items_in_batch=None):  # type: ignore[no-untyped-def]
        logits = outputs["logits"].float()
        if not torch.is_grad_enabled():  # evaluation: plain cross-entropy, as ablate
            return F.cross_entropy(logits, labels)
        loss = F.cross_entropy(logits, labels, weight=weight, reduction="sum")
        return loss / (num_items_in_batch if num_items_in_batch is not None else labels.numel())

    return loss_fn


def main() -> None:
    study = json.loads(Path(sys.argv[1]).read_text())
    out_path = Path(sys.argv[2])
    hf_logging.set_verbosity_error()
    data_dir, work = Path(study["data_dir"]), Path(study["work_dir"]) / "careful"

    t = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(study["model"])
    splits = {name: Dataset.from_pandas(pd.read_json(data_dir / f"{name}.jsonl", lines=True))
              for name in ("train", "validation", "test")}
    tokenized = {name: ds.map(lambda b: tokenizer(b["text"], truncation=True,
                                                  max_length=study["max_length"]),
                              batched=True, remove_columns=["text"]).rename_column("label", "labels")
                 for name, ds in splits.items()}
    tokenize_s = time.perf_counter() - t
    train_labels = np.asarray(splits["train"]["label"])
    n_classes = len(study["label_names"])
    collator = CountingCollator(tokenizer)

    runs = {}
    for name, overrides in study["variants"].items():
        started = time.perf_counter()
        recipe = {**study["recipe"], **overrides}
        set_seed(study["seed"])
        config = AutoConfig.from_pretrained(study["model"], num_labels=n_classes,
                                            **study["model_config"])
        if recipe.get("dropout") is not None:
            config.hidden_dropout_prob = config.attention_probs_dropout_prob = recipe["dropout"]
        model = AutoModelForSequenceClassification.from_pretrained(study["model"], config=config)
        model_load_s = time.perf_counter() - started
        loss = None
        if recipe.get("class_weight") == "balanced":
            loss = weighted_loss(compute_class_weight(
                "balanced", classes=np.arange(n_classes), y=train_labels))
        args = TrainingArguments(
            output_dir=str(work / name), per_device_train_batch_size=recipe["batch_size"],
            per_device_eval_batch_size=recipe["eval_batch_size"],
            learning_rate=recipe["learning_rate"], num_train_epochs=recipe["epochs"],
            lr_scheduler_type="linear", warmup_steps=0.0, weight_decay=0.0, max_grad_norm=1.0,
            logging_strategy="steps", logging_steps=recipe["logging_steps"], logging_first_step=True,
            eval_strategy="steps", eval_steps=recipe["eval_steps"], save_strategy="best",
            save_total_limit=1, save_only_model=True, load_best_model_at_end=True,
            metric_for_best_model="macro_f1", greater_is_better=True, seed=study["seed"],
            data_seed=study["seed"], report_to="none", disable_tqdm=True,
            dataloader_num_workers=0, use_cpu=True)
        collator.padded_tokens = 0
        trainer = MeasuredTrainer(
            model=model, args=args, train_dataset=tokenized["train"],
            eval_dataset=tokenized["validation"], processing_class=tokenizer,
            data_collator=collator, compute_metrics=compute_metrics, compute_loss_func=loss)
        train = trainer.train()
        val = trainer.predict(tokenized["validation"], metric_key_prefix="eval")
        test = trainer.predict(tokenized["test"], metric_key_prefix="test")
        runs[name] = {"model_load_s": model_load_s, **trainer_figures(trainer, train, val, test),
                      "padded_train_tokens": collator.padded_tokens,
                      "runtime_s": time.perf_counter() - started}
        shutil.rmtree(work / name, ignore_errors=True)
        del trainer, model
    out_path.write_text(json.dumps({
        "import_s": IMPORTED - STARTED, "tokenize_s": tokenize_s, "runs": runs,
        "wall_in_process_s": time.perf_counter() - STARTED,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}, indent=1))


if __name__ == "__main__":
    main()
