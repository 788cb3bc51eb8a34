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
