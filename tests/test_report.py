"""The report is rendered from the study storage alone: here a study written by hand."""

from __future__ import annotations

import math
import os
import re
import shutil
import signal
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
from conftest import DEFAULT_BASELINE
from conftest import stored_study as stored_study_of

from ablation import cli, records
from ablation.config import load_spec
from ablation.queue import open_study
from ablation.report import build_report, write_report
from ablation.report._write import report_json
from ablation.report.effects import fmt_p
from ablation.report.markdown import fmt, fmt_delta
from ablation.variants import TrialSpec, expand


def _result(value: float, loss_end: float, grad_max: float) -> dict:
    history = [{"step": s, "epoch": s / 10, "loss": 1.2 - (1.2 - loss_end) * s / 10,
                "grad_norm": grad_max if s == 5 else 1.0, "learning_rate": 1e-3 * (1 - s / 10)}
               for s in range(1, 11)]
    evals = [{"step": 5, "epoch": 0.5, "loss": 0.9, "macro_f1": value - 0.1},
             {"step": 10, "epoch": 1.0, "loss": 0.8, "macro_f1": value}]
    metrics = {"accuracy": value + 0.05, "macro_f1": value, "weighted_f1": value,
               "macro_precision": value, "macro_recall": value, "weighted_precision": value,
               "weighted_recall": value, "log_loss": 0.8, "eval_loss": 0.8,
               "f1_neg": value, "f1_neu": 0.0, "f1_pos": 1.0}
    return {"history": history, "eval_history": evals, "validation": metrics,
            "test": {"accuracy": value, "macro_f1": value - 0.01, "weighted_f1": value,
                     "log_loss": 0.85, "eval_loss": 0.85},
            "best_step": 10, "steps": 10, "runtime_s": 12.0}


@pytest.fixture
def stored_study(write_experiment):
    """bs32 beats the baseline on both seeds; lr fails on seed 7."""
    path = write_experiment(variants="bs32 = { batch_size = 32 }\nlr = { learning_rate = 1e-2 }\n",
                            extra="")
    spec = load_spec(path, ["experiment.seeds=[42, 7]"])
    study = open_study(spec)
    study.set_user_attr("metric", "macro_f1")
    study.set_user_attr("direction", "maximize")
    study.set_user_attr("label_names", ["neg", "neu", "pos"])
    values = {"baseline-s42": 0.60, "baseline-s7": 0.62, "baseline_bs32-s42": 0.70,
              "baseline_bs32-s7": 0.74, "baseline_lr-s42": 0.50}
    for trial in expand(spec):
        study.enqueue_trial({}, user_attrs=records.trial_attrs(trial))
        live = study.ask()
        if trial.key in values:
            live.set_user_attr(records.RESULT, _result(values[trial.key], 0.5, 3.0))
            study.tell(live, values[trial.key])
        else:
            live.set_user_attr(records.ERROR, "RuntimeError: diverged")
            study.tell(live, state=optuna.trial.TrialState.FAIL)
    return spec, study


def test_variant_rows_aggregate_seeds_with_delta_and_best(stored_study):
    spec, study = stored_study
    built = build_report(spec, study)
    table = built["variants"].set_index("variant")
    assert list(table.index) == ["baseline", "baseline_bs32", "baseline_lr"]
    assert table.loc["baseline", "value"] == pytest.approx(0.61)
    assert table.loc["baseline", "value_std"] == pytest.approx(math.sqrt(2 * 0.01**2))
    assert table.loc["baseline_bs32", "delta"] == pytest.approx(0.11)
    assert table.loc["baseline_lr", "seeds"] == 1 and table.loc["baseline_lr", "failed"] == 1
    assert math.isnan(table.loc["baseline_lr", "value_std"])  # one seed: no spread
    assert table["best"].tolist() == [False, True, False]
    assert table.loc["baseline", "final_train_loss"] == pytest.approx(0.5)
    assert table.loc["baseline", "max_grad_norm"] == pytest.approx(3.0)
    assert table.loc["baseline", "best_eval_loss"] == pytest.approx(0.8)


def test_identical_values_over_seeds_have_a_std_of_exactly_zero(write_experiment):
    path = write_experiment(variants="")
    spec = load_spec(path, ["experiment.seeds=[1, 2, 3]"])
    study = _store(spec, {f"baseline-s{seed}": _result(.7, 0.5, 2.0) for seed in (1, 2, 3)})
    row = build_report(spec, study)["variants"].iloc[0]
    assert row["value_std"] == 0.0 and row["accuracy_std"] == 0.0


def test_minimized_metric_marks_the_lowest_as_best(stored_study):
    spec, study = stored_study
    study.set_user_attr("direction", "minimize")
    table = build_report(spec, study)["variants"].set_index("variant")
    assert table["best"].idxmax() == "baseline_lr"


def test_report_files_written_from_the_storage(stored_study):
    spec, study = stored_study
    path = write_report(spec, study)
    text = path.read_text()
    assert "# Ablation study `tiny`" in text
    # bs32's paired interval over 2 seeds contains 0 (p 0.058): the headline says so
    assert ("**Best variant**: `baseline_bs32` — macro_f1 0.7200 (+0.1100 vs baseline); against "
            "baseline on test: within noise (What mattered)") in text
    assert "| **baseline_bs32** ★ | batch_size=32 |" in text
    assert "0.7200 ± 0.0283" in text  # mean ± sample std over two seeds
    assert "values are mean ± std over seeds" in text
    assert "`baseline_lr-s7` (trial 5): RuntimeError: diverged" in text
    assert "labels: neg, neu, pos" in text
    assert "test macro-F1" in text
    assert "### F1 per class (validation)" in text
    assert "| baseline_bs32 | 0.7200 ± 0.0283 | 0.0000 ± 0.0000 | 1.0000 ± 0.0000 |" in text
    csv = pd.read_csv(spec.output_dir / "results.csv")
    assert len(csv) == 6 and set(csv["state"]) == {"COMPLETE", "FAIL"}
    assert (spec.output_dir / "plots" / "train_loss.png").exists()


def test_a_plot_the_report_no_longer_draws_is_removed_and_other_files_kept(stored_study):
    """An earlier report's learning curve (its sweep since left out) would sit in plots/ beside
    a report that no longer links it; a file of the user's own there is not ablate's to remove."""
    spec, study = stored_study
    plots = spec.output_dir / "plots"
    plots.mkdir(parents=True)
    (plots / "learning_curve.png").write_bytes(b"an earlier report's")
    (plots / "mine.png").write_bytes(b"the user's")
    text = write_report(spec, study).read_text()
    assert "learning_curve.png" not in text and not (plots / "learning_curve.png").exists()
    assert (plots / "mine.png").read_bytes() == b"the user's"
    assert {p.name for p in plots.glob("*.png")} >= {"train_loss.png", "metric.png", "mine.png"}


def test_best_variant_on_fewer_seeds_says_so_and_what_mattered_says(write_experiment):
    """A variant whose hard seed failed has the best mean over its other seeds, yet is worse
    than the baseline on every seed both ran: its headline must not read as a result."""
    path = write_experiment(variants="v = { batch_size = 32 }\n")
    spec = load_spec(path, ["experiment.seeds=[1, 2, 3]"])
    values = {"baseline-s1": .70, "baseline-s2": .70, "baseline-s3": .50,
              "baseline_v-s1": .68, "baseline_v-s2": .68}
    study = _store(spec, {key: _result(v, 0.5, 2.0) for key, v in values.items()})
    text = write_report(spec, study).read_text()
    assert ("**Best variant**: `baseline_v` — macro_f1 0.6800 (+0.0467 vs baseline); mean of its 2 "
            "complete seed(s); others have up to 3; against baseline on test: **worse** "
            "(What mattered)") in text
    # the Results rows say over how many seeds each mean is
    assert "| variant | changes | seeds | " in text
    assert "| baseline | — | 3 | " in text and "| **baseline_v** ★ | batch_size=32 | 2 | " in text


def _with_missing_metrics() -> dict[str, dict]:
    """Three seeds each; baseline-s3's test evaluation did not happen, baseline_v-s2 has no
    validation log loss, baseline_v-s1 no evaluation in its curves."""
    values = {"baseline-s1": .70, "baseline-s2": .72, "baseline-s3": .74,
              "baseline_v-s1": .75, "baseline_v-s2": .77, "baseline_v-s3": .79}
    results = {key: _result(v, 0.5, 2.0) for key, v in values.items()}
    results["baseline-s3"]["test"] = None
    del results["baseline_v-s2"]["validation"]["log_loss"]
    results["baseline_v-s1"]["eval_history"] = []
    return results


def test_a_mean_over_fewer_seeds_than_its_row_has_says_how_many(write_experiment):
    """A metric missing in some of a variant's trials (no test evaluation, a metric undefined on
    one seed) was averaged over the others and shown as the mean of all the row's seeds: the
    cell says over how many it is, a note under the table which trials lack what, and
    report.json has the count beside the mean."""
    import json

    from ablation.report import write_report_json

    path = write_experiment(variants="v = { batch_size = 32 }\n")
    spec = load_spec(path, ["experiment.seeds=[1, 2, 3]"])
    study = _store(spec, _with_missing_metrics())
    built = build_report(spec, study)
    text = write_report(spec, study, built).read_text()
    # baseline: test accuracy .70 and .72 (seed 3 has none), test macro-F1 .69 and .71
    assert "| 0.7100 ± 0.0141 (2 of 3 seeds) | 0.7000 ± 0.0141 (2 of 3 seeds) |" in text
    assert "| 0.8000 ± 0.0000 (2 of 3 seeds) |" in text  # baseline_v's log loss
    assert "| 0.8000 (2 of 3 seeds) / 0.8000 (2 of 3 seeds) |" in text  # its eval loss
    assert "| 0.7700 ± 0.0200 |" in text  # every seed has it: no mark
    assert "| seeds |" not in text  # every row has 3 complete seeds
    assert ("*(k of n seeds)*: the mean ± std of only the k seeds whose trial has the metric, "
            "of the row's n complete seeds; not comparable with a mean over all n. Missing: "
            "`baseline-s3` (test accuracy, test macro-F1), `baseline_v-s1` (eval loss final / "
            "best), `baseline_v-s2` (log loss).") in text
    table = built["variants"].set_index("variant")
    assert table["test_accuracy_seeds"].tolist() == [2, 3]
    assert table["log_loss_seeds"].tolist() == [3, 2]
    assert "accuracy_seeds" not in table.columns  # no variant lacks it on any seed
    document = json.loads(write_report_json(spec, built).read_text())
    assert [row["test_accuracy_seeds"] for row in document["variants"]] == [2, 3]
    assert all(type(row["log_loss_seeds"]) is int for row in document["variants"])


def test_the_results_table_says_which_step_each_curve_column_is_read_at(stored_study):
    """The paragraph over the table said at which step eval loss and grad norm are read, not the
    train loss (its last logged value, itself the mean since the logging step before), nor that
    the final / best and final / max pairs are means over seeds without their std."""
    spec, study = stored_study
    text = write_report(spec, study).read_text()
    assert ("train loss at the last logged step (the mean of the steps since the step logged "
            "before it)") in text
    assert "the pairs are means over seeds, without their std" in text


def test_a_metric_that_one_of_a_rows_seeds_has_shows_no_spread(write_experiment):
    """baseline-s2's test evaluation did not happen: its row's test accuracy is baseline-s1's
    alone, and was shown as `0.7000 ± 0.0000 (1 of 2 seeds)` (report.json: a std of 0.0), which
    reads as two seeds that agreed exactly; one value has no spread, as a one-seed row shows."""
    path = write_experiment(variants="v = { batch_size = 32 }\n")
    spec = load_spec(path, ["experiment.seeds=[1, 2]"])
    values = {"baseline-s1": .70, "baseline-s2": .72, "baseline_v-s1": .75, "baseline_v-s2": .77}
    results = {key: _result(v, 0.5, 2.0) for key, v in values.items()}
    results["baseline-s2"]["test"] = None
    study = _store(spec, results)
    built = build_report(spec, study)
    row = built["variants"].set_index("variant").loc["baseline"]
    assert row["test_accuracy"] == pytest.approx(0.70) and math.isnan(row["test_accuracy_std"])
    assert row["value_std"] == pytest.approx(math.sqrt(2) * 0.01)  # both seeds have a value
    text = write_report(spec, study, built).read_text()
    assert "| 0.7000 (1 of 2 seeds) | 0.6900 (1 of 2 seeds) |" in text


def test_a_study_without_missing_metrics_has_no_seed_counts_per_metric(stored_study):
    spec, study = stored_study
    built = build_report(spec, study)
    assert not [c for c in built["variants"].columns if c.endswith("_seeds")]
    assert " seeds)" not in write_report(spec, study, built).read_text()


def test_an_effect_that_leaves_test_for_validation_names_the_trial_without_test(write_experiment):
    """baseline-s3's test evaluation did not happen: the comparison over seeds is on validation
    for every seed (a test comparison would lose a seed), and the basis said only "on validation",
    as for a study without a test split, leaving the reader to wonder why not test."""
    path = write_experiment(variants="v = { batch_size = 32 }\n")
    spec = load_spec(path, ["experiment.seeds=[1, 2, 3]"])
    built = build_report(spec, _store(spec, _with_missing_metrics()))
    [effect] = built["effects"]
    assert effect.split == "validation" and effect.seeds == effect.interval.n == 3
    assert effect.basis == ("macro_f1 on validation (`baseline-s3` has no test macro_f1), paired "
                            "over seeds 1, 2, 3 (t-test)")


def test_a_seed_whose_value_is_nan_is_left_out_of_the_pairing_and_its_count():
    """paired_seed_difference leaves out a seed with a NaN score, but the effect said it was
    paired over that seed too, and counted it in `seeds` (report.json's, beside n)."""
    from ablation.report.effects import compute_effects

    def record(variant: str, seed: int, value: float) -> records.TrialRecord:
        return records.TrialRecord(number=seed, variant=variant, seed=seed,
                                   overrides={} if variant == "baseline" else {"batch_size": 32},
                                   state="COMPLETE", value=value, result={})

    trials = [record("baseline", 1, .60), record("baseline", 2, math.nan), record("baseline", 3, .62),
              record("baseline_v", 1, .70), record("baseline_v", 2, .71), record("baseline_v", 3, .74)]
    [effect] = compute_effects(trials, ["baseline", "baseline_v"], "macro_f1", True, 3)
    assert effect.seeds == effect.interval.n == 2
    assert effect.basis == "macro_f1 on validation, paired over seeds 1, 3 (t-test)"
    assert effect.interval.estimate == pytest.approx(0.11)


def test_a_confusion_plot_summed_over_fewer_seeds_than_its_variant_has_says_so(write_experiment,
                                                                              monkeypatch):
    """The title counted the variant's complete trials ("3 seeds summed") where only the trials
    with a confusion matrix were summed."""
    from ablation.report import _write

    path = write_experiment(variants="v = { batch_size = 32 }\n")
    spec = load_spec(path, ["experiment.seeds=[1, 2, 3]"])
    results = _with_missing_metrics()
    for key, result in results.items():
        if key != "baseline-s3":
            result["validation_confusion"] = [[3, 0, 0], [0, 3, 0], [0, 0, 3]]
    titles: list[str] = []
    draw = _write.plot_confusions
    monkeypatch.setattr(_write, "plot_confusions",
                        lambda matrices, *args: titles.extend(matrices) or draw(matrices, *args))
    write_report(spec, _store(spec, results))
    assert titles == ["baseline (validation, 2 of 3 seeds summed)",
                      "baseline_v (validation, 3 seeds summed)"]


def test_best_variant_tied_with_another_says_so(write_experiment):
    path = write_experiment(variants="v = { batch_size = 32 }\nw = { learning_rate = 1e-2 }\n")
    spec = load_spec(path)
    values = {"baseline-s42": .60, "baseline_v-s42": .70, "baseline_w-s42": .70}
    study = _store(spec, {key: _result(v, 0.5, 2.0) for key, v in values.items()})
    text = write_report(spec, study).read_text()
    assert ("**Best variant**: `baseline_v` — macro_f1 0.7000 (+0.1000 vs baseline); tied with "
            "`baseline_w` (the first in the study's order is named)") in text
    assert "| seeds |" not in text  # every mean is over the same seeds


def test_means_of_the_same_scores_summed_in_another_order_are_tied(write_experiment):
    """baseline_v scored what the baseline did, at other seeds: its mean, summed in another order,
    was one float rounding (2.8e-17) above the baseline's, so it was named the best variant,
    '+0.0000 vs baseline', with no word that the baseline scored the same."""
    path = write_experiment(variants="v = { batch_size = 32 }\n")
    spec = load_spec(path, ["experiment.seeds=[1, 2, 3]"])
    values = {"baseline-s1": .3, "baseline-s2": .2, "baseline-s3": .1,
              "baseline_v-s1": .1, "baseline_v-s2": .2, "baseline_v-s3": .3}
    study = _store(spec, {key: _result(v, 0.5, 2.0) for key, v in values.items()})
    built = build_report(spec, study)
    assert built["variants"]["best"].tolist() == [True, False]  # the first in the study's order
    text = write_report(spec, study, built).read_text()
    assert ("**Best variant**: `baseline` — macro_f1 0.2000; tied with `baseline_v` (the first in "
            "the study's order is named)") in text


def test_the_environment_says_a_trial_trained_data_parallel(write_experiment):
    spec = load_spec(write_experiment(variants=""))
    result = _result(0.6, 0.5, 2.0) | {"device_name": "CPU: Test (2 threads)",
                                        "devices_per_trial": 2}
    text = write_report(spec, _store(spec, {"baseline-s42": result})).read_text()
    assert "device: CPU: Test (2 threads) × 2 processes (data-parallel);" in text


def test_formatting_helpers():
    assert fmt(0.123456) == "0.1235"
    assert fmt(0.5, 0.01) == "0.5000 ± 0.0100"
    assert fmt(float("nan")) == "—"
    assert fmt_delta(0.0123) == "+0.0123" and fmt_delta(-0.5) == "-0.5000"
    assert fmt_delta(-1e-9) == "+0.0000"  # rounds to no difference: no minus sign


def test_a_p_just_below_005_is_not_printed_as_0050_beside_a_verdict_it_allows():
    """A real one-seed run: p 0.04995 made **worse** (p < 0.05) but read "0.050", which the same
    report calls within noise. Shown with the digits that keep it on its side of 0.05."""
    shown = fmt_p(0.04994997645474623)
    assert shown != "0.050" and float(shown) < 0.05
    assert fmt_p(0.0504) == "0.050" and fmt_p(0.05) == "0.050"  # 0.05 or more: within noise
    assert fmt_p(0.0123) == "0.012" and fmt_p(0.0004) == "< 0.001" and fmt_p(math.nan) == "—"
    assert fmt_p(0.04999999999) == "< 0.05"


def test_a_difference_too_small_for_four_decimals_is_not_shown_as_none_beside_a_verdict(
        write_experiment):
    """Three seeds whose test macro-F1 is 0.00002 to 0.00003 above the baseline's: **better**,
    p 0.013, beside '+0.0000' and an interval '[+0.0000, +0.0000]', which the report says is within
    noise (an interval that contains 0). Such a value is shown with the digits that tell it from 0,
    as p is near 0.05."""
    path = write_experiment(variants="v = { batch_size = 32 }\n")
    spec = load_spec(path, ["experiment.seeds=[1, 2, 3]"])

    tests = {"baseline-s1": 0.5, "baseline-s2": 0.6, "baseline-s3": 0.7,
             "baseline_v-s1": 0.50002, "baseline_v-s2": 0.60003, "baseline_v-s3": 0.700025}
    study = _store(spec, {key: _with_test(0.6, value) for key, value in tests.items()})
    text = write_report(spec, study).read_text()
    assert "| +0.000025 | [+0.000013, +0.000037] | 0.013 | **better** |" in text
    assert fmt_delta(-0.00004) == "-0.000040" and fmt_delta(0.00005) == "+0.0001"
    assert fmt_delta(3e-9) == "+0.0000"  # beyond 8 decimals: float rounding, not a difference


# --------------------------------------------------------------------------- issue 3: trustworthy


def _with_test(validation: float, test: float) -> dict:
    """_result's trial at `validation` macro-F1 whose test macro-F1 is `test`."""
    out = _result(validation, 0.5, 2.0)
    out["test"] = {**out["test"], "macro_f1": test}
    return out


def _store(spec, results: dict[str, dict]):
    """A study holding the given results (key -> result dict) for the file's trials."""
    study = open_study(spec)
    study.set_user_attr("metric", spec.experiment.metric)
    study.set_user_attr("direction", spec.experiment.direction)
    study.set_user_attr("label_names", ["neg", "neu", "pos"])
    for trial in expand(spec):
        if trial.key not in results:
            continue
        study.enqueue_trial({}, user_attrs=records.trial_attrs(trial))
        live = study.ask()
        live.set_user_attr(records.RESULT, results[trial.key])
        study.tell(live, results[trial.key]["validation"]["macro_f1"])
    return study


def test_a_report_without_the_runs_set_options_describes_the_study_as_it_ran(write_experiment,
                                                                               capsys):
    """Data and Model come from the storage: `ablate report FILE` after `ablate run FILE --set
    model.config=...` must not describe the file's model as the one trained."""
    path = write_experiment(variants="")
    assert cli.main(["run", str(path), "--set", "model.config={ hidden_dropout_prob = 0.2 }"]) == 0
    assert cli.main(["report", str(path)]) == 0
    text = (load_spec(path).output_dir / "report.md").read_text()
    assert "with {'hidden_dropout_prob': 0.2}" in text


def test_two_seeds_give_a_paired_interval_and_a_wide_one_is_within_noise(stored_study, capsys):
    spec, study = stored_study
    built = build_report(spec, study)
    effect = {e.variant: e for e in built["effects"]}["baseline_bs32"]
    # paired differences 0.10 and 0.12: mean 0.11, sd 0.01414, t(0.975, df 1) = 12.706
    assert effect.interval.estimate == pytest.approx(0.11)
    assert effect.interval.low == pytest.approx(0.11 - 12.7062 * 0.01, abs=1e-4)
    assert effect.interval.p_value == pytest.approx(0.0578, abs=1e-3)
    assert effect.verdict == "within noise"
    text = write_report(spec, study).read_text()
    assert "## What mattered" in text
    assert "| 1 | baseline_bs32 | batch_size=32 | baseline | +0.1100 | [-0.0171, +0.2371] | 0.058 | " \
           "within noise |" in text
    assert effect.seeds == 2 and "One seed:" not in text  # paired over seeds: the caveat is moot
    cli._print_summary(spec, built)
    out = capsys.readouterr().out
    assert "what mattered (Δ vs reference on the test split, 95 % CI, p)" in out
    assert "+0.1100   [-0.0171, +0.2371]   p 0.058  within noise" in out  # p explains the verdict
    assert "one seed: these intervals" not in out and "macro_f1 (validation)" in out
    assert "macro_f1 on test, paired over seeds 7, 42 (t-test)" in text
    assert "macro_f1 95 % CI" in text  # the CI column of the results table


def test_a_wide_interval_over_seeds_stays_within_the_differences_the_metric_allows(
        write_experiment):
    """Two seeds of macro-F1 (t = 12.7 at one degree of freedom) whose differences are -0.4 and
    +0.3: the paired-t interval [-4.5, +4.4] says less than "somewhere in [-1, +1]"."""
    path = write_experiment(variants="bs32 = { batch_size = 32 }\n")
    spec = load_spec(path, ["experiment.seeds=[42, 7]"])

    tests = {"baseline-s42": 0.8, "baseline-s7": 0.3, "baseline_bs32-s42": 0.4, "baseline_bs32-s7": 0.6}
    study = _store(spec, {key: _with_test(0.5, value) for key, value in tests.items()})
    [effect] = build_report(spec, study)["effects"]
    assert effect.interval.estimate == pytest.approx(-0.05)
    assert (effect.interval.low, effect.interval.high) == (-1.0, 1.0)
    assert effect.verdict == "within noise"


def test_over_seeds_the_effect_is_measured_on_test_where_every_paired_trial_has_it(
        write_experiment):
    """Validation picked each trial's checkpoint, so its value flatters the variant with more
    checkpoints to pick from: the effect is the test metric's, validation only without one."""
    path = write_experiment(variants="bs32 = { batch_size = 32 }\n")
    spec = load_spec(path, ["experiment.seeds=[42, 7]"])

    def result(validation: float, test: float | None) -> dict:
        out = _result(validation, 0.5, 2.0)
        out["test"] = None if test is None else {**out["test"], "macro_f1": test}
        return out

    study = _store(spec, {"baseline-s42": result(0.60, 0.58), "baseline-s7": result(0.62, 0.57),
                          "baseline_bs32-s42": result(0.70, 0.58), "baseline_bs32-s7": result(0.74, 0.59)})
    [effect] = build_report(spec, study)["effects"]
    assert effect.split == "test" and effect.interval.estimate == pytest.approx(0.01)
    assert effect.basis == "macro_f1 on test, paired over seeds 7, 42 (t-test)"
    study = _store(load_spec(path, ["experiment.seeds=[42, 7]", 'experiment.name="notest"']),
                   {"baseline-s42": result(0.60, 0.58), "baseline-s7": result(0.62, None),
                    "baseline_bs32-s42": result(0.70, 0.58), "baseline_bs32-s7": result(0.74, 0.59)})
    [effect] = build_report(spec, study)["effects"]
    assert effect.split == "validation" and effect.interval.estimate == pytest.approx(0.11)


def test_one_seed_compares_the_same_test_examples_by_bootstrap_and_permutation(write_experiment,
                                                                                capsys):
    path = write_experiment(variants="good = { learning_rate = 1e-2 }\nsame = { learning_rate = 2e-3 }\n")
    spec = load_spec(path)
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 400).tolist()
    noisy = [y if rng.random() < 0.6 else (y + 1) % 3 for y in labels]  # 60 % right
    better = [y if rng.random() < 0.9 else (y + 1) % 3 for y in labels]  # 90 % right

    def result(predictions, value):
        out = _result(value, 0.5, 2.0)
        out |= {"test_predictions": predictions, "test_labels": labels}
        return out

    study = _store(spec, {"baseline-s42": result(noisy, 0.6), "baseline_good-s42": result(better, 0.9),
                          "baseline_same-s42": result(noisy, 0.6)})
    effects = {e.variant: e for e in build_report(spec, study)["effects"]}
    good, same = effects["baseline_good"], effects["baseline_same"]
    assert good.verdict == "better" and good.interval.low > 0 and good.interval.p_value < 0.001
    assert "on the test split (400 examples): paired bootstrap 95 % CI, paired permutation test" \
        in good.basis
    assert same.interval.estimate == 0 and same.verdict == "within noise"
    assert [e.variant for e in build_report(spec, study)["effects"]] == ["baseline_good",
                                                                          "baseline_same"]
    assert good.seeds == 1
    text = write_report(spec, study).read_text()
    assert "averages; test metrics are of the same checkpoint." in text  # a test split: said
    assert "One seed: these intervals cover which test examples were drawn, not the training's own " \
           "randomness" in text  # a 'better' on one seed may be another seed's 'within noise'
    cli._print_summary(spec, build_report(spec, study))  # the terminal says it too
    out = capsys.readouterr().out
    assert "one seed: these intervals leave out the training's own" in out
    # the table above it is on validation, these differences on test: each says which
    assert "what mattered (Δ vs reference on the test split, 95 % CI, p)" in out
    assert "macro_f1 (validation)" in out


def test_one_seed_compares_on_validation_where_one_side_has_no_test_predictions(write_experiment):
    """baseline-s42 holds validation predictions but none on test: the pair was not compared at
    all, and the variant was left out of What mattered without a word. Over seeds such a pair is
    compared on validation and its trial named; with one seed now too."""
    path = write_experiment(variants="good = { learning_rate = 1e-2 }\n")
    spec = load_spec(path)
    labels = [0, 1, 2] * 40
    wrong = [(y + 1) % 3 for y in labels[:60]] + labels[60:]
    from sklearn.metrics import f1_score

    def result(predictions: list[int], value: float, test: bool) -> dict:
        out = _result(value, 0.5, 2.0) | {"validation_predictions": predictions,
                                           "validation_labels": labels}
        return out | ({"test_predictions": predictions, "test_labels": labels} if test else {})

    study = _store(spec, {"baseline-s42": result(wrong, 0.5, test=False),
                          "baseline_good-s42": result(labels, 1.0, test=True)})
    (effect,) = build_report(spec, study)["effects"]
    assert effect.split == "validation" and effect.verdict == "better"
    assert effect.interval.estimate == pytest.approx(1 - f1_score(labels, wrong, average="macro"))
    assert effect.basis == ("macro_f1 on the validation split (120 examples; `baseline-s42` has no "
                            "test predictions): paired bootstrap 95 % CI, paired permutation test")


def test_ablation_table_shows_each_change_alone_and_removed(write_experiment):
    path = write_experiment(variants="", extra=(
        '[ablation]\nmode = "both"\n[ablation.changes]\n'
        'cw = { class_weight = "balanced" }\nls = { label_smoothing = 0.1 }\n'))
    spec = load_spec(path, ["experiment.seeds=[1, 2, 3]"])
    values = {"baseline": [.60, .61, .62], "full": [.70, .72, .71], "full_minus_cw": [.61, .62, .60],
              "full_minus_ls": [.70, .71, .72], "baseline_plus_cw": [.70, .72, .71],
              "baseline_plus_ls": [.61, .60, .62]}
    results = {f"{name}-s{seed}": _result(v, 0.5, 2.0)
               for name, vs in values.items() for seed, v in zip((1, 2, 3), vs, strict=True)}
    text = write_report(spec, _store(spec, results)).read_text()
    assert "## Ablation" in text
    table = text[text.index("| change | alone"):]
    cw_row = next(line for line in table.splitlines() if line.startswith("| cw |"))
    ls_row = next(line for line in table.splitlines() if line.startswith("| ls |"))
    assert "+0.1000" in cw_row.split("|")[2] and "better" in cw_row.split("|")[2]
    assert "-0.1000" in cw_row.split("|")[3] and "worse" in cw_row.split("|")[3]  # removing cw hurts
    assert "within noise" in ls_row.split("|")[2] and "within noise" in ls_row.split("|")[3]
    assert "**helps in the full recipe; helps alone**" in cw_row
    assert "**within noise in the full recipe; within noise alone**" in ls_row
    assert "`full` (every change) vs `baseline`: +0.1000" in text


def test_a_variant_named_plus_something_in_variants_is_no_ablation_change(write_experiment):
    """[variants] plus_warmup is baseline_plus_warmup by name only: the Ablation section, which
    read it as an [ablation] change (a row 'warmup', and a section in a study with no
    [ablation]), leaves it to the Results and What mattered tables."""
    values = {"baseline": .61, "baseline_plus_warmup": .7, "baseline_plus_cw": .65}
    results = {f"{name}-s42": _result(v, 0.5, 2.0) for name, v in values.items()}
    path = write_experiment(variants="plus_warmup = { warmup_ratio = 0.1 }\n")
    spec = load_spec(path)
    text = write_report(spec, _store(spec, {k: v for k, v in results.items()
                                            if "cw" not in k})).read_text()
    assert "| baseline_plus_warmup |" in text and "## Ablation" not in text
    path = write_experiment(name="both", variants="plus_warmup = { warmup_ratio = 0.1 }\n", extra=(
        '[ablation]\nmode = "add-one"\n[ablation.changes]\ncw = { class_weight = "balanced" }\n'))
    spec = load_spec(path)
    text = write_report(spec, _store(spec, results)).read_text()
    table = text[text.index("## Ablation"):text.index("## Results")]
    assert "| cw |" in table and "warmup" not in table


def test_the_terminal_table_says_a_removed_changes_delta_is_against_full(write_experiment, capsys):
    """full_minus_cw's Δ in the run's summary table is against `full` (0.61 - 0.71), not the
    baseline (0.61 - 0.61): the table says so, as the report's does, where such a row is shown."""
    path = write_experiment(variants="bs32 = { batch_size = 32 }\n", extra=(
        '[ablation]\nmode = "leave-one-out"\n[ablation.changes]\n'
        'cw = { class_weight = "balanced" }\nls = { label_smoothing = 0.1 }\n'))
    spec = load_spec(path)
    values = {"baseline": .61, "baseline_bs32": .65, "full": .71, "full_minus_cw": .61,
              "full_minus_ls": .70}
    study = _store(spec, {f"{name}-s42": _result(v, 0.5, 2.0) for name, v in values.items()})
    cli._print_summary(spec, build_report(spec, study))
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("full_minus_cw "))
    assert "-0.1000" in row
    assert "\nΔ is against the baseline (full_minus_*: against full)\n" in out
    assert "Δ is against the baseline (`full_minus_*`: against `full`)." in \
        write_report(spec, study).read_text()
    spec = load_spec(path, ['experiment.name="plain"', 'ablation.mode="add-one"'])
    study = _store(spec, {f"{name}-s42": _result(v, 0.5, 2.0)
                          for name, v in {"baseline": .61, "baseline_plus_cw": .7}.items()})
    cli._print_summary(spec, build_report(spec, study))
    assert "Δ is against" not in capsys.readouterr().out  # every Δ is the baseline's
    # nor does the report's Results note name `full_minus_*`, a term a study without such rows
    # never explains
    text = write_report(spec, study).read_text()
    note = next(line for line in text.splitlines() if "Δ is against the baseline" in line)
    assert note.endswith("Δ is against the baseline.") and "full_minus" not in note, note


def test_ablation_table_says_which_sign_is_better_for_a_minimized_metric(write_experiment):
    """Over seeds a loss is compared as a loss: removing a change that helps raises it, so a
    positive 'removed' value means the recipe is worse without the change, not better."""
    path = write_experiment(variants="", extra=(
        '[ablation]\nmode = "leave-one-out"\n[ablation.changes]\n'
        'cw = { class_weight = "balanced" }\nls = { label_smoothing = 0.1 }\n'))
    spec = load_spec(path, ["experiment.seeds=[1, 2, 3]", 'experiment.metric="eval_loss"'])
    losses = {"baseline": [.80, .81, .82], "full": [.60, .62, .61], "full_minus_cw": [.70, .71, .72],
              "full_minus_ls": [.60, .61, .62]}
    results = {}
    for name, values in losses.items():
        for seed, loss in zip((1, 2, 3), values, strict=True):
            result = _result(0.6, 0.5, 2.0)
            result["validation"] = {**result["validation"], "macro_f1": loss, "eval_loss": loss}
            result["test"] = {**result["test"], "eval_loss": loss + 0.01}
            results[f"{name}-s{seed}"] = result
    text = write_report(spec, _store(spec, results)).read_text()
    assert ("a negative value means the recipe is better without the change (lower eval_loss is "
            "better)") in text
    assert "a positive value means the recipe is better" not in text
    cw_row = next(line for line in text.splitlines() if line.startswith("| cw |"))
    assert "+0.1000" in cw_row and "worse" in cw_row and "**helps in the full recipe**" in cw_row


def test_one_seed_with_a_loss_metric_says_its_effects_are_differences_in_accuracy(write_experiment):
    """Per-example predictions give accuracy, not a loss: the effects must be labelled so."""
    path = write_experiment(variants="good = { learning_rate = 1e-2 }\n")
    spec = load_spec(path, ['experiment.metric="eval_loss"', 'experiment.direction="minimize"'])
    labels = [0, 1, 2] * 40
    wrong = [(y + 1) % 3 for y in labels[:60]] + labels[60:]

    def result(predictions, value):
        return _result(value, 0.5, 2.0) | {"test_predictions": predictions, "test_labels": labels}

    study = _store(spec, {"baseline-s42": result(wrong, 0.6), "baseline_good-s42": result(labels, 0.9)})
    built = build_report(spec, study)
    (effect,) = built["effects"]
    assert effect.metric == "accuracy" and effect.interval.estimate == pytest.approx(0.5)
    text = write_report(spec, study).read_text()
    assert "the difference in `accuracy` (see below the table)" in text
    assert "the difference in `eval_loss`" not in text


def test_a_removed_change_is_never_measured_against_the_baseline(write_experiment):
    """full_minus_* is compared with `full`; while `full` has no result it shows no Δ."""
    path = write_experiment(variants="", extra=(
        '[ablation]\nmode = "leave-one-out"\n[ablation.changes]\n'
        'cw = { class_weight = "balanced" }\nls = { label_smoothing = 0.1 }\n'))
    spec = load_spec(path)
    study = _store(spec, {"baseline-s42": _result(0.6, 0.5, 2.0),
                          "full_minus_ls-s42": _result(0.9, 0.5, 2.0)})
    built = build_report(spec, study)
    row = built["variants"].set_index("variant").loc["full_minus_ls"]
    assert math.isnan(row["delta"]) and row["best"]
    text = write_report(spec, study).read_text()
    assert "`full_minus_ls` — macro_f1 0.9000 (full has no result yet)" in text


def test_diagnosis_and_pictures_are_in_the_report(write_experiment):
    path = write_experiment(variants="", extra="[sweep]\nmax_train_samples = [50, 100]\n")
    spec = load_spec(path)
    collapsed = _result(0.5, 0.5, 2.0) | {"validation_confusion": [[5, 0, 1], [3, 0, 2], [1, 0, 6]],
                                          "train_examples": 216}
    small = _result(0.4, 0.5, 2.0) | {"train_examples": 50}
    medium = _result(0.45, 0.5, 2.0) | {"train_examples": 100}
    study = _store(spec, {"baseline-s42": collapsed, "baseline_n50-s42": small,
                          "baseline_n100-s42": medium})
    text = write_report(spec, study).read_text()
    assert "- **baseline-s42** — class collapse: The selected checkpoint (step 10) never predicts " \
           "'neu' (support 5)" in text
    for picture in ("metric", "confusion", "learning_curve"):
        assert f"(plots/{picture}.png)" in text
        assert (spec.output_dir / "plots" / f"{picture}.png").stat().st_size > 1000


def test_identical_results_over_seeds_still_plot(tmp_path):
    """Zero spread: the CI is [v, v] while the mean may differ from v in its last bit."""
    from ablation.report.plots import plot_metric

    value = 0.3
    mean = float(np.nextafter(value, 0.0))  # one bit below the interval [value, value]
    path = plot_metric(["baseline"], [mean], [value], [value], "macro_f1", None, tmp_path / "m.png")
    assert path.stat().st_size > 1000


def test_a_picture_is_drawn_beside_and_put_in_place_whole(tmp_path, monkeypatch):
    """Two runs of one study ending together each draw the report's pictures: drawn straight into
    plots/*.png, the two writes could mix in one file, and a reader could open half a picture."""
    from matplotlib.figure import Figure

    from ablation.report.plots import plot_metric

    real, drawn_into = Figure.savefig, []

    def savefig(self, fname, *args, **kwargs):
        drawn_into.append(Path(fname))
        return real(self, fname, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", savefig)
    path = plot_metric(["baseline"], [0.5], [0.4], [0.6], "macro_f1", None, tmp_path / "m.png")
    assert path == tmp_path / "m.png" and path.read_bytes().startswith(b"\x89PNG")
    assert len(drawn_into) == 1 and drawn_into[0] != path and drawn_into[0].parent == tmp_path
    assert [p.name for p in tmp_path.iterdir()] == ["m.png"]  # the file beside is gone


def test_a_variants_interval_stays_within_what_the_metric_can_be(write_experiment):
    path = write_experiment(variants="")
    spec = load_spec(path, ["experiment.seeds=[1, 2]"])
    study = _store(spec, {"baseline-s1": _result(0.1, 0.5, 2.0), "baseline-s2": _result(0.9, 0.5, 2.0)})
    row = build_report(spec, study)["variants"].iloc[0]
    assert (row["ci_low"], row["ci_high"]) == (0.0, 1.0)  # the t-interval is [-4.58, 5.58]


def test_what_mattered_says_when_the_reference_has_no_result_yet(write_experiment):
    """`--only` the baseline and one leave-one-out variant: full_minus_a is compared with `full`,
    which has not run, so there is nothing to compare; the note says so (not a seeds problem)."""
    path = write_experiment(variants="", extra=(
        "[ablation]\nmode = \"leave-one-out\"\n[ablation.changes]\n"
        "a = { batch_size = 32 }\nb = { weight_decay = 0.01 }\n"))
    assert cli.main(["run", str(path), "--only", "baseline", "--only", "full_minus_a"]) == 0
    report = (load_spec(path).output_dir / "report.md").read_text()
    assert "No comparisons yet: `full`, which the variants here are compared with, has no result" in report
    assert "No confidence intervals" not in report


def test_what_mattered_names_a_variant_it_cannot_compare_and_why(write_experiment, capsys):
    """baseline_other has a result at seed 4 only, where the baseline has none: it had no row in
    What mattered and no word on why, beside a results table (and a Best variant line) that show
    its Δ; with no comparison at all, the report blamed one seed without predictions."""
    path = write_experiment(variants="wide = { batch_size = 32 }\nother = { batch_size = 8 }\n")
    spec = load_spec(path, ["experiment.seeds=[1, 2, 3, 4]"])
    values = {"baseline-s1": .6, "baseline-s2": .62, "baseline-s3": .64, "baseline_wide-s1": .7,
              "baseline_wide-s2": .71, "baseline_other-s4": .9}
    study = _store(spec, {k: _result(v, 0.5, 2.0) for k, v in values.items()})
    built = build_report(spec, study)
    text = write_report(spec, study, built).read_text()
    assert "| 1 | baseline_wide |" in text
    assert ("Not compared: `baseline_other` (no seed at which both it and `baseline` have a result: "
            "it has seed 4, `baseline` seeds 1, 2, 3).") in text
    # report.json and the terminal say it too (they said nothing of baseline_other's missing row)
    reason = "no seed at which both it and `baseline` have a result: it has seed 4, `baseline` seeds 1, 2, 3"
    assert report_json(spec, built)["not_compared"] == {"baseline_other": reason}
    cli._print_summary(spec, built)
    assert f"\nnot compared: baseline_other ({reason.replace('`', '')})\n" in capsys.readouterr().out
    spec = load_spec(path, ["experiment.seeds=[1, 2, 3, 4]", 'experiment.name="apart"'])
    values = {"baseline-s1": .6, "baseline_other-s4": .9}
    text = write_report(spec, _store(spec, {k: _result(v, 0.5, 2.0) for k, v in values.items()})
                        ).read_text()
    assert ("No comparisons: `baseline_other` (no seed at which both it and `baseline` have a "
            "result: it has seed 4, `baseline` seed 1).") in text
    assert "No confidence intervals" not in text


def test_two_processes_writing_one_report_at_once_both_succeed(tmp_path, monkeypatch):
    """Two runs of one study end together and each writes report.md: both wrote it beside it as
    the same `.report.md.partial`, so the first to put its file in place took the other's, and
    the other failed "report.md cannot be written: No such file or directory" (exit 2)."""
    from pathlib import Path

    from ablation.report._write import _write_whole

    report = tmp_path / "report.md"
    real = Path.write_text
    calls = []

    def another_writes_meanwhile(path, text, *args, **kwargs):
        written = real(path, text, *args, **kwargs)
        calls.append(path.name)
        if len(calls) == 1:  # between this writer's write and its rename, the other does both
            _write_whole(report, "the other run's report\n", "ablate report x.toml")
        return written

    monkeypatch.setattr(Path, "write_text", another_writes_meanwhile)
    _write_whole(report, "this run's report\n", "ablate report x.toml")
    assert report.read_text(encoding="utf-8") == "this run's report\n"
    assert [p.name for p in tmp_path.iterdir()] == ["report.md"]  # no partial file left


def test_a_report_file_is_replaced_whole_or_not_at_all(tmp_path, monkeypatch):
    """An interrupted write leaves the previous report, not half of the new one."""
    from pathlib import Path

    from ablation.report._write import _write_whole

    report = tmp_path / "report.md"
    report.write_text("previous report\n", encoding="utf-8")
    real = Path.write_text

    def interrupted(path, text, *args, **kwargs):
        real(path, text[:5], *args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(Path, "write_text", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _write_whole(report, "the new report\n", "ablate report x.toml")
    assert report.read_text(encoding="utf-8") == "previous report\n"
    assert [p.name for p in tmp_path.iterdir()] == ["report.md"]  # no partial file left
    monkeypatch.undo()
    _write_whole(report, "the new report\n", "ablate report x.toml")
    assert report.read_text(encoding="utf-8") == "the new report\n"
    assert [p.name for p in tmp_path.iterdir()] == ["report.md"]


_WRITER = """
import os, signal, sys, time
from pathlib import Path
from ablation.locking import written_beside
with written_beside(Path(sys.argv[1])) as partial:
    partial.write_text("half of a report")
    print("writing", flush=True)
    if sys.argv[2] == "killed":
        os.kill(os.getpid(), signal.SIGKILL)
    sys.stdin.readline()  # goes on when told
"""


def test_a_write_clears_the_file_beside_a_killed_writer_left_but_not_a_live_one_s(tmp_path):
    """kill -9 between the write beside report.md and its rename left `.report.md.<hex>.partial`
    there for good. The next whole write of report.md removes it; a file beside that another
    process is still writing stays, and that process puts its file in place."""
    import subprocess
    import sys

    from ablation.report._write import _write_whole

    report = tmp_path / "report.md"
    env = os.environ | {"PYTHONPATH": str(Path(__file__).parents[1])}

    def writer(how: str) -> subprocess.Popen:
        process = subprocess.Popen([sys.executable, "-c", _WRITER, str(report), how], env=env,
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert process.stdout.readline() == "writing\n"
        return process

    killed = writer("killed")
    assert killed.wait(timeout=60) == -signal.SIGKILL
    [left] = tmp_path.glob(".report.md.*.partial")
    (tmp_path / ".notes.md.partial").write_text("a user's file")  # not a name ablate gives
    live = writer("live")
    [writing] = set(tmp_path.glob(".report.md.*.partial")) - {left}
    _write_whole(report, "this run's report\n", "ablate report x.toml")
    assert report.read_text(encoding="utf-8") == "this run's report\n"
    assert not left.exists() and writing.exists()
    live.communicate("\n", timeout=60)
    assert live.returncode == 0 and report.read_text(encoding="utf-8") == "half of a report"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".notes.md.partial", "report.md"]


def _trials(study) -> list[tuple]:
    return [(t.number, t.state, t.value, t.user_attrs.get("variant")) for t in study.get_trials()]


@pytest.mark.parametrize(("in_the_way", "fmt", "said"), [
    ("report.md", "md", "report.md cannot be written: a folder is in its place; move it out of the way"),
    ("results.csv", "csv", "results.csv cannot be written: a folder is in its place"),
    ("report.json", "json", "report.json cannot be written: a folder is in its place"),
    ("plots", "md", "plots cannot be created: a file is in its place; move it out of the way"),
    ("plots/metric.png", "md", "metric.png cannot be written: a folder is in its place"),
], ids=["report.md", "results.csv", "report.json", "plots", "a plot"])
def test_a_report_file_that_cannot_be_written_is_one_error_line(stored_study, capsys, in_the_way,
                                                                fmt, said):
    """A folder where a report file goes (or a file where the plots folder goes): exit code 2, one
    line naming it and the command that writes it again; no partial file; the trials unchanged."""
    spec, study = stored_study
    before = _trials(study)
    out = spec.output_dir
    blocker = out / in_the_way
    if in_the_way == "plots":
        out.mkdir(parents=True, exist_ok=True)
        blocker.write_text("not a folder\n", encoding="utf-8")
    else:
        (blocker / "kept").mkdir(parents=True)
    capsys.readouterr()
    argv = ["report", str(spec.path), "--set", "experiment.seeds=[42, 7]", "--format", fmt]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"ablate: error: {blocker} ") and err.count("\n") == 1, err
    assert said in err and "`ablate report " in err and "writes it again" in err, err
    assert "Traceback" not in err
    assert not list(out.rglob("*.partial")), list(out.rglob("*.partial"))
    assert (blocker / "kept").is_dir() if in_the_way != "plots" else blocker.is_file()
    assert _trials(open_study(spec, create=False)) == before
    if in_the_way.startswith("plots"):
        assert not (out / "report.md").exists()  # stopped at the plots


def test_a_failed_write_says_why_and_leaves_the_previous_file(stored_study, monkeypatch):
    """No space left (or no permission): the OS's reason; the previous report.json stays whole."""
    import errno
    from pathlib import Path

    from conftest import one_error_line

    from ablation.report import write_report_json

    spec, study = stored_study
    built = build_report(spec, study)
    path = write_report_json(spec, built)
    previous = path.read_text(encoding="utf-8")

    def full(self, target):
        raise OSError(errno.ENOSPC, "No space left on device", str(self))

    monkeypatch.setattr(Path, "replace", full)
    message = one_error_line(write_report_json, spec, built)
    assert message.startswith(f"{path} cannot be written: No space left on device; once it can be, "
                              "`ablate report ") and message.endswith(" writes it again"), message
    assert path.read_text(encoding="utf-8") == previous
    assert not list(spec.output_dir.glob(".*.partial"))


def test_a_study_without_complete_trials_says_so_and_names_only_logs_that_exist(
        write_experiment, monkeypatch):
    """Not "ran with one seed" when nothing completed; a trial still queued has no log yet."""
    from ablation import train

    path = write_experiment()

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(train, "train_trial", interrupted)
    assert cli.main(["run", str(path)]) == 130  # baseline failed as interrupted; bs32 waits
    assert cli.main(["report", str(path)]) == 0
    report = (load_spec(path).output_dir / "report.md").read_text()
    assert "No comparisons yet: no variant has a complete trial" in report
    assert "No confidence intervals" not in report
    assert ("- `baseline-s42` (trial 0): interrupted (Ctrl+C or SIGTERM) — log: "
            "`trials/baseline-s42/trial.log`") in report
    assert "- `baseline_bs32-s42` (trial 1): queued: the next run trains it\n" in report


def test_a_report_written_while_a_run_trains_names_the_process_and_who_takes_the_queued(
        write_experiment):
    """`ablate report` while `run` trained the study said of each queued trial "the next run
    trains it", as if it would wait for another run, and of the running one only "running".
    The running trial's row now names its process and step, as `status` does, and a queued one
    says that the process training the study takes it in turn (else the next run)."""
    import optuna

    from ablation import records
    from ablation.queue import open_study

    path = write_experiment()
    spec = load_spec(path, need_data=False)
    study = open_study(spec)
    study.set_user_attr("metric", "macro_f1")
    running = study.ask()  # as a live run claimed it: its process is this test's
    for key, value in {records.VARIANT: "baseline", records.SEED: 42, records.KEY: "baseline-s42",
                       records.OVERRIDES: {}, records.WORKER: records.this_worker(),
                       records.PROGRESS: {"step": 12, "max_steps": 40}}.items():
        running.set_user_attr(key, value)
    study.enqueue_trial({}, user_attrs={records.VARIANT: "baseline_bs32", records.SEED: 42,
                                        records.KEY: "baseline_bs32-s42",
                                        records.OVERRIDES: {"batch_size": 32}})
    assert running.number == 0 and study.trials[0].state == optuna.trial.TrialState.RUNNING
    assert cli.main(["report", str(path)]) == 0
    report = (spec.output_dir / "report.md").read_text()
    worker = records.this_worker()
    assert f"- `baseline-s42` (trial 0): running in {worker}, step 12 of 40\n" in report
    assert (f"- `baseline_bs32-s42` (trial 1): queued: taken in turn by the process training "
            f"this study now ({worker}), else by the next run\n") in report


def test_the_terminal_says_a_variant_without_a_result_was_pruned_or_failed(capsys):
    """A pruned or failed variant showed "—", as if it had no trial at all."""
    import pandas as pd

    from ablation.report.markdown import fmt

    rows = pd.DataFrame([{"seeds": 0, "failed": 0, "pruned_at_step": 5.0, "value": float("nan"),
                          "value_std": float("nan")},
                         {"seeds": 0, "failed": 1, "pruned_at_step": float("nan"),
                          "value": float("nan"), "value_std": float("nan")},
                         {"seeds": 1, "failed": 0, "pruned_at_step": float("nan"), "value": 0.5,
                          "value_std": float("nan")}])
    assert [cli._value_cell(row, fmt) for _, row in rows.iterrows()] == [
        "pruned at step 5", "failed", fmt(0.5, float("nan"))]


def test_results_csv_and_report_json_are_written_for_programs(stored_study):
    """A failed trial has no steps, and only a pruned one a pruned_at_step: the counts that exist
    are still written as integers (`10`, not `10.0`), the missing ones as empty cells and null."""
    import json

    from ablation.report import write_report_json
    from ablation.report._write import write_results_csv

    spec, study = stored_study
    more = load_spec(spec.path, ["experiment.seeds=[42, 7, 9]"])
    pruned = next(t for t in expand(more) if t.key == "baseline-s9")
    study.enqueue_trial({}, user_attrs=records.trial_attrs(pruned))
    live = study.ask()
    live.set_user_attr(records.RESULT, {**_result(0.4, 0.9, 1.0), "pruned_at_step": 5})
    study.tell(live, state=optuna.trial.TrialState.PRUNED)
    built = build_report(more, study)
    assert built["trials"]["pruned_at_step"].notna().sum() == 1
    # A pruned trial is neither complete nor failed: the headline counts it apart.
    report = write_report(more, study, built).read_text()
    assert "- **Trials**: 5 complete, 1 pruned, 1 failed; storage" in report
    text = write_results_csv(more, built).read_text().splitlines()
    header = text[0].split(",")
    steps = [line.split(",")[header.index("steps")] for line in text[1:]]
    assert "10" in steps and "" in steps and "10.0" not in steps
    document = json.loads(write_report_json(more, built).read_text())
    assert [row["pruned_at_step"] for row in document["trials"]].count(5) == 1
    trial_steps = [row["steps"] for row in document["trials"]]
    assert 10 in trial_steps and None in trial_steps
    assert all(type(s) is int for s in trial_steps if s is not None)
    assert all(type(row["seed"]) is int for row in document["trials"])
    assert all(type(row["seeds"]) is int for row in document["variants"])
    # Which split and how many paired seeds each effect is on, as the terminal and report.md say.
    effect = next(e for e in document["effects"] if e["variant"] == "baseline_bs32")
    assert effect["split"] == "test" and effect["seeds"] == 2 and effect["n"] == 2
    tested = [e for e in document["effects"] if e["p_value"] is not None]
    assert (effect["p_holm"] is None) == (len(tested) < 2)  # adjusted with the others, if any
    # The baseline changes nothing: an empty field for programs, "—" only in the report.
    assert {row["changes"] for row in document["trials"] if row["variant"] == "baseline"} == {""}
    assert ",—," not in "\n".join(text)


def test_report_json_has_the_search_section_of_report_md(write_experiment, stored_study):
    """report.md's Search section (best trial, its parameters, importances) was not in report.json;
    a study without [search] has `"search": null`."""
    import json

    from ablation.report import write_report_json

    spec, study = stored_study
    assert json.loads(write_report_json(spec, build_report(spec, study)).read_text())["search"] is None

    path = write_experiment(name="searched", variants="", extra=(
        '[search]\nn_trials = 5\npruner = "median"\n[search.space]\nbatch_size = [8, 16]\n'))
    spec = load_spec(path)
    study = _store(spec, {"baseline-s42": _result(0.6, 0.5, 2.0)})
    for number, batch_size, value in ((1, 8, 0.7), (2, 16, 0.6), (3, 8, 0.7), (4, 16, None)):
        trial = TrialSpec.of(spec.baseline, f"search_{number}", 42, {"batch_size": batch_size})
        study.enqueue_trial({"batch_size": batch_size}, user_attrs=records.trial_attrs(trial))
        live = study.ask()
        live.suggest_categorical("batch_size", [8, 16])
        if value is None:
            live.set_user_attr(records.RESULT, {**_result(0.4, 0.9, 1.0), "pruned_at_step": 5})
            live.report(0.4, 5)
            study.tell(live, state=optuna.trial.TrialState.PRUNED)
        else:
            live.set_user_attr(records.RESULT, _result(value, 0.5, 2.0))
            study.tell(live, value)
    built = build_report(spec, study)
    search = json.loads(write_report_json(spec, built).read_text())["search"]
    assert {k: v for k, v in search.items() if k != "importances"} == {
        "n_trials": 5, "sampler": "tpe", "pruner": "median", "trials": 4, "complete": 3,
        "pruned": 1, "failed": 0,
        "best": {"variant": "search_1", "trial": 1, "value": 0.7, "params": {"batch_size": 8},
                 "tied_with": ["search_3"]},
        "pruned_at_step": {"search_4": 5}, "repeated": {}}
    assert list(search["importances"]) == ["batch_size"] == list(built["importances"])
    assert search["importances"]["batch_size"] == pytest.approx(built["importances"]["batch_size"])
    report = write_report(spec, study, built).read_text()  # the same figures as report.md's
    assert "4 of 5 search trials: 3 complete, 1 pruned, 0 failed (sampler tpe, pruner median)" in report
    assert ("- **Best**: `search_1` — macro_f1 0.7000 with `batch_size = 8`; tied with `search_3` "
            "(the first in the study's order is named)") in report
    assert "- **Pruned**: `search_4` at step 5" in report


def test_every_variant_of_a_curve_plot_has_its_own_line_style_beyond_ten_variants(tmp_path, monkeypatch):
    """tab10 has ten colours: the eleventh variant (a search trial after ten others) was drawn in
    the baseline's colour and style, so the legend could not tell the two apart."""
    from ablation.report import plots

    names = ["baseline", *[f"v{i}" for i in range(1, 12)]]
    history = [{"step": s, "epoch": s / 10, "loss": 1.0, "grad_norm": 1.0, "learning_rate": 1e-3}
               for s in (1, 10)]
    chosen = [records.TrialRecord(number=i, variant=name, seed=42, overrides={}, state="COMPLETE",
                                  value=0.5, result={"history": history, "eval_history": []})
              for i, name in enumerate(names)]
    styles: dict[str, set] = {}

    def keep(fig, path, tight=True):
        styles[path.stem] = {(line.get_label(), line.get_color(), line.get_linestyle())
                             for line in fig.axes[0].get_lines()}
        plots.plt.close(fig)

    monkeypatch.setattr(plots, "_save", keep)
    plots.plot_curves(chosen, tmp_path, names)
    looks = [(color, style) for _, color, style in styles["train_loss"]]
    assert len(styles["train_loss"]) == len(names) and len(set(looks)) == len(names)


def test_the_trials_line_counts_running_and_queued_trials_too(stored_study):
    """A study of 5 results and 1 failure, with one trial still training and one queued: the line
    said "5 complete, 1 failed" and left 2 of its trials out of the count."""
    spec, study = stored_study
    import dataclasses

    lr = next(t for t in expand(spec) if t.variant == "baseline_lr")
    running, queued = (dataclasses.replace(lr, seed=seed) for seed in (43, 44))
    study.enqueue_trial({}, user_attrs=records.trial_attrs(running))
    study.ask()  # claimed, never told: RUNNING
    study.enqueue_trial({}, user_attrs=records.trial_attrs(queued))  # WAITING
    log = spec.output_dir / "trials" / f"{queued.key}" / "trial.log"
    log.parent.mkdir(parents=True)
    log.write_text("an earlier attempt's traceback\n")  # a retry queued after it failed
    text = write_report(spec, study).read_text()
    assert "- **Trials**: 5 complete, 1 failed, 1 running, 1 queued; storage" in text
    # the trials without a result say "queued" as that line does (Optuna's WAITING), and whose
    # log a queued retry's folder holds
    assert (f"- `{queued.key}` (trial 7): queued: the next run trains it — its earlier attempt's "
            f"log: `trials/{queued.key}/trial.log`") in text
    assert "waiting" not in text


def test_each_basis_line_names_the_comparisons_it_is_of(write_experiment):
    """v was paired over 3 seeds, w over the 2 it completed: two "Computed from" lines, and a
    reader must be able to tell which row rests on which seeds."""
    path = write_experiment(variants="v = { batch_size = 32 }\nw = { learning_rate = 1e-2 }\n")
    spec = load_spec(path, ["experiment.seeds=[1, 2, 3]"])
    values = {"baseline-s1": .60, "baseline-s2": .62, "baseline-s3": .61, "baseline_v-s1": .70,
              "baseline_v-s2": .74, "baseline_v-s3": .71, "baseline_w-s1": .50, "baseline_w-s2": .55}
    study = _store(spec, {key: _result(v, 0.5, 2.0) for key, v in values.items()})
    text = write_report(spec, study).read_text()
    assert "Computed from macro_f1 on test, paired over seeds 1, 2 (t-test): `baseline_w`." in text
    assert "Computed from macro_f1 on test, paired over seeds 1, 2, 3 (t-test): `baseline_v`." in text


def test_label_names_no_font_can_draw_get_one_note_not_a_warning_per_glyph(tmp_path, capsys,
                                                                          monkeypatch):
    """Chinese label names (差评, 好评) on a machine with no CJK font: matplotlib warned once per
    glyph, with its source lines, and drew boxes; one note says what the picture lacks instead."""
    import warnings

    from ablation.report import plots

    monkeypatch.setattr(plots, "CJK_FONTS", ())  # as on a machine without any
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # hidden by default, as pytest's settings hide them: matplotlib 3.8 under pyparsing 3.3
        # warns of pyparsing's camelCase names ('parseString' deprecated) the first time it draws
        warnings.simplefilter("ignore", DeprecationWarning)
        path = plots.plot_confusions({"baseline (validation)": [[3, 1], [0, 2]]}, ["差评", "好评"],
                                     tmp_path / "confusion.png")
    assert path.is_file()
    assert capsys.readouterr().err.splitlines() == [
        f"note: {path}: no installed font draws the label names '差评', '好评' (they show as boxes); "
        "install a font that has them (Noto Sans CJK for Chinese, Japanese and Korean) and run "
        "`ablate report` again"]


def _captured_plots(monkeypatch) -> dict[str, dict]:
    """Each plot's legend labels and size in pixels as write_report saves it (the file is written
    too)."""
    from ablation.report import plots

    seen: dict[str, dict] = {}
    save = plots._save

    def keep(fig, path, tight=True):
        legend = fig.axes[0].get_legend()
        seen[path.stem] = {"legend": [t.get_text() for t in legend.get_texts()] if legend else []}
        save(fig, path, tight)
        seen[path.stem]["pixels"] = plots.plt.imread(path).shape[:2]

    monkeypatch.setattr(plots, "_save", keep)
    return seen


def test_a_big_studys_plots_name_a_few_variants_and_stay_small_without_a_warning(write_experiment,
                                                                                 monkeypatch):
    """40 variants: the curve plots' legends named all 40 (taller than the figure: matplotlib
    printed "Tight layout not applied" on the terminal) and the metric plot grew 0.45 inch a
    variant; now the baseline, the best and worst 5 are named, the rest one grey entry, the metric
    plot shows the baseline and the best and worst 12, and report.md says what is left out."""
    import warnings

    names = [f"v{i:02d}" for i in range(1, 40)]
    path = write_experiment(variants="".join(
        f"{name} = {{ learning_rate = {1e-4 * i:.4g} }}\n" for i, name in enumerate(names, 1)))
    spec = load_spec(path, ["experiment.seeds=[42]"])
    values = {"baseline-s42": 0.5} | {f"baseline_{name}-s42": 0.3 + 0.01 * i
                                      for i, name in enumerate(names)}  # v39 best, v01 worst
    study = _store(spec, {key: _result(value, 0.5, 2.0) for key, value in values.items()})
    seen = _captured_plots(monkeypatch)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        text = write_report(spec, study).read_text()
    for stem in ("train_loss", "eval_loss", "grad_norm", "learning_rate"):
        assert seen[stem]["legend"] == [
            "baseline", *[f"baseline_v{i:02d}" for i in (39, 38, 37, 36, 35, 5, 4, 3, 2, 1)],
            "other variants (29)"], stem
        assert seen[stem]["pixels"] == (440, 990)
    height, _ = seen["metric"]["pixels"]
    assert height <= 0.45 * 26 * 110 + 1.4 * 110 + 1  # baseline, 24 rows and the gap row
    assert ("*The curve plots name the baseline, the 5 best and 5 worst variants by macro_f1 (11 "
            "of 40); the 29 other variants are the thin grey lines, each group one legend "
            "entry.*") in text
    assert ("*The metric plot shows the baseline and the 12 best and 12 worst of the 40 variants "
            "by macro_f1, best first; the 15 between them are left out (the Results table has "
            "every variant).*") in text


def test_a_big_studys_plot_captions_leave_out_a_baseline_with_no_complete_trial(write_experiment,
                                                                               monkeypatch):
    """The captions under a big study's plots said "the baseline" also where the baseline had no
    complete trial, so that neither plot drew it: they now say only what the plots show."""
    names = [f"v{i:02d}" for i in range(1, 40)]
    path = write_experiment(variants="".join(
        f"{name} = {{ learning_rate = {1e-4 * i:.4g} }}\n" for i, name in enumerate(names, 1)))
    spec = load_spec(path, ["experiment.seeds=[42]"])
    values = {f"baseline_{name}-s42": 0.3 + 0.01 * i for i, name in enumerate(names)}
    study = _store(spec, {key: _result(value, 0.5, 2.0) for key, value in values.items()})
    seen = _captured_plots(monkeypatch)
    text = write_report(spec, study).read_text()
    assert "baseline" not in seen["train_loss"]["legend"]
    assert ("*The curve plots name the 5 best and 5 worst variants by macro_f1 (10 of 39); the 29 "
            "other variants are the thin grey lines, each group one legend entry.*") in text
    assert ("*The metric plot shows the 12 best and 12 worst of the 39 variants by macro_f1, best "
            "first; the 15 between them are left out (the Results table has every variant).*") in text


def test_a_big_searchs_trials_are_grey_but_the_best_and_the_legend_stays_short(tmp_path,
                                                                               monkeypatch):
    """300 [search] trials: one legend entry each (about 5 s to place, taller than the figure);
    now the best search trial is named and marked, the others are one grey entry."""
    import warnings

    from ablation.report import plots

    names = ["baseline", *[f"search_{i}" for i in range(1, 300)]]
    history = [{"step": s, "epoch": s / 10, "loss": 1.0, "grad_norm": 1.0, "learning_rate": 1e-3}
               for s in (1, 10)]
    chosen = [records.TrialRecord(number=i, variant=name, seed=42, overrides={}, state="COMPLETE",
                                  value=i / 300, result={"history": history, "eval_history": []})
              for i, name in enumerate(names)]
    seen = _captured_plots(monkeypatch)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plots.plot_curves(chosen, tmp_path, names, ranking=names[::-1])
    assert seen["train_loss"]["legend"] == [
        "baseline", "search_299 (best [search] trial)",
        *[f"search_{i}" for i in (298, 297, 296, 295, 5, 4, 3, 2, 1)], "other [search] trials (289)"]


def test_a_small_studys_curve_plots_name_every_variant_as_before(stored_study, monkeypatch):
    """Up to 12 variants the plots look as they always did: each variant named in the legend, a
    7 × 4 inch figure, and report.md says nothing is left out."""
    spec, study = stored_study
    seen = _captured_plots(monkeypatch)
    text = write_report(spec, study).read_text()
    assert seen["train_loss"]["legend"] == ["baseline", "baseline_bs32", "baseline_lr"]
    assert seen["train_loss"]["pixels"] == (440, 770)
    assert "thin grey lines" not in text and "left out" not in text


def test_a_variant_name_too_long_for_the_figure_widens_the_picture_without_a_warning(tmp_path):
    """A 150-character variant name left no room for the metric plot's axes: matplotlib printed
    "Tight layout not applied" on the terminal; the picture is now saved as wide as its labels."""
    import warnings

    from ablation.report import plots

    name = "baseline_" + "x" * 150
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        path = plots.plot_metric(["baseline", name], [0.5, 0.6], [math.nan] * 2, [math.nan] * 2,
                                 "macro_f1", name, tmp_path / "metric.png")
    assert plots.plt.imread(path).shape[1] > 7 * 110  # wider than the 7-inch figure: nothing cut


def test_a_class_name_too_long_for_the_confusion_plot_widens_it_without_a_warning(tmp_path):
    """A 150-character class name (or a long variant name, the matrix's title) left no room for
    the matrix: matplotlib printed "Tight layout not applied" on the terminal, as the curve and
    metric plots did before; the picture is now saved as wide as its labels."""
    import warnings

    from ablation.report import plots

    long_class = "c" * 150
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        path = plots.plot_confusions({f"baseline_{'x' * 150} (validation)": [[3, 1], [0, 2]]},
                                     [long_class, "b"], tmp_path / "confusion.png")
    assert plots.plt.imread(path).shape[1] > 4.2 * 110  # wider than the figure: nothing cut


def test_a_learning_curve_label_too_big_for_its_figure_gives_no_warning(tmp_path):
    """The learning curve saved without the guard the other plots have: a label that does not fit
    (the metric is a name of a few letters today; a label of many lines stands in for any that
    grows) printed "Tight layout not applied" on the terminal."""
    import warnings

    from ablation.report import plots

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        path = plots.plot_learning_curve([(10, 0.5, 0.4, 0.6), (100, 0.6, 0.5, 0.7)],
                                         "macro_f1\n" * 40, tmp_path / "learning_curve.png")
    assert plots.plt.imread(path).shape[1] > 6 * 110


def _lines_under_legend(fig) -> list[str]:
    """The labels of the lines a figure's legend is drawn over (in the picture as saved)."""
    fig.draw_without_rendering()
    ax = fig.axes[0]
    box = ax.get_legend().get_window_extent()
    under = []
    for line in ax.get_lines():
        path = line.get_transform().transform_path(line.get_path())
        if path.intersects_bbox(box, filled=False) or box.count_contains(path.vertices):
            under.append(line.get_label())
    return under


def test_a_curve_plots_legend_that_would_cover_a_line_goes_beside_the_axes(tmp_path, monkeypatch):
    """Three variants with 70-character names: matplotlib's best place for their wide legend was
    still over the lines (the baseline's grad-norm peak, its last evaluations), hiding the data the
    table quotes. Where no place inside is clear the legend goes beside the axes, the picture wider
    by it; a legend that fits clear of the lines stays where it was."""
    from ablation.report import plots

    long = ["baseline", "with_a_much_larger_learning_rate_and_cosine_schedule_and_warmup_too",
            "smaller_learning_rate_with_label_smoothing_and_class_weights_balanced"]
    shapes = [lambda x: 1 - x, lambda x: x, lambda x: 0.5 + 0.45 * (-1) ** round(10 * x)]

    def chosen(names):
        made = []
        for i, (name, shape) in enumerate(zip(names, shapes, strict=True)):
            history = [{"step": s, "epoch": s / 20, "loss": shape(s / 20),
                        "grad_norm": shape(s / 20), "learning_rate": 1e-3} for s in range(21)]
            made.append(records.TrialRecord(number=i, variant=name, seed=42, overrides={},
                                            state="COMPLETE", value=0.5,
                                            result={"history": history, "eval_history": []}))
        return made

    seen: dict[str, tuple] = {}

    def keep(fig, path, tight=True):
        legend = fig.axes[0].get_legend()
        seen[path.stem] = (_lines_under_legend(fig), legend.get_bbox_to_anchor().x0
                           > fig.axes[0].get_window_extent().x1, fig.get_figwidth())
        plots.plt.close(fig)

    monkeypatch.setattr(plots, "_save", keep)
    plots.plot_curves(chosen(long), tmp_path, long)
    under, beside, width = seen["train_loss"]
    assert under == [] and beside and width > 7
    plots.plot_curves(chosen(["baseline", "v1", "v2"])[:2], tmp_path,
                      ["baseline", "v1"])  # two crossing lines leave a corner clear: kept inside
    assert seen["train_loss"] == ([], False, 7.0)


def test_a_metric_plot_row_without_a_ci_among_rows_with_one_says_it_rests_on_one_seed(tmp_path,
                                                                                     monkeypatch):
    """A variant whose other seed failed (or a [search] trial, run on the first seed only) has no
    CI: the table says '—' and '1' seed, but its point in the metric plot, under an axis label
    promising "bars: 95 % CI over seeds", looked as certain as a zero-width interval over every
    seed. It is now hollow and its row says "(1 seed)"; rows of a study where no row has bars
    are unchanged."""
    from ablation.report import plots

    seen: dict[str, tuple] = {}

    def keep(fig, path, tight=True):
        ax = fig.axes[0]
        seen[path.stem] = ([t.get_text() for t in ax.get_yticklabels()],
                           {line.get_markerfacecolor() == "none" for line in ax.get_lines()
                            if line.get_marker() == "o"})
        plots.plt.close(fig)

    monkeypatch.setattr(plots, "_save", keep)
    nan = math.nan
    plots.plot_metric(["baseline", "baseline_lr", "baseline_bs32"], [1.0, 0.9, 0.56],
                      [1.0, 0.8, nan], [1.0, 1.0, nan], "macro_f1", "baseline", tmp_path / "m.png")
    labels, hollow = seen["m"]
    assert labels == ["baseline", "baseline_lr", "baseline_bs32 (1 seed)"] and hollow == {True, False}
    plots.plot_metric(["baseline", "baseline_lr"], [1.0, 0.9], [nan, nan], [nan, nan], "macro_f1",
                      "baseline", tmp_path / "one.png")
    assert seen["one"] == (["baseline", "baseline_lr"], {False})


@pytest.mark.parametrize("sizes", [[30, 60, 120, 216], list(range(100, 1100, 100))])
def test_a_learning_curves_axis_names_each_training_size_it_plots(tmp_path, monkeypatch, sizes):
    """The log axis was labelled 3×10¹, 4×10¹, 6×10¹, 10², 2×10²: neither the sizes trained
    (30, 60, 120 and the baseline's 216) nor numbers a reader reads at a glance. Each point's
    size is now its tick label, as a plain number, none overlapping another (crowded sizes turn)."""
    import itertools

    from ablation.report import plots

    seen: dict[str, list] = {}

    def keep(fig, path, tight=True):
        ax = fig.axes[0]
        fig.draw_without_rendering()
        shown = [t for t in ax.get_xticklabels() + ax.get_xticklabels(minor=True)
                 if t.get_text() and t.get_visible()]
        boxes = [t.get_window_extent() for t in shown]
        seen["texts"] = [t.get_text() for t in shown]
        seen["overlaps"] = [a.overlaps(b) for a, b in itertools.pairwise(boxes)]
        seen["axis"] = ax.get_xlabel()
        plots.plt.close(fig)

    monkeypatch.setattr(plots, "_save", keep)
    plots.plot_learning_curve([(n, 0.5, math.nan, math.nan) for n in sizes], "macro_f1",
                              tmp_path / "learning_curve.png")
    assert seen["texts"] == [str(n) for n in sizes] and not any(seen["overlaps"])
    assert seen["axis"] == "training examples (log scale)"  # uneven gaps, not a linear axis


def test_a_metric_plot_of_long_variant_names_keeps_room_for_its_points(tmp_path, monkeypatch):
    """Names of 100 characters (the longest a variant may have) took the 7-inch figure's width:
    tight_layout fitted them by leaving the axes a third of an inch, the points and bars on top
    of one another, the x ticks '0.60.8' and the axis label cut off. The figure now widens by
    its names, the axes about as wide as with short ones; short names keep the 7-inch figure."""
    from ablation.report import plots

    seen: dict[str, tuple] = {}

    def keep(fig, path, tight=True):
        fig.draw_without_rendering()
        seen[path.stem] = (fig.axes[0].get_window_extent().width / fig.dpi, fig.get_figwidth())
        plots.plt.close(fig)

    monkeypatch.setattr(plots, "_save", keep)
    means, lows, highs = [0.8, 0.7, 0.75], [0.7, 0.6, 0.7], [0.9, 0.8, 0.8]
    plots.plot_metric(["baseline", "baseline_lr", "baseline_bs32"], means, lows, highs,
                      "macro_f1", "baseline", tmp_path / "short.png")
    plots.plot_metric(["baseline", "baseline_" + "x" * 91, "baseline_" + "y" * 60], means, lows,
                      highs, "macro_f1", "baseline", tmp_path / "long.png")
    short_axes, short_figure = seen["short"]
    long_axes, long_figure = seen["long"]
    assert short_figure == 7.0 and long_figure > 7.0
    assert long_axes > 0.9 * short_axes  # was 0.3 inch


def test_confusion_titles_of_long_variant_names_wrap_within_their_matrix(tmp_path, monkeypatch):
    """The best variant's title, '<name> (validation, 3 seeds summed)', was one line wider than
    its 4.2-inch matrix for a name of 40 characters or more: it ran into the baseline's title,
    the two unreadable, and past the picture's edge. A title wider than its matrix now wraps
    (at its spaces first), every word of it kept."""
    from ablation.report import plots

    seen: dict[str, list] = {}

    def keep(fig, path, tight=True):
        fig.draw_without_rendering()
        figure = fig.get_window_extent()
        seen["titles"] = [ax.title.get_text() for ax in fig.axes]
        boxes = [ax.title.get_window_extent() for ax in fig.axes]
        seen["overlap"] = boxes[0].overlaps(boxes[1])
        seen["inside"] = all(figure.x0 <= box.x0 and box.x1 <= figure.x1 for box in boxes)
        plots.plt.close(fig)

    monkeypatch.setattr(plots, "_save", keep)
    titles = ["baseline (validation, 3 seeds summed)",
              f"baseline_{'with_a_larger_learning_rate_' * 3}too (validation, 3 seeds summed)"]
    plots.plot_confusions({title: [[3, 1], [0, 2]] for title in titles}, ["neg", "pos"],
                          tmp_path / "confusion.png")
    assert not seen["overlap"] and seen["inside"]
    assert seen["titles"][0] == titles[0]  # fits: as it was
    assert "\n" in seen["titles"][1] and "".join(seen["titles"][1].split()) == "".join(titles[1].split())


def test_a_big_studys_curve_plots_keep_their_axes_beside_a_legend_of_long_names(tmp_path,
                                                                                monkeypatch):
    """Past 12 variants the legend sits beside the axes of a 9-inch figure: with names of 60
    characters it took half of it, the curves squeezed into the rest (a third with the longest
    names). The figure now widens by what the legend takes beyond a short one's room."""
    from ablation.report import plots

    seen: dict[str, tuple] = {}

    def keep(fig, path, tight=True):
        fig.draw_without_rendering()
        seen[path.parent.name] = (fig.axes[0].get_window_extent().width / fig.dpi,
                                  fig.get_figwidth())
        plots.plt.close(fig)

    monkeypatch.setattr(plots, "_save", keep)
    for folder, suffix in (("short", ""), ("long", "_with_a_much_larger_learning_rate_and_warmup")):
        names = ["baseline", *(f"baseline_v{i:02d}{suffix}" for i in range(15))]
        chosen = [records.TrialRecord(
            number=i, variant=name, seed=42, overrides={}, state="COMPLETE", value=0.5,
            result={"history": [{"step": s, "epoch": s / 10, "loss": 1 - s * (i + 1) / 200,
                                 "grad_norm": 1.0, "learning_rate": 1e-3} for s in range(1, 11)],
                    "eval_history": []}) for i, name in enumerate(names)]
        plots.plot_curves(chosen, tmp_path / folder, names, names[::-1])
    (short_axes, short_figure), (long_axes, long_figure) = seen["short"], seen["long"]
    assert short_figure == 9.0 and long_figure > 9.0
    assert long_axes > 0.9 * short_axes


def test_the_metric_plot_says_what_its_orange_point_and_dotted_line_are(tmp_path, monkeypatch):
    """One point was orange and a dotted line ran down the plot, neither explained in the picture
    nor under it in report.md: a reader had to guess the best variant and the baseline's value.
    A key above the axes (clear of every point) now names both, only those drawn."""
    from ablation.report import plots

    seen: dict[str, tuple] = {}

    def keep(fig, path, tight=True):
        ax = fig.axes[0]
        legend = ax.get_legend()
        if legend is None:
            seen[path.stem] = ([], True)
        else:
            fig.draw_without_rendering()
            seen[path.stem] = ([t.get_text() for t in legend.get_texts()],
                               legend.get_window_extent().y0 >= ax.get_window_extent().y1)
        plots.plt.close(fig)

    monkeypatch.setattr(plots, "_save", keep)
    names, means, nan = ["baseline", "baseline_lr"], [0.7, 0.8], [math.nan] * 2
    plots.plot_metric(names, means, nan, nan, "macro_f1", "baseline_lr", tmp_path / "both.png")
    assert seen["both"] == (["best variant (★)", "baseline's macro_f1"], True)
    plots.plot_metric(["baseline_lr"], [0.8], [math.nan], [math.nan], "macro_f1", None,
                      tmp_path / "neither.png")  # no baseline result, no best yet
    assert seen["neither"] == ([], True)


@pytest.mark.parametrize("variants", [2, 14], ids=["small", "big"])
def test_a_curve_of_one_point_is_drawn_as_a_marker_not_left_invisible(tmp_path, monkeypatch,
                                                                       variants):
    """A trial of one optimizer step (max_steps = 1, or max_train_samples under one batch) logs one
    training point: drawn as a line without markers it was invisible, the training-loss, grad-norm
    and learning-rate plots blank beside a legend naming every variant. A curve of one point now
    shows it as a marker."""
    from ablation.report import plots

    names = ["baseline", *(f"baseline_v{i}" for i in range(1, variants))]
    chosen = [records.TrialRecord(
        number=i, variant=name, seed=42, overrides={}, state="COMPLETE", value=0.5,
        result={"history": [{"step": 1, "epoch": 1.0, "loss": 0.9 - i / 100, "grad_norm": 1.0,
                             "learning_rate": 1e-3}], "eval_history": []})
        for i, name in enumerate(names)]
    seen: dict[str, set] = {}

    def keep(fig, path, tight=True):
        seen[path.stem] = {line.get_marker() for line in fig.axes[0].get_lines()}
        plots.plt.close(fig)

    monkeypatch.setattr(plots, "_save", keep)
    plots.plot_curves(chosen, tmp_path, names, names)
    assert seen["train_loss"] == {"o"}


def test_a_learning_curves_error_bars_are_said_to_be_95_percent_cis_over_seeds(tmp_path,
                                                                               monkeypatch):
    """The metric plot says its bars are 95 % CIs over seeds; the learning curve drew the same
    bars and said nothing of them. Its title now says so where it draws any."""
    from ablation.report import plots

    seen: list[str] = []

    def keep(fig, path, tight=True):
        seen.append(fig.axes[0].get_title())
        plots.plt.close(fig)

    monkeypatch.setattr(plots, "_save", keep)
    path = tmp_path / "learning_curve.png"
    plots.plot_learning_curve([(30, 0.5, 0.4, 0.6), (60, 0.6, 0.5, 0.7)], "macro_f1", path)
    plots.plot_learning_curve([(30, 0.5, math.nan, math.nan), (60, 0.6, math.nan, math.nan)],
                              "macro_f1", path)  # one seed: no bars
    assert seen == ["Learning curve (bars: 95 % CI over seeds)", "Learning curve (one seed: no CI)"]


def _one_class_result(predicted: int, labels: list[int], eval_loss: float) -> dict:
    """A trial whose selected checkpoint predicts `predicted` for every example, on validation
    and test, at `eval_loss` on validation: what a model that learned nothing leaves."""
    value = metric_of_constant(predicted, labels)
    out = _result(value, 1.1, 1.0)
    matrix = [[0, 0, 0] for _ in range(3)]
    for label in labels:
        matrix[label][predicted] += 1
    out["validation"] = {**out["validation"], "eval_loss": eval_loss, "log_loss": eval_loss}
    return out | {"validation_confusion": matrix, "test_predictions": [predicted] * len(labels),
                  "test_labels": labels}


def metric_of_constant(predicted: int, labels: list[int]) -> float:
    from sklearn.metrics import f1_score

    return float(f1_score(labels, [predicted] * len(labels), average="macro", labels=[0, 1, 2]))


def test_what_mattered_says_when_neither_side_of_a_comparison_learned_from_the_text(
        write_experiment, capsys):
    """class_weight.toml cut short: every trial predicts one class, at a validation loss above
    the class frequencies' (the Diagnosis says each has not learned), and What mattered called
    class weights **worse**, p < 0.001, with nothing to say that it compares two constant
    guesses (always 'neu' against always 'neg'), not what the change does."""
    import json

    from ablation.report import write_report_json

    path = write_experiment(variants="cw = { class_weight = \"balanced\" }\n"
                                     "lr = { learning_rate = 1e-2 }\n")
    spec = load_spec(path)
    rng = np.random.default_rng(0)
    labels = rng.choice(3, 300, p=[0.1, 0.7, 0.2]).tolist()
    learned = _result(0.8, 0.5, 2.0) | {
        "validation_confusion": [[50, 5, 5], [5, 140, 5], [5, 5, 80]],
        "test_predictions": [y if rng.random() < 0.8 else (y + 1) % 3 for y in labels],
        "test_labels": labels}
    study = _store(spec, {"baseline-s42": _one_class_result(1, labels, 1.2),
                          "baseline_cw-s42": _one_class_result(0, labels, 1.3),
                          "baseline_lr-s42": learned})
    built = build_report(spec, study)
    effects = {e.variant: e for e in built["effects"]}
    assert effects["baseline_cw"].verdict == "worse"  # true of the scores, but of no change
    text = write_report(spec, study).read_text()
    mattered = text.split("## What mattered")[1].split("## Results")[0]
    assert ("`baseline_cw` vs `baseline`: neither side learned from the text: each of their "
            "trials predicts one class for every validation example, at a validation loss no "
            "better than predicting the class frequencies (Diagnosis). Its Δ compares constant "
            "guesses, not what the change does: train longer or at another learning rate "
            "before reading it.") in mattered
    assert "`baseline_lr` vs" not in mattered  # it learned: its difference is a result
    # The headline's best variant is a constant guess too: it says so.
    assert "- **Best variant**: `baseline_lr`" in text
    cli._print_summary(spec, built)
    out = capsys.readouterr().out
    assert ("  neither side learned from the text (one class predicted; see the report's "
            "Diagnosis): baseline_cw vs baseline; its Δ compares constant guesses") in out
    document = json.loads(write_report_json(spec, built).read_text())
    learned_sides = {e["variant"]: e["neither_learned"] for e in document["effects"]}
    assert learned_sides == {"baseline_cw": True, "baseline_lr": False}


def test_the_best_variant_that_learned_nothing_says_so_in_the_headline(write_experiment, capsys):
    """Every trial a constant guess: the **Best variant** line named one, as if it were a result."""
    path = write_experiment(variants="cw = { class_weight = \"balanced\" }\n")
    spec = load_spec(path)
    labels = np.random.default_rng(0).choice(3, 300, p=[0.2, 0.5, 0.3]).tolist()
    study = _store(spec, {"baseline-s42": _one_class_result(1, labels, 1.2),
                          "baseline_cw-s42": _one_class_result(2, labels, 1.3)})
    text = write_report(spec, study).read_text()
    best = next(line for line in text.splitlines() if line.startswith("- **Best variant**"))
    assert best.startswith("- **Best variant**: `baseline` — macro_f1 ")
    assert best.endswith("; it has not learned from the text: its trials predict one class "
                         "(Diagnosis)")
    # The run's last lines offered its model to `predict` with no word of it: every text then got
    # the same class, read as a model that works.
    study.set_user_attr("best_model", {"path": "best_model", "key": "baseline-s42",
                                       "variant": "baseline", "seed": 42, "metric": "macro_f1",
                                       "value": 0.2})
    cli._print_summary(spec, build_report(spec, study))
    line = next(line for line in capsys.readouterr().out.splitlines()
                if line.startswith("best model:"))
    assert line.endswith("; it has not learned from the text: it predicts one class (the "
                         "report's Diagnosis))"), line
    # Where every comparison is between constant guesses, the line says so rather than list them.
    more = load_spec(path, ['variants.lr.learning_rate=1e-2'])
    study = _store(more, {"baseline_lr-s42": _one_class_result(0, labels, 1.3)})
    text = write_report(more, study).read_text()
    assert ("Every comparison here: neither side learned from the text: each of their trials "
            "predicts one class") in text
    assert "Their Δ compare constant guesses, not what the changes do" in text


def _lr_records(peaks: dict[str, float]) -> list:
    """One trial per variant whose learning rate decays linearly from its peak to 0 (the default
    schedule), as the curve plots get them."""
    return [records.TrialRecord(
        number=i, variant=name, seed=42, overrides={}, state="COMPLETE", value=0.5,
        result={"history": [{"step": s, "epoch": s / 10, "loss": 1.0, "grad_norm": 1.0,
                             "learning_rate": peak * (1 - s / 10)} for s in range(1, 11)],
                "eval_history": []}) for i, (name, peak) in enumerate(peaks.items())]


def test_learning_rates_a_factor_of_ten_apart_are_plotted_on_a_log_axis(tmp_path, monkeypatch):
    """A [sweep] of learning_rate = [1e-4, 5e-3] beside a baseline of 1e-3: on the learning-rate
    plot's linear axis the 1e-4 variant was a flat line on the zero line, its schedule unreadable.
    Peaks a factor of 10 or more apart now get a log axis, labelled as the file writes learning
    rates (1e-4, not 10⁻⁴); peaks closer together keep the linear axis, as do the other plots."""
    from ablation.report import plots

    seen: dict[str, dict] = {}

    def keep(fig, path, tight=True):
        ax = fig.axes[0]
        fig.draw_without_rendering()
        seen[f"{path.parent.name}/{path.stem}"] = {
            "scale": ax.get_yscale(), "label": ax.get_ylabel(),
            "ticks": [t.get_text() for t in ax.get_yticklabels() + ax.get_yticklabels(minor=True)
                      if t.get_text() and t.get_visible()]}
        plots.plt.close(fig)

    monkeypatch.setattr(plots, "_save", keep)
    spread = {"baseline": 1e-3, "baseline_lr1e-4": 1e-4, "baseline_lr5e-3": 5e-3}
    plots.plot_curves(_lr_records(spread), tmp_path / "spread", list(spread))
    close = {"baseline": 1e-3, "baseline_lr5e-4": 5e-4, "baseline_lr2e-3": 2e-3}
    plots.plot_curves(_lr_records(close), tmp_path / "close", list(close))
    lr = seen["spread/learning_rate"]
    assert lr["scale"] == "log" and lr["label"] == "learning rate (log scale)"
    assert {"1e-4", "1e-3"} <= set(lr["ticks"]) and not any("$" in t for t in lr["ticks"])
    assert seen["spread/train_loss"]["scale"] == "linear"
    assert seen["close/learning_rate"]["scale"] == "linear"
    assert seen["close/learning_rate"]["label"] == "learning rate"


def test_a_learning_curve_point_without_a_ci_among_points_with_one_says_it_rests_on_one_seed(
        tmp_path, monkeypatch):
    """A training size whose other seed failed has no CI: in the metric plot its row is a hollow
    point named "(1 seed)", but the learning curve drew it filled and barless beside points with
    bars, as sure-looking as a zero-width interval. It is now hollow and its size says "(1 seed)";
    a curve where no point has bars (a one-seed study) is unchanged."""
    from ablation.report import plots

    seen: dict[str, tuple] = {}

    def keep(fig, path, tight=True):
        ax = fig.axes[0]
        fig.draw_without_rendering()
        hollow = {(float(line.get_xdata()[0]), line.get_markerfacecolor() in ("none", "white"))
                  for line in ax.get_lines() if line.get_marker() == "o"}  # white: the line not through it
        seen[path.stem] = ([" ".join(t.get_text().split()) for t in ax.get_xticklabels()
                            if t.get_visible()], hollow)
        plots.plt.close(fig)

    monkeypatch.setattr(plots, "_save", keep)
    nan = math.nan
    plots.plot_learning_curve([(30, 0.5, 0.4, 0.6), (60, 0.6, nan, nan), (216, 0.7, 0.6, 0.8)],
                              "macro_f1", tmp_path / "mixed.png")
    assert seen["mixed"] == (["30", "60 (1 seed)", "216"],
                             {(30.0, False), (60.0, True), (216.0, False)})
    plots.plot_learning_curve([(30, 0.5, nan, nan), (60, 0.6, nan, nan)], "macro_f1",
                              tmp_path / "one.png")
    assert seen["one"] == (["30", "60"], {(30.0, False), (60.0, False)})


def test_confusion_counts_of_many_classes_stay_readable(tmp_path, monkeypatch):
    """20 classes: the matrices kept their 4.2-inch size, so each count had a fifth of an inch
    and four-digit counts ran into their neighbours ('1500108499711...'), the matrix unreadable.
    Each matrix now grows by its classes, its counts clear of one another; past 30 classes the
    cells show colour alone (900 numbers are no longer read), the class names still apart. Three
    classes keep the figure as it was."""
    import itertools
    import random

    from ablation.report import plots

    seen: dict[str, dict] = {}

    def keep(fig, path, tight=True):
        fig.draw_without_rendering()
        ax = fig.axes[0]
        rows = [t.get_window_extent() for t in ax.texts]
        names = [t.get_window_extent() for t in ax.get_yticklabels()]
        seen[path.stem] = {"texts": len(ax.texts), "size": tuple(fig.get_size_inches()),
                           "label": ax.get_xlabel(),
                           "counts_apart": not any(a.overlaps(b) for a, b in itertools.pairwise(rows)),
                           "names_apart": not any(a.overlaps(b) for a, b in itertools.pairwise(names))}
        plots.plt.close(fig)

    monkeypatch.setattr(plots, "_save", keep)
    rng = random.Random(0)
    for classes in (3, 20, 40):
        matrix = [[1500 if i == j else rng.randrange(120) for j in range(classes)]
                  for i in range(classes)]
        plots.plot_confusions({"baseline (validation)": matrix, "best (validation)": matrix},
                              [f"class_{i}" for i in range(classes)], tmp_path / f"c{classes}.png")
    assert seen["c3"] == {"texts": 9, "size": (8.4, 4.0), "label": "predicted",
                          "counts_apart": True, "names_apart": True}
    assert seen["c20"]["texts"] == 400 and seen["c20"]["counts_apart"] and seen["c20"]["names_apart"]
    assert seen["c40"]["texts"] == 0 and seen["c40"]["names_apart"]
    assert seen["c40"]["label"] == "predicted (shade: share of the true class)"


def test_a_curve_that_blew_up_puts_the_others_on_a_log_axis_not_flat_on_zero(tmp_path,
                                                                           monkeypatch):
    """A variant whose gradient norm grew to 1e8 (and then inf) and whose loss to 60 drew the
    grad-norm and training-loss plots on a linear axis up to its peak: every other variant a flat
    line on zero, the baseline's curve unreadable. Peaks a factor of 10 or more apart now get a
    log axis there too, ticks as a person writes them (1, 100, 1e6, not 10²)."""
    from ablation.report import plots

    def trial(number: int, name: str, loss: list[float], grad: list[float]) -> records.TrialRecord:
        history = [{"step": s, "epoch": s / 10, "loss": loss[s - 1], "grad_norm": grad[s - 1],
                    "learning_rate": 1e-3} for s in range(1, 11)]
        return records.TrialRecord(number=number, variant=name, seed=42, overrides={},
                                   state="COMPLETE", value=0.5,
                                   result={"history": history, "eval_history": []})

    calm = trial(0, "baseline", [1.1 - s / 20 for s in range(10)], [1.0 + s / 10 for s in range(10)])
    hot = trial(1, "baseline_lr3", [1.1 * 2**s for s in range(9)] + [math.nan],
                [10.0**s for s in range(9)] + [math.inf])
    seen: dict[str, tuple] = {}

    def keep(fig, path, tight=True):
        ax = fig.axes[0]
        fig.draw_without_rendering()
        seen[path.stem] = (ax.get_yscale(), ax.get_ylabel(), [
            t.get_text() for t in ax.get_yticklabels() + ax.get_yticklabels(minor=True)
            if t.get_text() and t.get_visible()])
        plots.plt.close(fig)

    monkeypatch.setattr(plots, "_save", keep)
    plots.plot_curves([calm, hot], tmp_path, ["baseline", "baseline_lr3"])
    scale, label, ticks = seen["grad_norm"]
    assert (scale, label) == ("log", "grad norm (log scale)")
    assert {"1", "100", "1e6"} <= set(ticks) and not any("$" in t for t in ticks)
    assert seen["train_loss"][:2] == ("log", "loss (log scale)")
    assert seen["learning_rate"][0] == "linear"  # both 1e-3


def test_a_best_variant_tied_with_others_says_so_in_the_metric_plots_key(tmp_path, monkeypatch):
    """Six variants of one macro_f1 (a metric constant across them): the baseline, first in the
    study's order, was the one orange point and the key called it the best variant, beside five
    blue points of the same value; report.md says it is tied with them. The key now says so too."""
    from ablation.report import plots

    seen: dict[str, list] = {}

    def keep(fig, path, tight=True):
        seen[path.stem] = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
        plots.plt.close(fig)

    monkeypatch.setattr(plots, "_save", keep)
    names = ["baseline", *(f"baseline_v{i}" for i in range(1, 6))]
    nan = [math.nan] * 6
    plots.plot_metric(names, [1 / 3] * 6, nan, nan, "macro_f1", "baseline", tmp_path / "all.png")
    assert seen["all"][0] == "best variant (★), tied with 5 others"
    plots.plot_metric(names[:3], [0.5, 0.6, 0.6], nan[:3], nan[:3], "macro_f1", "baseline_v1",
                      tmp_path / "two.png")
    assert seen["two"][0] == "best variant (★), tied with 1 other"
    plots.plot_metric(names[:3], [0.5, 0.6, 0.4], nan[:3], nan[:3], "macro_f1", "baseline_v1",
                      tmp_path / "alone.png")
    assert seen["alone"][0] == "best variant (★)"


def test_the_metric_plots_key_counts_means_equal_up_to_rounding_as_tied(tmp_path, monkeypatch):
    """The same seeds' scores summed in another order (0.1 + 0.2 + 0.3 against 0.3 + 0.2 + 0.1)
    differ in their last bit: report.md's headline calls them tied, the key called the first the
    best variant alone."""
    from ablation.report import plots

    seen: list[str] = []

    def keep(fig, path, tight=True):
        seen.extend(t.get_text() for t in fig.axes[0].get_legend().get_texts())
        plots.plt.close(fig)

    monkeypatch.setattr(plots, "_save", keep)
    means = [(0.1 + 0.2 + 0.3) / 3, (0.3 + 0.2 + 0.1) / 3]
    assert means[0] != means[1]
    nan = [math.nan] * 2
    plots.plot_metric(["baseline", "baseline_v"], means, nan, nan, "macro_f1", "baseline",
                      tmp_path / "metric.png")
    assert seen[0] == "best variant (★), tied with 1 other"


def test_the_one_seed_caveat_names_its_rows_where_others_are_paired_over_seeds(write_experiment,
                                                                             capsys):
    """Seeds 42 and 7, `lr` failed at 7: its row is a bootstrap at seed 42 while `bs32`'s is a
    paired t over both seeds. The caveat said "One seed: these intervals cover which test examples
    were drawn, not the training's own randomness" of every row, the paired-t one too (and the
    terminal "these intervals"), and told a study that has several seeds to give `seeds` several
    values; it now names the one-seed row."""
    path = write_experiment(variants="bs32 = { batch_size = 32 }\nlr = { learning_rate = 1e-2 }\n")
    spec = load_spec(path, ["experiment.seeds=[42, 7]"])
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 200).tolist()

    def result(value: float, right: float) -> dict:
        predictions = [y if rng.random() < right else (y + 1) % 3 for y in labels]
        return _result(value, 0.5, 2.0) | {"test_predictions": predictions, "test_labels": labels}

    study = _store(spec, {"baseline-s42": result(0.6, 0.6), "baseline-s7": result(0.62, 0.6),
                          "baseline_bs32-s42": result(0.7, 0.7), "baseline_bs32-s7": result(0.74, 0.7),
                          "baseline_lr-s42": result(0.9, 0.9)})
    built = build_report(spec, study)
    assert {e.variant: e.seeds for e in built["effects"]} == {"baseline_lr": 1, "baseline_bs32": 2}
    mattered = write_report(spec, study).read_text().split("## What mattered")[1].split("## ")[0]
    assert "One seed: these intervals" not in mattered
    assert ("One seed: `baseline_lr` is compared at the one seed it has in common with its "
            "reference: its interval covers which test examples were drawn, not the training's "
            "own randomness") in mattered
    assert "the other rows are paired over seeds" in mattered
    cli._print_summary(spec, built)
    out = capsys.readouterr().out
    assert "one seed: these intervals" not in out
    assert "  one seed (baseline_lr): its interval leaves out the training's own randomness" in out


def _report_of_classes(path: Path, f1: dict[str, float]) -> list[str]:
    """The lines of the report of a study at seed 42 whose classes are `f1`'s keys, every trial
    with those F1 scores."""
    spec = load_spec(path, ["experiment.seeds=[42]"])
    study = open_study(spec)
    for key, value in (("metric", "macro_f1"), ("direction", "maximize"), ("label_names", list(f1))):
        study.set_user_attr(key, value)
    for trial in expand(spec):
        study.enqueue_trial({}, user_attrs=records.trial_attrs(trial))
        live = study.ask()
        result = _result(0.6, 0.5, 3.0)
        result["validation"] |= {f"f1_{name}": score for name, score in f1.items()}
        live.set_user_attr(records.RESULT, result)
        study.tell(live, 0.6)
    return write_report(spec, study).read_text().splitlines()


def test_a_class_name_with_a_pipe_keeps_the_per_class_table_a_table(write_experiment):
    """A label such as `billing | refunds` split its header cell in two: the header had more
    cells than the rows, and markdown showed the F1 per class table as plain text."""
    import re

    names = ["billing | refunds", "neu", "pos"]
    lines = _report_of_classes(write_experiment(variants="bs32 = { batch_size = 32 }\n"),
                               {name: 0.5 for name in names})
    start = lines.index("### F1 per class (validation)") + 2
    table = lines[start:lines.index("", start)]
    cells = [len(re.split(r"(?<!\\)\|", line)) - 2 for line in table]
    assert cells == [len(names) + 1] * len(table), table
    assert r"billing \| refunds" in table[0]


def test_many_classes_are_named_a_few_on_the_data_line_and_are_the_per_class_table_rows(
        write_experiment):
    """An intent dataset of 77 classes made the report's Data line name every one (about 1,500
    characters before the model line); it names the first 20 and how many there are. Its F1 per
    class table was 78 columns wide: with more classes than 12 and than variants, the classes
    are its rows and the variants its columns."""
    names = [f"intent_{i}" for i in range(77)]
    lines = _report_of_classes(write_experiment(), {name: i / 100 for i, name in enumerate(names)})
    data = next(line for line in lines if line.startswith("- **Data**"))
    assert data.endswith("labels: " + ", ".join(names[:20]) + ", … (77 in all)"), data
    start = lines.index("### F1 per class (validation)") + 2
    table = lines[start:lines.index("", start)]
    assert table[:3] == ["| class | baseline | baseline_bs32 |", "|---|---|---|",
                         "| intent_0 | 0.0000 | 0.0000 |"]
    assert len(table) == 2 + 77 and table[-1] == "| intent_76 | 0.7600 | 0.7600 |"


def test_the_run_summary_names_a_few_of_many_comparisons_that_learned_nothing(write_experiment,
                                                                              capsys):
    """A sweep of 60 learning rates that all collapsed printed one line naming all 59 variants
    (2,000 characters) at the end of `run`; it names the first few and how many there are."""
    variants = "".join(f"lr{i} = {{ learning_rate = {i + 2}e-4 }}\n" for i in range(8))
    spec = load_spec(write_experiment(variants=variants))
    labels = np.random.default_rng(0).choice(3, 300, p=[0.2, 0.5, 0.3]).tolist()
    study = _store(spec, {"baseline-s42": _one_class_result(1, labels, 1.2)}
                   | {f"baseline_lr{i}-s42": _one_class_result(i % 3, labels, 1.3)
                      for i in range(8)})
    cli._print_summary(spec, build_report(spec, study))
    line = next(line for line in capsys.readouterr().out.splitlines()
                if "neither side learned" in line)
    assert line.count("baseline_lr") == 5 and line.count(" vs baseline") == 5, line
    assert line.endswith(", … (8 in all); their Δ compare constant guesses"), line


def test_train_losses_of_smoothed_or_weighted_variants_are_said_not_to_compare(write_experiment):
    """Label smoothing and class weights change the loss a variant trains on (a smoothed loss
    stays above 0 however well the model fits, weights scale it): the table's train loss column
    would read them as a worse or better fit. Eval loss and log loss are plain cross-entropy."""
    path = write_experiment(variants='ls = { label_smoothing = 0.2 }\n'
                            'cw = { class_weight = "balanced" }\nbs32 = { batch_size = 32 }\n')
    spec = load_spec(path)
    study = _store(spec, {key: _result(0.6, 0.5, 2.0) for key in (
        "baseline-s42", "baseline_ls-s42", "baseline_cw-s42", "baseline_bs32-s42")})
    text = write_report(spec, study).read_text()
    note = next(line for line in text.splitlines() if line.startswith("Train loss is"))
    assert ("`baseline_ls` (label_smoothing=0.2), `baseline_cw` (class_weight=balanced) smooth or "
            "weight it, the other variants do not") in note
    assert "baseline_bs32" not in note and "`baseline`" not in note
    # one variant named: its verb agrees ("`baseline_cw` (class_weight=balanced) weight it" read
    # as a typo to a user)
    path = write_experiment(name="one", variants='cw = { class_weight = "balanced" }\n')
    spec = load_spec(path)
    study = _store(spec, {key: _result(0.6, 0.5, 2.0) for key in ("baseline-s42", "baseline_cw-s42")})
    assert ("`baseline_cw` (class_weight=balanced) weights it, the other variants do not") in \
        write_report(spec, study).read_text()
    assert "label smoothing keeps it above 0" in note and "class weights change its scale" in note
    assert "Eval loss and log loss are the plain cross-entropy in every variant" in note
    # the same loss in every row (the baseline's smoothing, which every variant keeps): no note
    path = write_experiment(name="same", variants="bs32 = { batch_size = 32 }\n",
                            baseline=DEFAULT_BASELINE + "label_smoothing = 0.1\n")
    spec = load_spec(path)
    study = _store(spec, {key: _result(0.6, 0.5, 2.0) for key in ("baseline-s42", "baseline_bs32-s42")})
    assert "Train loss is" not in write_report(spec, study).read_text()
    # a variant that drops the baseline's smoothing: the baseline's train loss is the unlike one
    path = write_experiment(name="drop", variants="bs32 = { batch_size = 32 }\n"
                            "plain = { label_smoothing = 0 }\n",
                            baseline=DEFAULT_BASELINE + "label_smoothing = 0.1\n")
    spec = load_spec(path)
    study = _store(spec, {key: _result(0.6, 0.5, 2.0) for key in (
        "baseline-s42", "baseline_bs32-s42", "baseline_plain-s42")})
    assert ("Train loss is each variant's own training loss, not the same loss in every row: "
            "`baseline` (label_smoothing=0.1), `baseline_bs32` (label_smoothing=0.1) smooth it, "
            "the other variants do not; compare train losses only between rows that train on the "
            "same loss (label smoothing keeps it above 0 however well a model fits).") in \
        write_report(spec, study).read_text()


def test_a_finding_every_trial_shares_is_one_diagnosis_line(write_experiment):
    """A 183-trial study printed the same ~400-character sentence 183 times: 40 trials whose
    train loss is still falling the same way are one line naming the first 10 and counting them."""
    path = stored_study_of(write_experiment, 40)
    spec = load_spec(path, ["experiment.seeds=[42, 43]"], need_data=False)
    text = write_report(spec, open_study(spec, create=False)).read_text()
    diagnosis = text.split("## Diagnosis", 1)[1].split("\n## ", 1)[0]
    bullets = [line for line in diagnosis.splitlines() if line.startswith("- ")]
    assert len(bullets) == 1
    assert bullets[0].startswith("- **baseline-s42, baseline-s43, baseline_v0-s42, baseline_v0-s43, ")
    assert ", … (40 in all)** — not converged: Training loss was still falling at the end" in bullets[0]
    assert "A finding that several trials share is one line naming them" in diagnosis
    # report.json keeps each trial's own finding and numbers, which the shared line gives as ranges.
    built = build_report(spec, open_study(spec, create=False))
    findings = report_json(spec, built)["diagnosis"]
    assert len(findings) == 40 and {len(f) for f in findings.values()} == {1}
    first = findings["baseline-s42"][0]
    assert first["kind"] == "not_converged" and not first["not_learned"]
    assert first["sentence"].startswith("Training loss was still falling at the end")
    assert first["numbers"] and all(isinstance(v, float) for v in first["numbers"].values())


# ------------------------------------------------------- trials trained under other library versions

OLD = {"ablate": "0.1.0", "torch": "2.4.0", "transformers": "4.45.0"}
NEW = {"ablate": "0.1.0", "torch": "2.5.1", "transformers": "4.46.0"}


def _versioned(value: float, versions: dict[str, str] | None) -> dict:
    """_result's trial, trained under `versions` (None: stored by an ablate that kept none)."""
    return _result(value, 0.5, 2.0) | ({"versions": versions} if versions else {})


def _two_seed_study(write_experiment, versions: dict[str, dict | None]):
    path = write_experiment(variants="v = { batch_size = 32 }\n")
    spec = load_spec(path, ["experiment.seeds=[1, 2]"])
    values = {"baseline-s1": .60, "baseline-s2": .62, "baseline_v-s1": .70, "baseline_v-s2": .74}
    return spec, _store(spec, {key: _versioned(v, versions[key]) for key, v in values.items()})


def test_trials_trained_under_other_library_versions_are_named_in_environment_csv_and_json(
        write_experiment):
    """A study trained over days, torch and transformers upgraded half-way: the report compared
    its trials as alike and named only the versions present when it was written."""
    spec, study = _two_seed_study(write_experiment, {
        "baseline-s1": OLD, "baseline-s2": OLD, "baseline_v-s1": NEW, "baseline_v-s2": NEW})
    built = build_report(spec, study)
    text = write_report(spec, study, built).read_text()
    environment = text[text.index("## Environment"):]
    assert ("- **Trained under different library versions**: torch 2.4.0, transformers 4.45.0: "
            "`baseline-s1`, `baseline-s2`; torch 2.5.1, transformers 4.46.0: `baseline_v-s1`, "
            "`baseline_v-s2`. Differences between these trials may come from the versions as well "
            "as from their recipes") in environment
    # the headline's variant and its reference were trained under different versions
    assert ("**Best variant**: `baseline_v` — macro_f1 0.7200 (+0.1100 vs baseline); against "
            "baseline on test: within noise (What mattered); its trials and baseline's were "
            "trained under different library versions (Environment)") in text
    csv = pd.read_csv(spec.output_dir / "results.csv").set_index("variant")
    assert list(csv.loc["baseline", "torch_version"]) == ["2.4.0", "2.4.0"]
    assert list(csv.loc["baseline_v", "transformers_version"]) == ["4.46.0", "4.46.0"]
    rows = {(r["variant"], r["seed"]): r for r in report_json(spec, built)["trials"]}
    assert rows[("baseline_v", 1)]["torch_version"] == "2.5.1"
    assert rows[("baseline", 2)]["ablate_version"] == "0.1.0"


def test_many_trials_under_other_versions_are_named_a_few_of_them(write_experiment):
    path = write_experiment(variants="".join(f"v{i} = {{ learning_rate = {i + 1}e-4 }}\n"
                                             for i in range(8)))
    spec = load_spec(path)
    keys = [t.key for t in expand(spec)]
    study = _store(spec, {key: _versioned(.6, NEW if n else OLD) for n, key in enumerate(keys)})
    text = write_report(spec, study).read_text()
    assert ("torch 2.5.1, transformers 4.46.0: `baseline_v0-s42`, `baseline_v1-s42`, "
            "`baseline_v2-s42`, `baseline_v3-s42`, `baseline_v4-s42`, … (8 in all).") in text


def test_one_version_set_or_none_recorded_claims_no_mix_and_says_which_trials_kept_none(
        write_experiment):
    """Trials stored by an older ablate have no record: they are not counted as other versions,
    but where others have one, the report says which trials kept none."""
    spec, study = _two_seed_study(write_experiment, {
        "baseline-s1": None, "baseline-s2": OLD, "baseline_v-s1": OLD, "baseline_v-s2": None})
    text = write_report(spec, study).read_text()
    assert "different library versions" not in text
    assert ("- Trials trained under ablate 0.1.0, torch 2.4.0, transformers 4.45.0; "
            "`baseline-s1`, `baseline_v-s2` were stored by an older ablate, which did not "
            "record their versions") in text
    csv = pd.read_csv(spec.output_dir / "results.csv")
    assert csv["torch_version"].isna().tolist() == [True, False, False, True]

    old = write_experiment(variants="v = { batch_size = 32 }\n", name="old")
    spec, study = _two_seed_study(lambda **_: old, dict.fromkeys(
        ("baseline-s1", "baseline-s2", "baseline_v-s1", "baseline_v-s2")))
    text = write_report(spec, study).read_text()
    assert "Trained under" not in text and "Trials trained under" not in text
    assert "did not record" not in text
    rows = report_json(spec, build_report(spec, study))["trials"]
    assert [r["torch_version"] for r in rows] == [None] * 4


def test_trials_all_under_the_versions_of_the_report_add_no_line(write_experiment):
    from ablation.report._write import library_versions

    now = {k: v for k, v in library_versions().items() if k in ("ablate", "torch", "transformers")}
    spec, study = _two_seed_study(write_experiment, dict.fromkeys(
        ("baseline-s1", "baseline-s2", "baseline_v-s1", "baseline_v-s2"), now))
    text = write_report(spec, study).read_text()
    assert "trained under" not in text.lower()
    spec, study = _two_seed_study(lambda **_: write_experiment(
        variants="v = { batch_size = 32 }\n", name="older"), dict.fromkeys(
        ("baseline-s1", "baseline-s2", "baseline_v-s1", "baseline_v-s2"), OLD))
    text = write_report(spec, study).read_text()
    assert "- Trials trained under ablate 0.1.0, torch 2.4.0, transformers 4.45.0 (the versions " \
           "above are this report's)" in text
    assert "different library versions" not in text


def test_a_trained_trial_stores_the_versions_it_trained_under(write_experiment):
    import torch
    import transformers

    from ablation.version import ablate_version

    path = write_experiment(variants="")
    assert cli.main(["run", str(path)]) == 0
    spec = load_spec(path)
    (record,) = records.load_records(open_study(spec))
    assert record.result["versions"] == {"ablate": ablate_version(),
                                         "torch": str(torch.__version__),
                                         "transformers": transformers.__version__}
    assert record.result["device_name"] and record.result["precision"]  # already per trial
    csv = pd.read_csv(spec.output_dir / "results.csv")
    assert csv["torch_version"].tolist() == [str(torch.__version__)]


def test_the_per_class_table_says_a_class_validation_has_no_row_of_rather_than_f1_0(
        write_experiment):
    """A skewed class that the 10 % validation carve leaves out (3 rows of 300) read 0.0000 in
    the F1 per class table, as a class the model never predicts does: it was undefined there
    (no row to get right), whatever the model does with it. Its cells say so, and a line says
    why the macro averages still count it as 0."""
    spec = load_spec(write_experiment(variants="bs32 = { batch_size = 32 }\n"),
                     ["experiment.seeds=[42]"])
    results = {}
    for key in ("baseline-s42", "baseline_bs32-s42"):
        result = _result(0.6, 0.5, 3.0)
        result["validation_confusion"] = [[0, 0, 0], [0, 8, 2], [0, 1, 9]]
        results[key] = result
    lines = write_report(spec, _store(spec, results)).read_text().splitlines()
    start = lines.index("### F1 per class (validation)") + 2
    table = lines[start:lines.index("", start)]
    assert table == ["| variant | neg | neu | pos |", "|---|---|---|---|",
                     "| baseline | no rows | 0.0000 | 1.0000 |",
                     "| baseline_bs32 | no rows | 0.0000 | 1.0000 |"], table
    note = lines[lines.index("", start) + 1]
    assert note.startswith("*no rows*: validation has no row of class 'neg'"), note


def test_the_best_variant_line_says_when_it_never_predicts_a_class_and_what_macro_f1_ranks_first(
        write_experiment):
    """metric = "accuracy" on skewed classes (neg 5 of 100): the baseline never predicts 'neg'
    and scores 0.95, bs32 finds 'neg' at 0.93. The headline named the baseline best with nothing
    said; only the Diagnosis, far below, showed the dead class. The line says it, and which
    variant macro_f1 ranks first."""
    from sklearn.metrics import accuracy_score, f1_score

    path = write_experiment(variants="bs32 = { batch_size = 32 }\n")
    spec = load_spec(path, ["experiment.seeds=[42]", 'experiment.metric="accuracy"'])
    labels = [0] * 5 + [1] * 45 + [2] * 50
    dead = [1] * 5 + [1] * 45 + [2] * 50  # never 'neg'
    found = [0] * 5 + [1] * 42 + [0] * 3 + [2] * 46 + [1] * 4
    study = open_study(spec)
    for key, value in (("metric", "accuracy"), ("direction", "maximize"),
                       ("label_names", ["neg", "neu", "pos"])):
        study.set_user_attr(key, value)
    for trial, predicted in zip(expand(spec), (dead, found), strict=True):
        matrix = [[sum(1 for y, p in zip(labels, predicted, strict=True) if (y, p) == (i, j))
                   for j in range(3)] for i in range(3)]
        result = _result(0.5, 0.5, 2.0)
        result["validation"] |= {
            "accuracy": accuracy_score(labels, predicted),
            "macro_f1": f1_score(labels, predicted, average="macro", labels=[0, 1, 2]),
            "log_loss": 0.3, "eval_loss": 0.3}
        result |= {"validation_confusion": matrix, "test_predictions": predicted,
                   "test_labels": labels}
        study.enqueue_trial({}, user_attrs=records.trial_attrs(trial))
        live = study.ask()
        live.set_user_attr(records.RESULT, result)
        study.tell(live, result["validation"]["accuracy"])
    text = write_report(spec, study).read_text()
    line = next(line for line in text.splitlines() if line.startswith("- **Best variant**"))
    assert line.startswith("- **Best variant**: `baseline` — accuracy 0.9500"), line
    assert ("its selected checkpoint never predicts 'neg' on validation (Diagnosis); by "
            "macro_f1, `baseline_bs32` ranks first") in line, line


def test_a_big_studys_named_variants_are_never_drawn_in_the_grey_of_the_others(tmp_path,
                                                                              monkeypatch):
    """17 variants: the eighth one named took tab10's own grey (#7f7f7f), beside the thin grey
    lines and the grey legend entry of the "other variants": in the legend and on the axes it read
    as one of those left out. Each named variant now has a colour that is not grey, and its own
    colour and style."""
    from matplotlib.colors import to_rgb

    from ablation.report import plots

    names = ["baseline", *[f"v{i:02d}" for i in range(1, 17)]]
    history = [{"step": s, "epoch": s / 10, "loss": 1.0 + i / 100, "grad_norm": 1.0,
                "learning_rate": 1e-3} for i, s in enumerate((1, 10))]
    chosen = [records.TrialRecord(number=i, variant=name, seed=42, overrides={}, state="COMPLETE",
                                  value=i / 20, result={"history": history, "eval_history": []})
              for i, name in enumerate(names)]
    looks: dict[str, tuple] = {}

    def keep(fig, path, tight=True):
        if path.stem == "train_loss":
            legend = fig.axes[0].get_legend()
            looks.update({text.get_text(): (to_rgb(handle.get_color()), handle.get_linestyle())
                          for text, handle in zip(legend.get_texts(), legend.legend_handles,
                                                  strict=True)})
        plots.plt.close(fig)

    monkeypatch.setattr(plots, "_save", keep)
    plots.plot_curves(chosen, tmp_path, names, ranking=names[:0:-1])
    named = {label: look for label, look in looks.items() if not label.startswith("other ")}
    assert len(named) == 11 and "other variants (6)" in looks
    greys = [label for label, ((r, g, b), _) in named.items() if r == g == b]
    assert greys == []
    assert len(set(named.values())) == len(named)


def test_a_one_seed_study_says_its_values_have_no_spread_or_interval(write_experiment,
                                                                     monkeypatch):
    """With one seed the Results table has no ± and no CI column and the metric plot's points no
    bars, and nothing said so: a reader took each point for a measured value. The Seeds line and
    the metric plot's axis now say that each value is one trial's, with no interval over seeds."""
    from ablation.report import plots

    path = write_experiment(variants='lr = { learning_rate = 5e-4 }\n')
    spec = load_spec(path, ["experiment.seeds=[42]"])
    study = _store(spec, {"baseline-s42": _result(0.6, 0.5, 2.0),
                          "baseline_lr-s42": _result(0.7, 0.4, 2.0)})
    labels: dict[str, str] = {}
    save = plots._save

    def keep(fig, path, tight=True):
        labels[path.stem] = fig.axes[0].get_xlabel()
        save(fig, path, tight)

    monkeypatch.setattr(plots, "_save", keep)
    text = write_report(spec, study).read_text()
    assert ("- **Seeds**: 42 — one seed: each value is one trial's, with no std or confidence "
            "interval over seeds (give `seeds` several values for them)") in text
    assert labels["metric"] == "macro_f1 (validation; one seed: no CI)"


def test_rows_that_picked_their_checkpoint_from_more_evaluations_are_said_to_be_flattered(
        write_experiment):
    """`epoch = { eval_steps = 0 }` evaluates once, the baseline every few steps: each trial's
    validation value is its best evaluation, picked on validation itself, so the row with more
    evaluations to pick from scores higher there by chance, and the table and the Best variant
    line ranked them on it without a word. A line under the table now names the fewest and the
    most evaluations per trial and points to the test columns."""
    path = write_experiment(variants="epoch = { eval_steps = 0 }\nlr = { learning_rate = 5e-4 }\n")
    spec = load_spec(path, ["experiment.seeds=[42, 43]"])
    once = _result(0.6, 0.5, 2.0)
    once["eval_history"] = once["eval_history"][-1:]
    study = _store(spec, {"baseline-s42": _result(0.6, 0.5, 2.0),
                          "baseline-s43": _result(0.62, 0.5, 2.0),
                          "baseline_epoch-s42": once, "baseline_epoch-s43": once,
                          "baseline_lr-s42": _result(0.7, 0.4, 2.0),
                          "baseline_lr-s43": _result(0.7, 0.4, 2.0)})
    text = write_report(spec, study).read_text()
    assert ("Validation values are each trial's best evaluation, picked on validation itself, and "
            "the rows picked from different numbers of evaluations (1 per trial: `baseline_epoch`; "
            "2: `baseline`, `baseline_lr`): a row with more to pick from scores better there by "
            "chance alone. The test columns, of the same checkpoints, are not picked on.") in text

    same = _store(load_spec(path, ["experiment.seeds=[42]", "experiment.name=same"]),
                  {"baseline-s42": _result(0.6, 0.5, 2.0), "baseline_lr-s42": _result(0.7, 0.4, 2.0)})
    assert "picked from different numbers" not in write_report(
        load_spec(path, ["experiment.seeds=[42]", "experiment.name=same"]), same).read_text()


def test_a_study_whose_trials_have_one_seed_of_the_files_several_does_not_ask_for_seeds(
        write_experiment):
    """Seeds 42 and 43 in the file, trials of 42 only so far (43 added since the run): the one-seed
    line told the user to give `seeds` several values, which the file already does; it now says
    that `ablate run` trains the file's other seeds."""
    path = write_experiment(variants='lr = { learning_rate = 5e-4 }\n')
    spec = load_spec(path, ["experiment.seeds=[42, 43]"])
    study = _store(spec, {"baseline-s42": _result(0.6, 0.5, 2.0),
                          "baseline_lr-s42": _result(0.7, 0.4, 2.0)})
    text = write_report(spec, study).read_text()
    assert ("- **Seeds**: 42 — one seed: each value is one trial's, with no std or confidence "
            "interval over seeds (`ablate run` trains the file's other seeds)") in text


def test_class_names_with_dollar_signs_are_drawn_as_written_not_as_math(tmp_path, monkeypatch):
    """Price tiers `$`, `$$`, `$$$` (Yelp's) stopped the report with matplotlib's mathtext
    traceback ("Expected end of text, found '$'"), and `$5-$10` was drawn as the formula 5 − 10:
    matplotlib reads text between two dollar signs as math. The confusion matrices' class names
    are now drawn as written."""
    from ablation.report import plots

    seen: dict[str, list[str]] = {}
    save = plots._save

    def keep(fig, path, tight=True):
        fig.draw_without_rendering()  # lays the labels out: where mathtext fails, it fails here
        ax = fig.axes[0]
        seen["labels"] = [label.get_text() for label in ax.get_yticklabels()]
        seen["math"] = [label._preprocess_math(label.get_text())[1]
                        for label in ax.get_xticklabels() + ax.get_yticklabels()]
        save(fig, path, tight)

    monkeypatch.setattr(plots, "_save", keep)
    names = ["$", "$$", "$$$", "$5-$10"]
    matrix = [[3, 1, 0, 0], [0, 2, 1, 0], [1, 0, 4, 0], [0, 0, 0, 1]]
    plots.plot_confusions({"baseline (validation)": matrix}, names, tmp_path / "confusion.png")
    assert seen["labels"] == names
    assert not any(seen["math"])


def test_a_big_ablations_curve_plots_name_full_the_reference_of_its_removed_changes(
        write_experiment, monkeypatch):
    """`mode = "both"` with 6 changes makes 14 variants: past 12 the curve plots named the
    baseline and the best and worst 5, and drew `full`, which every `full_minus_*` variant is
    measured against, as one of the thin grey lines. `full` is now named beside the baseline."""
    changes = {"cw": 'class_weight = "balanced"', "ls": "label_smoothing = 0.1",
               "wd": "weight_decay = 0.01", "warm": "warmup_ratio = 0.1",
               "drop": "dropout = 0.2", "sched": 'lr_scheduler = "cosine"'}
    path = write_experiment(variants="", extra='[ablation]\nmode = "both"\n[ablation.changes]\n'
                            + "".join(f"{name} = {{ {knob} }}\n" for name, knob in changes.items()))
    spec = load_spec(path, ["experiment.seeds=[42]"])
    names = [t.variant for t in expand(spec)]
    assert len(names) == 14
    # full ranks in the middle: neither among the 5 best nor the 5 worst
    scores = {name: 0.3 + 0.01 * i for i, name in enumerate(names)} | {"full": 0.365}
    study = _store(spec, {f"{name}-s42": _result(value, 0.5, 2.0)
                          for name, value in scores.items()})
    seen = _captured_plots(monkeypatch)
    text = write_report(spec, study).read_text()
    assert seen["train_loss"]["legend"][:2] == ["baseline", "full"]
    assert len(seen["train_loss"]["legend"]) == 13  # baseline, full, 5 best, 5 worst, the others
    assert ("*The curve plots name the baseline, `full` (the reference of the `full_minus_*` "
            "variants), the 5 best and 5 worst variants by macro_f1 (12 of 14); the 2 other "
            "variants are the thin grey lines, each group one legend entry.*") in text


def test_a_big_ablations_metric_plot_keeps_full_beside_the_baseline():
    """Past 25 variants the metric plot showed the baseline and the best and worst 12: `full`,
    the reference of every `full_minus_*` row, ranked between them was left out."""
    from ablation.report.plots import metric_rows

    changes = [f"c{i:02d}" for i in range(13)]
    names = (["baseline", "full"] + [f"full_minus_{c}" for c in changes]
             + [f"baseline_plus_{c}" for c in changes])
    means = [0.5, 0.5] + [0.3 + 0.01 * i for i in range(26)]
    shown = metric_rows(names, means, greater_is_better=True)
    assert [names[i] for i in shown[:2]] == ["baseline", "full"]
    assert len(shown) == 2 + 24 and len(set(shown)) == len(shown)


def test_a_best_variant_tied_with_many_names_a_few_of_them(write_experiment):
    """A cut-short study whose 30 variants all predict one class scores the same everywhere: the
    Best variant line named each of the 29 tied with the baseline (1,700 characters; a search of
    300 such trials, 299 names). It now names the first 5 and how many there are."""
    names = [f"v{i:02d}" for i in range(1, 30)]
    path = write_experiment(variants="".join(
        f"{name} = {{ learning_rate = {1e-4 * i:.4g} }}\n" for i, name in enumerate(names, 1)))
    spec = load_spec(path, ["experiment.seeds=[42]"])
    study = _store(spec, {key: _result(0.5, 0.5, 2.0) for key in
                          ["baseline-s42", *[f"baseline_{name}-s42" for name in names]]})
    text = write_report(spec, study).read_text()
    line = next(line for line in text.splitlines() if line.startswith("- **Best variant**"))
    assert ("tied with `baseline_v01`, `baseline_v02`, `baseline_v03`, `baseline_v04`, "
            "`baseline_v05`, … (29 in all) (the first in the study's order is named)") in line
    assert "baseline_v06" not in line


def test_dollar_signs_in_report_md_are_escaped_outside_code_so_github_shows_no_math(
        write_experiment):
    """GitHub reads text between two dollar signs as math: price-tier class names (`$`, `$$`,
    `$5-$10`) in the Data line and the per-class table came out as formulas."""
    from ablation.report.markdown import plain_outside_code as no_math

    assert no_math("labels: $, $$, $5-$10") == r"labels: \$, \$\$, \$5-\$10"
    assert no_math("run `echo $HOME` or\n```\nx=$1\n```\nthen $") == (
        "run `echo $HOME` or\n```\nx=$1\n```\nthen \\$")
    assert no_math(r"already \$ escaped") == r"already \$ escaped"
    assert no_math("``a $b`` and $") == "``a $b`` and \\$"  # a code span of two backticks
    path = stored_study_of(write_experiment, 4)
    spec = load_spec(path, ["experiment.seeds=[42, 43]"], need_data=False)
    open_study(spec).set_user_attr("label_names", ["$", "$$", "$5-$10"])
    text = write_report(spec, open_study(spec)).read_text()
    assert r"labels: \$, \$\$, \$5-\$10" in text
    outside_code = "".join(part for i, part in enumerate(text.split("`")) if i % 2 == 0)
    assert all(outside_code[i - 1] == "\\" for i, c in enumerate(outside_code) if c == "$")


def test_class_names_like_html_tags_are_shown_in_report_md_not_dropped(write_experiment):
    """A page drops an HTML tag it does not know: class names `<unk>`, `<neg>` (some datasets'
    own) showed as nothing in the Data line, the per-class table and the Diagnosis."""
    from ablation.report.markdown import plain_outside_code

    assert plain_outside_code("<unk>, a<b, <!-- c, <3, `<d>`") == "&lt;unk>, a&lt;b, &lt;!-- c, <3, `<d>`"
    path = stored_study_of(write_experiment, 4)
    spec = load_spec(path, ["experiment.seeds=[42, 43]"], need_data=False)
    open_study(spec).set_user_attr("label_names", ["<unk>", "<neg>", "</td>"])
    text = write_report(spec, open_study(spec)).read_text()
    assert "labels: &lt;unk>, &lt;neg>, &lt;/td>" in text
    outside_code = "".join(part for i, part in enumerate(text.split("`")) if i % 2 == 0)
    assert re.search(r"<[A-Za-z/!?]", outside_code) is None


def test_the_one_seed_caveat_names_the_split_the_differences_are_measured_on():
    """Data without a test split compares on validation ('Computed from macro_f1 on the validation
    split'), yet the caveat under it said the intervals 'cover which test examples were drawn': a
    split the study does not have. It names the split of its rows."""
    from ablation.report.effects import Effect, one_seed_caveat
    from ablation.report.stats import Interval

    def effect(variant: str, split: str, seeds: int = 1) -> Effect:
        return Effect(variant, "baseline", "x=1", Interval(0.1, 0.05, 0.15, 0.01, 200, "bootstrap"),
                      "better", "basis", "macro_f1", seeds, split)

    on_validation = one_seed_caveat([effect("baseline_a", "validation"), effect("baseline_b", "validation")])
    assert "which validation examples were drawn" in on_validation and "test" not in on_validation
    assert "which test examples were drawn" in one_seed_caveat([effect("baseline_a", "test")])
    mixed = one_seed_caveat([effect("baseline_a", "validation"), effect("baseline_b", "test", seeds=3)])
    assert "`baseline_a` is compared" in mixed and "which validation examples" in mixed


def _report_files(spec, study) -> dict[str, bytes]:
    """Every file `ablate report` and `--format json` write, read back; report.md without its
    `generated` time, results.csv and report.json without the trial numbers."""
    import json

    from ablation.report import write_report_json

    built = build_report(spec, study)
    write_report(spec, study, built)
    write_report_json(spec, built)
    out = spec.output_dir
    files = {p.relative_to(out).as_posix(): p.read_bytes() for p in (out / "plots").glob("*.png")}
    files["report.md"] = "\n".join(line for line in (out / "report.md").read_text().splitlines()
                                   if not line.startswith("- generated ")).encode()
    files["results.csv"] = pd.read_csv(out / "results.csv").drop(columns="trial").to_csv().encode()
    document = json.loads((out / "report.json").read_text())
    for row in document["trials"]:
        row.pop("trial")
    files["report.json"] = json.dumps(document).encode()
    return files


def test_a_variant_trained_again_leaves_the_report_files_as_they_were(stored_study):
    """`--rerun` (or a failed trial tried again) gives the trials it trains new, later numbers:
    with the same results, results.csv and report.json kept their rows, the Diagnosis its names
    and the curve plots their legend and the order their lines are drawn in, as the study lists
    its variants and seeds, not in the order the trials happened to finish."""
    spec, study = stored_study
    before = _report_files(spec, study)
    again = [t for t in study.get_trials() if t.user_attrs[records.VARIANT] == "baseline"]
    records.supersede(study, [t.number for t in again])
    study.add_trials([optuna.trial.create_trial(state=t.state, value=t.value, user_attrs=t.user_attrs)
                      for t in again])
    after = _report_files(spec, study)
    assert list(pd.read_csv(spec.output_dir / "results.csv")["trial"]) == [6, 7, 2, 3, 4, 5]
    assert before.keys() == after.keys() and {"report.md", "plots/train_loss.png"} <= before.keys()
    assert [name for name in before if before[name] != after[name]] == []


def test_a_study_folder_moved_elsewhere_regenerates_the_same_report(stored_study, tmp_path,
                                                                     monkeypatch):
    """A report committed to git is regenerated in another clone, or the study folder is moved:
    report.md named its SQLite storage by its absolute path, which changed with the folder. A
    storage in the output folder is named as it is there (`study.db`), wherever that is."""
    spec, _ = stored_study
    monkeypatch.chdir(tmp_path)
    assert cli.main(["report", spec.path.name]) == 0
    moved = tmp_path.parent / f"{tmp_path.name}-moved"
    shutil.copytree(tmp_path, moved)
    (moved / spec.path.name).write_text(spec.text.replace(str(tmp_path), str(moved)))
    monkeypatch.chdir(moved)
    assert cli.main(["report", spec.path.name]) == 0
    texts = [(folder / "reports" / "tiny" / "report.md").read_text() for folder in (tmp_path, moved)]
    assert "storage `study.db` (SQLite, in this report's folder)" in texts[0]
    kept = [[line for line in text.splitlines() if not line.startswith("- generated ")]
            for text in texts]
    assert kept[0] == kept[1] and str(tmp_path) not in texts[0].split("## Environment")[0]


def test_plots_carry_no_matplotlib_version(stored_study):
    """matplotlib wrote its version into every PNG (`Software: Matplotlib version3.11.2`): an
    upgrade that draws the same pixels changed every committed plot. The files hold the picture."""
    from PIL import Image

    spec, study = stored_study
    write_report(spec, study)
    plots = sorted((spec.output_dir / "plots").glob("*.png"))
    assert len(plots) >= 5
    for path in plots:
        with Image.open(path) as image:
            assert "Software" not in image.info, path.name


def test_results_csv_has_its_columns_in_one_order_whichever_trial_comes_first(write_experiment):
    """A failed trial has no per-class F1: where one came first, pandas put the f1_<class>
    columns after every other (past transformers_version), so results.csv's header, and the
    keys of report.json's trial rows, moved with which trial failed."""
    import json

    from ablation.report import write_report_json

    path = write_experiment(variants="")
    spec = load_spec(path, ["experiment.seeds=[1, 2]"])
    study = _store(spec, {"baseline-s2": _result(0.7, 0.5, 2.0)})
    study.enqueue_trial({}, user_attrs=records.trial_attrs(expand(spec)[0]))
    live = study.ask()
    live.set_user_attr(records.ERROR, "RuntimeError: diverged")
    study.tell(live, state=optuna.trial.TrialState.FAIL)
    built = build_report(spec, study)
    write_report(spec, study, built)
    columns = list(pd.read_csv(spec.output_dir / "results.csv").columns)
    assert columns.index("f1_neg") == columns.index("eval_loss") + 1
    assert columns[-1] == "transformers_version"
    rows = json.loads(write_report_json(spec, built).read_text())["trials"]
    assert [row["seed"] for row in rows] == [1, 2] and list(rows[0]) == list(rows[1]) == columns


def test_a_pair_on_validation_names_its_trials_without_test_in_the_studys_order(write_experiment):
    """The "Computed from" line of a pair some of whose trials have no test metric named them by
    trial number: the baseline trained again put it after its variant, and report.md changed."""
    path = write_experiment(variants="bs32 = { batch_size = 32 }\n")
    spec = load_spec(path, ["experiment.seeds=[42, 7]"])
    results = {f"{variant}-s{seed}": _result(value + (seed == 7) * 0.02, 0.5, 2.0)
               for variant, value in (("baseline", 0.6), ("baseline_bs32", 0.7)) for seed in (42, 7)}
    for key in ("baseline-s42", "baseline_bs32-s42"):
        results[key]["test"] = {}
    study = _store(spec, results)
    before = _report_files(spec, study)
    assert "(`baseline-s42`, `baseline_bs32-s42` have no test macro_f1)" in before["report.md"].decode()
    again = [t for t in study.get_trials() if t.user_attrs[records.VARIANT] == "baseline"]
    records.supersede(study, [t.number for t in again])
    study.add_trials([optuna.trial.create_trial(state=t.state, value=t.value, user_attrs=t.user_attrs)
                      for t in again])
    assert _report_files(spec, study)["report.md"] == before["report.md"]


def test_a_retried_search_trial_keeps_its_place_in_the_study_order() -> None:
    """search_1 failed and a later run tried it again (trial 3, after search_2's trial 2): its
    row moved after search_2's in results.csv, report.json and the plots, the reorder by trial
    number that the study's order is there to avoid; the search trials stand as first numbered."""
    from ablation.report.tables import in_study_order

    def record(number: int, variant: str, state: str) -> records.TrialRecord:
        return records.TrialRecord(number=number, variant=variant, seed=42, overrides={},
                                   state=state, value=0.5 if state == "COMPLETE" else None)

    made = [record(0, "baseline", "COMPLETE"), record(1, "search_1", "FAIL"),
            record(2, "search_2", "COMPLETE"), record(3, "search_1", "COMPLETE")]
    assert [(r.variant, r.number) for r in in_study_order(made, ["baseline"], [42])] == [
        ("baseline", 0), ("search_1", 3), ("search_2", 2)]


@pytest.mark.parametrize("own", [False, True])
def test_a_home_matplotlib_cannot_write_in_gives_no_matplotlib_warnings(
        own: bool, write_experiment, tmp_path: Path):
    """HOME read-only or unset (a container, a service account): matplotlib cannot make its
    config folder, uses a temporary one and said so in two `WARNING matplotlib:` lines on every
    report, which name nothing the user can act on. They are left out; an MPLCONFIGDIR the user
    set stands, and its warnings too where it cannot be written (theirs to fix)."""
    import subprocess
    import sys

    path = stored_study_of(write_experiment, 2)
    (tmp_path / "a-file").write_text("", encoding="utf-8")
    env = {k: v for k, v in os.environ.items()
           if k not in ("MPLCONFIGDIR", "XDG_CONFIG_HOME", "XDG_CACHE_HOME")}
    env["HOME"] = str(tmp_path / "a-file" / "home")  # no folder can be made there, root or not
    if own:
        env["MPLCONFIGDIR"] = str(tmp_path / "a-file" / "mpl")
    result = subprocess.run([sys.executable, "-m", "ablation", "report", str(path)], env=env,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    if own:
        assert f"mkdir -p failed for path {tmp_path / 'a-file' / 'mpl'}" in result.stderr
        assert "Matplotlib created a temporary cache directory" in result.stderr
    else:
        assert "matplotlib" not in result.stderr.lower(), result.stderr
