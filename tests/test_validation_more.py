"""Input checks the bad-input corpus cannot express: accepted inputs (stripped labels, a max_length
beyond the model's positions on short texts), every path-like model name, the position limit of
model families, `predict` on texts longer than the model takes, and the [sweep] hint's examples."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import one_error_line

from ablation import cli
from ablation.config import KNOBS, SWEEP_EXAMPLES, Recipe, load_spec
from ablation.data import load_labeled_splits
from ablation.errors import AblateInputError
from ablation.train import ModelSource, position_limit


def _write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "case.toml"
    path.write_text(body, encoding="utf-8")
    return path


def _error(path: Path) -> str:
    return one_error_line(load_spec, path)


@pytest.mark.parametrize("name", ["./no-such-model", "../no-such-model", "/tmp/no-such-ablate-model",
                                  "~/no-such-ablate-model"])
def test_a_path_like_model_name_that_is_missing_is_no_such_folder(tmp_path: Path, name: str,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Said when the model is loaded (validate, run): the file itself stays readable, so that
    status and report work after a local model folder was moved away."""
    from ablation.train import model_unavailable

    monkeypatch.chdir(tmp_path)
    hub_error = ValueError("Repo id must use alphanumeric chars or '-', '_', '.'")
    assert model_unavailable(name, hub_error).startswith(f"[model] name = {name!r}: no such folder")
    assert model_unavailable(name, hub_error, "model").startswith(f"model = {name!r}: no such folder")
    path = _write(tmp_path, f'[data]\ndataset = "mteb/x"\n[model]\nname = "{name}"\n[baseline]\n')
    assert load_spec(path).model.name == name


def test_a_hub_id_is_not_taken_for_a_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    path = _write(tmp_path, '[data]\ndataset = "mteb/x"\n[model]\nname = "org/name"\n[baseline]\n'
                  '[variants]\nother = { model = "org/other" }\n')
    spec = load_spec(path)
    assert (spec.model.name, spec.variants["other"]["model"]) == ("org/name", "org/other")


def test_an_empty_model_config_in_a_variant_changes_nothing(tmp_path: Path) -> None:
    path = _write(tmp_path, '[data]\ndataset = "mteb/x"\n[model]\nname = "org/name"\n[baseline]\n'
                  "[variants]\nsame = { model_config = {} }\n")
    assert "[variants.same] model_config = {} changes nothing" in _error(path)


def test_every_knob_has_a_sweep_example_its_check_accepts() -> None:
    assert set(SWEEP_EXAMPLES) == set(KNOBS)
    checks = {f.name: f.metadata["check"] for f in dataclasses.fields(Recipe)}
    for knob, example in SWEEP_EXAMPLES.items():
        assert checks[knob](example) == example, knob
        assert example != Recipe().to_dict()[knob], f"{knob}: the default makes no variant"


def test_label_names_are_stripped_like_string_labels(tmp_path: Path) -> None:
    path = _write(tmp_path, '[data]\ndataset = "mteb/x"\nlabel_names = [" neg", "pos "]\n'
                  '[model]\nname = "org/name"\n[baseline]\n')
    assert load_spec(path).data.label_names == ["neg", "pos"]


def test_label_names_are_read_in_nfc_without_invisible_marks(tmp_path: Path) -> None:
    # 'ne\u0301gatif' (macOS's NFD) and 'négatif' were two names; a zero-width space made another
    path = _write(tmp_path, '[data]\ndataset = "mteb/x"\nlabel_names = ["ne\\u0301gatif", '
                  '"positif\\u200b"]\n[model]\nname = "org/name"\n[baseline]\n')
    assert load_spec(path).data.label_names == ["n\u00e9gatif", "positif"]
    path = _write(tmp_path, '[data]\ndataset = "mteb/x"\nlabel_names = ["ne\\u0301gatif", '
                  '"n\\u00e9gatif"]\n[model]\nname = "org/name"\n[baseline]\n')
    with pytest.raises(AblateInputError, match="repeats 'n\u00e9gatif'"):
        load_spec(path)


def test_string_labels_are_stripped_with_a_note(tmp_path: Path) -> None:
    frame = pd.DataFrame({"text": [f"text {i}" for i in range(40)],
                          "label": ["neg", "neg ", " pos", "pos", "  "] * 8})
    frame.to_csv(tmp_path / "train.csv", index=False)
    from ablation.config import DataSpec

    splits = load_labeled_splits(DataSpec(dataset=str(tmp_path)))
    assert splits.label_names == ["neg", "pos"]
    assert len(splits.train) + len(splits.validation) == 32  # the blank labels are missing ones
    assert "stripped the spaces around 16 labels ('neg ' is 'neg')" in splits.notes
    assert ("split 'train': dropped 8 rows with an empty text or missing label (rows 4, 9, 14, "
            "19, 24, … (8 in all))") in splits.notes


def test_string_labels_that_differ_only_in_case_are_noted(tmp_path: Path) -> None:
    """'Positive' among 'positive' labels (a hand-edited spreadsheet) is a class of its own: a
    note names the pair, as the model would otherwise learn a third class unseen."""
    frame = pd.DataFrame({"text": [f"text {i}" for i in range(40)],
                          "label": ["negative", "positive", "negative", "Positive"] * 10})
    frame.to_csv(tmp_path / "train.csv", index=False)
    from ablation.config import DataSpec

    splits = load_labeled_splits(DataSpec(dataset=str(tmp_path)))
    assert splits.label_names == ["Positive", "negative", "positive"]
    assert ("labels 'Positive' and 'positive' differ only in case: they are 2 classes (of 3 in "
            "all); write each class one way if they are one") in splits.notes


def test_a_max_length_beyond_the_positions_is_accepted_while_every_text_fits(
        tmp_path: Path, write_experiment, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """The tiny model has 64 positions; its short texts never reach them, so 128 truncates nothing."""
    monkeypatch.chdir(tmp_path)
    path = write_experiment(variants="long = { max_length = 512 }\n")
    assert cli.main(["validate", str(path)]) == 0, capsys.readouterr().err


def test_position_limit_of_model_families() -> None:
    from transformers import (
        AutoModelForSequenceClassification,
        BertConfig,
        GPT2Config,
        OPTConfig,
        RobertaConfig,
    )

    class Tokenizer:
        model_max_length = int(1e30)  # "no limit"

    def skeleton(config):
        with torch.device("meta"):
            return AutoModelForSequenceClassification.from_config(config)

    bert = skeleton(BertConfig(max_position_embeddings=512))
    roberta = skeleton(RobertaConfig(max_position_embeddings=514, pad_token_id=1))
    assert position_limit(bert, Tokenizer()) == 512
    assert position_limit(roberta, Tokenizer()) == 512  # positions count from pad_token_id + 1
    # GPT-2 names them wpe; OPT's embed_positions count from an offset of 2. Beyond them training
    # failed with an index error in every trial where the tokenizer set no model_max_length.
    assert position_limit(skeleton(GPT2Config(n_positions=40, n_layer=1)), Tokenizer()) == 40
    opt = skeleton(OPTConfig(max_position_embeddings=48, num_hidden_layers=1))
    assert position_limit(opt, Tokenizer()) == 48
    Tokenizer.model_max_length = 128
    assert position_limit(bert, Tokenizer()) == 128
    assert position_limit(torch.nn.Linear(2, 2), Tokenizer()) == 128
    Tokenizer.model_max_length = int(1e30)
    assert position_limit(torch.nn.Linear(2, 2), Tokenizer()) is None


def test_predict_truncates_at_the_model_positions(tiny_model_dir: Path, tmp_path: Path) -> None:
    """No ablate.json: DEFAULT_MAX_LENGTH (512) would index past the tiny model's 64 positions."""
    from transformers import AutoTokenizer

    from ablation.inference import DEFAULT_MAX_LENGTH, max_length_of, predict

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    assert max_length_of(tiny_model_dir, tokenizer) == DEFAULT_MAX_LENGTH
    rows = predict(tiny_model_dir, [" ".join(["great"] * 300), "bad"])
    assert [len(row["probabilities"]) for row in rows] == [2, 2]


def test_the_source_identity_keeps_the_checkpoint_keys(write_experiment) -> None:
    """Checkpoints are resumed by this identity: the error-line fields must stay out of it."""
    spec = load_spec(write_experiment())
    recipe = dataclasses.replace(spec.baseline, model_config={"num_hidden_layers": 1})
    source = ModelSource.of(spec, recipe)
    assert source.identity() == {"name": spec.model.name, "revision": None,
                                 "config": {"num_hidden_layers": 1}}
    assert source == ModelSource(spec.model.name, None, {"num_hidden_layers": 1})
    assert source.config_key("num_hidden_layers") == "model_config"
    assert json.dumps(source.identity())
