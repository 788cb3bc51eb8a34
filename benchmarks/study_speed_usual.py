"""Way 1 of benchmarks/study_speed.py: "the usual way", one variant per process.

A fine-tuning script as the Hugging Face tutorials write it: pad every text to the model's 512
tokens (`padding="max_length"`), tokenize the data in every run, Trainer defaults otherwise
(evaluation batch 8, a full checkpoint with optimizer state at every evaluation,
`load_best_model_at_end`). Like Hugging Face's own `run_glue.py` example it calls `set_seed` before
building the model: without it the new classification head starts from other random weights in
every process, and the way's scores moved 1.8 points of macro-F1 between two runs of the same
study. Steps, learning rate, batch size, evaluation points and the final
evaluation (best checkpoint on validation, then test) are the study's, so the metrics compare with
ablate's. Class weights use the tutorials' Trainer subclass with a weighted `compute_loss`.

    python benchmarks/study_speed_usual.py STUDY.json VARIANT OUT.json
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
from _trainer_figures import trainer_figures  # noqa: E402  (benchmarks/: the harness's, not the tutorial's)
from datasets import Dataset  # noqa: E402
from sklearn.metrics import accuracy_score, f1_score  # noqa: E402
from sklearn.utils.class_weight import compute_class_weight  # noqa: E402
from transformers import (  # noqa: E402
    AutoModelForSequenceClassification,
    AutoTokenizer,
    Trainer,
    TrainingArguments,
    set_seed,
)

IMPORTED = time.perf_counter()


def compute_metrics(eval_pred):  # type: ignore[no-untyped-def]
    logits, labels = eval_pred
    predictions = np.argmax(logits, axis=-1)
    return {"accuracy": accuracy_score(labels, predictions),
            "macro_f1": f1_score(labels, predictions, average="macro")}


class WeightedTrainer(Trainer):
    class_weights: torch.Tensor

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):  # type: ignore[no-untyped-def]
        labels = inputs.pop("labels")
        outputs = model(**inputs)
        loss = torch.nn.CrossEntropyLoss(weight=self.class_weights)(outputs.logits, labels)
        return (loss, outputs) if return_outputs else loss


def main() -> None:
    study = json.loads(Path(sys.argv[1]).read_text())
    variant, out_path = sys.argv[2], Path(sys.argv[3])
    recipe = {**study["recipe"], **study["variants"][variant]}
    data_dir = Path(study["data_dir"])
    output_dir = Path(study["work_dir"]) / "usual" / variant

    t = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(study["model"])
    dataset = {name: Dataset.from_pandas(pd.read_json(data_dir / f"{name}.jsonl", lines=True))
               for name in ("train", "validation", "test")}

    def tokenize(batch):  # type: ignore[no-untyped-def]
        return tokenizer(batch["text"], padding="max_length", truncation=True, max_length=512)

    dataset = {name: ds.map(tokenize, batched=True) for name, ds in dataset.items()}
    tokenize_s = time.perf_counter() - t

    t = time.perf_counter()
    set_seed(study["seed"])
    extra = dict(study["model_config"])
    if recipe.get("dropout") is not None:
        extra.update(hidden_dropout_prob=recipe["dropout"],
                     attention_probs_dropout_prob=recipe["dropout"])
    model = AutoModelForSequenceClassification.from_pretrained(
        study["model"], num_labels=len(study["label_names"]), **extra)
    model_load_s = time.perf_counter() - t

    training_args = TrainingArguments(
        output_dir=str(output_dir),
        learning_rate=recipe["learning_rate"],
        per_device_train_batch_size=recipe["batch_size"],
        num_train_epochs=recipe["epochs"],
        eval_strategy="steps",
        eval_steps=recipe["eval_steps"],
        save_strategy="steps",
        save_steps=recipe["eval_steps"],
        load_best_model_at_end=True,
        metric_for_best_model="macro_f1",
        seed=study["seed"],
    )
    trainer_class = Trainer
    if recipe.get("class_weight") == "balanced":
        labels = np.asarray(dataset["train"]["label"])
        classes = np.arange(len(study["label_names"]))
        WeightedTrainer.class_weights = torch.tensor(
            compute_class_weight("balanced", classes=classes, y=labels), dtype=torch.float32)
        trainer_class = WeightedTrainer
    trainer = trainer_class(
        model=model, args=training_args, train_dataset=dataset["train"],
        eval_dataset=dataset["validation"], compute_metrics=compute_metrics)
    train = trainer.train()
    val = trainer.predict(dataset["validation"], metric_key_prefix="eval")
    test = trainer.predict(dataset["test"], metric_key_prefix="test")
    result = {
        "import_s": IMPORTED - STARTED, "tokenize_s": tokenize_s, "model_load_s": model_load_s,
        **trainer_figures(trainer, train, val, test),
        "padded_train_tokens": len(dataset["train"]) * 512 * recipe["epochs"],
        "checkpoint_mb": sum(f.stat().st_size for f in output_dir.rglob("*") if f.is_file()) / 2**20,
        "wall_in_process_s": time.perf_counter() - STARTED,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    shutil.rmtree(output_dir, ignore_errors=True)  # the harness's clean-up, not the tutorial's
    out_path.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
