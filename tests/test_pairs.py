"""Sentence-pair studies ([data] text_pair_column): what validate says of their truncation, and
what ablate suggests doing with a pair model. Built on the tiny BERT and data of conftest, with a
second text column added; validate trains nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import DEFAULT_BASELINE, make_texts, tiny_experiment

from ablation import cli


def _pair_study(folder: Path, model_dir: Path, baseline: str, long_first: bool = False) -> Path:
    """A study of text pairs (column `text2`); with `long_first`, one training premise is longer
    than the model's 64 positions."""
    data = folder / "data"
    data.mkdir()
    for split, rows, seed in (("train", 60, 1), ("test", 20, 2)):
        frame = make_texts(rows, seed)
        frame["text2"] = make_texts(rows, seed + 10)["text"]
        if long_first and split == "train":
            frame.loc[0, "text"] = " ".join(["great"] * 100)
        frame.to_csv(data / f"{split}.csv", index=False)
    path = tiny_experiment(folder, model_dir, data, baseline=DEFAULT_BASELINE + baseline,
                           variants="")
    path.write_text(path.read_text().replace("[data]\n", '[data]\ntext_pair_column = "text2"\n'))
    return path


@pytest.mark.parametrize("max_length", [2, 3])
def test_a_max_length_with_no_room_for_a_pairs_tokens_is_refused(tmp_path, tiny_model_dir, capsys,
                                                                 max_length):
    """BERT's tokenizer adds 3 special tokens to a pair ([CLS] a [SEP] b [SEP]): at max_length 3
    every example is those 3 and no word, and below that the tokenizer does not truncate at all,
    so a long pair reached the model whole and the trial failed past its positions. Refused before
    anything trains, naming the key and the least length that reads a token."""
    path = _pair_study(tmp_path, tiny_model_dir, f"max_length = {max_length}\n", long_first=True)
    assert cli.main(["validate", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err
    assert f"max_length = {max_length}" in err
    assert "3 special tokens" in err and "4 or more" in err


def test_a_max_length_that_reads_a_token_of_a_pair_is_accepted(tmp_path, tiny_model_dir, capsys):
    path = _pair_study(tmp_path, tiny_model_dir, "max_length = 4\n")
    assert cli.main(["validate", str(path)]) == 0


def test_run_and_report_suggest_no_predict_for_a_pair_model(tmp_path, tiny_model_dir, capsys):
    """`ablate predict` refuses a model trained on text pairs, yet `run` ended with `try ablate
    predict FILE 'some text'` and the report said to use it with that: the command printed to paste
    failed. A pair model is pointed to `ablate evaluate` and to the pipeline with a text pair."""
    path = _pair_study(tmp_path, tiny_model_dir, "max_length = 16\n")
    path.write_text(path.read_text().replace("epochs = 2", "epochs = 1"))
    assert cli.main(["run", str(path)]) == 0
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if line.startswith("best model:"))
    report = (tmp_path / "reports" / "tiny" / "report.md").read_text()
    best = next(line for line in report.splitlines() if line.startswith("- **Best model**"))
    for said in (line, best):
        assert "predict" not in said
        assert f"evaluate {path}" in said
    assert '"text_pair"' in best
    assert cli.main(["evaluate", str(path)]) == 0


def test_the_truncation_note_of_a_pair_study_says_how_pairs_are_cut(tmp_path, tiny_model_dir,
                                                                    capsys):
    """A pair is cut from the end of its longer text (the tokenizer's longest_first), not to 'their
    first N tokens', which read as if the second text were dropped."""
    path = _pair_study(tmp_path, tiny_model_dir, "max_length = 10\n")
    assert cli.main(["validate", str(path)]) == 0
    note = next(line for line in capsys.readouterr().out.splitlines() if "max_length = 10" in line)
    assert "text pairs" in note and "first 10 tokens" not in note
    assert "whichever of its texts is longer" in note


def _model_copy(folder: Path, tiny_model_dir: Path, type_vocab_size: int, type_ids: bool) -> Path:
    """The tiny BERT with `type_vocab_size` segment types in its own config, and its tokenizer
    giving token_type_ids (BERT's) or not (DistilBERT's, RoBERTa's)."""
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    folder.mkdir()
    names = ["input_ids", "token_type_ids", "attention_mask"] if type_ids else [
        "input_ids", "attention_mask"]
    AutoTokenizer.from_pretrained(tiny_model_dir, model_input_names=names).save_pretrained(folder)
    config = BertConfig.from_pretrained(tiny_model_dir, type_vocab_size=type_vocab_size)
    BertForSequenceClassification(config).save_pretrained(folder)
    return folder


def test_a_checkpoint_with_one_segment_type_under_a_tokenizer_giving_two_is_refused(
        tmp_path, tiny_model_dir, capsys):
    """A checkpoint whose own config.json has type_vocab_size = 1 beside a tokenizer that gives a
    pair's second text token type 1 passed validate, and every trial failed in training with
    'IndexError: index out of range in self'; only an override of the key was checked."""
    model = _model_copy(tmp_path / "one-type", tiny_model_dir, 1, type_ids=True)
    path = _pair_study(tmp_path, tiny_model_dir, "max_length = 16\n")
    path.write_text(path.read_text().replace(str(tiny_model_dir), str(model)))
    capsys.readouterr()
    assert cli.main(["validate", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "type_vocab_size = 1" in err and str(model) in err


def test_one_segment_type_is_accepted_where_the_tokenizer_gives_no_token_types(
        tmp_path, tiny_model_dir, capsys):
    """RoBERTa's and DistilBERT's tokenizers give no token_type_ids: the model embeds every token
    as type 0, pair or not, so type_vocab_size = 1 (RoBERTa's own value) trains pairs fine; an
    override of it was refused as if the tokenizer gave two types."""
    model = _model_copy(tmp_path / "no-types", tiny_model_dir, 2, type_ids=False)
    path = _pair_study(tmp_path, tiny_model_dir, "max_length = 16\n")
    text = path.read_text().replace(str(tiny_model_dir), str(model))
    path.write_text(text.replace("[model]\n", "[model]\nconfig = { type_vocab_size = 1 }\n"))
    assert cli.main(["validate", str(path)]) == 0, capsys.readouterr().err


def test_a_tokenizer_that_puts_nothing_between_a_pairs_texts_gets_a_note(tmp_path, tiny_model_dir,
                                                                          capsys):
    """A decoder's tokenizer (GPT-2's) adds no special token and no token types to a pair: the two
    texts reach the model run together, and validate said nothing of it."""
    import copy
    import shutil

    import transformers

    model = tmp_path / "joined"
    shutil.copytree(tiny_model_dir, model)
    backend = copy.deepcopy(transformers.AutoTokenizer.from_pretrained(model).backend_tokenizer)
    backend.post_processor = None  # no [CLS] a [SEP] b [SEP], no token types
    transformers.PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]",
                                         pad_token="[PAD]").save_pretrained(model)
    folder = tmp_path / "study"
    folder.mkdir()
    path = _pair_study(folder, model, "max_length = 16\n")
    assert cli.main(["validate", str(path)]) == 0
    note = "'s tokenizer puts nothing between the two texts of a pair (no separator token"
    assert note in capsys.readouterr().out
    (tmp_path / "bert").mkdir()
    path = _pair_study(tmp_path / "bert", tiny_model_dir, "max_length = 16\n")
    assert cli.main(["validate", str(path)]) == 0
    assert note not in capsys.readouterr().out  # BERT's [SEP] separates them
