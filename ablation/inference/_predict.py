"""`ablate predict`: labels and probabilities of new texts, read as they come (IncomingTexts: a
stream is labelled as its lines come, a chunk ahead at most) and printed a chunk at a time. A model
trained on text pairs takes each text with its second text: a --pair per text argument, in order,
and --file lines of TEXT<TAB>PAIR.
"""

from __future__ import annotations

import codecs
import errno
import math
import os
import select
import stat
import sys
import time
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..config import CONTROL_CATEGORIES
from ..errors import AblateInputError, as_typed
from ..models import model_info
from . import _model

# --------------------------------------------------------------------------- predict


# A text read from a pipe or a terminal waits at most this long for more to fill its chunk: once
# the input has nothing more to read by then, the texts that came are labelled and printed
# (`tail -f app.log | ablate predict MODEL --file -` prints a line about half a second after it
# is written). A regular file is never waited on: its chunks are full.
PAUSE_S = 0.5
READ_BYTES = 1 << 16  # one read of an input; its whole lines are decoded and split at once
# Lines end at \r alone in an input without \n (old Mac line ends); read as it comes, an input
# whose first MiB holds a \r and no \n is taken as such (only a first line longer than a MiB
# holding a lone \r reads otherwise than when the whole input was read first).
LINE_END_PROBE = 1 << 20


def read_texts(texts: list[str], files: list[Path],
               pairs: list[str] | None = None) -> list[Any]:
    """Every text of IncomingTexts at once (library callers, tests): `predict` takes them a chunk
    at a time as they are read. With `pairs` (a pair model's), (text, pair) tuples."""
    return [text for chunk in IncomingTexts(texts, files, pause_s=None, pairs=pairs).chunks(1 << 62)
            for text in chunk]


PAIR_USAGE = ('give each text argument its second text with --pair, in order (ablate predict MODEL '
              '"text" --pair "second text"), or --file lines of TEXT<TAB>SECOND TEXT')


def pair_arguments(folder: Path, spec: Any, texts: list[str],
                   pairs: list[str] | None) -> list[str] | None:
    """The second texts of the text arguments, as the model reads them: None for a model trained
    on single texts (which --pair is refused for), else one per text argument, in order ([] with
    none: --file's lines give theirs). Its ablate.json decides (trained_pair_column); a folder with
    no record of how it was trained (saved by transformers: a cross-encoder) reads pairs where
    --pair is given. Refused before the model is loaded or a text read."""
    info = model_info(folder)
    column = _model.trained_pair_column(info, spec)
    unrecorded = spec is None and "text_pair_column" not in info  # --pair says it reads pairs
    if not column and not (unrecorded and pairs):
        if pairs:
            raise AblateInputError(
                f"--pair: {folder} was trained on single texts, so it has no second text to "
                "read; give the texts alone (--pair is for a model trained with [data] "
                "text_pair_column)")
        return None
    if texts and not pairs:  # its labels would come from the first text alone, and be wrong
        raise AblateInputError(
            f"{folder} was trained on text pairs ([data] text_pair_column = {column!r}): "
            f"{PAIR_USAGE}")
    pairs = list(pairs or [])
    _check_pair_count(texts, pairs, f"{folder} was trained on text pairs, and " if column else "")
    return pairs


def _check_pair_count(texts: list[str], pairs: list[str], trained: str = "") -> None:
    """One --pair per text argument: refused naming both counts (`trained`, the CLI's words on
    the model that reads pairs, goes before the rule)."""
    if len(pairs) != len(texts):
        raise AblateInputError(
            f"predict: {_count(len(texts), 'text argument')} and {_count(len(pairs), '--pair')}: "
            f"{trained}each text argument takes one --pair, its second text, in the same order")


def _count(number: int, what: str) -> str:
    return f"{number} {what}{'' if number == 1 else 's'}"


class IncomingTexts:
    """predict's texts: the arguments, then each --file's lines in turn (one text per line; blank
    lines skipped; with `pairs`, a pair model's, (text, pair) tuples: the arguments with their
    --pairs, and lines of TEXT<TAB>PAIR), read a chunk at a time as they come, so that a stream
    (`--file -` from a pipe) is labelled while it runs and a file of millions of lines is never
    held whole. What can be refused without reading the input is refused here, before the model
    is loaded; a file's bytes (encoding, line ends, a pair's tab) as they are read, naming the
    line (_LineFile)."""

    def __init__(self, texts: list[str], files: list[Path], pause_s: float | None = PAUSE_S,
                 pairs: list[str] | None = None) -> None:
        texts = _check_arguments(texts)
        if pairs is not None:
            _check_pair_count(texts, pairs)
            pairs = _check_arguments(pairs, "--pair")
        for file in files:
            _check_file(file)
        if not texts and not files:
            raise AblateInputError('predict: no texts; give them as arguments (ablate predict '
                                   'MODEL "some text") or in a file with --file PATH, one per line')
        self.texts, self.files, self.pause_s = list(texts), list(files), pause_s
        self.pairs = None if pairs is None else list(pairs)
        self.total = None if files else len(texts)  # a file's lines are counted as they are read
        self.streamed = any(_may_pause(file) for file in files)  # its chunks may be cut short
        # Regular files' bytes in all: how far the labelling is, where their count is not known.
        self.size = (None if self.streamed or any(str(file) == "-" for file in files)
                     else sum(file.stat().st_size for file in files))
        self.given = 0  # texts given out so far
        self.read = 0  # the files' texts their reads returned (a chunk may not have taken all yet)
        self.sources: list[Any] = []

    def share(self, labelled: int) -> float | None:
        """The part of the files' bytes that `labelled` texts make up, at the mean bytes a text of
        those read so far: predict's line says how far it is in a file whose lines are counted as
        they come (None for a stream, or before any line is read). The mean is of the texts the
        reads returned, whose bytes those are: of the texts given out, a chunk that filled
        mid-read had not taken them all, and the line ran ahead (86 % then 82 %)."""
        if not self.size or not self.read:
            return None
        read = sum(getattr(source, "byte", 0) for source in self.sources)
        return min(1.0, labelled * read / self.read / self.size)

    def chunks(self, size: int) -> Iterator[list[Any]]:
        """Lists of at most `size` texts, in the input's order: one as soon as it is full, at the
        end of the input, and once its first text has waited `pause_s` and the input has nothing
        more to read right now (None: never). A bad input's error is raised after the texts
        before it are given."""
        chunk: list[Any] = []
        due = math.inf  # when the chunk's first text has waited pause_s
        arguments = self.texts if self.pairs is None else list(zip(self.texts, self.pairs, strict=True))
        sources = self.sources = [_Arguments(arguments),
                                  *(_LineFile(file, self.pairs is not None) for file in self.files)]
        failed: AblateInputError | None = None
        try:
            for source in sources:
                while (texts := source.read(self._wait(chunk, due))) is not None:
                    self.read += len(texts) if isinstance(source, _LineFile) else 0
                    if not texts and chunk and time.monotonic() >= due:
                        yield chunk  # the input paused: what came is labelled now
                        chunk = []
                    for text in texts:
                        if not chunk and self.pause_s is not None:
                            due = time.monotonic() + self.pause_s
                        chunk.append(text)
                        self.given += 1
                        if len(chunk) == size:
                            yield chunk
                            chunk = []
        except AblateInputError as err:  # the lines before it are labelled and printed first
            failed = err
        finally:
            for source in sources:
                source.close()
        if chunk:
            yield chunk
        if failed is not None:
            raise failed

    def _wait(self, chunk: list[Any], due: float) -> float | None:
        """How long a read may wait for input: as long as it takes while no text waits."""
        if not chunk or self.pause_s is None:
            return None
        return max(0.0, due - time.monotonic())


def _check_arguments(texts: list[str], what: str = "text argument") -> list[str]:
    """The arguments as typed, each checked: where a locale that names files in ASCII (LC_ALL=C
    with PYTHONUTF8=0) read the UTF-8 a terminal typed as lone surrogates, that UTF-8."""
    texts = [as_typed(text) for text in texts]
    blank = [i for i, text in enumerate(texts, start=1) if not text.strip()]
    if blank:
        given = ("text to classify" if what == "text argument"
                 else "text's second text (--pair)")
        raise AblateInputError(f"predict: {what} {blank[0]} is empty; give each {given} as a "
                               "non-empty argument")
    for number, text in enumerate(texts, start=1):
        try:  # Python keeps an argument's bytes that are not UTF-8 as lone surrogates
            text.encode("utf-8")
        except UnicodeEncodeError as err:
            byte = ord(text[err.start]) - 0xDC00  # surrogateescape: byte b is U+DC00 + b
            shown = f" (byte {byte:#04x})" if 0x80 <= byte <= 0xFF else ""
            raise AblateInputError(
                f"predict: {what} {number} is not UTF-8 text{shown}; give texts as UTF-8 (a "
                "UTF-8 terminal types them so), or in a UTF-8 file with --file") from None
    return texts


def _check_file(file: Path) -> None:
    """A --file refused before anything is read: a data table, a file that is not there, a
    closed standard input."""
    from ..config import LOCAL_DATA_SUFFIXES

    if file.name.lower().endswith(LOCAL_DATA_SUFFIXES):  # its header and labels would be texts
        kind = next(s for s in sorted(LOCAL_DATA_SUFFIXES, key=len, reverse=True)
                    if file.name.lower().endswith(s))
        raise AblateInputError(
            f"--file {str(file)!r} is a data table ({kind}): --file reads plain text, "
            "one text per line, and would classify its header and every column as text; save "
            "the texts alone one per line (.txt), or score labelled data with `ablate "
            f"evaluate MODEL_OR_STUDY --dataset {file}`")
    if str(file) == "-":
        if sys.stdin is None:  # `--file - <&-`, or a service started without one
            raise AblateInputError("--file '-': standard input is closed; give the texts through a "
                                   "pipe or a file")
        return
    try:
        mode = file.stat().st_mode  # not opened yet: a FIFO's open would wait for its writer
    except FileNotFoundError:
        raise AblateInputError(f"--file {str(file)!r}: no such file") from None
    except OSError as err:
        raise AblateInputError(f"--file {str(file)!r}: cannot be read: {err.strerror}") from None
    if stat.S_ISDIR(mode):
        raise AblateInputError(f"--file {str(file)!r}: cannot be read: "
                               f"{os.strerror(errno.EISDIR)}")


def _may_pause(file: Path) -> bool:
    """Its lines may come slowly (a pipe, a terminal, a FIFO), where a regular file's never wait."""
    try:
        mode = os.fstat(sys.stdin.fileno()).st_mode if str(file) == "-" else file.stat().st_mode
    except (OSError, ValueError, AttributeError):  # stdin closed, or an in-memory stream
        return False
    return not stat.S_ISREG(mode)


class _Arguments:
    """The text arguments (with their --pairs, a pair model's), as a source of texts read at once."""

    def __init__(self, texts: list[Any]) -> None:
        self.texts: list[Any] | None = texts

    def read(self, wait: float | None) -> list[Any] | None:
        texts, self.texts = self.texts, None
        return texts

    def close(self) -> None:
        """Nothing is open."""


class _LineFile:
    """One --file's texts as its bytes are read (`-`: standard input), READ_BYTES at a time: the
    lines that a read ends are decoded and split at once, the rest kept for the next read. Lines
    end at \\n (\\r\\n too) only: str.splitlines() would also cut a text at the U+2028, \\x85,
    \\x0c, ... it may hold (pasted tweets and web text do); an input without \\n but with \\r has
    old Mac line ends (LINE_END_PROBE), else its texts would be labelled as one. A line that is
    not UTF-8 is refused by its line and byte in the file, with the encoding where its bytes tell
    it (UTF-16, GBK), as for [data] files; a file without a text is refused at its end. With
    `pairs` (a pair model's) each line is TEXT<TAB>PAIR, given as a (text, pair) tuple; a line
    that is not is refused by its line, as a line that is not UTF-8 is."""

    def __init__(self, file: Path, pairs: bool = False) -> None:
        self.file, self.name, self.pairs = file, f"--file {str(file)!r}", pairs
        self.fd: int | None = None  # None: not opened, or an in-memory stream (a test's stdin)
        self.stream: Any = None
        self.owned = False  # opened here: closed here (standard input is not)
        self.pending = bytearray()  # bytes read that no line end has ended yet
        self.byte, self.line = 0, 1  # where `pending` starts in the file
        self.end: bytes | None = None  # the line end: b"\n" (\r\n too), b"\r", or undecided
        self.saw_cr = False
        self.texts = 0
        self.ended = False
        self.failed: AblateInputError | None = None  # a line not UTF-8: raised after those before

    def read(self, wait: float | None) -> list[Any] | None:
        """The texts of the lines one read ends, waiting at most `wait` s for input (None: as
        long as it takes): [] when nothing came in time or no line ended, None at the end."""
        if self.failed is not None:
            self.close()
            raise self.failed
        if self.ended:
            return None
        if self.fd is None and self.stream is None:
            self._open()
        if wait is not None and self.fd is not None and _CAN_WAIT:
            if not select.select([self.fd], [], [], wait)[0]:
                return []
        try:
            data = (os.read(self.fd, READ_BYTES) if self.fd is not None
                    else getattr(self.stream, "read1", self.stream.read)(READ_BYTES))
        except OSError as err:
            raise AblateInputError(f"{self.name}: cannot be read: {err.strerror or err}") from None
        if not data:  # the end: its last line may have no line end
            self.ended = True
            self.close()
            self.end = self.end or (b"\r" if self.saw_cr else b"\n")
            texts = self._texts(bytes(self.pending)) if self.pending else []
            if not self.texts and self.failed is None:
                raise AblateInputError(f"{self.name} holds no text; give one text per line")
            return texts
        self.pending += data
        start = len(self.pending) - len(data)  # a line end is only new in what was just read
        if self.end is None:
            self.saw_cr = self.saw_cr or b"\r" in data
            if b"\n" in data:
                self.end = b"\n"
            elif self.saw_cr and len(self.pending) >= LINE_END_PROBE:
                self.end = b"\r"
            else:
                return []
            start = 0
        cut = self.pending.rfind(self.end, start) + 1
        if not cut:
            return []
        lines = bytes(self.pending[:cut])
        del self.pending[:cut]
        return self._texts(lines)

    def _texts(self, lines: bytes) -> list[Any]:
        """The texts of whole lines (the last may lack its line end, at the end of the input)."""
        assert self.end is not None
        bom = len(codecs.BOM_UTF8) if self.byte == 0 and lines.startswith(codecs.BOM_UTF8) else 0
        try:
            text = lines[bom:].decode("utf-8")
        except UnicodeDecodeError as err:  # raised at the next read: the lines before it first
            from ..data import not_utf8

            self.failed = AblateInputError(
                f"{self.name}: {not_utf8(lines, self.line, self.byte, self.end)}; save it as "
                "UTF-8, one text per line")
            return self._texts(lines[:lines.rfind(self.end, 0, bom + err.start) + 1])
        first = self.line
        self.byte += len(lines)
        self.line += lines.count(self.end)
        split = text.split(self.end.decode())
        if self.end == b"\n":
            split = [line.removesuffix("\r") for line in split]
        texts: list[Any] = (self._pairs(split, first) if self.pairs
                            else [line for line in split if line.strip()])  # "" after the last end too
        self.texts += len(texts)
        return texts

    def _pairs(self, split: list[str], first: int) -> list[tuple[str, str]]:
        """The (text, pair) of each line that holds one (`first`: the first's number in the
        file); at a line that does not, those before it, the line's error raised at the next
        read (it is earlier in the file than a line not UTF-8 after it)."""
        pairs = []
        for number, line in enumerate(split, start=first):
            if not line.strip():
                continue
            parts = line.split("\t")
            if len(parts) == 2 and parts[0].strip() and parts[1].strip():
                pairs.append((parts[0], parts[1]))
                continue
            wrong = ("has no tab" if len(parts) == 1
                     else f"holds {len(parts) - 1} tabs" if len(parts) > 2
                     else "its first text is empty" if not parts[0].strip()
                     else "its second text is empty")
            self.failed = AblateInputError(
                f"{self.name}: line {number} {wrong}: the model was trained on text pairs, so "
                "each line is one pair, TEXT<TAB>SECOND TEXT (one tab, both texts non-empty)")
            break
        return pairs

    def _open(self) -> None:
        if str(self.file) == "-":
            # `--file -`: standard input, as in `cut -f2 tweets.tsv | ablate predict MODEL --file -`
            stdin = getattr(sys.stdin, "buffer", sys.stdin)
            try:
                self.fd = stdin.fileno()  # read here unbuffered: a line is taken when it comes
            except (OSError, ValueError):  # an in-memory stream, as tests give
                self.stream = stdin
            return
        try:
            self.fd = os.open(self.file, os.O_RDONLY)  # a FIFO's waits for its writer, here
        except FileNotFoundError:
            raise AblateInputError(f"{self.name}: no such file") from None
        except OSError as err:
            raise AblateInputError(f"{self.name}: cannot be read: {err.strerror}") from None
        self.owned = True

    def close(self) -> None:
        if self.owned and self.fd is not None:
            os.close(self.fd)
            self.owned = False


_CAN_WAIT = os.name != "nt"  # select() takes pipes and terminals on POSIX only: Windows blocks


def predict(folder: Path, texts: list[str], batch_size: int | None = None,
            spec: Any = None, pairs: list[str] | None = None) -> list[dict[str, Any]]:
    """Per text: the top label, its probability, and every label's probability (top first).
    `spec`: the study file the model was named by, the record of a model whose ablate.json
    predates text_pair_column. `pairs`: each text's second text, for a model trained on text
    pairs (and only for one)."""
    return [row for rows in prediction_chunks(folder, texts, batch_size, spec, pairs=pairs)
            for row in rows]


def prediction_chunks(folder: Path, texts: list[str] | IncomingTexts,
                      batch_size: int | None = None, spec: Any = None,
                      progress: Callable[[int], None] | None = None,
                      pairs: list[str] | None = None,
                      tokenizer: Any = None) -> Iterator[list[dict[str, Any]]]:
    """predict's rows a chunk of texts at a time (CHUNK_BATCHES batches, as class_logit_chunks takes
    them; IncomingTexts: as they are read, a stream's cut short where it pauses), so that
    they can be printed while the next chunk is read and labelled. The model is refused or loaded
    here, before any text is read. A model trained on text pairs takes each text's second text:
    `pairs` beside a list of texts, or IncomingTexts given its pairs (whose chunks are (text, pair)
    tuples); one trained on single texts refuses them (pair_arguments). `tokenizer`: the
    folder's, where its check loaded it already (load_classifier)."""
    if isinstance(texts, IncomingTexts):
        given = pair_arguments(folder, spec, texts.texts, texts.pairs)
        if (given is None) != (texts.pairs is None):  # a pair model's --file lines read as single
            column = _model.trained_pair_column(model_info(folder), spec)
            raise AblateInputError(f"{folder} was trained on text pairs ([data] text_pair_column "
                                   f"= {column!r}): {PAIR_USAGE}")
    else:
        given = pair_arguments(folder, spec, texts, pairs)
    tokenizer, model, precision = _model.load_classifier(folder, tokenizer=tokenizer)
    batch_size = _model.default_batch_size(model, batch_size)
    size = batch_size * _model.CHUNK_BATCHES
    items: list[Any] = texts if given is None or isinstance(texts, IncomingTexts) else list(
        zip(texts, given, strict=True))
    chunks = (texts.chunks(size) if isinstance(texts, IncomingTexts)
              else (items[start:start + size] for start in range(0, len(items), size)))
    max_length = _model.max_length_of(folder, tokenizer, model)

    def logits(chunk: list[Any]) -> np.ndarray:
        firsts, seconds = ([t for t, _ in chunk], [p for _, p in chunk]) if given is not None \
            else (chunk, None)
        return _model.chunk_logits(model, tokenizer, firsts, seconds, max_length=max_length,
                                   batch_size=batch_size, max_batch_tokens=_model.MAX_BATCH_TOKENS,
                                   precision=precision, progress=progress)

    return _prediction_rows(((chunk, logits(chunk)) for chunk in chunks),
                            _model.label_names_of(model.config))


def _prediction_rows(chunks: Iterable[tuple[list[Any], np.ndarray]],
                     names: list[str]) -> Iterator[list[dict[str, Any]]]:
    """Each chunk's rows; a (text, pair) item's row has "text_pair" beside "text" (the names
    transformers' pipelines take a pair by)."""
    from scipy.special import softmax

    for texts, logits in chunks:
        rows = []
        for text, probabilities in zip(texts, softmax(logits.astype(np.float64), axis=-1),
                                       strict=True):
            ranked = sorted(zip(names, probabilities.tolist(), strict=True), key=lambda p: -p[1])
            given = ({"text": text[0], _model.PAIR_COLUMN: text[1]} if isinstance(text, tuple)
                     else {"text": text})
            rows.append({**given, "label": ranked[0][0], "score": ranked[0][1],
                         "probabilities": dict(ranked)})
        yield rows


def format_predictions(rows: list[dict[str, Any]], shown: int = 5, width: int = 48) -> str:
    """A plain table: text (shortened; a pair's second text beside it), top label, the `shown`
    most probable labels."""
    return "\n".join(prediction_table([rows], shown, width))


def prediction_table(chunks: Iterable[list[dict[str, Any]]], most: int = 5,
                     width: int = 48, full_width: bool = False) -> Iterator[str]:
    """format_predictions's table a chunk of rows at a time: the header with the first chunk.
    Its columns stay as the first chunk set them: the text column as wide as its widest text (at
    most `width`; a later text is shortened to it), the label column as the model's widest label
    name (every row's probabilities name them all). `full_width`: the text column is `width` wide
    from the start (a stream's first chunk may be one short line, the rest cut to its width).
    Rows of text pairs ("text_pair") get a second text column, set as the first."""
    widths: list[int] = []
    label_width = 0
    for rows in chunks:
        keys = ["text", _model.PAIR_COLUMN] if rows and _model.PAIR_COLUMN in rows[0] else ["text"]
        columns = [[_one_line(r[key]) for r in rows] for key in keys]
        lines = []
        if not widths and rows:
            label_width = max(len("label"), *(terminal_columns(shown(name))
                                              for name in rows[0]["probabilities"]))
            widths = [width if full_width else min(
                width, max([len(key), *(terminal_columns(text) for text in texts)]))
                for key, texts in zip(keys, columns, strict=True)]
            lines.append("".join(f"{key:<{w}}  " for key, w in zip(keys, widths, strict=True))
                         + f"{'label':<{label_width}}  probabilities (top first)")
        for i, row in enumerate(rows):
            top = list(row["probabilities"].items())
            probabilities = "  ".join(f"{shown(label)} {p:.4f}" for label, p in top[:most])
            if len(top) > most:
                probabilities += f"  … {len(top) - most} more"
            texts = "".join(f"{_fit(column[i], w)}  " for column, w in zip(columns, widths, strict=True))
            lines.append(f"{texts}{_fit(shown(row['label']), label_width)}  {probabilities}")
        yield "\n".join(lines)


def _one_line(text: str) -> str:
    return shown(" ".join(text.split()))  # a text's line breaks and tabs would break the table's rows


def shown(text: str) -> str:
    """A label or text as a table shows it: a control character (a line break or tab in a class
    name, an escape that the terminal would take as a command) or a line separator as its escape
    (`line\\nbreak`), which would break the table's rows and columns. --json keeps it as it is."""
    if text.isprintable():
        return text
    return "".join(c.encode("unicode_escape").decode("ascii")
                   if unicodedata.category(c) in CONTROL_CATEGORIES else c for c in text)


def terminal_columns(text: str) -> int:
    """Terminal columns the text takes: wide characters (CJK, most emoji) take two."""
    if text.isascii():  # one column a character, without a lookup each
        return len(text)
    return sum(0 if unicodedata.combining(c) else 2 if unicodedata.east_asian_width(c) in "WF"
               else 1 for c in text)


def _fit(text: str, width: int) -> str:
    """The text padded to `width` columns, or shortened with … to fit them."""
    if terminal_columns(text) > width:
        text = text[:width]  # at least a column each, but for combining marks
        while terminal_columns(text) > width - 1:
            text = text[:-1]
        text += "…"
    return text + " " * (width - terminal_columns(text))
