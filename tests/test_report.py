"""The report is rendered from the study storage alone: here a study written by hand."""

from __future__ import annotations

import math

import optuna
import pandas as pd
import pytest

from ablation import records
from ablation.config import load_spec
from ablation.report import build_report, write_report
from ablation.report.markdown import fmt, fmt_delta
from ablation.sweep import open_study
from ablation.variants import expand


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
    assert "**Best variant**: `baseline_bs32` — macro_f1 0.7200 (+0.1100 vs baseline)" in text
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


def test_formatting_helpers():
    assert fmt(0.123456) == "0.1235"
    assert fmt(0.5, 0.01) == "0.5000 ± 0.0100"
    assert fmt(float("nan")) == "—"
    assert fmt_delta(0.0123) == "+0.0123" and fmt_delta(-0.5) == "-0.5000"
