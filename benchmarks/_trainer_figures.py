"""What study_speed.py's way-1 and way-2 scripts measure of one trained variant (harness code, not
part of either way): the Trainer's timings and the best checkpoint's validation and test scores."""

from __future__ import annotations

from typing import Any


def trainer_figures(trainer: Any, train: Any, val: Any, test: Any) -> dict[str, Any]:
    """From trainer.train()'s output and the final predict() on validation and test."""
    return {
        "train_runtime_s": train.metrics["train_runtime"],
        "in_train_eval_s": sum(e["eval_runtime"] for e in trainer.state.log_history
                               if "eval_runtime" in e),
        "evaluations": sum("eval_runtime" in e for e in trainer.state.log_history),
        "steps": trainer.state.global_step,
        "validation": {k: val.metrics[f"eval_{k}"] for k in ("accuracy", "macro_f1")},
        "validation_s": val.metrics["eval_runtime"],
        "validation_samples_per_s": val.metrics["eval_samples_per_second"],
        "test": {k: test.metrics[f"test_{k}"] for k in ("accuracy", "macro_f1")},
        "test_s": test.metrics["test_runtime"],
        "validation_labels": val.label_ids.tolist(),
    }
