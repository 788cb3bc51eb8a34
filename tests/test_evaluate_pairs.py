"""`ablate evaluate` of a model whose study file says another text pair column than the model
was trained with: the model's own record (ablate.json) decides which columns it reads, and the
disagreement is said in one note line (or one error line where the data lacks the column).

Nothing is trained: a random BERT with weights large enough that a second text changes its
logits stands in for a study's best_model/, and the study is never in its storage (as when a
model folder travels without it)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from conftest import make_texts, seeded_init, tiny_experiment

from ablation import cli

PAIR = "text2"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    """The tiny tokenizer and a random classifier whose labels are the studies' ("0".."2"); its
    large initial weights make a second text change the scores (as a trained model's would)."""
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    folder = tmp_path_factory.mktemp("pair-model")
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(folder)
    tiny = BertConfig.from_pretrained(tiny_model_dir)
    config = BertConfig(**{**tiny.to_dict(), "initializer_range": 0.5,
                           "id2label": {i: str(i) for i in range(3)},
                           "label2id": {str(i): i for i in range(3)}})
    with seeded_init():
        BertForSequenceClassification(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def data_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The same rows with a second text column (`pairs`) and without it (`single`)."""
    folders = {name: tmp_path_factory.mktemp(name) for name in ("pairs", "single")}
    for split, rows, seed in (("train", 80, 1), ("test", 30, 2)):
        frame = make_texts(rows, seed)
        frame.to_csv(folders["single"] / f"{split}.csv", index=False)
        frame.assign(**{PAIR: "great love happy bad sad"}).to_csv(
            folders["pairs"] / f"{split}.csv", index=False)
    return folders


def _studies(folder: Path, model_dir: Path, data: Path, trained_on: str | None,
             record: bool = True) -> dict[str, Path]:
    """Two files of one study (one output folder), with and without [data] text_pair_column,
    whose best_model/ was trained on pairs of column `trained_on` (None: single texts); without
    `record`, its ablate.json is from before ablate recorded the column."""
    files = {"pairs": tiny_experiment(folder, model_dir, data, name="study", variants="")}
    text = files["pairs"].read_text()
    files["pairs"].write_text(text.replace("[data]\n", f'[data]\ntext_pair_column = "{PAIR}"\n'))
    files["single"] = folder / "single.toml"
    files["single"].write_text(text)
    best = shutil.copytree(model_dir, folder / "reports" / "study" / "best_model")
    info = {"trial": "baseline-s42", "max_length": 32}
    (best / "ablate.json").write_text(json.dumps(info | ({"text_pair_column": trained_on}
                                                         if record else {})))
    return files


def _evaluate(capsys: pytest.CaptureFixture, *arguments: str) -> tuple[dict, str]:
    """The metrics `ablate evaluate ... --json` prints, and its standard error."""
    capsys.readouterr()
    assert cli.main(["evaluate", *arguments, "--json"]) == 0
    out, err = capsys.readouterr()
    return json.loads(out)["metrics"], err


def test_a_single_text_model_is_not_fed_the_pair_column_its_study_file_names(
        tmp_path, model_dir, data_dirs, capsys):
    """The study file gained [data] text_pair_column after its best model was trained on single
    texts: evaluate fed the second texts to the model anyway, silently. The model's ablate.json
    now decides: it is scored on the texts alone (as the file without the key scores it), with a
    note naming the key that is not read."""
    files = _studies(tmp_path, model_dir, data_dirs["pairs"], trained_on=None)
    best = tmp_path / "reports" / "study" / "best_model"
    note = (f"note: [data] text_pair_column = {PAIR!r} of {files['pairs']} is not read: the model "
            "was trained on single texts (its ablate.json), so it is scored on column 'text' alone\n")
    # The study's own test split, and a --dataset file.
    for data in ((), ("--dataset", str(data_dirs["pairs"] / "test.csv"))):
        reference, quiet = _evaluate(capsys, str(files["single"]), *data)
        metrics, err = _evaluate(capsys, str(files["pairs"]), *data)
        assert quiet == "" and err == note
        assert metrics == reference
    # The same through a --set, which the note names instead of the file.
    reference, _ = _evaluate(capsys, str(files["single"]))
    metrics, err = _evaluate(capsys, str(files["single"]), "--set", f"data.text_pair_column={PAIR}")
    assert metrics == reference
    assert err == (f"note: --set 'data.text_pair_column={PAIR}' is not read: the model was trained "
                   "on single texts (its ablate.json), so it is scored on column 'text' alone\n")
    # The model folder itself, on the same file: the texts alone, without a note.
    reference, _ = _evaluate(capsys, str(files["single"]), "--dataset",
                             str(data_dirs["pairs"] / "test.csv"))
    alone, err = _evaluate(capsys, str(best), "--dataset", str(data_dirs["pairs"] / "test.csv"))
    assert err == "" and alone == reference


def test_a_study_stored_with_its_files_pair_column_does_not_refuse_the_models_reading(
        tmp_path, model_dir, data_dirs, capsys):
    """The storage holds the study as the file now runs it (on pairs), best_model/ a model of its
    earlier single-text version (a run that kept no model left it): the rows read as the model
    was trained cannot match the stored fingerprint of the pairs, so they are not compared with
    it (which refused, naming the file as saying what the model says); the note says what is read."""
    from ablation.config import load_spec
    from ablation.data import load_study_splits
    from ablation.queue import open_study
    from ablation.sweep import DATA_FINGERPRINT, study_identity

    files = _studies(tmp_path, model_dir, data_dirs["pairs"], trained_on=None)
    reference, _ = _evaluate(capsys, str(files["single"]))
    spec = load_spec(files["pairs"])
    study = open_study(spec)
    study.set_user_attr("data", study_identity(spec)["data"])
    study.set_user_attr(DATA_FINGERPRINT, load_study_splits(spec).fingerprint())
    metrics, err = _evaluate(capsys, str(files["pairs"]))
    assert metrics == reference
    assert err.startswith(f"note: [data] text_pair_column = {PAIR!r} of ") and err.count("\n") == 1


def test_a_pair_model_reads_its_pair_column_where_its_study_file_names_none(
        tmp_path, model_dir, data_dirs, capsys):
    """The reverse: the file lost text_pair_column after its best model was trained on pairs.
    The model was scored on its first texts alone, silently; it now reads the column it was
    trained with (as the file that names it does), with a note."""
    files = _studies(tmp_path, model_dir, data_dirs["pairs"], trained_on=PAIR)
    note = (f"note: the model was trained on text pairs whose second text is column {PAIR!r} (its "
            f"ablate.json), which [data] of {files['single']} does not name: that column is read\n")
    for data in ((), ("--dataset", str(data_dirs["pairs"] / "test.csv"))):
        reference, quiet = _evaluate(capsys, str(files["pairs"]), *data)
        metrics, err = _evaluate(capsys, str(files["single"]), *data)
        assert quiet == "" and err == note
        assert metrics == reference


def test_a_pair_model_on_data_without_its_pair_column_is_refused_in_one_line(
        tmp_path, model_dir, data_dirs, capsys):
    """Its first texts alone are not what it was trained on: evaluating them would score another
    task. Refused (exit 2) naming the model's column, the data's columns and what to give."""
    files = _studies(tmp_path, model_dir, data_dirs["single"], trained_on=PAIR)
    capsys.readouterr()
    assert cli.main(["evaluate", str(files["single"])]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"ablate: error: the model was trained on text pairs whose second text is column {PAIR!r} "
        f"(its ablate.json), which [data] of {files['single']} does not name: split 'train' of "
        f"{data_dirs['single']} has no such column (columns: 'text', 'label'); evaluate it on data "
        f"with a {PAIR!r} column (--dataset)\n")
    assert cli.main(["evaluate", str(files["single"]), "--dataset",
                     str(data_dirs["single"] / "test.csv")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"ablate: error: text_pair_column (the model was trained on text pairs; "
                          f"--text-pair-column names another) = {PAIR!r}: split 'test' of ") \
        and err.count("\n") == 1, err


def test_an_ablate_json_from_before_the_pair_column_was_recorded_reads_the_study_file(
        tmp_path, model_dir, data_dirs, capsys):
    """Such a model's file is its only record: it is read as it was, without a note."""
    files = _studies(tmp_path, model_dir, data_dirs["pairs"], trained_on=None, record=False)
    for name in files:
        _, err = _evaluate(capsys, str(files[name]))
        assert err == ""
    best = tmp_path / "reports" / "study" / "best_model"
    capsys.readouterr()
    assert cli.main(["predict", str(files["pairs"]), "great fun"]) == 2
    assert "was trained on text pairs ([data] text_pair_column = 'text2')" in capsys.readouterr().err
    assert cli.main(["predict", str(best), "great fun"]) == 0


def test_checkpoints_are_scored_on_what_their_trial_was_trained_on(tmp_path, model_dir, data_dirs,
                                                                   capsys):
    """--checkpoints read the study file's pair column too: the trial's model (its ablate.json)
    now decides, as for the model itself."""
    files = _studies(tmp_path, model_dir, data_dirs["pairs"], trained_on=None)
    trial = tmp_path / "reports" / "study" / "trials" / "baseline-s42"
    shutil.copytree(model_dir, trial / "checkpoints" / "checkpoint-5")
    shutil.copytree(tmp_path / "reports" / "study" / "best_model", trial / "model")
    results = {}
    for name in ("single", "pairs"):
        capsys.readouterr()
        assert cli.main(["evaluate", str(files[name]), "--checkpoints", "baseline-s42",
                         "--json"]) == 0
        out, err = capsys.readouterr()
        results[name] = (json.loads(out)["checkpoints"], err)
    assert results["pairs"][0] == results["single"][0]
    assert results["single"][1] == ""
    assert results["pairs"][1].startswith(f"note: [data] text_pair_column = {PAIR!r} of ")
    assert results["pairs"][1].count("\n") == 1


def test_a_pair_model_reads_a_dataset_whose_columns_have_other_names(
        tmp_path, model_dir, data_dirs, capsys):
    """GLUE-style data names its texts sentence1/sentence2: --text-column named the first, but
    nothing named the second, so a pair model could not be evaluated on it without rewriting the
    file. --text-pair-column names it; the scores are the ones of the same rows under the model's
    own column names."""
    files = _studies(tmp_path, model_dir, data_dirs["pairs"], trained_on=PAIR)
    renamed = tmp_path / "dev.csv"
    pd.read_csv(data_dirs["pairs"] / "test.csv").rename(
        columns={"text": "sentence1", PAIR: "sentence2", "label": "gold"}).to_csv(renamed, index=False)
    reference, _ = _evaluate(capsys, str(files["pairs"]), "--dataset",
                             str(data_dirs["pairs"] / "test.csv"))
    metrics, err = _evaluate(capsys, str(files["pairs"]), "--dataset", str(renamed),
                             "--text-column", "sentence1", "--text-pair-column", "sentence2",
                             "--label-column", "gold")
    assert err == "" and metrics == reference
    best = tmp_path / "reports" / "study" / "best_model"
    alone, _ = _evaluate(capsys, str(best), "--dataset", str(renamed), "--text-column",
                         "sentence1", "--text-pair-column", "sentence2", "--label-column", "gold")
    assert alone == reference


def test_a_model_folder_alone_reads_the_columns_it_was_trained_on(tmp_path, model_dir, data_dirs,
                                                                   capsys):
    """A study trained on columns premise/gold (and a pair column): its best_model/ given alone
    read --dataset's `text` and `label` columns, so each of them had to be named again with
    options; its ablate.json records them, and a column missing from the data is said to be the
    model's."""
    files = _studies(tmp_path, model_dir, data_dirs["pairs"], trained_on=PAIR)
    reference, _ = _evaluate(capsys, str(files["pairs"]), "--dataset",
                             str(data_dirs["pairs"] / "test.csv"))
    best = tmp_path / "reports" / "study" / "best_model"
    info = json.loads((best / "ablate.json").read_text())
    (best / "ablate.json").write_text(json.dumps(info | {"text_column": "premise",
                                                         "label_column": "gold"}))
    renamed = tmp_path / "dev.csv"
    pd.read_csv(data_dirs["pairs"] / "test.csv").rename(
        columns={"text": "premise", "label": "gold"}).to_csv(renamed, index=False)
    metrics, err = _evaluate(capsys, str(best), "--dataset", str(renamed))
    assert err == "" and metrics == reference
    capsys.readouterr()
    assert cli.main(["evaluate", str(best), "--dataset", str(data_dirs["pairs"] / "test.csv")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ablate: error: text column 'premise' (the model's, in its ablate.json; "
                          "--text-column names another): split ") and err.count("\n") == 1, err


@pytest.mark.parametrize(("trained_on", "options", "said"), [
    (PAIR, ["--text-pair-column", "nope"], "--text-pair-column 'nope': split"),
    (PAIR, ["--text-pair-column", "text"], "must be different columns"),
    (None, ["--text-pair-column", PAIR], "single texts"),
])
def test_a_text_pair_column_that_cannot_be_read_is_one_error_line(
        tmp_path, model_dir, data_dirs, capsys, trained_on, options, said):
    files = _studies(tmp_path, model_dir, data_dirs["pairs"], trained_on=trained_on)
    capsys.readouterr()
    code = cli.main(["evaluate", str(files["pairs"]), "--dataset",
                     str(data_dirs["pairs"] / "test.csv"), *options])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and said in err, err


def test_text_pair_column_without_a_dataset_is_refused(tmp_path, model_dir, data_dirs, capsys):
    files = _studies(tmp_path, model_dir, data_dirs["pairs"], trained_on=PAIR)
    capsys.readouterr()
    assert cli.main(["evaluate", str(files["pairs"]), "--text-pair-column", PAIR]) == 2
    assert "--text-pair-column describes --dataset" in capsys.readouterr().err


def test_a_model_folder_ablate_did_not_write_is_scored_on_pairs_it_is_given(
        tmp_path, model_dir, data_dirs, capsys):
    """A cross-encoder saved by transformers (no ablate.json) was read on single texts only, its
    first texts alone: no option made it read a second text. --text-pair-column now does, and it
    scores as the same model recorded as trained on that column."""
    files = _studies(tmp_path, model_dir, data_dirs["pairs"], trained_on=PAIR)
    data = ("--dataset", str(data_dirs["pairs"] / "test.csv"))
    reference, _ = _evaluate(capsys, str(tmp_path / "reports" / "study" / "best_model"), *data)
    alone, _ = _evaluate(capsys, str(model_dir), *data)
    metrics, err = _evaluate(capsys, str(model_dir), *data, "--text-pair-column", PAIR)
    assert metrics == reference and metrics != alone
    assert "ablate.json" not in err
    assert files  # the study only made the recorded model to compare with


@pytest.mark.parametrize("option", ["--text-column", "--label-column"])
def test_a_pair_models_second_text_column_given_as_another_column_is_refused(
        tmp_path, model_dir, data_dirs, capsys, option):
    """--text-column naming the column the pair model reads its second text from scored each
    text paired with itself, silently (a study file that says so is refused); --label-column
    naming it read the second texts as labels. Both are one error line naming the option."""
    files = _studies(tmp_path, model_dir, data_dirs["pairs"], trained_on=PAIR)
    capsys.readouterr()
    code = cli.main(["evaluate", str(files["pairs"]), "--dataset",
                     str(data_dirs["pairs"] / "test.csv"), option, PAIR])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert f"{option} {PAIR!r}" in err and "--text-pair-column" in err
    assert "must be different columns" in err


def test_a_kept_checkpoint_given_as_the_model_reads_pairs_as_its_trial_did(tmp_path, model_dir,
                                                                           data_dirs, capsys):
    """A kept checkpoint (trials/<trial>/checkpoints/checkpoint-N) has no ablate.json: given to
    predict or evaluate as the model, a pair-trained trial's checkpoint was read as a model of
    single texts: `predict CHECKPOINT "text"` labelled the first text alone, silently, and evaluate
    scored it without its second text. Its trial's model's ablate.json says how it reads, as for
    --checkpoints."""
    _studies(tmp_path, model_dir, data_dirs["pairs"], trained_on=PAIR)
    trial = tmp_path / "reports" / "study" / "trials" / "baseline-s42"
    checkpoint = shutil.copytree(model_dir, trial / "checkpoints" / "checkpoint-5")
    for kept in ("best_model", "model"):  # save_models = "all" keeps both; by hand, either
        if kept == "model":
            shutil.move(tmp_path / "reports" / "study" / "best_model", trial / "model")
        capsys.readouterr()
        assert cli.main(["predict", str(checkpoint), "great fun"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "was trained on text pairs" in err, err
        assert cli.main(["predict", str(checkpoint), "great fun", "--pair", "sad"]) == 0
        data = str(data_dirs["pairs"] / "test.csv")
        as_pairs, _ = _evaluate(capsys, str(checkpoint), "--dataset", data)
        given, _ = _evaluate(capsys, str(checkpoint), "--dataset", data, "--text-pair-column", PAIR)
        assert as_pairs == given
