"""Using a trained model: `ablate predict` (labels and probabilities of new texts, ``_predict``)
and `ablate evaluate` (every metric of a model, or of each kept checkpoint of a trial, on labelled
data, ``_evaluate``).

Both go through ``_model.class_logit_chunks``: texts a chunk at a time (256 batches), each chunk
in one call of the (Rust) tokenizer, batched in order of length so that they carry little padding,
in the trial's precision on a GPU with one host sync per chunk. A chunk's encodings are all that is
held (200,000 texts at once took 2.4 GB), and `predict` prints each chunk's rows as it is done,
reading its input a chunk ahead at most (IncomingTexts: a stream is labelled as its lines come).
The tokenization, truncation and metrics are the study's, so that the best model evaluated on the
study's test split gives the test metrics the study stored for that trial. Tests that change a
constant or wrap a function patch the module that holds it (``_model.CHUNK_BATCHES``).
"""

from ._evaluate import (
    Evaluation,
    checkpoint_folders,
    evaluate,
    evaluation_frame,
    format_evaluation,
)
from ._model import (
    CHUNK_BATCHES,
    DEFAULT_MAX_LENGTH,
    class_logit_chunks,
    class_logits,
    label_names_of,
    load_classifier,
    max_length_of,
    model_label_names,
    trained_pair_column,
)
from ._predict import (
    IncomingTexts,
    format_predictions,
    pair_arguments,
    predict,
    prediction_chunks,
    prediction_table,
    read_texts,
    terminal_columns,
)

__all__ = [
    "CHUNK_BATCHES", "DEFAULT_MAX_LENGTH", "Evaluation", "IncomingTexts", "checkpoint_folders",
    "class_logit_chunks", "class_logits", "evaluate", "evaluation_frame", "format_evaluation",
    "format_predictions", "label_names_of", "load_classifier", "max_length_of",
    "model_label_names", "pair_arguments", "predict", "prediction_chunks", "prediction_table", "read_texts",
    "terminal_columns", "trained_pair_column",
]
