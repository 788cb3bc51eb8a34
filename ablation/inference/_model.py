"""A trained classifier and its logits: loading a model folder, and `class_logit_chunks`, which
`predict` and `evaluate` both go through: texts a chunk at a time (CHUNK_BATCHES batches), each
chunk in one call of the (Rust) tokenizer, batched in order of length so that they carry little
padding, in the trial's precision on a GPU with one host sync per chunk.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import AblateInputError, first_line
from ..host_memory import FreedMemory
from ..models import model_info

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


def load_classifier(folder: Path, tokenizer: Any = None) -> tuple[Any, Any, str]:
    """Tokenizer, model (on the GPU when there is one, in eval mode) and the precision to run it
    in: the trial's (its stored metrics used it) where this machine has it, else fp32.
    `tokenizer`: the folder's, loaded already (models.check_classifier_folder), not loaded again."""
    import torch
    from safetensors import SafetensorError
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from ..models import WEIGHT_FILES
    from ..train import check_precision, tokenizer_library_missing

    try:
        if tokenizer is None:
            tokenizer = AutoTokenizer.from_pretrained(str(folder))
        model, loading = AutoModelForSequenceClassification.from_pretrained(
            str(folder), output_loading_info=True)
    except (OSError, ValueError) as err:
        raise AblateInputError(f"{folder}: cannot be loaded as a text classifier: "
                               f"{first_line(err)}") from None
    except ImportError as err:
        raise AblateInputError(f"{folder}: {tokenizer_library_missing(err)}") from None
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
        yield chunk_logits(model, tokenizer, texts[start:start + chunk],
                            pairs[start:start + chunk] if pairs is not None else None,
                            max_length=max_length, batch_size=batch_size,
                            max_batch_tokens=max_batch_tokens, precision=precision,
                            progress=progress)


def default_batch_size(model: Any, batch_size: int | None = None) -> int:
    return batch_size or (GPU_BATCH if model.device.type == "cuda" else CPU_BATCH)


def chunk_logits(model: Any, tokenizer: Any, texts: list[str], pairs: list[str] | None, *,
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
    # Batches grow, in order of length: the heap keeps the freed ones, too small for the next
    freed = FreedMemory() if model.device.type == "cpu" else None
    with torch.inference_mode(), autocast:
        for rows in length_batches(order, lengths, batch_size, max_batch_tokens):
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
            del batch
            if freed is not None:
                freed.step()
            if progress is not None:
                progress(len(rows))
    logits = torch.cat(outputs).cpu().numpy()  # the chunk's one host sync
    del encoded, outputs
    if freed is not None:
        freed.done()
    restored = np.empty_like(logits)
    restored[order] = logits
    return restored


def max_length_of(folder: Path, tokenizer: Any, model: Any = None,
                  stored: int | None = None) -> int:
    """Truncate like the trial did (`stored`, else ablate.json), else at the tokenizer's own
    limit; never beyond the positions the model has (a trial whose texts were all shorter may
    have set more)."""
    from ..train import position_limit

    stored = stored or model_info(folder).get("max_length")
    if stored:
        length = int(stored)
    else:
        limit = getattr(tokenizer, "model_max_length", DEFAULT_MAX_LENGTH)
        length = limit if limit < 100_000 else DEFAULT_MAX_LENGTH  # "no limit" is stored as 1e30
    limit = position_limit(model, tokenizer) if model is not None else None
    return min(length, limit) if limit is not None else length


def length_batches(order: np.ndarray, lengths: np.ndarray, batch_size: int,
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
