"""Tokenization, once per (content, tokenizer, max_length), cached on disk; the token-length
and unknown-token checks the start-up notes make.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import AblateInputError, first_line, os_error_behind
from ..locking import written_beside
from ._splits import LabeledSplits, stratified_indices

TOKEN_COLUMNS = ("input_ids", "attention_mask", "token_type_ids", "labels")


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
        Token type ids too, which GPT-2 embeds with its word embeddings (wte) where a tokenizer
        gives them. Read from the Arrow columns in chunks, so a large split is never held as
        Python lists."""
        if self.token_ids is None:
            import pyarrow.compute as pc

            columns = [c for c in ("input_ids", "token_type_ids") if c in self.train.column_names]
            chunks = [pc.unique(pc.list_flatten(batch[column])).to_numpy().astype(np.int64)
                      for batch in self.train.with_format("arrow").iter(batch_size=10_000)
                      for column in columns]
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


def count_longer(splits: LabeledSplits, tokenizer: Any, limit: int) -> int:
    """How many examples (text and pair, encoded as for training) of all splits have more than
    `limit` tokens."""
    return sum(_longer_than(frame, tokenizer, limit) for _, frame in splits.split_items())


def count_cut(splits: LabeledSplits, tokenizer: Any, max_length: int) -> tuple[int, int]:
    """How many of (a fixed sample of) the training texts, encoded as for training, have more
    than `max_length` tokens, which truncation cuts off; and how many were looked at."""
    sample = _train_sample(splits)
    return _longer_than(sample, tokenizer, max_length), len(sample)


COUNT_BATCH = 1000  # texts tokenized at a time to count the long ones


def _longer_than(frame: pd.DataFrame, tokenizer: Any, limit: int) -> int:
    """How many of the frame's examples (text and pair, encoded as for training) have more than
    `limit` tokens: encoded to limit + 1 at most, so a long text costs no more than that, and
    COUNT_BATCH at a time (every split in one call held IMDB's 50,000 reviews as Python lists:
    1.6 GB)."""
    texts = frame["text"].tolist()
    pairs = frame["text_pair"].tolist() if "text_pair" in frame.columns else None
    longer = 0
    for start in range(0, len(texts), COUNT_BATCH):
        end = start + COUNT_BATCH
        encoded = tokenizer(texts[start:end], None if pairs is None else pairs[start:end],
                            truncation=True, max_length=limit + 1)
        longer += sum(len(ids) > limit for ids in encoded["input_ids"])
    return longer


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

    key = f"{splits.fingerprint()}-{tokenizer_key(tokenizer)}-len{max_length}"
    encode = _encoder(tokenizer, max_length, "text_pair" in splits.train.columns)
    tokenized = {}
    with _cache_written(cache_dir):
        cache_dir.mkdir(parents=True, exist_ok=True)
        for name, frame in splits.split_items():
            cache_file = cache_dir / f"{name}-{key}.arrow"
            if cache_file.exists():
                tokenized[name] = datasets.Dataset.from_file(str(cache_file))
                continue
            raw = datasets.Dataset.from_pandas(frame, preserve_index=False)
            # Written in a folder of its own: datasets writes a temporary file beside the one it
            # is given, which a process killed meanwhile left in the cache; the next write
            # removes it.
            with written_beside(cache_file, own_folder=True) as staged:
                raw.map(encode, batched=True, remove_columns=raw.column_names,
                        cache_file_name=str(staged), desc=f"tokenizing {name}")
            tokenized[name] = datasets.Dataset.from_file(str(cache_file))
    return TokenizedData(
        train=tokenized["train"], validation=tokenized["validation"], test=tokenized.get("test"),
        label_names=splits.label_names, train_labels=splits.train["label"].to_numpy())


@contextlib.contextmanager
def _cache_written(cache_dir: Path) -> Iterator[None]:
    """A tokenized cache that cannot be written (a full disk, a read-only or unwritable folder)
    is one line naming the folder and why, not datasets' traceback ending in "I/O operation on
    closed file"; what the study stored is untouched and the same command goes on once it can."""
    try:
        yield
    except Exception as err:
        cause = os_error_behind(err)
        if cause is None:
            raise
        raise AblateInputError(
            f"the tokenized data cannot be cached in {cache_dir}: "
            f"{cause.strerror or first_line(cause)}; the study's stored trials are untouched, "
            "and the same command goes on once it can be written") from None


def with_train_size(data: TokenizedData, n: int | None) -> TokenizedData:
    """The same tokenized data with a stratified subsample of n training examples (the
    max_train_samples knob of a variant); tokenization is not repeated."""
    if n is None or n >= len(data.train_labels):
        return data
    positions = stratified_indices(data.train_labels, n)
    return TokenizedData(train=data.train.select(positions), validation=data.validation,
                         test=data.test, label_names=data.label_names,
                         train_labels=data.train_labels[positions], length_sorted=data.length_sorted)



def tokenize_frame(frame: pd.DataFrame, tokenizer: Any, max_length: int) -> Any:
    """A frame of text (text_pair) and integer label → a tokenized datasets.Dataset, encoded
    exactly as a study's splits are."""
    import datasets

    raw = datasets.Dataset.from_pandas(frame, preserve_index=False)
    return raw.map(_encoder(tokenizer, max_length, "text_pair" in frame.columns), batched=True,
                   remove_columns=raw.column_names)
