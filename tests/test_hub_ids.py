"""Hub ids as users write them, offline: the organisation left out (`all-MiniLM-L6-v2`, `sst2`),
another case, a typo. A fake Hugging Face cache (folder names alone) stands in for a filled one."""

from __future__ import annotations

from pathlib import Path

import pytest

from ablation.config import DataSpec
from ablation.data import load_raw_splits
from ablation.errors import AblateInputError
from ablation.train import ModelSource, load_model_config


@pytest.fixture
def fake_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An offline cache that holds one model and one prepared dataset (as folders, no files the
    libraries could load: every load fails, as for an id the cache lacks)."""
    import datasets.config
    import huggingface_hub.constants

    cache = tmp_path / "hf-cache"
    (cache / "hub" / "models--sentence-transformers--all-MiniLM-L6-v2" / "snapshots").mkdir(parents=True)
    info = cache / "datasets" / "stanfordnlp___sst2" / "default" / "0.0.0" / "abc123"
    info.mkdir(parents=True)
    (info / "dataset_info.json").write_text("{}", encoding="utf-8")
    (cache / "datasets" / "downloads").mkdir()  # not a dataset
    monkeypatch.chdir(tmp_path)  # so no id resolves to a local folder by accident
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(cache / "datasets"))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache / "hub"))
    # the libraries read these once at import; another test may have imported them already
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", cache / "datasets")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache / "hub"))
    return cache


def _model_error(name: str) -> str:
    with pytest.raises(AblateInputError) as info:
        load_model_config(ModelSource(name, None, {}), ["a", "b"])
    message = str(info.value)
    assert "\n" not in message
    return message


def _data_error(name: str) -> str:
    with pytest.raises(AblateInputError) as info:
        load_raw_splits(DataSpec(dataset=name))
    message = str(info.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize("name", ["all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-V2",
                                  "sentence-transformers/all-MiniLM-L6v2"])
def test_a_model_id_the_cache_holds_under_another_spelling_is_named(fake_cache: Path, name: str) -> None:
    """The error said only that the id cannot be loaded and to fill a cache: the one the user
    meant, the model card's short name, was in it."""
    message = _model_error(name)
    assert f"[model] name = {name!r} cannot be loaded" in message
    assert message.endswith("; did you mean 'sentence-transformers/all-MiniLM-L6-v2' (the Hugging "
                            "Face cache holds it)?")


def test_an_unlike_model_id_offline_is_told_what_the_cache_holds(fake_cache: Path) -> None:
    message = _model_error("bert-base-uncased")
    assert message.endswith(f"; the Hugging Face cache ({fake_cache / 'hub'}) holds the model "
                            "'sentence-transformers/all-MiniLM-L6-v2'")


@pytest.mark.parametrize("name", ["sst2", "SST2", "stanfordnlp/sst-2"])
def test_a_dataset_id_the_cache_holds_under_another_spelling_is_named(fake_cache: Path, name: str) -> None:
    message = _data_error(name)
    assert f"[data] dataset = {name!r} cannot be loaded" in message
    assert message.endswith("; did you mean 'stanfordnlp/sst2' (the Hugging Face cache holds it)?")


def test_an_unlike_dataset_id_offline_is_told_what_the_cache_holds(fake_cache: Path) -> None:
    message = _data_error("imdb")
    assert message.endswith("; the Hugging Face caches hold the dataset 'stanfordnlp/sst2'")
