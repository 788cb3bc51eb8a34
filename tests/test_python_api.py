"""ablate driven from Python (a notebook, a script): the public API of ``ablation`` without the
``ablate`` command around it."""

from __future__ import annotations

from conftest import one_error_line

import ablation


def test_an_unknown_rerun_variant_is_named_as_a_rerun(write_experiment):
    """run_study(rerun=["nope"]) said "--only 'nope': no such variant", naming an argument the
    caller never gave; the command line checked --rerun itself before the run."""
    spec = ablation.load_spec(write_experiment())
    message = one_error_line(lambda: ablation.run_study(spec, rerun=["nope"], echo=lambda line: None))
    assert message.startswith("--rerun 'nope': no such variant"), message
    message = one_error_line(lambda: ablation.run_study(spec, only=["nope"], echo=lambda line: None))
    assert message.startswith("--only 'nope': no such variant"), message
