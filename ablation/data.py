"""Data: load a Hub dataset or local files, map labels, carve splits, tokenize once (cached on disk).

Rows flow: raw splits → cleaned (empty texts / missing labels dropped, counted) → label ids →
validation carved from train when the data has none → stratified subsamples → tokenized once per
(content, tokenizer, max_length) and cached under the study's ``cache/`` folder. Padding is left to
the collator, per batch.
"""

from __future__ import annotations

import codecs
import csv
import dataclasses
import gzip
import hashlib
import io
import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .config import LOCAL_DATA_SUFFIXES, DataSpec, ExperimentSpec, _did_you_mean, last_set
from .errors import AblateInputError, first_line

log = logging.getLogger(__name__)

MAX_CLASS_ID = 100_000  # a label beyond it is an id or count column, not a class
SAMPLING_SEED = 0  # fixed: every trial and every seed sees the same split
TOKEN_COLUMNS = ("input_ids", "attention_mask", "token_type_ids", "labels")
CSV_SUFFIXES = (".csv", ".csv.gz", ".tsv")  # the files read as rows of separated fields
CELLS_ARE_TEXT = "ablate_cells_are_text"  # frame.attrs key: read from a CSV/TSV, numbers untyped
JSON_LAYOUTS = ('supported JSON layouts: an array of examples [{"text": ..., "label": ...}, ...], '
                "JSON Lines (one example object per line), an object of columns "
                '{"text": [...], "label": [...]}, or pandas\' to_json default '
                '{"text": {"0": ...}, "label": {"0": ...}}')


@dataclass
class LabeledSplits:
    """Cleaned text splits with integer labels, before tokenization."""

    train: pd.DataFrame
    validation: pd.DataFrame
    test: pd.DataFrame | None
    label_names: list[str]
    dropped: dict[str, int] = field(default_factory=dict)  # split -> rows dropped as empty
    notes: list[str] = field(default_factory=list)

    def split_items(self) -> list[tuple[str, pd.DataFrame]]:
        items = [("train", self.train), ("validation", self.validation)]
        return items + ([("test", self.test)] if self.test is not None else [])

    def summary(self) -> str:
        """Rows per split (after max_*_samples) and the labels: what `run`, `worker`, `validate`
        and `run --dry-run` say the trials train and are scored on."""
        test = 0 if self.test is None else len(self.test)
        return (f"train {len(self.train)}, validation {len(self.validation)}, test {test} rows; "
                f"labels {', '.join(self.label_names)}")

    def fingerprint(self) -> str:
        """A content hash of all rows, labels and label names: the key of every cache."""
        digest = hashlib.sha256("\x1f".join(self.label_names).encode())
        for name, frame in self.split_items():
            digest.update(name.encode())
            for column in frame.columns:
                digest.update(column.encode())
                digest.update(pd.util.hash_pandas_object(frame[column], index=False).values.tobytes())
        return digest.hexdigest()[:16]


@dataclass
class TokenizedData:
    train: Any  # datasets.Dataset with TOKEN_COLUMNS
    validation: Any
    test: Any | None
    label_names: list[str]
    train_labels: np.ndarray
    # split -> (split sorted by length, positions restoring its order); shared by every trial
    length_sorted: dict[str, tuple[Any, np.ndarray]] = field(default_factory=dict, repr=False,
                                                             compare=False)
    token_ids: np.ndarray | None = field(default=None, repr=False, compare=False)  # train_token_ids

    def train_token_ids(self) -> np.ndarray:
        """Every token id of the training split, once: the word embeddings' rows training can reach.
        Read from the Arrow column in chunks, so a large split is never held as Python lists."""
        if self.token_ids is None:
            import pyarrow.compute as pc

            chunks = [pc.unique(pc.list_flatten(batch["input_ids"])).to_numpy().astype(np.int64)
                      for batch in self.train.with_format("arrow").iter(batch_size=10_000)]
            self.token_ids = np.unique(np.concatenate(chunks)) if chunks else np.zeros(0, dtype=np.int64)
        return self.token_ids

    def by_length(self, split: str) -> tuple[Any, np.ndarray]:
        """`validation` or `test` sorted by length (see sorted_by_length), sorted once per study
        rather than once per trial."""
        if split not in self.length_sorted:
            self.length_sorted[split] = sorted_by_length(getattr(self, split))
        return self.length_sorted[split]


def sorted_by_length(dataset: Any) -> tuple[Any, np.ndarray]:
    """The evaluation set sorted by length, so that its batches carry little padding, and the
    positions that put its predictions back in the set's own order."""
    lengths = np.fromiter((len(ids) for ids in dataset["input_ids"]), dtype=np.int64,
                          count=len(dataset))
    order = np.argsort(lengths, kind="stable")
    return dataset.select(order), np.argsort(order)


# --------------------------------------------------------------------------- loading


def _read_local_file(path: Path, columns: tuple[str, ...] = ()) -> pd.DataFrame:
    """One local file as a frame whose rows are the file's examples, in file order, indexed by
    their position (0, 1, ...). `columns`: the columns the study names (text, label, ...), which
    tell a JSON object keyed by example from one keyed by column."""
    name = path.name.lower()
    try:
        if name.endswith(CSV_SUFFIXES):
            _check_separator(path, name)
        frame = _read_table(path, name, columns)
    except UnicodeDecodeError:
        raise AblateInputError(f"{path}: {_first_undecodable(path)}; save it as UTF-8") from None
    except pd.errors.EmptyDataError:
        raise AblateInputError(f"{path}: the file is empty; expected a header row and one row "
                               "per example") from None
    except (ValueError, TypeError, pd.errors.ParserError, OSError, EOFError) as err:
        # TypeError: pandas meeting a JSON Lines line that is an array, a number or null.
        # EOFError: a .gz file cut short.
        if name.endswith((".jsonl", ".jsonl.gz")) or (name.endswith(".json")
                                                      and _first_line_is_an_object(path)):
            raise AblateInputError(f"{path}: {_first_bad_json_line(path)}") from None
        reason = first_line(err)
        fields = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", reason)
        if fields and name.endswith(CSV_SUFFIXES):  # a row past the first with an unquoted comma
            expected, line, saw = fields.groups()
            raise AblateInputError(f"{path}: line {line} has {saw} fields, the header {expected}: "
                                   f"{_quote_advice(name)}") from None
        raise AblateInputError(
            f"{path}: cannot be read as a table of examples (one row per example, with a text and "
            f"a label column): {reason}") from None
    if name.endswith(CSV_SUFFIXES):
        frame.attrs[CELLS_ARE_TEXT] = True  # see _clean: "1000" may be an id, not a text
        _check_header_names(path, name)
        if not isinstance(frame.index, pd.RangeIndex):
            # pandas takes a first data row with more fields than the header as an unnamed index
            # column: every text with an unquoted separator would silently lose its first part.
            raise AblateInputError(f"{path}: line 2 has more fields than the header "
                                   f"({_column_list(frame)}): "
                                   f"{_quote_advice(name)}")
    elif not isinstance(frame.index, pd.RangeIndex):
        # parquet keeps the index pandas wrote (df[mask].to_parquet: 1, 2, 4, ...), JSON its
        # keys: rows are the file's rows, in its order, numbered by position.
        named = [level for level in frame.index.names if level is not None]
        keep = len(named) == frame.index.nlevels and not set(named) & set(frame.columns)
        frame = frame.reset_index(drop=not keep)  # a named index (an id column) stays a column
    if len(frame.columns) == 0:
        raise AblateInputError(f"{path}: the file holds no examples")
    return frame


def _quote_advice(name: str) -> str:
    """What a row with more fields than the header needs: its text quoted."""
    separator = "a tab" if name.endswith(".tsv") else "a comma"
    return f'a text that contains {separator} must be quoted, as in "I love it, really"'


def _check_separator(path: Path, name: str) -> None:
    """A header of one column with another separator in it ("text;label", as Excel writes CSV
    where the comma is the decimal mark): one column cannot hold a text and a label, and the rows
    would be refused for their commas, with advice to quote them, or read as one text each."""
    separator, suffix = ("\t", ".tsv") if name.endswith(".tsv") else (",", ".csv")
    with (gzip.open if name.endswith(".gz") else open)(path, "rt", encoding="utf-8-sig",
                                                        newline="") as file:
        header = file.readline().rstrip("\r\n")
    other = next((c for c in ";\t|," if c != separator and c in header), None)
    if separator in header or other is None:
        return
    words = {",": "commas", "\t": "tabs", ";": "semicolons", "|": "'|'"}
    advice = ({",": "name it .csv", "\t": "name it .tsv"}.get(other)
              or f"save it with {words[separator]} between fields")
    raise AblateInputError(f"{path}: the header {header!r} is one column: a {suffix} file has "
                           f"{words[separator]} between its fields, and this one has "
                           f"{words[other]}; {advice}")


def _check_header_names(path: Path, name: str) -> None:
    """pandas renames a repeated column ("label", "label.1") and ablate would read the first."""
    header = pd.read_csv(path, sep="\t" if name.endswith(".tsv") else ",", header=None, nrows=1,
                         dtype=str, keep_default_na=False, encoding="utf-8-sig").iloc[0].tolist()
    # Empty names are not columns anyone names (Excel's trailing empty cells: "text,label,,").
    repeated = sorted({column for column in header if column and header.count(column) > 1})
    if repeated:
        raise AblateInputError(f"{path}: the header names column {repeated[0]!r} twice; give each "
                               "column its own name")


def _read_table(path: Path, name: str, columns: tuple[str, ...] = ()) -> pd.DataFrame:
    # Every cell as text: "None", "NA" or "007" are data, not missing values or numbers.
    # Only an empty cell is missing. Integer-looking labels become ids later.
    text_only = {"dtype": str, "keep_default_na": False, "na_values": [""], "encoding": "utf-8-sig"}
    # JSON values keep their JSON types: pandas would otherwise turn a text "007" into 7.
    as_written = {"dtype": False, "encoding": "utf-8-sig"}
    if name.endswith((".csv", ".csv.gz")):
        return _read_delimited(path, ",", text_only)
    if name.endswith(".tsv"):
        return _read_delimited(path, "\t", text_only)
    if name.endswith((".jsonl", ".jsonl.gz")):
        return pd.read_json(path, lines=True, **as_written)
    if name.endswith(".json"):
        data = _file_bytes(path)  # read once: parsed here for its layout, then by pandas
        try:
            document = json.loads(data.decode("utf-8-sig"))
        except json.JSONDecodeError:
            document = _NOT_ONE_DOCUMENT  # JSON Lines, or broken: pandas below says which
        if document is not _NOT_ONE_DOCUMENT:
            layout = _json_layout(path, document, columns)
            if layout == "one example":  # {"text": ..., "label": ...}: JSON Lines of one line
                return pd.DataFrame([document])
            frame = pd.read_json(io.BytesIO(data), **as_written)
            if layout == "columns of rows":  # pandas' to_json default: {column: {row: value}}
                frame = frame.reset_index(drop=True)
            return frame
        try:
            return pd.read_json(path, **as_written)
        except ValueError as err:
            if "Trailing data" not in str(err):
                raise
            # JSON Lines under a .json name: what datasets' Dataset.to_json writes by default.
            try:
                return pd.read_json(path, lines=True, **as_written)
            except ValueError:
                raise err from None
    if name.endswith(".parquet"):
        return pd.read_parquet(path)
    raise AblateInputError(
        f"{path}: unsupported file type; use one of {', '.join(LOCAL_DATA_SUFFIXES)}")


# --------------------------------------------------------------------------- CSV and TSV quoting


def _read_delimited(path: Path, separator: str, text_only: dict[str, Any]) -> pd.DataFrame:
    """A CSV or TSV file, with the file's quotes checked first (see _quoted_records).

    CSV is read with CSV quoting. A TSV is read as TSV writers write it, quotes as plain
    characters (`"Great" movie` stays so), unless the file is written with CSV quoting (what
    pandas' and Python's csv writers do with a tab separator): a text that runs over lines inside
    quotes, or a whole field in quotes with the quotes inside doubled (`"a ""b"" c"`).
    """
    data = _file_bytes(path)  # read (and decompressed) once: checked here, parsed by pandas
    if b'"' not in data:
        return pd.read_csv(io.BytesIO(data), sep=separator, **text_only)
    lines = io.StringIO(data.decode("utf-8-sig"), newline="").readlines()
    spans_lines = _quoted_records(path, lines, separator)
    if separator == "\t" and not spans_lines and not any(
            _CSV_QUOTED_FIELD.match(field) for line in lines
            for field in line.rstrip("\r\n").split(separator)):
        return pd.read_csv(io.BytesIO(data), sep=separator, quoting=csv.QUOTE_NONE, **text_only)
    return pd.read_csv(io.BytesIO(data), sep=separator, **text_only)


def _quoted_records(path: Path, lines: list[str], separator: str) -> bool:
    """Refuse a stray quote that merges rows; say whether a quoted text legitimately runs over
    lines.

    In CSV quoting a field that starts with `"` runs to the next lone `"`, line breaks and
    separators included: one stray quote (`"Great movie,1`) makes the following rows part of
    its text until another quote closes it, and pandas reads the merged rows as one example
    without a word. The rule: a quoted text that runs over lines is a stray quote when every
    line it covers, taken alone (split on the separator, quotes as plain characters), is a row of
    its own: it has the header's number of fields, and one of its fields without a quote is a
    value that column holds in the file's other rows (a label, usually). A real multi-line text
    (`"first line<newline>second line",pos`) has lines that are not whole rows.
    """
    reader = csv.reader(lines, delimiter=separator, quotechar='"', doublequote=True, strict=False)
    spans: list[tuple[int, int]] = []  # first and last line of each record over several lines
    values: list[set[str]] = []  # by column: the values of the rows that are one line each
    width = 0
    previous = 0
    try:
        for fields in reader:
            first, previous = previous + 1, reader.line_num
            if not width:  # the header (pandas skips blank lines before it)
                width = len(fields)
                values = [set() for _ in fields]
            elif previous > first:
                spans.append((first, previous))
            elif len(fields) == width:
                for column, value in zip(values, fields, strict=True):
                    column.add(value.strip())
    except csv.Error:
        return False  # pandas' own reading says what is wrong
    for first, last in spans:
        if width > 1 and all(_a_whole_row(line, separator, values) for line in lines[first - 1:last]):
            kind = "tab" if separator == "\t" else "comma"
            raise AblateInputError(
                f'{path}: line {first}: a quoted text runs over {last - first + 1} lines (to line '
                f"{last}), each of them a whole row with its own {kind}-separated fields: a stray "
                '" merges them into one text; quote the whole text and double the quotes inside '
                'it ("say ""hi"""), or remove the stray quote')
    return bool(spans)


def _a_whole_row(line: str, separator: str, values: list[set[str]]) -> bool:
    """A line that is a row on its own: the header's number of fields, one of them (without a
    quote) a value its column holds in other rows."""
    fields = line.rstrip("\r\n").split(separator)
    return len(fields) == len(values) and any(
        '"' not in field and field.strip() in column for field, column in zip(fields, values, strict=True))


# A whole field in CSV quoting: "...", every quote inside doubled.
_CSV_QUOTED_FIELD = re.compile(r'"(?:[^"]|"")*"\Z')
_NOT_ONE_DOCUMENT = object()


def _json_kind(value: Any) -> str:
    return {list: "array", dict: "object", str: "string", bool: "boolean", int: "number",
            float: "number", type(None): "null"}[type(value)]


def _json_layout(path: Path, document: Any, columns: tuple[str, ...]) -> str:
    """Which of the JSON_LAYOUTS a .json file that is one JSON value holds: "records" (an array
    of objects), "lists" ({column: [values]}), "columns of rows" ({column: {row: value}}, what
    pandas' to_json writes by default) or "one example" (a lone object of values: JSON Lines of
    one line). Anything else is refused, naming the layouts that are read.

    An object of objects is read as {column: {row: value}}; when none of its keys is a column
    the study names and its inner objects hold them ({"id0": {"text": ..., "label": ...}}), it
    is keyed by example, and refused."""
    if isinstance(document, list):
        for position, item in enumerate(document):
            if not isinstance(item, dict):
                raise AblateInputError(
                    f"{path}: item {position} of the JSON array is a JSON {_json_kind(item)}, not "
                    f"an example object; {JSON_LAYOUTS}")
        return "records"
    if not isinstance(document, dict):
        raise AblateInputError(f"{path}: the file is a JSON {_json_kind(document)}, not a table "
                               f"of examples; {JSON_LAYOUTS}")
    kinds = {type(value) if isinstance(value, (list, dict)) else "value" for value in document.values()}
    if kinds == {list}:
        lengths = {key: len(value) for key, value in document.items()}
        if len(set(lengths.values())) > 1:
            shown = ", ".join(f"{key!r}: {n}" for key, n in list(lengths.items())[:4])
            raise AblateInputError(
                f"{path}: the JSON columns hold different numbers of values ({shown}); every "
                "column needs one value per example")
        return "lists"
    if kinds == {dict}:
        inner = {key for value in document.values() for key in value}
        if columns and not set(columns) & set(document) and set(columns) & inner:
            keys = ", ".join(repr(key) for key in list(document)[:3])
            raise AblateInputError(
                f"{path}: the JSON object is keyed by example ({keys}, ...) with the columns inside "
                f"each; {JSON_LAYOUTS} (pandas: df.to_json(path, orient=\"records\"))")
        return "columns of rows"
    if kinds <= {"value"}:
        return "one example"
    key = next(key for key, value in document.items() if not isinstance(value, (list, dict)))
    raise AblateInputError(
        f"{path}: the JSON object mixes columns and single values (key {key!r} holds a JSON "
        f"{_json_kind(document[key])}); {JSON_LAYOUTS}")


def _file_bytes(path: Path) -> bytes:
    data = path.read_bytes()
    return gzip.decompress(data) if path.name.lower().endswith(".gz") else data


_PAST_ASCII = re.compile(r"[^\x00-\x7f]")
_CHINESE = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]")  # CJK ideographs: hanzi


def _first_undecodable(path: Path) -> str:
    """Where the first byte that is not UTF-8 is, counted in the whole file (pandas' own error
    counts within the chunk it was reading), and the encoding the file is in where its bytes
    tell it."""
    return not_utf8(_file_bytes(path))


def not_utf8(data: bytes, line: int = 1, byte: int = 0, line_end: bytes = b"\n") -> str:
    """Where the first byte of `data` that is not UTF-8 is, and the encoding it is in where its
    bytes tell it cheaply: the user then knows what to convert from. `data` is a whole file, or
    the piece of one that `predict` has just read (whole lines, ending at `line_end`), starting at
    line `line`, byte `byte` of it: the place is the file's, not the piece's."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as err:
        line += data.count(line_end, 0, err.start)
        if byte == 0 and data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            encoding = ": it is UTF-16 (Excel's 'Unicode text')"  # its first byte is wrong
        elif _looks_like_gbk(data):
            encoding = ": it looks like GBK/GB18030 (a Chinese Windows encoding)"
        else:
            encoding = ""
        return f"line {line} (byte {byte + err.start}) cannot be decoded as UTF-8 text{encoding}"
    return "cannot be decoded as UTF-8 text"


def _looks_like_gbk(data: bytes) -> bool:
    """Chinese text saved by Windows in GBK/GB18030 (a hint, so in doubt none): the bytes decode
    so, to characters past ASCII that are mostly GB2312's (simplified Chinese's, two bytes past
    ASCII each) and mostly Chinese, and they are not Korean or Japanese text. Latin-1 or
    Windows-1252 text decodes as GBK too, an accented letter and the letter after it making one
    character, but few such pairs are GB2312 characters; Shift-JIS kana are none. EUC-KR and EUC-JP
    share GB2312's bytes (a short Chinese file decodes as both), so what those readings give
    decides: Korean text read as EUC-KR is Hangul, Japanese read as EUC-JP has kana, and bytes
    that read so get the plain message."""
    try:
        text = data.decode("gb18030")
    except UnicodeDecodeError:
        return False
    wide = _PAST_ASCII.findall(text, 0, 100_000)  # a sample is enough, and quick
    in_gb2312 = sum(_decodes(char.encode("gb18030"), "gb2312") for char in wide)
    chinese = sum(bool(_CHINESE.match(char)) for char in wide)
    return (bool(wide) and in_gb2312 >= 0.8 * len(wide) and chinese * 2 >= len(wide)
            and not _reads_as_korean(data) and not _reads_as_japanese(data))


_HANGUL = re.compile(r"[\uac00-\ud7a3\u3131-\u318e]")  # syllables, and jamo (ㅋㅋ, ㅠㅠ)
_KANA = re.compile(r"[\u3041-\u30ff]")


def _reads_as_korean(data: bytes) -> bool:
    """EUC-KR bytes of Korean text read as Hangul; GB2312 Chinese ones read so give Hangul only
    for hanzi whose pinyin is before s (EUC-KR's Hangul rows), Hanja for the rest (是, 我, 一, 在, 这,
    影), or fail (rows EUC-KR leaves unassigned, 上, 生): Korean where Hanja are under 10%."""
    try:
        text = data.decode("euc_kr")
    except UnicodeDecodeError:
        return False
    hangul = len(_HANGUL.findall(text, 0, 100_000))  # a sample is enough, and quick
    hanja = len(_CHINESE.findall(text, 0, 100_000))
    return hangul > 0 and hanja * 10 < hangul + hanja


def _reads_as_japanese(data: bytes) -> bool:
    """EUC-JP bytes of Japanese text read with kana (の, で, した); Chinese text holds none, and its
    GB2312 bytes read as EUC-JP give kanji alone: Japanese where kana are 10% or more."""
    try:
        text = data.decode("euc_jp")
    except UnicodeDecodeError:
        return False
    wide = len(_PAST_ASCII.findall(text, 0, 100_000))
    return wide > 0 and len(_KANA.findall(text, 0, 100_000)) * 10 >= wide


def _decodes(data: bytes, encoding: str) -> bool:
    try:
        data.decode(encoding)
    except UnicodeDecodeError:
        return False
    return True


def _first_line_is_an_object(path: Path) -> bool:
    """A .json file whose first line is a whole object holds JSON Lines (datasets writes them)."""
    lines = (line for line in _file_bytes(path).decode("utf-8-sig").splitlines() if line.strip())
    try:
        return isinstance(json.loads(next(lines, "")), dict)
    except json.JSONDecodeError:
        return False


def _first_bad_json_line(path: Path) -> str:
    """The first line of a JSON Lines file that is not one JSON object, and why."""
    text = _file_bytes(path).decode("utf-8-sig")
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as err:
            return f"line {number} is not valid JSON ({err.msg}, column {err.colno})"
        if not isinstance(value, dict):
            return (f"line {number} is a JSON {_json_kind(value)}, not an object; each line "
                    'must be one example like {"text": "...", "label": "..."}')
    return "cannot be read as JSON Lines (one JSON object per line)"


def split_of_file(path: Path) -> str:
    """The split a data file's name gives it in a folder: `test.csv` → test."""
    name = path.name
    for suffix in sorted(LOCAL_DATA_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def _named_columns(spec: DataSpec) -> tuple[str, ...]:
    return tuple(c for c in (spec.text_column, spec.text_pair_column, spec.label_column) if c)


def _load_local(spec: DataSpec) -> dict[str, pd.DataFrame]:
    path = Path(spec.dataset)
    if path.is_file():  # a single file is the train split; validation is carved from it
        return {spec.train_split: _read_local_file(path, _named_columns(spec))}
    files = sorted(p for p in path.iterdir() if p.name.lower().endswith(LOCAL_DATA_SUFFIXES))
    if not files:
        raise AblateInputError(
            f"{path}: folder holds no data file; expected files like train.csv, test.csv "
            f"({', '.join(LOCAL_DATA_SUFFIXES)})")
    splits: dict[str, pd.DataFrame] = {}
    for file in files:
        split = split_of_file(file)
        if split in splits:
            raise AblateInputError(
                f"{path}: two files for split {split!r}; keep one of "
                + ", ".join(f.name for f in files if split_of_file(f) == split))
        splits[split] = _read_local_file(file, _named_columns(spec))
    return splits


def _saved_by_datasets(path: Path) -> bool:
    """A folder written by `datasets`' save_to_disk: a DatasetDict's (dataset_dict.json beside a
    folder per split) or a single Dataset's (state.json and dataset_info.json beside its shards)."""
    return path.is_dir() and ((path / "dataset_dict.json").is_file()
                              or ((path / "state.json").is_file()
                                  and (path / "dataset_info.json").is_file()))


def _load_saved(spec: DataSpec) -> tuple[dict[str, pd.DataFrame], dict[str, list[str]]]:
    """A save_to_disk folder, read with load_from_disk: a DatasetDict's splits, or one Dataset as
    the train split (validation is carved from it, as from a single file)."""
    import datasets

    try:
        loaded = datasets.load_from_disk(spec.dataset)
    except Exception as err:  # a folder cut short or written by another datasets version
        raise AblateInputError(
            f"[data] dataset = {spec.dataset!r}: a folder saved by datasets' save_to_disk that "
            f"load_from_disk cannot read: {first_line(err)}") from None
    if isinstance(loaded, datasets.Dataset):
        loaded = datasets.DatasetDict({spec.train_split: loaded})
    return _frames_and_class_names(loaded)


def _frames_and_class_names(loaded: Any) -> tuple[dict[str, pd.DataFrame], dict[str, list[str]]]:
    """A DatasetDict's splits as frames, and ClassLabel names by column where it declares them."""
    import datasets

    class_names: dict[str, list[str]] = {}
    frames = {}
    for split, ds in loaded.items():
        for column, feature in ds.features.items():
            if isinstance(feature, datasets.ClassLabel):
                class_names[column] = list(feature.names)
        frames[split] = ds.to_pandas()
    return frames, class_names


def _load_hub(spec: DataSpec) -> tuple[dict[str, pd.DataFrame], dict[str, list[str]]]:
    """Returns the splits as frames, and ClassLabel names by column where the data declares them."""
    import datasets

    try:
        loaded = datasets.load_dataset(spec.dataset, spec.config, revision=spec.revision)
    except Exception as err:  # the datasets library raises many types for "not available"
        lines = str(err).strip().splitlines() or [type(err).__name__]
        # datasets names the configs it has on a later line: "Available configs in the cache: [...]"
        reason = "; ".join([lines[0], *(line for line in lines[1:] if line.startswith("Available"))])
        # "data/tweets" reads as a Hub id too: a path meant from another folder is named as one.
        here = ("" if Path(spec.dataset).is_absolute() else
                f"; nor is {spec.dataset!r} a file or folder under {Path.cwd()} (a relative path is "
                "read from the folder ablate runs in)")
        raise AblateInputError(
            f"[data] dataset = {spec.dataset!r}"
            + (f" (config {spec.config!r})" if spec.config else "")
            + f" cannot be loaded: {reason}{here}. Offline? Point HF_HUB_CACHE / HF_DATASETS_CACHE at a "
            "filled cache and set HF_HUB_OFFLINE=1, or give a local .csv/.jsonl/.parquet path"
        ) from None
    return _frames_and_class_names(loaded)


def load_raw_splits(spec: DataSpec) -> tuple[dict[str, pd.DataFrame], dict[str, list[str]]]:
    if _saved_by_datasets(Path(spec.dataset)):
        return _load_saved(spec)
    if Path(spec.dataset).exists():
        return _load_local(spec), {}
    return _load_hub(spec)


# --------------------------------------------------------------------------- cleaning and labels


def _check_columns(frame: pd.DataFrame, split: str, spec: DataSpec) -> None:
    keys = ("text_column", "text_pair_column", "label_column")
    for key in keys:
        column = getattr(spec, key)
        if column is not None and column not in frame.columns:
            # A column another key already reads is no typo of this one ('text2' is not 'text')
            taken = {getattr(spec, other) for other in keys if other != key}
            options = [str(c) for c in frame.columns if str(c) not in taken]
            raise AblateInputError(
                f"[data] {key} = {column!r}: split {split!r} of {spec.dataset} has no such column"
                f"{_did_you_mean(column, options)} (columns: {_column_list(frame)})")


def _column_list(frame: pd.DataFrame) -> str:
    """A frame's column names as an error line lists them: 'text', 'label'."""
    return ", ".join(repr(str(c)) for c in frame.columns)


def labels_hidden(frame: pd.DataFrame) -> bool:
    """Every label is -1: the Hub's mark of a split whose labels are withheld (GLUE's test sets)."""
    labels = pd.to_numeric(frame["label"], errors="coerce")
    return len(labels) > 0 and bool((labels == -1).all())


def _clean(frame: pd.DataFrame, spec: DataSpec, split: str) -> tuple[pd.DataFrame, int]:
    """Keep text (and pair) and label; drop rows whose text is empty or label missing.

    The kept rows keep their original index, so that a bad label is reported by its row in
    the file, not by its position after the drop."""
    out = pd.DataFrame({"text": frame[spec.text_column]})
    if spec.text_pair_column:
        out["text_pair"] = frame[spec.text_pair_column]
    out["label"] = frame[spec.label_column]
    keep = out["label"].notna() & ~out["label"].map(lambda v: isinstance(v, str) and not v.strip())
    for column in ["text"] + (["text_pair"] if spec.text_pair_column else []):
        keep &= out[column].notna() & out[column].astype(str).str.strip().ne("")
    cleaned = out[keep].copy()
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
            f"{_column_list(frame)})")
    return cleaned, int((~keep).sum())


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
        train_labels = frames[train_split]["label"]
        if spec.label_names:
            names = list(spec.label_names)
        else:
            names = sorted({str(v) for v in train_labels})
            _note_case_twins(names, notes)
        index = {name: i for i, name in enumerate(names)}
        for split, frame in frames.items():
            mapped = frame["label"].astype(str).map(index)
            if mapped.isna().any():
                row, value = first_flagged(frame, mapped.isna())
                known = "[data] label_names" if spec.label_names else "the train labels"
                raise AblateInputError(
                    f"{spec.dataset}: split {split!r}, row {row}: label {show_cell(value)} is not "
                    f"one of {known} ({', '.join(names)})"
                    + ("" if spec.label_names else UNSEEN_LABEL_ADVICE))
            frame["label"] = mapped.astype(int)
        return names

    for split, frame in frames.items():
        values = pd.to_numeric(frame["label"], errors="coerce")
        bad = values.isna() | (values != values.round()) | (values < 0)
        if bad.any():
            row, value = first_flagged(frame, bad)
            position = int(bad.to_numpy().nonzero()[0][0])
            negative = bool(values.iloc[position] < 0)
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
            f"itself ({source}: {', '.join(declared)}), and label_names {says}; leave label_names out")
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
                       f"the {count} ({', '.join(names)}); fix the row or set [data] label_names")
            if spec.label_names:  # label_names is the cause: it names too few classes
                top = max(int(f["label"].max()) for f in frames.values())
                ids = f"ids 0..{len(names) - 1}" if len(names) > 1 else "id 0"
                message += (f" to name every id 0..{top}: it names only {count} ({ids}) and the "
                            f"data has id {top}")
            raise AblateInputError(message)
    return names


def _renumbering(frames: dict[str, pd.DataFrame], value: str) -> str:
    """What to say of a negative integer label: ids are 0..N-1, and how to renumber them."""
    ids = sorted({int(v) for frame in frames.values()
                  for v in pd.to_numeric(frame["label"], errors="coerce").dropna()
                  if v == round(v)})
    advice = (f"renumber them, e.g. {', '.join(map(str, ids))} as "
              f"{', '.join(map(str, range(len(ids))))}" if len(ids) <= 5
              else "renumber them 0..N-1")
    return (f": class ids are 0..N-1 for N classes and {value} is not one; {advice}, or use "
            "class names")


def _strip_labels(frames: dict[str, pd.DataFrame], notes: list[str]) -> None:
    """'neg ' and 'neg' are one class: strip the spaces around string labels (in place), with a
    note when any had some."""
    stripped, example = 0, ""
    for frame in frames.values():
        labels = frame["label"]
        clean = labels.map(lambda v: v.strip() if isinstance(v, str) else v)
        changed = labels.ne(clean)
        if changed.any() and not example:
            example = f" ({labels[changed].iloc[0]!r} is {clean[changed].iloc[0]!r})"
        stripped += int(changed.sum())
        frame["label"] = clean
    if stripped:
        notes.append(f"stripped the spaces around {stripped} label{'' if stripped == 1 else 's'}{example}")


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


def _no_usable_rows(where: str, split: str, raw: pd.DataFrame) -> AblateInputError:
    """A split left empty by cleaning; one that had no rows to begin with (a CSV of a header
    alone) is said so, not blamed on empty texts."""
    if raw.empty:
        return AblateInputError(f"{where}: split {split!r} has no rows, only its columns "
                                f"({_column_list(raw)}); give it one row per example")
    return AblateInputError(f"{where}: split {split!r} has no usable rows "
                            "(every text is empty or every label missing)")


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
                f"the train labels ({_some(seen)}){UNSEEN_LABEL_ADVICE}")
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
        ids = (f"ids {_some(missing, total=gaps)} would be classes" if gaps > 1
               else f"id {missing[0]} would be a class")
        raise AblateInputError(
            f"{spec.dataset}: integer labels are class ids 0..N-1, but split {train_split!r} has "
            f"labels {_some(seen)} ({where}), so {ids} without an example; "
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
            f"{row_count(len(labels))}: {_some(shown, total=classes)}), as an id column has; is "
            f"[data] label_column = {spec.label_column!r} the label column? (columns: "
            f"{_column_list(raw)})")


def _some(values: list[Any], shown: int = 5, total: int | None = None) -> str:
    """At most `shown` values, then how many there are in all (`total` when `values` holds only
    the first few)."""
    total = len(values) if total is None else total
    text = ", ".join(str(v) for v in values[:shown])
    return text + (f", … ({total} in all)" if total > shown else "")


def first_flagged(frame: pd.DataFrame, bad: pd.Series) -> tuple[int, Any]:
    """The file row (counted from 0, header excluded) and label of the first flagged row."""
    position = int(bad.to_numpy().nonzero()[0][0])
    return int(frame.index[position]), frame["label"].iloc[position]


def show_cell(value: Any) -> str:
    """A cell as the user wrote it (no numpy reprs in messages)."""
    if isinstance(value, np.generic):
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
    columns = [c.map(_as_text) for c in columns]
    integer_like = [c.str.fullmatch(r"\s*[-+]?\d+(?:\.0*)?\s*") for c in columns]
    if not any(m.any() for m in integer_like):
        return  # class names
    splits = list(frames)
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
            "as an integer id")
    for frame, column in zip(frames.values(), columns, strict=True):
        # integers (floats past int64), checked as ids with the others' below
        frame["label"] = pd.to_numeric(column.str.strip().str.replace(r"\.0*$", "", regex=True))


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
        shown = _some([repr(names[c]) for c in rare])
        how += (f"; class {shown} has a single row, {side}" if len(rare) == 1
                else f"; classes {shown} have a single row each, {side}")
    return frame.iloc[taken].reset_index(drop=True), frame.iloc[rest].reset_index(drop=True), how


def load_study_splits(spec: ExperimentSpec) -> LabeledSplits:
    """load_labeled_splits of a study's [data]: a mistake in a [data] key that a --set gave is
    blamed on that --set (the file says otherwise), as the file's own mistakes are."""
    try:
        return load_labeled_splits(spec.data)
    except AblateInputError as err:
        named = re.match(r"\[data\] (?:of .*?: )?(\w+) = ", str(err))
        given = named and last_set(spec.sets, f"data.{named.group(1)}")
        if not given:
            raise
        raise AblateInputError(f"--set {given!r}: {err}") from None


def row_count(count: int) -> str:
    """"1 row", "2 rows": for a line a user reads."""
    return f"{count} row" if count == 1 else f"{count} rows"


def _unused_keys(spec: DataSpec, test_present: bool) -> list[str]:
    """Notes for [data] keys that this data makes do nothing, which a user set expecting them to."""
    defaults = {f.name: f.default for f in dataclasses.fields(DataSpec)}
    notes = []
    if Path(spec.dataset).expanduser().exists():
        notes += [f"[data] {key} = {getattr(spec, key)!r} is not used: it picks a Hub dataset's "
                  f"{'configuration' if key == 'config' else 'revision'}, and {spec.dataset} is a "
                  "local path" for key in ("config", "revision") if getattr(spec, key)]
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
        raise AblateInputError(
            f"{where}: train_split = {spec.train_split!r} does not exist (splits: {available})")
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
                f"{spec.label_column!r} (columns: {_column_list(raw[split])}), so no labels to score; "
                'set test_split = "" for none'
                + ("" if spec.test_size else " (test_size carves a test set from train)"))
        _check_columns(raw[split], split, spec)
        frames[split], dropped[split] = _clean(raw[split], spec, split)
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
            raise _no_usable_rows(where, split, raw[split])
        if dropped[split]:
            notes.append(f"split {split!r}: dropped {row_count(dropped[split])} with an empty text "
                         "or missing label")
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
                         dropped=dropped, notes=notes)


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
            f"{_some([repr(names[label]) for label in absent])} that no row of the data has: the "
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
            shown = _some([f"{names[label]!r} ({in_train[label]} in train)" for label in lacking])
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


def check_train_size(splits: LabeledSplits, n: int | None) -> None:
    """The max_train_samples knob of a variant takes the rows with_train_size will take: refused
    when they hold a single class, or when there are fewer rows than it asks for (the variant would
    train on all of them under the name of a number it never saw)."""
    labels = splits.train["label"].to_numpy()
    if n is not None and n > len(labels):
        raise AblateInputError(
            f"max_train_samples = {n} is more than the {len(labels)} training rows there are (after "
            f"[data] max_train_samples and the validation and test splits): lower it to {len(labels)} "
            "or less")
    if n is None or n == len(labels):
        return
    _check_train_classes(labels[stratified_indices(labels, n)], splits.label_names,
                         f"max_train_samples = {n}", f"raise it to {len(np.unique(labels))} or more")


def count_longer(splits: LabeledSplits, tokenizer: Any, limit: int) -> int:
    """How many examples (text and pair, encoded as for training) of all splits have more than
    `limit` tokens."""
    return sum(_longer_than(frame, tokenizer, limit) for _, frame in splits.split_items())


def count_cut(splits: LabeledSplits, tokenizer: Any, max_length: int) -> tuple[int, int]:
    """How many of (a fixed sample of) the training texts, encoded as for training, have more
    than `max_length` tokens, which truncation cuts off; and how many were looked at."""
    sample = _train_sample(splits)
    return _longer_than(sample, tokenizer, max_length), len(sample)


def _longer_than(frame: pd.DataFrame, tokenizer: Any, limit: int) -> int:
    """How many of the frame's examples (text and pair, encoded as for training) have more than
    `limit` tokens: encoded to limit + 1 at most, so a long text costs no more than that."""
    pairs = frame["text_pair"].tolist() if "text_pair" in frame.columns else None
    encoded = tokenizer(frame["text"].tolist(), pairs, truncation=True, max_length=limit + 1)
    return sum(len(ids) > limit for ids in encoded["input_ids"])


UNKNOWN_SAMPLE = 1000  # training texts sampled to measure a tokenizer's unknown-token share


def _train_sample(splits: LabeledSplits) -> pd.DataFrame:
    """The fixed sample of training rows the start-up notes measure (the same rows each time)."""
    return splits.train.sample(min(UNKNOWN_SAMPLE, len(splits.train)), random_state=0)


def unknown_token_share(splits: LabeledSplits, tokenizer: Any) -> float | None:
    """The share of the tokens of (a fixed sample of) the training texts that the tokenizer maps
    to its unknown token; None where it has none (byte-level tokenizers) or the texts no tokens.
    An English vocabulary reads Chinese reviews mostly as [UNK]: the model then sees little."""
    unknown = getattr(tokenizer, "unk_token_id", None)
    if unknown is None:
        return None
    sample = _train_sample(splits)
    pairs = sample["text_pair"].tolist() if "text_pair" in sample.columns else None
    ids = tokenizer(sample["text"].tolist(), pairs, add_special_tokens=False,
                    truncation=True)["input_ids"]
    total = sum(len(row) for row in ids)
    return sum(row.count(unknown) for row in ids) / total if total else None


# --------------------------------------------------------------------------- tokenization


def tokenizer_key(tokenizer: Any) -> str:
    """Identity of a tokenizer for the cache: its full serialization (vocabulary, normalizer,
    special tokens), so the same tokenizer in two model folders is tokenized once, and what the
    call adds to it: the columns it returns (DistilBERT's vocabulary is BERT's, without
    token_type_ids) and the end a long text loses. Not the truncation and padding of the last call,
    which the serialization holds too: the key would then depend on what was tokenized before."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        content = json.dumps({key: value for key, value in json.loads(backend.to_str()).items()
                              if key not in ("truncation", "padding")}, sort_keys=True)
    else:  # a slow tokenizer: class and vocabulary
        content = type(tokenizer).__name__ + "\x1f".join(sorted(tokenizer.get_vocab()))
    content += f"\x1f{list(tokenizer.model_input_names)}\x1f{tokenizer.truncation_side}"
    return hashlib.sha256(content.encode()).hexdigest()[:16]


def _encoder(tokenizer: Any, max_length: int, has_pair: bool) -> Any:
    """Batch function for datasets.map: text (and pair) → token ids, label → labels."""

    def encode(batch: dict[str, list]) -> dict[str, list]:
        encoded = tokenizer(batch["text"], batch["text_pair"] if has_pair else None,
                            truncation=True, max_length=max_length)
        encoded["labels"] = batch["label"]
        return encoded

    return encode


def tokenize(splits: LabeledSplits, tokenizer: Any, max_length: int,
             cache_dir: Path) -> TokenizedData:
    """Tokenize every split once, without padding; later calls load the cached Arrow files."""
    import datasets

    cache_dir.mkdir(parents=True, exist_ok=True)
    key = f"{splits.fingerprint()}-{tokenizer_key(tokenizer)}-len{max_length}"
    encode = _encoder(tokenizer, max_length, "text_pair" in splits.train.columns)
    tokenized = {}
    for name, frame in splits.split_items():
        cache_file = cache_dir / f"{name}-{key}.arrow"
        if cache_file.exists():
            tokenized[name] = datasets.Dataset.from_file(str(cache_file))
            continue
        raw = datasets.Dataset.from_pandas(frame, preserve_index=False)
        tokenized[name] = raw.map(
            encode, batched=True, remove_columns=raw.column_names,
            cache_file_name=str(cache_file), desc=f"tokenizing {name}")
    return TokenizedData(
        train=tokenized["train"], validation=tokenized["validation"], test=tokenized.get("test"),
        label_names=splits.label_names, train_labels=splits.train["label"].to_numpy())


def with_train_size(data: TokenizedData, n: int | None) -> TokenizedData:
    """The same tokenized data with a stratified subsample of n training examples (the
    max_train_samples knob of a variant); tokenization is not repeated."""
    if n is None or n >= len(data.train_labels):
        return data
    positions = stratified_indices(data.train_labels, n)
    return TokenizedData(train=data.train.select(positions), validation=data.validation,
                         test=data.test, label_names=data.label_names,
                         train_labels=data.train_labels[positions], length_sorted=data.length_sorted)


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
    frame, dropped = _clean(raw[split], spec, split)
    if frame.empty:
        raise _no_usable_rows(spec.dataset, split, raw[split])
    if dropped:
        notes.append(f"split {split!r}: dropped {row_count(dropped)} with an empty text or missing label")
    _strip_labels({split: frame}, notes)
    return frame, class_names.get(spec.label_column)


def tokenize_frame(frame: pd.DataFrame, tokenizer: Any, max_length: int) -> Any:
    """A frame of text (text_pair) and integer label → a tokenized datasets.Dataset, encoded
    exactly as a study's splits are."""
    import datasets

    raw = datasets.Dataset.from_pandas(frame, preserve_index=False)
    return raw.map(_encoder(tokenizer, max_length, "text_pair" in frame.columns), batched=True,
                   remove_columns=raw.column_names)
