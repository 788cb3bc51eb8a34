"""Hub ids as users write them, offline: the organisation left out (`all-MiniLM-L6-v2`, `sst2`),
another case, a typo. A fake Hugging Face cache (folder names alone) stands in for a filled one."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
from conftest import use_offline_cache

from ablation.config import DataSpec
from ablation.data import load_raw_splits
from ablation.errors import AblateInputError
from ablation.train import ModelSource, load_model_config, load_tokenizer


@pytest.fixture
def fake_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An offline cache that holds one model and one prepared dataset (as folders, no files the
    libraries could load: every load fails, as for an id the cache lacks)."""
    cache = tmp_path / "hf-cache"
    (cache / "hub" / "models--sentence-transformers--all-MiniLM-L6-v2" / "snapshots").mkdir(parents=True)
    info = cache / "datasets" / "stanfordnlp___sst2" / "default" / "0.0.0" / "abc123"
    info.mkdir(parents=True)
    (info / "dataset_info.json").write_text("{}", encoding="utf-8")
    (cache / "datasets" / "downloads").mkdir()  # not a dataset
    use_offline_cache(monkeypatch, cache)
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


def _cache_configs(cache: Path, dataset: str, *configs: str) -> None:
    for config in configs:
        info = cache / "datasets" / dataset.replace("/", "___") / config / "0.0.0" / "abc123"
        info.mkdir(parents=True)
        (info / "dataset_info.json").write_text("{}", encoding="utf-8")


def test_a_dataset_config_the_cache_lacks_names_the_key_and_the_configs_it_holds(fake_cache: Path) -> None:
    """The line read `[data] dataset = ... cannot be loaded: Couldn't find cache ...; nor is it a
    file or folder ... Offline? Point HF_HUB_CACHE ...`: the dataset was there, the config wrong."""
    _cache_configs(fake_cache, "cardiffnlp/tweet_eval", "emotion")
    with pytest.raises(AblateInputError) as info:
        load_raw_splits(DataSpec(dataset="cardiffnlp/tweet_eval", config="emotions"))
    assert str(info.value) == ("[data] config = 'emotions': the Hugging Face cache holds no such "
                               "config of cardiffnlp/tweet_eval (it holds 'emotion'); did you mean "
                               "'emotion'?")
    with pytest.raises(AblateInputError) as info:
        load_raw_splits(DataSpec(dataset="stanfordnlp/sst2", config="sst2"))
    assert str(info.value) == ("[data] config = 'sst2': the Hugging Face cache holds no such "
                               "config of stanfordnlp/sst2 (it holds 'default'); leave config out")


def test_no_config_offline_where_the_cache_holds_several_is_refused(fake_cache: Path) -> None:
    """Offline, load_dataset without a config read whichever config was cached last: a study of
    tweet_eval trained on 'sentiment' or 'emotion' by the cache's file times, unsaid."""
    _cache_configs(fake_cache, "cardiffnlp/tweet_eval", "emotion", "sentiment")
    with pytest.raises(AblateInputError) as info:
        load_raw_splits(DataSpec(dataset="cardiffnlp/tweet_eval"))
    assert str(info.value) == (
        "[data] config is not set, and the Hugging Face cache holds several configs of "
        "cardiffnlp/tweet_eval (offline, the one cached last would be read): set [data] config to "
        "one of 'emotion', 'sentiment'")


@pytest.mark.parametrize(("config", "error", "expected"), [
    ("emotions", "BuilderConfig 'emotions' not found. Available: ['emoji', 'emotion', 'hate']",
     "[data] config = 'emotions': cardiffnlp/tweet_eval has no such config (its configs: 'emoji', "
     "'emotion', 'hate'); did you mean 'emotion'?"),
    (None, "Config name is missing.\nPlease pick one among the available configs: ['emoji', "
     "'emotion']\nExample of usage:\n\t`load_dataset('cardiffnlp/tweet_eval', 'emoji')`",
     "[data] config is not set, and cardiffnlp/tweet_eval has several configs: set [data] config "
     "to one of 'emoji', 'emotion'"),
])
def test_a_config_the_hub_refuses_names_the_key_and_the_configs(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, config: str | None, error: str,
        expected: str) -> None:
    """Online, datasets' own refusals (its messages as of datasets 5), made one line naming the key."""
    import datasets
    import datasets.config
    import huggingface_hub.constants

    def refuse(*args: object, **kwargs: object) -> None:
        raise ValueError(error)

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # no try of the Hub
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "datasets")  # none cached
    monkeypatch.setattr(datasets, "load_dataset", refuse)
    with pytest.raises(AblateInputError) as info:
        load_raw_splits(DataSpec(dataset="cardiffnlp/tweet_eval", config=config))
    assert str(info.value) == expected


def test_evaluate_names_its_config_option(fake_cache: Path) -> None:
    from ablation.inference._evaluate import _as_options

    _cache_configs(fake_cache, "cardiffnlp/tweet_eval", "emotion")
    with pytest.raises(AblateInputError) as info:
        load_raw_splits(DataSpec(dataset="cardiffnlp/tweet_eval", config="emotionz"))
    given = {"--text-column": True, "--label-column": True}
    assert _as_options(str(info.value), given, {}) == (
        "--config 'emotionz': the Hugging Face cache holds no such config of cardiffnlp/tweet_eval "
        "(it holds 'emotion'); did you mean 'emotion'?")


def _incomplete_copy(tiny_model_dir: Path, tmp_path: Path, *left_out: str) -> Path:
    folder = tmp_path / "model"
    shutil.copytree(tiny_model_dir, folder, ignore=shutil.ignore_patterns(*left_out))
    return folder


@pytest.mark.parametrize(("left_out", "expected"), [
    (("model.safetensors",), "holds no weights (model.safetensors or pytorch_model.bin)"),
    (("tokenizer.json", "vocab.txt"), "holds no tokenizer vocabulary (tokenizer.json, vocab.txt, "
     "...): transformers makes a tokenizer of 5 tokens, the special ones, every word [UNK]"),
    (("config.json",), "is a folder but not a saved model (no config.json)"),
])
def test_an_incomplete_model_folder_is_refused_before_any_trial(
        tiny_model_dir: Path, tmp_path: Path, left_out: tuple[str, ...], expected: str) -> None:
    """validate said ok: without weights every trial then failed as it started (exit 1), and
    without a vocabulary the study trained on a tokenizer of 5 tokens, every word [UNK]."""
    folder = _incomplete_copy(tiny_model_dir, tmp_path, *left_out)
    source = ModelSource(str(folder), None, {})
    loads = [lambda: load_tokenizer(source)] if "tokenizer.json" in left_out else [
        lambda: load_model_config(source, ["a", "b"])]
    if "config.json" in left_out:
        loads.append(lambda: load_tokenizer(source))
    for load in loads:
        with pytest.raises(AblateInputError) as info:
            load()
        assert str(info.value).startswith(f"[model] name = {str(folder)!r} {expected}")


def test_a_study_folder_or_a_cache_folder_given_as_the_model_names_the_one_to_give(
        tiny_model_dir: Path, tmp_path: Path) -> None:
    study = tmp_path / "reports" / "old"
    shutil.copytree(tiny_model_dir, study / "best_model")
    with pytest.raises(AblateInputError) as info:
        load_model_config(ModelSource(str(study), None, {}), ["a", "b"])
    assert str(info.value) == (f"[model] name = {str(study)!r} is a folder but not a saved model (no "
                               f"config.json); it holds the model folder {str(study / 'best_model')!r}: "
                               "give that")
    repo = tmp_path / "hub" / "models--org--tiny"
    shutil.copytree(tiny_model_dir, repo / "snapshots" / "abc123")
    with pytest.raises(AblateInputError) as info:
        load_model_config(ModelSource(str(repo), None, {}), ["a", "b"])
    assert str(info.value) == (
        f"[model] name = {str(repo)!r} is a Hugging Face cache's folder of 'org/tiny', not a saved "
        f"model: give the Hub id 'org/tiny' (with HF_HUB_CACHE = {str(repo.parent)!r}), or its "
        f"snapshot folder {str(repo / 'snapshots' / 'abc123')!r}")


def _cache_model_at(cache: Path, repo: str, commit: str, ref: str | None = None) -> None:
    folder = cache / "hub" / f"models--{repo.replace('/', '--')}"
    (folder / "snapshots" / commit).mkdir(parents=True, exist_ok=True)
    if ref:
        (folder / "refs").mkdir(exist_ok=True)
        (folder / "refs" / ref).write_text(commit, encoding="utf-8")


def test_a_short_commit_of_a_cached_model_is_named_whole(fake_cache: Path) -> None:
    """The Hub's pages show commits by their first 7 characters; a revision is the whole hash,
    a branch or a tag. The line said only to give a revision the model has."""
    commit = "c9745ed1d9f207416be6d2e6f8de32d1f16199bf"
    _cache_model_at(fake_cache, "sentence-transformers/all-MiniLM-L6-v2", commit, "main")
    with pytest.raises(AblateInputError) as info:
        load_model_config(ModelSource("sentence-transformers/all-MiniLM-L6-v2", "c9745ed", {}), ["a", "b"])
    assert str(info.value).endswith(f"; did you mean {commit!r} (the Hugging Face cache holds that "
                                    "commit; a revision is a whole commit hash, a branch or a tag)?")
    _cache_model_at(fake_cache, "sentence-transformers/all-MiniLM-L6-v2", "0" * 40)
    with pytest.raises(AblateInputError) as info:
        load_model_config(ModelSource("sentence-transformers/all-MiniLM-L6-v2", "v1.0", {}), ["a", "b"])
    assert str(info.value).endswith(
        f"; the Hugging Face cache holds sentence-transformers/all-MiniLM-L6-v2 at 'main' (commit "
        f"{commit}), {'0' * 40!r}")


def test_a_tokenizer_needing_a_library_not_installed_is_one_line(
        tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A SentencePiece vocabulary (spiece.model) without tokenizer.json needs sentencepiece and
    protobuf: transformers raises ImportError, which validate, run and predict let out as a
    traceback (exit 1). Its message, as transformers 5 writes it, starts with a line break."""
    import transformers

    from ablation.inference import _model

    def needs_sentencepiece(*args: object, **kwargs: object) -> None:
        raise ImportError("\nAlbertTokenizer requires the SentencePiece library but it was not found in "
                          "your environment. Check out the instructions on the\ninstallation page")

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", needs_sentencepiece)
    expected = ("its tokenizer cannot be loaded: AlbertTokenizer requires the SentencePiece library "
                "but it was not found in your environment. Check out the instructions on the "
                "(install the library it names, e.g. `pip install sentencepiece protobuf`, or save "
                "the tokenizer as tokenizer.json, which needs none)")
    with pytest.raises(AblateInputError) as info:
        load_tokenizer(ModelSource(str(tiny_model_dir), None, {}))
    assert str(info.value) == f"[model] name = {str(tiny_model_dir)!r}: {expected}"
    with pytest.raises(AblateInputError) as info:
        _model.load_classifier(tiny_model_dir)
    assert str(info.value) == f"{tiny_model_dir}: {expected}"


def test_the_default_text_column_missing_points_to_the_only_column_of_texts(tmp_path: Path) -> None:
    """SST-2's texts are 'sentence', waimai_10k's 'review': the default 'text' was refused listing
    the columns, with no did-you-mean ('sentence' is no typo of 'text')."""
    from ablation.data import load_labeled_splits

    rows = [(i, f"a fine film number {i}", i % 2) for i in range(20)]
    pd.DataFrame(rows, columns=["idx", "sentence", "label"]).to_csv(tmp_path / "sst.csv", index=False)
    with pytest.raises(AblateInputError) as info:
        load_labeled_splits(DataSpec(dataset=str(tmp_path / "sst.csv")))
    assert "has no such column; did you mean 'sentence' (its only column of texts)? (columns: 'idx', " \
           "'sentence', 'label')" in str(info.value)
    # two columns of texts: which one is not guessed
    pd.DataFrame([(f"t{i}", f"a film {i}", i % 2) for i in range(20)],
                 columns=["title", "review", "label"]).to_csv(tmp_path / "two.csv", index=False)
    with pytest.raises(AblateInputError) as info:
        load_labeled_splits(DataSpec(dataset=str(tmp_path / "two.csv")))
    assert "has no such column (columns: 'title', 'review', 'label')" in str(info.value)


def test_a_dataset_revision_offline_is_said_to_be_unchecked(fake_cache: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Offline, load_dataset reads HF_DATASETS_CACHE's prepared copy for any revision (no copy
    records one): `revision = "v9"` validated and trained on whatever the cache held, unsaid."""
    import datasets

    from ablation.data import load_labeled_splits

    tiny = datasets.Dataset.from_dict({"text": [f"film {i}" for i in range(40)],
                                       "label": [i % 2 for i in range(40)]})
    monkeypatch.setattr(datasets, "load_dataset", lambda *args, **kwargs: datasets.DatasetDict(train=tiny))
    notes = load_labeled_splits(DataSpec(dataset="stanfordnlp/sst2", revision="v9")).notes
    assert ("[data] revision = 'v9' is not checked: offline, stanfordnlp/sst2 is read from the "
            "datasets cache, which records no revision: its copy there is used, whichever revision "
            "it is") in notes
    # the Hub cache holding the repository at that revision changes nothing: offline, datasets
    # raises OfflineModeIsEnabled before reading it and loads the datasets cache's copy
    (fake_cache / "hub" / "datasets--stanfordnlp--sst2" / "snapshots" / "abc").mkdir(parents=True)
    (fake_cache / "hub" / "datasets--stanfordnlp--sst2" / "refs").mkdir()
    (fake_cache / "hub" / "datasets--stanfordnlp--sst2" / "refs" / "v9").write_text("abc")
    assert any(note.startswith("[data] revision = 'v9' is not checked") for note in
               load_labeled_splits(DataSpec(dataset="stanfordnlp/sst2", revision="v9")).notes)
    assert not any("revision" in note for note in
                   load_labeled_splits(DataSpec(dataset="stanfordnlp/sst2")).notes)


def test_the_real_cache_names_what_users_meant(offline_hf: Path, tmp_path: Path, capsys) -> None:
    """On the pre-filled cache: tweet_eval's config by a slip, SST-2 and MiniLM by their short
    names, as papers and model cards write them."""
    from ablation import cli

    cases = [('"cardiffnlp/tweet_eval"\nconfig = "emotions"', "sentence-transformers/all-MiniLM-L6-v2",
              "[data] config = 'emotions': the Hugging Face cache holds no such config of "
              "cardiffnlp/tweet_eval (it holds 'emotion'); did you mean 'emotion'?"),
             ('"sst2"', "sentence-transformers/all-MiniLM-L6-v2",
              "did you mean 'stanfordnlp/sst2' (the Hugging Face cache holds it)?"),
             ('"stanfordnlp/sst2"\ntext_column = "sentence"', "all-MiniLM-L6-v2",
              "did you mean 'sentence-transformers/all-MiniLM-L6-v2' (the Hugging Face cache holds it)?")]
    for dataset, model, expected in cases:
        path = tmp_path / "case.toml"
        path.write_text(f'[data]\ndataset = {dataset}\n[model]\nname = "{model}"\n[baseline]\n',
                        encoding="utf-8")
        assert cli.main(["validate", str(path)]) == 2
        error = capsys.readouterr().err.strip().splitlines()
        assert len(error) == 1 and error[0].endswith(expected), error


@pytest.mark.parametrize("command", ["predict", "evaluate"])
def test_a_hub_id_given_to_predict_or_evaluate_is_pointed_to_a_local_folder(
        fake_cache: Path, tiny_model_dir: Path, capsys, command: str) -> None:
    """`ablate evaluate textattack/bert-base-uncased-SST-2 --dataset stanfordnlp/sst2` said only
    'no such model folder or experiment file'."""
    from ablation import cli

    snapshot = fake_cache / "hub" / "models--org--classifier" / "snapshots" / "abc123"
    shutil.copytree(tiny_model_dir, snapshot)
    args = ["a text"] if command == "predict" else []
    assert cli.main([command, "org/classifier", *args]) == 2
    assert capsys.readouterr().err.strip() == (
        "ablate: error: MODEL_OR_STUDY 'org/classifier': no such model folder or experiment file; "
        f"a Hub id is not read here, a local folder is: the Hugging Face cache holds this one as "
        f"{str(snapshot)!r}")
    assert cli.main([command, "org/other", *args]) == 2
    assert capsys.readouterr().err.strip().endswith(
        "no such model folder or experiment file; if it is a Hub id: a local folder is read here, "
        "not a Hub id (save the model with save_pretrained, or give its snapshot folder in the "
        "Hugging Face cache)")


def test_a_model_the_offline_cache_lacks_is_not_said_to_lack_a_connection(fake_cache: Path) -> None:
    """With HF_HUB_OFFLINE=1 transformers says "We couldn't connect to 'https://huggingface.co'",
    and no connection was tried: the line says the cache lacks the model."""
    message = _model_error("bert-base-uncased")
    assert ("[model] name = 'bert-base-uncased' cannot be loaded (HF_HUB_OFFLINE is set and the "
            f"Hugging Face cache ({fake_cache / 'hub'}) does not hold it); ") in message
    assert "couldn't connect" not in message


@pytest.mark.parametrize(("kind", "address", "repo"), [
    ("model", "https://huggingface.co/sentence-transformers/all-MiniLM-L6-v2",
     "sentence-transformers/all-MiniLM-L6-v2"),
    ("model", "huggingface.co/org/model/tree/main", "org/model"),
    ("dataset", "https://huggingface.co/datasets/stanfordnlp/sst2/viewer", "stanfordnlp/sst2"),
    ("dataset", "https://hf.co/datasets/org/data", "org/data"),
])
def test_a_hub_page_address_pasted_as_the_id_is_given_its_id(fake_cache: Path, kind: str, address: str,
                                                             repo: str) -> None:
    """The address bar's URL was refused as a repository id or a missing local file, unsaid which
    id it is."""
    message = _model_error(address) if kind == "model" else _data_error(address)
    assert message.endswith(f"; give the Hub id {repo!r}, not the web address of its page")


def test_a_tokenizer_of_characters_needs_no_vocabulary_file(tiny_model_dir: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """CANINE's tokenizer (Unicode code points) is saved without a vocabulary file: its folder is a
    whole model, not one missing its vocabulary."""
    import transformers

    folder = _incomplete_copy(tiny_model_dir, tmp_path, "tokenizer.json", "vocab.txt")
    characters = transformers.CanineTokenizer()
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", lambda *a, **k: characters)
    assert load_tokenizer(ModelSource(str(folder), None, {})) is characters


def test_predict_reads_a_model_whose_tokenizer_needs_no_vocabulary_file(
        tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """predict and evaluate refused a CANINE-style folder (no vocabulary file) that a study trains
    on: both sides now judge the tokenizer it loads, as the study's did."""
    import transformers

    from ablation.models import check_classifier_folder

    folder = _incomplete_copy(tiny_model_dir, tmp_path, "tokenizer.json", "vocab.txt")
    config = transformers.BertConfig.from_pretrained(folder)
    config.architectures = ["BertForSequenceClassification"]
    config.save_pretrained(folder)
    with pytest.raises(AblateInputError, match="holds no tokenizer vocabulary .* of 5 tokens"):
        check_classifier_folder(folder)  # a BERT folder without one: its tokenizer is made up
    characters = transformers.CanineTokenizer()
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", lambda *a, **k: characters)
    check_classifier_folder(folder)


def test_a_config_cached_with_parameters_is_not_one_more_config(fake_cache: Path) -> None:
    """load_dataset(..., data_files=...) caches under 'default-<hash>'; offline without a config,
    load_dataset reads only the folders named by their own config ('default'), yet the refusal
    counted 'default-5f8e1c2a' as a second config and asked to set config to it."""
    info = fake_cache / "datasets" / "stanfordnlp___sst2" / "default-5f8e1c2a" / "0.0.0" / "abc123"
    info.mkdir(parents=True)
    (info / "dataset_info.json").write_text('{"config_name": "default"}', encoding="utf-8")
    from ablation.hub import cached_configs

    assert cached_configs("stanfordnlp/sst2") == ["default"]


def test_the_snapshot_named_for_a_cached_model_is_mains(fake_cache: Path, tiny_model_dir: Path,
                                                        capsys) -> None:
    """A cache holding two snapshots of a model (it was downloaded again after an update) had the
    last by name pointed to, an arbitrary commit, not the one the cache's refs/main names."""
    from ablation import cli

    repo = fake_cache / "hub" / "models--org--classifier"
    main, older = "0" * 40, "f" * 40
    for commit in (main, older):
        shutil.copytree(tiny_model_dir, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(main, encoding="utf-8")
    assert cli.main(["predict", "org/classifier", "a text"]) == 2
    assert capsys.readouterr().err.strip().endswith(f"as {str(repo / 'snapshots' / main)!r}")
    with pytest.raises(AblateInputError) as info:
        load_model_config(ModelSource(str(repo), None, {}), ["a", "b"])
    assert str(info.value).endswith(f"snapshot folder {str(repo / 'snapshots' / main)!r}")


def test_a_hub_model_without_a_tokenizer_vocabulary_is_refused(fake_cache: Path,
                                                                tiny_model_dir: Path) -> None:
    """A Hub repository (or the cache's snapshot of it) with the model but no tokenizer files:
    transformers made a tokenizer of the special tokens alone, validate said ok with a note blaming
    the vocabulary's language, and the study trained on every word [UNK], as a local folder did."""
    repo = fake_cache / "hub" / "models--org--notok"
    shutil.copytree(tiny_model_dir, repo / "snapshots" / "abc123",
                    ignore=shutil.ignore_patterns("tokenizer.json", "vocab.txt"))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123", encoding="utf-8")
    with pytest.raises(AblateInputError) as info:
        load_tokenizer(ModelSource("org/notok", None, {}))
    assert str(info.value).startswith(
        "[model] name = 'org/notok' has no tokenizer vocabulary (tokenizer.json, vocab.txt, ...): "
        "transformers makes a tokenizer of 5 tokens, the special ones, every word [UNK]")


def test_a_hub_model_the_offline_cache_holds_without_weights_is_refused(fake_cache: Path,
                                                                         tiny_model_dir: Path) -> None:
    """Offline, a cached snapshot with config.json but no weights (downloaded file by file, or cut
    short) passed validate, and every trial then failed as it started, as a local folder did."""
    repo = fake_cache / "hub" / "models--org--noweights"
    shutil.copytree(tiny_model_dir, repo / "snapshots" / "abc123",
                    ignore=shutil.ignore_patterns("model.safetensors"))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123", encoding="utf-8")
    with pytest.raises(AblateInputError) as info:
        load_model_config(ModelSource("org/noweights", None, {}), ["a", "b"])
    assert str(info.value).startswith(
        "[model] name = 'org/noweights': the Hugging Face cache holds its config but not its "
        "weights (model.safetensors or pytorch_model.bin)")
    shutil.copy(tiny_model_dir / "model.safetensors", repo / "snapshots" / "abc123")
    load_model_config(ModelSource("org/noweights", None, {}), ["a", "b"])


def test_a_wrong_config_lists_no_folder_cached_with_parameters(fake_cache: Path) -> None:
    """datasets lists every folder of the cache as a config, 'default-5f8e1c2a' (loaded with
    data_files) too: the line named it as a config and left out 'leave config out'."""
    info = fake_cache / "datasets" / "stanfordnlp___sst2" / "default-5f8e1c2a" / "0.0.0" / "abc123"
    info.mkdir(parents=True)
    (info / "dataset_info.json").write_text('{"config_name": "default"}', encoding="utf-8")
    with pytest.raises(AblateInputError) as info_:
        load_raw_splits(DataSpec(dataset="stanfordnlp/sst2", config="sst2"))
    assert str(info_.value) == ("[data] config = 'sst2': the Hugging Face cache holds no such "
                                "config of stanfordnlp/sst2 (it holds 'default'); leave config out")


def test_a_hub_id_without_an_organisation_given_to_predict_names_its_snapshot(
        fake_cache: Path, tiny_model_dir: Path, capsys) -> None:
    """`ablate predict distilbert-base-uncased-finetuned-sst-2-english "a text"` (an id of the
    Hub's first models, without an organisation) said only 'no such model folder or experiment
    file', where the cache held the model."""
    from ablation import cli

    snapshot = fake_cache / "hub" / "models--sst2-classifier" / "snapshots" / "abc123"
    shutil.copytree(tiny_model_dir, snapshot)
    assert cli.main(["predict", "sst2-classifier", "a text"]) == 2
    assert capsys.readouterr().err.strip().endswith(
        f"a Hub id is not read here, a local folder is: the Hugging Face cache holds this one as "
        f"{str(snapshot)!r}")
    assert cli.main(["predict", "no-such-thing", "a text"]) == 2
    assert capsys.readouterr().err.strip().endswith("no such model folder or experiment file")


@pytest.mark.parametrize("errno_name", ["EACCES", "EROFS"])
def test_a_datasets_cache_this_user_cannot_write_in_is_named_with_what_to_do(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, errno_name: str) -> None:
    """A filled, shared HF_DATASETS_CACHE made read-only (another user's, a read-only mount): the
    datasets library writes a lock file there to read even a cached dataset. The line said the
    dataset cannot be loaded, nor is it a folder here, and to point HF_DATASETS_CACHE at a filled
    cache: the cache is filled; it must be writable (libraries' messages as of datasets 5)."""
    import errno
    import os

    import datasets
    import datasets.config
    import huggingface_hub.constants

    cache = tmp_path / "datasets"
    lock = cache / "_x_mteb___tweet_sentiment_extraction_default.lock"
    code = getattr(errno, errno_name)

    def refuse(*args: object, **kwargs: object) -> None:
        raise OSError(code, os.strerror(code), str(lock))

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # no try of the Hub
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", cache)
    monkeypatch.setattr(datasets, "load_dataset", refuse)
    with pytest.raises(AblateInputError) as info:
        load_raw_splits(DataSpec(dataset="mteb/tweet_sentiment_extraction"))
    assert str(info.value) == (
        f"[data] dataset = 'mteb/tweet_sentiment_extraction' cannot be loaded: the datasets cache "
        f"{cache} (HF_DATASETS_CACHE) cannot be written in: {os.strerror(code)}: '{lock}'; the "
        "datasets library writes lock files there even to read a dataset it holds: point "
        "HF_DATASETS_CACHE at a folder this user can write in (a copy of this one, offline)")
