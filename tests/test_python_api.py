"""ablate driven from Python (a notebook, a script): the public API of ``ablation`` without the
``ablate`` command around it."""

from __future__ import annotations

import re
import signal
from pathlib import Path

import pytest
from conftest import one_error_line, signal_self

import ablation
from ablation import records


def test_an_unknown_rerun_variant_is_named_as_a_rerun(write_experiment):
    """run_study(rerun=["nope"]) said "--only 'nope': no such variant", naming an argument the
    caller never gave; the command line checked --rerun itself before the run."""
    spec = ablation.load_spec(write_experiment())
    message = one_error_line(lambda: ablation.run_study(spec, rerun=["nope"], echo=lambda line: None))
    assert message.startswith("--rerun 'nope': no such variant"), message
    message = one_error_line(lambda: ablation.run_study(spec, only=["nope"], echo=lambda line: None))
    assert message.startswith("--only 'nope': no such variant"), message


def test_one_name_or_set_given_as_a_string_is_that_one(write_experiment):
    """A string where a list is asked for is one item: load_spec(path, "baseline.epochs=1") was
    refused as "--set 'b': expected SECTION.KEY=VALUE" (each character a --set), and
    run_study(spec, only="bs32") raised a TypeError from inside the planning."""
    path = write_experiment()
    assert ablation.load_spec(path, "baseline.epochs=1").baseline.epochs == 1
    spec = ablation.load_spec(path)
    message = one_error_line(lambda: ablation.run_study(spec, only="nope", echo=lambda line: None))
    assert message.startswith("--only 'nope': no such variant"), message
    message = one_error_line(lambda: ablation.run_study(spec, rerun="nope", echo=lambda line: None))
    assert message.startswith("--rerun 'nope': no such variant"), message
    message = one_error_line(lambda: ablation.run_worker(spec, only="nope", echo=lambda line: None))
    assert message.startswith("--only 'nope': no such variant"), message


def test_a_hub_found_unreachable_is_offline_for_that_run_only(write_experiment, monkeypatch):
    """A run that found the Hub unreachable switched huggingface_hub and datasets to offline mode
    for the rest of the process: in a notebook, once the network was back, the user's own
    from_pretrained / load_dataset and ablate's next study still read the caches alone
    ("offline mode is enabled", though HF_HUB_OFFLINE was never set) until the kernel restarted."""
    import datasets
    from huggingface_hub import constants

    from ablation import hub
    from ablation.sweep import _runner

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hub, "_UNREACHABLE", [])
    seen = []

    def work(*args, **kwargs):  # the run's first Hub load, with no Hub to reach
        seen.append(hub.unreachable("http://127.0.0.1:9/m/resolve/main/config.json"))
        seen.append((constants.HF_HUB_OFFLINE, datasets.config.HF_HUB_OFFLINE))

    monkeypatch.setattr(_runner, "work", work)
    ablation.run_study(ablation.load_spec(write_experiment()), echo=lambda line: None)
    assert seen[0] and "cannot be reached" in seen[0] and seen[1] == (True, True)
    assert (constants.HF_HUB_OFFLINE, datasets.config.HF_HUB_OFFLINE) == (False, False)


def test_readmes_python_example_runs_as_written(write_experiment, capsys):
    """README's "From Python" example, with the tiny study's file for experiments/bs_lr.toml: it
    trains, prints what it says it prints, and bad input is an AblateInputError, not an exit."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## From Python\n", 1)[1].split("\n## ", 1)[0]
    code = re.findall(r"^```python\n(.*?)^```", section, re.S | re.M)[0]
    assert '"experiments/bs_lr.toml"' in code
    path = write_experiment()
    exec(code.replace('"experiments/bs_lr.toml"', repr(str(path))), {})  # noqa: S102
    out = capsys.readouterr().out
    assert "['baseline-s42', 'baseline_bs32-s42'] {}" in out
    assert "baseline-s42 COMPLETE 0." in out and "baseline_bs32-s42 COMPLETE 0." in out
    assert "# " in out  # the report's first lines
    assert "--only 'no_such_variant': no such variant" in out


def test_interrupting_the_kernel_keeps_the_study_going_on_at_the_next_call(write_experiment):
    """A notebook's "Interrupt the kernel" (SIGINT, with Python's own handler: ablate installs none
    outside its command) mid-trial: run_study raises KeyboardInterrupt with the trial recorded as
    interrupted, not left RUNNING, and the next call trains it again and the rest of the study."""
    spec = ablation.load_spec(write_experiment())

    def echo(line: str) -> None:
        if " step " in line:  # the first evaluation of the first trial
            signal_self(signal.SIGINT)

    # Python's own handler, as in a kernel (a suite started in the background, as CI's `cmd &`,
    # inherits SIGINT ignored).
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            ablation.run_study(spec, echo=echo)
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # none left behind
    finally:
        signal.signal(signal.SIGINT, before)
    study = ablation.open_study(spec)
    assert [(r.key, r.state, r.error) for r in ablation.load_records(study)][0] == (
        "baseline-s42", "FAIL", records.INTERRUPTED)
    outcome = ablation.run_study(spec, echo=lambda line: None)
    assert sorted(outcome.completed) == ["baseline-s42", "baseline_bs32-s42"] and not outcome.failed
    assert (spec.output_dir / "report.md").is_file()


def test_a_run_from_python_keeps_the_libraries_quiet_and_gives_their_settings_back(
        write_experiment, capfd):
    """From a notebook each trial printed transformers' LOAD REPORT table (bold codes and all)
    and its "Loading weights" / "Writing model shards" bars, and Optuna "A new study created",
    between ablate's lines; the ablate command silences them, run_study did not. They are quiet
    for the call, and the user's own settings are back after it."""
    import optuna
    import transformers

    saved = (transformers.logging.get_verbosity(), transformers.utils.logging.is_progress_bar_enabled(),
             optuna.logging.get_verbosity())
    transformers.logging.set_verbosity_warning()
    transformers.utils.logging.enable_progress_bar()
    optuna.logging.set_verbosity(optuna.logging.INFO)
    try:
        outcome = ablation.run_study(ablation.load_spec(write_experiment()))
        assert sorted(outcome.completed) == ["baseline-s42", "baseline_bs32-s42"]
        err = capfd.readouterr().err
        for chatter in ("LOAD REPORT", "Loading weights", "Writing model shards", "A new study"):
            assert chatter not in err, err
        assert transformers.logging.get_verbosity() == transformers.logging.WARNING
        assert transformers.utils.logging.is_progress_bar_enabled()
        assert optuna.logging.get_verbosity() == optuna.logging.INFO
    finally:
        transformers.logging.set_verbosity(saved[0])
        if not saved[1]:
            transformers.utils.logging.disable_progress_bar()
        optuna.logging.set_verbosity(saved[2])


def test_open_study_prints_no_optuna_line(write_experiment):
    """README's `load_records(open_study(spec))` printed Optuna's "[I 2026-...] A new study
    created in RDB" / "Using an existing study ..." line, with its terminal colour codes, in a
    notebook cell (run_study quiets Optuna; open_study did not)."""
    import logging

    import optuna

    spec = ablation.load_spec(write_experiment())
    seen: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(record.getMessage())  # type: ignore[method-assign]
    logging.getLogger("optuna").addHandler(handler)
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.INFO)  # Optuna's default
    try:
        ablation.open_study(spec)  # makes it
        ablation.open_study(spec)  # finds it
        assert optuna.logging.get_verbosity() == optuna.logging.INFO
    finally:
        optuna.logging.set_verbosity(verbosity)
        logging.getLogger("optuna").removeHandler(handler)
    assert seen == []


def test_bad_input_in_a_notebook_cell_is_one_line(write_experiment):
    """An AblateInputError left uncaught in a Jupyter/IPython cell showed IPython's whole coloured
    traceback through ablate's planning code (some 30 lines) above the one line that says what is
    wrong; IPython shows what an exception's `_render_traceback_` returns instead."""
    spec = ablation.load_spec(write_experiment())
    with pytest.raises(ablation.AblateInputError) as caught:
        ablation.run_study(spec, only=["nope"], echo=lambda line: None)
    shown = caught.value._render_traceback_()
    assert shown == [f"AblateInputError: {caught.value}"], shown
    assert shown[0].startswith("AblateInputError: --only 'nope': no such variant")


def test_run_study_s_workers_lines_go_to_echo(write_experiment, capfd):
    """run_study(spec, workers=2, echo=...) gave echo the run's lines only: each worker process
    wrote its trials' lines to the process's own stdout (in a notebook, the cell and the Jupyter
    server's terminal), past an echo that logs them or keeps them quiet."""
    spec = ablation.load_spec(write_experiment(), ["baseline.max_steps=2"])
    said: list[str] = []
    outcome = ablation.run_study(spec, workers=2, echo=said.append)
    assert sorted(outcome.completed) == ["baseline-s42", "baseline_bs32-s42"]
    assert any(line.startswith("trial ") and " done: " in line for line in said), said
    assert "done: " not in capfd.readouterr().out
