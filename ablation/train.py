"""Train and evaluate one trial with the transformers Trainer.

The best checkpoint by the selection metric (kept by ``save_strategy="best"``) is loaded back at the
end and is the one evaluated on validation and, once, on test. Everything measured comes back as one
JSON-ready dict for the study storage.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import platform
import shutil
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import transformers
from torch.utils.data import SequentialSampler
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    DataCollatorWithPadding,
    EarlyStoppingCallback,
    PrinterCallback,
    ProgressCallback,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)
from transformers.trainer_pt_utils import LengthGroupedSampler
from transformers.trainer_utils import has_length

from . import interrupts
from .config import (
    CLASSIFIER_DROPOUT_KEYS,
    DROPOUT_KEYS,
    SHARED_CLASSIFIER_DROPOUT,
    UNDECLARED_CLASSIFIER_DROPOUT,
    ExperimentSpec,
    Recipe,
    home_path,
    toml_value,
)
from .cpu_dropout import use_uniform_dropout
from .data import TokenizedData
from .embedding_gradient import clip_grad_norm, keep_embedding_gradient, step_reachable_rows
from .environment import variables_left_out
from .errors import AblateInputError, first_line
from .host_memory import FreedMemory
from .metrics import SCALAR_METRICS, confusion, trainer_metrics
from .models import check_saved_vocabulary, keep_trial_model, made_up_tokenizer
from .packing import pack_encoder
from .progress import Lines, as_progress
from .tracking import Tracker, tracker_keys
from .variants import TrialSpec

log = logging.getLogger(__name__)

TRAIN_KEYS = ("loss", "grad_norm", "learning_rate")


# --------------------------------------------------------------------------- model set-up


@dataclass(frozen=True)
class ModelSource:
    """Which pretrained model a trial starts from: [model], or the variant's model/model_config."""

    name: str
    revision: str | None
    config: dict[str, Any]
    # Where the name and the overrides were written, for error lines (not part of the identity):
    # the variant's `model` knob or [model] name; the keys its `model_config` knob set.
    name_key: str = field(default="[model] name", compare=False)
    variant_config: tuple[str, ...] = field(default=(), compare=False)

    @classmethod
    def of(cls, spec: ExperimentSpec, recipe: Recipe) -> ModelSource:
        overrides = {**spec.model.config, **(recipe.model_config or {})}
        variant_config = tuple(recipe.model_config or ())
        if recipe.model and recipe.model != spec.model.name:
            return cls(recipe.model, None, overrides, "model", variant_config)
        return cls(spec.model.name, spec.model.revision, overrides, variant_config=variant_config)

    def config_key(self, key: str) -> str:
        """Where config override `key` was written: the variant's model_config or [model] config."""
        return "model_config" if key in self.variant_config else "[model] config"

    def identity(self) -> dict[str, Any]:
        """What the trial's checkpoints are keyed by (the error-line fields left out)."""
        return {"name": self.name, "revision": self.revision, "config": self.config}


class HubUnreachable(OSError):
    """The Hub cannot be connected to, and the cache lacks what is asked for."""


def check_hub_reachable(source: ModelSource) -> None:
    """Before a Hub model's first load in the process: where the Hub cannot be reached (see
    ablation.hub), a model the cache does not hold is one error line at once, not after minutes
    of huggingface_hub's retries and warnings."""
    from huggingface_hub import hf_hub_url, try_to_load_from_cache

    from .config import looks_like_path
    from .hub import unreachable

    if looks_like_path(source.name) or Path(source.name).exists():
        return
    try:
        cached = isinstance(try_to_load_from_cache(source.name, "config.json",
                                                   revision=source.revision), str)
    except ValueError:  # not a repository id either: loading the model says what is wrong
        return
    why = unreachable(hf_hub_url(source.name, "config.json", revision=source.revision))
    if why and not cached:
        raise AblateInputError(model_unavailable(source.name, HubUnreachable(
            f"{why}, and the Hugging Face cache does not hold it"),
            source.name_key, source.revision)) from None


def check_model_folder(source: ModelSource) -> None:
    """A local folder given as the model must hold one whole: without its weights every trial
    failed as it started (validate said ok). A Hugging Face cache's own folder
    (`models--org--name`) is pointed to its Hub id and snapshot. Its vocabulary is checked once
    the tokenizer is loaded (models.check_saved_vocabulary)."""
    from .hub import cached_snapshot
    from .models import BEST_MODEL, MODEL_DIR, check_saved_weights

    folder = home_path(source.name)
    if not folder.is_dir():
        return
    where = f"{source.name_key} = {source.name!r}"
    if not (folder / "config.json").is_file():
        snapshot = cached_snapshot(folder) if folder.name.startswith("models--") else None
        if snapshot:
            repo = folder.name[len("models--"):].replace("--", "/", 1)
            raise AblateInputError(
                f"{where} is a Hugging Face cache's folder of {repo!r}, not a saved model: give "
                f"the Hub id {repo!r} (with HF_HUB_CACHE = {str(folder.parent)!r}), or its "
                f"snapshot folder {str(snapshot)!r}")
        inner = next((folder / name for name in (BEST_MODEL, MODEL_DIR)
                      if (folder / name / "config.json").is_file()), None)
        raise AblateInputError(
            f"{where} is a folder but not a saved model (no config.json); "
            + (f"it holds the model folder {str(inner)!r}: give that" if inner else
               "give a folder written by save_pretrained (config.json, the weights and the tokenizer)"))
    check_saved_weights(folder, where)


def check_hub_tokenizer(source: ModelSource, tokenizer: Any) -> None:
    """A Hub model (or the cache's snapshot of it) without tokenizer files: transformers makes a
    tokenizer of the special tokens alone, every word [UNK], as for a local folder lacking them."""
    if home_path(source.name).is_dir() or not made_up_tokenizer(tokenizer):
        return
    at = f" at [model] revision = {source.revision!r}" if source.revision else ""
    raise AblateInputError(
        f"{source.name_key} = {source.name!r}{at} has no tokenizer vocabulary (tokenizer.json, "
        f"vocab.txt, ...): transformers makes a tokenizer of {len(tokenizer)} tokens, the special "
        "ones, every word [UNK] (its repository, or the Hugging Face cache's copy of it, holds no "
        "tokenizer files); give a model whose repository holds its tokenizer, or a local folder "
        "with the model and its tokenizer (`tokenizer.save_pretrained(folder)`)")


def check_cached_weights(source: ModelSource) -> None:
    """Offline (HF_HUB_OFFLINE, or the Hub unreachable), a Hub model whose cached snapshot has its
    config but no weights (downloaded file by file, or cut short): validate said ok, and every
    trial failed as it started. Online the weights are downloaded with the model."""
    from huggingface_hub import constants, try_to_load_from_cache

    from .config import looks_like_path
    from .hub import cache_only
    from .models import WEIGHT_FILES

    if not cache_only() or looks_like_path(source.name) \
            or home_path(source.name).exists():
        return
    try:
        if any(isinstance(try_to_load_from_cache(source.name, name, revision=source.revision), str)
               for name in WEIGHT_FILES):
            return
    except ValueError:  # not a repository id: loading the config said what was wrong
        return
    at = f" at [model] revision = {source.revision!r}" if source.revision else ""
    raise AblateInputError(
        f"{source.name_key} = {source.name!r}{at}: the Hugging Face cache holds its config but not "
        f"its weights ({' or '.join(WEIGHT_FILES[::2])}), and offline they cannot be downloaded; "
        f"fill the cache ({constants.HF_HUB_CACHE}) with the whole model, or give a local folder")


def load_model_config(source: ModelSource, label_names: list[str]) -> Any:
    """The model's config with the study's overrides; raises AblateInputError for unknown keys."""
    check_hub_reachable(source)
    check_model_folder(source)
    try:
        config = AutoConfig.from_pretrained(source.name, revision=source.revision)
    except (OSError, ValueError) as err:
        raise AblateInputError(model_unavailable(source.name, err, source.name_key,
                                                  source.revision)) from None
    check_cached_weights(source)
    for key in source.config:
        if not hasattr(config, key):
            raise AblateInputError(
                f"{source.config_key(key)} key {key!r}: {type(config).__name__} of {source.name} has no "
                "such setting")
        try:
            setattr(config, key, source.config[key])
        except Exception as err:  # transformers validates some fields (strict dataclasses)
            reason = str(err).strip().splitlines()[-1].strip() if str(err).strip() else type(err).__name__
            raise AblateInputError(
                f"{source.config_key(key)} {key} = {toml_value(source.config[key])} is refused by "
                f"{type(config).__name__}: {reason}") from None
    if source.config:
        _keep_layer_lists(config, source)
        try:  # what save_pretrained checks at the end of every trial (layer_types against the count)
            config.validate()
        except Exception as err:  # noqa: BLE001 - strict dataclasses raise their own error types
            reason = str(err).strip().splitlines()[-1].strip() if str(err).strip() else type(err).__name__
            keys = " and ".join(sorted({source.config_key(key) for key in source.config}))
            raise AblateInputError(
                f"{keys} = {toml_value(source.config)}: {type(config).__name__} of {source.name} "
                f"refuses these overrides ({reason}); change or drop them") from None
    config.num_labels = len(label_names)
    config.id2label = dict(enumerate(label_names))
    config.label2id = {name: i for i, name in enumerate(label_names)}
    return config


# Lists of one entry per layer that a config keeps beside its layer count (ModernBERT's, Llama's,
# Qwen2's layer_types: which layers attend to a sliding window); transformers refuses to save a
# config whose list and count differ.
LAYER_LISTS = ("layer_types", "mlp_layer_types")


def _keep_layer_lists(config: Any, source: ModelSource) -> None:
    """An override of the layer count (`num_hidden_layers = 2`) keeps the first layers: their
    entries of the per-layer lists too, where the overrides do not set those lists themselves.
    More layers than a list has entries are refused in one line naming it (no entry says what the
    added layers would be)."""
    layers = getattr(config, "num_hidden_layers", None)
    if not isinstance(layers, int):
        return
    for name in LAYER_LISTS:
        entries = getattr(config, name, None)
        if name in source.config or not isinstance(entries, list) or len(entries) == layers:
            continue
        if len(entries) < layers:
            key = next((k for k in source.config if getattr(config, k, None) == layers), "num_hidden_layers")
            raise AblateInputError(
                f"{source.config_key(key)} {key} = {layers}: {type(config).__name__} of {source.name} "
                f"gives {name} for {len(entries)} layers; set {name} too, one entry per layer "
                f"(e.g. {toml_value(entries[:2])[:-1]}, ...])")
        setattr(config, name, entries[:layers])


class PretrainedWeights:
    """The pretrained weights, read from disk (or the Hub) once per process.

    The first trial loads the model as usual and keeps a copy of the weights it read; later trials
    of the same model build theirs from a fresh copy of those (``from_pretrained(None,
    state_dict=...)``), which initialises the missing classifier head with the same random draws.
    One model is kept at a time, so a study that compares models holds one extra copy at most."""

    def __init__(self) -> None:
        self._key: str | None = None
        self._model_class: type | None = None
        self._weights: dict[str, torch.Tensor] = {}

    def load(self, source: ModelSource, config: Any) -> Any:
        key = json.dumps([source.name, source.revision, source.config, config.num_labels],
                         sort_keys=True, default=str)
        if key == self._key and self._model_class is not None:
            weights = {name: tensor.clone() for name, tensor in self._weights.items()}  # trained in place
            return self._model_class.from_pretrained(None, config=config, state_dict=weights,
                                                     dtype=torch.float32)
        # fp32 whatever dtype the checkpoint was saved in (transformers loads a bf16 one as bf16:
        # AdamW's updates then fell below bf16's resolution); `precision` autocasts over it.
        model, info = AutoModelForSequenceClassification.from_pretrained(
            source.name, config=config, revision=source.revision, output_loading_info=True,
            dtype=torch.float32,
            ignore_mismatched_sizes=True)  # a checkpoint's own head may have another class count
        fresh = set(info["missing_keys"]) | {k[0] if isinstance(k, tuple) else k
                                             for k in info["mismatched_keys"]}
        self._key, self._model_class = key, type(model)
        self._weights = {name: tensor.detach().clone() for name, tensor in model.state_dict().items()
                         if name not in fresh}
        return model

    def clear(self) -> None:
        self._key, self._model_class, self._weights = None, None, {}


PRETRAINED = PretrainedWeights()


def load_tokenizer(source: ModelSource) -> Any:
    from transformers import AutoTokenizer

    check_hub_reachable(source)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source.name, revision=source.revision)
    except (OSError, ValueError) as err:
        raise AblateInputError(model_unavailable(source.name, err, source.name_key,
                                                  source.revision)) from None
    except ImportError as err:  # a SentencePiece vocabulary without sentencepiece/protobuf installed
        raise AblateInputError(f"{source.name_key} = {source.name!r}: "
                               f"{tokenizer_library_missing(err)}") from None
    check_model_folder(source)
    folder = home_path(source.name)
    if folder.is_dir():
        check_saved_vocabulary(folder, f"{source.name_key} = {source.name!r}", tokenizer)
    check_hub_tokenizer(source, tokenizer)
    if tokenizer.pad_token is None:
        # Decoders (GPT-2, Llama, Mistral) have no padding token, and batches could not be padded:
        # every trial failed. Their end-of-sequence token pads, as transformers suggests; the
        # model's config is told (pad_like_the_tokenizer), so its head reads each text's last
        # token that is not padding. preflight notes it.
        if tokenizer.eos_token is None:
            raise AblateInputError(
                f"{source.name_key} = {source.name!r}: its tokenizer has no padding token and no "
                "end-of-sequence token to pad with, so batches cannot be padded; save the tokenizer "
                "with a pad_token (one the model's vocabulary has)")
        tokenizer.pad_token = tokenizer.eos_token
        tokenizer.ablate_pads_with_eos = True
    return tokenizer


def tokenizer_library_missing(err: ImportError) -> str:
    """A tokenizer whose vocabulary needs a library that is not installed (a SentencePiece
    `spiece.model` saved without `tokenizer.json` needs sentencepiece and protobuf): transformers
    raised ImportError, a traceback, where its other loading errors were one line."""
    return (f"its tokenizer cannot be loaded: {first_line(err)} (install the library it names, "
            "e.g. `pip install sentencepiece protobuf`, or save the tokenizer as tokenizer.json, "
            "which needs none)")


def pad_like_the_tokenizer(config: Any, tokenizer: Any) -> Any:
    """A config without pad_token_id (GPT-2's, Llama's, Qwen2's) gets the tokenizer's: their
    classification heads find each text's last token by it, and without it refuse any batch of
    more than one text."""
    if getattr(config, "pad_token_id", None) is None and tokenizer.pad_token_id is not None:
        config.pad_token_id = tokenizer.pad_token_id
    return config


def model_skeleton(source: ModelSource, config: Any) -> Any:
    """The model built from `config` on the meta device (no memory, no weights, milliseconds), so
    that overrides making an impossible model fail before any trial trains, naming the key."""
    try:
        with torch.device("meta"):
            return AutoModelForSequenceClassification.from_config(config)
    except Exception as err:  # the architectures raise ValueError, ZeroDivisionError, TypeError, ...
        reason = first_line(err)
        if isinstance(err, KeyError) and len(err.args) == 1:  # a lookup's bare key: `('x')` alone
            reason = f"{err.args[0]!r} is not one of the values it takes"
        if not source.config:
            raise AblateInputError(f"{source.name_key} = {source.name!r}: its config does not "
                                   f"build a model: {reason}") from None
        keys = " and ".join(sorted({source.config_key(key) for key in source.config}))
        raise AblateInputError(
            f"{keys} = {toml_value(source.config)}: {type(config).__name__} cannot build a model with these "
            f"overrides ({reason}); change or drop them") from None


NO_LIMIT = 100_000  # tokenizers without a length limit store model_max_length as 1e30


POSITION_EMBEDDINGS = ("position_embeddings", "wpe", "embed_positions")
"""What transformers names a model's learned absolute position embeddings."""


def position_limit(model: Any, tokenizer: Any) -> int | None:
    """The most tokens the model takes: its absolute position embeddings (BERT's
    position_embeddings, GPT-2's wpe, OPT's and BART's embed_positions; RoBERTa-style models number
    positions from pad_token_id + 1 and OPT-style ones from an offset of 2, so those are not usable)
    and the tokenizer's model_max_length where that is a real number; None where neither says
    (relative or rotary positions)."""
    limits = []
    for name, module in model.named_modules():
        if (name.rpartition(".")[2] in POSITION_EMBEDDINGS
                and isinstance(module, torch.nn.Embedding)):
            reserved = (module.padding_idx + 1 if module.padding_idx is not None
                        else getattr(module, "offset", 0))
            limits.append(module.num_embeddings - reserved)
            break
    length = getattr(tokenizer, "model_max_length", None)
    if isinstance(length, int) and 0 < length < NO_LIMIT:
        limits.append(length)
    return min(limits) if limits else None


def trained_versions() -> dict[str, str]:
    """The versions of the libraries that decide a trial's numbers (the same seed under others may
    give others): stored with its result, for the report to name trials trained under different
    ones (a study trained over days may see an upgrade)."""
    from .version import ablate_version

    return {"ablate": ablate_version(), "torch": str(torch.__version__),
            "transformers": transformers.__version__}


def device_name() -> str:
    """The accelerator's or CPU's model name, for the report."""
    if torch.cuda.is_available():
        return torch.cuda.get_device_name()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"CPU: {line.split(':', 1)[1].strip()} ({torch.get_num_threads()} threads)"
    except OSError:
        pass
    if sys.platform == "darwin":  # no /proc; platform.processor() says "arm" (or "i386" on x86_64)
        import subprocess

        with contextlib.suppress(OSError, subprocess.SubprocessError):
            brand = subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True,
                                   text=True, timeout=10).stdout.strip()  # "Apple M2 Pro"
            if brand:
                return f"CPU: {brand} ({torch.get_num_threads()} threads)"
    return f"CPU: {platform.processor() or platform.machine()} ({torch.get_num_threads()} threads)"


def model_unavailable(name: str, err: Exception, key: str = "[model] name",
                      revision: str | None = None) -> str:
    """Why the model named by `key` cannot be loaded, as one line. A Hub id's [model] revision is
    named with it: a revision the model lacks (or the cache does not hold) fails as the name, and
    the line would otherwise send the user to a name that is fine."""
    from .config import NO_SUCH_MODEL_FOLDER, looks_like_path

    reason = first_line(err)
    if Path(name).is_dir():
        return (f"{key} = {name!r} is a folder but not a saved model ({reason}); give a "
                "folder written by save_pretrained (config.json, the weights and the tokenizer)")
    if looks_like_path(name):
        return f"{key} = {name!r}: {NO_SUCH_MODEL_FOLDER}"
    from huggingface_hub import constants

    from .hub import cache_hint, revision_hint

    if constants.HF_HUB_OFFLINE and reason.startswith("We couldn't connect to"):
        # transformers' words for a file the cache lacks offline: no connection was tried
        reason = (f"HF_HUB_OFFLINE is set and the Hugging Face cache ({constants.HF_HUB_CACHE}) "
                  f"does not hold it{' at that revision' if revision else ''}")
    hint = cache_hint(name, "model")  # `all-MiniLM-L6-v2` for the cached `sentence-transformers/...`
    if revision and not hint:  # the id is cached: its revision is what failed
        hint = revision_hint(name, revision)
    if revision:
        return (f"{key} = {name!r} at [model] revision = {revision!r} cannot be loaded ({reason}); "
                "give a revision the model has (a branch, tag or commit) or leave revision out, a "
                "local folder, or make the Hub id at that revision available offline: fill a "
                f"Hugging Face cache, point HF_HUB_CACHE at it and set HF_HUB_OFFLINE=1{hint}")
    return (f"{key} = {name!r} cannot be loaded ({reason}); give a local folder, or make "
            "the Hub id available offline: fill a Hugging Face cache, point HF_HUB_CACHE at it and "
            f"set HF_HUB_OFFLINE=1{hint}")


def apply_dropout(config: Any, recipe: Recipe) -> Any:
    """Dropout goes through the model config; the key names differ between architectures."""
    model_type = getattr(config, "model_type", None)
    for value, keys, knob in ((recipe.dropout, DROPOUT_KEYS, "dropout"),
                              (recipe.classifier_dropout, CLASSIFIER_DROPOUT_KEYS,
                               "classifier_dropout")):
        if value is None:
            continue
        present = [k for k in keys if hasattr(config, k)]
        if knob == "classifier_dropout":
            present += [k for k in UNDECLARED_CLASSIFIER_DROPOUT.get(model_type, ()) if k not in present]
            if not present and model_type in SHARED_CLASSIFIER_DROPOUT:
                raise AblateInputError(
                    f"knob 'classifier_dropout': {type(config).__name__}'s classification head "
                    f"has no dropout of its own, it uses the encoder's "
                    f"{SHARED_CLASSIFIER_DROPOUT[model_type]}; set dropout instead, which sets "
                    "the head's and the encoder's together")
        if not present:
            raise AblateInputError(
                f"knob {knob!r}: {type(config).__name__} has none of {', '.join(keys)}")
        for key in present:
            setattr(config, key, value)
    return config


def resolve_precision(precision: str) -> str:
    """auto → bf16 (or fp16) on a GPU that has it, fp32 on CPU."""
    if precision != "auto":
        return precision
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "fp32"


def check_precision(precision: str) -> str | None:
    """Why a precision cannot run on this machine, or None."""
    if precision == "fp16" and not torch.cuda.is_available():
        return "fp16 needs a CUDA GPU; use precision = \"bf16\", \"fp32\" or \"auto\" on CPU"
    if precision == "bf16" and torch.cuda.is_available() and not torch.cuda.is_bf16_supported():
        return "this GPU has no bf16; use \"fp16\" or \"auto\""
    return None


def class_weights(recipe: Recipe, train_labels: np.ndarray, n_classes: int) -> np.ndarray | None:
    """'balanced' uses scikit-learn's n_samples / (n_classes * count) on the train split."""
    if recipe.class_weight == "none":
        return None
    if recipe.class_weight == "balanced":
        from sklearn.utils.class_weight import compute_class_weight

        present = np.unique(train_labels)
        weights = np.ones(n_classes)
        weights[present] = compute_class_weight("balanced", classes=present, y=train_labels)
        return weights
    if len(recipe.class_weight) != n_classes:
        raise AblateInputError(
            f"class_weight has {len(recipe.class_weight)} values but the data has {n_classes} "
            "classes; give one weight per class, in label-id order")
    return np.asarray(recipe.class_weight, dtype=float)


def make_loss(weights: np.ndarray | None, label_smoothing: float) -> Callable[..., torch.Tensor]:
    """Weighted, smoothed cross-entropy for training; plain cross-entropy for evaluation, so that
    eval loss stays comparable between variants that weight or smooth differently."""
    weight_tensor = None if weights is None else torch.tensor(weights, dtype=torch.float32)

    def loss_fn(outputs: Any, labels: torch.Tensor, num_items_in_batch: Any = None) -> torch.Tensor:
        logits = (outputs["logits"] if isinstance(outputs, dict) else outputs[0]).float()
        if not torch.is_grad_enabled():  # the Trainer evaluates under no_grad
            return F.cross_entropy(logits, labels)
        weight = None if weight_tensor is None else weight_tensor.to(logits.device)
        loss = F.cross_entropy(logits, labels, weight=weight, label_smoothing=label_smoothing,
                               reduction="sum")
        # Sum over the examples of the whole accumulated batch: gradient accumulation then gives
        # the same gradient as one large batch.
        return loss / (num_items_in_batch if num_items_in_batch is not None else labels.numel())

    return loss_fn


# --------------------------------------------------------------------------- callbacks


class TrackerCallback(TrainerCallback):
    """Forwards every Trainer log (train loss, grad norm, lr, eval metrics) to the tracker, and
    steps and evaluations to the terminal's progress."""

    def __init__(self, tracker: Tracker, label: str, metric: str, progress: Lines) -> None:
        self.tracker, self.label, self.metric, self.progress = tracker, label, metric, progress

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        # Resumed from a checkpoint: this attempt's run (a new one, `-try2`) gets the points logged
        # before it, as the trial's stored history has them, not curves that start mid-training.
        for entry in state.log_history:
            logs = {key: value for key, value in entry.items() if key != "step"}
            self.tracker.log(tracker_keys(logs), step=entry["step"])

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.progress.step(self.label, state.global_step, state.max_steps)
        if state.global_step >= state.max_steps > 0:
            # The Trainer logs every logging_steps only: the last steps' loss and grad norm would
            # be missing from the curves and the report's "final" columns.
            control.should_log = True

    def on_epoch_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if control.should_training_stop:
            # Stopped early (early stopping, pruning) at an evaluation: the Trainer logs at the end
            # of the epoch when told to, so the steps since the last log are not missing either.
            control.should_log = True

    def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None,
               **kwargs: Any) -> None:
        if not logs:
            return
        self.tracker.log(tracker_keys(logs), step=state.global_step)
        log.info("step %s: %s", state.global_step, logs)
        key = "eval_loss" if self.metric == "eval_loss" else f"eval_{self.metric}"
        if key in logs:
            self.progress.evaluated(self.label, state.global_step, state.max_steps,
                                    logs.get("epoch", 0), logs["eval_loss"], self.metric, logs[key])


class TrialTimeout(Exception):
    """The trial ran longer than [experiment] trial_timeout."""


class TimeoutCallback(TrainerCallback):
    """Fails a trial that runs longer than trial_timeout (checked after every step). The trial's
    time is what its result's runtime_s counts: resumed from a checkpoint, the time its earlier
    attempts took to reach it (the checkpoint's, AblateTrainer.earlier_trial_s) is counted too,
    so a trial killed, or timed out and retried, that resumes has what is left of its time, not
    the whole of it again at every attempt."""

    def __init__(self, limit_s: int, trainer: AblateTrainer) -> None:
        self.limit_s, self.trainer = limit_s, trainer

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        # set by ResumeLogWindow when training begins; None: a checkpoint that does not say it
        resumed = self.trainer.resumed_step
        earlier = (self.trainer.earlier_trial_s or 0.0) if resumed is not None else 0.0
        elapsed = earlier + time.perf_counter() - self.trainer.trial_started
        if elapsed > self.limit_s:
            before = (f" ({earlier:.0f} s of them in the attempts before its checkpoint at step "
                      f"{resumed})" if earlier else "")
            raise TrialTimeout(f"ran {elapsed:.1f} s{before}, longer than trial_timeout = "
                               f"{self.limit_s} s (step {state.global_step} of {state.max_steps})")


class StopWhenInterrupted(TrainerCallback):
    """Ctrl+C or SIGTERM whose KeyboardInterrupt Python swallowed (see interrupts.check) stops the
    trial at the next step or evaluation batch, as the interrupt would have."""

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        interrupts.check()

    def on_prediction_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        interrupts.check()


class StopWhenTakenOver(TrainerCallback):
    """Stops a trial another process took over as stale (queue.Heartbeat's `lost`) at the next
    step, before it saves a model into the folder the new attempt trains in. At the start of
    training it hands the Trainer's state to the heartbeat (`follow`), whose beats read the step
    from it: the step shows in `status` at no cost to the steps."""

    def __init__(self, lost: threading.Event,
                 follow: Callable[[Any], None] | None = None) -> None:
        self.lost, self.follow = lost, follow

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.follow is not None:
            self.follow(state)

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.check()

    def check(self) -> None:
        if self.lost.is_set():
            from .queue import TrialTakenOver

            raise TrialTakenOver


# --------------------------------------------------------------------------- checkpoints


class SeededLengthGroupedSampler(LengthGroupedSampler):
    """group_by_length's sampler with its order drawn from the seed and the epoch alone, as the
    random sampler's is (accelerate's SeedableRandomSampler). The Trainer's draws each epoch's
    order from torch's global generator, which the dropout masks of the epochs before it had
    advanced: from the second epoch on, a variant that draws other masks (no dropout, another
    max_length, batch size or model) trained on other batches than its baseline, a trial resumed
    there on other batches than the uninterrupted one (the skipped batches were another order's),
    and the processes of a data-parallel trial, each drawing its own masks, on other orders."""

    def __init__(self, sampler: LengthGroupedSampler, seed: int) -> None:
        super().__init__(sampler.batch_size, lengths=sampler.lengths)
        self.seed, self.epoch = seed, 0

    def set_epoch(self, epoch: int) -> None:  # the Trainer's, before each epoch (resumed too)
        self.epoch = epoch

    def __iter__(self) -> Any:
        self.generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return super().__iter__()


class AblateTrainer(Trainer):
    """The Trainer, plus a resumable checkpoint every `checkpoint_steps` optimizer steps, the best
    checkpoint's weights kept in memory where nothing but this process reads them back, and the
    evaluation loss of data-parallel trials computed like a single process's.

    With save_strategy="best" the Trainer sets `control.should_save` to "new best?" at every
    evaluation, which would swallow a periodic save requested by a callback; saving here, after
    the Trainer's own step logic, keeps both."""

    checkpoint_steps = 0
    # The best checkpoint is only loaded back at the end of training (no resumable checkpoints, no
    # kept ones, one process): its weights are copied in memory instead of written to disk
    # (benchmarks/best_checkpoint.py: 0.01 against 0.04 s for MiniLM, 0.05 against 0.11-1.4 s for
    # BERT-base). The checkpoint folder and its trainer_state.json are still written, so the
    # Trainer's bookkeeping is unchanged.
    best_in_memory = False
    _best_weights: tuple[str, dict[str, torch.Tensor]] | None = None
    # Every token id the training batches can hold: AdamW then steps only those rows of the word
    # embeddings where that is the same training (embedding_gradient.step_reachable_rows).
    reachable_token_ids: torch.Tensor | None = None
    _freed: FreedMemory | None = None  # during an evaluation on CPU
    # A resumed trial's time is the whole trial's: each checkpoint carries the seconds of the trial
    # (train_trial's clock: loading, training, evaluating) and of its training (the Trainer's
    # train_runtime) until it, earlier attempts' included; see ResumeLogWindow.
    trial_started = 0.0  # time.perf_counter() when this attempt's train_trial began
    earlier_trial_s: float | None = 0.0  # before this attempt (None: a checkpoint without them)
    earlier_train_s = 0.0
    _train_started = 0.0
    # Resumed from a checkpoint (ResumeLogWindow): its step, and the train loss summed over the
    # logged steps before it (None: a checkpoint that does not carry it), which the Trainer's
    # end-of-training figures leave out.
    resumed_step: int | None = None
    resumed_logged_loss: float | None = None

    def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
        if "train_runtime" in logs and self.resumed_step is not None and self.state.global_step > 0:
            self._whole_trial_figures(logs)
        super().log(logs, *args, **kwargs)

    def _whole_trial_figures(self, logs: dict[str, float]) -> None:
        """The Trainer's end-of-training figures of a resumed trial count the resumed attempt's
        steps only (resumed at step 9 of 28: steps 10 to 28); made the whole trial's here, in the
        dict the Trainer logs and returns as train()'s metrics, so SwanLab's summary/ and the
        report read the same figures."""
        steps, after = self.state.global_step, self.state.global_step - self.resumed_step
        if "train_loss" in logs and self.resumed_logged_loss is not None:
            logs["train_loss"] = (self.resumed_logged_loss + logs["train_loss"] * after) / steps
        runtime = logs.get("train_runtime")
        if self.earlier_trial_s is None or not runtime:  # earlier attempts' time unknown
            return
        samples = logs.get("train_samples_per_second", 0.0) * runtime * steps / max(after, 1)
        logs["train_runtime"] = runtime + self.earlier_train_s
        logs["train_samples_per_second"] = samples / logs["train_runtime"]
        logs["train_steps_per_second"] = steps / logs["train_runtime"]

    def _get_train_sampler(self, *args: Any, **kwargs: Any) -> Any:
        sampler = super()._get_train_sampler(*args, **kwargs)
        if isinstance(sampler, LengthGroupedSampler):
            seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
            return SeededLengthGroupedSampler(sampler, seed)
        return sampler

    def create_optimizer(self, model: Any = None) -> Any:
        optimizer = super().create_optimizer(model)
        if self.reachable_token_ids is not None:
            step_reachable_rows(self.model, optimizer, self.reachable_token_ids)
        return optimizer

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        if not (self.best_in_memory and _internal_call and output_dir):
            super().save_model(output_dir, _internal_call)
            return
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        state = self.model.state_dict()
        kept = self._best_weights[1] if self._best_weights else {}
        if kept.keys() == state.keys():  # the next best: copied into the same host tensors
            for name, tensor in state.items():
                kept[name].copy_(tensor)
        else:
            kept = {name: tensor.detach().to("cpu", copy=True) for name, tensor in state.items()}
        self._best_weights = (output_dir, kept)

    def prediction_step(self, *args: Any, **kwargs: Any) -> Any:
        output = super().prediction_step(*args, **kwargs)
        if self._freed is not None:
            self._freed.step()
        return output

    def _get_eval_sampler(self, eval_dataset: Any) -> Any:
        # transformers evaluates with its length-grouped sampler too where training uses one
        # (group_by_length): batches in random order, so predict_in_order put every prediction
        # beside another example's label. Evaluation reads the set in order, as without it.
        if eval_dataset is None or not has_length(eval_dataset):
            return None
        return SequentialSampler(eval_dataset) if self.args.world_size <= 1 else None

    def _clip_grad_norm(self, model: Any) -> Any:
        if getattr(self.accelerator, "scaler", None) is None:  # no fp16 gradients to unscale first
            norm = clip_grad_norm(model, self.args.max_grad_norm)  # kept embedding gradient's rows
            if norm is not None:
                return norm
        return super()._clip_grad_norm(model)

    def _get_grad_norm(self, model: Any, grad_norm: Any = None) -> Any:
        # Clipping off (max_grad_norm = 0): the Trainer measures the norm over model.parameters(),
        # which misses the word embeddings' kept gradient; infinity measures it and scales by 1.
        if grad_norm is None and getattr(self.accelerator, "scaler", None) is None:
            grad_norm = clip_grad_norm(model, float("inf"))
        return super()._get_grad_norm(model, grad_norm)

    def train(self, *args: Any, **kwargs: Any) -> Any:
        self._train_started = time.perf_counter()  # this attempt's training: see earlier_train_s
        return super().train(*args, **kwargs)

    def _load_callback_state(self) -> None:  # resumed: the checkpoint's state was just read
        super()._load_callback_state()
        # trainer_state.json names the best checkpoint by its absolute path, which no longer
        # exists where the output folder moved or was renamed since: the Trainer drops it (or
        # fails to load it at the end) and keeps the last weights. The best step's checkpoint
        # is found here again.
        step, best = self.state.best_global_step, self.state.best_model_checkpoint
        if step is not None and (best is None or not Path(best).is_dir()):
            here = Path(self.args.output_dir) / f"checkpoint-{step}"
            if here.is_dir():
                log.info("the best checkpoint (step %s) is now %s: the output folder moved", step, here)
                self.state.best_model_checkpoint = str(here)

    def _load_best_model(self) -> None:
        if self._best_weights and self._best_weights[0] == self.state.best_model_checkpoint:
            log.info("loading the best model (step %s) from memory", self.state.best_global_step)
            self.model.load_state_dict(self._best_weights[1])
            self._best_weights = None
            return
        super()._load_best_model()

    def _maybe_log_save_evaluate(self, tr_loss: Any, grad_norm: Any, model: Any, trial: Any,
                                 *args: Any, **kwargs: Any) -> None:
        super()._maybe_log_save_evaluate(tr_loss, grad_norm, model, trial, *args, **kwargs)
        step = self.state.global_step
        if (self.checkpoint_steps and step % self.checkpoint_steps == 0 and step < self.state.max_steps
                and not (Path(self.args.output_dir) / f"checkpoint-{step}").exists()):
            self._save_checkpoint(model, trial)

    def _save_checkpoint(self, model: Any, trial: Any) -> None:
        # A resumable one: see ResumeLogWindow (the Trainer's running loss: transformers 5.x's).
        # Written first, beside the checkpoint folder: the Trainer writes trainer_state.json last,
        # which makes the checkpoint complete (resumable_checkpoint), so a process killed between
        # the two leaves no complete checkpoint without its window. Beside it, not in it: a
        # data-parallel process making the folder would tell rank 0 it was saved already.
        if self.checkpoint_steps and hasattr(self, "_tr_loss"):
            window = Path(self._get_output_dir(trial=trial)) / LOG_WINDOW.format(
                step=self.state.global_step, process=self.args.process_index)
            now = time.perf_counter()
            window.write_text(json.dumps({
                "loss": self._tr_loss.item(), "last_logged": self._globalstep_last_logged,
                "logged_loss": self._total_loss_scalar,
                "trial_s": None if self.earlier_trial_s is None
                else self.earlier_trial_s + now - self.trial_started,
                "train_s": self.earlier_train_s + now - self._train_started}))
        super()._save_checkpoint(model, trial)
        if self.checkpoint_steps and self.args.should_save:  # where the Trainer rotates them
            _remove_rotated_windows(Path(self._get_output_dir(trial=trial)), self.state.global_step)

    def evaluate(self, *args: Any, **kwargs: Any) -> dict[str, float]:
        # Each evaluation's data loader draws its base seed from torch's CPU generator: without the
        # fork, evaluating at other steps (eval_steps) would change the dropout masks and data order
        # of every training step after it, and an eval_steps variant would train another model.
        with torch.random.fork_rng(devices=[]):
            return super().evaluate(*args, **kwargs)

    def evaluation_loop(self, dataloader: Any, description: str, prediction_loss_only: bool | None = None,
                        ignore_keys: list[str] | None = None, metric_key_prefix: str = "eval") -> Any:
        # Validation and test are read in order of length: on CPU each batch is larger than the
        # last, and the heap kept the freed ones (1,500 IMDB reviews at 512 tokens: 2.0 GB).
        self._freed = FreedMemory() if self.args.device.type == "cpu" else None
        try:
            output = super().evaluation_loop(dataloader, description, prediction_loss_only,
                                             ignore_keys, metric_key_prefix)
        finally:
            if self._freed is not None:
                self._freed.done()
            self._freed = None
        # Data-parallel: the Trainer's loss average counts the samples that pad the last uneven
        # batch; the gathered predictions do not. Plain cross-entropy of those (log_loss) is what a
        # single process reports as its loss.
        prefix = metric_key_prefix
        if self.args.world_size > 1 and f"{prefix}_log_loss" in output.metrics:
            output.metrics[f"{prefix}_loss"] = output.metrics[f"{prefix}_log_loss"]
        return output


CHECKPOINT_IDENTITY = "trial.json"
# Beside checkpoint-<step>/, per process: the train loss summed since the last logged step.
LOG_WINDOW = "log_window-{step}-{process}.json"
OLD_LOG_WINDOW = "log_window-{}.json"  # inside checkpoint-<step>/, as ablate wrote it before


def _remove_rotated_windows(checkpoint_dir: Path, step: int) -> None:
    """Remove the log windows of the checkpoints before `step` that are no longer there: the
    Trainer keeps the best and the latest checkpoint and removes the others, and their windows
    (one a process) stayed beside them, a file more at every checkpoint until the trial ended.
    Later steps' are left alone: another process of a data-parallel trial writes its window of a
    step before the checkpoint's folder exists."""
    for window in checkpoint_dir.glob(LOG_WINDOW.format(step="*", process="*")):
        at = window.name.split("-")[1]
        if at.isdigit() and int(at) < step and not (checkpoint_dir / f"checkpoint-{at}").is_dir():
            window.unlink(missing_ok=True)


class ResumeLogWindow(TrainerCallback):
    """A resumed trial's first logged train loss averages every step since the last logged one,
    as the uninterrupted trial's does: the Trainer starts its sum at the checkpoint, so a
    checkpoint between two logging steps (checkpoint_steps = 3, logging_steps = 2) logged the
    mean of the steps after it only. The window also carries the trial's time until the checkpoint
    (AblateTrainer.earlier_trial_s)."""

    def __init__(self, trainer: AblateTrainer, checkpoint: Path) -> None:
        self.trainer, self.checkpoint = trainer, checkpoint

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        beside = self.checkpoint.parent / LOG_WINDOW.format(
            step=self.checkpoint.name.split("-")[-1], process=args.process_index)
        inside = self.checkpoint / OLD_LOG_WINDOW.format(args.process_index)
        try:  # a trial whose checkpoint an earlier ablate wrote (upgraded mid-study): inside it
            window = json.loads((beside if beside.is_file() else inside).read_text())
        except (OSError, ValueError):  # a checkpoint from before these were written
            self.trainer.earlier_trial_s = None  # its earlier attempts' time unknown
            return
        self.trainer._tr_loss += window["loss"]
        self.trainer._globalstep_last_logged = window["last_logged"]
        self.trainer.resumed_step = state.global_step
        # None: written by an ablate before it (train_loss stays the resumed attempt's)
        self.trainer.resumed_logged_loss = window.get("logged_loss")
        self.trainer.earlier_trial_s = window.get("trial_s")
        self.trainer.earlier_train_s = window.get("train_s") or 0.0


def resumable_checkpoint(checkpoint_dir: Path, identity: dict[str, Any],
                         passed_over: list[str] | None = None) -> Path | None:
    """The trial's last complete checkpoint, if it was written by the same trial (same recipe,
    seed and train set); anything else in the folder is removed, so the trial starts over.
    `passed_over` gets the names of the trial's incomplete checkpoints, removed.

    A checkpoint a kill left incomplete is removed too: AblateTrainer takes a checkpoint folder
    at its step for one this attempt saved (the Trainer's own), and would not save that step.
    Every process of a data-parallel trial removes the same folders here, before any of them
    trains (the model's broadcast waits for all), so none removes what another saves."""
    try:
        same = json.loads((checkpoint_dir / CHECKPOINT_IDENTITY).read_text()) == identity
    except (OSError, ValueError):
        same = False
    folders = list(checkpoint_dir.glob("checkpoint-*")) if same else []
    complete = [  # trainer_state.json is written last: a killed save lacks it
        path for path in folders
        if _whole_json(path / "trainer_state.json") and (path / "optimizer.pt").is_file()
        and path.name.split("-")[-1].isdigit()]
    incomplete = sorted((path for path in folders if path not in complete),
                        key=lambda path: path.name)
    if passed_over is not None:
        passed_over += [path.name for path in incomplete]
    if not complete:
        shutil.rmtree(checkpoint_dir, ignore_errors=True)
        return None
    for path in incomplete:
        shutil.rmtree(path, ignore_errors=True)
    return max(complete, key=lambda path: int(path.name.split("-")[-1]))


def _whole_json(path: Path) -> bool:
    """Whether `path` holds a whole JSON document: a save killed while it wrote the file (not
    in one step: the Trainer writes it in place) left it cut short, and resumed, the trial
    would fail on it at every retry."""
    try:
        json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return True


# --------------------------------------------------------------------------- one trial


# How a trial's data order follows from its seed (in each checkpoint's identity: a checkpoint of
# another is not resumed, as its skipped batches were another order's). 1: the Trainer's, epoch e
# ordered by seed + e, group_by_length's by torch's generator. 2: data_order_seed(seed) + e, both.
DATA_ORDER = 2


def data_order_seed(seed: int) -> int:
    """The seed the sampler orders a trial's epoch e by, plus e (accelerate's
    SeedableRandomSampler, SeededLengthGroupedSampler). The trial's seed itself there made seed 1's
    second epoch seed 2's first, batch for batch: `seeds = [42, 43, 44]` shared most of their data
    orders. Spread over 2**32 instead, two seeds share an epoch's order by chance alone (about one
    pair in 2**31 / epochs)."""
    return int.from_bytes(hashlib.sha256(f"ablate data order {seed}".encode()).digest()[:4], "big")


# transformers' schedulers stepped on the selection metric (metric_for_best_model) at each evaluation.
METRIC_SCHEDULERS = ("reduce_lr_on_plateau", "greedy")


def training_arguments(recipe: Recipe, spec: ExperimentSpec, seed: int,
                       checkpoint_dir: Path, step_bars: bool = False) -> TrainingArguments:
    """The Trainer's arguments for one trial of `recipe`; `step_bars`: a tqdm bar of training steps
    (where the terminal has room for it) instead of one line per evaluation."""
    precision = resolve_precision(recipe.precision)
    eval_by_steps = recipe.eval_steps > 0
    keep_all = spec.experiment.save_models == "all"  # a checkpoint at every evaluation, all kept
    return TrainingArguments(
        output_dir=str(checkpoint_dir),
        per_device_train_batch_size=recipe.batch_size,
        per_device_eval_batch_size=recipe.eval_batch_size,
        gradient_accumulation_steps=recipe.gradient_accumulation_steps,
        learning_rate=recipe.learning_rate,
        num_train_epochs=recipe.epochs,
        max_steps=recipe.max_steps,
        weight_decay=recipe.weight_decay,
        warmup_steps=recipe.warmup_ratio,  # transformers 5: a float < 1 is a ratio of all steps
        lr_scheduler_type=recipe.lr_scheduler,
        # Stepped on the selection metric at each evaluation: in its direction (transformers leaves
        # torch's default 'min', which cut the rate as macro_f1 rose).
        lr_scheduler_kwargs={"mode": "max" if spec.greater_is_better else "min"}
        if recipe.lr_scheduler in METRIC_SCHEDULERS else {},
        max_grad_norm=recipe.max_grad_norm,
        logging_strategy="steps",
        logging_steps=recipe.logging_steps,
        logging_first_step=True,
        train_sampling_strategy="group_by_length" if recipe.group_by_length else "random",
        eval_strategy="steps" if eval_by_steps else "epoch",
        eval_steps=recipe.eval_steps if eval_by_steps else None,
        save_strategy=("steps" if eval_by_steps else "epoch") if keep_all
        else "best",  # otherwise write a checkpoint when the selection metric improves
        save_steps=recipe.eval_steps if eval_by_steps and keep_all else None,
        save_total_limit=None if keep_all else 1,  # 1: the Trainer keeps the best and the latest
        save_only_model=not spec.experiment.checkpoint_steps,  # resumable ones need the optimizer
        # Early stopping's count (and the Trainer's control state) as the checkpoint left them,
        # also where checkpoint_steps was turned off since: the trial resumes all the same.
        restore_callback_states_from_checkpoint=True,
        load_best_model_at_end=True,
        metric_for_best_model="loss" if spec.experiment.metric == "eval_loss"
        else spec.experiment.metric,
        greater_is_better=spec.greater_is_better,
        seed=seed,
        data_seed=data_order_seed(seed),
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        report_to="none",
        disable_tqdm=not step_bars,
        dataloader_num_workers=0,
        # Data-parallel: each process's loss is the mean over its share of the batch and DDP
        # averages the gradients. The Trainer's token averaging across devices would also multiply
        # the loss by the process count, which is wrong for sequence classification losses.
        average_tokens_across_devices=False,
        ddp_find_unused_parameters=False,
        use_cpu=not torch.cuda.is_available(),
    )


TIMING_KEYS = ("runtime", "samples_per_second", "steps_per_second")


def _split_metrics(metrics: dict[str, float], prefix: str) -> tuple[dict[str, float], float | None]:
    """Trainer's `test_accuracy`, `test_loss` → `accuracy`, `eval_loss` (the config's names),
    without the timings; returns (metrics, samples per second)."""
    out = {}
    for key, value in metrics.items():
        name = key[len(prefix) + 1:] if key.startswith(prefix + "_") else key
        if name not in TIMING_KEYS:
            out["eval_loss" if name == "loss" else name] = float(value)
    return out, metrics.get(f"{prefix}_samples_per_second")


def _curves(log_history: list[dict]) -> tuple[list[dict], list[dict]]:
    train, evaluation = [], []
    for entry in log_history:
        point = {"step": entry.get("step"), "epoch": entry.get("epoch")}
        if "loss" in entry:
            train.append(point | {k: entry[k] for k in TRAIN_KEYS if k in entry})
        elif "eval_loss" in entry:
            evaluation.append(point | {k[5:]: v for k, v in entry.items()
                                       if k.startswith("eval_") and isinstance(v, (int, float))
                                       and not k.endswith(("_runtime", "_per_second"))})
    return train, evaluation


# `accelerate config` and `accelerate launch` settings a user's shell may hold, which the Trainer
# and accelerate read: ACCELERATE_MIXED_PRECISION=bf16 trained every trial in bf16 autocast where
# its recipe said fp32 (and the report said fp32), ACCELERATE_USE_DEEPSPEED failed every trial,
# ACCELERATE_DYNAMO_BACKEND compiled each model (8x slower on CPU). A recipe's knobs decide.
ACCELERATE_PREFIX = "ACCELERATE_"


def accelerate_variables() -> dict[str, str]:
    """The ACCELERATE_* variables set in this process's environment."""
    return {name: value for name, value in os.environ.items() if name.startswith(ACCELERATE_PREFIX)}


def without_accelerate_variables() -> contextlib.AbstractContextManager[dict[str, str]]:
    """The ACCELERATE_* variables out of the environment while a trial trains, the user's again
    after it (a Python caller's process keeps its own)."""
    return variables_left_out(lambda name: name.startswith(ACCELERATE_PREFIX))


def accelerate_note() -> str | None:
    """What `validate` and `run` say where the environment holds ACCELERATE_* variables."""
    names = sorted(accelerate_variables())
    if not names:
        return None
    shown = ", ".join(f"{name}={os.environ[name]}" for name in names[:3])
    more = f" and {len(names) - 3} more" if len(names) > 3 else ""
    return (f"the environment sets {shown}{more}: ablate's trials train without ACCELERATE_* "
            "variables (accelerate's own settings), as each recipe says (precision, "
            "devices_per_trial)")


def train_trial(trial: TrialSpec, spec: ExperimentSpec, data: TokenizedData, tokenizer: Any,
                trial_dir: Path, tracker: Tracker, echo: Callable[[str], None] = print,
                extra_callbacks: list[TrainerCallback] | None = None) -> dict[str, Any]:
    """Train one trial; returns what the storage keeps. Raises on failure."""
    with without_accelerate_variables():
        return _train_trial(trial, spec, data, tokenizer, trial_dir, tracker, echo, extra_callbacks)


def _train_trial(trial: TrialSpec, spec: ExperimentSpec, data: TokenizedData, tokenizer: Any,
                 trial_dir: Path, tracker: Tracker, echo: Callable[[str], None],
                 extra_callbacks: list[TrainerCallback] | None) -> dict[str, Any]:
    started = time.perf_counter()
    recipe = trial.recipe
    n_classes = len(data.label_names)
    transformers.set_seed(trial.seed)
    memory_at_start = accelerator_memory_mb()  # what earlier trials left behind: should be ~0
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
        torch.backends.cuda.matmul.allow_tf32 = True  # fp32 matmuls that remain (bf16 runs too)
        torch.backends.cudnn.allow_tf32 = True

    source = ModelSource.of(spec, recipe)
    config = pad_like_the_tokenizer(apply_dropout(load_model_config(source, data.label_names), recipe),
                                    tokenizer)
    model = PRETRAINED.load(source, config)
    weights = class_weights(recipe, data.train_labels, n_classes)
    # Accumulated micro-batches go through make_loss too: BERT's own loss is a mean per
    # micro-batch, which the Trainer divides by the accumulation steps, so an epoch's last step
    # of uneven micro-batches (10 and 6 rows) weighted its 6 rows as much as its 10.
    custom_loss = (weights is not None or recipe.label_smoothing > 0
                   or recipe.gradient_accumulation_steps > 1)
    validation_set, validation_order = data.by_length("validation")
    checkpoint_dir = trial_dir / "checkpoints"
    identity = {"recipe": recipe.to_dict(), "seed": trial.seed, "source": source.identity(),
                "train_examples": len(data.train_labels), "data_order": DATA_ORDER}
    identity = json.loads(json.dumps(identity, default=str))  # as it reads back from disk
    passed_over: list[str] = []  # incomplete: a kill cut their save short
    resume_from = resumable_checkpoint(checkpoint_dir, identity, passed_over)
    if spec.experiment.checkpoint_steps:
        checkpoint_dir.mkdir(parents=True, exist_ok=True)
        (checkpoint_dir / CHECKPOINT_IDENTITY).write_text(json.dumps(identity))
    progress = as_progress(echo)
    args = training_arguments(recipe, spec, trial.seed, checkpoint_dir, progress.step_bars)
    reachable = None
    if args.use_cpu:  # measured on CPU only (benchmarks/cpu_dropout.py, packing.py, step_pairs.py)
        use_uniform_dropout(model)  # torch's CPU dropout masks are slow
        pack_encoder(model)  # layers skip the padding (uses the attention just swapped in)
        # No fresh zeroed (vocabulary × hidden) gradient a step (DDP reduces dense gradients of
        # its own), and AdamW over the word embeddings' rows that training batches can hold only.
        if args.world_size == 1 and keep_embedding_gradient(model):
            reachable = data.train_token_ids()
            if tokenizer.pad_token_id is not None:
                reachable = np.append(reachable, tokenizer.pad_token_id)
    callbacks: list[TrainerCallback] = [
        TrackerCallback(tracker, trial.key, spec.experiment.metric, progress),
        StopWhenInterrupted()]
    if recipe.early_stopping_patience:
        callbacks.append(EarlyStoppingCallback(recipe.early_stopping_patience))
    callbacks += extra_callbacks or []
    trainer = AblateTrainer(
        model=model, args=args, train_dataset=data.train, eval_dataset=validation_set,
        processing_class=tokenizer, data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=trainer_metrics(data.label_names),
        compute_loss_func=make_loss(weights, recipe.label_smoothing) if custom_loss else None,
        callbacks=callbacks)
    # BERT's own loss is the mean over its micro-batch, whatever num_items_in_batch says; the
    # Trainer would take it as already divided for gradient accumulation (the model's forward takes
    # **kwargs) and sum N of them: N× the loss and gradient. make_loss divides by the whole batch.
    trainer.loss_is_scaled_for_ga = custom_loss
    trainer.checkpoint_steps = spec.experiment.checkpoint_steps
    trainer.trial_started = started
    if reachable is not None:
        trainer.reachable_token_ids = torch.from_numpy(reachable)
    trainer.best_in_memory = (not spec.experiment.checkpoint_steps and spec.experiment.save_models != "all"
                              and args.world_size == 1)
    if args.disable_tqdm:  # our callback prints one line per evaluation instead of every dict
        trainer.remove_callback(PrinterCallback)
    else:
        trainer.remove_callback(ProgressCallback)
        trainer.add_callback(_QuietProgress())

    if passed_over:
        one = len(passed_over) == 1
        echo(f"  {trial.key}: {', '.join(passed_over)} {'is' if one else 'are'} incomplete "
             f"({'its save was' if one else 'their saves were'} cut short): "
             + (f"resuming from {resume_from.name}" if resume_from else "starting over"))
        log.info("trial %s: incomplete checkpoints removed: %s", trial.key, passed_over)
    if resume_from is not None:
        trainer.add_callback(ResumeLogWindow(trainer, resume_from))
        if not passed_over:
            echo(f"  {trial.key}: resuming from {resume_from.name}")
        log.info("trial %s resumes from %s", trial.key, resume_from)
    if spec.experiment.trial_timeout:  # after ResumeLogWindow, which reads the earlier time
        trainer.add_callback(TimeoutCallback(spec.experiment.trial_timeout, trainer))
    train_output = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    resumed_step = int(resume_from.name.split("-")[-1]) if resume_from else None
    # The whole trial's (AblateTrainer._whole_trial_figures), earlier attempts' included.
    train_runtime, train_speed = (train_output.metrics.get("train_runtime"),
                                  train_output.metrics.get("train_samples_per_second"))
    earlier_trial_s = trainer.earlier_trial_s if resume_from else 0.0
    train_curve, eval_curve = _curves(trainer.state.log_history)

    # The best checkpoint is loaded back: evaluate it on validation, and once on test.
    val = predict_in_order(trainer, validation_set, validation_order, "eval")
    validation, validation_speed = _split_metrics(val.metrics, "eval")
    result: dict[str, Any] = {
        "history": train_curve,
        "eval_history": eval_curve,
        "validation": validation,
        "validation_samples_per_s": validation_speed,
        "validation_confusion": confusion(val.predictions, val.label_ids, n_classes),
        # Per-example predictions: paired comparisons of two variants on the same examples.
        "validation_predictions": val.predictions.argmax(-1).tolist(),
        "validation_labels": val.label_ids.tolist(),
        "train_examples": len(data.train_labels),
        "parameters": model.num_parameters(),
        "best_step": trainer.state.best_global_step,
        "resumed_from_step": resumed_step,
        # In runtime_s and train_runtime_s: the attempts before the checkpoint (None: unknown, a
        # checkpoint an earlier ablate wrote; the times are then this attempt's alone).
        "earlier_attempts_s": earlier_trial_s if resume_from else None,
        "steps": trainer.state.global_step,
        "max_steps": trainer.state.max_steps,  # more than steps: early stopping ended it
        "epochs": trainer.state.epoch,
        "train_runtime_s": train_runtime,
        "train_samples_per_s": train_speed,
        "precision": resolve_precision(recipe.precision),
        "device": str(args.device),
        "device_name": device_name(),
        "versions": trained_versions(),
        "class_weights": None if weights is None else weights.tolist(),
    }
    if memory_at_start is not None:
        result["gpu_memory_at_start_mb"] = memory_at_start
        result["peak_gpu_memory_mb"] = torch.cuda.max_memory_allocated() / 2**20
    # The selected checkpoint's validation metrics: a panel of their own (validation/macro_f1),
    # beside eval/ (every evaluation during training) and test/.
    final_logs = {f"validation_{k.removeprefix('eval_')}": v for k, v in result["validation"].items()
                  if _logged(k)}
    if data.test is not None:
        test = predict_in_order(trainer, *data.by_length("test"), "test")
        result["test"], result["test_samples_per_s"] = _split_metrics(test.metrics, "test")
        result["test_confusion"] = confusion(test.predictions, test.label_ids, n_classes)
        result["test_predictions"] = test.predictions.argmax(-1).tolist()
        result["test_labels"] = test.label_ids.tolist()
        final_logs |= {f"test_{k.removeprefix('eval_')}": v for k, v in result["test"].items()
                       if _logged(k)}
    tracker.log(tracker_keys(final_logs), step=trainer.state.global_step)
    result["runtime_s"] = time.perf_counter() - started + (earlier_trial_s or 0.0)

    for callback in trainer.callback_handler.callbacks:  # taken over during the evaluations:
        if isinstance(callback, StopWhenTakenOver):  # the new attempt's folder is not ours
            callback.check()
    result["model_dir"] = keep_trial_model(trainer, trial, spec, trial_dir, result)  # or None
    del trainer, model
    release_memory()
    return result


def predict_in_order(trainer: Trainer, dataset: Any, restore: np.ndarray, prefix: str) -> Any:
    """trainer.predict on a length-sorted set; predictions and labels in the original order."""
    output = trainer.predict(dataset, metric_key_prefix=prefix)
    return output._replace(predictions=output.predictions[restore], label_ids=output.label_ids[restore])


def is_out_of_memory(err: BaseException) -> bool:
    """CUDA (or other accelerator) out-of-memory, as torch raises it."""
    return isinstance(err, torch.OutOfMemoryError) or (
        isinstance(err, RuntimeError) and "out of memory" in str(err).lower())


class OutOfMemoryAtBatchOne(Exception):
    """Still out of memory with one example per device: the trial cannot run on this device."""


def _logged(metric: str) -> bool:
    """The selected checkpoint's metrics the tracker shows: the scalar ones, the loss, and each
    class's F1 (as every evaluation's are, under eval/)."""
    return metric in SCALAR_METRICS or metric == "eval_loss" or metric.startswith("f1_")


def train_with_backoff(trial: TrialSpec, spec: ExperimentSpec, data: TokenizedData,
                       tokenizer: Any, trial_dir: Path, tracker: Tracker,
                       echo: Callable[[str], None] = print,
                       extra_callbacks: list[TrainerCallback] | None = None) -> dict[str, Any]:
    """train_trial, retried on out-of-memory with half the per-device batch and twice the
    gradient accumulation (the same effective batch); the retries are recorded in the result."""
    backoff: list[dict[str, Any]] = []
    while True:
        try:
            result = train_trial(trial, spec, data, tokenizer, trial_dir, tracker, echo=echo,
                                 extra_callbacks=extra_callbacks)
            break
        except Exception as err:
            if not is_out_of_memory(err):
                raise
            reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        # Released outside the except block, whose traceback holds the failed attempt's tensors.
        release_memory()
        recipe = trial.recipe
        if recipe.batch_size == 1:
            raise OutOfMemoryAtBatchOne(
                f"out of memory even at batch_size 1 (tried {[b['batch_size'] for b in backoff]}"
                f" before): {reason}")
        smaller = dataclasses.replace(
            recipe, batch_size=max(1, recipe.batch_size // 2),
            gradient_accumulation_steps=recipe.gradient_accumulation_steps * 2,
            eval_batch_size=max(1, recipe.eval_batch_size // 2))
        backoff.append({"batch_size": recipe.batch_size,
                        "gradient_accumulation_steps": recipe.gradient_accumulation_steps})
        echo(f"  {trial.key}: out of memory at batch_size {recipe.batch_size}; retrying with "
             f"batch_size {smaller.batch_size} × accumulation {smaller.gradient_accumulation_steps}")
        tracker.start_over(f"-oom{len(backoff)}", f"out of memory at batch_size {recipe.batch_size}",
                           _backoff_record(backoff, smaller))
        log.warning("trial %s out of memory at batch_size %s: %s", trial.key, recipe.batch_size,
                    reason)
        trial = dataclasses.replace(trial, recipe=smaller)
    if backoff:
        result |= _backoff_record(backoff, trial.recipe)
    return result


def _backoff_record(backoff: list[dict[str, Any]], recipe: Recipe) -> dict[str, Any]:
    """What the stored result and the tracker's config say of out-of-memory retries: the batches
    that failed, and the one the trial then trained with."""
    return {"oom_backoff": list(backoff), "batch_size": recipe.batch_size,
            "gradient_accumulation_steps": recipe.gradient_accumulation_steps}


class _QuietProgress(ProgressCallback):
    """The step bar, without printing every log dict under it."""

    def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
        pass


def accelerator_memory_mb() -> float | None:
    """CUDA memory held by tensors now (MiB), or None without a GPU."""
    return torch.cuda.memory_allocated() / 2**20 if torch.cuda.is_available() else None


def release_memory() -> None:
    """Collect the finished trial's model and optimizer and empty the accelerator cache."""
    from accelerate.utils.memory import clear_device_cache

    clear_device_cache(garbage_collection=True)
