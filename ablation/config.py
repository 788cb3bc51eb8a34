"""The experiment file: TOML → validated, fully resolved dataclasses.

Every check happens here, before anything is loaded or trained, and every failure is one
``AblateInputError`` line naming the file, the key and what is allowed.
"""

from __future__ import annotations

import codecs
import contextlib
import dataclasses
import datetime
import difflib
import json
import math
import os
import re
import shlex
import sys
import tomllib
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import AblateInputError, as_list, as_typed, escaped_byte, set_shown


def home_path(text: str | Path) -> Path:
    """A path whose `~` is the home folder: quoted (or given by a program), no shell expanded it,
    as every path ablate reads (`~nobody/x`, a user with no home folder: the path as given, which
    then is not found)."""
    path = Path(text)
    if str(text).startswith("~"):
        with contextlib.suppress(RuntimeError):  # no home folder known: the path as given
            return path.expanduser()
    return path


# --------------------------------------------------------------------------- value checks
# Each check takes the raw TOML value and returns the clean value or raises ValueError("must be …").


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _float(low: float | None = None, high: float | None = None, *, low_open: bool = False,
           high_open: bool = False) -> Callable[[Any], float]:
    lo_br, hi_br = ("(" if low_open else "["), (")" if high_open else "]")
    lo_txt = "-inf" if low is None else f"{low:g}"
    hi_txt = "inf" if high is None else f"{high:g}"
    allowed = f"a finite number in {lo_br}{lo_txt}, {hi_txt}{')' if high is None else hi_br}"

    def check(value: Any) -> float:
        if not _is_number(value) or not math.isfinite(value):
            raise ValueError(f"must be {allowed}")
        value = float(value)
        if low is not None and (value < low or (low_open and value == low)):
            raise ValueError(f"must be {allowed}")
        if high is not None and (value > high or (high_open and value == high)):
            raise ValueError(f"must be {allowed}")
        return value

    return check


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError("must be true or false")
    return value


MAX_INT = 2**31


def _int(low: int | None = None, *, also: tuple[int, ...] = ()) -> Callable[[Any], int]:
    allowed = "an integer" + (f" >= {low}" if low is not None else "")
    if also:
        allowed += " or " + " or ".join(str(a) for a in also)

    def check(value: Any) -> int:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError(f"must be {allowed}")
        if value in also:
            return value
        if low is not None and value < low:
            raise ValueError(f"must be {allowed}")
        if value >= MAX_INT:  # no count or size here comes near it; torch and numpy would overflow
            raise ValueError(f"must be {allowed} and below 2**31")
        return value

    return check


def _epochs(value: Any) -> float:
    """> 0, and below 2**31 as every count is: 1e308 epochs made the trial's steps infinite (an
    OverflowError traceback in `validate`)."""
    epochs = _float(0, low_open=True)(value)
    if epochs >= MAX_INT:
        raise ValueError("must be a finite number in (0, inf) and below 2**31")
    return epochs


def _optional(check: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """TOML has no null; an optional key is simply left out, or given as "" / false to unset it."""

    def optional_check(value: Any) -> Any:
        if value is None or value == "" or value is False:
            return None
        return check(value)

    return optional_check


def _string(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("must be a non-empty string")
    return value


def _shown_string(value: Any) -> str:
    """A path or id that every command's header prints and report.md names: a control character
    in it would drive the terminal (ESC) or break the line and the report's markdown (newline)."""
    text = _string(value)
    if not text.isprintable():
        raise ValueError("must have no control characters (newline, tab, escape, ...): it is "
                         "printed on the terminal and in report.md"
                         + (f"; {BACKSLASH_ESCAPES}" if set(text) & set("\t\n\r\b\f") else ""))
    return text


# A Windows path in a basic string: "data\train.csv" holds a tab, "C:\Users" is not TOML.
BACKSLASH_ESCAPES = ("written with a backslash? In a \"...\" string it starts an escape (\\t is a "
                     "tab, \\U a code point): write the path with / (data/train.csv) or between "
                     "single quotes ('data\\train.csv'), which keep it")


MAX_NAME_LENGTH = 100  # study and variant names name folders (reports/<name>, trials/<variant>-s<seed>)


def _study_name(value: Any) -> str:
    name = _string(value)
    if set(name) & set("/\\") or name.strip() in (".", "..") or not name.isprintable():
        raise ValueError("must be a name without / or \\, other than . and .., with no control "
                         "characters: it names the study's folder, reports/<name>")
    if len(name) > MAX_NAME_LENGTH:
        raise ValueError(f"is {len(name)} characters long; at most {MAX_NAME_LENGTH}, as it names "
                         "the study's folder")
    return name


def default_study_name(path: Path, advice: str = "set [experiment] name = \"...\" or rename the "
                       "file") -> str:
    """The file's stem, the study's name where [experiment] name is unset, checked as a name is
    (`..toml` would make study '.', whose output folder reports/. is reports/ itself). A UTF-8
    name a locale that names files in ASCII read as bytes (lone surrogates: no name's characters)
    is said so, not called control characters."""
    odd = not_utf8(path.stem)
    if odd is not None:
        raise AblateInputError(f"{path}: the study name defaults to the file's name, "
                               f"{path.stem!r}, {odd}; {advice}")
    try:
        return _study_name(path.stem)
    except ValueError as err:
        raise AblateInputError(f"{path}: the study name defaults to the file's name, "
                               f"{path.stem!r}, which {err}; {advice}") from None


NAME_MAX = 255  # bytes in one file or folder name: Linux's, macOS's and NTFS's limit


def _path_string(value: Any) -> str:
    """A path, Hub id or URL: a shown string none of whose parts between slashes is longer than
    a file system allows (checking whether `x` * 300 exists raised OSError, a traceback)."""
    return _within_name_max(_shown_string(value))


def _within_name_max(text: str) -> str:
    if any(len(part.encode()) > NAME_MAX for part in re.split(r"[/\\]", text)):
        raise ValueError(f"has a part between slashes longer than {NAME_MAX} bytes, more than a "
                         "file system allows in one file or folder name")
    return text


def _storage_url(value: Any) -> str:
    """The forms that open but keep nothing, or that a library reports in its own terms."""
    url = _shown_string(value)
    if url.startswith(("sqlite:", "journal:")):  # a file's path; a server's URL names no file (its
        _within_name_max(url)  # password may be an 800-character IAM token)
    if url in ("sqlite://", "sqlite:///", "sqlite:///:memory:"):
        raise ValueError("is an in-memory database that keeps nothing once the command ends; give a "
                         "file, e.g. sqlite:///reports/study.db")
    if url.startswith("journal:") and not url.startswith("journal:///"):
        raise ValueError("must be journal:/// and then an absolute path, e.g. "
                         "journal:///data/study.journal for /data/study.journal")
    if "://" not in url and not url.startswith("journal:"):  # SQLAlchemy's "Could not parse"
        raise ValueError("is a path, not a storage URL: for a SQLite file there, write "
                         f"storage = {json.dumps('sqlite:///' + url, ensure_ascii=False)}")
    if url.startswith("sqlite:") and "?" in url:
        # Every command reads the file's path from the URL: status and report looked for a
        # file named "study.db?timeout=30", where run opened study.db.
        raise ValueError("has ?options, which ablate does not take on a SQLite storage (it sets "
                         "the connection's own): give the file alone, "
                         f"storage = {json.dumps(url.split('?', 1)[0], ensure_ascii=False)}")
    return url


def _project_name(value: Any) -> str:
    """SwanLab refuses other project names when a run starts: found at load time instead."""
    name = _string(value)
    if len(name) > 100 or not re.fullmatch(r"[0-9a-zA-Z_\-+.]+", name):
        raise ValueError("must be 1 to 100 of the characters SwanLab allows in a project name: "
                         "letters a-z A-Z, digits, - _ . +")
    return name


def _one_of(*choices: str) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if value not in choices:
            raise ValueError("must be one of " + ", ".join(repr(c) for c in choices))
        return value

    return check


def _table(value: Any) -> dict:
    if not isinstance(value, dict):
        raise ValueError("must be a table, e.g. { num_hidden_layers = 2 }")
    return dict(value)


def _model_config(value: Any) -> dict:
    """A table of config overrides. A size or count (num_hidden_layers, hidden_size, ...) below 1
    would build a model with no layers or no width, and -1 layers trains a model without any."""
    table = _table(value)
    for key, setting in table.items():
        if key in NOT_OVERRIDABLE:
            raise ValueError(f"sets {key} = {toml_value(setting)}: {NOT_OVERRIDABLE[key]}; leave it out")
        if _holds_date(setting):  # config.json has no dates: json.dumps of the config failed
            raise ValueError(f"sets {key} = {toml_value(setting)}: a model config value is a number, "
                             "string, boolean, list or table, not a TOML date or time")
        if _holds_non_finite(setting):  # config.json (JSON) has no inf or nan; no setting takes one
            raise ValueError(f"sets {key} = {toml_value(setting)}: a model config number must be "
                             "finite (not inf or nan)")
        if _is_dropout_key(key) and _is_number(setting) and not 0 <= setting < 1:
            # torch's own check compares, so nan passed validate and failed the trial
            raise ValueError(f"sets {key} = {toml_value(setting)}: a dropout must be in [0, 1), "
                             "as the dropout knobs are")
        if key.endswith(("_eps", "_epsilon")) and _is_number(setting) and setting < 0:
            raise ValueError(f"sets {key} = {toml_value(setting)}: an epsilon must be >= 0 (a "
                             "negative one makes every loss nan)")
        if _is_size_key(key) and _is_number(setting) and not 1 <= setting < MAX_INT:
            raise ValueError(f"sets {key} = {toml_value(setting)}: a size or count must be an "
                             "integer >= 1 and below 2**31")
        if _is_layer_count(key) and _is_number(setting) and setting > MAX_LAYERS:
            raise ValueError(
                f"sets {key} = {toml_value(setting)}: at most {MAX_LAYERS} layers (the deepest models "
                "in use have about 100; building millions, even as the empty skeleton that checks "
                "the overrides, takes hours and fills the memory)")
    return table


# Config keys no override may set: ablate sets the classes from the data after the overrides,
# trains single-label classification with cross-entropy, and keeps fp32 weights (`precision`).
_CLASSES = ("ablate sets it from the data's classes (or [data] label_names) after the overrides, "
            "so the trial would train as if it were not set")
_HALF = ("ablate loads and trains fp32 weights whatever the config's dtype, so the trial would train "
         "as if it were not set; precision = \"bf16\" or \"fp16\" autocasts over them")
NOT_OVERRIDABLE = {
    "num_labels": _CLASSES, "id2label": _CLASSES, "label2id": _CLASSES,
    "problem_type": ("ablate trains single-label classification with cross-entropy: another problem "
                     "type fails in training, or with class_weight, label_smoothing or "
                     "gradient_accumulation_steps is not used"),
    "dtype": _HALF, "torch_dtype": _HALF,
}


# The deepest transformers in use have about 100 layers; building a model's skeleton (on the meta
# device, no memory for weights) still makes every layer's modules, about 1.5 ms each: a billion
# layers never finished and filled the machine's memory in `validate`.
MAX_LAYERS = 1000


def _is_layer_count(key: str) -> bool:
    return key.endswith(("_layers", "n_layer"))


def _holds_non_finite(value: Any) -> bool:
    """A TOML inf or nan anywhere in a value (a list's or an inline table's too)."""
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(_holds_non_finite(v) for v in value.values())
    return isinstance(value, list) and any(_holds_non_finite(v) for v in value)


def _is_dropout_key(key: str) -> bool:
    """A dropout probability, by the names transformers configs give them."""
    return (key in DROPOUT_KEYS or key in CLASSIFIER_DROPOUT_KEYS
            or key.endswith(("dropout", "_pdrop", "dropout_prob", "dropout_rate")))


def _holds_date(value: Any) -> bool:
    """A TOML date or time anywhere in a value (a list's or an inline table's too)."""
    if isinstance(value, (datetime.date, datetime.time)):
        return True
    if isinstance(value, dict):
        return any(_holds_date(v) for v in value.values())
    return isinstance(value, list) and any(_holds_date(v) for v in value)


def _is_size_key(key: str) -> bool:
    """Config keys that are sizes or counts, by the names transformers configs give them."""
    return (key.startswith(("num_", "n_")) or key in ("dim", "hidden_dim", "d_model", "d_ff", "d_kv")
            or key.endswith(("_size", "_layers", "_heads", "_embeddings", "_dim")))


# Around a label: spaces, and the characters no one sees that an editor or a copy from a web page
# leaves there (zero-width space, word joiner, byte-order mark, left-to-right and right-to-left marks).
_AROUND_LABEL = re.compile(r"^[\s\u200b\u2060\ufeff\u200e\u200f]+|[\s\u200b\u2060\ufeff\u200e\u200f]+$")


def clean_label(name: str) -> str:
    """A string label as ablate compares it: in NFC ('é' one character, as Windows and Linux
    write it; macOS may write 'e' and a combining accent, which looks the same), without spaces
    or invisible characters around it."""
    return _AROUND_LABEL.sub("", unicodedata.normalize("NFC", name))


# Unicode categories of the characters that break a table's rows or drive the terminal: control
# characters (line break, tab, escape) and the line and paragraph separators.
CONTROL_CATEGORIES = ("Cc", "Zl", "Zp")


def has_control_characters(text: str) -> bool:
    """A line break, tab, escape or other control character (or a line or paragraph separator)
    in `text`: a class name holding one breaks the rows of the tables that print it."""
    return any(unicodedata.category(c) in CONTROL_CATEGORIES for c in text)


def _label_names(value: Any) -> list[str]:
    """Names of classes 0..N-1, cleaned like string labels are (clean_label); a repeated name
    would make two classes that predict can no longer tell apart."""
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and clean_label(v)
                                                           for v in value):
        raise ValueError("must be a non-empty list of strings")
    names = [clean_label(v) for v in value]
    if any(map(has_control_characters, names)):
        raise ValueError("must be names without control characters (a line break, tab or escape "
                         "inside one): they are printed in the report's and the terminal's tables")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError("repeats " + ", ".join(map(repr, repeated))
                         + ": give each class (ids 0..N-1, in order) its own name")
    return names


def _seeds(value: Any) -> list[int]:
    if (not isinstance(value, list) or not value
            or not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 2**32
                       for v in value)):
        raise ValueError("must be a non-empty list of integers in [0, 2**32), e.g. [42, 43, 44]")
    if len(set(value)) != len(value):
        raise ValueError("must not repeat a seed")
    return list(value)


def _class_weight(value: Any) -> str | list[float]:
    if value in ("none", "balanced"):
        return value
    if (isinstance(value, list) and value
            and all(_is_number(v) and v > 0 and math.isfinite(v) for v in value)):
        return [float(v) for v in value]
    raise ValueError('must be "none", "balanced" or a list of positive numbers, one per class')


# The model config keys the dropout knobs set (over [model] config and model_config): hidden and
# attention dropout as BERT-likes, DistilBERT/BART, Funnel and GPT-NeoX-likes, ModernBERT, GPT-2/Phi,
# GPT-Neo, StarCoder2 and T5 name them; the classifier's.
DROPOUT_KEYS = ("hidden_dropout_prob", "attention_probs_dropout_prob", "dropout", "attention_dropout",
                "hidden_dropout", "embedding_dropout", "mlp_dropout", "resid_pdrop", "embd_pdrop",
                "attn_pdrop", "resid_dropout", "embed_dropout", "residual_dropout", "dropout_rate")
CLASSIFIER_DROPOUT_KEYS = ("classifier_dropout", "seq_classif_dropout", "classifier_dropout_prob",
                           "summary_last_dropout", "cls_dropout", "pooler_dropout")
# ... DistilBERT, ALBERT, XLNet, DeBERTa (the dropout before its classifier, and its pooler's).
# Keys a head reads though its config class does not define them (DeBERTa's classifier takes
# cls_dropout where set, else hidden_dropout_prob): set on these model types, present or not.
UNDECLARED_CLASSIFIER_DROPOUT = {"deberta": ("cls_dropout",), "deberta-v2": ("cls_dropout",)}
# Heads with no dropout of their own: they use the encoder's, which only `dropout` sets.
SHARED_CLASSIFIER_DROPOUT = {"mpnet": "hidden_dropout_prob", "longformer": "hidden_dropout_prob",
                             "funnel": "hidden_dropout"}

# Schedulers that need arguments (min_lr, num_decay_steps) no knob passes: they fail every trial.
UNSUPPORTED_SCHEDULERS = ("cosine_with_min_lr", "cosine_warmup_with_min_lr", "warmup_stable_decay")


# Schedulers transformers has long had (a test checks them against its SchedulerType): a file naming
# one is taken without importing transformers and torch, which `status` and `report` never use
# (1.5 s of each). Any other name is checked against transformers itself.
KNOWN_SCHEDULERS = ("linear", "cosine", "cosine_with_restarts", "polynomial", "constant",
                    "constant_with_warmup", "inverse_sqrt", "reduce_lr_on_plateau")


def _scheduler(value: Any) -> str:
    if isinstance(value, str) and value in KNOWN_SCHEDULERS:
        return value
    from transformers.trainer_utils import SchedulerType

    names = [s.value for s in SchedulerType if s.value not in UNSUPPORTED_SCHEDULERS]
    if value not in names:
        raise ValueError("must be a transformers scheduler name: " + ", ".join(names))
    return value


def _knob(default: Any, check: Callable[[Any], Any], help: str) -> Any:
    return field(default=default, metadata={"check": check, "help": help})


# --------------------------------------------------------------------------- sections

METRICS = (
    "accuracy", "macro_f1", "weighted_f1", "macro_precision", "macro_recall",
    "weighted_precision", "weighted_recall", "log_loss", "eval_loss",
)
LOSS_METRICS = ("log_loss", "eval_loss")
TRACKING_MODES = ("offline", "local", "online", "disabled")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
SAVE_MODELS = ("best", "all", "none")


@dataclass(frozen=True)
class Recipe:
    """The training knobs; `[baseline]` sets them and each variant overrides some."""

    learning_rate: float = _knob(2e-5, _float(0, low_open=True), "peak learning rate")
    batch_size: int = _knob(16, _int(1), "train batch size (global with devices_per_trial > 1)")
    eval_batch_size: int = _knob(64, _int(1), "per-device evaluation batch size")
    gradient_accumulation_steps: int = _knob(1, _int(1), "optimizer step every N batches")
    epochs: float = _knob(3.0, _epochs, "training epochs")
    max_steps: int = _knob(-1, _int(1, also=(-1,)), "stop after N optimizer steps; -1: use epochs")
    max_length: int = _knob(128, _int(2), "truncate texts to N tokens")
    weight_decay: float = _knob(0.0, _float(0), "AdamW weight decay")
    warmup_ratio: float = _knob(0.0, _float(0, 1, high_open=True), "fraction of steps warming up")
    lr_scheduler: str = _knob("linear", _scheduler, "transformers scheduler name")
    dropout: float | None = _knob(None, _optional(_float(0, 1, high_open=True)),
                                  "hidden and attention dropout; default: the model's")
    classifier_dropout: float | None = _knob(None, _optional(_float(0, 1, high_open=True)),
                                             "dropout before the classifier; default: the model's")
    class_weight: str | list[float] = _knob("none", _class_weight,
                                            '"none", "balanced" or one weight per class')
    label_smoothing: float = _knob(0.0, _float(0, 1, high_open=True), "label smoothing factor")
    max_grad_norm: float = _knob(1.0, _float(0), "gradient clipping norm; 0 turns clipping off")
    early_stopping_patience: int = _knob(0, _int(0), "evaluations without improvement; 0: off")
    eval_steps: int = _knob(0, _int(0), "evaluate every N steps; 0: once per epoch")
    logging_steps: int = _knob(10, _int(1), "log train loss and grad norm every N steps")
    precision: str = _knob("auto", _one_of(*PRECISIONS),
                           "auto: bf16/fp16 on a GPU that has it, fp32 on CPU")
    group_by_length: bool = _knob(False, _bool, "train batches of similar lengths: less padding, "
                                  "faster; batches are less random")
    # Axes beyond the Trainer: how much data, which model.
    max_train_samples: int | None = _knob(None, _optional(_int(1)),
                                          "train on a stratified subsample of N examples")
    model: str | None = _knob(None, _optional(_path_string), "another Hub id or local model folder")
    model_config: dict | None = _knob(None, _optional(_model_config),
                                      "model config overrides, e.g. { num_hidden_layers = 2 }")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


KNOBS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Recipe))


@dataclass(frozen=True)
class ExperimentSection:
    name: str = _knob("", _study_name, "study name; default: the file's stem")
    description: str = _knob("", lambda v: v if isinstance(v, str) else _string(v), "free text")
    seeds: list[int] = _knob((42,), _seeds, "every variant runs once per seed")
    metric: str = _knob("macro_f1", _one_of(*METRICS), "selection metric on validation")
    direction: str = _knob("", _one_of("maximize", "minimize"),
                           "default: maximize for scores, minimize for losses")
    storage: str = _knob("", _storage_url, "Optuna storage URL; default: SQLite in output_dir")
    output_dir: str = _knob("", _path_string, "default: reports/<name>")
    trial_timeout: int | None = _knob(None, _optional(_int(1)),
                                      "seconds; a trial that runs longer fails")
    heartbeat: int = _knob(10, _int(1), "seconds between a running trial's heartbeats; a trial "
                           "silent for 3 heartbeats counts as dead and runs again")
    devices_per_trial: int = _knob(1, _int(1), "processes (GPUs, or CPU processes) that train one "
                                   "trial data-parallel with torchrun; batch_size is their global batch")
    checkpoint_steps: int = _knob(0, _int(0), "optimizer steps between resumable checkpoints (with "
                                  "optimizer state); a re-run trial resumes from its last one; 0: off")
    save_models: str = _knob("best", _one_of(*SAVE_MODELS),
                             "best: keep the best trial's model as best_model/; all: also every "
                             "trial's model and evaluation checkpoints; none: keep no weights")


@dataclass(frozen=True)
class DataSpec:
    dataset: str = _knob("", _path_string, "Hub id, or a local .csv/.jsonl/.parquet file or folder")
    config: str | None = _knob(None, _optional(_string), "Hub config name")
    revision: str | None = _knob(None, _optional(_string), "Hub revision pin")
    text_column: str = _knob("text", _string, "column with the text")
    text_pair_column: str | None = _knob(None, _optional(_string), "second text, for pairs")
    label_column: str = _knob("label", _string, "column with the label (ints or strings)")
    label_names: list[str] | None = _knob(None, _optional(_label_names),
                                          "names of int labels 0..N-1 when the data lacks them")
    train_split: str = _knob("train", _string, "training split")
    validation_split: str | None = _knob(None, _optional(_string),
                                         "default: carved from train (stratified)")
    validation_size: float = _knob(0.1, _float(0, 1, low_open=True, high_open=True),
                                   "fraction of train carved for validation")
    test_split: str | None = _knob("test", _optional(_string),
                                   'default "test" when the data has it; "" for none')
    test_size: float = _knob(0.0, _float(0, 1, high_open=True),
                             "fraction of train carved as the test split when the data has none")
    max_train_samples: int | None = _knob(None, _optional(_int(1)), "stratified subsample")
    max_eval_samples: int | None = _knob(None, _optional(_int(1)), "subsample of validation")
    max_test_samples: int | None = _knob(None, _optional(_int(1)), "subsample of test")


@dataclass(frozen=True)
class ModelSpec:
    name: str = _knob("", _path_string, "Hub id or local folder")
    revision: str | None = _knob(None, _optional(_string), "Hub revision pin")
    config: dict = _knob(None, _optional(_model_config), "overrides of the model config")


@dataclass(frozen=True)
class TrackingSpec:
    backend: str = _knob("swanlab", _one_of("swanlab", "none"), "experiment tracker")
    project: str = _knob("ablate", _project_name, "tracker project")
    mode: str = _knob("local", _one_of(*TRACKING_MODES), "SwanLab mode")


ABLATION_MODES = ("leave-one-out", "add-one", "both")


@dataclass(frozen=True)
class AblationSpec:
    """`[ablation]`: a set of named changes, removed one at a time from the full recipe
    (leave-one-out) and/or added one at a time to the baseline (add-one)."""

    mode: str
    changes: dict[str, dict[str, Any]]


def from_here(path: Path) -> Path:
    """`path` as the user would type it here: relative to the working folder when under it;
    otherwise absolute, which works from anywhere."""
    try:
        return path.relative_to(Path.cwd())
    except ValueError:
        return path


@dataclass(frozen=True)
class ExperimentSpec:
    """A validated experiment file, every default and path resolved."""

    path: Path
    text: str
    experiment: ExperimentSection
    data: DataSpec
    model: ModelSpec
    tracking: TrackingSpec
    baseline: Recipe
    variants: dict[str, dict[str, Any]]  # suffix -> overrides, as written in [variants]
    sweep: dict[str, list[Any]] = field(default_factory=dict)  # knob -> values, from [sweep]
    ablation: AblationSpec | None = None
    search: Any = None  # search.SearchSpec, from [search]
    has_baseline: bool = True  # the file (or --set) has a [baseline] section
    sets: tuple[str, ...] = ()  # the `--set KEY=VALUE` overrides applied, as typed
    # The `--set`s of the `run` that last queued the study's trials (records.with_run_sets), for
    # commands to paste: `ablate report FILE` without them would print commands on other data.
    run_sets: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return self.experiment.name

    def arguments(self, name: str, *arguments: str, sets: tuple[str, ...] = ()) -> list[str]:
        """`NAME FILE ARGUMENTS --set ...`: a command line on this same study. Without the
        study's `--set`s it would name another study (or other data); `sets` go after them, and
        replace theirs of the same key (a rerun keeping models, after a run that kept none)."""
        # The run's `--set`s, then this command's own (a storage or path given on this
        # machine), then `sets`.
        options = [part for item in _later_replace(self.run_sets, self.sets, sets)
                   for part in ("--set", item)]
        file = str(from_here(self.path))
        # `-v2.toml` would read as an option: `./-v2.toml` is the same file
        return [name, f"./{file}" if file.startswith("-") else file, *arguments, *options]

    def command(self, name: str, *arguments: str, sets: tuple[str, ...] = ()) -> str:
        """`ablate ...` (see `arguments`), shell-quoted, for a hint the user can paste: as a
        UTF-8 terminal types it, where an ASCII locale read its arguments (`as_typed`), so that
        report.md (UTF-8) can hold it."""
        return "ablate " + shlex.join(as_typed(part)
                                      for part in self.arguments(name, *arguments, sets=sets))

    @property
    def output_dir(self) -> Path:
        return Path(self.experiment.output_dir)

    @property
    def greater_is_better(self) -> bool:
        return self.experiment.direction == "maximize"

    def to_dict(self) -> dict[str, Any]:
        """The fully resolved recipe (what `resolved.json` and the tracker config hold)."""
        return {
            "experiment": dataclasses.asdict(self.experiment),
            "data": dataclasses.asdict(self.data),
            "model": dataclasses.asdict(self.model),
            "tracking": dataclasses.asdict(self.tracking),
            "baseline": self.baseline.to_dict(),
            "variants": self.variants,
            "sweep": self.sweep,
            "ablation": dataclasses.asdict(self.ablation) if self.ablation else None,
            "search": dataclasses.asdict(self.search) if self.search else None,
        }


SECTIONS = ("experiment", "data", "model", "tracking", "baseline", "variants", "sweep", "ablation",
            "search")
LOCAL_DATA_SUFFIXES = (".csv", ".tsv", ".jsonl", ".json", ".parquet", ".csv.gz", ".jsonl.gz")

# --------------------------------------------------------------------------- parsing


# What a knob is called elsewhere, too far from its name for a typo: by the Trainer's
# TrainingArguments and a model's config, and in generated variant names (lr, bs, cw, ...).
KNOB_ALIASES = {
    "per_device_train_batch_size": "batch_size", "per_device_eval_batch_size": "eval_batch_size",
    "num_train_epochs": "epochs", "warmup_steps": "warmup_ratio", "fp16": "precision",
    "bf16": "precision", "label_smoothing_factor": "label_smoothing",
    "hidden_dropout_prob": "dropout", "attention_probs_dropout_prob": "dropout",
}


# 0.7, not difflib's 0.6: a typo ('mdoe', 'tpee') scores 0.75 or more, while another word that
# shares letters ('bayes' against 'cmaes', 0.6) must not read as one
TYPO_CUTOFF = 0.7


def _did_you_mean(word: str, options: tuple[str, ...] | list[str]) -> str:
    # The same word in another case first: difflib scores 'NEG' against 'neg' 0
    close = [option for option in options if option.casefold() == word.casefold()][:1]
    close = close or difflib.get_close_matches(word, options, n=1, cutoff=TYPO_CUTOFF)
    if not close:  # a knob by another of its names, where knobs are what is allowed
        from .variants import CONFIG_SUFFIXES, SUFFIXES

        aliases = {**{short: knob for knob, short in SUFFIXES.items()},
                   **dict.fromkeys([*CONFIG_SUFFIXES, *CONFIG_SUFFIXES.values()], "model_config"),
                   **KNOB_ALIASES}
        close = [aliases[word]] if aliases.get(word) in options else []
    return f"; did you mean {close[0]!r}?" if close else ""


def _parse_section(cls: type, raw: Any, where: str, path: Path) -> Any:
    if not isinstance(raw, dict):
        raise AblateInputError(f"{path}: [{where}] must be a table")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    clean: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in fields:
            raise AblateInputError(
                f"{path}: unknown key {key!r} in [{where}]{_did_you_mean(key, list(fields))} "
                f"(allowed: {', '.join(fields)})")
        try:
            clean[key] = fields[key].metadata["check"](value)
        except ValueError as err:
            raise AblateInputError(f"{path}: [{where}] {key} = {toml_value(value)} {err}") from None
    return cls(**clean)


def _check_knob(key: str, value: Any, where: str, path: Path) -> Any:
    fields = {f.name: f for f in dataclasses.fields(Recipe)}
    try:
        value = fields[key].metadata["check"](value)
    except ValueError as err:
        raise AblateInputError(f"{path}: [{where}] {key} = {toml_value(value)} {err}") from None
    if key == "model" and value and home_path(value).exists():
        value = _resolve_path_like(value)  # a local folder, relative to the working folder
    if key == "model_config" and value == {}:
        raise AblateInputError(
            f"{path}: [{where}] model_config = {{}} changes nothing (the baseline's model); name at "
            "least one config key, e.g. { num_hidden_layers = 2 }")
    return value


# One example value per knob, for the hint of an empty [sweep] list.
SWEEP_EXAMPLES: dict[str, Any] = {
    "learning_rate": 5e-5, "batch_size": 32, "eval_batch_size": 128,
    "gradient_accumulation_steps": 2, "epochs": 5, "max_steps": 500, "max_length": 256,
    "weight_decay": 0.01, "warmup_ratio": 0.1, "lr_scheduler": "cosine", "dropout": 0.3,
    "classifier_dropout": 0.3, "class_weight": "balanced", "label_smoothing": 0.1,
    "max_grad_norm": 0.5, "early_stopping_patience": 3, "eval_steps": 50, "logging_steps": 5,
    "precision": "bf16", "group_by_length": True, "max_train_samples": 500,
    "model": "sentence-transformers/all-MiniLM-L6-v2", "model_config": {"num_hidden_layers": 2},
}


def toml_value(value: Any) -> str:
    """A value as it is written in TOML (true, 'x', { a = 1 }): error lines and hints show what
    the user wrote, in the file's own language, not Python's (True, {'a': 1})."""
    if value is None:  # TOML has no null: an unset knob is written "" (the report's search
        return '""'  # parameters, an unset dropout among them, are pasted into [variants])
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):  # a literal string where TOML allows one, as Python quotes it
        if "'" not in value and value.isprintable():
            return f"'{value}'"
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, (datetime.date, datetime.time)):  # TOML's dates and times: 2024-01-01
        return value.isoformat()
    if isinstance(value, float):  # 5e-5, not Python's 5e-05
        return re.sub(r"e([+-]?)0*(\d)", lambda m: f"e{m[1].replace('+', '')}{m[2]}", repr(value))
    return repr(value)


def parse_sweep(raw: Any, path: Path) -> dict[str, list[Any]]:
    """`[sweep]`: knob = [values]; each value is checked like a variant's override."""
    if not isinstance(raw, dict):
        raise AblateInputError(f"{path}: [sweep] must be a table of  knob = [values]")
    sweep: dict[str, list[Any]] = {}
    for key, values in raw.items():
        if key not in KNOBS:
            raise AblateInputError(
                f"{path}: [sweep] unknown knob {key!r}{_did_you_mean(key, KNOBS)} "
                f"(knobs: {', '.join(KNOBS)})")
        if not isinstance(values, list) or not values:
            raise AblateInputError(
                f"{path}: [sweep] {key} = {toml_value(values)} must be a non-empty list of values, "
                f"e.g. {key} = {toml_value(_sweep_example(key, values, path))}")
        sweep[key] = [_check_knob(key, value, "sweep", path) for value in values]
    return sweep


def _sweep_example(key: str, given: Any, path: Path) -> list[Any]:
    """The list a wrong [sweep] value meant: the value alone (`32`), the values of a text written
    with commas (`--set sweep.batch_size=8,16`), else the knob's example. Only values the knob
    takes: the hint must not show one that is refused in turn (batch_size = ['8,16'])."""
    candidates = [given]
    if isinstance(given, str):
        with contextlib.suppress(tomllib.TOMLDecodeError):
            candidates = tomllib.loads(f"v = [{given}]")["v"]
    try:
        for value in candidates:
            _check_knob(key, value, "sweep", path)
    except AblateInputError:
        return [SWEEP_EXAMPLES[key]]
    # An empty text (`--set sweep.batch_size=`) holds no values: `e.g. batch_size = []` showed
    # the empty list the line refuses.
    return candidates or [SWEEP_EXAMPLES[key]]


def parse_ablation(raw: Any, path: Path) -> AblationSpec:
    if not isinstance(raw, dict):
        raise AblateInputError(f"{path}: [ablation] must be a table with mode and [ablation.changes]")
    for key in raw:
        if key not in ("mode", "changes"):
            raise AblateInputError(
                f"{path}: unknown key {key!r} in [ablation]{_did_you_mean(key, ['mode', 'changes'])} "
                "(allowed: mode, changes)")
    mode = raw.get("mode", "leave-one-out")
    if mode not in ABLATION_MODES:
        raise AblateInputError(
            f"{path}: [ablation] mode = {mode!r} must be one of "
            + ", ".join(repr(m) for m in ABLATION_MODES))
    changes_raw = raw.get("changes")
    if not isinstance(changes_raw, dict) or not changes_raw:
        raise AblateInputError(
            f"{path}: [ablation.changes] must name at least one change, e.g. "
            'cw = { class_weight = "balanced" }')
    changes: dict[str, dict[str, Any]] = {}
    owner: dict[str, str] = {}
    for name, overrides in changes_raw.items():
        check_variant_suffix(name, path, section="ablation.changes")
        changes[name] = parse_overrides(overrides, f"ablation.changes.{name}", path)
        for knob in changes[name]:
            if knob in owner:
                raise AblateInputError(
                    f"{path}: [ablation.changes] {name!r} and {owner[knob]!r} both set {knob!r}; "
                    "each change must touch its own knobs so that it can be removed alone")
            owner[knob] = name
    return AblationSpec(mode=mode, changes=changes)


def parse_overrides(raw: Any, where: str, path: Path) -> dict[str, Any]:
    """Validate a variant's knob overrides; returns the clean values."""
    if not isinstance(raw, dict):
        raise AblateInputError(
            f"{path}: [{where}] must be a table of knob overrides, e.g. {{ batch_size = 32 }}")
    if not raw:
        raise AblateInputError(f"{path}: [{where}] changes nothing; name at least one knob")
    clean: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in KNOBS:
            hint = ('; quote variant names that contain a dot, e.g. "dropout0.3" = { ... }'
                    if isinstance(value, dict) else _did_you_mean(key, KNOBS))
            raise AblateInputError(
                f"{path}: [{where}] unknown knob {key!r}{hint} (knobs: {', '.join(KNOBS)})")
        clean[key] = _check_knob(key, value, where, path)
    return clean


def _parse_set_value(text: str, item: str) -> Any:
    """`--set` values are TOML values (2, 5e-5, "x", [1, 2]); anything else is a plain string,
    except what starts like a list, a table or a quoted string: that is a TOML value cut short."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError as err:
        if text.startswith(("[", "{", '"', "'")):
            raise AblateInputError(
                f"{set_shown(item)}: {text!r} is not a complete TOML value ({err}); quote the whole "
                "--set for the shell, e.g. --set 'experiment.seeds=[1, 2]'") from None
        return text


def _key_parts(key: str) -> list[str]:
    """A dotted TOML key, quotes and all: variants."dropout0.3".batch_size → variants,
    dropout0.3, batch_size (what the file's own [variants] "dropout0.3" = {...} names)."""
    try:
        table: Any = tomllib.loads(f"{key} = 0")
    except tomllib.TOMLDecodeError:
        return [part.strip() for part in key.strip().split(".")]
    parts = []
    while isinstance(table, dict) and len(table) == 1:
        name, table = next(iter(table.items()))
        parts.append(name)
    return parts


def _split_set(item: str) -> tuple[list[str], Any]:
    """`--set SECTION.KEY=VALUE` → (the key's parts, the parsed value); bad syntax is bad input."""
    key, sep, text = item.partition("=")
    parts = _key_parts(key)
    if not sep or len(parts) < 2 or not all(parts):
        raise AblateInputError(
            f"{set_shown(item)}: expected SECTION.KEY=VALUE, e.g. --set baseline.epochs=2")
    if parts[0] not in SECTIONS:
        raise AblateInputError(
            f"{set_shown(item)}: unknown section {parts[0]!r}{_did_you_mean(parts[0], SECTIONS)} "
            f"(sections: {', '.join(SECTIONS)})")
    if parts[0] == "variants":  # variant names may contain dots (dropout0.3)
        if len(parts) < 3:
            raise AblateInputError(
                f"{set_shown(item)}: expected variants.NAME.KNOB=VALUE")
        if len(parts) >= 4 and parts[-2] == "model_config":  # variants.NAME.model_config.KEY
            parts = ["variants", ".".join(parts[1:-2]), "model_config", parts[-1]]
        else:
            parts = ["variants", ".".join(parts[1:-1]), parts[-1]]
    text = as_typed(text.strip())
    odd = escaped_byte(text)
    if odd:  # an argument's byte that is not UTF-8 (a Latin-1 terminal): no file could hold it
        raise AblateInputError(f"{set_shown(item)}: not UTF-8 text ({odd}); give the value as UTF-8 "
                               "(a UTF-8 terminal types it so)")
    return parts, _parse_set_value(text, item)


def set_variant(item: str) -> str | None:
    """The [variants] name a `--set variants.NAME.KNOB=VALUE` sets a knob of; None for others."""
    parts, _ = _split_set(item)
    return parts[1] if parts[0] == "variants" else None


def apply_sets(raw: dict[str, Any], sets: list[str], path: Path) -> None:
    """Apply `--set KEY=VALUE` overrides to the raw TOML tables, in place."""
    for item in sets:
        parts, value = _split_set(item)
        table = raw
        for part in parts[:-1]:
            table = table.setdefault(part, {})
            if not isinstance(table, dict):
                raise AblateInputError(f"{set_shown(item)}: {part!r} is not a table in {path}")
        table[parts[-1]] = value


_SET_SECTIONS: dict[str, type] = {"experiment": ExperimentSection, "data": DataSpec,
                                  "model": ModelSpec, "tracking": TrackingSpec, "baseline": Recipe}


def check_set(item: str) -> None:
    """A `--set` key or value that is wrong is reported as the --set's, not the file's, mistake."""
    parts, value = _split_set(item)
    if parts[0] == "variants":
        section, key = f"variants.{parts[1]}", parts[2]
        fields = {f.name: f for f in dataclasses.fields(Recipe)}
        unknown = f"[{section}] unknown knob {key!r}"
    elif parts[0] in _SET_SECTIONS:
        section, key = parts[0], parts[1]
        fields = {f.name: f for f in dataclasses.fields(_SET_SECTIONS[parts[0]])}
        unknown = f"unknown key {key!r} in [{section}]"
    else:
        return  # [sweep], [ablation], [search]: checked with the file
    if key not in fields:
        raise AblateInputError(f"{set_shown(item)}: {unknown}{_did_you_mean(key, list(fields))} "
                               f"(allowed: {', '.join(fields)})")
    if len(parts) == 2 or (parts[0] == "variants" and len(parts) == 3):
        try:
            fields[key].metadata["check"](value)
        except ValueError as err:
            raise AblateInputError(
                f"{set_shown(item)}: [{section}] {key} = {toml_value(value)} {err}") from None


class _SetBlame:
    """An error in a section a `--set` wrote is the --set's mistake, and named so: where the file
    has no such section (the --set made it), or the error names the key the --set gave."""

    def __init__(self, sets: list[str], in_file: set[str], path: Path) -> None:
        self.sets, self.in_file, self.path = sets, in_file, path

    @contextlib.contextmanager
    def on(self, *sections: str) -> Iterator[None]:
        try:
            yield
        except AblateInputError as err:
            text = str(err)
            prefix = next((f"{path}: " for path in (self.path, self.path.resolve())
                           if text.startswith(f"{path}: ")), None)
            for item in reversed(self.sets):
                parts = _split_set(item)[0]
                if parts[0] not in sections or prefix is None:
                    continue
                made = parts[0] not in self.in_file
                # `--set search.space={}` replaced a whole table the error names ("[search.space]
                # must name at least one knob"): the file, which has one, was blamed.
                whole = len(parts) > 1 and f"[{'.'.join(parts)}]" in text
                if made or whole or any(_mentions(text, part) for part in parts[1:]):
                    raise AblateInputError(f"{set_shown(item)}: {text[len(prefix):]}") from None
            raise


def _mentions(text: str, name: str) -> bool:
    """Whether an error line names a key or variant as the one at fault: a word of its own,
    quoted or not, outside the lists of what is allowed and the did-you-mean."""
    text = re.sub(r"\((?:knobs|allowed|sections|keys): [^)]*\)|did you mean '[^']*'", "", text)
    return re.search(rf"(?:^|[\s\['\"(]){re.escape(name)}(?:$|[\s\]'\":);=])", text) is not None


def _resolve_path_like(value: str) -> str:
    path = home_path(value)
    try:
        return str(path.resolve())
    except UnicodeEncodeError:  # a name this locale cannot write (LC_ALL=C, PYTHONUTF8=0): not_utf8
        return os.path.abspath(path)


NO_SUCH_MODEL_FOLDER = ("no such folder (relative paths start at the working folder); give a folder "
                        "written by save_pretrained, or a Hub id like org/name")


def beside_the_file(path: Path, value: Any) -> str:
    """Where a relative dataset or model path names nothing here but names what is beside the
    experiment file (a run from another folder): that, and where relative paths start."""
    if not isinstance(value, str) or not value or home_path(value).is_absolute() \
            or home_path(value).exists():
        return ""
    folder = path.parent
    if folder.resolve() == Path.cwd().resolve() or not (folder / value).exists():
        return ""
    return (f"; {str(folder / value)!r} is there beside the file, but relative paths start at the "
            f"folder ablate runs in ({Path.cwd()}), not the file's: run it from {folder}, or give "
            "that path")


def looks_like_path(name: str) -> bool:
    """./x, ../x, /x, ~/x: a local path, never a Hub id (those are org/name)."""
    return name.startswith((".", "/", "~"))


def looks_local_dataset(dataset: str) -> bool:
    """A path (./x, /x, ~/x, x.csv, or anything that exists here), not a Hub id."""
    return (dataset.startswith((".", "/", "~")) or dataset.lower().endswith(LOCAL_DATA_SUFFIXES)
            or home_path(dataset).exists())


def resolve_storage(url: str) -> str:
    """Make a relative SQLite URL absolute, so the printed URL works from any folder; a journal
    file under `~` is the home folder's, as a SQLite file's is (it was opened as /~/...)."""
    prefix = "sqlite:///"
    rest = url[len(prefix):]
    if url.startswith(prefix) and rest and not rest.startswith("/") and rest != ":memory:":
        return prefix + _resolve_path_like(rest)
    journal = "journal:///"
    rest = url[len(journal):]
    if url.startswith(journal) and rest.startswith("~") and home_path(rest).is_absolute():
        return journal + _resolve_path_like(rest).lstrip("/")
    return url


# libpq's `password` parameter of a URL (`postgresql://user@host/db?password=...`), which
# SQLAlchemy passes on to the driver as it does the password before the host.
_PASSWORD_PARAMETER = re.compile(r"([?&]password=)[^&#\s'\"]+", re.IGNORECASE)


def password_parameter_hidden(text: str) -> str:
    """`text` with the value of each URL's password parameter as ***."""
    return _PASSWORD_PARAMETER.sub(r"\1***", text)


def shown_storage(url: str) -> str:
    """The storage URL to print or write in a report: its password, if it holds one (before its
    host or as its password parameter), as *** (`postgresql://user:***@host/db`), so that a
    terminal log or a shared report.md does not give the database away. Commands to paste keep
    the URL as given."""
    return password_parameter_hidden(re.sub(r"^([\w+]+://[^:/@]*:)[^@]+@", r"\1***@", url, count=1))


def set_key(item: str) -> str:
    """The KEY of a `--set KEY=VALUE` as typed."""
    return item.split("=", 1)[0].strip()


def _later_replace(*groups: Sequence[str]) -> list[str]:
    """The `--set`s of every group in order, less those a later group sets again (its KEY)."""
    kept: list[str] = []
    later: set[str] = set()
    for group in reversed(groups):
        kept[:0] = [item for item in group if set_key(item) not in later]
        later |= {set_key(item) for item in group}
    return kept


def last_set(sets: Sequence[str], *keys: str) -> str | None:
    """The last `--set KEY=VALUE` (as typed) whose KEY is one of `keys`: the one that took effect,
    to blame for what it set."""
    return next((item for item in reversed(sets) if set_key(item) in keys), None)


def load_spec(path: str | Path, sets: str | list[str] | None = None,
              need_data: bool = True) -> ExperimentSpec:
    """Read, validate and resolve an experiment file (with `--set` overrides applied).

    need_data=False: commands that read only what a study stored (report, status, dashboard,
    predict, evaluate on other data) do not refuse a local dataset that has moved or gone.
    One string in `sets` is one item. `~` in `path` is the home folder, as in the file's paths."""
    path, sets = home_path(path), as_list(sets)
    odd = escaped_byte(as_typed(str(path)))
    if odd:  # a Latin-1 name: report.md (UTF-8) and every command ablate prints name the file
        raise AblateInputError(
            f"{path}: the experiment file's path is not UTF-8 ({odd})"
            "; report.md and the commands ablate prints name it, and UTF-8 cannot hold it: rename "
            "it (or its folder) to a UTF-8 name")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        if path.is_symlink():  # its target gone: a disk not mounted, a file moved
            raise AblateInputError(f"{path}: a symlink to {path.readlink()}, which is missing") from None
        raise AblateInputError(f"{path}: no such experiment file") from None
    except OSError as err:
        raise AblateInputError(f"{path}: cannot read experiment file: {err.strerror}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:  # where, and in what where its bytes tell (Notepad's UTF-16, GBK)
        from .data import not_utf8 as undecodable

        raise AblateInputError(f"{path}: {undecodable(data)}; save the file as UTF-8") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        escape = any(words in str(err) for words in ("Unescaped '\\'", "Invalid hex value"))
        raise AblateInputError(f"{path}: invalid TOML: {err}"
                               + (f"; {BACKSLASH_ESCAPES}" if escape else "")) from None

    for key in raw:
        if key not in SECTIONS:
            raise AblateInputError(
                f"{path}: unknown section [{key}]{_did_you_mean(key, SECTIONS)} "
                f"(sections: {', '.join(SECTIONS)})")
    keys = [item.split("=", 1)[0].strip() for item in sets or []]
    for position, item in enumerate(sets or []):
        if keys[position] not in keys[position + 1:]:  # a later --set of the key replaces it
            check_set(item)
    in_file = set(raw)  # the sections the file itself has
    apply_sets(raw, sets or [], path)
    blame = _SetBlame(sets or [], in_file, path)

    with blame.on("experiment", "data", "model", "tracking", "baseline"):
        experiment = _parse_section(ExperimentSection, raw.get("experiment", {}), "experiment", path)
        data_spec = _parse_section(DataSpec, raw.get("data", {}), "data", path)
        model = _parse_section(ModelSpec, raw.get("model", {}), "model", path)
        tracking = _parse_section(TrackingSpec, raw.get("tracking", {}), "tracking", path)
        baseline = _parse_section(Recipe, raw.get("baseline", {}), "baseline", path)

    if not data_spec.dataset:
        raise AblateInputError(f"{path}: [data] dataset is required (a Hub id or a local file)")
    if not model.name:
        raise AblateInputError(f"{path}: [model] name is required (a Hub id or a local folder)")
    with blame.on("data"):
        _check_distinct_columns(data_spec, path)
    if data_spec.validation_split and data_spec.validation_split == data_spec.train_split:
        where = named_by(path, sets, "data.validation_split", "data.train_split", "data")
        raise AblateInputError(
            f"{where}: [data] validation_split must differ from train_split "
            f"({data_spec.train_split!r}); omit it to carve validation from train")
    if data_spec.test_split and data_spec.test_split in (data_spec.train_split,
                                                         data_spec.validation_split):
        default = "" if "test_split" in raw.get("data", {}) else " (the default)"
        where = named_by(path, sets, "data.test_split", "data.train_split", "data.validation_split",
                          "data")
        raise AblateInputError(
            f"{where}: [data] test_split = {data_spec.test_split!r}{default} must differ from the "
            "train and validation splits: the test split is never used for training or selection; "
            'set test_split = "" for none')

    variants_raw = raw.get("variants", {})
    if not isinstance(variants_raw, dict):
        raise AblateInputError(f"{path}: [variants] must be a table of  suffix = {{ knob = value }}")
    variants: dict[str, dict[str, Any]] = {}
    with blame.on("variants"):
        for suffix, overrides in variants_raw.items():
            check_variant_suffix(suffix, path)
            variants[suffix] = parse_overrides(overrides, f"variants.{suffix}", path)
    with blame.on("sweep"):
        sweep = parse_sweep(raw["sweep"], path) if "sweep" in raw else {}
    with blame.on("ablation"):
        ablation = parse_ablation(raw["ablation"], path) if "ablation" in raw else None
    search = None
    if "search" in raw:
        from .search import parse_search

        with blame.on("search"):
            search = parse_search(raw["search"], path)
        if search.pruner != "none" and experiment.devices_per_trial > 1:
            where = named_by(path, sets, "search.pruner", "search", "experiment.devices_per_trial",
                              "experiment")
            raise AblateInputError(
                f"{where}: [search] pruner = {search.pruner!r} cannot prune a trial trained on "
                f"devices_per_trial = {experiment.devices_per_trial} processes; use pruner = \"none\" "
                "or devices_per_trial = 1")
        _check_batch_range_splits(search, experiment.devices_per_trial, path, sets)

    # Resolve defaults that depend on other keys, and paths relative to the working folder.
    name = experiment.name or default_study_name(path)
    natural = "minimize" if experiment.metric in LOSS_METRICS else "maximize"
    if experiment.direction and experiment.direction != natural:  # every verdict upside down
        given = last_set(sets or [], "experiment.direction", "experiment.metric")
        where = set_shown(given) if given else f"{path}: [experiment]"
        kind = "a loss, lower is better" if natural == "minimize" else "a score, higher is better"
        raise AblateInputError(
            f"{where}: direction = {experiment.direction!r} with metric = {experiment.metric!r} "
            f"({kind}) would rank the worst trial best; leave direction out (it follows the "
            f"metric) or set it to {natural!r}")
    direction = natural
    output_dir = _resolve_path_like(experiment.output_dir or f"reports/{name}")
    storage = resolve_storage(experiment.storage or f"sqlite:///{output_dir}/study.db")
    experiment = dataclasses.replace(
        experiment, name=name, direction=direction, output_dir=output_dir, storage=storage,
        seeds=list(experiment.seeds))
    if looks_local_dataset(data_spec.dataset):
        for key in ("config", "revision"):  # a local file or folder is read as it is: never used
            if getattr(data_spec, key) is not None:
                where = named_by(path, sets, f"data.{key}", "data.dataset", "data")
                raise AblateInputError(
                    f"{where}: [data] {key} = {getattr(data_spec, key)!r} is a Hub dataset's "
                    f"{'config name' if key == 'config' else 'revision pin'}, but dataset = "
                    f"{data_spec.dataset!r} is a local file or folder, read as it is; drop {key}")
        local = home_path(data_spec.dataset)
        resolved = _resolve_path_like(data_spec.dataset)
        _check_utf8_path(path, sets, "data", "dataset", raw.get("data", {}).get("dataset"), resolved)
        if need_data and not local.exists():
            given = last_set(sets or [], "data.dataset")
            where = set_shown(given) if given else f"{path}: [data] dataset = {data_spec.dataset!r}"
            if local.is_symlink():  # its target gone: a disk not mounted, a file moved
                raise AblateInputError(f"{where}: a symlink to {local.readlink()}, which is missing")
            if local.is_absolute():  # no working folder changes it; `~/x` as looked for
                raise AblateInputError(f"{where}: no such file or folder"
                                       + (f" ({local})" if str(local) != data_spec.dataset else ""))
            beside = beside_the_file(path, data_spec.dataset)
            if beside:
                raise AblateInputError(f"{where}: no such file or folder here{beside}")
            raise AblateInputError(f"{where}: no such file or folder (relative paths start at the "
                                   "working folder)")
        data_spec = dataclasses.replace(data_spec, dataset=resolved)
    if home_path(model.name).exists():
        model = dataclasses.replace(model, name=_resolve_path_like(model.name))
    model = dataclasses.replace(model, config=dict(model.config or {}))
    for section, key, resolved in (("experiment", "output_dir", output_dir),
                                   ("experiment", "storage", storage),
                                   ("model", "name", model.name)):
        _check_utf8_path(path, sets, section, key, raw.get(section, {}).get(key), resolved)

    # The file by the name given (its folder resolved): a symlink's target names another study,
    # and what reads the file again (workers, printed commands) must name this one.
    spec = ExperimentSpec(
        path=path.parent.resolve() / path.name, text=text, experiment=experiment, data=data_spec, model=model,
        tracking=tracking, baseline=baseline, variants=variants, sweep=sweep, ablation=ablation,
        search=search, has_baseline="baseline" in raw, sets=tuple(sets or ()))
    from .variants import named_variants

    with blame.on("variants", "sweep", "ablation"):
        named_variants(spec)  # a name produced twice is an error before anything runs
    return spec


def _check_batch_range_splits(search: Any, devices: int, path: Path,
                              sets: Sequence[str] | None) -> None:
    """A [search.space] batch_size range must propose only batches that devices_per_trial
    processes can split: validate and run check its ends (and each point of a short stepped
    range), so { low = 8, high = 32 } with 2 processes passed, and the search stopped at its first
    odd proposal, retried on every later run (the space could no longer change)."""
    dim = search.space.get("batch_size")
    if devices == 1 or dim is None or dim.kind != "int":
        return
    if dim.log or dim.low % devices or (dim.step or 1) % devices:
        from .search import RANGE_KEYS

        where = named_by(path, sets, "search.space.batch_size", "search.space", "search",
                         "experiment.devices_per_trial", "experiment")
        shown = ", ".join(f"{key} = {toml_value(getattr(dim, key))}" for key in RANGE_KEYS
                          if getattr(dim, key) not in (None, False))
        raise AblateInputError(
            f"{where}: [search.space] batch_size = {{ {shown} }}: with devices_per_trial = "
            f"{devices} every batch_size must be a multiple of {devices}, and a range proposes "
            f"every value from low by step (any integer with log = true); give low and step "
            f"multiples of {devices}, e.g. {{ low = {devices * 4}, high = {devices * 16}, "
            f"step = {devices} }}, or a list of batch sizes")


def _check_utf8_path(path: Path, sets: Sequence[str] | None, section: str, key: str,
                     written: Any, resolved: str) -> None:
    """A path that resolves to a name that is not UTF-8 (a folder from a latin-1 system, the
    working folder or a symlink's target): validate passed it, and run ended in pyarrow's (or
    the report's) UnicodeEncodeError traceback."""
    odd = not_utf8(resolved)
    if odd is not None:
        where = named_by(path, sets, f"{section}.{key}", section)
        raise AblateInputError(
            f"{where}: [{section}] "
            + (f"{key} = {written!r}" if written is not None else f"{key} (the default)")
            + f" is {resolved!r}, {odd}")


def not_utf8(path: str) -> str | None:
    """Why a path that is not UTF-8 (a name from a latin-1 system, read with surrogateescape)
    cannot be used, naming its first such byte; None for a UTF-8 path."""
    if codecs.lookup(sys.getfilesystemencoding()).name != "utf-8":
        odd = _past_this_locale(path)
        if odd is not None:
            return odd
    try:
        path.encode("utf-8")
    except UnicodeEncodeError as err:
        code = ord(path[err.start])
        what = f"byte {code - 0xDC00:#04x}" if 0xDC80 <= code <= 0xDCFF else repr(path[err.start])
        return (f"a path that is not UTF-8 ({what} in a folder's name): the libraries ablate "
                "reads and writes with cannot open it; rename that folder, or use one whose path "
                "is UTF-8")
    return None


def _past_this_locale(path: str) -> str | None:
    """Where this Python names files in its locale's encoding, not UTF-8 (LC_ALL=C with
    PYTHONUTF8=0: ASCII; a latin-1 or GB18030 locale), a path past ASCII is a file of other bytes
    than the libraries' (pyarrow, safetensors: UTF-8), or of none (a UnicodeEncodeError): the way
    out is UTF-8 mode, not renaming. None where both name the same bytes, or where the bytes on
    disk are not UTF-8 (`not_utf8` names the byte)."""
    past = (f"a path past ASCII, which this Python names files by in "
            f"{sys.getfilesystemencoding()} (its locale's encoding), not in UTF-8 as the "
            "libraries ablate reads and writes with do, so they cannot open it; run ablate with "
            "PYTHONUTF8=1 (or in a UTF-8 locale: LC_ALL=C.UTF-8), or use an ASCII path")
    try:
        on_disk = os.fsencode(path)
    except UnicodeEncodeError:  # a character the locale has no bytes for
        return past
    try:
        return None if on_disk.decode("utf-8") == path else past
    except UnicodeDecodeError:  # a byte read from disk (surrogateescape), or the locale's
        return None if escaped_byte(path) else past


def named_by(path: Path, sets: Sequence[str] | None, *keys: str) -> str:
    """Whom an error line between `keys` names: the --set that gave one of them last (the file
    says otherwise, and is not at fault), else the experiment file."""
    given = last_set(sets or [], *keys)
    return set_shown(given) if given else str(path)


def _check_distinct_columns(data: DataSpec, path: Path) -> None:
    """The text, the pair and the label must be three columns: a label read as the text (or a
    text paired with itself) would train on the answer or on nothing new."""
    columns = [("text_column", data.text_column), ("text_pair_column", data.text_pair_column),
               ("label_column", data.label_column)]
    for i, (key, column) in enumerate(columns):
        for other, other_column in columns[i + 1:]:
            if column is not None and column == other_column:
                raise AblateInputError(
                    f"{path}: [data] {key} and {other} are both {column!r}: the text, the text "
                    "pair and the label must be different columns")


# The characters of a variant name, which names its trials' folders (trials/<variant>-s<seed>):
# the names written in a file, and those ablate makes ([sweep] suffixes, search_<n>).
NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._+-")


def check_variant_suffix(suffix: str, path: Path, section: str = "variants") -> None:
    if not suffix or not set(suffix) <= NAME_CHARS:
        raise AblateInputError(
            f"{path}: [{section}] name {suffix!r} may use only ASCII letters (a-z, A-Z), digits "
            "and . _ + -")
