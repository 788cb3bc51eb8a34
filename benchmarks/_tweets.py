"""The tweets and model that padding.py and cpu_means.py time (harness code shared by both)."""

from __future__ import annotations

from typing import Any

MODEL = "sentence-transformers/all-MiniLM-L6-v2"


def tweets(train_samples: int) -> tuple[Any, Any, Any]:
    """(tokenizer, the 3,534 test tweets, `train_samples` shuffled train tweets), tokenized at
    max_length 128 without padding, as ablate tokenizes them."""
    from datasets import load_dataset
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(MODEL)
    raw = load_dataset("mteb/tweet_sentiment_extraction")

    def encode(split: Any) -> Any:
        return split.map(lambda b: tokenizer(b["text"], truncation=True, max_length=128), batched=True,
                         remove_columns=[c for c in split.column_names if c != "label"])

    return (tokenizer, encode(raw["test"]),
            encode(raw["train"].shuffle(seed=0).select(range(train_samples))))
