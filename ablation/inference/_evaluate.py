"""`ablate evaluate`: every metric of a model, or of each kept checkpoint of a trial, on labelled
data; the tokenization, truncation and metrics are the study's, so that the best model evaluated
on the study's test split gives the test metrics the study stored for that trial.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..config import home_path
from ..errors import AblateInputError, set_shown, some_of
from ..models import MODEL_INFO
from . import _model
from ._predict import shown, terminal_columns

# --------------------------------------------------------------------------- evaluate


@dataclass
class Evaluation:
    """What `ablate evaluate` reports for one model on one labelled split."""

    examples: int
    label_names: list[str]
    metrics: dict[str, float]  # metrics.py's scalar metrics, per-class F1, eval_loss
    per_class: dict[str, Any]  # scikit-learn classification_report(output_dict=True)
    per_class_text: str  # the same, as scikit-learn prints it
    confusion: list[list[int]]  # rows: true classes, columns: predicted
    runtime_s: float
    samples_per_s: float
    device: str
    precision: str

    def to_json(self) -> dict[str, Any]:
        return {"examples": self.examples, "labels": self.label_names, "metrics": self.metrics,
                "per_class": self.per_class, "confusion": self.confusion,
                "runtime_s": self.runtime_s, "samples_per_s": self.samples_per_s,
                "device": self.device, "precision": self.precision}


def label_ids(frame: pd.DataFrame, label_names: list[str], where: str, reading: str | None = None,
              column: str = "label") -> np.ndarray:
    """The frame's labels as the model's class ids: every label a name the model knows
    (its label2id), or every label an integer id below its class count; `reading` ("names",
    "ids": evaluate --labels) says which. Unsaid, labels that are both (a model whose names are
    digits other than their ids: star ratings "1".."5" for ids 0..4) and name other classes read
    each way are refused: a guess would score every row against another class, silently."""
    from ..config import _did_you_mean, clean_label
    from ..data import BOOLEAN_CLASSES, BOOLEAN_LABELS, ascii_digits, labels_hidden

    if labels_hidden(frame):
        raise AblateInputError(
            f"{where} has no labels (every label is -1, withheld as in a hidden test set): "
            "evaluate needs labelled rows; `ablate predict` classifies unlabelled texts")
    labels = frame["label"]
    as_text = labels.astype(str).map(clean_label)
    index = {name: i for i, name in enumerate(label_names)}
    is_name = as_text.isin(index)
    # booleans are the classes False and True; a model trained on them before that has the
    # names 0 and 1, which they are still read as
    as_ids = {"False": 0, "True": 1} if label_names == ["0", "1"] else {}
    numbers = pd.to_numeric(labels.map(lambda v: as_ids.get(v, ascii_digits(v)) if isinstance(v, str)
                                       else v), errors="coerce")  # '１' (full width) is 1
    valid_id = numbers.notna() & (numbers == numbers.round()) & numbers.between(0, len(label_names) - 1)
    ids = f"0..{len(label_names) - 1}"
    if reading is None and is_name.all() and valid_id.all():
        differ = as_text.map(index) != numbers
        if differ.any():
            row, shown = _first_row(frame, differ)
            value = as_text[differ].iloc[0]
            raise AblateInputError(
                f"{where}, column {column!r}: every label is both a label name of the model and "
                f"a class id {ids}, and the two readings name other classes (row {row}, label "
                f"{shown}: as a name, class id {index[value]}; as an id, class "
                f"{label_names[int(float(value))]!r}); say which with --labels names or --labels ids")
    if reading != "ids" and is_name.all():
        return as_text.map(index).to_numpy(dtype=int)
    if reading != "names" and valid_id.all():
        return numbers.to_numpy(dtype=int)
    if reading is None and is_name.any() and valid_id.any() and (is_name | valid_id).all():
        (name_row, name), (id_row, class_id) = _first_row(frame, is_name), _first_row(frame, valid_id)
        raise AblateInputError(
            f"{where}: labels mix the model's label names (row {name_row}: {name}) and class ids "
            f"(row {id_row}: {class_id}); give every label as a name ({listed(label_names)}) "
            f"or every label as an id {ids}")
    if reading == "ids":
        row, value = _first_row(frame, ~valid_id)
        raise AblateInputError(f"{where}, row {row}: label {value} is not a class id {ids} of the "
                               "model, as --labels ids reads them")
    flagged = ~is_name if reading == "names" or is_name.any() else ~valid_id
    row, value = _first_row(frame, flagged)
    written = as_text[flagged].iloc[0]
    if frame.attrs.get(BOOLEAN_LABELS) and written in ("False", "True"):  # JSON's false, read so
        raise AblateInputError(
            f"{where}, row {row}: label {written.lower()}, a boolean, is the class {written!r}, "
            f"which is not one of the model's label names ({listed(label_names)}); "
            f"{BOOLEAN_CLASSES}: write the labels as the model's names, in quotes, or as its "
            f"class ids {ids}")
    # 'Positive' for the model's 'positive': the name it is closest to, in any case
    hint = _did_you_mean(as_text[flagged].iloc[0], label_names)
    if reading == "names":
        raise AblateInputError(
            f"{where}, row {row}: label {value} is not one of the model's label names "
            f"({listed(label_names)}), as --labels names reads them{hint}")
    raise AblateInputError(
        f"{where}, row {row}: label {value} is not one the model knows: give its label names "
        f"({listed(label_names)}) or class ids {ids}{hint}")


def listed(names: list[str]) -> str:
    """Every class name, each quoted where one holds a comma or spaces around it (errors.some_of)."""
    return some_of(names, len(names))


def _first_row(frame: pd.DataFrame, flagged: pd.Series) -> tuple[int, str]:
    """The file row and the label, as written, of the first flagged row."""
    from ..data import first_flagged, show_cell

    row, value = first_flagged(frame, flagged)
    return row, show_cell(value)


def evaluate(folder: Path, frame: pd.DataFrame, batch_size: int | None = None,
             max_length: int | None = None,
             progress: Callable[[int], None] | None = None,
             tokenizer: Any = None) -> Evaluation:
    """Every metric of the model in `folder` on `frame` (text, optional text_pair, label ids),
    truncated at `max_length` (a checkpoint's trial's), else where the folder says. `tokenizer`:
    the folder's, where its check loaded it already (load_classifier)."""
    import time

    import torch
    import torch.nn.functional as F
    from sklearn.metrics import classification_report

    from ..metrics import classification_metrics, confusion

    tokenizer, model, precision = _model.load_classifier(folder, tokenizer=tokenizer)
    label_names = _model.label_names_of(model.config)
    pairs = frame["text_pair"].astype(str).tolist() if "text_pair" in frame.columns else None
    labels = frame["label"].to_numpy(dtype=np.int64)
    started = time.perf_counter()
    logits = _model.class_logits(model, tokenizer, frame["text"].astype(str).tolist(), pairs,
                          max_length=_model.max_length_of(folder, tokenizer, model, max_length),
                          batch_size=batch_size, precision=precision, progress=progress)
    runtime = time.perf_counter() - started
    metrics = {"eval_loss": float(F.cross_entropy(torch.from_numpy(logits), torch.tensor(labels)))}
    metrics |= classification_metrics(logits, labels, label_names)
    predictions = logits.argmax(-1)
    classes = list(range(len(label_names)))
    report = {"labels": classes, "target_names": label_names, "digits": 4, "zero_division": 0}
    return Evaluation(
        examples=len(frame), label_names=label_names, metrics=metrics,
        per_class=classification_report(labels, predictions, output_dict=True, **report),
        per_class_text=classification_report(  # a name's line break would break its rows
            labels, predictions, **(report | {"target_names": [shown(n) for n in label_names]})),
        confusion=confusion(logits, labels, len(label_names)),
        runtime_s=runtime, samples_per_s=len(frame) / runtime if runtime > 0 else 0.0,
        device=str(model.device), precision=precision)


def format_evaluation(result: Evaluation) -> str:
    """Metrics, scikit-learn's per-class report, the confusion matrix and the speed, as text."""
    from ..metrics import SCALAR_METRICS

    names = [*SCALAR_METRICS, "eval_loss"]
    lines = ["metric               value"]
    lines += [f"{name:<20} {result.metrics[name]:.4f}" for name in names if name in result.metrics]
    names = [shown(n) for n in result.label_names]  # 'line\\nbreak': a table keeps its rows
    lines += ["", "per class (scikit-learn classification_report):",
              _wide_names(result.per_class_text.rstrip(), names),
              "", "confusion matrix (rows: true label, columns: predicted):"]
    width = max(6, *(terminal_columns(n) for n in names),
                *(len(str(v)) for row in result.confusion for v in row))
    lines.append(" " * width + " " + " ".join(_right(n, width) for n in names))
    for name, row in zip(names, result.confusion, strict=True):
        lines.append(f"{_right(name, width)} " + " ".join(f"{v:>{width}}" for v in row))
    lines += ["", f"inference: {result.examples} examples in {result.runtime_s:.2f} s, "
                  f"{result.samples_per_s:.1f} samples/s ({result.device}, {result.precision})"]
    return "\n".join(lines)


def _right(text: str, width: int) -> str:
    """The text right-aligned in `width` terminal columns (a CJK character takes two)."""
    return " " * (width - terminal_columns(text)) + text


def _wide_names(report: str, names: list[str]) -> str:
    """scikit-learn's classification_report pads its first column by characters: a CJK class name
    (差评) takes two columns a character and pushes its row's numbers right. Re-padded here by
    terminal columns, its first column as wide as scikit-learn's or the widest name."""
    if all(name.isascii() for name in names):
        return report
    first = max(len("weighted avg"), *(len(name) for name in names))  # as scikit-learn sizes it
    shown = max(first, *(terminal_columns(name) for name in names))
    return "\n".join(_right(line[:first].lstrip(), shown) + line[first:] if line else line
                     for line in report.split("\n"))


# --------------------------------------------------------------------------- checkpoints


def checkpoint_folders(spec: Any, key: str) -> list[Path]:
    """A trial's kept checkpoints (trials/<key>/checkpoints/checkpoint-<step>), by step."""
    from ..models import keep_all_command, trial_dir

    kept = trial_dir(spec, key, "--checkpoints") / "checkpoints"
    folders = [p for p in kept.glob("checkpoint-*")
               if p.name.split("-")[-1].isdigit() and (p / "config.json").is_file()]
    if not folders:
        raise AblateInputError(
            f"--checkpoints {key!r}: the trial kept no checkpoints ({kept} has no checkpoint-*); "
            "[experiment] save_models = \"all\" keeps the checkpoint of every evaluation: "
            f"`{keep_all_command(spec, key)}`")
    return sorted(folders, key=lambda p: int(p.name.split("-")[-1]))


# --------------------------------------------------------------------------- which data


STUDY_SPLITS = ("train", "validation", "test")


def evaluation_frame(spec: Any, label_names: list[str], dataset: str | None, config: str | None,
                     split: str | None, text_column: str | None, label_column: str | None, *,
                     pair_column: str | None, notes: list[str] | None = None,
                     default_split: str = "test", labels: str | None = None,
                     pair_column_given: str | None = None,
                     trained_columns: dict[str, Any] | None = None) -> tuple[pd.DataFrame, str]:
    """The labelled rows to evaluate on, with the model's class ids, and where they come from.

    Without --dataset: the study's own splits exactly as its trials saw them (validation carved
    from train, subsamples taken). With --dataset: that split of it, every row (a single file is
    read whole: it has no splits to choose from). The second text is read from `pair_column`,
    the one the model was trained with (_model.trained_pair_column), None: single texts; where the
    study file says otherwise, a note says which is read; `pair_column_given`
    (--text-pair-column) names that column in --dataset where it is called otherwise. `labels`
    (--labels) says whether its labels are the model's label names or its class ids. A model
    folder alone (no `spec`) reads --dataset's columns by the names it was trained with
    (`trained_columns`: its ablate.json's text_column and label_column), else `text`, `label`."""
    import dataclasses

    from ..config import DataSpec, looks_local_dataset
    from ..data import load_split, load_study_splits, split_of_file

    if dataset is not None and not dataset.strip():  # Path("") is the working folder
        raise AblateInputError("--dataset is empty; give a Hub id or a local file or folder, or "
                               "leave --dataset out to use the study's own data")
    given, local = dataset, dataset is not None and looks_local_dataset(dataset)
    if local:  # '~/x.csv' quoted, so the shell left the ~ to us
        dataset = str(home_path(dataset))
    whole_file = local and Path(dataset).is_file()
    if whole_file:
        named = split_of_file(Path(dataset))  # or train, as a study reads a single file
        if split is not None and split not in (named, "train"):
            raise AblateInputError(
                f"--split {split!r}: --dataset {given} is one file, evaluated whole; drop "
                "--split (a folder's files name its splits: train.csv, test.csv, ...)")
        split = split or named
    split = split or default_split
    if dataset is None:
        if spec is None:
            raise AblateInputError("evaluate: --dataset is required when MODEL_OR_STUDY is a model "
                                   "folder (a Hub id, or a local .csv/.jsonl/.parquet file or folder)")
        if split not in STUDY_SPLITS:
            raise AblateInputError(
                f"--split {split!r}: without --dataset the study's own data is used, whose splits "
                f"are {', '.join(STUDY_SPLITS)} (as its trials saw them)")
        trained = _read_as_trained(spec, pair_column)
        try:
            splits = load_study_splits(trained)
        except AblateInputError as err:
            raise AblateInputError(_lacks_pair_column(str(err), spec, pair_column)) from None
        frame = {"train": splits.train, "validation": splits.validation, "test": splits.test}[split]
        if frame is None:
            raise AblateInputError(
                f"--split test: the data of study {spec.name!r} has no test split; use "
                "--split validation, or --dataset for other data")
        _check_study_rows(trained, splits.fingerprint(), split, trained is not spec, splits.source)
        disagreement = _pair_disagreement(spec, pair_column)
        if disagreement and notes is not None:
            notes.append(disagreement)
        if splits.label_names != label_names:
            raise AblateInputError(
                f"the model's labels ({listed(label_names)}) are not the study's "
                f"({listed(splits.label_names)}); give --dataset with labels the model knows")
        return frame, f"{spec.data.dataset}, split {split} (as the study's trials saw it)"

    if pair_column_given is not None and pair_column is None:
        raise AblateInputError(
            f"--text-pair-column {pair_column_given!r}: the model was trained on single texts "
            "(its ablate.json), so it reads no second text; leave --text-pair-column out")
    trained_columns = trained_columns or {}
    base = spec.data if spec is not None else DataSpec(**{
        key: trained_columns[key] for key in ("text_column", "label_column")
        if trained_columns.get(key)})
    data_spec = dataclasses.replace(
        base, dataset=dataset, config=config, revision=None, train_split=split,
        text_column=text_column or base.text_column, label_column=label_column or base.label_column,
        text_pair_column=pair_column_given or pair_column)
    pair = data_spec.text_pair_column
    if pair is not None and pair in (data_spec.text_column, data_spec.label_column):
        which = "text" if pair == data_spec.text_column else "label"
        if pair_column_given is not None:
            said = f"--text-pair-column {pair!r} is the {which} column too"
        else:  # the model's own second-text column, named by the option for another column
            option = {"text": ("--text-column", text_column),
                      "label": ("--label-column", label_column)}[which]
            named = f"{option[0]} {pair!r}" if option[1] else f"the {which} column {pair!r}"
            said = (f"{named} is the column the model reads its second text from (it was trained "
                    "on text pairs; --text-pair-column names another)")
        raise AblateInputError(f"{said}: the text, the pair and the label must be different columns")
    if data_spec.text_column == data_spec.label_column:
        column = data_spec.text_column
        raise AblateInputError(
            (f"--text-column and --label-column are both {column!r}" if text_column and label_column
             else f"--label-column {column!r} is the text column too (give --text-column for the "
             "texts)" if label_column
             else f"--text-column {column!r} is the label column too (give --label-column for the "
             "labels)") + ": the text and the label must be different columns")
    if local and not Path(dataset).exists():
        raise AblateInputError(f"--dataset {given!r}: no such file or folder (relative paths "
                               "start at the working folder)")
    columns: list[str] = []
    try:
        frame, declared = load_split(data_spec, split, notes, columns)
    except AblateInputError as err:
        given_options = {"--text-column": bool(text_column), "--label-column": bool(label_column),
                         "--text-pair-column": pair_column_given is not None}
        origins = {kind: "the study's" if spec is not None else "the model's, in its ablate.json"
                   if trained_columns.get(f"{kind}_column") else "the default"
                   for kind in ("text", "label")}
        raise AblateInputError(_as_options(str(err), given_options, origins)) from None
    disagreement = _pair_disagreement(spec, pair_column)
    if disagreement and notes is not None:
        notes.append(disagreement)  # it says what is read, of a text_pair column too
    elif (_model.PAIR_COLUMN in columns and not data_spec.text_pair_column and notes is not None
            and _model.PAIR_COLUMN not in (data_spec.text_column, data_spec.label_column)):
        notes.append(f"column {_model.PAIR_COLUMN!r} of {given} is not read: the model was trained on "
                     f"single texts, so it is scored on column {data_spec.text_column!r} alone")
    where = f"{dataset}: split {split!r}"
    if declared:
        frame = _declared_names(frame, declared, label_names, where, notes)
    frame = frame.assign(label=label_ids(frame, label_names, where, labels, data_spec.label_column))
    if whole_file:
        return frame, f"{dataset} (the whole file)"
    return frame, f"{dataset}" + (f" ({config})" if config else "") + f", split {split}"


def _declared_names(frame: pd.DataFrame, declared: list[str], label_names: list[str], where: str,
                    notes: list[str] | None) -> pd.DataFrame:
    """Class ids of data that names its classes (a ClassLabel: sst2's 0 is 'negative', 1
    'positive') are that data's own numbering, not the model's: they are mapped by name (the
    model's label2id), and a class the model does not know is refused. A model whose labels are
    transformers' placeholders (LABEL_0, ...) or its ids ("0", "1", ... of a study whose data gave
    ids alone) names no classes: the data's ids are taken as its own."""
    if all(re.fullmatch(r"(?:LABEL_)?\d+", name) for name in label_names):
        return frame
    ids = pd.to_numeric(frame["label"], errors="coerce")
    if not (ids.notna().all() and ids.between(0, len(declared) - 1).all()):
        return frame  # label_ids names the row at fault
    names = [declared[int(i)] for i in ids]
    present = set(names)
    unknown = [name for name in declared if name in present and name not in label_names]
    if unknown:
        raise AblateInputError(
            f"{where}: the data names its classes ({listed(declared)}) and the model does not "
            f"know {', '.join(map(repr, unknown))}: its labels are {listed(label_names)}; "
            "evaluate it on data of those classes")
    if declared != label_names[:len(declared)] and notes is not None:
        notes.append(f"labels mapped by class name: the data's ids name {listed(declared)}, "
                     f"the model's {listed(label_names)}")
    return frame.assign(label=names)


def _read_as_trained(spec: Any, pair_column: str | None) -> Any:
    """The study's spec, its [data] reading the second text the model was trained with (its
    ablate.json) where the study file now says another; a --set of that key no longer applies."""
    import dataclasses

    from ..config import set_key

    if pair_column == spec.data.text_pair_column:
        return spec
    return dataclasses.replace(
        spec, data=dataclasses.replace(spec.data, text_pair_column=pair_column),
        sets=tuple(item for item in spec.sets if set_key(item) != "data.text_pair_column"))


def _pair_disagreement(spec: Any, pair_column: str | None) -> str | None:
    """One line saying which second text is read where the study file (or a --set) names
    another text_pair_column than the model was trained with; None where they agree."""
    from ..config import from_here, last_set

    if spec is None or spec.data.text_pair_column == pair_column:
        return None
    file, given = from_here(spec.path), last_set(spec.sets, "data.text_pair_column")
    named = (set_shown(given) if given else
             f"[data] text_pair_column = {spec.data.text_pair_column!r} of {file}")
    if pair_column is None:
        return (f"{named} is not read: the model was trained on single texts (its {MODEL_INFO}), "
                f"so it is scored on column {spec.data.text_column!r} alone")
    if spec.data.text_pair_column is None:
        return f"{_trained_on_pairs(pair_column)}, which [data] of {file} does not name: that column is read"
    return f"{named} is not read: {_trained_on_pairs(pair_column)}, so that column is read"


def _trained_on_pairs(pair_column: str) -> str:
    return (f"the model was trained on text pairs whose second text is column {pair_column!r} "
            f"(its {MODEL_INFO})")


def _lacks_pair_column(message: str, spec: Any, pair_column: str | None) -> str:
    """The study's data lacks the column of the second text the model was trained with (the
    study file names another, or none): the data package's line blames [data], which did not name it."""
    from ..config import from_here

    missing = f"[data] text_pair_column = {pair_column!r}: "
    if spec.data.text_pair_column == pair_column or not message.startswith(missing):
        return message  # [data] names it: the study file's own mistake, blamed on it
    file = from_here(spec.path)
    study = (f"which [data] of {file} does not name" if spec.data.text_pair_column is None
             else f"not {spec.data.text_pair_column!r} as [data] of {file} says")
    # the data package's "did you mean" names a column of this data: the model's cannot be renamed.
    lacking = re.sub(r"; did you mean ('(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\")\?", "",
                     message.removeprefix(missing), count=1)
    return (f"{_trained_on_pairs(pair_column)}, {study}: {lacking}; evaluate it on data with a "
            f"{pair_column!r} column (--dataset)")


def _check_study_rows(spec: Any, fingerprint: str, split: str, read_as_trained: bool = False,
                      source: str | None = None) -> None:
    """The study's splits are rebuilt from its [data]: refused when the files now give other rows
    than its trials trained and were tested on (the carved test split would be other rows, some
    of them trained on). `read_as_trained`: [data] reads the model's second text, not the study
    file's; a study stored with the file's reading has fingerprinted other columns."""
    from .. import queue
    from ..sweep import DATA_FINGERPRINT, check_same_study
    from ..sweep._study import DATA_SOURCE

    try:
        study = queue.open_study(spec, create=False)
    except queue.StudyNotFound:  # a model folder moved without its study
        return
    ran_on = (study.user_attrs.get("data") or {}).get("text_pair_column", spec.data.text_pair_column)
    if read_as_trained and ran_on != spec.data.text_pair_column:
        return  # the note says which second text is read
    stored = study.user_attrs.get(DATA_FINGERPRINT)  # None: a study from before fingerprints
    if stored is not None and stored != fingerprint:
        # [data] keys other than the study's (evaluate without the --set options it ran with)
        # are named, as run names them; the dataset's location may differ (files move).
        check_same_study(study, spec, keys=("data",), elsewhere=("data.dataset",),
                         advice="its splits would be other rows than its trials saw: give the "
                                "--set options the study ran with, or --dataset and --split to "
                                "evaluate on rows of your choice")
        stored_source = study.user_attrs.get(DATA_SOURCE)
        why = ("this ablate makes other rows of the same files than the ablate that ran the study"
               if source is not None and stored_source == source else
               "the files changed, or an older ablate made other rows of them"
               if stored_source is None else "the files changed")
        raise AblateInputError(
            f"{spec.data.dataset} no longer gives the rows study {spec.name!r} ran on (content "
            f"fingerprint {stored}, now {fingerprint}: {why}), so its {split} split cannot be "
            "rebuilt as its trials saw it: restore the data (or the ablate version), or give "
            "--dataset and --split to evaluate on rows of your choice")


def _as_options(message: str, given: dict[str, bool], origins: dict[str, str]) -> str:
    """The data package names experiment-file keys; here the user typed command-line options, or left
    them out (then the column is the study's, the model's or the default: `origins` by kind, and
    the option that names another is said)."""
    message = message.replace("[data] config is not set", "--config is not given").replace(
        "set [data] config to one of", "give --config, one of").replace(
        "[data] config =", "--config").replace("leave config out", "leave --config out")
    message = message.replace("[data] dataset =", "--dataset").replace(
        "[data] text_pair_column =", "--text-pair-column" if given.get("--text-pair-column")
        else "text_pair_column (the model was trained on text pairs; --text-pair-column names "
        "another) =")
    for kind, option in (("text", "--text-column"), ("label", "--label-column")):
        key = f"[data] {kind}_column ="
        if given[option]:
            message = message.replace(key, option)
        else:
            origin = origins[kind]
            value = r"('(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\")"  # a repr()'d string
            message = re.sub(f"{re.escape(key)} {value}",
                             rf"{kind} column \1 ({origin}; {option} names another)", message)
    return message
