"""Classification metrics from logits: scikit-learn's, and the log loss from scipy's log_softmax."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.special import log_softmax
from sklearn import metrics as skm

SCALAR_METRICS = (
    "accuracy", "macro_f1", "weighted_f1", "macro_precision", "macro_recall",
    "weighted_precision", "weighted_recall", "log_loss",
)


def metric_range(metric: str) -> tuple[float, float]:
    """The values a metric can take (scores in [0, 1], losses from 0 up): an interval over a few
    seeds is clipped to them, since a t-interval knows no bounds."""
    if metric.endswith("loss"):
        return 0.0, np.inf
    if metric in SCALAR_METRICS or metric.startswith("f1_"):
        return 0.0, 1.0
    return -np.inf, np.inf


def classification_metrics(logits: np.ndarray, labels: np.ndarray,
                           label_names: list[str]) -> dict[str, float]:
    """Scalar metrics (the selection metric is one of them) plus one F1 per class."""
    logits = np.asarray(logits, dtype=np.float64)
    if not np.isfinite(logits).all():  # scikit-learn would say only "Input contains NaN"
        raise FloatingPointError(
            "the model's outputs are NaN or infinite: training diverged (a lower learning_rate, "
            "or max_grad_norm, keeps it stable)")
    labels = np.asarray(labels)
    classes = list(range(len(label_names)))
    predictions = logits.argmax(axis=-1)
    out: dict[str, float] = {"accuracy": skm.accuracy_score(labels, predictions)}
    for average in ("macro", "weighted"):
        precision, recall, f1, _ = skm.precision_recall_fscore_support(
            labels, predictions, labels=classes, average=average, zero_division=0)
        out[f"{average}_precision"], out[f"{average}_recall"], out[f"{average}_f1"] = (
            precision, recall, f1)
    # The mean cross-entropy, exact: scikit-learn's log_loss clips probabilities at float
    # epsilon (36 nats an example), so a model that blew up read 23.6 beside an eval loss of 3e5.
    picked = np.take_along_axis(log_softmax(logits, axis=-1), labels.astype(np.int64)[:, None], -1)
    out["log_loss"] = -picked.mean()
    per_class = skm.f1_score(labels, predictions, labels=classes, average=None, zero_division=0)
    for name, score in zip(label_names, per_class, strict=False):
        out[f"f1_{name}"] = score
    return {key: float(value) for key, value in out.items()}


def confusion(logits: np.ndarray, labels: np.ndarray, n_classes: int) -> list[list[int]]:
    """Rows are true classes, columns predicted ones."""
    predictions = np.asarray(logits).argmax(axis=-1)
    matrix = skm.confusion_matrix(labels, predictions, labels=list(range(n_classes)))
    return matrix.tolist()


def trainer_metrics(label_names: list[str]) -> Any:
    """`compute_metrics` for the transformers Trainer."""

    def compute(prediction: Any) -> dict[str, float]:
        logits = prediction.predictions
        if isinstance(logits, tuple):
            logits = logits[0]
        return classification_metrics(logits, prediction.label_ids, label_names)

    return compute
