"""Environment variables a user's shell may already hold: they do not change how a trial trains,
nor stop its tracking, and the process's environment is the user's again after a call."""

from __future__ import annotations

import os

import pytest

from ablation import cli


def test_accelerate_variables_in_the_shell_do_not_change_how_trials_train(
        write_experiment, watch_train, monkeypatch: pytest.MonkeyPatch, capsys):
    """ACCELERATE_MIXED_PRECISION=bf16 (left by `accelerate config` or a launch script) trained
    every trial in bf16 autocast where the recipe said fp32, and the report said fp32;
    ACCELERATE_USE_DEEPSPEED failed every trial."""
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "bf16")
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    arguments = watch_train("training_arguments")
    path = write_experiment(variants="")
    assert cli.main(["run", str(path)]) == 0
    assert [args.mixed_precision for args in arguments] == ["no"]
    assert "note: the environment sets ACCELERATE_MIXED_PRECISION=bf16, ACCELERATE_USE_DEEPSPEED=true:" \
        in capsys.readouterr().out
    assert os.environ["ACCELERATE_MIXED_PRECISION"] == "bf16"  # the caller's own again
    assert os.environ["ACCELERATE_USE_DEEPSPEED"] == "true"
