"""ablation.data: loading local files, labels, cleaning, carving and subsampling splits, the content
fingerprint, and tokenization with its on-disk cache. Everything runs on small frames written to
tmp_path and the tiny tokenizer from conftest: no network, no training."""

from __future__ import annotations

import dataclasses
import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import make_texts, one_error_line, use_offline_cache

from ablation.config import DataSpec
from ablation.data import LabeledSplits, TokenizedData, load_labeled_splits, load_raw_splits, tokenize
from ablation.errors import AblateInputError

NAMES = ["neg", "neu", "pos"]  # make_texts labels 0, 1, 2 in this order


# --------------------------------------------------------------------------- helpers


def labelled(n: int, seed: int, names: list[str] | None = None) -> pd.DataFrame:
    """make_texts with a unique text per row (so rows can be traced), labels as ids or names."""
    frame = make_texts(n, seed)
    frame["text"] = [f"{text} row{seed}x{i}" for i, text in enumerate(frame["text"])]
    if names is not None:
        frame["label"] = [names[i] for i in frame["label"]]
    return frame


def write_folder(folder: Path, **splits: pd.DataFrame) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, frame in splits.items():
        frame.to_csv(folder / f"{name}.csv", index=False)
    return folder


def spec(path: Path, **kwargs) -> DataSpec:
    return DataSpec(dataset=str(path), **kwargs)


def load_error(data: DataSpec) -> str:
    """The one-line message of the AblateInputError that loading `data` raises."""
    return one_error_line(load_labeled_splits, data)


def assert_stratified(sample: pd.DataFrame, source: pd.DataFrame) -> None:
    """Every class holds its share of the sample to within one row."""
    expected = source["label"].value_counts() * len(sample) / len(source)
    got = sample["label"].value_counts().reindex(expected.index, fill_value=0)
    assert (got - expected).abs().max() <= 1, (got.to_dict(), expected.to_dict())


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """train.csv (200 rows) and test.csv (50 rows), integer labels 0..2."""
    return write_folder(tmp_path / "data", train=labelled(200, 1), test=labelled(50, 2))


# --------------------------------------------------------------------------- splits from a folder


def test_folder_loads_train_and_test_and_carves_validation(data_dir: Path):
    splits = load_labeled_splits(spec(data_dir))
    assert list(splits.train.columns) == ["text", "label"]
    assert len(splits.test) == 50
    assert len(splits.validation) == round(200 * 0.1)
    assert len(splits.train) + len(splits.validation) == 200
    assert set(splits.train["text"]).isdisjoint(splits.validation["text"])
    assert splits.label_names == ["0", "1", "2"]
    assert any("validation carved from 'train'" in note for note in splits.notes)
    assert not any("no test split" in note for note in splits.notes)


@pytest.mark.parametrize("size", [0.1, 0.25])
def test_carved_validation_has_the_asked_size_and_is_stratified(data_dir: Path, size: float):
    splits = load_labeled_splits(spec(data_dir, validation_size=size))
    assert len(splits.validation) == round(200 * size)
    assert_stratified(splits.validation, pd.read_csv(data_dir / "train.csv"))


def test_carved_validation_is_deterministic(data_dir: Path):
    first = load_labeled_splits(spec(data_dir))
    second = load_labeled_splits(spec(data_dir))
    pd.testing.assert_frame_equal(first.train, second.train)
    pd.testing.assert_frame_equal(first.validation, second.validation)


def test_a_validation_file_left_unused_is_named_in_a_note(data_dir: Path):
    labelled(30, 3).to_csv(data_dir / "validation.csv", index=False)
    splits = load_labeled_splits(spec(data_dir))
    assert len(splits.validation) == 20  # carved from train, as before
    assert ("split 'validation' is not used: validation is carved from 'train' "
            "(set [data] validation_split = 'validation' to use it)") in splits.notes


def test_named_validation_file_is_used_as_is(data_dir: Path):
    validation = labelled(30, 3)
    validation.to_csv(data_dir / "validation.csv", index=False)
    splits = load_labeled_splits(spec(data_dir, validation_split="validation"))
    assert len(splits.train) == 200
    assert splits.validation["text"].tolist() == validation["text"].tolist()
    assert splits.validation["label"].tolist() == validation["label"].tolist()
    assert not any("carved" in note for note in splits.notes)


def test_missing_default_test_split_is_left_out_with_a_note(tmp_path: Path):
    folder = write_folder(tmp_path / "data", train=labelled(60, 1))
    splits = load_labeled_splits(spec(folder))
    assert splits.test is None
    assert [name for name, _ in splits.split_items()] == ["train", "validation"]
    assert "no test split: test metrics are left out (test_size carves one)" in splits.notes


def test_a_test_file_named_in_another_case_is_named_in_a_note(tmp_path: Path):
    # Test.csv beside train.csv (as saved on Windows) was left out under "no test split" alone.
    folder = write_folder(tmp_path / "data", train=labelled(40, 1), Test=labelled(10, 2))
    splits = load_labeled_splits(spec(folder))
    assert splits.test is None
    assert ("split 'Test' is not used: the test split is the one named 'test' (set [data] "
            "test_split = 'Test' to use it)") in splits.notes
    assert len(load_labeled_splits(spec(folder, test_split="Test")).test) == 10


def test_test_size_carves_a_stratified_test_split_before_validation(tmp_path: Path):
    folder = write_folder(tmp_path / "data", train=labelled(100, 1))
    splits = load_labeled_splits(spec(folder, test_size=0.2))
    assert (len(splits.test), len(splits.validation), len(splits.train)) == (20, 8, 72)
    assert "test carved from 'train': 20 rows (0.2, stratified)" in splits.notes
    texts = [set(frame["text"]) for frame in (splits.train, splits.validation, splits.test)]
    assert not (texts[0] & texts[2] or texts[1] & texts[2]), "test rows are never trained or selected on"
    shares = splits.test["label"].value_counts(normalize=True).round(1).to_dict()
    assert shares == labelled(100, 1)["label"].value_counts(normalize=True).round(1).to_dict()


def test_empty_test_split_means_none_without_a_note(data_dir: Path):
    splits = load_labeled_splits(spec(data_dir, test_split=""))
    assert splits.test is None
    assert not any("no test split" in note for note in splits.notes)


def test_test_split_without_labels_is_left_out_with_a_note(tmp_path: Path):
    """GLUE-style data ships its test split with every label -1 (withheld)."""
    hidden = labelled(50, 2).assign(label=-1)
    folder = write_folder(tmp_path / "data", train=labelled(100, 1), test=hidden)
    splits = load_labeled_splits(spec(folder))
    assert splits.test is None and len(splits.train) + len(splits.validation) == 100
    assert ("split 'test' has no labels (every label is -1): test metrics are left out "
            "(test_size carves a test set from train)") in splits.notes
    carved = load_labeled_splits(spec(folder, test_size=0.2))
    assert len(carved.test) == 20 and set(carved.test["text"]) <= set(labelled(100, 1)["text"])
    # test_size is what carved it: no note calls it unused (it is, beside a labelled test split)
    assert not any("test_size = 0.2 is not used" in note for note in carved.notes), carved.notes
    labelled(50, 2).to_csv(folder / "test.csv", index=False)
    assert ("[data] test_size = 0.2 is not used: the data has split 'test', the test split "
            '(test_split = "" carves one instead)') in load_labeled_splits(spec(folder, test_size=0.2)).notes


def test_test_split_without_a_label_column_says_to_leave_it_out(tmp_path: Path):
    """Kaggle's layout: train.csv with labels, test.csv with id and text only. label_column is
    right (train has it): the advice is test_split, not the column."""
    test = labelled(20, 2).drop(columns="label").rename_axis("id").reset_index()
    folder = write_folder(tmp_path / "data", train=labelled(100, 1), test=test)
    assert load_error(spec(folder)) == (
        f"[data] of {folder}: test_split = 'test': split 'test' has no column 'label' (columns: "
        "'id', 'text'), so no labels to score; set test_split = \"\" for none (test_size carves a "
        "test set from train)")
    assert load_labeled_splits(spec(folder, test_split="")).test is None
    assert len(load_labeled_splits(spec(folder, test_split="", test_size=0.2)).test) == 20


@pytest.mark.parametrize("key", ["train_split", "validation_split"])
def test_train_or_validation_split_without_labels_is_an_error(tmp_path: Path, key: str):
    hidden = labelled(50, 2).assign(label=-1)
    folder = write_folder(tmp_path / "data", train=labelled(100, 1), hidden=hidden)
    message = load_error(spec(folder, **{key: "hidden"}))
    assert "split 'hidden' has no labels (every label in column 'label' is -1" in message
    assert f"set {key} to a labelled split" in message
    assert ("leave validation_split out" in message) == (key == "validation_split")


def test_missing_named_test_split_is_an_error_naming_the_splits(data_dir: Path):
    message = load_error(spec(data_dir, test_split="heldout"))
    assert "test_split = 'heldout' does not exist" in message
    assert "splits: test, train" in message


def test_missing_train_split_is_an_error(tmp_path: Path):
    folder = write_folder(tmp_path / "data", training=labelled(60, 1))
    message = load_error(spec(folder))
    assert "train_split = 'train' does not exist" in message
    assert "splits: training" in message


def test_a_folder_without_a_train_file_says_its_files_are_its_splits(tmp_path: Path):
    """data.csv alone in a folder: its split is 'data', named after the file."""
    folder = write_folder(tmp_path / "data", data=labelled(60, 1))
    message = load_error(spec(folder))
    assert ("(splits: data; a folder's files are its splits, named after the files: set "
            "train_split = 'data', or name the file train.csv)") in message


def test_missing_validation_split_is_an_error(data_dir: Path):
    message = load_error(spec(data_dir, validation_split="dev"))
    assert "validation_split = 'dev' does not exist" in message
    assert "splits: test, train" in message
    assert "omit it" in message


# --------------------------------------------------------------------------- a single file


def _write_csv_gz(frame: pd.DataFrame, path: Path) -> None:
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        frame.to_csv(handle, index=False)


WRITERS = {
    "csv": lambda frame, path: frame.to_csv(path, index=False),
    "tsv": lambda frame, path: frame.to_csv(path, sep="\t", index=False),
    "jsonl": lambda frame, path: frame.to_json(path, orient="records", lines=True),
    "json": lambda frame, path: frame.to_json(path, orient="records"),
    "parquet": lambda frame, path: frame.to_parquet(path, index=False),
    "csv.gz": _write_csv_gz,
}


@pytest.mark.parametrize("suffix", sorted(WRITERS))
def test_single_file_is_the_train_split(tmp_path: Path, suffix: str):
    frame = labelled(80, 1, names=NAMES)
    path = tmp_path / f"reviews.{suffix}"
    WRITERS[suffix](frame, path)
    raw, class_names = load_raw_splits(spec(path))
    assert list(raw) == ["train"] and class_names == {}
    splits = load_labeled_splits(spec(path))
    assert splits.test is None
    assert splits.label_names == NAMES
    assert sorted([*splits.train["text"], *splits.validation["text"]]) == sorted(frame["text"])


def test_single_file_with_an_unsupported_type_is_an_error(tmp_path: Path):
    path = tmp_path / "reviews.txt"
    path.write_text("text,label\ngood,1\n", encoding="utf-8")
    message = load_error(spec(path))
    assert "reviews.txt" in message and "unsupported file type" in message
    assert ".csv" in message and ".parquet" in message


def test_single_file_train_split_name_follows_the_spec(tmp_path: Path):
    path = tmp_path / "reviews.csv"
    labelled(40, 1).to_csv(path, index=False)
    raw, _ = load_raw_splits(spec(path, train_split="all"))
    assert list(raw) == ["all"]


# --------------------------------------------------------------------------- labels


def test_string_labels_map_to_sorted_names(tmp_path: Path):
    frame = labelled(90, 1, names=["pos", "neu", "neg"])  # ids 0..2 become unsorted names
    folder = write_folder(tmp_path / "data", train=frame)
    splits = load_labeled_splits(spec(folder))
    assert splits.label_names == ["neg", "neu", "pos"]
    truth = dict(zip(frame["text"], frame["label"], strict=True))
    for part in (splits.train, splits.validation):
        assert part["label"].dtype.kind == "i"
        assert all(splits.label_names[label] == truth[text]
                   for text, label in zip(part["text"], part["label"], strict=True))


@pytest.mark.parametrize(("train_as", "test_as"), [
    ("jsonl", "csv"), ("csv", "jsonl"), ("parquet", "jsonl"), ("jsonl", "jsonl")])
def test_true_false_labels_are_the_classes_false_and_true_in_every_format(
        tmp_path: Path, train_as: str, test_as: str):
    """A yes/no label saved as booleans is the same two classes, False and True, whether its file
    writes them as words (CSV: 'True') or as booleans (JSON, parquet): a folder may mix the two."""
    folder = tmp_path / "data"
    folder.mkdir()
    for split, (frame, kind) in {"train": (labelled(60, 1), train_as),
                                 "test": (labelled(20, 2), test_as)}.items():
        frame["label"] = frame["label"] == 2
        path = folder / f"{split}.{kind}"
        if kind == "csv":
            frame.to_csv(path, index=False)
        elif kind == "jsonl":
            frame.to_json(path, orient="records", lines=True)
        else:
            frame.to_parquet(path)
    splits = load_labeled_splits(spec(folder))
    assert splits.label_names == ["False", "True"]
    truth = dict(zip(labelled(20, 2)["text"], labelled(20, 2)["label"] == 2, strict=True))
    assert [splits.label_names[label] for label in splits.test["label"]] == [
        str(truth[text]) for text in splits.test["text"]]


@pytest.mark.parametrize(("label_names", "known"), [
    (None, "the train labels (neg, neu, pos)"),
    (["neg", "neu", "pos"], "[data] label_names (neg, neu, pos)")])
def test_a_test_label_in_another_case_than_trains_names_the_train_label(
        tmp_path: Path, label_names, known: str):
    """'Pos' in test.csv, 'pos' in train.csv: one class written two ways, most likely; the
    refusal names the train label it may be, as evaluate does for the model's labels."""
    test = labelled(20, 2, names=NAMES)
    test.loc[4, "label"] = "Pos"
    folder = write_folder(tmp_path / "data", train=labelled(60, 1, names=NAMES), test=test)
    message = load_error(spec(folder, label_names=label_names))
    assert f"split 'test', row 4: label 'Pos' is not one of {known}; did you mean 'pos'?" in message


@pytest.mark.parametrize("split", ["train", "test"])
def test_a_label_holding_a_line_break_or_tab_is_refused_with_its_row(tmp_path: Path, split: str):
    """A quoted CSV cell over two lines made a class 'pos\nitive', which broke the rows of the
    report's and the terminal's tables (and predict's, and evaluate's); an escape in one reached
    the terminal. Refused, naming the split and row; spaces around a label are still stripped."""
    frames = {"train": labelled(60, 1, names=NAMES), "test": labelled(20, 2, names=NAMES)}
    frames[split].loc[5, "label"] = "pos\nitive"
    frames[split].loc[6, "label"] = " neg\t"  # around it: stripped, as before
    folder = write_folder(tmp_path / "data", **frames)
    message = load_error(spec(folder))
    assert message.count("\n") == 0, message
    assert (f"split {split!r}, row 5: label 'pos\\nitive' holds a control character (a line "
            "break, tab or escape inside it)") in message


def test_class_names_holding_a_comma_are_quoted_where_they_are_listed(tmp_path: Path):
    """The train labels listed bare, 'bad, sad' beside 'good', read as three classes to the eye;
    where a name holds a comma every listed name is quoted (refusals, and validate's line)."""
    names = ["bad, sad", "fine", "good"]
    test = labelled(20, 2, names=names)
    test.loc[3, "label"] = "angry"
    folder = write_folder(tmp_path / "data", train=labelled(60, 1, names=names), test=test)
    message = load_error(spec(folder))
    assert "label 'angry' is not one of the train labels ('bad, sad', 'fine', 'good')" in message
    splits = load_labeled_splits(spec(write_folder(tmp_path / "ok", train=labelled(60, 1, names=names))))
    assert "labels 'bad, sad', 'fine', 'good'" in splits.summary()


@pytest.mark.parametrize("split", ["validation", "test"])
def test_string_label_unseen_in_train_is_an_error(tmp_path: Path, split: str):
    other = labelled(20, 2, names=NAMES)
    other.loc[3, "label"] = "angry"
    folder = write_folder(tmp_path / "data", train=labelled(60, 1, names=NAMES), **{split: other})
    data = spec(folder, validation_split="validation" if split == "validation" else None)
    message = load_error(data)
    assert f"split {split!r}, row 3" in message
    assert "'angry'" in message and "neg, neu, pos" in message
    assert "fix the row, or name every class in [data] label_names" in message


@pytest.mark.parametrize("names", [None, NAMES])  # integer ids, class names
def test_a_test_label_train_lacks_is_kept_when_label_names_names_it(tmp_path: Path, names):
    # README: label_names may name a class with no training row; the refusal says so
    train = labelled(60, 1, names)
    train = train[train["label"] != (names[2] if names else 2)]
    folder = write_folder(tmp_path / "data", train=train, test=labelled(30, 2, names))
    message = load_error(spec(folder))
    assert "is not one of the train labels" in message
    assert ("; fix the row, or name every class in [data] label_names (a class with no training "
            "row is kept, though the model cannot learn it)") in message
    splits = load_labeled_splits(spec(folder, label_names=NAMES))
    assert splits.label_names == NAMES
    assert any(note.startswith("class 'pos' has no training row") for note in splits.notes)


def test_int_labels_take_the_given_label_names(data_dir: Path):
    names = ["negative", "neutral", "positive"]
    splits = load_labeled_splits(spec(data_dir, label_names=names))
    assert splits.label_names == names
    original = pd.read_csv(data_dir / "test.csv")
    assert splits.test["label"].tolist() == original["label"].tolist()


def test_label_names_set_the_order_of_string_labels(tmp_path: Path):
    # README: string labels take label_names' order (ids, outputs, report), not sorted order;
    # every label must be one of them, case and all, after its spaces are stripped
    frame = labelled(60, 1, names=["pos", "neu ", "neg"])
    folder = write_folder(tmp_path / "data", train=frame)
    splits = load_labeled_splits(spec(folder, label_names=["pos", "neu", "neg"]))
    assert splits.label_names == ["pos", "neu", "neg"]
    truth = dict(zip(frame["text"], frame["label"].str.strip(), strict=True))
    assert all(splits.label_names[label] == truth[text]
               for text, label in zip(splits.train["text"], splits.train["label"], strict=True))
    assert (splits.train["label"][splits.train["text"].map(truth) == "pos"] == 0).all()
    message = load_error(spec(folder, label_names=["Pos", "neu", "neg"]))
    assert "label 'pos' is not one of [data] label_names (Pos, neu, neg)" in message


def test_int_label_beyond_label_names_is_an_error(tmp_path: Path):
    frame = labelled(40, 1)
    folder = write_folder(tmp_path / "data", train=frame)
    first_two = int((frame["label"] == 2).to_numpy().nonzero()[0][0])
    message = load_error(spec(folder, label_names=["neg", "pos"]))
    assert f"split 'train', row {first_two}" in message
    assert "label 2 is outside the 2 classes (neg, pos)" in message
    assert "set [data] label_names to name every id 0..2: it names only 2 classes (ids 0..1) and " \
        "the data has id 2" in message


def test_label_names_of_a_single_name_say_it_names_only_one_class(tmp_path: Path):
    frame = pd.DataFrame({"text": [f"t {i}" for i in range(20)], "label": [i % 2 for i in range(20)]})
    message = load_error(spec(write_folder(tmp_path / "data", train=frame), label_names=["a"]))
    assert "split 'train', row 1: label 1 is outside the 1 class (a)" in message
    assert "it names only 1 class (id 0) and the data has id 1" in message


@pytest.mark.parametrize("bad", [-1, 1.5])
def test_negative_or_fractional_label_is_an_error(tmp_path: Path, bad: float):
    frame = labelled(30, 1)
    frame["label"] = frame["label"].astype(object)
    frame.loc[7, "label"] = bad
    folder = write_folder(tmp_path / "data", train=frame)
    message = load_error(spec(folder))
    assert "split 'train', row 7" in message and str(bad) in message
    assert "integer class id" in message
    assert "np." not in message  # the cell as written, not a numpy repr


@pytest.mark.parametrize("plus", ["+1", "1"])
def test_labels_minus_one_and_plus_one_name_minus_one_as_the_bad_id(tmp_path: Path, plus: str):
    path = tmp_path / "train.csv"
    path.write_text("text,label\n" + "".join(f"t {i},{plus if i % 2 else '-1'}\n" for i in range(20)))
    message = load_error(spec(path))
    assert "split 'train', row 0: label -1 in column 'label'" in message
    assert "class ids are 0..N-1 for N classes and -1 is not one" in message
    assert "renumber them, e.g. -1, 1 as 0, 1, or use class names" in message
    assert "'+1'" not in message


def test_word_in_an_int_label_column_is_an_error(tmp_path: Path):
    test = labelled(20, 2)
    test["label"] = test["label"].astype(object)
    test.loc[5, "label"] = "x"
    folder = write_folder(tmp_path / "data", train=labelled(60, 1), test=test)
    message = load_error(spec(folder))
    assert "split 'test', row 5" in message and "'x'" in message
    assert "column 'label'" in message and "integer class id" in message


def test_label_text_column_provides_the_names(tmp_path: Path):
    frame = labelled(60, 1)
    frame["label_text"] = frame["label"].map({0: "negative", 1: "neutral", 2: "positive"})
    folder = write_folder(tmp_path / "data", train=frame)  # mteb style
    splits = load_labeled_splits(spec(folder))
    assert splits.label_names == ["negative", "neutral", "positive"]
    assert splits.train["label"].isin([0, 1, 2]).all()


def test_label_names_that_relabel_the_datas_own_names_are_refused(tmp_path: Path):
    """A ClassLabel (the Hub, save_to_disk) or a <label>_text column names the ids: label_names in
    another order would put every per-class score, and every prediction, under another class."""
    import datasets

    frame = labelled(60, 1)
    frame["label_text"] = frame["label"].map(dict(enumerate(NAMES)))
    folder = write_folder(tmp_path / "data", train=frame)  # mteb style
    message = load_error(spec(folder, label_names=["pos", "neu", "neg"]))
    assert message == (f"[data] label_names = ['pos', 'neu', 'neg']: {folder} names its label ids "
                       "itself (its column 'label_text': neg, neu, pos), and label_names calls id 0 "
                       "'pos', which the data calls 'neg'; leave label_names out")
    assert "names 4 classes, the data 3" in load_error(spec(folder, label_names=NAMES + ["x"]))
    assert load_labeled_splits(spec(folder, label_names=NAMES)).label_names == NAMES

    features = datasets.Features({"text": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=NAMES)})
    datasets.Dataset.from_pandas(labelled(30, 1), features=features,
                                 preserve_index=False).save_to_disk(tmp_path / "saved")
    message = load_error(spec(tmp_path / "saved", label_names=["neu", "neg", "pos"]))
    assert "(its ClassLabel: neg, neu, pos), and label_names calls id 0 'neu'" in message


def test_inconsistent_label_text_column_falls_back_to_ids(tmp_path: Path):
    frame = labelled(60, 1)
    frame["label_text"] = frame["label"].map({0: "negative", 1: "neutral", 2: "positive"})
    frame.loc[frame.index[frame["label"] == 0][0], "label_text"] = "bad"  # id 0 gets two names
    folder = write_folder(tmp_path / "data", train=frame)
    assert load_labeled_splits(spec(folder)).label_names == ["0", "1", "2"]


@pytest.mark.parametrize("label", ["pos", 0, 1, 7])
def test_single_class_is_an_error(tmp_path: Path, label):
    frame = labelled(30, 1)
    frame["label"] = label
    folder = write_folder(tmp_path / "data", train=frame)
    message = load_error(spec(folder))
    assert f"single class ({str(label)!r})" in message and "at least two" in message
    assert "renumber" not in message  # a single class, not a gap below it


# --------------------------------------------------------------------------- cleaning


def test_empty_texts_and_missing_labels_are_dropped_and_counted(tmp_path: Path):
    train = labelled(60, 1)
    train["label"] = train["label"].astype(object)
    train.loc[2, "text"] = ""
    train.loc[5, "text"] = "   \t "
    train.loc[9, "text"] = None
    train.loc[11, "label"] = None
    test = labelled(20, 2)
    test.loc[0, "text"] = " "
    folder = write_folder(tmp_path / "data", train=train, test=test)
    splits = load_labeled_splits(spec(folder))
    assert splits.dropped == {"train": 4, "test": 1}
    # the rows are named, counted from 0 as every message counts them, so they can be fixed
    assert ("split 'train': dropped 4 rows with an empty text or missing label (rows 2, 5, 9, 11)"
            in splits.notes)
    assert "split 'test': dropped 1 row with an empty text or missing label (row 0)" in splits.notes
    assert len(splits.train) + len(splits.validation) == 56
    assert len(splits.test) == 19
    kept = pd.concat([splits.train, splits.validation, splits.test])
    assert kept["text"].str.strip().ne("").all() and kept["label"].notna().all()


def test_nothing_dropped_means_zero_counts_and_no_drop_note(data_dir: Path):
    splits = load_labeled_splits(spec(data_dir))
    assert splits.dropped == {"train": 0, "test": 0}
    assert not any("dropped" in note for note in splits.notes)


def test_split_with_only_empty_rows_is_an_error(tmp_path: Path):
    test = labelled(10, 2)
    test["text"] = ""
    folder = write_folder(tmp_path / "data", train=labelled(60, 1), test=test)
    message = load_error(spec(folder))
    assert "split 'test' has no usable rows" in message


def test_a_test_file_whose_label_column_is_empty_says_so_and_how_to_leave_it_out(tmp_path: Path):
    """Kaggle's test.csv with its label column kept, every cell empty: no answers to score."""
    test = labelled(10, 2)
    test["label"] = None
    folder = write_folder(tmp_path / "data", train=labelled(60, 1), test=test)
    message = load_error(spec(folder))
    assert ("split 'test' has no usable rows: every label in column 'label' is empty (10 rows); "
            'set test_split = "" for none') in message


def test_a_label_written_as_a_missing_value_marker_is_named_in_a_note_or_the_refusal(tmp_path: Path):
    """R's write.csv writes a missing label as NA, Excel a failed lookup as #N/A: read as they are,
    a class of their own (or a word among ids), which is said, with what a missing label is."""
    names = labelled(60, 1, NAMES)
    names.loc[[3, 8], "label"] = "NA"
    splits = load_labeled_splits(spec(write_folder(tmp_path / "names", train=names)))
    assert ("label 'NA' (2 rows) is a class of its own: where it marks a missing label, leave "
            "the cell empty (a row without a label is dropped)") in splits.notes
    ids = labelled(60, 1).astype({"label": object})
    ids.loc[5, "label"] = "#N/A"
    message = load_error(spec(write_folder(tmp_path / "ids", train=ids)))
    assert "row 5: label '#N/A'" in message
    assert message.endswith("(a missing label is an empty cell: its row is dropped)")


def test_a_split_of_a_header_alone_says_it_has_no_rows(tmp_path: Path):
    # not "every text is empty or every label missing": it has no text or label at all
    folder = write_folder(tmp_path / "data", train=labelled(60, 1))
    (folder / "test.csv").write_text("text,label\n", encoding="utf-8")
    assert load_error(spec(folder)) == (f"[data] of {folder}: split 'test' has no rows, only its "
                                        "columns ('text', 'label'); give it one row per example")


@pytest.mark.parametrize("key", ["text_column", "label_column", "text_pair_column"])
def test_missing_column_is_an_error_listing_the_columns(data_dir: Path, key: str):
    message = load_error(spec(data_dir, **{key: "sentence"}))
    assert f"{key} = 'sentence'" in message
    assert "has no such column" in message and "columns: 'text', 'label'" in message


@pytest.mark.parametrize("suffix", [".csv", ".tsv"])
def test_a_file_without_a_header_line_is_told_to_get_one(tmp_path: Path, suffix: str):
    """A file exported without its header: its first row is read as the column names."""
    frame = labelled(20, 1)
    path = tmp_path / f"train{suffix}"
    frame.to_csv(path, sep="," if suffix == ".csv" else "\t", index=False, header=False)
    message = load_error(spec(path))
    assert "has no such column" in message
    first = frame["text"].iloc[0]
    assert (f"its first line looks like a row of data, not a header ({first!r}, "
            f"'{frame['label'].iloc[0]}'): give the file a first line naming its columns") in message


def test_a_header_without_numbers_is_not_taken_for_a_row_of_data(data_dir: Path):
    assert "row of data" not in load_error(spec(data_dir, text_column="sentence"))


def test_a_missing_column_is_not_taken_for_a_typo_of_one_another_key_reads(data_dir: Path):
    """'text2' is close to 'text', but 'text' is the text column: suggesting it would pair each
    text with itself."""
    message = load_error(spec(data_dir, text_pair_column="text2"))
    assert "did you mean" not in message, message
    assert "did you mean 'text'?" in load_error(spec(data_dir, text_column="txt"))


def test_text_pair_column_is_carried_as_text_pair(tmp_path: Path):
    frame = pd.DataFrame({
        "premise": [f"premise {i}" for i in range(40)],
        "hypothesis": [f"hypothesis {i}" for i in range(40)],
        "gold": ["entailment", "contradiction"] * 20,
    })
    frame.loc[4, "hypothesis"] = ""
    folder = write_folder(tmp_path / "data", train=frame)
    splits = load_labeled_splits(spec(folder, text_column="premise", text_pair_column="hypothesis",
                                      label_column="gold"))
    assert list(splits.train.columns) == ["text", "text_pair", "label"]
    assert splits.dropped["train"] == 1
    assert splits.label_names == ["contradiction", "entailment"]
    row = splits.train.iloc[0]
    assert row["text"].replace("premise", "hypothesis") == row["text_pair"]


# --------------------------------------------------------------------------- encodings and files


def test_csv_with_a_utf8_bom_reads_its_first_column(tmp_path: Path):
    folder = tmp_path / "data"
    folder.mkdir()
    text = "text,label\n" + "".join(f"café {i},{i % 2}\n" for i in range(20))
    (folder / "train.csv").write_text(text, encoding="utf-8-sig")
    assert (folder / "train.csv").read_bytes().startswith(b"\xef\xbb\xbf")
    raw, _ = load_raw_splits(spec(folder))
    assert list(raw["train"].columns) == ["text", "label"]
    splits = load_labeled_splits(spec(folder))
    assert splits.train["text"].str.startswith("café").all()


def test_latin1_csv_is_an_error_mentioning_utf8(tmp_path: Path):
    folder = tmp_path / "data"
    folder.mkdir()
    text = "text,label\n" + "".join(f"crème brûlée {i},{i % 2}\n" for i in range(20))
    (folder / "train.csv").write_bytes(text.encode("latin-1"))
    message = load_error(spec(folder))
    assert "train.csv" in message and "UTF-8" in message


def test_a_byte_that_is_not_utf8_is_named_by_its_line_in_the_whole_file(tmp_path: Path):
    # pandas reads in chunks and counts its error's byte within the chunk
    rows = "".join(f"a long enough text for row {i},{i % 2}\n" for i in range(20_000))
    data = ("text,label\n" + rows).encode() + "crème,1\n".encode("latin-1")
    (tmp_path / "train.csv").write_bytes(data)
    message = load_error(spec(tmp_path / "train.csv"))
    assert f"line 20002 (byte {len(data) - 6}) cannot be decoded as UTF-8 text" in message


UTF16 = ": it is UTF-16 (Excel's 'Unicode text'); save it as UTF-8"
UTF32 = ": it is UTF-32; save it as UTF-8"  # its byte-order mark starts as UTF-16's: was told so
GBK = ": it looks like GBK/GB18030 (a Chinese Windows encoding); save it as UTF-8"
CHINESE = ["这部电影很好看，上映第一天就去了", "太差了，浪费时间", "演员表演出色，音乐也好听", "剧情一般"]


@pytest.mark.parametrize(("texts", "encoding", "byte_order_mark", "says"), [
    (["great fun", "dull"], "utf-16-le", b"\xff\xfe", UTF16),  # Excel's "Unicode text"
    (["great fun", "dull"], "utf-16-be", b"\xfe\xff", UTF16),
    (["great fun", "dull"], "utf-32-le", b"\xff\xfe\x00\x00", UTF32),
    (["great fun", "dull"], "utf-32-be", b"\x00\x00\xfe\xff", UTF32),
    (CHINESE, "gbk", b"", GBK),
    (CHINESE, "gb18030", b"", GBK),
    # decodable as GBK, an accented letter and the next one a character, yet not Chinese
    (["crème brûlée", "réélu", "Grüße aus Köln"], "latin-1", b"", "; save it as UTF-8"),
    (["이 영화는 정말 재미있어요", "시간 낭비였습니다"], "euc_kr", b"", "; save it as UTF-8"),
    (["この映画はとても面白かった", "時間の無駄でした"], "shift_jis", b"", "; save it as UTF-8"),
    (["この映画はとても面白かった", "時間の無駄でした"], "euc_jp", b"", "; save it as UTF-8"),
], ids=["utf16le", "utf16be", "utf32le", "utf32be", "gbk", "gb18030", "latin1", "euc_kr",
        "shift_jis", "euc_jp"])
def test_a_file_not_in_utf8_names_the_encoding_its_bytes_tell(
        tmp_path: Path, texts: list[str], encoding: str, byte_order_mark: bytes, says: str):
    rows = "text,label\n" + "".join(f"{texts[i % len(texts)]} {i},{i % 2}\n" for i in range(20))
    (tmp_path / "train.csv").write_bytes(byte_order_mark + rows.encode(encoding))
    message = load_error(spec(tmp_path / "train.csv"))
    assert "train.csv: line " in message and f"cannot be decoded as UTF-8 text{says}" in message


@pytest.mark.parametrize(("rows", "encoding", "says"), [
    ("好电影,1\n差评,0\n", "gbk", GBK),  # its bytes decode as EUC-KR and EUC-JP too
    ("这部电影很好看,1\n太差了,0\n", "gb18030", GBK),
    ("최고,1\n별로예요,0\n", "euc_kr", "; save it as UTF-8"),
    ("재미있어요 ㅋㅋ,1\n시간 낭비,0\n", "euc_kr", "; save it as UTF-8"),
    ("最高でした,1\n退屈,0\n", "euc_jp", "; save it as UTF-8"),
], ids=["gbk", "gb18030", "euc_kr", "euc_kr_jamo", "euc_jp"])
def test_a_short_file_not_in_utf8_tells_chinese_from_korean_and_japanese(
        tmp_path: Path, rows: str, encoding: str, says: str):
    """A short Chinese file decodes as EUC-KR (and EUC-JP) too, and got no GBK hint: what those
    readings give (Hangul, kana) tells the languages apart."""
    (tmp_path / "train.csv").write_bytes(("text,label\n" + rows).encode(encoding))
    message = load_error(spec(tmp_path / "train.csv"))
    assert "train.csv: line 2 " in message and f"cannot be decoded as UTF-8 text{says}" in message


def as_windows_reads_it(data: bytes, encoding: str) -> str:
    """UTF-8 bytes as a Windows program reads them in `encoding` (Excel opening a CSV without a
    byte-order mark): bytes cp1252 leaves undefined are the Latin-1 characters of their number,
    and a byte GBK cannot pair is lost."""
    if encoding == "cp1252":
        return "".join(bytes([byte]).decode("cp1252", errors="ignore") or chr(byte) for byte in data)
    return data.decode(encoding, errors="replace")


@pytest.mark.parametrize(("texts", "encoding", "read_back"), [
    (["café crème, naïve", "“smart quotes” – it’s fine", "Grüße aus Köln"], "cp1252",
     "it reads back as 'café crème, naïve 0'"),
    (CHINESE, "gbk", "it reads back as '这部电影很好看，"),  # GBK lost a byte further on
], ids=["windows_1252", "gbk"])
def test_a_utf8_csv_excel_read_in_a_windows_encoding_and_saved_again_is_refused(
        tmp_path: Path, texts: list[str], encoding: str, read_back: str):
    """Excel opens a UTF-8 CSV without a byte-order mark in the Windows encoding ('cafÃ©',
    '杩欓儴'), and its 'CSV UTF-8' saves that as UTF-8: the file decodes, and trained on the
    garbled texts without a word."""
    rows = "text,label\n" + "".join(f'"{texts[i % len(texts)]} {i}",{i % 2}\n' for i in range(30))
    (tmp_path / "clean.csv").write_text(rows, encoding="utf-8")
    assert len(load_labeled_splits(spec(tmp_path / "clean.csv")).train) == 27  # the original reads
    garbled = as_windows_reads_it(rows.encode("utf-8"), encoding)
    (tmp_path / "train.csv").write_bytes(b"\xef\xbb\xbf" + garbled.encode("utf-8"))
    message = load_error(spec(tmp_path / "train.csv"))
    reading = "Windows-1252" if encoding == "cp1252" else "GBK"
    first = pd.read_csv(tmp_path / "train.csv", encoding="utf-8-sig")["text"][0]
    assert f"train.csv: split 'train', row 0: the text '{first[:20]}" in message
    assert f"in column 'text' is UTF-8 read as {reading} ({read_back}" in message
    assert "of the 30 texts with characters past ASCII checked are" in message
    assert "save as 'CSV UTF-8'" in message


def test_a_stray_misread_character_among_clean_texts_is_read_as_it_is(tmp_path: Path):
    """'â€™' in one scraped review of many with accents is the source's: not the file's encoding."""
    frame = labelled(40, 1)
    frame["text"] = [f"{text} café" for text in frame["text"]]
    frame.loc[5, "text"] = "it‘s â€™ fine"
    frame.to_csv(tmp_path / "train.csv", index=False)
    splits = load_labeled_splits(spec(tmp_path / "train.csv"))
    assert "it‘s â€™ fine" in set(splits.train["text"]) | set(splits.validation["text"])


def test_json_lines_under_a_json_name_are_read(tmp_path: Path):
    frame = labelled(30, 1, NAMES)
    frame.to_json(tmp_path / "train.json", orient="records", lines=True)
    splits = load_labeled_splits(spec(tmp_path / "train.json"))
    assert splits.label_names == NAMES and len(splits.train) + len(splits.validation) == 30


@pytest.mark.parametrize("lines, expected", [
    (['{"text": "a", "label": 1}', '{"text": "b",'], "line 2 is not valid JSON"),
    (['{"text": "a", "label": 1}', '', '"b"'], "line 3 is a JSON string, not an object"),
    (['{"text": "a", "label": 1}', '[1, 2]'], "line 2 is a JSON array, not an object"),
    (['{"text": "a", "label": 1}', '5'], "line 2 is a JSON number, not an object"),
    (['{"text": "a", "label": 1}', 'null'], "line 2 is a JSON null, not an object"),
])
@pytest.mark.parametrize("name", ["train.jsonl", "train.json"])
def test_a_bad_json_line_is_named(tmp_path: Path, lines: list[str], expected: str, name: str):
    (tmp_path / name).write_text("\n".join(lines) + "\n")
    assert expected in load_error(spec(tmp_path / name))


@pytest.mark.parametrize("name", ["train.jsonl", "train.json"])
@pytest.mark.parametrize("separator", ["\u2028", "\u2029", "\x85"])
def test_a_bad_json_line_is_named_past_texts_holding_unicode_line_separators(
        tmp_path: Path, name: str, separator: str):
    """Web text and tweets hold U+2028 (and \\x85, U+2029) unescaped, as JSON allows: the search
    for the bad line cut lines there too, and named line 1 of a file whose line 3 is broken
    ('line 1 is not valid JSON (Unterminated string ...)'), or under a .json name did not see
    JSON Lines at all ('Trailing data at position 36')."""
    good = f'{{"text": "first{separator}second", "label": "pos"}}'
    (tmp_path / name).write_text("\n".join([good, good, '{"text": "b",', good]) + "\n", encoding="utf-8")
    message = load_error(spec(tmp_path / name))
    assert f"{name}: line 3 is not valid JSON (Expecting" in message, message


def test_a_csv_whose_rows_all_have_an_unquoted_comma_is_refused(tmp_path: Path):
    (tmp_path / "train.csv").write_text("text,label\nfine, really,pos\nbad, truly,neg\n")
    message = load_error(spec(tmp_path / "train.csv"))
    assert "line 2 has more fields than the header ('text', 'label')" in message


def test_a_csv_saved_by_excel_with_empty_trailing_columns_is_read(tmp_path: Path):
    rows = "".join(f"{text},{label},,\n" for text, label in labelled(30, 1, NAMES).values)
    (tmp_path / "train.csv").write_text("text,label,,\n" + rows)
    splits = load_labeled_splits(spec(tmp_path / "train.csv"))
    assert splits.label_names == NAMES and len(splits.train) + len(splits.validation) == 30


@pytest.mark.parametrize("suffix, separator", [(".csv", ","), (".tsv", "\t"), (".csv", ";")])
@pytest.mark.parametrize("ends", [1, 2])
def test_rows_that_end_with_separators_the_header_lacks_are_read(
        tmp_path: Path, suffix: str, separator: str, ends: int):
    """'good fun,1,' under 'text,label' (an exporter ending every row with a separator): pandas
    took the first fields for an index, and the file was refused as texts with unquoted commas."""
    frame = labelled(30, 1, NAMES)
    frame.to_csv(tmp_path / "plain.csv", index=False)
    rows = "".join(f"{text}{separator}{label}{separator * ends}\r\n" for text, label in frame.values)
    (tmp_path / f"train{suffix}").write_text(f"text{separator}label\r\n" + rows)
    splits = load_labeled_splits(spec(tmp_path / f"train{suffix}"))
    assert splits.fingerprint() == load_labeled_splits(spec(tmp_path / "plain.csv")).fingerprint()


def test_a_row_with_an_unquoted_comma_after_rows_ending_with_one_counts_the_headers_fields(
        tmp_path: Path):
    """pandas counted line 2's 3 fields as the header's, and the refusal said 'the header 3' of a
    header of 2."""
    (tmp_path / "train.csv").write_text("text,label\ngood fun,pos,\nbad, sad,neg,\nok,pos,\n")
    message = load_error(spec(tmp_path / "train.csv"))
    assert "train.csv: line 3 has 4 fields, the header 2: a text that contains a comma" in message


def test_a_row_with_a_value_past_the_header_is_refused_though_the_others_end_empty(tmp_path: Path):
    (tmp_path / "train.csv").write_text("text,label\nfine,pos,\nbad,neg,truly\nok,pos,\n")
    message = load_error(spec(tmp_path / "train.csv"))
    assert "line 2 has more fields than the header ('text', 'label')" in message


@pytest.mark.parametrize("name, body, expected", [
    ("train.csv", "text,label\nfine,pos\nbad, truly,neg\n", "line 3 has 3 fields, the header 2: "
     "a text that contains a comma must be quoted"),
    ("train.tsv", "text\tlabel\nfine\tpos\nok\tfine\tneg\nbad\tneg\n", "line 3 has 3 fields, "
     "the header 2: a text that contains a tab must be quoted"),
])
def test_a_later_row_with_an_unquoted_separator_is_named_by_its_line(tmp_path: Path, name: str,
                                                                    body: str, expected: str):
    (tmp_path / name).write_text(body)
    message = load_error(spec(tmp_path / name))
    assert expected in message and "Error tokenizing" not in message


def test_integral_float_labels_are_class_ids(tmp_path: Path):
    # pandas writes an integer column with a missing value as floats: 1.0, 0.0, 2.0
    frame = labelled(30, 1)
    frame["label"] = frame["label"].astype(float)
    frame.loc[3, "label"] = np.nan
    splits = load_labeled_splits(spec(write_folder(tmp_path / "data", train=frame)))
    assert splits.label_names == ["0", "1", "2"]
    assert splits.dropped["train"] == 1


def test_json_labels_mixing_ids_and_a_word_are_refused(tmp_path: Path):
    frame = labelled(30, 1)
    frame["label"] = frame["label"].astype(object)
    frame.loc[5, "label"] = "positive"
    frame.to_json(tmp_path / "train.jsonl", orient="records", lines=True)
    message = load_error(spec(tmp_path / "train.jsonl"))
    assert "row 5: label 'positive' in column 'label' is a class name among integer class ids" \
        in message


def test_unreadable_table_is_an_error(tmp_path: Path):
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "train.parquet").write_bytes(b"this is not a parquet file")
    message = load_error(spec(folder))
    assert "train.parquet" in message and "cannot be read as a table" in message


def test_files_of_other_types_in_a_folder_are_ignored(data_dir: Path):
    (data_dir / "README.md").write_text("# notes\n", encoding="utf-8")
    (data_dir / "extra.txt").write_text("text,label\nx,1\n", encoding="utf-8")
    raw, _ = load_raw_splits(spec(data_dir))
    assert sorted(raw) == ["test", "train"]


def test_split_names_strip_compound_suffixes(tmp_path: Path):
    folder = tmp_path / "data"
    folder.mkdir()
    _write_csv_gz(labelled(40, 1), folder / "train.csv.gz")
    labelled(10, 2).to_json(folder / "test.jsonl", orient="records", lines=True)
    raw, _ = load_raw_splits(spec(folder))
    assert sorted(raw) == ["test", "train"]
    assert len(raw["train"]) == 40 and len(raw["test"]) == 10


def test_folder_without_data_files_is_an_error(tmp_path: Path):
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "notes.txt").write_text("nothing here\n", encoding="utf-8")
    message = load_error(spec(folder))
    assert "folder holds no data file" in message and "train.csv" in message


# --------------------------------------------------------------------------- subsampling


def test_max_samples_give_exact_stratified_sizes(data_dir: Path):
    full = load_labeled_splits(spec(data_dir))
    small = load_labeled_splits(spec(data_dir, max_train_samples=60, max_eval_samples=11,
                                     max_test_samples=25))
    for name, size in [("train", 60), ("validation", 11), ("test", 25)]:
        sample, source = getattr(small, name), getattr(full, name)
        assert len(sample) == size
        assert set(sample["text"]) <= set(source["text"])
        assert_stratified(sample, source)


def test_max_samples_are_deterministic(data_dir: Path):
    data = spec(data_dir, max_train_samples=60, max_eval_samples=11, max_test_samples=25)
    first, second = load_labeled_splits(data), load_labeled_splits(data)
    for (_, a), (_, b) in zip(first.split_items(), second.split_items(), strict=True):
        pd.testing.assert_frame_equal(a, b)


def test_max_samples_larger_than_a_split_keep_it_whole(data_dir: Path):
    full = load_labeled_splits(spec(data_dir))
    big = load_labeled_splits(spec(data_dir, max_train_samples=10_000, max_eval_samples=10_000,
                                   max_test_samples=10_000))
    for (_, a), (_, b) in zip(full.split_items(), big.split_items(), strict=True):
        pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True))


def test_max_samples_larger_than_a_split_say_so_in_a_note(data_dir: Path):
    splits = load_labeled_splits(spec(data_dir, max_train_samples=10_000, max_test_samples=50))
    assert "[data] max_train_samples = 10000 is more than the 180 rows there are: all are used" \
        in splits.notes
    assert not any("max_test_samples" in note for note in splits.notes)  # 50 of 50: as asked


def test_max_test_samples_without_a_test_split_is_ignored(tmp_path: Path):
    folder = write_folder(tmp_path / "data", train=labelled(60, 1))
    splits = load_labeled_splits(spec(folder, max_test_samples=5))
    assert splits.test is None


# --------------------------------------------------------------------------- classes too small to stratify


def _with_a_lone_class(tmp_path: Path) -> Path:
    """60 rows of label 0, 60 of label 1 and one row of label 2: class 2 cannot be stratified."""
    rows = [(f"text {i}", i % 2) for i in range(120)] + [("the odd one", 2)]
    path = tmp_path / "that.csv"
    pd.DataFrame(rows, columns=["text", "label"]).to_csv(path, index=False)
    return path


def test_a_class_of_one_row_stays_in_train_and_the_others_are_still_stratified(tmp_path: Path):
    splits = load_labeled_splits(spec(_with_a_lone_class(tmp_path)))
    assert splits.label_names == ["0", "1", "2"]
    assert "the odd one" in set(splits.train["text"])
    assert splits.validation["label"].value_counts().to_dict() == {0: 6, 1: 6}
    assert splits.train["label"].value_counts().to_dict() == {0: 54, 1: 54, 2: 1}
    assert ("validation carved from 'train': 12 rows (0.1, stratified; class '2' has a single row, "
            "left in train)") in splits.notes
    assert ("validation has no row of class '2' (1 in train): its macro averages count it as 0 "
            "(macro_f1 at most 0.667; the same for every variant, so differences stand), and its "
            "other metrics say nothing of it") \
        in splits.notes


def test_a_class_of_one_row_survives_max_train_samples_and_test_size(tmp_path: Path):
    splits = load_labeled_splits(spec(_with_a_lone_class(tmp_path), test_size=0.1,
                                      max_train_samples=64))
    assert len(splits.train) == 64 and "the odd one" in set(splits.train["text"])
    assert splits.train["label"].value_counts()[2] == 1
    assert splits.test["label"].value_counts().to_dict() == {0: 6, 1: 6}
    assert any(note.startswith("test carved from 'train': 12 rows (0.1, stratified; class '2'")
               for note in splits.notes)
    assert ("test has no row of class '2' (1 in train): its macro averages count it as 0 "
            "(macro_f1 at most 0.667; the same for every variant, so differences stand), and its "
            "other metrics say nothing of it") in splits.notes


def test_a_variant_subsample_keeps_a_class_of_one_row():
    from ablation.data import stratified_indices

    labels = np.array([0, 1] * 60 + [2])
    taken = stratified_indices(labels, 30)
    assert len(taken) == 30 and len(set(taken)) == 30 and 120 in taken
    assert sorted(np.bincount(labels[taken]).tolist()) == [1, 14, 15]


def test_data_every_class_of_which_can_be_stratified_is_split_as_before(data_dir: Path):
    from sklearn.model_selection import train_test_split

    train = pd.read_csv(data_dir / "train.csv")
    positions = np.arange(len(train))
    validation, _ = train_test_split(positions, train_size=20, random_state=0,
                                     stratify=train["label"])
    splits = load_labeled_splits(spec(data_dir))
    assert splits.validation["text"].tolist() == train["text"].iloc[validation].tolist()
    assert "validation carved from 'train': 20 rows (0.1, stratified)" in splits.notes
    assert not any("has no row of class" in note or "no training row" in note
                   for note in splits.notes)


def test_a_class_that_max_train_samples_leaves_out_is_named_in_a_note(tmp_path: Path):
    rows = [(f"text {i}", i % 2) for i in range(198)] + [("rare a", 2), ("rare b", 2)]
    path = tmp_path / "train.csv"
    pd.DataFrame(rows, columns=["text", "label"]).to_csv(path, index=False)
    splits = load_labeled_splits(spec(path, max_train_samples=20))
    assert set(splits.train["label"]) == {0, 1}
    assert ("class '2' has no training row: [data] max_train_samples = 20 keeps none of its 2 "
            "training rows, so the model cannot learn it (raise max_train_samples or leave it out)"
            ) in splits.notes


def test_a_class_only_validation_has_is_named_in_a_note(tmp_path: Path):
    folder = write_folder(
        tmp_path / "data",
        train=pd.DataFrame({"text": [f"t {i}" for i in range(40)], "label": [i % 2 for i in range(40)]}),
        validation=pd.DataFrame({"text": [f"v {i}" for i in range(12)],
                                 "label": [i % 3 for i in range(12)]}))
    splits = load_labeled_splits(spec(folder, validation_split="validation",
                                      label_names=["a", "b", "c"]))
    assert ("class 'c' has no training row (4 rows in the data: 4 in validation), so the model "
            "cannot learn it") in splits.notes


@pytest.mark.parametrize("names", [None, NAMES])  # integer ids, class names
def test_a_class_label_names_names_that_no_row_has_is_named_in_a_note(tmp_path: Path, names):
    # An extra name trains a head for a class no row has: its F1 is 0 on every split, which caps
    # every macro average (here at 3 of 4 classes) without a word.
    folder = write_folder(tmp_path / "data", train=labelled(60, 1, names), test=labelled(30, 2, names))
    splits = load_labeled_splits(spec(folder, label_names=[*NAMES, "other"]))
    assert splits.label_names == [*NAMES, "other"]
    assert ("[data] label_names names class 'other' that no row of the data has: the model is "
            "built to predict it, and every split's macro averages count it as 0 (macro_f1 at most "
            "0.750; the same for every variant, so differences stand); leave it out of label_names "
            "unless the data should have it") in splits.notes


def test_a_class_split_lacks_caps_macro_f1_with_the_classes_no_row_has(tmp_path: Path):
    train = pd.DataFrame({"text": [f"t {i}" for i in range(40)], "label": [i % 2 for i in range(40)]})
    validation = pd.DataFrame({"text": [f"v {i}" for i in range(10)], "label": [0] * 10})
    folder = write_folder(tmp_path / "data", train=train, validation=validation)
    splits = load_labeled_splits(spec(folder, validation_split="validation",
                                      label_names=["a", "b", "c", "d"]))
    # 'b' lacking in validation, 'c' and 'd' in every split: one class of four can score
    lacking = next(note for note in splits.notes if note.startswith("validation has no row"))
    assert "macro_f1 at most 0.250" in lacking
    assert any("names classes 'c', 'd' that no row" in note and "at most 0.500" in note
               for note in splits.notes)


def test_too_few_rows_to_stratify_say_so_and_keep_a_lone_class_in_train(tmp_path: Path):
    path = tmp_path / "train.csv"
    pd.DataFrame({"text": list("abcde"), "label": [0, 0, 1, 1, 2]}).to_csv(path, index=False)
    splits = load_labeled_splits(spec(path, validation_size=0.5))
    assert 2 in set(splits.train["label"]) and len(splits.validation) == 3
    assert ("validation carved from 'train': 3 rows (0.5, not stratified: too few rows per class "
            "for that size; class '2' has a single row, left in train)") in splits.notes


# --------------------------------------------------------------------------- fingerprint


def _copy(splits: LabeledSplits) -> LabeledSplits:
    return dataclasses.replace(
        splits, train=splits.train.copy(), validation=splits.validation.copy(),
        test=None if splits.test is None else splits.test.copy(), label_names=list(splits.label_names))


def test_fingerprint_is_stable(data_dir: Path):
    splits = load_labeled_splits(spec(data_dir))
    key = splits.fingerprint()
    assert len(key) == 16 and int(key, 16) >= 0
    assert splits.fingerprint() == key
    assert load_labeled_splits(spec(data_dir)).fingerprint() == key
    assert _copy(splits).fingerprint() == key


@pytest.mark.parametrize("change", ["text", "label", "label_name", "test_text"])
def test_fingerprint_changes_with_the_content(data_dir: Path, change: str):
    splits = load_labeled_splits(spec(data_dir))
    changed = _copy(splits)
    if change == "text":
        changed.train.loc[0, "text"] += "!"
    elif change == "label":
        changed.train.loc[0, "label"] = (changed.train.loc[0, "label"] + 1) % 3
    elif change == "label_name":
        changed.label_names[1] = "neutral"
    else:
        changed.test.loc[len(changed.test) - 1, "text"] = "another text"
    assert changed.fingerprint() != splits.fingerprint()


# --------------------------------------------------------------------------- tokenization


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tiny_model_dir))


LONG = " ".join(["the movie was so good and fun today"] * 4)  # 32 words, all in the tiny vocab


@pytest.fixture
def small_splits() -> LabeledSplits:
    return LabeledSplits(
        train=pd.DataFrame({"text": ["good", "the movie was bad", LONG, "so boring today"],
                            "label": [2, 0, 2, 0]}),
        validation=pd.DataFrame({"text": ["happy", "the paper is on the table"], "label": [2, 1]}),
        test=pd.DataFrame({"text": ["worst movie", "a wonderful day"], "label": [0, 2]}),
        label_names=NAMES)


def test_tokenize_gives_unpadded_truncated_token_columns(small_splits, tokenizer, tmp_path: Path):
    data = tokenize(small_splits, tokenizer, max_length=16, cache_dir=tmp_path / "cache")
    assert data.label_names == NAMES
    for name, frame in small_splits.split_items():
        dataset = getattr(data, name)
        assert set(dataset.column_names) == {"input_ids", "attention_mask", "token_type_ids", "labels"}
        assert dataset["labels"] == frame["label"].tolist()
        for ids, mask in zip(dataset["input_ids"], dataset["attention_mask"], strict=True):
            assert len(ids) == len(mask) and all(m == 1 for m in mask)  # no padding
            assert ids[0] == tokenizer.cls_token_id and ids[-1] == tokenizer.sep_token_id
    lengths = [len(ids) for ids in data.train["input_ids"]]
    assert lengths == [3, 6, 16, 5]  # "good" is [CLS] good [SEP]; LONG is cut at 16
    assert tokenizer.pad_token_id not in data.train["input_ids"][2]
    np.testing.assert_array_equal(data.train_labels, small_splits.train["label"].to_numpy())


def test_tokenize_without_a_test_split(small_splits, tokenizer, tmp_path: Path):
    no_test = dataclasses.replace(small_splits, test=None)
    data = tokenize(no_test, tokenizer, max_length=16, cache_dir=tmp_path / "cache")
    assert data.test is None
    assert sorted(p.name.split("-")[0] for p in (tmp_path / "cache").glob("*.arrow")) == [
        "train", "validation"]


def test_tokenize_pairs_marks_the_second_segment(tokenizer, tmp_path: Path):
    pairs = pd.DataFrame({"text": ["good movie", "bad day"], "text_pair": ["happy", "sad"],
                          "label": [1, 0]})
    splits = LabeledSplits(train=pairs, validation=pairs.copy(), test=None, label_names=["a", "b"])
    data = tokenize(splits, tokenizer, max_length=16, cache_dir=tmp_path / "cache")
    first = data.train[0]
    assert first["token_type_ids"] == [0, 0, 0, 0, 1, 1]  # [CLS] good movie [SEP] happy [SEP]
    assert first["input_ids"].count(tokenizer.sep_token_id) == 2


def test_tokenize_on_a_full_disk_is_one_line_and_leaves_no_cache(small_splits, tokenizer,
                                                                  tmp_path: Path, monkeypatch):
    """datasets' map re-raised a full disk as "ValueError: I/O operation on closed file" after a
    50-line traceback, which ended `ablate run` before its study was made: one line names the
    cache folder and the OS's reason, nothing half-written is left, and the next call tokenizes."""
    import errno

    from datasets.arrow_writer import ArrowWriter

    finalize = ArrowWriter.finalize

    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    cache = tmp_path / "cache"
    monkeypatch.setattr(ArrowWriter, "finalize", full)
    message = one_error_line(tokenize, small_splits, tokenizer, 16, cache)
    assert message.startswith(f"the tokenized data cannot be cached in {cache}: "
                              "No space left on device;")
    assert "the same command goes on once it can be written" in message
    assert list(cache.iterdir()) == []
    monkeypatch.setattr(ArrowWriter, "finalize", finalize)
    assert tokenize(small_splits, tokenizer, 16, cache).train["labels"] == [2, 0, 2, 0]


def test_tokenize_error_of_its_own_is_not_taken_for_the_disk(small_splits, tokenizer,
                                                             tmp_path: Path, monkeypatch):
    from datasets.arrow_writer import ArrowWriter

    def broken(self, *args, **kwargs):
        raise ValueError("a bug of its own")

    monkeypatch.setattr(ArrowWriter, "finalize", broken)
    with pytest.raises(ValueError, match="a bug of its own"):
        tokenize(small_splits, tokenizer, 16, tmp_path / "cache")


def test_tokenize_cache_tells_tokenizers_apart_that_share_a_vocabulary(tiny_model_dir: Path,
                                                                         tmp_path: Path):
    """DistilBERT's tokenizer is BERT's vocabulary without token_type_ids: a variant comparing the
    two encoders must not read the other's cached pairs (BERT would lose its second segment)."""
    from transformers import AutoTokenizer, DistilBertTokenizerFast

    pairs = pd.DataFrame({"text": ["good movie", "bad day"], "text_pair": ["happy", "sad"],
                          "label": [1, 0]})
    splits = LabeledSplits(train=pairs, validation=pairs.copy(), test=None, label_names=["a", "b"])
    cache = tmp_path / "cache"
    distil = DistilBertTokenizerFast.from_pretrained(str(tiny_model_dir))
    assert "token_type_ids" not in tokenize(splits, distil, 16, cache).train.column_names
    bert = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    assert tokenize(splits, bert, 16, cache).train[0]["token_type_ids"] == [0, 0, 0, 0, 1, 1]
    texts = dataclasses.replace(splits, train=pairs[["text", "label"]], validation=pairs[["text", "label"]])
    assert tokenize(texts, bert, 3, cache).train[0]["input_ids"][1] == bert.convert_tokens_to_ids("good")
    left = AutoTokenizer.from_pretrained(str(tiny_model_dir), truncation_side="left")
    assert tokenize(texts, left, 3, cache).train[0]["input_ids"][1] == bert.convert_tokens_to_ids("movie")


def test_tokenize_cache_key_does_not_depend_on_earlier_calls(tiny_model_dir: Path, small_splits,
                                                            tmp_path: Path):
    """A fast tokenizer's serialization holds its last call's truncation: a worker that tokenized
    max_length 16 first must find the max_length 8 files another process wrote."""
    from transformers import AutoTokenizer

    used = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    tokenize(small_splits, used, 16, tmp_path / "cache")
    tokenize(small_splits, AutoTokenizer.from_pretrained(str(tiny_model_dir)), 8, tmp_path / "cache")
    tokenize(small_splits, used, 8, tmp_path / "cache")
    assert len(list((tmp_path / "cache").glob("*.arrow"))) == 6  # 3 splits × 2 max_lengths


_KILLED_WHILE_TOKENIZING = """
import os, pickle, signal, sys
from transformers import AutoTokenizer
from ablation.data import _tokens

real, calls = _tokens._encoder, []

def encoder(*args):
    encode = real(*args)
    def killed_at_the_second_batch(batch):
        calls.append(1)
        if len(calls) == 2:  # the first batch is in the file datasets writes beside
            print("tokenizing", flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
        return encode(batch)
    return killed_at_the_second_batch

_tokens._encoder = encoder
splits, model, cache = pickle.loads(open(sys.argv[1], "rb").read())
_tokens.tokenize(splits, AutoTokenizer.from_pretrained(model), 16, cache)
"""


def test_tokenizing_again_clears_what_a_killed_tokenization_left(tiny_model_dir: Path,
                                                                  small_splits, tmp_path: Path):
    """kill -9 while a split was tokenized left datasets' temporary file (`cache/tmpab12cd34`, as
    big as the split's tokens) in the cache for good; the next tokenization of it removes it."""
    import os
    import pickle
    import signal
    import subprocess
    import sys

    from transformers import AutoTokenizer

    splits = dataclasses.replace(small_splits, train=make_texts(1200, seed=3))  # 2 batches
    cache = tmp_path / "cache"
    payload = tmp_path / "payload.pkl"
    payload.write_bytes(pickle.dumps((splits, str(tiny_model_dir), cache)))
    killed = subprocess.run([sys.executable, "-c", _KILLED_WHILE_TOKENIZING, str(payload)],
                            env=os.environ | {"PYTHONPATH": str(Path(__file__).parents[1])},
                            capture_output=True, text=True, timeout=120)
    assert killed.returncode == -signal.SIGKILL and killed.stdout == "tokenizing\n", killed.stderr
    assert [p for p in cache.iterdir() if not p.name.endswith(".arrow")], "nothing left to clear"
    data = tokenize(splits, AutoTokenizer.from_pretrained(str(tiny_model_dir)), 16, cache)
    assert len(data.train) == 1200
    assert sorted(p.name.split("-")[0] for p in cache.iterdir()) == ["test", "train", "validation"]

def test_tokenize_reuses_the_cached_arrow_files(small_splits, tokenizer, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch):
    import datasets

    cache = tmp_path / "cache"
    first = tokenize(small_splits, tokenizer, max_length=16, cache_dir=cache)
    files = sorted(cache.glob("*.arrow"))
    assert [p.name.split("-")[0] for p in files] == ["test", "train", "validation"]
    mtimes = {p: p.stat().st_mtime_ns for p in files}

    def no_map(*args, **kwargs):
        raise AssertionError("tokenized again instead of loading the cache")

    monkeypatch.setattr(datasets.Dataset, "map", no_map)
    second = tokenize(small_splits, tokenizer, max_length=16, cache_dir=cache)
    assert sorted(cache.glob("*.arrow")) == files
    assert {p: p.stat().st_mtime_ns for p in files} == mtimes
    for name in ("train", "validation", "test"):
        assert getattr(second, name).to_dict() == getattr(first, name).to_dict()


def test_tokenize_with_another_max_length_writes_new_files(small_splits, tokenizer, tmp_path: Path):
    cache = tmp_path / "cache"
    tokenize(small_splits, tokenizer, max_length=16, cache_dir=cache)
    before = set(cache.glob("*.arrow"))
    data = tokenize(small_splits, tokenizer, max_length=8, cache_dir=cache)
    after = set(cache.glob("*.arrow"))
    assert before < after and len(after - before) == 3
    assert all("len8" in p.name for p in after - before)
    assert max(len(ids) for ids in data.train["input_ids"]) == 8


def test_tokenize_after_a_content_change_writes_new_files(small_splits, tokenizer, tmp_path: Path):
    cache = tmp_path / "cache"
    tokenize(small_splits, tokenizer, max_length=16, cache_dir=cache)
    changed = _copy(small_splits)
    changed.train.loc[0, "label"] = 1
    data = tokenize(changed, tokenizer, max_length=16, cache_dir=cache)
    assert len(list(cache.glob("*.arrow"))) == 6
    assert data.train["labels"][0] == 1


# --------------------------------------------------------------------------- the Hub


def test_hub_dataset_unavailable_offline_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):

    empty = tmp_path / "hf-cache"
    empty.mkdir()
    use_offline_cache(monkeypatch, empty)

    with pytest.raises(AblateInputError) as info:
        load_raw_splits(DataSpec(dataset="nobody-here/no-such-dataset", config="default"))
    message = str(info.value)
    assert "\n" not in message
    assert "'nobody-here/no-such-dataset'" in message and "(config 'default')" in message
    assert "cannot be loaded" in message and "HF_HUB_OFFLINE" in message
    # A relative path meant from another folder reads as a Hub id: the folder looked in is named.
    assert (f"nor is 'nobody-here/no-such-dataset' a file or folder under {Path.cwd()} (a relative "
            "path is read from the folder ablate runs in)") in message


def test_words_pandas_would_read_as_missing_are_kept_as_classes_and_texts(tmp_path: Path):
    frame = labelled(20, 1, names=["a", "b", "None"])
    frame.loc[3, "text"] = "NA"
    frame.loc[4, "text"] = "007"
    folder = write_folder(tmp_path / "data", train=frame)
    splits = load_labeled_splits(spec(folder, test_split="", validation_size=0.2))
    assert splits.label_names == ["None", "a", "b"]  # "None" is a class, not a missing label
    assert not splits.dropped["train"]
    texts = set(splits.train["text"]) | set(splits.validation["text"])
    assert {"NA", "007"} <= texts


@pytest.mark.parametrize("suffix", [".csv", ".tsv"])
def test_a_csv_text_column_of_only_numbers_is_refused_naming_the_columns(tmp_path: Path, suffix: str):
    # Every CSV cell is text: an id column named as the text trained on "1000", "1001", ...
    frame = labelled(20, 1)
    frame.insert(0, "id", range(1000, 1020))
    path = tmp_path / f"train{suffix}"
    frame.to_csv(path, index=False, sep="\t" if suffix == ".tsv" else ",")
    message = load_error(spec(path, text_column="id"))
    assert (f"{path}: split 'train': [data] text_column = 'id' holds only numbers (row 0: '1000', "
            "row 1: '1001'), no text; is 'id' the text column? (columns: 'id', 'text', 'label')"
            ) == message
    # a few numbers among texts are texts ("007", a rating written out)
    frame.loc[[2, 5], "text"] = ["007", "4.5"]
    frame.to_csv(path, index=False, sep="\t" if suffix == ".tsv" else ",")
    splits = load_labeled_splits(spec(path))
    assert {"007", "4.5"} <= set(splits.train["text"]) | set(splits.validation["text"])


def test_integer_labels_in_a_csv_keep_numeric_order(tmp_path: Path):
    frame = pd.DataFrame({"text": [f"t{i}" for i in range(24)], "label": [i % 12 for i in range(24)]})
    folder = write_folder(tmp_path / "data", train=frame, validation=frame)
    splits = load_labeled_splits(spec(folder, validation_split="validation", test_split=""))
    assert splits.label_names == [str(i) for i in range(12)]
    assert splits.train["label"].tolist() == frame["label"].tolist()


def test_a_stray_word_among_integer_labels_names_its_row(tmp_path: Path):
    frame = labelled(30, 1)
    frame["label"] = frame["label"].astype(object)
    frame.loc[11, "label"] = "x"
    message = load_error(spec(write_folder(tmp_path / "data", train=frame)))
    assert "split 'train', row 11: label 'x'" in message
    assert "is a class name among integer class ids (split 'train', row 0:" in message


def test_two_files_for_one_split_are_refused(tmp_path: Path):
    folder = write_folder(tmp_path / "data", train=labelled(20, 1))
    labelled(10, 2).to_json(folder / "train.jsonl", orient="records", lines=True)
    message = load_error(spec(folder))
    assert "two files for split 'train'" in message and "train.csv" in message


def test_a_train_split_with_one_class_present_is_refused(tmp_path: Path):
    frame = labelled(20, 1)
    frame["label"] = 1
    message = load_error(spec(write_folder(tmp_path / "data", train=frame), label_names=["n", "p"]))
    assert "holds a single class ('p')" in message


def test_train_token_ids_are_every_id_of_the_selected_training_rows_once():
    import datasets

    rows = datasets.Dataset.from_dict({"input_ids": [[101, 5, 102], [101, 7, 7, 102], [101, 9, 102]]})
    data = TokenizedData(train=rows.select([1, 2]), validation=rows, test=None, label_names=["a"],
                         train_labels=np.array([0, 0]))
    assert data.train_token_ids().tolist() == [7, 9, 101, 102]  # not 5: a row left out by select
    assert data.train_token_ids() is data.train_token_ids()  # found once per study


def test_hub_error_keeps_the_line_naming_the_available_configs(monkeypatch: pytest.MonkeyPatch):
    import datasets

    def not_cached(*args, **kwargs):
        raise ValueError("Couldn't find cache for cardiffnlp/tweet_eval for config 'emotions'\n"
                         "Available configs in the cache: ['emotion']")

    monkeypatch.setattr(datasets, "load_dataset", not_cached)
    with pytest.raises(AblateInputError) as info:
        load_raw_splits(DataSpec(dataset="cardiffnlp/tweet_eval", config="emotions"))
    assert "[data] config = 'emotions'" in str(info.value) and "(it holds 'emotion')" in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("suffix, separator", [(".csv", ","), (".tsv", "\t")])
def test_a_column_named_twice_in_the_header_is_refused(tmp_path: Path, suffix: str, separator: str):
    path = tmp_path / f"train{suffix}"
    path.write_text(separator.join(["text", "label", "label"]) + "\n"
                    + separator.join(["good", "pos", "neg"]) + "\n")
    assert "the header names column 'label' twice" in load_error(spec(path))


@pytest.mark.parametrize("name, separator, advice", [
    ("train.csv", "|", "has '|'; save it with commas between fields"),
    ("train.csv.gz", "|", "has '|'; save it with commas between fields"),
    ("train.tsv", ";", "has semicolons; save it with tabs between fields"),
    ("train.csv", "\t", "has tabs; name it .tsv"),
    ("train.tsv", ",", "has commas; name it .csv"),
])
def test_a_file_of_one_column_with_another_separator_is_refused_naming_it(
        tmp_path: Path, name: str, separator: str, advice: str):
    """Not "a text that contains a comma must be quoted", nor "no such column 'text'"."""
    content = "".join(f"{text}{separator}{label}\n" for text, label in [
        ("text", "label"), ("good fun", "pos"), ("bad, really", "neg"), ("dull", "neg")])
    path = tmp_path / name
    with (gzip.open if name.endswith(".gz") else open)(path, "wt") as file:
        file.write(content)
    message = load_error(spec(path))
    assert f"{name}: the header {'text' + separator + 'label'!r} is one column" in message
    assert advice in message


def excel_csv(frame: pd.DataFrame, separator: str, first_line: str = "") -> bytes:
    """A frame as Excel saves 'CSV UTF-8': a byte-order mark, CRLF line ends, `separator` between
    fields (';' where the comma is the decimal mark), a text quoted where it holds one."""
    return b"\xef\xbb\xbf" + (first_line + frame.to_csv(index=False, sep=separator,
                                                       lineterminator="\r\n")).encode()


@pytest.mark.parametrize("name", ["train.csv", "train.csv.gz"])
@pytest.mark.parametrize("first_line", ["", "sep=;\r\n"], ids=["", "sep_line"])
def test_a_csv_excel_saved_with_semicolons_reads_as_the_same_file_with_commas(
        tmp_path: Path, name: str, first_line: str):
    """Excel in German, French, Spanish, ... settings saves CSV with ';' between fields (the comma
    is the decimal mark), and its users cannot choose commas; it was refused."""
    frame = labelled(40, 1, NAMES)
    frame.loc[3, "text"] = "bad, really; so bad"  # a comma read as text, a semicolon quoted
    (tmp_path / "commas.csv").write_bytes(excel_csv(frame, ","))
    data = excel_csv(frame, ";", first_line)
    (tmp_path / name).write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    expected = load_labeled_splits(spec(tmp_path / "commas.csv"))
    splits = load_labeled_splits(spec(tmp_path / name))
    assert splits.fingerprint() == expected.fingerprint()
    assert "bad, really; so bad" in set(splits.train["text"]) | set(splits.validation["text"])


@pytest.mark.parametrize("suffix, separator", [(".csv", ","), (".tsv", "\t"), (".csv", "|")])
def test_excels_sep_line_before_the_header_names_the_separator(
        tmp_path: Path, suffix: str, separator: str):
    """'sep=,' as a first line makes Excel open a file in any locale; it was read as the header
    (columns 'sep=' and 'Unnamed: 1'), and [data] text_column refused as missing."""
    frame = labelled(40, 1, NAMES)
    (tmp_path / "plain.csv").write_bytes(excel_csv(frame, ","))
    (tmp_path / f"train{suffix}").write_bytes(excel_csv(frame, separator, f"sep={separator}\r\n"))
    splits = load_labeled_splits(spec(tmp_path / f"train{suffix}"))
    assert splits.fingerprint() == load_labeled_splits(spec(tmp_path / "plain.csv")).fingerprint()


def test_a_line_of_a_file_after_excels_sep_line_is_named_by_its_line_in_the_file(tmp_path: Path):
    path = tmp_path / "train.csv"
    path.write_text("sep=;\ntext;label\ngood fun, really;pos\nbad; sad;neg\nok;pos\n")
    message = load_error(spec(path))
    assert "train.csv: line 4 has 3 fields, the header 2: a text that contains a semicolon" in message


@pytest.mark.parametrize("header", ["text, label", " text , label ", "\ttext\t,label"])
def test_spaces_around_a_csv_header_name_are_not_part_of_it(tmp_path: Path, header: str):
    """'text, label' (a space after the comma, as people type a header) named a column ' label',
    and [data] label_column = 'label' was refused as missing."""
    frame = labelled(30, 1, NAMES)
    frame.to_csv(tmp_path / "plain.csv", index=False)
    body = frame.to_csv(index=False).split("\n", 1)[1]
    (tmp_path / "train.csv").write_text(header + "\n" + body)
    splits = load_labeled_splits(spec(tmp_path / "train.csv"))
    assert splits.fingerprint() == load_labeled_splits(spec(tmp_path / "plain.csv")).fingerprint()


def test_two_header_names_that_differ_by_spaces_alone_are_one_name_named_twice(tmp_path: Path):
    (tmp_path / "train.csv").write_text("text,label, label\ngood,pos,neg\nbad,neg,pos\n")
    assert "the header names column 'label' twice" in load_error(spec(tmp_path / "train.csv"))


@pytest.mark.parametrize("names", [NAMES, None], ids=["names", "ids"])
def test_a_row_that_repeats_the_header_is_refused_by_its_row(tmp_path: Path, names):
    """Two 'CSV UTF-8' exports joined (`cat a.csv b.csv`): the second header is a row, its label
    'label' a class of its own (or a word among ids), with its byte-order mark in its text."""
    frame = labelled(40, 1, names)
    data = (frame.iloc[:25].to_csv(index=False).encode("utf-8-sig")
            + frame.iloc[25:].to_csv(index=False).encode("utf-8-sig"))
    (tmp_path / "train.csv").write_bytes(data)
    message = load_error(spec(tmp_path / "train.csv"))
    assert "train.csv: row 25 repeats the header ('text', 'label'): files joined" in message


def test_texts_a_spreadsheet_saved_as_its_error_value_are_named_in_a_note(tmp_path: Path):
    """'-- awful film' opened in Excel is a formula, saved as '#NAME?': the text is lost, and the
    row trained on '#NAME?' without a word."""
    frame = labelled(40, 1, NAMES)
    frame.loc[[3, 17], "text"] = ["#NAME?", " #VALUE! "]
    frame.to_csv(tmp_path / "train.csv", index=False)
    notes = load_labeled_splits(spec(tmp_path / "train.csv")).notes
    assert ("split 'train': 2 rows whose text is a spreadsheet's error value (rows 3, 17: '#NAME?')"
            in " | ".join(notes))
    frame.loc[[3, 17], "text"] = ["#hashtag", "#1 movie"]
    frame.to_csv(tmp_path / "train.csv", index=False)
    assert "error value" not in " | ".join(load_labeled_splits(spec(tmp_path / "train.csv")).notes)


def test_a_csv_with_a_title_above_its_header_says_where_the_header_is(tmp_path: Path):
    """A sheet with a title in its first row and the header in its third, saved as CSV: the
    refusal listed the columns 'Reviews, March' and 'Unnamed: 1' and left the user to guess."""
    body = labelled(30, 1, NAMES).to_csv(index=False)
    (tmp_path / "train.csv").write_text('"Reviews, March",\n,\n' + body)
    message = load_error(spec(tmp_path / "train.csv"))
    assert "has no such column (columns: 'Reviews, March', 'Unnamed: 1')" in message
    assert "; row 1 holds 'text', 'label': is it the header, under lines of a title?" in message


def test_a_label_far_beyond_any_class_id_is_refused_without_listing_the_ids(tmp_path: Path):
    # an id or timestamp column taken for the labels: the gap check once built range(label + 1)
    frame = labelled(30, 1)
    frame.loc[7, "label"] = 999_999_999_999
    message = load_error(spec(write_folder(tmp_path / "data", train=frame)))
    assert "split 'train', row 7: label 999999999999 in column 'label' is no class id" in message
    assert "is 'label' the label column?" in message


def test_a_wide_gap_in_the_ids_is_counted_not_listed(tmp_path: Path):
    frame = labelled(30, 1)
    frame.loc[7, "label"] = 90_000
    message = load_error(spec(write_folder(tmp_path / "data", train=frame)))
    assert "so ids 3, 4, 5, 6, 7, … (89997 in all) would be classes without an example" in message


@pytest.mark.parametrize(("first", "shown", "refusal"), [
    (1000, "1000, 1001, 1002, 1003, 1004", "; if it is, renumber the labels 0..119 or use class names"),
    (0, "0, 1, 2, 3, 4", ""),  # no gap: carving validation leaves train no class of two rows
    ("u", "u0, u1, u10, u100, u101", ""),  # names sort as text
], ids=["ids_from_1000", "ids_from_0", "names"])
def test_a_label_column_with_a_label_per_row_asks_if_it_is_the_label_column(
        tmp_path: Path, first: int | str, shown: str, refusal: str):
    # an id column named as label_column was refused with advice to renumber 120 classes, or to
    # give train more rows
    ids = [f"{first}{i}" if isinstance(first, str) else first + i for i in range(120)]
    frame = pd.DataFrame({"id": ids, "text": [f"t {i}" for i in range(120)],
                          "label": [i % 2 for i in range(120)]})
    message = load_error(spec(write_folder(tmp_path / "data", train=frame), label_column="id"))
    assert (f"split 'train' has a label of its own in nearly every row (120 labels in 120 rows: "
            f"{shown}, … (120 in all)), as an id column has; is [data] label_column = 'id' the label "
            f"column? (columns: 'id', 'text', 'label'){refusal}") in message
    assert message.endswith(refusal or "(columns: 'id', 'text', 'label')")


def test_labels_with_a_gap_that_repeat_are_not_taken_for_an_id_column(tmp_path: Path):
    frame = pd.DataFrame({"text": [f"t {i}" for i in range(40)], "label": [i % 20 + 5 for i in range(40)]})
    message = load_error(spec(write_folder(tmp_path / "data", train=frame)))
    assert "integer labels are class ids 0..N-1" in message and "label column?" not in message


def test_messages_count_one_label_row_or_id_in_the_singular(tmp_path: Path):
    # "stripped the spaces around 1 labels", "validation (1 rows: ...)", "ids 0 would be classes"
    frame = pd.DataFrame({"text": [f"t {i}" for i in range(40)],
                          "label": [" a" if i == 0 else "ab"[i % 2] for i in range(40)]})
    notes = load_labeled_splits(spec(write_folder(tmp_path / "spaces", train=frame))).notes
    assert "stripped the spaces around 1 label (' a' is 'a')" in notes
    frame = pd.DataFrame({"text": ["t 0", "t 1", "t 2"], "label": ["a", "b", "b"]})
    message = load_error(spec(write_folder(tmp_path / "small", train=frame), test_size=0.1))
    assert ("carving test (2 rows: test_size 0.1) and validation (1 row: validation_size 0.1, at "
            "least one per class) from the 3 rows of split 'train'") in message
    frame = pd.DataFrame({"text": [f"t {i}" for i in range(20)], "label": [1 + i % 2 for i in range(20)]})
    message = load_error(spec(write_folder(tmp_path / "from_one", train=frame)))
    assert "has labels 1, 2 (none is 0), so id 0 would be a class without an example;" in message


def test_json_texts_and_labels_keep_the_types_they_are_written_in(tmp_path: Path):
    # pandas' type inference would read the text "007" as the number 7
    rows = [{"text": text, "label": label} for text, label in
            [("007", "pos"), ("123", "neg"), ("42", "pos"), ("9", "neg")] * 5]
    pd.DataFrame(rows).to_json(tmp_path / "train.jsonl", orient="records", lines=True)
    splits = load_labeled_splits(spec(tmp_path / "train.jsonl"))
    texts = set(splits.train["text"]) | set(splits.validation["text"])
    assert texts == {"007", "123", "42", "9"} and splits.label_names == ["neg", "pos"]


# --------------------------------------------------------------------------- quotes in CSV and TSV


def _rows_with_a_stray_quote(separator: str) -> str:
    """60 rows; row 10 opens a quote that row 13 closes: quoting would merge rows 10-13."""
    lines = ["text" + separator + "label"]
    for i in range(60):
        if i == 10:
            lines.append(f'"Great movie{separator}1')
        elif i == 13:
            lines.append(f'he said hi"{separator}0')
        else:
            lines.append(f"plain text {i}{separator}{i % 2}")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("name, separator", [("train.tsv", "\t"), ("train.csv", ","),
                                             ("train.csv.gz", ",")])
def test_a_stray_quote_that_would_merge_rows_is_refused_by_its_line(tmp_path: Path, name: str,
                                                                     separator: str):
    path = tmp_path / name
    data = _rows_with_a_stray_quote(separator).encode()
    path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    message = load_error(spec(path))
    assert message.startswith(f"{path}: line 12: a quoted text runs over 4 lines (to line 15)")
    assert "stray" in message and "double the quotes inside it" in message


@pytest.mark.parametrize("suffix, separator", [(".csv", ","), (".tsv", "\t")])
def test_quoted_texts_with_line_breaks_quotes_and_separators_load(tmp_path: Path, suffix: str,
                                                                  separator: str):
    frame = labelled(40, 1, NAMES)
    frame.loc[3, "text"] = 'she said "hi"\nthen left'
    frame.loc[7, "text"] = f"first line{separator} still text\nsecond line"
    frame.loc[9, "text"] = '"quoted" from the start'
    path = tmp_path / f"train{suffix}"
    frame.to_csv(path, sep=separator, index=False)
    raw, _ = load_raw_splits(spec(path))
    assert raw["train"]["text"].tolist() == frame["text"].tolist()


def test_a_quoted_text_whose_lines_hold_commas_but_no_label_loads(tmp_path: Path):
    path = tmp_path / "train.csv"
    path.write_text('text,label\n"Hi, you\nI loved it, really\nBest",pos\nok,neg\nfine,pos\n')
    raw, _ = load_raw_splits(spec(path))
    assert raw["train"]["text"].tolist() == ["Hi, you\nI loved it, really\nBest", "ok", "fine"]


def test_a_tsv_keeps_quotes_that_are_not_csv_quoting(tmp_path: Path):
    path = tmp_path / "train.tsv"
    path.write_text('text\tlabel\n"Great" movie\tpos\nhe said "hi"\tneg\nok\tpos\n')
    raw, _ = load_raw_splits(spec(path))
    assert raw["train"]["text"].tolist() == ['"Great" movie', 'he said "hi"', "ok"]


def test_a_tsv_in_csv_quoting_with_a_text_past_the_csv_modules_field_limit_loads(tmp_path: Path):
    """A review of 200,000 characters (past the 131,072 Python's csv module reads in one field)
    with a quote and a line break, as pandas' to_csv(sep="\t") quotes it: one row, read whole."""
    frame = labelled(20, 1, NAMES)
    frame.loc[3, "text"] = 'he said "hi" ' * 16_000 + "\nand left"
    path = tmp_path / "train.tsv"
    frame.to_csv(path, sep="\t", index=False)
    raw, _ = load_raw_splits(spec(path))
    assert raw["train"]["text"].tolist() == frame["text"].tolist()
    assert raw["train"]["label"].tolist() == frame["label"].tolist()


def test_a_stray_quote_is_refused_in_a_csv_holding_a_text_past_the_csv_field_limit(tmp_path: Path):
    frame = labelled(20, 1, NAMES)
    frame.loc[0, "text"] = "word, " * 40_000  # quoted by to_csv: a comma inside
    path = tmp_path / "train.csv"
    frame.to_csv(path, index=False)
    lines = path.read_text().splitlines(keepends=True)
    lines[5] = '"' + lines[5]  # a stray quote opens line 6, another closes a text on line 9:
    lines[8] = lines[8].replace(",", '",', 1)  # rows 6 to 9 would be read as one text
    path.write_text("".join(lines))
    assert "line 6: a quoted text runs over" in one_error_line(load_raw_splits, spec(path))


# --------------------------------------------------------------------------- what pandas writes


def test_a_parquet_with_a_stored_index_loads_in_file_order(tmp_path: Path):
    frame = labelled(60, 1, NAMES)
    kept = frame[frame.index % 3 != 0]
    kept.to_parquet(tmp_path / "train.parquet")  # index=None: pandas stores 1, 2, 4, 5, ...
    raw, _ = load_raw_splits(spec(tmp_path / "train.parquet"))
    assert isinstance(raw["train"].index, pd.RangeIndex)
    assert raw["train"]["text"].tolist() == kept["text"].tolist()
    assert list(raw["train"].columns) == ["text", "label"]
    splits = load_labeled_splits(spec(tmp_path / "train.parquet"))
    assert len(splits.train) + len(splits.validation) == 40


def test_a_parquet_row_is_named_by_its_position_in_the_file(tmp_path: Path):
    frame = labelled(30, 1).astype({"label": str})
    frame.loc[7, "label"] = "positive"  # position 4 once rows 0, 3, 6 are left out
    frame[frame.index % 3 != 0].to_parquet(tmp_path / "train.parquet")
    message = load_error(spec(tmp_path / "train.parquet"))
    assert "row 4: label 'positive'" in message


@pytest.mark.parametrize("names", [NAMES, None])
def test_a_parquet_of_pandas_nullable_types_loads(tmp_path: Path, names):
    """df.convert_dtypes().to_parquet(): string labels in pandas' nullable 'string' dtype (its
    missing value pd.NA), integer labels as 'Int64'; one label missing."""
    frame = labelled(60, 1, names).convert_dtypes()
    frame.loc[4, "label"] = pd.NA
    frame.to_parquet(tmp_path / "train.parquet")
    splits = load_labeled_splits(spec(tmp_path / "train.parquet"))
    assert splits.label_names == (NAMES if names else ["0", "1", "2"])
    assert len(splits.train) + len(splits.validation) == 59
    truth = dict(zip(frame["text"], frame["label"], strict=True))
    assert all(str(truth[text]) == splits.label_names[label]
               for text, label in zip(splits.train["text"], splits.train["label"], strict=True))


def test_a_parquet_index_with_a_name_is_kept_as_a_column(tmp_path: Path):
    frame = labelled(30, 1, NAMES)
    frame.index = pd.Index([f"id{i}" for i in range(30)], name="id")
    frame.to_parquet(tmp_path / "train.parquet")
    raw, _ = load_raw_splits(spec(tmp_path / "train.parquet"))
    assert list(raw["train"].columns) == ["id", "text", "label"]
    assert raw["train"]["id"].tolist()[:2] == ["id0", "id1"]


def test_pandas_default_json_layout_loads_in_file_order(tmp_path: Path):
    frame = labelled(60, 1, NAMES)
    kept = frame[frame.index % 3 != 0].iloc[::-1]  # keys "59", "58", "56", ...
    kept.to_json(tmp_path / "train.json")  # {"text": {"59": ...}, "label": {"59": ...}}
    raw, _ = load_raw_splits(spec(tmp_path / "train.json"))
    assert isinstance(raw["train"].index, pd.RangeIndex)
    assert raw["train"]["text"].tolist() == kept["text"].tolist()
    assert load_labeled_splits(spec(tmp_path / "train.json")).label_names == NAMES


def test_a_json_object_of_lists_loads(tmp_path: Path):
    frame = labelled(30, 1, NAMES)
    (tmp_path / "lists.json").write_text(
        '{"text": ' + frame["text"].to_json(orient="values") + ', "label": '
        + frame["label"].to_json(orient="values") + "}")
    raw, _ = load_raw_splits(spec(tmp_path / "lists.json"))
    assert raw["train"]["text"].tolist() == frame["text"].tolist()


@pytest.mark.parametrize("document, expected", [
    ('{"id0": {"text": "a", "label": 1}, "id1": {"text": "b", "label": 0}}',
     "the JSON object is keyed by example ('id0', 'id1', ...)"),
    ("[1, 2]", "item 0 of the JSON array is a JSON number, not an example object"),
    ('[{"text": "a", "label": 1}, "b"]', "item 1 of the JSON array is a JSON string"),
    ('"just a text"', "the file is a JSON string, not a table of examples"),
    ('{"text": ["a", "b"], "label": 1}', "mixes columns and single values (key 'label'"),
    # examples wrapped in an object, as many exports and APIs write them
    ('{"data": [{"text": "a", "label": 1}, {"text": "b", "label": 0}]}',
     "the examples are the array under the key 'data', not the file itself"),
    ('{"version": "1.1", "data": [{"text": "a", "label": 1}]}',
     "the examples are the array under the key 'data', not the file itself"),
    # pandas' df.to_json(orient="split")
    ('{"columns": ["text", "label"], "index": [0, 1], "data": [["a", 1], ["b", 0]]}',
     "the file is pandas' to_json(orient=\"split\") layout"),
    ('{"columns": ["text", "label"], "data": [["a", 1], ["b", 0]]}',
     "the file is pandas' to_json(orient=\"split\") layout"),
])
def test_an_unsupported_json_layout_names_the_supported_ones(tmp_path: Path, document: str,
                                                             expected: str):
    (tmp_path / "train.json").write_text(document)
    message = load_error(spec(tmp_path / "train.json"))
    assert expected in message
    assert "supported JSON layouts" in message and "comma" not in message


def test_json_columns_of_different_lengths_are_refused(tmp_path: Path):
    (tmp_path / "train.json").write_text('{"text": ["a", "b", "c"], "label": [1, 0]}')
    message = load_error(spec(tmp_path / "train.json"))
    assert "the JSON columns hold different numbers of values ('text': 3, 'label': 2)" in message


def test_a_gzip_file_cut_short_is_an_error(tmp_path: Path):
    data = gzip.compress(("text,label\n" + "".join(f'"t {i}",{i % 2}\n' for i in range(2000))).encode())
    (tmp_path / "train.csv.gz").write_bytes(data[: len(data) // 2])
    message = load_error(spec(tmp_path / "train.csv.gz"))
    assert "train.csv.gz: cannot be read as a table of examples" in message


def test_a_folder_saved_by_datasets_save_to_disk_is_read_with_its_splits_and_class_names(
        tmp_path: Path):
    import datasets

    features = datasets.Features({"text": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=NAMES)})
    train, test = labelled(30, 1), labelled(12, 2)
    saved = datasets.DatasetDict({
        "train": datasets.Dataset.from_pandas(train, features=features, preserve_index=False),
        "test": datasets.Dataset.from_pandas(test, features=features, preserve_index=False)})
    saved.save_to_disk(tmp_path / "saved")
    splits = load_labeled_splits(spec(tmp_path / "saved"))
    assert splits.label_names == NAMES  # from the ClassLabel, as from the Hub
    assert sorted(splits.test["text"]) == sorted(test["text"])
    assert len(splits.train) + len(splits.validation) == 30

    saved["train"].save_to_disk(tmp_path / "one")  # one Dataset: the train split, as one file is
    one = load_labeled_splits(spec(tmp_path / "one"))
    assert one.test is None and len(one.train) + len(one.validation) == 30

    (tmp_path / "one" / "state.json").write_text("{")  # cut short
    message = load_error(spec(tmp_path / "one"))
    assert message.startswith(f"[data] dataset = '{tmp_path / 'one'}': a folder saved by "
                              "datasets' save_to_disk that load_from_disk cannot read")


def test_data_keys_this_data_makes_do_nothing_get_a_note(tmp_path: Path):
    folder = write_folder(tmp_path / "data", train=labelled(40, 1), validation=labelled(10, 2),
                          test=labelled(10, 3))
    notes = load_labeled_splits(spec(folder, config="emotion", revision="main",
                                     validation_split="validation", validation_size=0.2,
                                     test_size=0.1)).notes
    assert f"[data] config = 'emotion' is not used: it picks a Hub dataset's configuration, and " \
           f"{folder} is a local path" in notes
    assert any(n.startswith("[data] revision = 'main' is not used") for n in notes)
    assert "[data] validation_size = 0.2 is not used: validation is split 'validation' " \
           "(validation_split), not carved" in notes
    assert any(n.startswith("[data] test_size = 0.1 is not used: the data has split 'test'")
               for n in notes)
    quiet = load_labeled_splits(spec(folder, validation_split="validation")).notes
    assert not any("is not used" in n for n in quiet)


def test_validation_and_test_rows_that_train_has_too_are_counted(tmp_path: Path):
    """Exact repeats of training texts (a retweet, a copied review) score what the model saw."""
    folder = tmp_path / "repeats"
    folder.mkdir()
    train = [(f"text {i}", i % 2) for i in range(40)]
    test = [("text 3", 1), ("text 4", 0), ("new one", 1), ("new two", 0)]  # 2 seen in train
    pd.DataFrame(train, columns=["text", "label"]).to_csv(folder / "train.csv", index=False)
    pd.DataFrame(test, columns=["text", "label"]).to_csv(folder / "test.csv", index=False)
    validation = [("text 5", 1), ("other", 0)]
    pd.DataFrame(validation, columns=["text", "label"]).to_csv(folder / "validation.csv", index=False)
    splits = load_labeled_splits(spec(folder, validation_split="validation"))
    assert ("test: 2 of its 4 rows (50.0%) have a text that train has too (exact duplicates: their "
            "scores flatter the model)") in splits.notes
    assert ("validation: 1 of its 2 rows (50.0%) has a text that train has too (exact duplicates: "
            "their scores flatter the model)") in splits.notes


def test_the_summary_line_of_many_classes_names_a_few_and_counts_them():
    """50 classes made `run`'s and `validate`'s `data:` line thousands of characters long (every
    name, as in a 50-class intent set); it names the first 10 and how many there are."""
    frame = pd.DataFrame({"text": ["a"], "label": [0]})
    names = [f"intent_{i:02d}_with_a_long_descriptive_name" for i in range(50)]
    summary = LabeledSplits(frame, frame, None, names).summary()
    assert summary.startswith("train 1, validation 1, test 0 rows; labels intent_00_with")
    assert names[9] in summary and names[10] not in summary and summary.endswith("(50 in all)")
    assert LabeledSplits(frame, frame, None, names[:10]).summary().endswith(names[9])


def test_labels_that_differ_only_in_unicode_form_or_invisible_marks_are_one_class(tmp_path: Path):
    """'négatif' typed on Windows (é one character, NFC) and saved by a Mac (e and a combining
    accent, NFD) look alike and were two classes, and a test file in the other form was refused as
    holding a label train lacks; a zero-width space or byte-order mark pasted after a label made
    a class of its own too. Labels are compared in NFC, without invisible characters around them."""
    nfc, nfd = "n\u00e9gatif", "ne\u0301gatif"
    train = pd.DataFrame({"text": [f"t {i}" for i in range(40)],
                          "label": [[nfc, nfd, "positif", "positif\u200b"][i % 4] for i in range(40)]})
    test = pd.DataFrame({"text": [f"u {i}" for i in range(8)],
                         "label": [[nfd, "\ufeffpositif"][i % 2] for i in range(8)]})
    splits = load_labeled_splits(spec(write_folder(tmp_path / "data", train=train, test=test)))
    assert splits.label_names == [nfc, "positif"]
    assert sorted(splits.test["label"]) == [0] * 4 + [1] * 4
    assert any("in decomposed Unicode" in note and "'ne\\u0301gatif' is 'n\u00e9gatif'" in note
               for note in splits.notes), splits.notes
    assert any("'positif\\u200b' is 'positif'" in note for note in splits.notes), splits.notes
    # label_names in the other form name the same classes
    named = load_labeled_splits(spec(tmp_path / "data", label_names=["positif", nfd]))
    assert named.label_names == ["positif", nfc]
    # a label of invisible characters alone is a missing one
    alone = pd.concat([train, pd.DataFrame({"text": ["x"], "label": ["\u200b"]})], ignore_index=True)
    dropped = load_labeled_splits(spec(write_folder(tmp_path / "alone", train=alone)))
    assert dropped.dropped["train"] == 1
    # evaluate --dataset maps labels to a model's names the same way
    from ablation.inference._evaluate import label_ids

    frame = pd.DataFrame({"label": [nfd, "positif\u200b", nfc]})
    assert label_ids(frame, [nfc, "positif"], "x.csv").tolist() == [0, 1, 0]


def test_evaluate_reads_booleans_for_a_model_whose_classes_are_their_ids(tmp_path: Path):
    """A model trained on true/false labels before booleans were the classes False and True has
    the names 0 and 1: evaluate --dataset of its own JSON Lines reads them as those ids still;
    for a model with names of its own, 'True' is no id of it, nor a name."""
    from ablation.data import load_split
    from ablation.inference._evaluate import label_ids

    frame = labelled(20, 1)
    frame["label"] = frame["label"] == 2
    frame.to_json(tmp_path / "test.jsonl", orient="records", lines=True)
    rows, _ = load_split(spec(tmp_path), "test")
    assert label_ids(rows, ["0", "1"], "x").tolist() == frame["label"].astype(int).tolist()
    assert label_ids(rows, ["False", "True"], "x").tolist() == frame["label"].astype(int).tolist()
    with pytest.raises(AblateInputError, match="a boolean, is the class 'False', which is not one of"):
        label_ids(rows, ["neg", "pos"], "x")


def test_evaluate_tells_booleans_they_are_the_classes_false_and_true(tmp_path: Path):
    # a model trained on a CSV's lowercase 'true'/'false', evaluated on JSON's booleans, was told
    # "label 'False' is not one the model knows ...; did you mean 'false'?": the file holds false
    from ablation.data import load_split
    from ablation.inference._evaluate import label_ids

    frame = labelled(20, 1)
    frame["label"] = frame["label"] == 2
    frame.to_json(tmp_path / "test.jsonl", orient="records", lines=True)
    rows, _ = load_split(spec(tmp_path), "test")
    row = int((~frame["label"]).to_numpy().nonzero()[0][0])
    for reading in (None, "names"):
        message = one_error_line(label_ids, rows, ["false", "true"], "x", reading)
        assert (f"x, row {row}: label false, a boolean, is the class 'False', which is not one of "
                "the model's label names (false, true); booleans are the classes 'False' and 'True' "
                "(as a CSV writes them): write the labels as the model's names, in quotes, or as "
                "its class ids 0..1") in message
        assert "did you mean" not in message


def test_integer_labels_in_full_width_or_arabic_indic_digits_are_class_ids(tmp_path: Path):
    """A Japanese or Chinese IME types '１' (full width), an Arabic locale '١': the labels read as
    integers and then crashed with a traceback ("Unable to parse string '１'"). They are the class
    ids they write, the same as '1', in the study and in evaluate --dataset."""
    for digits in (["\uff10", "\uff11", "\uff12"], ["\u0660", "\u0661", "\u0662"], ["0", "\uff11", "2"]):
        frame = labelled(60, 1)
        frame["label"] = [digits[label] for label in frame["label"]]
        splits = load_labeled_splits(spec(write_folder(tmp_path / digits[1], train=frame)))
        assert splits.label_names == ["0", "1", "2"]
        truth = dict(zip(frame["text"], make_texts(60, 1)["label"], strict=True))
        assert all(truth[text] == label for text, label in zip(splits.train["text"], splits.train["label"],
                                                              strict=True))
    from ablation.inference._evaluate import label_ids

    assert label_ids(pd.DataFrame({"label": ["\uff12", "\u0660", "1"]}), ["a", "b", "c"], "x.csv",
                     ).tolist() == [2, 0, 1]


def _written_as(frame: pd.DataFrame, path: Path) -> Path:
    """`frame` written to `path` as a CSV or as JSON lines, by its suffix."""
    if path.suffix == ".csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_json(path, orient="records", lines=True)
    return path


@pytest.mark.parametrize("scores", [["3.80", "2.75", "0.40", "4.20"], ["0.0", "2.5", "5.0", "1.2"]])
@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_labels_that_are_scores_with_fractions_are_refused_as_no_classes(
        tmp_path: Path, scores: list[str], suffix: str):
    # STS-B's similarity 0.0-5.0: a regression target. Written in a CSV (or as JSON strings),
    # scores none of which is a whole number were read as class names, one class per score
    frame = pd.DataFrame({"text": make_texts(40, 0)["text"], "label": [scores[i % 4] for i in range(40)]})
    message = load_error(spec(_written_as(frame, tmp_path / f"train{suffix}")))
    first = next(i for i in range(4) if not scores[i].endswith(".0"))
    assert f"split 'train', row {first}: label {scores[first]!r} in column 'label' is a number " \
           "with a fraction, not a class" in message
    assert "regression" in message and "integer class ids 0..N-1 or class names" in message


def test_half_star_ratings_named_in_label_names_are_classes(tmp_path: Path):
    # Ratings in half stars are classes, not scores: label_names says so (without it, a number
    # with a fraction is refused as a regression target, and the line says label_names helps)
    stars = ["0.5", "1.0", "1.5", "2.0"]
    frame = pd.DataFrame({"text": make_texts(40, 0)["text"], "label": [stars[i % 4] for i in range(40)]})
    frame.to_csv(tmp_path / "train.csv", index=False)
    assert "list them in [data] label_names" in load_error(spec(tmp_path / "train.csv"))
    splits = load_labeled_splits(spec(tmp_path / "train.csv", label_names=stars))
    assert splits.label_names == stars
    assert sorted(splits.train["label"].unique()) == [0, 1, 2, 3]
    labels = [stars[i] for i in splits.train["label"]]
    texts = dict(zip(frame["text"], frame["label"], strict=True))
    assert all(texts[text] == label for text, label in zip(splits.train["text"], labels, strict=True))


def test_json_number_labels_with_a_fraction_say_they_are_no_classes(tmp_path: Path):
    scores = [round(i * 0.13, 2) for i in range(40)]
    frame = pd.DataFrame({"text": make_texts(40, 0)["text"], "label": scores})
    frame.to_json(tmp_path / "train.jsonl", orient="records", lines=True)
    message = load_error(spec(tmp_path / "train.jsonl"))
    assert "split 'train', row 1: label 0.13 in column 'label' is a number with a fraction, not a " \
           "class" in message and "regression" in message


@pytest.mark.parametrize("suffix, labels, row, shown", [
    (".jsonl", [["pos"] if i == 3 else ["neg", "pos"][i % 2] for i in range(40)], 3, "['pos']"),
    (".jsonl", [["neg", "pos"] if i % 2 else ["neg"] for i in range(40)], 0, "['neg']"),
    (".parquet", [["neg", "pos"] if i % 2 else ["neg"] for i in range(40)], 0, "['neg']"),
    (".parquet", [[i % 3, (i + 1) % 3] for i in range(40)], 0, "[0, 1]"),
])
def test_a_label_that_is_a_list_of_classes_is_refused_by_its_row(
        tmp_path: Path, suffix: str, labels: list, row: int, shown: str):
    # multi-label data (several classes per row, as go_emotions): a list among names crashed
    # (unhashable type: 'list'), and lists alone were 'not an integer class id'
    frame = pd.DataFrame({"text": make_texts(40, 0)["text"], "label": labels})
    path = tmp_path / f"train{suffix}"
    if suffix == ".jsonl":
        frame.to_json(path, orient="records", lines=True)
    else:
        frame.to_parquet(path)
    message = load_error(spec(path))
    assert f"split 'train', row {row}: label {shown} in column 'label' is a list, not one class" \
           in message
    assert "class name; multi-label data, several classes per row, is not supported" in message


@pytest.mark.parametrize("labels, shown", [
    ([["neg", "pos"] if i % 2 else ["neg"] for i in range(40)], "\"['neg']\""),
    ([[i % 3, 2] for i in range(40)], "'[0, 2]'"),
])
def test_a_csv_whose_every_label_is_a_written_list_is_refused_as_multi_label(
        tmp_path: Path, labels: list, shown: str):
    # pandas writes a list column to CSV as "['neg', 'pos']": each combination read as a class of
    # its own, where JSON's and parquet's lists are refused as multi-label
    frame = pd.DataFrame({"text": make_texts(40, 0)["text"], "label": labels})
    frame.to_csv(tmp_path / "train.csv", index=False)
    message = load_error(spec(tmp_path / "train.csv"))
    assert (f"split 'train', row 0: label {shown} in column 'label' is a list written as text, as "
            "every label of the column is, not one class") in message
    assert "multi-label data, several classes per row, is not supported" in message
    # one such cell among names is a class name of its own, as any other
    frame = labelled(40, 1, ["neg", "pos", "['neg']"])
    frame.to_csv(tmp_path / "one.csv", index=False)
    assert "['neg']" in load_labeled_splits(spec(tmp_path / "one.csv")).label_names


def test_a_float32_score_is_shown_as_written_not_as_its_binary_value(tmp_path: Path):
    # GLUE's stsb stores its similarity as float32: 1.1 read back as a Python float is
    # 1.100000023841858, which no file holds
    import datasets

    features = datasets.Features({"text": datasets.Value("string"), "label": datasets.Value("float32")})
    datasets.Dataset.from_dict({"text": make_texts(40, 0)["text"].tolist(),
                                "label": [(i % 5) * 1.1 for i in range(40)]},
                               features=features).save_to_disk(tmp_path / "saved")
    message = load_error(spec(tmp_path / "saved"))
    assert "split 'train', row 1: label 1.1 in column 'label' is a number with a fraction" in message


def test_a_class_labels_minus_one_is_a_missing_label_whose_row_is_dropped(tmp_path: Path):
    # SNLI marks its examples without a gold label -1 in every split (a ClassLabel's missing
    # value): they were refused, told to renumber -1, 0, 1, 2 as 0..3, a fourth class
    import datasets

    from ablation.data import load_split

    features = datasets.Features({"text": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=NAMES)})
    train, test = labelled(30, 1), labelled(12, 2)
    train.loc[[5, 17], "label"] = -1
    test.loc[2, "label"] = -1
    datasets.DatasetDict({
        "train": datasets.Dataset.from_pandas(train, features=features, preserve_index=False),
        "test": datasets.Dataset.from_pandas(test, features=features, preserve_index=False),
    }).save_to_disk(tmp_path / "saved")
    splits = load_labeled_splits(spec(tmp_path / "saved"))
    assert splits.label_names == NAMES
    assert splits.dropped == {"train": 2, "test": 1}
    assert len(splits.train) + len(splits.validation) == 28 and len(splits.test) == 11
    assert ("split 'train': dropped 2 rows with an empty text or missing label (rows 5, 17; -1 is "
            "its ClassLabel's missing label)") in splits.notes
    frame, declared = load_split(spec(tmp_path / "saved"), "test")  # what evaluate --dataset reads
    assert declared == NAMES and len(frame) == 11 and 2 not in frame.index
    # a CSV's -1 among ids is no ClassLabel's: refused, as a label to renumber
    train.to_csv(tmp_path / "train.csv", index=False)
    assert "-1 is not one; renumber them" in load_error(spec(tmp_path / "train.csv"))


@pytest.mark.parametrize("kind", ["jsonl", "parquet"])
def test_booleans_outside_label_names_are_told_they_are_the_classes_false_and_true(
        tmp_path: Path, kind: str):
    # JSON's false read as the class 'False' was refused as "label 'False' is not one of [data]
    # label_names (false, true); did you mean 'false'?": the file holds false, which no edit of the
    # row makes the class 'false'
    frame = labelled(40, 1)
    frame["label"] = frame["label"] == 2
    path = tmp_path / f"train.{kind}"
    if kind == "jsonl":
        frame.to_json(path, orient="records", lines=True)
    else:
        frame.to_parquet(path)
    message = load_error(spec(path, label_names=["false", "true"]))
    row = int((~frame["label"]).to_numpy().nonzero()[0][0])
    assert (f"split 'train', row {row}: label false, a boolean, is the class 'False', which is not "
            "one of [data] label_names (false, true); booleans are the classes 'False' and 'True' "
            "(as a CSV writes them): name them so in label_names") in message
    assert "did you mean" not in message


def test_booleans_beside_a_csvs_lowercase_true_and_false_are_told_to_match_them(tmp_path: Path):
    folder = tmp_path / "data"
    folder.mkdir()
    frame = labelled(40, 1)
    frame["label"] = (frame["label"] == 2).map({True: "true", False: "false"})  # as R or Spark write
    frame.to_csv(folder / "train.csv", index=False)
    test = labelled(12, 2)
    test["label"] = test["label"] == 2
    test.to_json(folder / "test.jsonl", orient="records", lines=True)
    message = load_error(spec(folder))
    assert "split 'test', row 0: label " in message and ", a boolean, is the class " in message
    assert ("which is not one of the train labels (false, true); booleans are the classes 'False' "
            "and 'True' (as a CSV writes them): write the labels of split 'train' so") in message


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_a_negative_label_with_a_fraction_is_a_score_in_json_as_in_a_csv(tmp_path: Path, suffix: str):
    # a sentiment score -1.0..1.0: JSON's -0.5 was told to renumber the ids ('0, 1 as 0, 1'),
    # where a CSV's was refused as a score
    labels = [[0, 1, -0.5][i % 3] for i in range(30)]
    frame = pd.DataFrame({"text": make_texts(30, 0)["text"], "label": labels})
    message = load_error(spec(_written_as(frame, tmp_path / f"train{suffix}")))
    assert "split 'train', row 2: label " in message and "is a number with a fraction, not a " \
           "class" in message and "renumber" not in message


@pytest.mark.parametrize("labels, row, says", [
    ([0, 1, -np.inf], 2, "label -inf in column 'label' must be an integer class id >= 0 or a class name"),
    ([0, -1, 1, -np.inf], 1, "-1.0 is not one; renumber them, e.g. -1, 0, 1 as 0, 1, 2"),
])
def test_a_parquet_label_of_minus_infinity_is_refused_not_a_traceback(
        tmp_path: Path, labels: list[float], row: int, says: str):
    # -inf among float ids crashed the renumbering advice (OverflowError: cannot convert float
    # infinity to integer)
    frame = pd.DataFrame({"text": make_texts(24, 0)["text"],
                          "label": [labels[i % len(labels)] for i in range(24)]})
    frame.to_parquet(tmp_path / "train.parquet")
    message = load_error(spec(tmp_path / "train.parquet"))
    assert f"split 'train', row {row}: " in message and says in message
