"""Using a trained model: `ablate predict` (labels and probabilities of new texts) and
`ablate evaluate` (every metric of a model, or of each kept checkpoint of a trial, on labelled data).

Both go through `class_logit_chunks`: texts a chunk at a time (256 batches), each chunk in one call
of the (Rust) tokenizer, batched in order of length so that they carry little padding, in the
trial's precision on a GPU with one host sync per chunk. A chunk's encodings are all that is held
(200,000 texts at once took 2.4 GB), and `predict` prints each chunk's rows as it is done, reading
its input a chunk ahead at most (IncomingTexts: a stream is labelled as its lines come). The
tokenization, truncation and metrics are the study's, so that the best model evaluated on the
study's test split gives the test metrics the study stored for that trial.
"""

from __future__ import annotations

import codecs
import errno
import math
import os
import re
import select
import stat
import sys
import time
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .errors import AblateInputError, first_line
from .models import MODEL_INFO, model_info

DEFAULT_MAX_LENGTH = 512  # for a model folder that ablate did not write (no ablate.json)
# The second text's column by name, as transformers' pipelines take it ({"text", "text_pair"}):
# data that has it, evaluated with a model trained on single texts, is told that it is not read.
PAIR_COLUMN = "text_pair"


def trained_pair_column(info: dict[str, Any], spec: Any = None) -> str | None:
    """The column of the second text the model was trained with; None: single texts. Its
    ablate.json (`info`) decides: the study file may have gained or lost [data]
    text_pair_column since the model was trained. Where ablate.json does not say (written before
    it recorded the column, or no ablate.json), the study file (`spec`) is the only record; a
    model folder alone then reads single texts."""
    if "text_pair_column" in info:
        return info["text_pair_column"] or None
    return spec.data.text_pair_column if spec is not None else None


def load_classifier(folder: Path) -> tuple[Any, Any, str]:
    """Tokenizer, model (on the GPU when there is one, in eval mode) and the precision to run it
    in: the trial's (its stored metrics used it) where this machine has it, else fp32."""
    import torch
    from safetensors import SafetensorError
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from .models import WEIGHT_FILES
    from .train import check_precision

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder))
        model, loading = AutoModelForSequenceClassification.from_pretrained(
            str(folder), output_loading_info=True)
    except (OSError, ValueError) as err:
        raise AblateInputError(f"{folder}: cannot be loaded as a text classifier: "
                               f"{first_line(err)}") from None
    except (SafetensorError, RuntimeError) as err:  # RuntimeError: torch.load's, for a .bin
        weights = next((name for name in WEIGHT_FILES if (folder / name).is_file()), "weights")
        cause = first_line(err).split(". ")[0]  # torch's runs on for sentences
        damaged = ("the file is damaged or cut short, as a copy or save that did not finish "
                   "leaves it; copy or save the model folder again"
                   if isinstance(err, SafetensorError) else "give a folder written by save_pretrained")
        raise AblateInputError(f"{folder}: its weights ({weights}) cannot be read ({cause}): "
                               f"{damaged}") from None
    if loading["missing_keys"]:  # transformers fills them with random weights, and says so softly
        raise AblateInputError(
            f"{folder}: its weights lack {', '.join(sorted(loading['missing_keys'])[:3])}: not a "
            "trained text classifier (those weights would be random)")
    model.to("cuda" if torch.cuda.is_available() else "cpu").eval()
    precision = model_info(folder).get("precision") or "fp32"
    if precision not in ("bf16", "fp16") or check_precision(precision) or not torch.cuda.is_available():
        precision = "fp32"
    return tokenizer, model, precision


GPU_BATCH, CPU_BATCH = 1024, 64  # fastest measured: few large batches on a GPU, small ones on CPU
# Texts tokenized, sorted and run together: 256 batches pad within 1 % of sorting every text
# (16,384 texts on CPU, ~100 MB of encodings; benchmarks/RESULTS.md), and bound what is held.
CHUNK_BATCHES = 256
MAX_BATCH_TOKENS = 65536  # padded tokens a batch holds at most (128 texts of 512)


def class_logits(model: Any, tokenizer: Any, texts: list[str], pairs: list[str] | None = None, *,
                 max_length: int, batch_size: int | None = None, max_batch_tokens: int = MAX_BATCH_TOKENS,
                 precision: str = "fp32", progress: Callable[[int], None] | None = None) -> np.ndarray:
    """The model's logits for each text (and pair), in the texts' order (class_logit_chunks's
    chunks put together)."""
    chunks = list(class_logit_chunks(model, tokenizer, texts, pairs, max_length=max_length,
                                     batch_size=batch_size, max_batch_tokens=max_batch_tokens,
                                     precision=precision, progress=progress))
    if not chunks:
        return np.zeros((0, model.config.num_labels), dtype=np.float32)
    return np.concatenate(chunks)


def class_logit_chunks(model: Any, tokenizer: Any, texts: list[str],
                       pairs: list[str] | None = None, *, max_length: int,
                       batch_size: int | None = None, max_batch_tokens: int = MAX_BATCH_TOKENS,
                       precision: str = "fp32",
                       progress: Callable[[int], None] | None = None) -> Iterator[np.ndarray]:
    """The logits of CHUNK_BATCHES batches' worth of texts at a time, in the texts' order.

    A chunk's texts are tokenized in one call (the fast tokenizer uses every core), then batched
    in order of length and padded with numpy, so a batch pads to its own longest text. A batch
    holds at most `batch_size` texts (default: 1024 on a GPU, where fewer launches pay; 64 on
    CPU, where larger batches ran slower) and `max_batch_tokens` padded tokens (128 reviews of 512
    tokens). The batches run under autocast in `precision` on a GPU, and a chunk's logits come
    back to the host once. `progress` is told the number of texts of each batch run."""
    batch_size = default_batch_size(model, batch_size)
    chunk = batch_size * CHUNK_BATCHES
    for start in range(0, len(texts), chunk):
        yield _chunk_logits(model, tokenizer, texts[start:start + chunk],
                            pairs[start:start + chunk] if pairs is not None else None,
                            max_length=max_length, batch_size=batch_size,
                            max_batch_tokens=max_batch_tokens, precision=precision,
                            progress=progress)


def default_batch_size(model: Any, batch_size: int | None = None) -> int:
    return batch_size or (GPU_BATCH if model.device.type == "cuda" else CPU_BATCH)


def _chunk_logits(model: Any, tokenizer: Any, texts: list[str], pairs: list[str] | None, *,
                  max_length: int, batch_size: int, max_batch_tokens: int,
                  precision: str, progress: Callable[[int], None] | None) -> np.ndarray:
    import contextlib

    import torch

    encoded = tokenizer(texts, pairs, truncation=True, max_length=max_length)
    keys = [key for key in ("input_ids", "token_type_ids", "attention_mask") if key in encoded]
    pad_values = {"input_ids": tokenizer.pad_token_id or 0,
                  "token_type_ids": getattr(tokenizer, "pad_token_type_id", 0), "attention_mask": 0}
    lengths = np.fromiter(map(len, encoded["input_ids"]), dtype=np.int64, count=len(texts))
    order = np.argsort(lengths, kind="stable")
    left = getattr(tokenizer, "padding_side", "right") == "left"
    autocast: Any = contextlib.nullcontext()
    if model.device.type == "cuda" and precision in ("bf16", "fp16"):
        autocast = torch.autocast("cuda", dtype=torch.bfloat16 if precision == "bf16" else torch.float16)
    outputs = []
    with torch.inference_mode(), autocast:
        for rows in _batches(order, lengths, batch_size, max_batch_tokens):
            width = int(lengths[rows[-1]])  # the longest: rows are in order of length
            batch = {}
            for key in keys:
                array = np.full((len(rows), width), pad_values[key], dtype=np.int64)
                for i, row in enumerate(rows):
                    values = encoded[key][row]
                    if left:
                        array[i, width - len(values):] = values
                    else:
                        array[i, :len(values)] = values
                batch[key] = torch.from_numpy(array).to(model.device, non_blocking=True)
            outputs.append(model(**batch).logits.float())
            if progress is not None:
                progress(len(rows))
    logits = torch.cat(outputs).cpu().numpy()  # the chunk's one host sync
    restored = np.empty_like(logits)
    restored[order] = logits
    return restored


def max_length_of(folder: Path, tokenizer: Any, model: Any = None,
                  stored: int | None = None) -> int:
    """Truncate like the trial did (`stored`, else ablate.json), else at the tokenizer's own
    limit; never beyond the positions the model has (a trial whose texts were all shorter may
    have set more)."""
    from .train import position_limit

    stored = stored or model_info(folder).get("max_length")
    if stored:
        length = int(stored)
    else:
        limit = getattr(tokenizer, "model_max_length", DEFAULT_MAX_LENGTH)
        length = limit if limit < 100_000 else DEFAULT_MAX_LENGTH  # "no limit" is stored as 1e30
    limit = position_limit(model, tokenizer) if model is not None else None
    return min(length, limit) if limit is not None else length


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


def read_texts(texts: list[str], files: list[Path]) -> list[str]:
    """Every text of IncomingTexts at once (library callers, tests): `predict` takes them a chunk
    at a time as they are read."""
    return [text for chunk in IncomingTexts(texts, files, pause_s=None).chunks(1 << 62)
            for text in chunk]


class IncomingTexts:
    """predict's texts: the arguments, then each --file's lines in turn (one text per line; blank
    lines skipped), read a chunk at a time as they come, so that a stream (`--file -` from a pipe)
    is labelled while it runs and a file of millions of lines is never held whole. What can be
    refused without reading the input is refused here, before the model is loaded; a file's
    bytes (encoding, line ends) as they are read, naming the line (_LineFile)."""

    def __init__(self, texts: list[str], files: list[Path], pause_s: float | None = PAUSE_S) -> None:
        _check_arguments(texts)
        for file in files:
            _check_file(file)
        if not texts and not files:
            raise AblateInputError('predict: no texts; give them as arguments (ablate predict '
                                   'MODEL "some text") or in a file with --file PATH, one per line')
        self.texts, self.files, self.pause_s = list(texts), list(files), pause_s
        self.total = None if files else len(texts)  # a file's lines are counted as they are read
        self.streamed = any(_may_pause(file) for file in files)  # its chunks may be cut short
        # Regular files' bytes in all: how far the labelling is, where their count is not known.
        self.size = (None if self.streamed or any(str(file) == "-" for file in files)
                     else sum(file.stat().st_size for file in files))
        self.given = 0  # texts given out so far
        self.sources: list[Any] = []

    def share(self, labelled: int) -> float | None:
        """The part of the files' bytes that `labelled` texts make up, at the mean bytes a text of
        those read so far: predict's line says how far it is in a file whose lines are counted as
        they come (None for a stream, or before any line is read)."""
        if not self.size or not self.given:
            return None
        read = sum(getattr(source, "byte", 0) for source in self.sources)
        return min(1.0, labelled * read / self.given / self.size)

    def chunks(self, size: int) -> Iterator[list[str]]:
        """Lists of at most `size` texts, in the input's order: one as soon as it is full, at the
        end of the input, and once its first text has waited `pause_s` and the input has nothing
        more to read right now (None: never). A bad input's error is raised after the texts
        before it are given."""
        chunk: list[str] = []
        due = math.inf  # when the chunk's first text has waited pause_s
        sources = self.sources = [_Arguments(self.texts), *(_LineFile(file) for file in self.files)]
        failed: AblateInputError | None = None
        try:
            for source in sources:
                while (texts := source.read(self._wait(chunk, due))) is not None:
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

    def _wait(self, chunk: list[str], due: float) -> float | None:
        """How long a read may wait for input: as long as it takes while no text waits."""
        if not chunk or self.pause_s is None:
            return None
        return max(0.0, due - time.monotonic())


def _check_arguments(texts: list[str]) -> None:
    blank = [i for i, text in enumerate(texts, start=1) if not text.strip()]
    if blank:
        raise AblateInputError(f"predict: text argument {blank[0]} is empty; give each text to "
                               "classify as a non-empty argument")
    for number, text in enumerate(texts, start=1):
        try:  # Python keeps an argument's bytes that are not UTF-8 as lone surrogates
            text.encode("utf-8")
        except UnicodeEncodeError as err:
            byte = ord(text[err.start]) - 0xDC00  # surrogateescape: byte b is U+DC00 + b
            shown = f" (byte {byte:#04x})" if 0x80 <= byte <= 0xFF else ""
            raise AblateInputError(
                f"predict: text argument {number} is not UTF-8 text{shown}; give texts as UTF-8 (a "
                "UTF-8 terminal types them so), or in a UTF-8 file with --file") from None


def _check_file(file: Path) -> None:
    """A --file refused before anything is read: a data table, a file that is not there, a
    closed standard input."""
    from .config import LOCAL_DATA_SUFFIXES

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
    """The text arguments, as a source of texts read at once."""

    def __init__(self, texts: list[str]) -> None:
        self.texts: list[str] | None = texts

    def read(self, wait: float | None) -> list[str] | None:
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
    it (UTF-16, GBK), as for [data] files; a file without a text is refused at its end."""

    def __init__(self, file: Path) -> None:
        self.file, self.name = file, f"--file {str(file)!r}"
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

    def read(self, wait: float | None) -> list[str] | None:
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

    def _texts(self, lines: bytes) -> list[str]:
        """The texts of whole lines (the last may lack its line end, at the end of the input)."""
        assert self.end is not None
        bom = len(codecs.BOM_UTF8) if self.byte == 0 and lines.startswith(codecs.BOM_UTF8) else 0
        try:
            text = lines[bom:].decode("utf-8")
        except UnicodeDecodeError as err:  # raised at the next read: the lines before it first
            from .data import not_utf8

            self.failed = AblateInputError(
                f"{self.name}: {not_utf8(lines, self.line, self.byte, self.end)}; save it as "
                "UTF-8, one text per line")
            return self._texts(lines[:lines.rfind(self.end, 0, bom + err.start) + 1])
        self.byte += len(lines)
        self.line += lines.count(self.end)
        split = text.split(self.end.decode())
        if self.end == b"\n":
            split = [line.removesuffix("\r") for line in split]
        texts = [line for line in split if line.strip()]  # the "" after the last line end too
        self.texts += len(texts)
        return texts

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


def _batches(order: np.ndarray, lengths: np.ndarray, batch_size: int,
             max_tokens: int) -> list[np.ndarray]:
    """Consecutive runs of `order` (ascending lengths) of at most batch_size rows whose padded
    size (rows × the last row's length) stays within max_tokens; a row always fits alone."""
    batches, start = [], 0
    while start < len(order):
        end = start + 1
        while (end < len(order) and end - start < batch_size
               and (end - start + 1) * lengths[order[end]] <= max_tokens):
            end += 1
        batches.append(order[start:end])
        start = end
    return batches


def predict(folder: Path, texts: list[str], batch_size: int | None = None,
            spec: Any = None) -> list[dict[str, Any]]:
    """Per text: the top label, its probability, and every label's probability (top first).
    `spec`: the study file the model was named by, the record of a model whose ablate.json
    predates text_pair_column."""
    return [row for rows in prediction_chunks(folder, texts, batch_size, spec) for row in rows]


def prediction_chunks(folder: Path, texts: list[str] | IncomingTexts,
                      batch_size: int | None = None, spec: Any = None,
                      progress: Callable[[int], None] | None = None
                      ) -> Iterator[list[dict[str, Any]]]:
    """predict's rows a chunk of texts at a time (CHUNK_BATCHES batches, as class_logit_chunks
    takes them; IncomingTexts: as they are read, a stream's cut short where it pauses), so that
    they can be printed while the next chunk is read and labelled. The model is refused or loaded
    here, before any text is read."""
    pair = trained_pair_column(model_info(folder), spec)
    if pair:  # its labels would come from the first text alone, and be wrong
        raise AblateInputError(
            f"{folder} was trained on text pairs ([data] text_pair_column = {pair!r}); `ablate "
            f"predict` takes single texts: evaluate it with `ablate evaluate` on data with a "
            f"{pair!r} column")
    tokenizer, model, precision = load_classifier(folder)
    batch_size = default_batch_size(model, batch_size)
    size = batch_size * CHUNK_BATCHES
    chunks = (texts.chunks(size) if isinstance(texts, IncomingTexts)
              else (texts[start:start + size] for start in range(0, len(texts), size)))
    max_length = max_length_of(folder, tokenizer, model)
    return _prediction_rows(
        ((chunk, _chunk_logits(model, tokenizer, chunk, None, max_length=max_length,
                               batch_size=batch_size, max_batch_tokens=MAX_BATCH_TOKENS,
                               precision=precision, progress=progress)) for chunk in chunks),
        label_names_of(model.config))


def _prediction_rows(chunks: Iterable[tuple[list[str], np.ndarray]],
                     names: list[str]) -> Iterator[list[dict[str, Any]]]:
    from scipy.special import softmax

    for texts, logits in chunks:
        rows = []
        for text, probabilities in zip(texts, softmax(logits.astype(np.float64), axis=-1),
                                       strict=True):
            ranked = sorted(zip(names, probabilities.tolist(), strict=True), key=lambda p: -p[1])
            rows.append({"text": text, "label": ranked[0][0], "score": ranked[0][1],
                         "probabilities": dict(ranked)})
        yield rows


def format_predictions(rows: list[dict[str, Any]], shown: int = 5, width: int = 48) -> str:
    """A plain table: text (shortened), top label, the `shown` most probable labels."""
    return "\n".join(prediction_table([rows], shown, width))


def prediction_table(chunks: Iterable[list[dict[str, Any]]], shown: int = 5,
                     width: int = 48, full_width: bool = False) -> Iterator[str]:
    """format_predictions's table a chunk of rows at a time: the header with the first chunk.
    Its columns stay as the first chunk set them: the text column as wide as its widest text (at
    most `width`; a later text is shortened to it), the label column as the model's widest label
    name (every row's probabilities name them all). `full_width`: the text column is `width` wide
    from the start (a stream's first chunk may be one short line, the rest cut to its width)."""
    text_width = label_width = 0
    for rows in chunks:
        texts = [_one_line(r["text"]) for r in rows]
        lines = []
        if not text_width and rows:
            label_width = max(len("label"), *(_columns(name) for name in rows[0]["probabilities"]))
            text_width = width if full_width else min(
                width, max([len("text"), *(_columns(text) for text in texts)]))
            lines.append(f"{'text':<{text_width}}  {'label':<{label_width}}  "
                         "probabilities (top first)")
        for text, row in zip(texts, rows, strict=True):
            top = list(row["probabilities"].items())
            probabilities = "  ".join(f"{label} {p:.4f}" for label, p in top[:shown])
            if len(top) > shown:
                probabilities += f"  … {len(top) - shown} more"
            lines.append(f"{_fit(text, text_width)}  {_fit(row['label'], label_width)}  "
                         f"{probabilities}")
        yield "\n".join(lines)


def _one_line(text: str) -> str:
    return " ".join(text.split())  # a text's line breaks and tabs would break the table's rows


def _columns(text: str) -> int:
    """Terminal columns the text takes: wide characters (CJK, most emoji) take two."""
    if text.isascii():  # one column a character, without a lookup each
        return len(text)
    return sum(0 if unicodedata.combining(c) else 2 if unicodedata.east_asian_width(c) in "WF"
               else 1 for c in text)


def _fit(text: str, width: int) -> str:
    """The text padded to `width` columns, or shortened with … to fit them."""
    if _columns(text) > width:
        text = text[:width]  # at least a column each, but for combining marks
        while _columns(text) > width - 1:
            text = text[:-1]
        text += "…"
    return text + " " * (width - _columns(text))


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


def label_names_of(config: Any) -> list[str]:
    """The class names of a model config, in class-id order."""
    return [str(config.id2label[i]) for i in range(config.num_labels)]


def model_label_names(folder: Path) -> list[str]:
    from transformers import AutoConfig

    try:
        return label_names_of(AutoConfig.from_pretrained(str(folder)))
    except (OSError, ValueError) as err:
        raise AblateInputError(f"{folder}: its config.json cannot be loaded: "
                               f"{first_line(err)}") from None


def label_ids(frame: pd.DataFrame, label_names: list[str], where: str, reading: str | None = None,
              column: str = "label") -> np.ndarray:
    """The frame's labels as the model's class ids: every label a name the model knows
    (its label2id), or every label an integer id below its class count; `reading` ("names",
    "ids": evaluate --labels) says which. Unsaid, labels that are both (a model whose names are
    digits other than their ids: star ratings "1".."5" for ids 0..4) and name other classes read
    each way are refused: a guess would score every row against another class, silently."""
    from .config import _did_you_mean
    from .data import labels_hidden

    if labels_hidden(frame):
        raise AblateInputError(
            f"{where} has no labels (every label is -1, withheld as in a hidden test set): "
            "evaluate needs labelled rows; `ablate predict` classifies unlabelled texts")
    labels = frame["label"]
    as_text = labels.astype(str).str.strip()
    index = {name: i for i, name in enumerate(label_names)}
    is_name = as_text.isin(index)
    numbers = pd.to_numeric(labels, errors="coerce")
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
            f"(row {id_row}: {class_id}); give every label as a name ({', '.join(label_names)}) "
            f"or every label as an id {ids}")
    if reading == "ids":
        row, value = _first_row(frame, ~valid_id)
        raise AblateInputError(f"{where}, row {row}: label {value} is not a class id {ids} of the "
                               "model, as --labels ids reads them")
    flagged = ~is_name if reading == "names" or is_name.any() else ~valid_id
    row, value = _first_row(frame, flagged)
    # 'Positive' for the model's 'positive': the name it is closest to, in any case
    hint = _did_you_mean(as_text[flagged].iloc[0], label_names)
    if reading == "names":
        raise AblateInputError(
            f"{where}, row {row}: label {value} is not one of the model's label names "
            f"({', '.join(label_names)}), as --labels names reads them{hint}")
    raise AblateInputError(
        f"{where}, row {row}: label {value} is not one the model knows: give its label names "
        f"({', '.join(label_names)}) or class ids {ids}{hint}")


def _first_row(frame: pd.DataFrame, flagged: pd.Series) -> tuple[int, str]:
    """The file row and the label, as written, of the first flagged row."""
    from .data import first_flagged, show_cell

    row, value = first_flagged(frame, flagged)
    return row, show_cell(value)


def evaluate(folder: Path, frame: pd.DataFrame, batch_size: int | None = None,
             max_length: int | None = None,
             progress: Callable[[int], None] | None = None) -> Evaluation:
    """Every metric of the model in `folder` on `frame` (text, optional text_pair, label ids),
    truncated at `max_length` (a checkpoint's trial's), else where the folder says."""
    import time

    import torch
    import torch.nn.functional as F
    from sklearn.metrics import classification_report

    from .metrics import classification_metrics, confusion

    tokenizer, model, precision = load_classifier(folder)
    label_names = label_names_of(model.config)
    pairs = frame["text_pair"].astype(str).tolist() if "text_pair" in frame.columns else None
    labels = frame["label"].to_numpy(dtype=np.int64)
    started = time.perf_counter()
    logits = class_logits(model, tokenizer, frame["text"].astype(str).tolist(), pairs,
                          max_length=max_length_of(folder, tokenizer, model, max_length),
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
        per_class_text=classification_report(labels, predictions, **report),
        confusion=confusion(logits, labels, len(label_names)),
        runtime_s=runtime, samples_per_s=len(frame) / runtime if runtime > 0 else 0.0,
        device=str(model.device), precision=precision)


def format_evaluation(result: Evaluation) -> str:
    """Metrics, scikit-learn's per-class report, the confusion matrix and the speed, as text."""
    from .metrics import SCALAR_METRICS

    names = [*SCALAR_METRICS, "eval_loss"]
    lines = ["metric               value"]
    lines += [f"{name:<20} {result.metrics[name]:.4f}" for name in names if name in result.metrics]
    lines += ["", "per class (scikit-learn classification_report):",
              _wide_names(result.per_class_text.rstrip(), result.label_names),
              "", "confusion matrix (rows: true label, columns: predicted):"]
    width = max(6, *(_columns(n) for n in result.label_names),
                *(len(str(v)) for row in result.confusion for v in row))
    lines.append(" " * width + " " + " ".join(_right(n, width) for n in result.label_names))
    for name, row in zip(result.label_names, result.confusion, strict=True):
        lines.append(f"{_right(name, width)} " + " ".join(f"{v:>{width}}" for v in row))
    lines += ["", f"inference: {result.examples} examples in {result.runtime_s:.2f} s, "
                  f"{result.samples_per_s:.1f} samples/s ({result.device}, {result.precision})"]
    return "\n".join(lines)


def _right(text: str, width: int) -> str:
    """The text right-aligned in `width` terminal columns (a CJK character takes two)."""
    return " " * (width - _columns(text)) + text


def _wide_names(report: str, names: list[str]) -> str:
    """scikit-learn's classification_report pads its first column by characters: a CJK class name
    (差评) takes two columns a character and pushes its row's numbers right. Re-padded here by
    terminal columns, its first column as wide as scikit-learn's or the widest name."""
    if all(name.isascii() for name in names):
        return report
    first = max(len("weighted avg"), *(len(name) for name in names))  # as scikit-learn sizes it
    shown = max(first, *(_columns(name) for name in names))
    return "\n".join(_right(line[:first].lstrip(), shown) + line[first:] if line else line
                     for line in report.split("\n"))


# --------------------------------------------------------------------------- checkpoints


def checkpoint_folders(spec: Any, key: str) -> list[Path]:
    """A trial's kept checkpoints (trials/<key>/checkpoints/checkpoint-<step>), by step."""
    from .models import keep_all_command, trial_dir

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
                     default_split: str = "test",
                     labels: str | None = None) -> tuple[pd.DataFrame, str]:
    """The labelled rows to evaluate on, with the model's class ids, and where they come from.

    Without --dataset: the study's own splits exactly as its trials saw them (validation carved
    from train, subsamples taken). With --dataset: that split of it, every row (a single file is
    read whole: it has no splits to choose from). The second text is read from `pair_column`,
    the one the model was trained with (trained_pair_column), None: single texts; where the
    study file says otherwise, a note says which is read. `labels` (--labels) says whether its
    labels are the model's label names or its class ids."""
    import dataclasses

    from .config import DataSpec, looks_local_dataset
    from .data import load_split, load_study_splits, split_of_file

    if dataset is not None and not dataset.strip():  # Path("") is the working folder
        raise AblateInputError("--dataset is empty; give a Hub id or a local file or folder, or "
                               "leave --dataset out to use the study's own data")
    given, local = dataset, dataset is not None and looks_local_dataset(dataset)
    if local:  # '~/x.csv' quoted, so the shell left the ~ to us
        dataset = str(Path(dataset).expanduser())
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
        _check_study_rows(trained, splits.fingerprint(), split, trained is not spec)
        disagreement = _pair_disagreement(spec, pair_column)
        if disagreement and notes is not None:
            notes.append(disagreement)
        if splits.label_names != label_names:
            raise AblateInputError(
                f"the model's labels ({', '.join(label_names)}) are not the study's "
                f"({', '.join(splits.label_names)}); give --dataset with labels the model knows")
        return frame, f"{spec.data.dataset}, split {split} (as the study's trials saw it)"

    base = spec.data if spec is not None else DataSpec()
    data_spec = dataclasses.replace(
        base, dataset=dataset, config=config, revision=None, train_split=split,
        text_column=text_column or base.text_column, label_column=label_column or base.label_column,
        text_pair_column=pair_column)
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
        given_options = {"--text-column": bool(text_column), "--label-column": bool(label_column)}
        raise AblateInputError(_as_options(str(err), given_options, spec is not None)) from None
    disagreement = _pair_disagreement(spec, pair_column)
    if disagreement and notes is not None:
        notes.append(disagreement)  # it says what is read, of a text_pair column too
    elif (PAIR_COLUMN in columns and not data_spec.text_pair_column and notes is not None
            and PAIR_COLUMN not in (data_spec.text_column, data_spec.label_column)):
        notes.append(f"column {PAIR_COLUMN!r} of {given} is not read: the model was trained on "
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
            f"{where}: the data names its classes ({', '.join(declared)}) and the model does not "
            f"know {', '.join(map(repr, unknown))}: its labels are {', '.join(label_names)}; "
            "evaluate it on data of those classes")
    if declared != label_names[:len(declared)] and notes is not None:
        notes.append(f"labels mapped by class name: the data's ids name {', '.join(declared)}, "
                     f"the model's {', '.join(label_names)}")
    return frame.assign(label=names)


def _read_as_trained(spec: Any, pair_column: str | None) -> Any:
    """The study's spec, its [data] reading the second text the model was trained with (its
    ablate.json) where the study file now says another; a --set of that key no longer applies."""
    import dataclasses

    from .config import set_key

    if pair_column == spec.data.text_pair_column:
        return spec
    return dataclasses.replace(
        spec, data=dataclasses.replace(spec.data, text_pair_column=pair_column),
        sets=tuple(item for item in spec.sets if set_key(item) != "data.text_pair_column"))


def _pair_disagreement(spec: Any, pair_column: str | None) -> str | None:
    """One line saying which second text is read where the study file (or a --set) names
    another text_pair_column than the model was trained with; None where they agree."""
    from .config import from_here, last_set

    if spec is None or spec.data.text_pair_column == pair_column:
        return None
    file, given = from_here(spec.path), last_set(spec.sets, "data.text_pair_column")
    named = (f"--set {given!r}" if given else
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
    from .config import from_here

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


def _check_study_rows(spec: Any, fingerprint: str, split: str, read_as_trained: bool = False) -> None:
    """The study's splits are rebuilt from its [data]: refused when the files now give other rows
    than its trials trained and were tested on (the carved test split would be other rows, some
    of them trained on). `read_as_trained`: [data] reads the model's second text, not the study
    file's; a study stored with the file's reading has fingerprinted other columns."""
    from . import queue
    from .sweep import DATA_FINGERPRINT, check_same_study

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
        raise AblateInputError(
            f"{spec.data.dataset} no longer gives the rows study {spec.name!r} ran on (content "
            f"fingerprint {stored}, now {fingerprint}), so its {split} split cannot be rebuilt as "
            "its trials saw it: restore the data, or give --dataset and --split to evaluate on "
            "rows of your choice")


def _as_options(message: str, given: dict[str, bool], of_study: bool) -> str:
    """The data package names experiment-file keys; here the user typed command-line options, or left
    them out (then the column is the study's, or the default, and the option that names another
    is said)."""
    message = message.replace("[data] dataset =", "--dataset").replace(
        "[data] text_pair_column =", "text_pair_column (the model was trained on text pairs) =")
    for kind, option in (("text", "--text-column"), ("label", "--label-column")):
        key = f"[data] {kind}_column ="
        if given[option]:
            message = message.replace(key, option)
        else:
            origin = "the study's" if of_study else "the default"
            value = r"('(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\")"  # a repr()'d string
            message = re.sub(f"{re.escape(key)} {value}",
                             rf"{kind} column \1 ({origin}; {option} names another)", message)
    return message
