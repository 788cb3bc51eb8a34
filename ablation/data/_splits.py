"""From raw splits to the study's labelled splits: cleaning, label ids and names, validation
carved from train, stratified subsamples, and the notes a study prints about them.
"""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import json
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..config import (
    DataSpec,
    ExperimentSpec,
    _did_you_mean,
    beside_the_file,
    clean_label,
    has_control_characters,
    home_path,
    last_set,
)
from ..errors import AblateInputError, set_shown, some_of
from ._files import CELLS_ARE_TEXT, column_list, load_raw_splits, mojibake

MAX_CLASS_ID = 100_000  # a label beyond it is an id or count column, not a class
SAMPLING_SEED = 0  # fixed: every trial and every seed sees the same split
LABELS_NAMED = 10  # the `data:` line names this many classes, then counts them all


@dataclass
class LabeledSplits:
    """Cleaned text splits with integer labels, before tokenization."""

    train: pd.DataFrame
    validation: pd.DataFrame
    test: pd.DataFrame | None
    label_names: list[str]
    dropped: dict[str, int] = field(default_factory=dict)  # split -> rows dropped as empty
    notes: list[str] = field(default_factory=list)
    # A content hash of the columns read, as the files give them (before cleaning, labels,
    # carving, sampling): the same files an ablate that reads them otherwise makes other rows of.
    source: str | None = None

    def split_items(self) -> list[tuple[str, pd.DataFrame]]:
        items = [("train", self.train), ("validation", self.validation)]
        return items + ([("test", self.test)] if self.test is not None else [])

    def summary(self) -> str:
        """Rows per split (after max_*_samples) and the labels: what `run`, `worker`, `validate`
        and `run --dry-run` say the trials train and are scored on; of many classes, the first
        LABELS_NAMED and how many (50 names made a line thousands of characters long)."""
        test = 0 if self.test is None else len(self.test)
        return (f"train {len(self.train)}, validation {len(self.validation)}, test {test} rows; "
                f"labels {some_of(self.label_names, shown=LABELS_NAMED)}")

    def fingerprint(self) -> str:
        """A content hash of all rows, labels and label names: the key of every cache."""
        digest = hashlib.sha256("\x1f".join(self.label_names).encode())
        for name, frame in self.split_items():
            digest.update(name.encode())
            for column in frame.columns:
                digest.update(column.encode())
                digest.update(pd.util.hash_pandas_object(frame[column], index=False).values.tobytes())
        return digest.hexdigest()[:16]


# --------------------------------------------------------------------------- cleaning and labels


def _check_columns(frame: pd.DataFrame, split: str, spec: DataSpec) -> None:
    keys = ("text_column", "text_pair_column", "label_column")
    for key in keys:
        column = getattr(spec, key)
        if column is not None and column not in frame.columns:
            # A column another key already reads is no typo of this one ('text2' is not 'text')
            taken = {getattr(spec, other) for other in keys if other != key}
            options = [str(c) for c in frame.columns if str(c) not in taken]
            hint = _did_you_mean(column, options)
            if not hint and key == "text_column":
                # the default 'text' where the texts are 'sentence' (SST-2), 'review' (waimai_10k)
                texts = [c for c in frame.columns if str(c) in options and _holds_texts(frame[c])]
                if len(texts) == 1:
                    hint = f"; did you mean {str(texts[0])!r} (its only column of texts)?"
            raise AblateInputError(
                f"[data] {key} = {column!r}: split {split!r} of {spec.dataset} has no such column"
                f"{hint} (columns: {column_list(frame)})"
                f"{_no_header(frame, spec) or _header_below(frame, spec)}")


def _holds_texts(column: pd.Series) -> bool:
    """Whether a column holds texts: strings (not all numbers, as a CSV's ids read as text are)
    in nearly every one of its first rows."""
    head = column.head(200).dropna()
    strings = head[head.map(lambda value: isinstance(value, str))]
    return (len(head) > 0 and len(strings) >= 0.9 * len(head)
            and not strings.str.fullmatch(r"\s*[-+]?\d+(\.\d+)?\s*").all())


def _no_header(frame: pd.DataFrame, spec: DataSpec) -> str:
    """A CSV or TSV exported without its header line: its first row became the column names, so
    a name is a number (the label of that row). What to say, or ""."""
    if not frame.attrs.get(CELLS_ARE_TEXT) or not any(
            _A_NUMBER.fullmatch(str(column)) for column in frame.columns):
        return ""
    shown = ", ".join(repr(str(column)) for column in list(frame.columns)[:3])
    named = ",".join(c for c in (spec.text_column, spec.text_pair_column, spec.label_column) if c)
    return (f"; its first line looks like a row of data, not a header ({shown}): give the file a "
            f"first line naming its columns (such as {named})")


def _header_below(frame: pd.DataFrame, spec: DataSpec) -> str:
    """A CSV or TSV saved from a sheet with a title above its header ('Reviews, March' in its
    first line, a blank line, then 'text,label'): the title became the column names. Where one of
    the first rows holds every column [data] names, what to say, or ""."""
    if not frame.attrs.get(CELLS_ARE_TEXT):
        return ""
    named = [c for c in (spec.text_column, spec.text_pair_column, spec.label_column) if c]
    for row, values in frame.head(20).iterrows():
        if set(named) <= {value.strip() for value in values if isinstance(value, str)}:
            return (f"; row {row} holds {', '.join(map(repr, named))}: is it the header, under "
                    "lines of a title? remove the lines above it (rows are counted from 0 after "
                    "the first line)")
    return ""


def labels_hidden(frame: pd.DataFrame) -> bool:
    """Every label is -1: the Hub's mark of a split whose labels are withheld (GLUE's test sets)."""
    labels = pd.to_numeric(frame["label"], errors="coerce")
    # pandas' nullable types (a 'string' column: every name coerces to pd.NA) compare as NA,
    # which all() would skip: names are no -1
    return len(labels) > 0 and bool((labels == -1).fillna(False).all())


def _clean(frame: pd.DataFrame, spec: DataSpec, split: str, class_label: str | None = None
           ) -> tuple[pd.DataFrame, int]:
    """Keep text (and pair) and label; drop rows whose text is empty or label missing, as a
    `class_label` column's -1 is (a ClassLabel's missing label: SNLI's examples without a gold
    label), unless every label is -1 (a split whose labels are withheld, said as such).

    The kept rows keep their original index, so that a bad label is reported by its row in
    the file, not by its position after the drop."""
    out = pd.DataFrame({"text": frame[spec.text_column]})
    if spec.text_pair_column:
        out["text_pair"] = frame[spec.text_pair_column]
    out["label"] = frame[spec.label_column]
    keep = out["label"].notna() & ~out["label"].map(lambda v: isinstance(v, str) and not clean_label(v))
    if class_label and not labels_hidden(out[keep]):
        keep &= out["label"].ne(-1)
    for column in ["text"] + (["text_pair"] if spec.text_pair_column else []):
        keep &= out[column].notna() & out[column].astype(str).str.strip().ne("")
    cleaned = out[keep].copy()
    many = cleaned["label"].map(lambda v: isinstance(v, (list, tuple, dict, np.ndarray)))
    # a list column pandas wrote to a CSV: "['neg', 'pos']" in every row (one such cell among
    # names is a class name as any other)
    written = len(cleaned) > 0 and all(map(_a_written_list, cleaned["label"]))
    if many.any() or written:  # JSON, parquet or the Hub (a Sequence of ClassLabel): one class a row
        row, value = first_flagged(cleaned, many if many.any() else cleaned["label"].notna())
        kind = ("an object" if isinstance(value, dict) else "a list" if many.any()
                else "a list written as text, as every label of the column is")
        raise AblateInputError(
            f"{spec.dataset}: split {split!r}, row {row}: label {show_cell(value)} in column "
            f"{spec.label_column!r} is {kind}, not one class: each row has one label, an integer "
            "class id or a class name" + ("" if isinstance(value, dict) else
                                          "; multi-label data, several classes per row, is not supported"))
    # A yes/no label saved as booleans: JSON and parquet keep them, a CSV writes 'True'/'False';
    # either way the classes are the names False and True (not ids 0 and 1), so files of both
    # kinds in one folder agree, and the model predicts the names the user wrote.
    if cleaned["label"].dtype.kind in "bO":
        if cleaned["label"].map(lambda v: isinstance(v, (bool, np.bool_))).any():
            cleaned.attrs[BOOLEAN_LABELS] = True  # evaluate --dataset: a refused 'False' was false
        cleaned["label"] = cleaned["label"].map(
            lambda v: str(bool(v)) if isinstance(v, (bool, np.bool_)) else v)
    for column, key in [("text", "text_column")] + (
            [("text_pair", "text_pair_column")] if spec.text_pair_column else []):
        not_text = ~cleaned[column].map(lambda v: isinstance(v, str))
        if not_text.any():  # JSON, parquet or the Hub: numbers, lists or objects are no text
            position = int(not_text.to_numpy().nonzero()[0][0])
            value = cleaned[column].iloc[position]
            value = value.item() if isinstance(value, np.generic) else value
            raise AblateInputError(
                f"{spec.dataset}: split {split!r}, row {cleaned.index[position]}: [data] {key} = "
                f"{getattr(spec, key)!r} holds {show_cell(value)} ({type(value).__name__}), not "
                f"text; is {getattr(spec, key)!r} the text column?")
        cleaned[column] = cleaned[column].astype(str)
    if frame.attrs.get(CELLS_ARE_TEXT) and len(cleaned) and cleaned["text"].str.fullmatch(
            _A_NUMBER).all():
        # CSV and TSV cells are text: an id or score column named as the text reads as texts
        # "1000", "1001", ... and trains without a word (JSON and parquet numbers are refused
        # above; a JSON string of digits was written as a text).
        shown = ", ".join(f"row {row}: {text!r}" for row, text in cleaned["text"].head(2).items())
        raise AblateInputError(
            f"{spec.dataset}: split {split!r}: [data] text_column = {spec.text_column!r} holds only "
            f"numbers ({shown}), no text; is {spec.text_column!r} the text column? (columns: "
            f"{column_list(frame)})")
    if frame.attrs.get(CELLS_ARE_TEXT):
        for column, key in [("text", "text_column")] + (
                [("text_pair", "text_pair_column")] if spec.text_pair_column else []):
            misread = mojibake(cleaned[column])
            if misread:
                row, text, back, encoding, count, checked = misread
                raise AblateInputError(
                    f"{spec.dataset}: split {split!r}, row {row}: the text {_snippet(text)!r} in "
                    f"column {getattr(spec, key)!r} is UTF-8 read as {encoding} (it reads back as "
                    f"{_snippet(back)!r}), as {count} of the {checked} texts with characters past "
                    "ASCII checked are: the file was opened as text in that encoding and saved "
                    "again (Excel does so with a UTF-8 CSV that has no byte-order mark); make it "
                    "again from the original file (in Excel: Data > From Text/CSV, File Origin "
                    "'65001: Unicode (UTF-8)', then save as 'CSV UTF-8')")
    return cleaned, int((~keep).sum())


def _a_written_list(value: Any) -> bool:
    """A label cell that is a list as Python or JSON writes it: "['neg', 'pos']", "[0, 2]"."""
    if not isinstance(value, str) or not re.fullmatch(r"\s*\[.*\]\s*", value, re.DOTALL):
        return False
    for parse in (ast.literal_eval, json.loads):
        try:
            if isinstance(parse(value.strip()), list):
                return True
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            pass
    return False


def _snippet(text: str, length: int = 40) -> str:
    return text if len(text) <= length else text[:length] + "…"


# frame.attrs key: the labels were booleans, now the class names 'False' and 'True'
BOOLEAN_LABELS = "ablate_boolean_labels"
BOOLEAN_CLASSES = "booleans are the classes 'False' and 'True' (as a CSV writes them)"

# A validation or test label train lacks may be a typo, or a class meant to be there: label_names
# keeps such a class (the model cannot learn it, and a note says so).
UNSEEN_LABEL_ADVICE = ("; fix the row, or name every class in [data] label_names (a class with no "
                       "training row is kept, though the model cannot learn it)")

# A cell that is one number (an id, a count, a score), as a CSV writes it.
_A_NUMBER = re.compile(r"\s*[-+]?(?:\d+(?:[.,]\d*)?|[.,]\d+)(?:[eE][-+]?\d+)?\s*")


def _label_ids(frames: dict[str, pd.DataFrame], spec: DataSpec,
               class_names: dict[str, list[str]], raw: dict[str, pd.DataFrame],
               train_split: str, notes: list[str]) -> list[str]:
    """Map every split's labels to ids 0..N-1 in place; return the label names."""
    _integer_strings_to_ids(frames, spec)
    train_labels = frames[train_split]["label"]
    is_text = any(isinstance(v, str) for v in train_labels)
    if is_text:
        _strip_labels(frames, notes)
        _check_printable_labels(frames, spec)
        train_labels = frames[train_split]["label"]
        if spec.label_names:
            names = [clean_label(name) for name in spec.label_names]
        else:
            names = sorted({str(v) for v in train_labels})
            _note_case_twins(names, notes)
            _note_missing_markers(frames, notes)
        index = {name: i for i, name in enumerate(names)}
        for split, frame in frames.items():
            mapped = frame["label"].astype(str).map(index)
            if mapped.isna().any():
                row, value = first_flagged(frame, mapped.isna())
                known = "[data] label_names" if spec.label_names else "the train labels"
                written = raw[split].at[row, spec.label_column]
                if isinstance(written, (bool, np.bool_)):  # JSON's false: no edit of it is 'false'
                    raise AblateInputError(
                        f"{spec.dataset}: split {split!r}, row {row}: label {str(written).lower()}, a "
                        f"boolean, is the class {value!r}, which is not one of {known} "
                        f"({some_of(names, len(names))}); {BOOLEAN_CLASSES}: " + (
                            "name them so in label_names" if spec.label_names
                            else f"write the labels of split {train_split!r} so"))
                # 'Pos' in test.csv beside train's 'pos': the label it is closest to, in any case
                hint = _did_you_mean(clean_label(str(value)), names)
                advice = "" if spec.label_names else UNSEEN_LABEL_ADVICE
                raise AblateInputError(
                    f"{spec.dataset}: split {split!r}, row {row}: label {show_cell(value)} is not "
                    f"one of {known} ({some_of(names, len(names))})"
                    + (f"{hint} If not, {advice[2:]}" if hint and advice else hint or advice))
            frame["label"] = mapped.astype(int)
        return names

    for split, frame in frames.items():
        values = pd.to_numeric(frame["label"], errors="coerce")
        bad = values.isna() | (values != values.round()) | (values < 0)
        if bad.any():
            row, value = first_flagged(frame, bad)
            position = int(bad.to_numpy().nonzero()[0][0])
            number = values.iloc[position]
            if pd.notna(number) and number != np.round(number):  # -0.5 too: a score, not an id
                raise _a_score(spec, split, row, value)
            negative = bool(number < 0) and np.isfinite(number)  # -inf is no id to renumber
            raise AblateInputError(
                f"{spec.dataset}: split {split!r}, row {row}: label {show_cell(value)} in column "
                f"{spec.label_column!r} must be an integer class id >= 0 or a class name"
                + (_renumbering(frames, show_cell(value)) if negative else ""))
        huge = values > MAX_CLASS_ID
        if huge.any():  # an id, count or timestamp column taken for the labels
            row, value = first_flagged(frame, huge)
            raise AblateInputError(
                f"{spec.dataset}: split {split!r}, row {row}: label {show_cell(value)} in column "
                f"{spec.label_column!r} is no class id (ids are 0..N-1 for N classes, at most "
                f"{MAX_CLASS_ID:,}); is {spec.label_column!r} the label column?")
        frame["label"] = values.astype(int)

    declared = class_names.get(spec.label_column) or _names_from_text_column(raw, spec)
    if spec.label_names and declared and list(spec.label_names) != declared:
        # the data names its ids itself: other names (or the same in another order) relabel them
        i = next((i for i, name in enumerate(spec.label_names)
                  if i >= len(declared) or name != declared[i]), len(declared))
        source = ("its ClassLabel" if spec.label_column in class_names
                  else f"its column '{spec.label_column}_text'")
        says = (f"calls id {i} {spec.label_names[i]!r}, which the data calls {declared[i]!r}"
                if i < min(len(declared), len(spec.label_names))
                else f"names {len(spec.label_names)} classes, the data {len(declared)}")
        raise AblateInputError(
            f"[data] label_names = {list(spec.label_names)}: {spec.dataset} names its label ids "
            f"itself ({source}: {some_of(declared, len(declared))}), and label_names {says}; "
            "leave label_names out")
    if spec.label_names:
        names = list(spec.label_names)
    else:
        names = declared or _names_of_ids(frames, spec, train_split, raw[train_split])
    for split, frame in frames.items():
        too_big = frame["label"] >= len(names)
        if too_big.any():
            row, value = first_flagged(frame, too_big)
            count = f"{len(names)} class" + ("es" if len(names) > 1 else "")
            message = (f"{spec.dataset}: split {split!r}, row {row}: label {int(value)} is outside "
                       f"the {count} ({some_of(names, len(names))}); fix the row or set [data] label_names")
            if spec.label_names:  # label_names is the cause: it names too few classes
                top = max(int(f["label"].max()) for f in frames.values())
                ids = f"ids 0..{len(names) - 1}" if len(names) > 1 else "id 0"
                message += (f" to name every id 0..{top}: it names only {count} ({ids}) and the "
                            f"data has id {top}")
            raise AblateInputError(message)
    return names


def _a_score(spec: DataSpec, split: str, row: int, value: Any, written: bool = False
             ) -> AblateInputError:
    """A label with a fraction: a score to regress on, which no class id or class name is.
    `written` as text (a CSV's cell, a JSON string): label_names can make such labels classes."""
    return AblateInputError(
        f"{spec.dataset}: split {split!r}, row {row}: label {show_cell(value)} in column "
        f"{spec.label_column!r} is a number with a fraction, not a class: labels are integer class "
        "ids 0..N-1 or class names, and ablate trains classifiers, not regression on scores (such "
        "as STS-B's similarity, 0.0 to 5.0)" + (
            "; if they are classes (ratings in half stars), list them in [data] label_names"
            if written and not spec.label_names else ""))


def _renumbering(frames: dict[str, pd.DataFrame], value: str) -> str:
    """What to say of a negative integer label: ids are 0..N-1, and how to renumber them."""
    ids = sorted({int(v) for frame in frames.values()
                  for v in pd.to_numeric(frame["label"], errors="coerce").dropna()
                  if np.isfinite(v) and v == round(v)})
    advice = (f"renumber them, e.g. {', '.join(map(str, ids))} as "
              f"{', '.join(map(str, range(len(ids))))}" if len(ids) <= 5
              else "renumber them 0..N-1")
    return (f": class ids are 0..N-1 for N classes and {value} is not one; {advice}, or use "
            "class names")


def _strip_labels(frames: dict[str, pd.DataFrame], notes: list[str]) -> None:
    """'neg ' and 'neg' are one class, and so are 'négatif' in NFC and in NFD (macOS's 'e' and a
    combining accent): string labels are cleaned in place (clean_label), with a note for labels
    that had spaces or invisible characters around them, and one for labels in another Unicode
    form, the original shown escaped (it looks the same)."""
    counts = {"around": 0, "form": 0}
    examples = {"around": "", "form": ""}
    for frame in frames.values():
        labels = frame["label"]
        clean = labels.map(lambda v: clean_label(v) if isinstance(v, str) else v)
        normal = labels.map(lambda v: unicodedata.normalize("NFC", v) if isinstance(v, str) else v)
        for kind, changed, show in (("form", labels.ne(normal), ascii),
                                    ("around", normal.ne(clean), repr)):
            if changed.any() and not examples[kind]:
                before = (labels if kind == "form" else normal)[changed].iloc[0]
                examples[kind] = f" ({show(before)} is {clean[changed].iloc[0]!r})"
            counts[kind] += int(changed.sum())
        frame["label"] = clean
    if counts["around"]:
        stripped = counts["around"]
        notes.append(f"stripped the spaces around {stripped} label{'' if stripped == 1 else 's'}"
                     f"{examples['around']}")
    if counts["form"]:
        count = counts["form"]
        notes.append(f"read {count} label{'' if count == 1 else 's'} in decomposed Unicode (a letter "
                     "and a combining accent, as macOS may write them) as the same letters composed "
                     f"(NFC), as the other labels and label_names are{examples['form']}")


def _check_printable_labels(frames: dict[str, pd.DataFrame], spec: DataSpec) -> None:
    """A class name is printed in tables (the terminal's, report.md's, predict's): a line break
    or tab inside one (a quoted CSV cell over two lines) broke their rows, and an escape reached
    the terminal as a command. Refused with its row; spaces around a label are stripped before."""
    for split, frame in frames.items():
        bad = frame["label"].map(lambda v: isinstance(v, str) and has_control_characters(v))
        if bad.any():
            row, value = first_flagged(frame, bad)
            raise AblateInputError(
                f"{spec.dataset}: split {split!r}, row {row}: label {value!r} holds a control "
                "character (a line break, tab or escape inside it); a class name is printed in the "
                "report's and the terminal's tables: write the label on one line without them")


# How tools write a missing value as a word: R's write.csv (NA), Excel (#N/A), SQL and JSON
# exports (NULL, null, None), pandas' na_rep (NaN, nan). Read as written, as a class can be 'NA'.
MISSING_MARKERS = frozenset(["NA", "N/A", "n/a", "#N/A", "NaN", "nan", "NULL", "null", "None"])


def _note_missing_markers(frames: dict[str, pd.DataFrame], notes: list[str]) -> None:
    """A string label that is a missing-value marker is a class of its own: a note says so."""
    counts: dict[str, int] = {}
    for frame in frames.values():
        for label, count in frame["label"].value_counts().items():
            if label in MISSING_MARKERS:
                counts[label] = counts.get(label, 0) + int(count)
    if counts:
        shown = ", ".join(f"{label!r} ({row_count(count)})" for label, count in counts.items())
        what = ("label {} is a class of its own: where it marks" if len(counts) == 1
                else "labels {} are classes of their own: where they mark")
        notes.append(what.format(shown) + " a missing label, leave the cell empty (a row without a "
                     "label is dropped)")


def _note_case_twins(names: list[str], notes: list[str]) -> None:
    """'Positive' and 'positive' are two classes: a note names the first such pair (a typo in a
    hand-edited file trains a class of its own); not refused, as a case can be meant."""
    by_fold: dict[str, list[str]] = {}
    for name in names:
        by_fold.setdefault(name.casefold(), []).append(name)
    twins = next((group for group in by_fold.values() if len(group) > 1), None)
    if twins:
        shown = " and ".join(repr(name) for name in twins)
        notes.append(f"labels {shown} differ only in case: they are {len(twins)} classes (of "
                     f"{len(names)} in all); write each class one way if they are one")


def _no_usable_rows(where: str, split: str, raw: pd.DataFrame, spec: DataSpec,
                    is_test: bool = False) -> AblateInputError:
    """A split left empty by cleaning; one that had no rows to begin with (a CSV of a header
    alone) is said so, not blamed on empty texts. A label column with no label in it (a test
    file without its answers, the column kept) is named, and a test split told how to leave it
    out."""
    if raw.empty:
        return AblateInputError(f"{where}: split {split!r} has no rows, only its columns "
                                f"({column_list(raw)}); give it one row per example")
    labels = raw[spec.label_column]
    if not (labels.notna() & ~labels.map(lambda v: isinstance(v, str) and not clean_label(v))).any():
        return AblateInputError(
            f"{where}: split {split!r} has no usable rows: every label in column "
            f"{spec.label_column!r} is empty ({row_count(len(raw))}); "
            + ('set test_split = "" for none' if is_test else "give every row its label"))
    return AblateInputError(f"{where}: split {split!r} has no usable rows "
                            "(every text is empty or every label missing)")


def _dropped_note(split: str, raw: pd.DataFrame, cleaned: pd.DataFrame,
                  class_label: str | None = None) -> str:
    """The note on rows cleaning dropped, naming the first few (file rows from 0, as errors
    count them): a text that went missing in an export can then be found and fixed. Where the
    label column `class_label` is a ClassLabel and a dropped row's label is -1, it says that -1
    is its missing label."""
    rows = [int(row) for row in raw.index.difference(cleaned.index, sort=False)]
    shown = f"row {rows[0]}" if len(rows) == 1 else f"rows {some_of(rows)}"
    if class_label and raw.loc[rows, class_label].eq(-1).any():
        shown += "; -1 is its ClassLabel's missing label"
    return (f"split {split!r}: dropped {row_count(len(rows))} with an empty text or missing label "
            f"({shown})")


# The error values a spreadsheet saves in place of a cell it read as a formula and could not
# compute: a text that starts with =, + or - ("-- awful film", "+1 from me") opened in Excel,
# LibreOffice or Google Sheets and saved again.
SPREADSHEET_ERRORS = frozenset(["#NAME?", "#VALUE!", "#REF!", "#DIV/0!", "#N/A", "#NUM!", "#NULL!",
                                "#SPILL!", "#CALC!", "#ERROR!", "Err:508", "Err:509", "Err:510"])


def _spreadsheet_error_note(split: str, cleaned: pd.DataFrame) -> str | None:
    """The note on texts that are a spreadsheet's error value, naming the first rows: the text is
    lost, and the row would train (or be scored) on '#NAME?' without a word."""
    lost = pd.Series(False, index=cleaned.index)
    for column in ("text", "text_pair"):
        if column in cleaned:
            lost |= cleaned[column].str.strip().isin(SPREADSHEET_ERRORS)
    if not lost.any():
        return None
    rows = [int(row) for row in cleaned.index[lost.to_numpy()]]
    first = cleaned.loc[rows[0], "text" if cleaned.loc[rows[0], "text"].strip() in SPREADSHEET_ERRORS
                        else "text_pair"].strip()
    shown = f"row {rows[0]}" if len(rows) == 1 else f"rows {some_of(rows)}"
    return (f"split {split!r}: {row_count(len(rows))} whose text is a spreadsheet's error value "
            f"({shown}: {first!r}): a text starting with =, + or - that Excel, LibreOffice or "
            "Google Sheets read as a formula and saved so, its text lost; they are read as they "
            "are: make the file again from the original, or remove those rows")


def _single_class(spec: DataSpec, split: str, name: str) -> AblateInputError:
    return AblateInputError(f"[data] of {spec.dataset}: split {split!r} holds a single class "
                            f"({name!r}); classification needs at least two")


def _names_of_ids(frames: dict[str, pd.DataFrame], spec: DataSpec, train_split: str,
                  raw_train: pd.DataFrame) -> list[str]:
    """Names "0".."N-1" of integer labels that come without names. Every split's ids must be train's
    (as for string labels), and train's must be 0..N-1: an id in a gap would be a class without
    a single example, which the model is still built to predict. Ids with a gap below them
    that nearly every row has one of are an id column's, not classes to renumber."""
    seen = sorted(set(frames[train_split]["label"]))
    if len(seen) == 1:  # the real cause, before any gap below it
        raise _single_class(spec, train_split, str(seen[0]))
    for split, frame in frames.items():
        unseen = ~frame["label"].isin(seen)
        if unseen.any():
            row, value = first_flagged(frame, unseen)
            raise AblateInputError(
                f"{spec.dataset}: split {split!r}, row {row}: label {show_cell(value)} is not one of "
                f"the train labels ({some_of(seen)}){UNSEEN_LABEL_ADVICE}")
    if seen[-1] + 1 > len(seen):  # a gap: found from the sorted ids, never by listing every id
        present = set(seen)
        missing = [i for i in range(min(seen[-1], len(seen) + 5) + 1) if i not in present][:6]
        train = frames[train_split]
        row, _ = first_flagged(train, train["label"] > missing[0])  # the first label past the gap
        where = f"row {row} the first beyond {missing[0] - 1}" if missing[0] else "none is 0"
        doubt = _label_per_row(train["label"], seen, train_split, spec, raw_train)
        if doubt:
            raise AblateInputError(f"{spec.dataset}: {doubt}; if it is, renumber the labels "
                                   f"0..{len(seen) - 1} or use class names")
        gaps = seen[-1] + 1 - len(seen)
        ids = (f"ids {some_of(missing, total=gaps)} would be classes" if gaps > 1
               else f"id {missing[0]} would be a class")
        raise AblateInputError(
            f"{spec.dataset}: integer labels are class ids 0..N-1, but split {train_split!r} has "
            f"labels {some_of(seen)} ({where}), so {ids} without an example; "
            f"renumber the labels 0..{len(seen) - 1}, use class names instead of numbers, or set "
            f"[data] label_names to name all {seen[-1] + 1} ids")
    return [str(i) for i in range(len(seen))]


def _label_per_row(labels: pd.Series, shown: list[Any], split: str, spec: DataSpec,
                   raw: pd.DataFrame) -> str | None:
    """What to ask when nearly every row has a label of its own, as in an id column named as
    label_column by mistake (no classifier learns a class per row): whether it is the label
    column, with the file's columns. None for labels that repeat, or too few rows to tell."""
    classes = labels.nunique()
    if len(labels) < 10 or classes < 0.9 * len(labels):
        return None
    return (f"split {split!r} has a label of its own in nearly every row ({classes} labels in "
            f"{row_count(len(labels))}: {some_of(shown, total=classes)}), as an id column has; is "
            f"[data] label_column = {spec.label_column!r} the label column? (columns: "
            f"{column_list(raw)})")


def first_flagged(frame: pd.DataFrame, bad: pd.Series) -> tuple[int, Any]:
    """The file row (counted from 0, header excluded) and label of the first flagged row."""
    position = int(bad.to_numpy().nonzero()[0][0])
    return int(frame.index[position]), frame["label"].iloc[position]


def show_cell(value: Any) -> str:
    """A cell as the user wrote it (no numpy reprs in messages; a float32, as GLUE's stsb stores
    its scores, at its own precision: 1.1, not 1.100000023841858)."""
    if isinstance(value, np.floating):
        value = float(str(value))
    elif isinstance(value, np.generic):
        value = value.item()
    elif isinstance(value, np.ndarray):
        value = value.tolist()
    return repr(value)


def _integer_strings_to_ids(frames: dict[str, pd.DataFrame], spec: DataSpec) -> None:
    """Text files give labels as text: all-integer columns become ids ("1.0", as pandas writes
    integers with gaps, is 1); a stray word among integers is a typo to report, not a new class.
    JSON can mix numbers and strings in one column: read as text, the same rule applies."""
    columns = [frame["label"] for frame in frames.values()]
    is_text = [c.map(lambda v: isinstance(v, str)) for c in columns]
    if not any(t.any() for t in is_text):
        return  # numbers only
    columns = [c.map(_as_text).map(ascii_digits) for c in columns]
    integer_like = [c.str.fullmatch(r"\s*[-+]?\d+(?:\.0*)?\s*") for c in columns]
    splits = list(frames)
    if all(c.str.fullmatch(_A_NUMBER).all() for c in columns):
        # numbers, some with a fraction: scores (STS-B's 0.0-5.0), not names of classes, whether
        # or not one of them is a whole number ('1,0', a decimal comma's 1.0, is whole)
        values = [pd.to_numeric(c.str.strip().str.replace(",", ".", regex=False)) for c in columns]
        fraction = next(((split, v != v.round()) for split, v in zip(splits, values, strict=True)
                         if (v != v.round()).any()), None)
        if fraction and spec.label_names and all(
                c.map(clean_label).isin(spec.label_names).all() for c in columns):
            return  # classes with fractions in their names, as label_names names them
        if fraction:
            split, bad = fraction
            raise _a_score(spec, split, *first_flagged(frames[split], bad), written=True)
    if not any(m.any() for m in integer_like):
        return  # class names
    words = [(split, ~m) for split, m in zip(splits, integer_like, strict=True) if not m.all()]
    if words:
        split, bad = words[0]
        row, value = first_flagged(frames[split], bad)
        id_split, ids = next((s, m) for s, m in zip(splits, integer_like, strict=True) if m.any())
        id_row, id_value = first_flagged(frames[id_split], ids)
        like = f"split {id_split!r}, row {id_row}: {show_cell(id_value)}"
        what = ("is not an integer class id like the other labels"
                if pd.notna(pd.to_numeric(_as_text(value), errors="coerce"))
                else "is a class name among integer class ids")
        raise AblateInputError(
            f"{spec.dataset}: split {split!r}, row {row}: label {show_cell(value)} in column "
            f"{spec.label_column!r} {what} ({like}); give every label as a name or every label "
            "as an integer id" + (" (a missing label is an empty cell: its row is dropped)"
                                  if _as_text(value).strip() in MISSING_MARKERS else ""))
    for frame, column in zip(frames.values(), columns, strict=True):
        # integers (floats past int64), checked as ids with the others' below
        frame["label"] = pd.to_numeric(column.str.strip().str.replace(r"\.0*$", "", regex=True))


_OTHER_DIGIT = re.compile(r"(?![0-9])\d")  # a decimal digit of another script


def ascii_digits(text: str) -> str:
    """'１' (a Chinese or Japanese input method's full-width digit) or '١' (Arabic-Indic) as the
    ASCII digit it is: an integer label typed so is the class id it writes."""
    return text if text.isascii() else _OTHER_DIGIT.sub(
        lambda digit: str(unicodedata.digit(digit.group())), text)


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return str(value.item() if isinstance(value, np.generic) else value)


def _names_from_text_column(raw: dict[str, pd.DataFrame], spec: DataSpec) -> list[str] | None:
    """Datasets such as mteb/* ship a `<label>_text` column beside the integer label."""
    text_column = f"{spec.label_column}_text"
    frame = raw.get(spec.train_split)
    if frame is None or text_column not in frame.columns:
        return None
    pairs = frame[[spec.label_column, text_column]].dropna().drop_duplicates()
    if pairs[spec.label_column].duplicated().any():
        return None
    mapping = dict(zip(pairs[spec.label_column].astype(int), pairs[text_column].astype(str), strict=False))
    if sorted(mapping) != list(range(len(mapping))):
        return None
    return [mapping[i] for i in range(len(mapping))]


def stratified_indices(labels: np.ndarray, n: int, rare_taken: bool = True) -> np.ndarray:
    """Positions of n rows keeping class proportions (see _draw)."""
    return _draw(labels, n, rare_taken)[0]


def _draw(labels: np.ndarray, n: int, rare_taken: bool = True) -> tuple[np.ndarray, bool, list[int]]:
    """Positions of n rows keeping class proportions; whether the draw is stratified; the classes
    of a single row, which cannot be stratified.

    A class of a single row cannot be on both sides of a split: it is set aside, on the taken
    side when `rare_taken` (a subsample: the rows kept) or on the other (a carve: the rows that
    stay in train), and the other classes are stratified. When even those are too few rows for
    the asked size (fewer than one per class on a side), the draw is plain random among them;
    when they cannot fill it and leave a row over, it is plain random among all rows."""
    from sklearn.model_selection import train_test_split

    positions = np.arange(len(labels))
    if n >= len(labels):
        return positions, True, []
    try:  # every class of two rows or more: as it always was (split contents are pinned)
        taken, _ = train_test_split(positions, train_size=n, random_state=SAMPLING_SEED,
                                    stratify=labels)
        return np.asarray(taken), True, []
    except ValueError:
        pass
    classes, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    single = counts[inverse] < 2
    rare = [int(c) for c in classes[counts < 2]]
    pool = positions[~single]
    aside = positions[single] if rare_taken else positions[:0]
    want = n - len(aside)
    if rare and 0 < want < len(pool):
        try:
            taken, _ = train_test_split(pool, train_size=want, random_state=SAMPLING_SEED,
                                        stratify=labels[pool])
            stratified = True
        except ValueError:
            taken, _ = train_test_split(pool, train_size=want, random_state=SAMPLING_SEED)
            stratified = False
        return np.sort(np.concatenate([np.asarray(taken), aside])), stratified, rare
    # the other classes cannot fill the asked size and leave a row over: plain random, as before
    taken, _ = train_test_split(positions, train_size=n, random_state=SAMPLING_SEED)
    return np.asarray(taken), False, []


def _stratified_take(frame: pd.DataFrame, n: int, names: list[str], rare_taken: bool = True
                     ) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """Split off n rows keeping class proportions; returns (taken, rest, how): how the rows were
    drawn, in words, for a note ("stratified", and which classes were too small for it)."""
    taken, stratified, rare = _draw(frame["label"].to_numpy(), n, rare_taken)
    rest = np.setdiff1d(np.arange(len(frame)), taken)
    how = "stratified" if stratified else "not stratified: too few rows per class for that size"
    if rare:
        side = "kept" if rare_taken else "left in train"
        shown = some_of([repr(names[c]) for c in rare])
        how += (f"; class {shown} has a single row, {side}" if len(rare) == 1
                else f"; classes {shown} have a single row each, {side}")
    return frame.iloc[taken].reset_index(drop=True), frame.iloc[rest].reset_index(drop=True), how


def load_study_splits(spec: ExperimentSpec) -> LabeledSplits:
    """load_labeled_splits of a study's [data]: a mistake in a [data] key that a --set gave is
    blamed on that --set (the file says otherwise), as the file's own mistakes are; also where the
    line starts with the data file or folder it read (`DATA: split 'train': [data] text_column =
    ...`). So is a row outside the classes a --set's label_names names: the line names the
    data's row, but the names given on the command line are what it is not one of."""
    try:
        return load_labeled_splits(spec.data)
    except AblateInputError as err:
        beside = beside_the_file(spec.path, spec.data.dataset)
        if beside and f"dataset = {spec.data.dataset!r}" in str(err):
            err = AblateInputError(f"{err}{beside}")
        named = re.search(r"\[data\] (?:of .*?: )?(\w+) = ", str(err))
        given = named and last_set(spec.sets, f"data.{named.group(1)}")
        if not given and "[data] label_names" in str(err):
            given = last_set(spec.sets, "data.label_names")
        if not given:
            raise err from None
        raise AblateInputError(f"{set_shown(given)}: {err}") from None


def row_count(count: int) -> str:
    """"1 row", "2 rows": for a line a user reads."""
    return f"{count} row" if count == 1 else f"{count} rows"


def _read_from_the_datasets_cache() -> bool:
    """Whether `load_dataset` reads a Hub dataset from HF_DATASETS_CACHE's prepared copy, which it
    does whenever it is offline (datasets raises OfflineModeIsEnabled before it would read the Hub
    cache, even one holding the repository at the revision asked for): that copy keeps no
    revision, and datasets takes it for any (a pinned `revision` then pins nothing)."""
    import datasets
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE or datasets.config.HF_HUB_OFFLINE)


def _unused_keys(spec: DataSpec, test_present: bool) -> list[str]:
    """Notes for [data] keys that this data makes do nothing, which a user set expecting them to."""
    defaults = {f.name: f.default for f in dataclasses.fields(DataSpec)}
    notes = []
    if home_path(spec.dataset).exists():
        notes += [f"[data] {key} = {getattr(spec, key)!r} is not used: it picks a Hub dataset's "
                  f"{'configuration' if key == 'config' else 'revision'}, and {spec.dataset} is a "
                  "local path" for key in ("config", "revision") if getattr(spec, key)]
    elif spec.revision and _read_from_the_datasets_cache():
        notes.append(f"[data] revision = {spec.revision!r} is not checked: offline, "
                     f"{spec.dataset} is read from the datasets cache, which records no revision: "
                     "its copy there is used, whichever revision it is")
    if spec.validation_split and spec.validation_size != defaults["validation_size"]:
        notes.append(f"[data] validation_size = {spec.validation_size:g} is not used: validation "
                     f"is split {spec.validation_split!r} (validation_split), not carved")
    if test_present and spec.test_size:
        notes.append(f"[data] test_size = {spec.test_size:g} is not used: the data has split "
                     f"{spec.test_split!r}, the test split (test_split = \"\" carves one instead)")
    return notes


def load_labeled_splits(spec: DataSpec) -> LabeledSplits:
    """Everything up to tokenization: the same rows for every trial of a study."""
    raw, class_names = load_raw_splits(spec)
    available = ", ".join(raw)
    where = f"[data] of {spec.dataset}"
    if spec.train_split not in raw:
        files, folder, (split,) = "", home_path(spec.dataset), list(raw)[:1] or [""]
        # one file in a folder: data.csv is the split 'data', not the train split (a folder
        # save_to_disk wrote has no such file)
        found = next((path.name for path in folder.iterdir() if path.is_file() and
                      path.name.startswith(f"{split}.")), None) if folder.is_dir() else None
        if found and len(raw) == 1:
            files = (f"; a folder's files are its splits, named after the files: set train_split "
                     f"= {split!r}, or name the file {spec.train_split}{found[len(split):]}")
        raise AblateInputError(
            f"{where}: train_split = {spec.train_split!r} does not exist (splits: {available}"
            f"{files})")
    if spec.validation_split and spec.validation_split not in raw:
        raise AblateInputError(
            f"{where}: validation_split = {spec.validation_split!r} does not exist "
            f"(splits: {available}); omit it to carve validation from train")
    notes: list[str] = []
    test_split = spec.test_split
    if test_split and test_split not in raw:
        if test_split != "test":
            raise AblateInputError(
                f"{where}: test_split = {test_split!r} does not exist (splits: {available}); "
                'set test_split = "" for none')
        # Test.csv beside train.csv: a split name differs in case from the default, not in meaning
        twin = next((split for split in raw if split.lower() == "test"), None)
        if twin:
            notes.append(f"split {twin!r} is not used: the test split is the one named 'test' "
                         f"(set [data] test_split = {twin!r} to use it)")
        if not spec.test_size:
            notes.append("no test split: test metrics are left out (test_size carves one)")
        test_split = None

    used = [s for s in (spec.train_split, spec.validation_split, test_split) if s]
    if not spec.validation_split:
        unused = [s for s in raw if s.lower() in ("validation", "valid", "val", "dev")
                  and s not in used]
        if unused:
            notes.append(f"split {unused[0]!r} is not used: validation is carved from "
                         f"{spec.train_split!r} (set [data] validation_split = {unused[0]!r} to use it)")
    frames: dict[str, pd.DataFrame] = {}
    dropped: dict[str, int] = {}
    for split in used:
        if split == test_split and spec.label_column not in raw[split].columns:
            # a test file without labels (Kaggle's test.csv): label_column is train's, and right
            raise AblateInputError(
                f"{where}: test_split = {split!r}: split {split!r} has no column "
                f"{spec.label_column!r} (columns: {column_list(raw[split])}), so no labels to score; "
                'set test_split = "" for none'
                + ("" if spec.test_size else " (test_size carves a test set from train)"))
        _check_columns(raw[split], split, spec)
        class_label = spec.label_column if spec.label_column in class_names else None
        frames[split], dropped[split] = _clean(raw[split], spec, split, class_label)
        if labels_hidden(frames[split]):
            if split == test_split and split not in (spec.train_split, spec.validation_split):
                # GLUE-style data ships its test split with every label -1: no metric can be
                # computed on it, so it is left out as a missing test split would be.
                notes.append(f"split {split!r} has no labels (every label is -1): test metrics "
                             "are left out" + ("" if spec.test_size else " (test_size carves a test "
                                                                         "set from train)"))
                del frames[split], dropped[split]
                test_split = None
                continue
            role = "validation_split" if split == spec.validation_split else "train_split"
            raise AblateInputError(
                f"{where}: split {split!r} has no labels (every label in column "
                f"{spec.label_column!r} is -1, as in a hidden test set); set {role} to a labelled "
                "split" + (", or leave validation_split out to carve validation from train"
                           if role == "validation_split" else ""))
        if frames[split].empty:
            raise _no_usable_rows(where, split, raw[split], spec, is_test=split == test_split and split
                                  not in (spec.train_split, spec.validation_split))
        if dropped[split]:
            notes.append(_dropped_note(split, raw[split], frames[split], class_label))
        lost = _spreadsheet_error_note(split, frames[split])
        if lost:
            notes.append(lost)
    source = _source_fingerprint(raw, used, spec, class_names)
    # first among the notes; after the loop, which leaves out a test split whose labels are withheld
    notes[:0] = _unused_keys(spec, test_present=bool(test_split))
    names = _label_ids(frames, spec, class_names, raw, spec.train_split, notes)
    frames = {split: frame.reset_index(drop=True) for split, frame in frames.items()}
    present = sorted(set(frames[spec.train_split]["label"]))
    if len(names) < 2 or len(present) < 2:
        raise _single_class(spec, spec.train_split, names[present[0]])

    train = frames[spec.train_split]
    test = frames[test_split] if test_split else None
    carved = []
    if test is None and spec.test_size:  # carved first, so validation never sees its rows
        test, train, how = _stratified_take(
            train, max(len(names), round(len(train) * spec.test_size)), names, rare_taken=False)
        notes.append(f"test carved from {spec.train_split!r}: {row_count(len(test))} "
                     f"({spec.test_size:g}, {how})")
        carved.append(f"test ({row_count(len(test))}: test_size {spec.test_size:g})")
    if spec.validation_split:
        validation = frames[spec.validation_split]
    else:
        n_val = max(len(names), round(len(train) * spec.validation_size))
        validation, train, how = _stratified_take(train, n_val, names, rare_taken=False)
        notes.append(f"validation carved from {spec.train_split!r}: {row_count(len(validation))} "
                     f"({spec.validation_size:g}, {how})")
        carved.append(f"validation ({row_count(len(validation))}: validation_size "
                      f"{spec.validation_size:g}, at least one per class)")
    if carved:
        whole_train = frames[spec.train_split]["label"]
        doubt = _label_per_row(whole_train, [names[i] for i in sorted(set(whole_train))],
                               spec.train_split, spec, raw[spec.train_split])
        _check_train_classes(
            train["label"].to_numpy(), names,
            f"{where}: carving {' and '.join(carved)} from the {row_count(len(frames[spec.train_split]))} "
            f"of split {spec.train_split!r}",
            doubt or ("give train more rows, or set validation_split"
                      + (" (and test_split)" if spec.test_size and test_split is None else "")
                      + " to a split of its own"))

    for key, frame in (("max_train_samples", train), ("max_eval_samples", validation),
                       ("max_test_samples", test)):
        limit = getattr(spec, key)
        if limit and frame is not None and limit > len(frame):
            notes.append(f"[data] {key} = {limit} is more than the {row_count(len(frame))} there are: "
                         "all are used")
    before_subsample = train
    if spec.max_train_samples:
        classes = train["label"].nunique()
        train, _, _ = _stratified_take(train, spec.max_train_samples, names)
        _check_train_classes(train["label"].to_numpy(), names,
                             f"{where}: max_train_samples = {spec.max_train_samples}",
                             f"raise it to {classes} or more, or leave it out")
    if spec.max_eval_samples:
        validation, _, _ = _stratified_take(validation, spec.max_eval_samples, names)
    if spec.max_test_samples and test is not None:
        test, _, _ = _stratified_take(test, spec.max_test_samples, names)
    notes.extend(_class_notes(frames, before_subsample, train,
                              [("validation", validation), ("test", test)], names, spec))
    notes.extend(_overlap_notes(train, [("validation", validation), ("test", test)]))
    return LabeledSplits(train=train, validation=validation, test=test, label_names=names,
                         dropped=dropped, notes=notes, source=source)


def _source_fingerprint(raw: dict[str, pd.DataFrame], used: list[str], spec: DataSpec,
                        class_names: list[str] | None) -> str | None:
    """LabeledSplits.source: the text, pair and label columns of the splits used, as read."""
    digest = hashlib.sha256("\x1f".join(class_names or []).encode())
    columns = [c for c in (spec.text_column, spec.text_pair_column, spec.label_column) if c]
    try:
        for split in used:
            digest.update(split.encode())
            for column in columns:
                if column in raw[split].columns:
                    digest.update(column.encode())
                    digest.update(pd.util.hash_pandas_object(
                        raw[split][column], index=False).values.tobytes())
    except TypeError:  # cells pandas cannot hash (lists): refused later, or not comparable
        return None
    return digest.hexdigest()[:16]


def _class_notes(frames: dict[str, pd.DataFrame], before_subsample: pd.DataFrame,
                 train: pd.DataFrame, others: list[tuple[str, pd.DataFrame | None]],
                 names: list[str], spec: DataSpec) -> list[str]:
    """Notes on classes the final splits lack: a class [data] label_names names that no row
    has (the head predicts it, every macro average counts it as 0), a class of the data with no
    training row (the model cannot learn it), and a class of train that validation or test lacks
    (their macro averages count it as 0)."""
    notes = []
    in_train = train["label"].value_counts()
    in_data = pd.concat([frame["label"] for frame in frames.values()]).value_counts()
    absent = [label for label in range(len(names)) if label not in in_data.index]
    if absent:
        them = "them" if len(absent) > 1 else "it"
        top = (len(names) - len(absent)) / len(names)
        notes.append(
            f"[data] label_names names {'classes' if len(absent) > 1 else 'class'} "
            f"{some_of([repr(names[label]) for label in absent])} that no row of the data has: the "
            f"model is built to predict {them}, and every split's macro averages count {them} as 0 "
            f"(macro_f1 at most {top:.3f}; the same for every variant, so differences stand); "
            f"leave {them} out of label_names unless the data should have {them}")
    before = before_subsample["label"].value_counts()
    for label in sorted(set(in_data.index) - set(in_train.index)):
        name = names[label]
        if label in before.index:
            notes.append(
                f"class {name!r} has no training row: [data] max_train_samples = "
                f"{spec.max_train_samples} keeps none of its {before[label]} training rows, so the "
                "model cannot learn it (raise max_train_samples or leave it out)")
            continue
        where = [f"{int((frame['label'] == label).sum())} in {split}" for split, frame in others
                 if frame is not None and (frame["label"] == label).any()]
        notes.append(f"class {name!r} has no training row ({row_count(in_data[label])} in the data"
                     + (f": {', '.join(where)}" if where else "")
                     + "), so the model cannot learn it")
    for split, frame in others:
        if frame is None:
            continue
        lacking = sorted(set(in_train.index) - set(frame["label"]))
        if lacking:
            shown = some_of([f"{names[label]!r} ({in_train[label]} in train)" for label in lacking])
            them = "them" if len(lacking) > 1 else "it"
            # Every class counts in the macro averages (the same classes on every split, seed and
            # bootstrap resample): one with no row scores F1 0 there, which caps them.
            top = (len(names) - len(lacking) - len(absent)) / len(names)
            notes.append(f"{split} has no row of class{'es' if len(lacking) > 1 else ''} {shown}: "
                         f"its macro averages count {them} as 0 (macro_f1 at most {top:.3f}; the "
                         "same for every variant, so differences stand), and its other metrics say "
                         f"nothing of {them}")
    return notes


def _overlap_notes(train: pd.DataFrame, others: list[tuple[str, pd.DataFrame | None]]) -> list[str]:
    """Notes on validation and test rows whose text (and pair) train has too: the model has
    seen their answers, so their scores flatter it (a user reading 0.90 on a test of repeated
    tweets should know)."""
    def texts(frame: pd.DataFrame) -> pd.Series:
        return frame["text"] + ("\x1f" + frame["text_pair"] if "text_pair" in frame else "")

    seen = set(texts(train))
    notes = []
    for split, frame in others:
        if frame is None or not len(frame):
            continue
        repeated = int(texts(frame).isin(seen).sum())
        if repeated:
            notes.append(f"{split}: {repeated} of its {len(frame)} rows ({repeated / len(frame):.1%}) "
                         f"{'has' if repeated == 1 else 'have'} a text that train has too (exact "
                         "duplicates: their scores flatter the model)")
    return notes


def _check_train_classes(labels: np.ndarray, names: list[str], cause: str, advice: str) -> None:
    """Training needs rows of at least two classes; `cause` says what left too few, `advice`
    what to change."""
    present = np.unique(labels)
    if len(present) >= 2:
        return
    left = ("no training rows" if not len(present)
            else f"training rows of a single class ({names[present[0]]!r})")
    raise AblateInputError(f"{cause} leaves {left}; classification needs two classes or more: {advice}")


def check_train_size(splits: LabeledSplits, n: int | None) -> str | None:
    """The max_train_samples knob of a variant takes the rows with_train_size will take: refused
    when they hold a single class, or when there are fewer rows than it asks for (the variant would
    train on all of them under the name of a number it never saw). Returns a note naming the
    classes of train it keeps no row of (the model cannot learn them), or None."""
    labels = splits.train["label"].to_numpy()
    if n is not None and n > len(labels):
        raise AblateInputError(
            f"max_train_samples = {n} is more than the {len(labels)} training rows there are (after "
            f"[data] max_train_samples and the validation and test splits): lower it to {len(labels)} "
            "or less")
    if n is None or n == len(labels):
        return None
    kept = labels[stratified_indices(labels, n)]
    _check_train_classes(kept, splits.label_names,
                         f"max_train_samples = {n}", f"raise it to {len(np.unique(labels))} or more")
    classes, counts = np.unique(labels, return_counts=True)
    lost = [(splits.label_names[c], k) for c, k in zip(classes, counts, strict=True) if c not in kept]
    if not lost:
        return None
    if len(lost) == 1:
        name, count = lost[0]
        return (f"max_train_samples = {n} keeps none of the {count} training "
                f"row{'s' if count > 1 else ''} of class {name!r}, so it cannot learn it (a "
                "stratified subsample: raise it, or give the class more rows)")
    shown = some_of([f"{name!r} ({count})" for name, count in lost])
    return (f"max_train_samples = {n} keeps no training row of classes {shown}, so it cannot "
            "learn them (a stratified subsample: raise it, or give the classes more rows)")




# --------------------------------------------------------------------------- one split, for evaluation


def load_split(spec: DataSpec, split: str, notes: list[str] | None = None,
               source_columns: list[str] | None = None) -> tuple[pd.DataFrame, list[str] | None]:
    """One split of a dataset, cleaned like a study's (text, optional text_pair, label as
    given: names or ids), without carving or subsampling: what `ablate evaluate --dataset` reads,
    with the class names the data declares for its label column (a ClassLabel), if any.
    Rows keep their index in the file, so that a bad label can be named by its row. What the
    cleaning did (rows dropped, spaces stripped) is added to `notes`, as a study says it; the
    split's own column names to `source_columns` (what the cleaning left out, the caller may say)."""
    notes = notes if notes is not None else []
    raw, class_names = load_raw_splits(spec)
    if split not in raw:
        raise AblateInputError(
            f"{spec.dataset}: split {split!r} does not exist (splits: {', '.join(raw)})")
    if source_columns is not None:
        source_columns.extend(str(column) for column in raw[split].columns)
    _check_columns(raw[split], split, spec)
    class_label = spec.label_column if spec.label_column in class_names else None
    frame, dropped = _clean(raw[split], spec, split, class_label)
    if frame.empty:
        raise _no_usable_rows(spec.dataset, split, raw[split], spec)
    if dropped:
        notes.append(_dropped_note(split, raw[split], frame, class_label))
    lost = _spreadsheet_error_note(split, frame)
    if lost:
        notes.append(lost)
    _strip_labels({split: frame}, notes)
    return frame, class_names.get(spec.label_column)
