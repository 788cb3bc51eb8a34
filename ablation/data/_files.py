"""Reading a dataset's raw splits: a Hub dataset, a save_to_disk folder, or local files
(CSV/TSV, JSON, JSON Lines, Parquet), with one clear line for a file that cannot be read:
its encoding, quoting or JSON layout.
"""

from __future__ import annotations

import ast
import codecs
import csv
import difflib
import errno
import gzip
import io
import json
import re
import warnings
from pathlib import Path
from typing import Any

import pandas as pd

from ..config import LOCAL_DATA_SUFFIXES, DataSpec
from ..errors import AblateInputError, first_line, os_error_behind

CSV_SUFFIXES = (".csv", ".csv.gz", ".tsv")  # the files read as rows of separated fields
CELLS_ARE_TEXT = "ablate_cells_are_text"  # frame.attrs key: read from a CSV/TSV, numbers untyped
JSON_LAYOUTS = ('supported JSON layouts: an array of examples [{"text": ..., "label": ...}, ...], '
                "JSON Lines (one example object per line), an object of columns "
                '{"text": [...], "label": [...]}, or pandas\' to_json default '
                '{"text": {"0": ...}, "label": {"0": ...}}')


# --------------------------------------------------------------------------- loading


def _read_local_file(path: Path, columns: tuple[str, ...] = ()) -> pd.DataFrame:
    """One local file as a frame whose rows are the file's examples, in file order, indexed by
    their position (0, 1, ...). `columns`: the columns the study names (text, label, ...), which
    tell a JSON object keyed by example from one keyed by column."""
    name = path.name.lower()
    separator, skipped = ",", 0
    try:
        if name.endswith(CSV_SUFFIXES):
            separator, skipped = _csv_layout(path, name)
        frame = _read_table(path, name, columns, separator, skipped)
    except UnicodeDecodeError:
        raise AblateInputError(f"{path}: {_first_undecodable(path)}; save it as UTF-8") from None
    except pd.errors.EmptyDataError:
        raise AblateInputError(f"{path}: the file is empty; expected a header row and one row "
                               "per example") from None
    except AttributeError:
        # pandas 2.2 meets a JSON Lines line that is a string, an array, a number or null with
        # "'str' object has no attribute 'keys'" (later pandas raise TypeError: below).
        if not _holds_json_lines(path, name):
            raise
        raise AblateInputError(f"{path}: {_first_bad_json_line(path)}") from None
    except (ValueError, TypeError, pd.errors.ParserError, OSError, EOFError) as err:
        # TypeError: pandas meeting a JSON Lines line that is an array, a number or null.
        # EOFError: a .gz file cut short.
        if _holds_json_lines(path, name):
            raise AblateInputError(f"{path}: {_first_bad_json_line(path)}") from None
        reason = first_line(err)
        fields = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", reason)
        if fields and name.endswith(CSV_SUFFIXES):  # a row past the first with an unquoted comma
            expected, line, saw = fields.groups()
            # pandas counts the fields of the first row where it has more than the header (it
            # took the extra one for an index: "good fun,1," under "text,label"): the header's own
            width = len(_check_header_names(path, separator, skipped))
            raise AblateInputError(f"{path}: line {int(line) + skipped} has {saw} fields, the header "
                                   f"{width}: {_quote_advice(separator)}") from None
        raise AblateInputError(
            f"{path}: cannot be read as a table of examples (one row per example, with a text and "
            f"a label column): {reason}") from None
    if name.endswith(CSV_SUFFIXES):
        frame.attrs[CELLS_ARE_TEXT] = True  # see _clean: "1000" may be an id, not a text
        header = _check_header_names(path, separator, skipped)
        extra = frame.index.nlevels
        if not isinstance(frame.index, pd.RangeIndex) and frame.iloc[:, -extra:].isna().all().all():
            # every row ends with separators the header lacks ("good fun,1,", as some exporters
            # write rows): pandas took the rows' first fields as the index, and shifted the rest
            # left; the fields past the header's are empty, so read without an index column
            # (pandas' way for "a file with delimiters at the end of each line")
            with warnings.catch_warnings():  # "loss of data": of empty fields only, checked
                warnings.simplefilter("ignore", pd.errors.ParserWarning)
                frame = _read_table(path, name, columns, separator, skipped, index_col=False)
            frame.attrs[CELLS_ARE_TEXT] = True
        if not isinstance(frame.index, pd.RangeIndex):
            # pandas takes a first data row with more fields than the header as an unnamed index
            # column: every text with an unquoted separator would silently lose its first part.
            raise AblateInputError(f"{path}: line {2 + skipped} has more fields than the header "
                                   f"({column_list(frame)}): "
                                   f"{_quote_advice(separator)}")
        # "text, label" (a space after the comma) or " text " (a header typed or padded in a
        # spreadsheet): the names are text and label, as [data] names them
        frame.columns = [(column.strip() or column) if isinstance(column, str) else column
                         for column in frame.columns]
        _check_repeated_header(path, frame, header)
    elif not isinstance(frame.index, pd.RangeIndex):
        # parquet keeps the index pandas wrote (df[mask].to_parquet: 1, 2, 4, ...), JSON its
        # keys: rows are the file's rows, in its order, numbered by position.
        named = [level for level in frame.index.names if level is not None]
        keep = len(named) == frame.index.nlevels and not set(named) & set(frame.columns)
        frame = frame.reset_index(drop=not keep)  # a named index (an id column) stays a column
    if len(frame.columns) == 0:
        raise AblateInputError(f"{path}: the file holds no examples")
    return frame


def column_list(frame: pd.DataFrame) -> str:
    """A frame's column names as an error line lists them: 'text', 'label'."""
    return ", ".join(repr(str(c)) for c in frame.columns)


def _quote_advice(separator: str) -> str:
    """What a row with more fields than the header needs: its text quoted."""
    example = f"I love it{separator} really" if separator in ";|" else "I love it, really"
    return f'a text that contains {_SEPARATOR_NAMES[separator][0]} must be quoted, as in "{example}"'


# a separator: as one, as several
_SEPARATOR_NAMES = {",": ("a comma", "commas"), "\t": ("a tab", "tabs"),
                    ";": ("a semicolon", "semicolons"), "|": ("a '|'", "'|'")}
# Excel's first line naming the separator ("sep=;"), which some tools write for Excel to open the
# file in any locale; Excel shows it not, and reads the header from the line after it.
_SEPARATOR_LINE = re.compile(r"sep=([,;\t|])", re.IGNORECASE)


def _csv_layout(path: Path, name: str) -> tuple[str, int]:
    """A CSV or TSV file's separator, and how many lines come before its header: 1 where its first
    line is Excel's `sep=;`, whose separator is then the file's.

    A .csv whose header has semicolons and no comma is read with ';' between its fields: Excel
    saves CSV so where the comma is the decimal mark (German, French, Spanish, Italian, Dutch,
    ... settings), and its users cannot choose another. A header of one column with another
    separator in it ("text\tlabel" in a .csv, "text,label" or "text;label" in a .tsv) is
    refused: one column cannot hold a text and a label, and the rows would be refused for their
    separators, with advice to quote them, or read as one text each."""
    separator, suffix = ("\t", ".tsv") if name.endswith(".tsv") else (",", ".csv")
    with (gzip.open if name.endswith(".gz") else open)(path, "rt", encoding="utf-8-sig",
                                                        newline="") as file:
        header = file.readline().rstrip("\r\n")
    directive = _SEPARATOR_LINE.fullmatch(header)
    if directive:
        return directive.group(1), 1
    other = next((c for c in ";\t|," if c != separator and c in header), None)
    if separator in header or other is None:
        return separator, 0
    if suffix == ".csv" and other == ";":
        return ";", 0
    advice = ({",": "name it .csv", "\t": "name it .tsv"}.get(other)
              or f"save it with {_SEPARATOR_NAMES[separator][1]} between fields")
    raise AblateInputError(f"{path}: the header {header!r} is one column: a {suffix} file has "
                           f"{_SEPARATOR_NAMES[separator][1]} between its fields, and this one has "
                           f"{_SEPARATOR_NAMES[other][1]}; {advice}")


def _check_header_names(path: Path, separator: str, skipped: int) -> list[str]:
    """pandas renames a repeated column ("label", "label.1") and ablate would read the first;
    names are compared without the spaces around them, as they are read."""
    header = pd.read_csv(path, sep=separator, header=None, nrows=1, skiprows=skipped, dtype=str,
                         keep_default_na=False, encoding="utf-8-sig").iloc[0].str.strip().tolist()
    # Empty names are not columns anyone names (Excel's trailing empty cells: "text,label,,").
    repeated = sorted({column for column in header if column and header.count(column) > 1})
    if repeated:
        raise AblateInputError(f"{path}: the header names column {repeated[0]!r} twice; give each "
                               "column its own name")
    return header


def _check_repeated_header(path: Path, frame: pd.DataFrame, header: list[str]) -> None:
    """A row that is the header again: files joined with their header lines (`cat a.csv b.csv`,
    a copy of a sheet pasted under another), which would make 'label' a class of its own, or a
    label refused as a word among ids, with no word of why. Its cells may hold spaces or a
    byte-order mark (a 'CSV UTF-8' file's first bytes)."""
    named = [(position, name) for position, name in enumerate(header) if name]
    if len(header) != frame.shape[1] or not named:
        return
    same = pd.Series(True, index=frame.index)
    for position, name in named:
        cells = frame.iloc[:, position].astype("string")  # vectorised text; NaN as <NA>
        same &= cells.str.strip().str.lstrip("\ufeff").str.strip().eq(name).fillna(False).astype(bool)
    if same.any():
        row = same.idxmax()
        shown = ", ".join(repr(name) for _, name in named)
        raise AblateInputError(f"{path}: row {row} repeats the header ({shown}): files joined with "
                               "their header lines? remove it (rows are counted from 0 after the "
                               "header)")


def _read_table(path: Path, name: str, columns: tuple[str, ...] = (), separator: str = ",",
                skipped: int = 0, index_col: bool | None = None) -> pd.DataFrame:
    # Every cell as text: "None", "NA" or "007" are data, not missing values or numbers.
    # Only an empty cell is missing. Integer-looking labels become ids later.
    text_only = {"dtype": str, "keep_default_na": False, "na_values": [""], "encoding": "utf-8-sig",
                 "index_col": index_col}
    # JSON values keep their JSON types: pandas would otherwise turn a text "007" into 7.
    as_written = {"dtype": False, "encoding": "utf-8-sig"}
    if name.endswith(CSV_SUFFIXES):  # separator and skipped lines: see _csv_layout
        return _read_delimited(path, separator, skipped, text_only)
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


def _read_delimited(path: Path, separator: str, skipped: int,
                    text_only: dict[str, Any]) -> pd.DataFrame:
    """A CSV or TSV file, with the file's quotes checked first (see _quoted_records).

    CSV is read with CSV quoting. A TSV is read as TSV writers write it, quotes as plain
    characters (`"Great" movie` stays so), unless the file is written with CSV quoting (what
    pandas' and Python's csv writers do with a tab separator): a text that runs over lines inside
    quotes, or a whole field in quotes with the quotes inside doubled (`"a ""b"" c"`).
    """
    data = _file_bytes(path)  # read (and decompressed) once: checked here, parsed by pandas
    if skipped:  # Excel's sep= line
        data = data[data.index(b"\n") + 1:] if b"\n" in data else b""
    if b'"' not in data:
        return pd.read_csv(io.BytesIO(data), sep=separator, **text_only)
    lines = io.StringIO(data.decode("utf-8-sig"), newline="").readlines()
    spans_lines = _quoted_records(path, lines, separator, skipped)
    if separator == "\t" and not spans_lines and not any(
            _CSV_QUOTED_FIELD.match(field) for line in lines
            for field in line.rstrip("\r\n").split(separator)):
        return pd.read_csv(io.BytesIO(data), sep=separator, quoting=csv.QUOTE_NONE, **text_only)
    return pd.read_csv(io.BytesIO(data), sep=separator, **text_only)


def _quoted_records(path: Path, lines: list[str], separator: str, skipped: int = 0) -> bool:
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
    # a text as long as the file (a book, a scraped page): the csv module's default limit of
    # 131,072 characters a field would end the check there, and a TSV be read without its quoting
    limit = csv.field_size_limit(min(max(sum(map(len, lines)), csv.field_size_limit()), 2**31 - 1))
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
    finally:
        csv.field_size_limit(limit)
    for first, last in spans:
        if width > 1 and all(_a_whole_row(line, separator, values) for line in lines[first - 1:last]):
            kind = _SEPARATOR_NAMES[separator][0].split()[-1].strip("'")
            raise AblateInputError(
                f'{path}: line {first + skipped}: a quoted text runs over {last - first + 1} lines '
                f"(to line {last + skipped}), each of them a whole row with its own "
                f"{kind}-separated fields: a stray "
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
    if {"columns", "data"} <= set(document) <= {"columns", "index", "data"} and not set(columns) & set(
            document) and all(isinstance(row, list) for row in document["data"] or [None]):
        # df.to_json(orient="split"): column names apart from the rows, each row a list
        raise AblateInputError(
            f"{path}: the file is pandas' to_json(orient=\"split\") layout ({{\"columns\": [...], "
            f"\"data\": [[...], ...]}}); {JSON_LAYOUTS} (pandas: df.to_json(path, "
            "orient=\"records\"))")
    kinds = {type(value) if isinstance(value, (list, dict)) else "value" for value in document.values()}
    wrapped = next((key for key, value in document.items() if isinstance(value, list) and value
                    and all(isinstance(item, dict) for item in value)), None)
    if wrapped is not None and not set(columns) & set(document):
        # {"data": [{"text": ..., "label": ...}, ...]}: an export's or an API's envelope
        raise AblateInputError(
            f"{path}: the examples are the array under the key {wrapped!r}, not the file itself "
            f"(keys: {', '.join(repr(key) for key in list(document)[:5])}); {JSON_LAYOUTS}: save "
            f"that array alone (json.dump(document[{wrapped!r}], file))")
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
        if byte == 0 and data.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
            encoding = ": it is UTF-32"  # before UTF-16: its little-endian mark starts as UTF-16's
        elif byte == 0 and data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            encoding = ": it is UTF-16 (Excel's 'Unicode text')"  # its first byte is wrong
        elif _looks_like_gbk(data):
            encoding = ": it looks like GBK/GB18030 (a Chinese Windows encoding)"
        else:
            encoding = ""
        return f"line {line} (byte {byte + err.start}) cannot be decoded as UTF-8 text{encoding}"
    return "cannot be decoded as UTF-8 text"


# Characters a UTF-8 text misread as GBK turns into (and back): Chinese, its punctuation and
# full-width forms.
_CHINESE_OR_FULL_WIDTH = re.compile(r"[\u3000-\u303f\u3400-\u4dbf\u4e00-\u9fff\uff00-\uffef]")
MOJIBAKE_SAMPLE = 1000  # texts past ASCII checked for mojibake: a sample is enough, and quick


def _read_back_from_windows_1252(text: str) -> str | None:
    """`text` as the UTF-8 it was where it is UTF-8 bytes read as Windows-1252 ('cafÃ©' for
    'café', 'â€™' for '’': a Western Excel opening a UTF-8 CSV that has no byte-order mark and
    saving it again), or None. Bytes 1252 leaves undefined (0x81, 0x8d, ...) read as the Latin-1
    control characters of the same number, as Windows reads them, or were lost (a '�' another
    tool put there): the reading back is one where it gives more characters past ASCII than
    undecodable bytes ('café' read back gives none, only an undecodable byte)."""
    try:
        data = text.encode("cp1252")
    except UnicodeEncodeError:
        data = b"".join(bytes([ord(char)]) if ord(char) < 256 else
                        _cp1252_byte(char) for char in text)
    back = data.decode("utf-8", errors="replace")
    undecodable = back.count("\ufffd")
    wide = sum(not char.isascii() for char in back) - undecodable
    return back if wide and wide > undecodable else None


def _cp1252_byte(char: str) -> bytes:
    """A character's Windows-1252 byte, or one byte UTF-8 has not (it reads back as '�')."""
    try:
        return char.encode("cp1252")
    except UnicodeEncodeError:
        return b"\xff"


def _read_back_from_gbk(text: str) -> str | None:
    """`text` as the UTF-8 it was where it is UTF-8 Chinese read as GBK ('寰堝揩' for '很快': a
    Chinese Excel opening a UTF-8 CSV without a byte-order mark), or None. GBK loses a byte where
    a character's UTF-8 bytes fall across its pairs, so the reading back is partial: it is one
    where it gives more Chinese characters than undecodable bytes (a Chinese text as it is read
    back gives almost none)."""
    # a '�' (a byte lost already) as one byte UTF-8 has not, read back as one '�' again
    data = b"\xff".join(part.encode("gb18030", errors="replace") for part in text.split("\ufffd"))
    back = data.decode("utf-8", errors="replace")
    chinese = len(_CHINESE_OR_FULL_WIDTH.findall(back))
    return back if chinese >= 2 and chinese > back.count("\ufffd") else None


def mojibake(texts: pd.Series) -> tuple[Any, str, str, str, int, int] | None:
    """Texts of a CSV/TSV that are UTF-8 read in a Windows encoding and saved again as UTF-8
    (what a spreadsheet does to a UTF-8 CSV without a byte-order mark): the file decodes, and
    would train on 'cafÃ©' and '寰堝揩' without a word. Where most of the (first MOJIBAKE_SAMPLE)
    texts past ASCII, and at least 3 of them or all, read back so: the first one's row, the text,
    what it reads back as, the encoding, how many read back and how many were checked. None
    otherwise: a stray 'â€™' among clean texts is the source's, not the file's."""
    wide = texts.iloc[:100 * MOJIBAKE_SAMPLE]
    wide = wide[~wide.map(str.isascii)].iloc[:MOJIBAKE_SAMPLE]
    for encoding, read_back in (("Windows-1252", _read_back_from_windows_1252),
                                ("GBK", _read_back_from_gbk)):
        back = wide.map(read_back)
        found = back.notna()
        count = int(found.sum())
        if count and count * 2 >= len(wide) and (count >= 3 or count == len(wide)):
            row = found.idxmax()
            return row, wide[row], back[row], encoding, count, len(wide)
    return None


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


def _json_lines(path: Path) -> list[str]:
    """A JSON Lines file's lines, cut at \\n alone (a \\r before it is JSON whitespace), as pandas
    reads them: str.splitlines() would cut texts at the U+2028, U+2029 or \\x85 that JSON strings
    may hold unescaped (web text, tweets), and misplace every line after them."""
    return _file_bytes(path).decode("utf-8-sig").split("\n")


def _holds_json_lines(path: Path, name: str) -> bool:
    """A .jsonl file, or a .json file that holds JSON Lines."""
    return name.endswith((".jsonl", ".jsonl.gz")) or (name.endswith(".json")
                                                      and _first_line_is_an_object(path))


def _first_line_is_an_object(path: Path) -> bool:
    """A .json file whose first line is a whole object holds JSON Lines (datasets writes them)."""
    lines = (line for line in _json_lines(path) if line.strip())
    try:
        return isinstance(json.loads(next(lines, "")), dict)
    except json.JSONDecodeError:
        return False


def _first_bad_json_line(path: Path) -> str:
    """The first line of a JSON Lines file that is not one JSON object, and why."""
    for number, line in enumerate(_json_lines(path), start=1):
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
    from huggingface_hub import hf_hub_url

    from ..hub import cache_hint, cached_configs, unreachable

    try:  # offline without HF_HUB_OFFLINE: the cache alone, without minutes of retries
        offline = unreachable(hf_hub_url(spec.dataset, "README.md", repo_type="dataset",
                                         revision=spec.revision))
    except ValueError:  # not a repository id: load_dataset says what is wrong
        offline = None
    if spec.config is None and (offline or datasets.config.HF_HUB_OFFLINE):
        # Offline, load_dataset without a config reads the config cached last, whichever it is
        # (online it refuses, "Config name is missing"): a study would train on it unsaid.
        configs = cached_configs(spec.dataset)
        if len(configs) > 1:
            raise AblateInputError(
                f"[data] config is not set, and the Hugging Face cache holds several configs of "
                f"{spec.dataset} (offline, the one cached last would be read): set [data] config "
                f"to one of {', '.join(map(repr, configs))}")
    try:
        loaded = datasets.load_dataset(spec.dataset, spec.config, revision=spec.revision)
    except Exception as err:  # the datasets library raises many types for "not available"
        lines = str(err).strip().splitlines() or [type(err).__name__]
        wrong_config = _config_refusal(spec, lines)
        if wrong_config:
            raise AblateInputError(wrong_config) from None
        unwritable = _unwritable_cache(err)
        if unwritable:
            raise AblateInputError(f"[data] dataset = {spec.dataset!r}"
                                   + (f" (config {spec.config!r})" if spec.config else "")
                                   + f" cannot be loaded: {unwritable}") from None
        # datasets names the configs it has on a later line: "Available configs in the cache: [...]"
        reason = "; ".join([lines[0], *(line for line in lines[1:] if line.startswith("Available"))])
        if offline:  # datasets says "OfflineModeIsEnabled": ablate turned it on, here is why
            reason = f"{offline}; from the cache: {reason}"
        # "data/tweets" reads as a Hub id too: a path meant from another folder is named as one.
        here = ("" if Path(spec.dataset).is_absolute() else
                f"; nor is {spec.dataset!r} a file or folder under {Path.cwd()} (a relative path is "
                "read from the folder ablate runs in)")
        raise AblateInputError(
            f"[data] dataset = {spec.dataset!r}"
            + (f" (config {spec.config!r})" if spec.config else "")
            + f" cannot be loaded: {reason}{here}. Offline? Point HF_HUB_CACHE / HF_DATASETS_CACHE at a "
            "filled cache and set HF_HUB_OFFLINE=1, or give a local .csv/.jsonl/.parquet path"
            + cache_hint(spec.dataset, "dataset")  # `sst2` for the cached `stanfordnlp/sst2`
        ) from None
    return _frames_and_class_names(loaded)


def _unwritable_cache(err: BaseException) -> str | None:
    """Where `load_dataset` failed to write in HF_DATASETS_CACHE (a shared cache made read-only,
    another user's, a read-only mount), what is wrong and what to do, else None: the dataset is
    there, so the "cannot be loaded ... Offline?" advice to point at a filled cache would mislead."""
    import datasets.config

    cause = os_error_behind(err)
    if cause is None or cause.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
        return None
    cache = Path(datasets.config.HF_DATASETS_CACHE)
    if cause.filename is None or cache.absolute() not in Path(cause.filename).absolute().parents:
        return None
    return (f"the datasets cache {cache} (HF_DATASETS_CACHE) cannot be written in: "
            f"{cause.strerror}: {str(cause.filename)!r}; the datasets library writes lock files "
            "there even to read a dataset it holds: point HF_DATASETS_CACHE at a folder this user "
            "can write in (a copy of this one, offline)")


def _config_refusal(spec: DataSpec, lines: list[str]) -> str | None:
    """Where `load_dataset` failed on [data] config (a name the dataset, or the offline cache, has
    not; none given where the dataset has several), the line that says so, naming the configs:
    the dataset itself was found, so the "cannot be loaded ... Offline?" advice would mislead."""
    # datasets 5: "BuilderConfig 'x' not found. Available: [...]" (online), "Couldn't find cache
    # for org/name for config 'x'" + "Available configs in the cache: [...]" (offline), "Config
    # name is missing." + "Please pick one among the available configs: [...]"
    text = " ".join(lines)
    found = re.search(r"[Aa]vailable(?: configs)?(?: in the cache)?:\s*(\[[^\]]*\])", text)
    if not found:
        return None
    try:
        configs = [str(name) for name in ast.literal_eval(found.group(1))]
    except (ValueError, SyntaxError):
        return None
    cache = "in the cache" in text
    if cache:  # datasets lists every folder, 'default-5f8e1c2a' (loaded with data_files) too
        from ..hub import cached_configs

        held = cached_configs(spec.dataset)
        configs = [name for name in configs if name in held] or configs
    shown = ", ".join(repr(name) for name in configs)
    if spec.config is None and "Config name is missing" in text:
        return (f"[data] config is not set, and {spec.dataset} has several configs: set [data] "
                f"config to one of {shown}")
    if spec.config is None or not (text.startswith("BuilderConfig") or "for config" in text):
        return None
    close = difflib.get_close_matches(spec.config, configs, n=1, cutoff=0.6)
    where = (f"the Hugging Face cache holds no such config of {spec.dataset} (it holds {shown})"
             if cache else f"{spec.dataset} has no such config (its configs: {shown})")
    return (f"[data] config = {spec.config!r}: {where}"
            + ("; leave config out" if configs == ["default"] else
               f"; did you mean {close[0]!r}?" if close else ""))


def load_raw_splits(spec: DataSpec) -> tuple[dict[str, pd.DataFrame], dict[str, list[str]]]:
    if _saved_by_datasets(Path(spec.dataset)):
        return _load_saved(spec)
    if Path(spec.dataset).exists():
        return _load_local(spec), {}
    return _load_hub(spec)
