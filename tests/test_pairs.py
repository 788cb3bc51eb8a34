"""Sentence-pair studies ([data] text_pair_column): what validate says of their truncation, and
what ablate suggests doing with a pair model, and `ablate predict` of one (--pair, --file lines
TEXT<TAB>PAIR). Built on the tiny BERT and data of conftest, with a second text column added;
validate trains nothing, the predict tests share one trained pair model."""

from __future__ import annotations

import json
import random
import shlex
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import DEFAULT_BASELINE, FILLER, make_texts, seeded_init, tiny_experiment

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


def test_run_and_report_suggest_predict_with_pair_for_a_pair_model(tmp_path, tiny_model_dir,
                                                                   capsys):
    """`run` ended with `try ablate predict FILE 'some text'`, which labels single texts, for a
    model trained on text pairs; then, once predict refused pair models, with `ablate evaluate`
    alone. Both `run` and the report now give `ablate predict FILE 'some text' --pair 'second
    text'`, which runs as printed."""
    path = _pair_study(tmp_path, tiny_model_dir, "max_length = 16\n")
    path.write_text(path.read_text().replace("epochs = 2", "epochs = 1"))
    assert cli.main(["run", str(path)]) == 0
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if line.startswith("best model:"))
    report = (tmp_path / "reports" / "tiny" / "report.md").read_text()
    best = next(line for line in report.splitlines() if line.startswith("- **Best model**"))
    suggested = f"ablate predict {path} 'some text' --pair 'second text'"
    for said in (line, best):
        assert suggested in said
    assert f"evaluate {path}" in best and '"text_pair"' in best
    assert cli.main(shlex.split(suggested)[1:] + ["--json"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert (row["text"], row["text_pair"]) == ("some text", "second text")
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
    with seeded_init():
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


# --------------------------------------------------------------------------- predict on pairs


@pytest.fixture(scope="module")
def pair_model(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> dict:
    """A pair study whose label is carried by the second text alone (the first holds filler
    words), trained until its model reads it (its file, its best_model/), and test pairs of it.
    The tiny BERT's weights are drawn from a fixed seed here: from some draws 6 epochs learn
    little, and the second text would barely move the probabilities the tests compare."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    folder = tmp_path_factory.mktemp("pair-predict")
    start = folder / "tiny-bert"
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(start)
    with torch.random.fork_rng():
        torch.manual_seed(1)
        BertForSequenceClassification(BertConfig.from_pretrained(tiny_model_dir)).save_pretrained(start)
    data = folder / "data"
    data.mkdir()
    for split, rows, seed in (("train", 240, 1), ("test", 20, 2)):
        frame = make_texts(rows, seed)
        rng = random.Random(seed)
        filler = [" ".join(rng.sample(FILLER, 4)) for _ in range(rows)]
        frame.assign(text2=frame["text"], text=filler).to_csv(data / f"{split}.csv", index=False)
    baseline = DEFAULT_BASELINE.replace("epochs = 2", "epochs = 6").replace(
        "learning_rate = 1e-3", "learning_rate = 5e-3")  # it learns (4 epochs at 1e-3 did not)
    path = tiny_experiment(folder, start, data, variants="", baseline=baseline + "max_length = 24\n")
    path.write_text(path.read_text().replace("[data]\n", '[data]\ntext_pair_column = "text2"\n'))
    assert cli.main(["run", str(path)]) == 0
    test = pd.read_csv(data / "test.csv").head(6)
    return {"file": path, "best": folder / "reports" / "tiny" / "best_model",
            "texts": test["text"].tolist(), "pairs": test["text2"].tolist()}


def _expected(best: Path, texts: list[str], pairs: list[str] | None) -> np.ndarray:
    """Probabilities as evaluate's path gives them: class_logits of the texts and pairs,
    truncated at the trial's max_length."""
    from scipy.special import softmax

    from ablation.inference import class_logits, load_classifier, max_length_of

    tokenizer, model, _ = load_classifier(best)
    logits = class_logits(model, tokenizer, texts, pairs,
                          max_length=max_length_of(best, tokenizer, model))
    return softmax(logits.astype(np.float64), axis=-1)


def _rows(capsys: pytest.CaptureFixture, *arguments: str) -> list[dict]:
    capsys.readouterr()
    assert cli.main(["predict", *arguments, "--json"]) == 0, capsys.readouterr().err
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def _check_rows(rows: list[dict], best: Path, texts: list[str], pairs: list[str]) -> None:
    from ablation.inference import label_names_of, load_classifier

    names = label_names_of(load_classifier(best)[1].config)
    expected = _expected(best, texts, pairs)
    assert [(row["text"], row["text_pair"]) for row in rows] == list(zip(texts, pairs, strict=True))
    for row, probabilities in zip(rows, expected, strict=True):
        assert row["label"] == names[int(np.argmax(probabilities))]
        assert [row["probabilities"][name] for name in names] == pytest.approx(
            probabilities.tolist(), abs=1e-6)
    # the second text counts: the model gives the first texts alone other probabilities
    assert np.abs(_expected(best, texts, None) - expected).max() > 0.05


def test_predict_labels_text_pairs_given_with_pair(pair_model, capsys):
    """A model trained on text pairs was refused by `ablate predict`: only `evaluate` on a
    labelled dataset read both texts. Each text argument now takes its second text from a
    --pair, in order, and is labelled as evaluate labels the pair."""
    texts, pairs = pair_model["texts"], pair_model["pairs"]
    given = [part for pair in pairs for part in ("--pair", pair)]
    for model in (pair_model["best"], pair_model["file"]):
        rows = _rows(capsys, str(model), *texts, *given)
        _check_rows(rows, pair_model["best"], texts, pairs)
    # texts after the options, --pair before them: each still goes with its own
    rows = _rows(capsys, str(pair_model["best"]), given[0], given[1], texts[0])
    _check_rows(rows, pair_model["best"], texts[:1], pairs[:1])
    from ablation.inference import predict

    assert predict(pair_model["best"], texts, pairs=pairs) == _rows(
        capsys, str(pair_model["best"]), *texts, *given)


def test_predict_reads_a_pair_models_file_lines_as_text_tab_pair(pair_model, capsys, tmp_path):
    texts, pairs = pair_model["texts"], pair_model["pairs"]
    lines = [f"{text}\t{pair}" for text, pair in zip(texts[1:], pairs[1:], strict=True)]
    file = tmp_path / "pairs.txt"
    file.write_bytes(("\r\n".join(lines[:2]) + "\r\n\n" + "\n".join(lines[2:])).encode())
    rows = _rows(capsys, str(pair_model["best"]), texts[0], "--pair", pairs[0], "--file", str(file))
    _check_rows(rows, pair_model["best"], texts, pairs)


def test_predicts_table_shows_both_texts_of_a_pair(pair_model, capsys):
    texts, pairs = pair_model["texts"][:2], ["so " * 30 + "great", "sad"]
    capsys.readouterr()
    assert cli.main(["predict", str(pair_model["best"]), *texts, "--pair", pairs[0],
                     "--pair", pairs[1]]) == 0
    header, *lines = capsys.readouterr().out.splitlines()
    assert header.split()[:3] == ["text", "text_pair", "label"]
    assert len(lines) == 2
    assert lines[0].startswith(texts[0]) and "so so" in lines[0] and "…" in lines[0]
    assert lines[1].startswith(texts[1]) and " sad " in lines[1]


def _error(capsys: pytest.CaptureFixture, *arguments: str) -> tuple[str, str]:
    """predict's exit 2 with one error line (no traceback): that line, and what was printed."""
    capsys.readouterr()
    assert cli.main(["predict", *arguments]) == 2
    out, err = capsys.readouterr()
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err, out


def test_predict_refuses_text_arguments_and_pairs_that_do_not_match(pair_model, tiny_model_dir,
                                                                     capsys, tmp_path):
    import shutil

    from ablation.models import MODEL_INFO

    single = tmp_path / "single"  # a model ablate trained on single texts: its ablate.json says so
    shutil.copytree(tiny_model_dir, single)
    (single / MODEL_INFO).write_text(json.dumps({"text_pair_column": None}))
    best = str(pair_model["best"])
    err, _ = _error(capsys, best, "good fun", "bad day", "--pair", "great")
    assert "2 text arguments" in err and "1 --pair" in err
    err, _ = _error(capsys, best, "good fun")
    assert "was trained on text pairs ([data] text_pair_column = 'text2')" in err
    assert "--pair" in err and "TEXT<TAB>" in err
    err, _ = _error(capsys, str(single), "good fun", "--pair", "great")
    assert "--pair" in err and "single texts" in err and str(single) in err
    err, _ = _error(capsys, best, "good fun", "--pair", "")
    assert "--pair 1 is empty" in err


@pytest.mark.parametrize(("line", "said"), [
    ("good fun with no tab", "has no tab"),
    ("good fun\tgreat\tday", "holds 2 tabs"),
    ("\tgreat", "its first text is empty"),
    ("good fun\t  ", "its second text is empty"),
])
def test_a_pair_file_line_that_is_not_text_tab_pair_is_refused_after_the_lines_before_it(
        pair_model, capsys, tmp_path, line, said):
    file = tmp_path / "pairs.txt"
    file.write_text("good fun\tgreat\n\nbad day\tsad\n" + line + "\nmore\tlines\n")
    err, out = _error(capsys, str(pair_model["best"]), "--file", str(file), "--json")
    assert f"--file {str(file)!r}: line 4 {said}" in err and "TEXT<TAB>" in err
    assert [json.loads(row)["text"] for row in out.splitlines()] == ["good fun", "bad day"]


def test_pair_lines_read_in_pieces_stay_with_their_texts(tmp_path, monkeypatch):
    """A file read a few bytes at a time (a stream's lines come so) keeps each text with its
    pair; a bad line's error comes after the lines before it, before a later line not UTF-8."""
    from ablation.errors import AblateInputError
    from ablation.inference import IncomingTexts, _predict

    monkeypatch.setattr(_predict, "READ_BYTES", 5)
    file = tmp_path / "pairs.txt"
    pairs = [(f"text {i}", f"pair {i} é") for i in range(7)]
    file.write_text("".join(f"{text}\t{pair}\n" for text, pair in pairs), encoding="utf-8")
    assert _predict.read_texts(["first"], [file], pairs=["its pair"]) == [
        ("first", "its pair"), *pairs]
    file.write_bytes(b"a\tb\nc d\ne\tf\n\xff\tg\n")
    chunks = IncomingTexts([], [file], pause_s=None, pairs=[]).chunks(100)
    assert next(chunks) == [("a", "b")]
    with pytest.raises(AblateInputError, match="line 2 has no tab"):
        next(chunks)


def test_a_model_folder_with_no_record_of_its_training_reads_pairs_given_with_pair(
        pair_model, capsys, tmp_path):
    """A model saved by transformers itself (a cross-encoder: no ablate.json) was taken to read
    single texts, and --pair was refused ('was trained on single texts'). Nothing records how it
    was trained there: --pair says it reads pairs, and its --file lines are TEXT<TAB>PAIR then."""
    import shutil

    from ablation.models import MODEL_INFO

    folder = tmp_path / "cross-encoder"
    shutil.copytree(pair_model["best"], folder)
    (folder / MODEL_INFO).unlink()
    texts, pairs = pair_model["texts"], pair_model["pairs"]
    given = [part for pair in pairs[:3] for part in ("--pair", pair)]
    file = tmp_path / "pairs.txt"
    file.write_text("".join(f"{text}\t{pair}\n" for text, pair in zip(texts[3:], pairs[3:],
                                                                       strict=True)))
    rows = _rows(capsys, str(folder), *texts[:3], *given, "--file", str(file))
    _check_rows(rows, pair_model["best"], texts, pairs)
    # without --pair it reads single texts, as before; a --pair count that differs is refused
    assert [row["text"] for row in _rows(capsys, str(folder), texts[0])] == texts[:1]
    err, _ = _error(capsys, str(folder), texts[0], texts[1], "--pair", pairs[0])
    assert "2 text arguments and 1 --pair" in err and "trained on text pairs" not in err
