"""Metrics against hand-computed values; class weights; the training loss; tracker keys."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ablation.config import Recipe
from ablation.errors import AblateInputError
from ablation.metrics import classification_metrics, confusion
from ablation.tracking import NullTracker, make_tracker, tracker_keys
from ablation.train import apply_dropout, class_weights, make_loss, resolve_precision

# Six examples, three classes; predictions (argmax): 0, 0, 1, 1, 2, 0
LABELS = np.array([0, 0, 1, 1, 2, 2])
LOGITS = np.array([[2.0, 0, 0], [1, 0, 0], [0, 3, 0], [0, 1, 0], [0, 0, 2], [1, 0, 0]])


def test_metrics_match_hand_computed_values():
    m = classification_metrics(LOGITS, LABELS, ["a", "b", "c"])
    assert m["accuracy"] == pytest.approx(5 / 6)
    # class a: precision 2/3, recall 1 -> f1 0.8; b: 1, 1 -> 1; c: 1, 0.5 -> 2/3
    assert m["f1_a"] == pytest.approx(0.8)
    assert m["f1_b"] == pytest.approx(1.0)
    assert m["f1_c"] == pytest.approx(2 / 3)
    assert m["macro_f1"] == pytest.approx((0.8 + 1 + 2 / 3) / 3)
    assert m["macro_precision"] == pytest.approx((2 / 3 + 1 + 1) / 3)
    assert m["macro_recall"] == pytest.approx((1 + 1 + 0.5) / 3)
    assert m["weighted_f1"] == pytest.approx(m["macro_f1"])  # equal class supports
    probs = np.exp(LOGITS) / np.exp(LOGITS).sum(axis=1, keepdims=True)
    expected_log_loss = -np.mean(np.log(probs[np.arange(6), LABELS]))
    assert m["log_loss"] == pytest.approx(expected_log_loss)


def test_log_loss_is_the_cross_entropy_of_a_model_that_blew_up_too():
    """The same number the eval loss is (no class weights): scikit-learn's log_loss clips each
    example at 36 nats, and read 23.6 beside an eval loss of 345555 (a learning rate of 1e4)."""
    logits = np.array([[1e5, 0.0], [0.0, 3.0]])
    expected = torch.nn.functional.cross_entropy(torch.tensor(logits), torch.tensor([1, 1])).item()
    assert classification_metrics(logits, np.array([1, 1]), ["neg", "pos"])["log_loss"] == \
        pytest.approx(expected)
    assert expected > 4e4


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_outputs_of_a_diverged_model_are_named_as_such(bad):
    logits = np.array([[0.1, 0.9], [bad, 0.0]])
    with pytest.raises(FloatingPointError, match="training diverged"):
        classification_metrics(logits, np.array([1, 0]), ["neg", "pos"])


def test_a_class_never_predicted_scores_zero_without_warnings():
    logits = np.array([[1.0, 0], [1, 0], [1, 0]])
    m = classification_metrics(logits, np.array([0, 1, 0]), ["x", "y"])
    assert m["f1_y"] == 0.0 and m["macro_precision"] == pytest.approx((2 / 3 + 0) / 2)


def test_confusion_rows_are_true_classes():
    assert confusion(LOGITS, LABELS, 3) == [[2, 0, 0], [0, 2, 0], [1, 0, 1]]


def test_balanced_class_weights_follow_scikit_learn_formula():
    labels = np.array([0] * 6 + [1] * 3 + [2] * 1)
    weights = class_weights(Recipe(class_weight="balanced"), labels, 3)
    assert weights.tolist() == pytest.approx([10 / (3 * 6), 10 / (3 * 3), 10 / (3 * 1)])


def test_balanced_weights_leave_a_class_absent_from_train_at_one():
    weights = class_weights(Recipe(class_weight="balanced"), np.array([0, 0, 1, 1]), 3)
    assert weights.tolist() == pytest.approx([1.0, 1.0, 1.0])


def test_explicit_class_weights_must_have_one_per_class():
    assert class_weights(Recipe(class_weight=[1.0, 2.0]), np.array([0, 1]), 2).tolist() == [1, 2]
    with pytest.raises(AblateInputError, match="2 values but the data has 3 classes"):
        class_weights(Recipe(class_weight=[1.0, 2.0]), np.array([0, 1]), 3)
    assert class_weights(Recipe(), np.array([0, 1]), 2) is None


def test_training_loss_is_weighted_and_smoothed_evaluation_loss_plain():
    logits = torch.tensor([[2.0, 0.0], [0.5, 1.5], [0.0, 1.0]], requires_grad=True)
    labels = torch.tensor([0, 1, 1])
    weights = np.array([3.0, 1.0])
    loss_fn = make_loss(weights, label_smoothing=0.1)
    outputs = {"logits": logits}
    train_loss = loss_fn(outputs, labels, num_items_in_batch=3)
    expected = torch.nn.functional.cross_entropy(
        logits, labels, weight=torch.tensor(weights, dtype=torch.float32), label_smoothing=0.1,
        reduction="sum") / 3
    assert train_loss.item() == pytest.approx(expected.item())
    with torch.no_grad():
        eval_loss = loss_fn(outputs, labels, num_items_in_batch=3)
    assert eval_loss.item() == pytest.approx(
        torch.nn.functional.cross_entropy(logits, labels).item())


def test_loss_over_an_accumulated_batch_divides_by_all_its_examples():
    logits = torch.zeros(2, 2, requires_grad=True)
    loss = make_loss(None, 0.0)({"logits": logits}, torch.tensor([0, 1]), num_items_in_batch=4)
    assert loss.item() == pytest.approx(2 * math.log(2) / 4)


def test_dropout_knobs_set_the_model_config(tiny_model_dir):
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(tiny_model_dir)
    apply_dropout(config, Recipe(dropout=0.3, classifier_dropout=0.25))
    assert config.hidden_dropout_prob == 0.3 and config.attention_probs_dropout_prob == 0.3
    assert config.classifier_dropout == 0.25


def test_dropout_on_a_config_without_dropout_keys_is_bad_input():
    class NoDropout:
        pass

    with pytest.raises(AblateInputError, match="knob 'dropout'"):
        apply_dropout(NoDropout(), Recipe(dropout=0.3))


def test_auto_precision_is_fp32_on_cpu():
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert resolve_precision("auto") == "fp32"
    assert resolve_precision("bf16") == "bf16"


def test_tracker_keys_group_panels_and_drop_non_numbers():
    logs = {"loss": 0.5, "grad_norm": 1.2, "eval_macro_f1": 0.7, "eval_loss": 0.6,
            "test_accuracy": 0.8, "validation_loss": 0.55, "epoch": 1.0, "note": "x", "flag": True,
            "train_loss": 0.9, "train_runtime": 12.0, "total_flos": 3.0}
    assert tracker_keys(logs) == {
        "train/loss": 0.5, "train/grad_norm": 1.2, "eval/macro_f1": 0.7, "eval/loss": 0.6,
        "test/accuracy": 0.8, "validation/loss": 0.55, "train/epoch": 1.0,
        "summary/train_loss": 0.9, "summary/train_runtime": 12.0, "summary/total_flos": 3.0}


def test_backend_none_gives_a_tracker_that_does_nothing(tmp_path):
    from ablation.config import TrackingSpec

    tracker = make_tracker(TrackingSpec(backend="none"), tmp_path)
    assert isinstance(tracker, NullTracker)
    tracker.start("x", "g", {})
    tracker.log({"a": 1.0}, step=1)
    tracker.finish()
    assert not any(tmp_path.iterdir())


def test_swanlab_runs_finish_as_success_or_crashed(tmp_path):
    import sqlite3

    from ablation.config import TrackingSpec

    tracker = make_tracker(TrackingSpec(backend="swanlab", project="t", mode="local"), tmp_path)
    for name, error in (("ok", None), ("broken", "RuntimeError: boom")):
        tracker.start(name, "group", {"variant": name})
        tracker.log({"train/loss": 1.0}, step=1)
        tracker.finish(error=error)
    with sqlite3.connect(tmp_path / "swanlog" / "runs.swanlab") as db:
        rows = list(db.execute("select name, status from experiment order by id"))
    assert rows[0] == ("ok", 1)
    assert rows[1][0] == "broken" and rows[1][1] != 1


def test_evaluation_sets_are_sorted_by_length_and_predictions_come_back_in_order():
    from datasets import Dataset
    from transformers.trainer_utils import PredictionOutput

    from ablation.data import sorted_by_length
    from ablation.train import predict_in_order

    ids = [[1] * n for n in (5, 2, 9, 2, 7, 1)]
    dataset = Dataset.from_dict({"input_ids": ids, "label": [0, 1, 2, 0, 1, 2]})
    by_length, restore = sorted_by_length(dataset)
    assert [len(x) for x in by_length["input_ids"]] == [1, 2, 2, 5, 7, 9]

    class EchoTrainer:  # predicts each example's own length, as a one-column "logit"
        def predict(self, data, metric_key_prefix):
            lengths = np.array([[len(x)] for x in data["input_ids"]], dtype=float)
            return PredictionOutput(lengths, np.array(data["label"]), {})

    output = predict_in_order(EchoTrainer(), by_length, restore, "eval")
    assert output.predictions[:, 0].tolist() == [5, 2, 9, 2, 7, 1]
    assert output.label_ids.tolist() == [0, 1, 2, 0, 1, 2]


def test_evaluation_sets_are_sorted_once_per_study_not_once_per_trial():
    from datasets import Dataset

    from ablation.data import TokenizedData, with_train_size

    def split(lengths):
        return Dataset.from_dict({"input_ids": [[1] * n for n in lengths], "label": [0] * len(lengths)})

    data = TokenizedData(train=split([3, 1, 2, 4]), validation=split([5, 2, 9]), test=split([4, 1]),
                         label_names=["a", "b"], train_labels=np.array([0, 1, 0, 1]))
    validation, restore = data.by_length("validation")
    assert [len(x) for x in validation["input_ids"]] == [2, 5, 9] and restore.tolist() == [1, 0, 2]
    assert data.by_length("validation")[0] is validation  # a second trial reuses the sorted set
    smaller = with_train_size(data, 2)  # a max_train_samples variant shares validation and test
    assert len(smaller.train_labels) == 2 and smaller.by_length("validation")[0] is validation
    assert [len(x) for x in smaller.by_length("test")[0]["input_ids"]] == [1, 4]
    assert data.by_length("test")[0] is smaller.by_length("test")[0]


def test_step_bars_are_the_trainers_tqdm_and_off_by_default(write_experiment, tmp_path):
    from ablation.config import load_spec
    from ablation.train import training_arguments

    spec = load_spec(write_experiment())
    assert training_arguments(spec.baseline, spec, 1, tmp_path).disable_tqdm is True
    assert training_arguments(spec.baseline, spec, 1, tmp_path, step_bars=True).disable_tqdm is False


def test_group_by_length_picks_the_trainers_length_grouped_sampler(write_experiment, tmp_path):
    from ablation.config import load_spec
    from ablation.train import training_arguments

    spec = load_spec(write_experiment(variants="grouped = { group_by_length = true }\n"))
    assert spec.variants["grouped"] == {"group_by_length": True}
    grouped = Recipe(**{**spec.baseline.to_dict(), "group_by_length": True})
    assert training_arguments(grouped, spec, 1, tmp_path).train_sampling_strategy == "group_by_length"
    assert training_arguments(spec.baseline, spec, 1, tmp_path).train_sampling_strategy == "random"
