"""Data: load a Hub dataset or local files, map labels, carve splits, tokenize once (cached on disk).

Rows flow: raw splits (``_files``) → cleaned (empty texts / missing labels dropped, counted) → label
ids → validation carved from train when the data has none → stratified subsamples (``_splits``) →
tokenized once per (content, tokenizer, max_length) and cached under the study's ``cache/`` folder
(``_tokens``). Padding is left to the collator, per batch.
"""

from ._files import load_raw_splits, not_utf8, split_of_file
from ._splits import (
    BOOLEAN_CLASSES,
    BOOLEAN_LABELS,
    LabeledSplits,
    ascii_digits,
    check_train_size,
    first_flagged,
    labels_hidden,
    load_labeled_splits,
    load_split,
    load_study_splits,
    row_count,
    show_cell,
    stratified_indices,
)
from ._tokens import (
    UNKNOWN_SAMPLE,
    TokenizedData,
    count_cut,
    count_longer,
    sorted_by_length,
    tokenize,
    tokenize_frame,
    unknown_token_share,
    with_train_size,
)

__all__ = [
    "BOOLEAN_CLASSES", "BOOLEAN_LABELS", "UNKNOWN_SAMPLE", "LabeledSplits", "TokenizedData",
    "ascii_digits", "check_train_size", "count_cut",
    "count_longer", "first_flagged", "labels_hidden", "load_labeled_splits", "load_raw_splits",
    "load_split", "load_study_splits", "not_utf8", "row_count", "show_cell", "sorted_by_length",
    "split_of_file", "stratified_indices", "tokenize", "tokenize_frame", "unknown_token_share",
    "with_train_size",
]
