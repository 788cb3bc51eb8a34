"""Diagnosis rules on synthetic curves: each pattern is found with its numbers, and a clean run is quiet."""

from __future__ import annotations

import dataclasses
import math

import pytest

from ablation.report.diagnosis import Finding, diagnose, shared_findings

LABELS = ["neg", "neu", "pos"]
LOG_EVERY = 10  # steps between train log points
STEPS_PER_EPOCH = 250
BALANCED = [[50, 3, 2], [4, 40, 6], [1, 5, 60]]


def train_points(losses: list[float], grads: list[float] | None = None) -> list[dict]:
    """One train log point every LOG_EVERY steps; grad norms steady at 2.0 unless given."""
    grads = grads if grads is not None else [2.0] * len(losses)
    return [{"step": (i + 1) * LOG_EVERY, "epoch": (i + 1) * LOG_EVERY / STEPS_PER_EPOCH, "loss": loss,
             "grad_norm": grad, "learning_rate": 2e-5}
            for i, (loss, grad) in enumerate(zip(losses, grads, strict=True))]


def eval_points(losses: list[float], every: int = 50) -> list[dict]:
    return [{"step": (i + 1) * every, "epoch": (i + 1) * every / STEPS_PER_EPOCH, "loss": loss,
             "accuracy": 0.8, "macro_f1": 0.78, "f1_neg": 0.8, "f1_neu": 0.7, "f1_pos": 0.85}
            for i, loss in enumerate(losses)]


def decaying(n: int, start: float = 1.1, floor: float = 0.3, rate: float = 5.0) -> list[float]:
    """A loss that falls smoothly and flattens out: a converged run."""
    return [floor + (start - floor) * math.exp(-i / rate) for i in range(n)]


def result(history: list[dict] | None = None, evals: list[dict] | None = None,
           confusion: list[list[int]] | None = None) -> dict:
    """A clean, converged 400-step run unless parts are replaced."""
    return {"history": train_points(decaying(40), [2.0 + 0.3 * math.sin(i) for i in range(40)])
            if history is None else history,
            "eval_history": eval_points(decaying(8, 0.9, 0.45, 1.0)) if evals is None else evals,
            "validation_confusion": BALANCED if confusion is None else confusion, "best_step": 400}


def kinds(findings: list[Finding]) -> list[str]:
    return [f.kind for f in findings]


def only(findings: list[Finding], kind: str) -> Finding:
    assert kinds(findings) == [kind], [f.sentence for f in findings]
    return findings[0]


# --------------------------------------------------------------------------- clean and degenerate input


def test_clean_converged_run_has_no_finding():
    assert diagnose(result(), LABELS) == []


@pytest.mark.parametrize("stored", [
    {},
    {"history": None, "eval_history": None, "validation_confusion": None},
    {"history": "nonsense", "eval_history": 3, "validation_confusion": [[1, 2], [3]]},
    {"history": [{"step": 10}, {"epoch": 0.1}, None, {"loss": None}, {"grad_norm": "x"}]},
    {"history": train_points([0.7, math.nan, 5.0]), "eval_history": eval_points([0.4, 0.3, 0.6])},
    {"history": train_points([0.7, 0.5, 0.3], [1.0, 50.0, 1.0]),
     "eval_history": eval_points([0.5, 0.4, 0.3])},
])
def test_short_curves_and_missing_keys_give_no_finding(stored):
    assert diagnose(stored, LABELS) == []


def test_not_a_mapping_gives_no_finding():
    assert diagnose(None, LABELS) == []  # type: ignore[arg-type]


def test_points_without_grad_norm_or_epoch_are_read():
    history = [{"step": p["step"], "loss": p["loss"]} for p in result()["history"]]
    assert diagnose(result(history=history), LABELS) == []


def test_finding_is_frozen():
    finding = only(diagnose(result(confusion=[[5, 0], [3, 0]]), ["a", "b"]), "class_collapse")
    with pytest.raises(dataclasses.FrozenInstanceError):
        finding.kind = "other"  # type: ignore[misc]


# --------------------------------------------------------------------------- divergence


def test_nan_loss_is_divergence():
    losses = decaying(40)
    losses[25] = math.nan
    finding = only(diagnose(result(history=train_points(losses)), LABELS), "divergence")
    assert finding.numbers["step"] == 260 and finding.numbers["non_finite_loss"] == 1.0
    assert "training loss became nan at step 260 (epoch 1.04)" in finding.sentence
    assert "max_grad_norm" in finding.suggestion and "learning rate" in finding.suggestion


def test_inf_grad_norm_is_divergence():
    grads = [2.0] * 40
    grads[30] = math.inf
    finding = only(diagnose(result(history=train_points(decaying(40), grads)), LABELS), "divergence")
    assert finding.numbers["step"] == 310 and finding.numbers["non_finite_loss"] == 0.0
    assert "gradient norm became inf at step 310" in finding.sentence


def test_nan_stored_as_string_is_divergence():
    history = train_points(decaying(40))
    history[10]["loss"] = "NaN"
    assert kinds(diagnose(result(history=history), LABELS)) == ["divergence"]


def test_rising_train_loss_is_divergence():
    losses = [0.7 + 0.05 * i for i in range(40)]  # 0.700 → 2.650
    finding = only(diagnose(result(history=train_points(losses)), LABELS), "divergence")
    assert finding.numbers["first_loss"] == pytest.approx(0.7)
    assert finding.numbers["last_loss"] == pytest.approx(2.65)
    assert finding.numbers["end_ratio"] == pytest.approx(2.65 / 0.7)
    assert "ended at 2.650, 3.8× its first value (0.700)" in finding.sentence


def test_exploding_quarter_median_is_divergence_even_if_the_last_point_recovers():
    losses = [1.0] * 10 + [1.2] * 20 + [4.0] * 9 + [1.2]
    finding = only(diagnose(result(history=train_points(losses)), LABELS), "divergence")
    assert finding.numbers["end_ratio"] == pytest.approx(1.2)
    assert finding.numbers["quarter_ratio"] == pytest.approx(4.0)
    assert "(4.000) is 4.0× that of the first (1.000)" in finding.sentence


def test_noisy_but_falling_loss_is_not_divergence():
    losses = [v * (1.3 if i % 2 else 0.8) for i, v in enumerate(decaying(40))]
    assert "divergence" not in kinds(diagnose(result(history=train_points(losses)), LABELS))


def test_divergence_silences_the_other_curve_rules():
    losses = [0.7 - 0.01 * i for i in range(40)]  # steep: not converged on its own
    grads = [1.0] * 40
    grads[30] = 20.0  # a late spike: unstable on its own
    losses[35] = math.nan
    evals = eval_points([0.6, 0.5, 0.45, 0.41, 0.44, 0.48, 0.5, 0.52])  # overfitting on its own
    found = diagnose(result(history=train_points(losses, grads), evals=evals), LABELS)
    assert kinds(found) == ["divergence"]


# --------------------------------------------------------------------------- overfitting


def overfit_evals() -> list[dict]:
    return eval_points([0.6, 0.5, 0.45, 0.412, 0.43, 0.46, 0.486])  # minimum at step 200


def test_rising_validation_loss_with_falling_train_loss_is_overfitting():
    losses = [0.9 - 0.02 * i for i in range(35)]  # falls steadily to 0.220
    found = diagnose(result(history=train_points(losses), evals=overfit_evals()), LABELS)
    finding = only(found, "overfitting")  # and not not_converged: longer training is the wrong advice
    numbers = finding.numbers
    assert numbers["min_step"] == 200 and numbers["min_epoch"] == pytest.approx(0.8)
    assert numbers["min_loss"] == pytest.approx(0.412) and numbers["last_loss"] == pytest.approx(0.486)
    assert numbers["rise_pct"] == pytest.approx(100 * (0.486 / 0.412 - 1))
    assert numbers["train_loss_at_min"] == pytest.approx(0.52)  # the log point at step 200
    assert numbers["train_loss_end"] == pytest.approx(0.22)
    assert finding.sentence == ("Validation loss bottomed out at 0.412 at step 200 (epoch 0.80) and rose "
                                "18% to 0.486 by the end while training loss kept falling "
                                "(0.520 → 0.220).")
    assert "step 200" in finding.suggestion and "early_stopping_patience" in finding.suggestion


def test_rising_validation_loss_with_rising_train_loss_is_not_overfitting():
    losses = [0.5] * 20 + [0.5 + 0.01 * i for i in range(15)]
    assert "overfitting" not in kinds(diagnose(result(history=train_points(losses), evals=overfit_evals()),
                                               LABELS))


@pytest.mark.parametrize("eval_losses", [
    [0.6, 0.5, 0.45, 0.412, 0.42, 0.43],  # rose 4%: noise
    [0.6, 0.5, 0.45, 0.44, 0.43],  # the minimum is the last point
])
def test_small_rise_or_minimum_at_the_end_is_not_overfitting(eval_losses):
    found = diagnose(result(evals=eval_points(eval_losses)), LABELS)
    assert "overfitting" not in kinds(found)


# --------------------------------------------------------------------------- unstable gradients


def test_late_gradient_spike_is_unstable():
    grads = [2.0] * 40
    grads[31] = 12.4
    finding = only(diagnose(result(history=train_points(decaying(40), grads)), LABELS), "unstable_gradients")
    assert finding.numbers["spike"] == pytest.approx(12.4) and finding.numbers["spike_step"] == 320
    assert finding.numbers["median"] == pytest.approx(2.0)
    assert finding.numbers["spike_ratio"] == pytest.approx(6.2)
    cv = finding.numbers["cv"]
    assert cv == pytest.approx(10.4 * math.sqrt(19) / 20 / (2.0 + 10.4 / 20))
    assert f"coefficient of variation of {cv:.2f}" in finding.sentence
    assert "peaked at 12.4 at step 320 (epoch 1.28), 6.2× its median of 2" in finding.sentence
    assert "max_grad_norm" in finding.suggestion and "batch" in finding.suggestion


def test_widely_varying_grad_norm_is_unstable_without_a_spike():
    grads = [0.5 if i % 2 else 2.5 for i in range(40)]  # mean 1.5, std 1.0
    finding = only(diagnose(result(history=train_points(decaying(40), grads)), LABELS), "unstable_gradients")
    assert finding.numbers["cv"] == pytest.approx(2 / 3)
    assert finding.numbers["spike_ratio"] < 4
    assert "coefficient of variation of 0.67" in finding.sentence


def test_early_spikes_are_not_unstable():
    grads = [30.0, 15.0, 8.0, 20.0] + [2.0] * 36  # warm-up turbulence that settles
    assert diagnose(result(history=train_points(decaying(40), grads)), LABELS) == []


def test_unstable_needs_enough_points_in_the_second_half():
    grads = [2.0, 2.0, 2.0, 2.0, 2.0, 40.0]
    history = train_points(decaying(6, 0.8, 0.7), grads)
    assert "unstable_gradients" not in kinds(diagnose(result(history=history), LABELS))


# --------------------------------------------------------------------------- not converged


def test_train_loss_still_falling_is_not_converged():
    losses = [1.0 - 0.02 * i for i in range(40)]  # linear to the end
    evals = eval_points([0.5, 0.5, 0.5, 0.5])
    finding = only(diagnose(result(history=train_points(losses), evals=evals), LABELS), "not_converged")
    before, last = sum(losses[-8:-4]) / 4, sum(losses[-4:]) / 4  # 0.330 → 0.250
    assert finding.numbers["train_loss_before"] == pytest.approx(before)
    assert finding.numbers["train_loss_last"] == pytest.approx(last)
    assert finding.numbers["train_drop_pct"] == pytest.approx(100 * (before - last) / before)
    assert "eval_drop_pct" not in finding.numbers
    assert ("the mean of the last 4 logged losses (0.250) is 24% below that of the 4 before them (0.330)"
            in finding.sentence)
    assert "epochs" in finding.suggestion and "learning rate" in finding.suggestion


def test_validation_loss_still_falling_is_not_converged():
    evals = eval_points([0.8, 0.7, 0.6, 0.55, 0.5])
    finding = only(diagnose(result(evals=evals), LABELS), "not_converged")
    assert finding.numbers["eval_drop_pct"] == pytest.approx(100 * 0.05 / 0.55)
    assert "train_drop_pct" not in finding.numbers
    assert "Validation loss fell 9% at the last evaluation (0.550 → 0.500)" in finding.sentence


def test_both_signs_make_one_not_converged_finding():
    losses = [1.0 - 0.02 * i for i in range(40)]
    found = diagnose(result(history=train_points(losses), evals=eval_points([0.8, 0.7, 0.6, 0.5])), LABELS)
    finding = only(found, "not_converged")
    assert {"train_drop_pct", "eval_drop_pct"} <= set(finding.numbers)


@pytest.mark.parametrize(("losses", "eval_losses"), [
    ([1.1] + [0.05 * 0.97 ** i for i in range(39)], None),  # falls 11% near zero: not progress
    (None, [0.8, 0.7, 0.6, 0.59]),  # the last fall is under 2%
    (None, [0.8, 0.6, 0.62, 0.55]),  # one lucky evaluation after a rise
])
def test_small_or_isolated_falls_are_not_not_converged(losses, eval_losses):
    history = None if losses is None else train_points(losses)
    evals = None if eval_losses is None else eval_points(eval_losses)
    assert diagnose(result(history=history, evals=evals), LABELS) == []


# --------------------------------------------------------------------------- class collapse


def test_class_never_predicted_is_collapse():
    confusion = [[50, 0, 5], [30, 0, 10], [5, 0, 60]]
    finding = only(diagnose(result(confusion=confusion), LABELS), "class_collapse")
    assert finding.numbers == {"classes": 1.0, "validation_size": 160.0, "support_neu": 40.0}
    assert finding.sentence == ("The selected checkpoint (step 400) never predicts 'neu' (support 40) on "
                                "validation, out of 160 examples.")
    assert 'class_weight = "balanced"' in finding.suggestion and "oversample" in finding.suggestion


def test_every_collapsed_class_is_named_and_unnamed_classes_get_an_index():
    confusion = [[50, 0, 0], [30, 0, 0], [5, 0, 0]]
    finding = only(diagnose(result(confusion=confusion), ["neg"]), "class_collapse")
    assert finding.numbers["support_class 1"] == 30 and finding.numbers["support_class 2"] == 5
    assert "'class 1' (support 30) or 'class 2' (support 5)" in finding.sentence


def test_class_absent_from_validation_is_not_collapse():
    confusion = [[50, 0, 5], [0, 0, 0], [5, 0, 60]]
    assert diagnose(result(confusion=confusion), LABELS) == []


def test_a_class_validation_lacks_that_test_has_and_is_never_predicted_is_collapse():
    """3 rows of 300 in a class: the 10 % validation carve gets none of them, the model predicts
    the other class for everything, and the report said nothing (test accuracy 0.99): the
    validation rule had no row to judge by. The test split's matrix says it."""
    stored = result(confusion=[[0, 0, 0], [0, 40, 6], [0, 5, 60]])
    stored["test_confusion"] = [[0, 1, 2], [0, 40, 6], [0, 5, 60]]
    finding = only(diagnose(stored, LABELS), "class_collapse")
    assert finding.sentence == (
        "Validation has no row of 'neg', so selection could not see it, and the selected "
        "checkpoint (step 400) never predicts it on test (support 3), out of 114 examples.")
    assert "validation" in finding.suggestion and "class_weight" in finding.suggestion
    assert finding.numbers == {"classes": 1.0, "test_size": 114.0, "support_neg": 3.0}
    stored["test_confusion"][0] = [1, 0, 2]  # predicted on test once: nothing to say
    assert diagnose(stored, LABELS) == []


@pytest.mark.parametrize("confusion", [[], [[1]], [[1, 0], [2]], [[1, -1], [2, 0]], [["a", 0], [1, 0]]])
def test_malformed_confusion_is_ignored(confusion):
    assert diagnose(result() | {"validation_confusion": confusion}, LABELS) == []


# --------------------------------------------------------------------------- order


def test_findings_come_most_severe_first():
    losses = [0.9 - 0.02 * i for i in range(35)]
    grads = [2.0] * 35
    grads[30] = 15.0
    stored = result(history=train_points(losses, grads), evals=overfit_evals(),
                    confusion=[[50, 0, 5], [30, 0, 10], [5, 0, 60]])
    assert kinds(diagnose(stored, LABELS)) == ["class_collapse", "overfitting", "unstable_gradients"]
    stored["history"][5]["grad_norm"] = math.nan
    assert kinds(diagnose(stored, LABELS)) == ["divergence", "class_collapse"]


def test_a_collapse_under_class_weights_is_not_told_to_add_class_weights():
    plain = only(diagnose(result(confusion=[[5, 0], [3, 0]]), ["a", "b"]), "class_collapse")
    weighted = only(diagnose(result(confusion=[[5, 0], [3, 0]]), ["a", "b"], class_weighted=True),
                    "class_collapse")
    assert 'class_weight = "balanced"' in plain.suggestion
    assert "already weighted by class" in weighted.suggestion and '"balanced"' not in weighted.suggestion


def test_one_class_predicted_at_the_loss_of_the_class_mix_is_a_model_that_has_not_learned():
    """57/81/62 validation examples, every one predicted 'neu', at a loss of 1.0864: about the
    entropy of that mix (1.0869). Class weights would be the wrong advice; training longer or
    another rate not."""
    confusion = [[0, 57, 0], [0, 81, 0], [0, 62, 0]]
    stored = result(confusion=confusion) | {"validation": {"eval_loss": 1.0864}}
    finding = only(diagnose(stored, LABELS), "class_collapse")
    assert finding.sentence == ("The selected checkpoint (step 400) predicts 'neu' for all 200 "
                                "validation examples, at a validation loss of 1.0864: about the 1.0869 of "
                                "predicting the class frequencies. The model has not learned from the "
                                "text.")
    assert "Train longer" in finding.suggestion and "class weights do not help" in finding.suggestion
    # the same predictions at a clearly lower loss: a collapse the model learned its way into
    lower = only(diagnose(result(confusion=confusion) | {"validation": {"eval_loss": 0.9}}, LABELS),
                 "class_collapse")
    assert "never predicts 'neg' (support 57) or 'pos' (support 62)" in lower.sentence


def test_one_class_predicted_at_a_loss_above_the_class_mix_has_not_learned_either():
    """Every example predicted 'anger' at a loss of 1.3469, above the 1.2508 that predicting the
    class frequencies scores (a real 4-class emotion trial): worse than a constant guess, so the
    model has learned nothing from the text and class weights are the wrong advice, as they are
    at the loss of the mix itself."""
    confusion = [[51, 0, 0, 0], [31, 0, 0, 0], [9, 0, 0, 0], [29, 0, 0, 0]]
    names = ["anger", "joy", "optimism", "sadness"]
    stored = result(confusion=confusion) | {"validation": {"eval_loss": 1.3469}}
    finding = only(diagnose(stored, names), "class_collapse")
    assert finding.sentence == ("The selected checkpoint (step 400) predicts 'anger' for all 120 "
                                "validation examples, at a validation loss of 1.3469: worse than the "
                                "1.2508 of predicting the class frequencies. The model has not "
                                "learned from the text.")
    assert "Train longer" in finding.suggestion and 'class_weight = "balanced"' not in finding.suggestion


def test_a_smoothed_or_weighted_loss_is_not_read_as_the_loss_of_a_constant_guess():
    """The class mix's entropy is the plain cross-entropy of predicting the class frequencies:
    the trial's validation loss under label smoothing or class weights (eval_loss) is higher
    than that for the same predictions, and called a model whose plain cross-entropy (log_loss,
    0.80 against the mix's 1.0869) is well below it one that learned nothing."""
    confusion = [[0, 57, 0], [0, 81, 0], [0, 62, 0]]
    smoothed = result(confusion=confusion) | {"validation": {"eval_loss": 1.30, "log_loss": 0.80}}
    finding = only(diagnose(smoothed, LABELS), "class_collapse")
    assert not finding.not_learned
    assert "never predicts 'neg' (support 57) or 'pos' (support 62)" in finding.sentence
    # at the mix's cross-entropy it has learned nothing, whatever its weighted loss says
    constant = result(confusion=confusion) | {"validation": {"eval_loss": 1.45, "log_loss": 1.0864}}
    finding = only(diagnose(constant, LABELS), "class_collapse")
    assert finding.not_learned
    assert "at a validation log loss of 1.0864: about the 1.0869 of predicting" in finding.sentence


# --------------------------------------------------------------------------- one line per finding


def test_a_finding_many_trials_share_is_one_line_with_the_range_of_their_numbers():
    """183 trials that each predict one class at about the loss of the class frequencies were
    183 lines of the same sentence: one line names the first 10 and counts them, and a number
    that differs between them is their range."""
    confusion = [[0, 57, 0], [0, 81, 0], [0, 62, 0]]
    findings = {f"baseline_v{i}-s42": diagnose(
        result(confusion=confusion) | {"best_step": 100 + i, "validation": {"log_loss": 1.0864 + i / 1e4}},
        LABELS) for i in range(183)}
    [line] = shared_findings(findings, LABELS)
    assert line.kind == "class_collapse" and len(line.keys) == 183
    assert line.named() == ", ".join(f"baseline_v{i}-s42" for i in range(10)) + ", … (183 in all)"
    assert line.sentence == ("The selected checkpoint (step 100–282) predicts 'neu' for all 200 "
                             "validation examples, at a validation log loss of 1.0864–1.1046: about "
                             "the 1.0869 of predicting the class frequencies. The model has not "
                             "learned from the text.")
    assert line.suggestion == findings["baseline_v0-s42"][0].suggestion


def test_findings_that_differ_in_words_or_classes_stay_apart_and_one_trial_reads_as_before():
    """A class named by digits ('1', '2') is not a number to put in a range, a worse-than and an
    about are not one finding, and a finding of one trial is its sentence unchanged, in the order
    of each line's first trial."""
    names = ["0", "1", "2"]
    at = {"one": ([[0, 5, 0], [0, 8, 0], [0, 6, 0]], 1.08),
          "two": ([[0, 0, 5], [0, 0, 8], [0, 0, 6]], 1.08),
          "also_one": ([[0, 5, 0], [0, 8, 0], [0, 6, 0]], 1.081),
          "worse": ([[0, 5, 0], [0, 8, 0], [0, 6, 0]], 1.5)}
    findings = {key: diagnose(result(confusion=confusion) | {"validation": {"log_loss": loss}}, names)
                for key, (confusion, loss) in at.items()}
    lines = shared_findings(findings, names)
    assert [line.keys for line in lines] == [("one", "also_one"), ("two",), ("worse",)]
    assert "predicts '1' for all 19 validation examples, at a validation log loss of 1.0800–1.0810" \
        in lines[0].sentence
    assert lines[1].sentence == findings["two"][0].sentence and "predicts '2'" in lines[1].sentence
    assert lines[2].sentence == findings["worse"][0].sentence and lines[2].named() == "worse"
    # a trial with two findings is on both lines, each shared with whoever has it
    losses = [0.9 - 0.02 * i for i in range(35)]
    grads = [2.0] * 35
    grads[30] = 15.0
    both = diagnose(result(history=train_points(losses, grads), evals=overfit_evals()), LABELS)
    spike = diagnose(result(history=train_points(losses, grads)), LABELS)
    assert kinds(both) == ["overfitting", "unstable_gradients"]
    assert kinds(spike) == ["unstable_gradients", "not_converged"]  # no overfitting to silence it
    lines = shared_findings({"a": both, "b": spike}, LABELS)
    assert [(line.keys, line.kind) for line in lines] == [
        (("a",), "overfitting"), (("a", "b"), "unstable_gradients"), (("b",), "not_converged")]
    assert lines[1].sentence == both[1].sentence  # the same numbers: no range
