"""Before the first trial trains: the tokenizers and tokenized data the trials share, and the
checks and notes that need the data, the models or the machine (`validate`, `run`, `worker`).

A problem found here is one error line before anything trains; a note (a tokenizer that reads
the texts as [UNK], a max_length that cuts most texts, a dropout the model leaves at its own) is
printed and the study goes on.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .config import KNOBS, ExperimentSpec, beside_the_file, home_path, last_set, toml_value
from .errors import AblateInputError, set_shown, some_of
from .variants import BASELINE, FULL, MINUS, PLUS, TrialSpec


class TrialInputs:
    """Tokenizers and tokenized data shared by the trials of one invocation: each tokenizer is
    loaded once, the data tokenized once per (tokenizer, max_length) and cached on disk; a
    variant's train-set size is a selection of that, never a new tokenization."""

    def __init__(self, spec: ExperimentSpec, splits: Any) -> None:
        self.spec, self.splits = spec, splits
        self._tokenizers: dict[tuple[str, str | None], Any] = {}
        self._tokenized: dict[tuple[str, str | None, int], Any] = {}
        self._configs: dict[tuple[str, str | None, str], Any] = {}

    def model_config(self, source: Any) -> Any:
        """The model config with its overrides (loaded once per model and overrides; checks the
        override keys). Callers get a copy, since dropout knobs change it."""
        from .train import load_model_config

        key = (source.name, source.revision, json.dumps(source.config, sort_keys=True))
        if key not in self._configs:
            self._configs[key] = load_model_config(source, self.splits.label_names)
        return copy.deepcopy(self._configs[key])

    def tokenizer(self, source: Any) -> Any:
        from .train import load_tokenizer

        key = (source.name, source.revision)
        if key not in self._tokenizers:
            self._tokenizers[key] = load_tokenizer(source)
        return self._tokenizers[key]

    def for_trial(self, trial: TrialSpec) -> tuple[Any, Any]:
        from .data import tokenize, with_train_size
        from .train import ModelSource

        source = ModelSource.of(self.spec, trial.recipe)
        tokenizer = self.tokenizer(source)
        key = (source.name, source.revision, trial.recipe.max_length)
        if key not in self._tokenized:
            self._tokenized[key] = tokenize(self.splits, tokenizer, trial.recipe.max_length,
                                            self.spec.output_dir / "cache")
        return tokenizer, with_train_size(self._tokenized[key], trial.recipe.max_train_samples)


# A model folder's files that say nothing of the model: notes beside the weights (README.md,
# a model card) and hidden files (.gitattributes, a .git folder's siblings).
_NOT_MODEL_FILES = (".md",)
_FOLDER_HASHES: dict[tuple[str, int, int], str] = {}  # (file, size, mtime): its hash, per process


def model_fingerprint(name: str, revision: str | None, cache_dir: Path | None = None) -> str | None:
    """What a model name stands for now, to tell whether it still holds the weights a study's
    trials started from: a local folder's content hash (its top-level files, by name and bytes;
    a copy with new modification times is the same model, a folder trained again in place is
    not), or a Hub model's commit in the local cache. None where neither can be told (a Hub model
    not in the cache)."""
    folder = home_path(name)
    if folder.is_dir():
        digest = hashlib.sha256()
        for path in sorted(folder.iterdir()):
            if path.name.startswith(".") or path.suffix.lower() in _NOT_MODEL_FILES or not path.is_file():
                continue
            digest.update(path.name.encode() + b"\0" + _file_hash(path).encode())
        return "files " + digest.hexdigest()[:16]
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(name, "config.json", revision=revision, cache_dir=cache_dir)
    except ValueError:  # not a repository id either: loading the model says what is wrong
        return None
    return f"commit {Path(found).parent.name}" if isinstance(found, str) else None


def _file_hash(path: Path) -> str:
    """sha256 of a file, once per process for the same file, size and modification time."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _FOLDER_HASHES:
        with path.open("rb") as file:
            _FOLDER_HASHES[key] = hashlib.file_digest(file, "sha256").hexdigest()
    return _FOLDER_HASHES[key]


def preflight(spec: ExperimentSpec, trials: list[TrialSpec], inputs: TrialInputs) -> list[str]:
    """Checks that need the data, the models or the machine, done before the first trial trains:
    every model and tokenizer loads, config overrides exist and build a model, knobs fit the data
    and the model (max_length within its positions, at least two classes in a subsample).
    Returns notes on what the data makes a knob do (early stopping that cannot stop)."""
    import numpy as np

    from .data import check_train_size, count_longer
    from .train import (
        ModelSource,
        accelerate_note,
        apply_dropout,
        check_precision,
        class_weights,
        model_skeleton,
        position_limit,
    )

    check_launcher_environment()
    label_names = inputs.splits.label_names
    notes: dict[str, str] = {}  # one per variant (trials repeat it once per seed)
    limits: dict[str, int | None] = {}  # one model skeleton per model and overrides
    longer: dict[str, int] = {}  # how many texts are longer than a model's limit
    cut: set[str] = set()  # the models and max_lengths whose truncation was looked at
    for trial in trials:
        where = f"{spec.path}: {trial.variant}"
        try:
            source = ModelSource.of(spec, trial.recipe)
            config = inputs.model_config(source)
            tokenizer = inputs.tokenizer(source)
            model_key = json.dumps(source.identity(), sort_keys=True, default=str)
            if model_key not in limits:
                skeleton = model_skeleton(source, config)
                limits[model_key] = position_limit(skeleton, tokenizer)
                fresh = _fresh_weights(trial, source, skeleton, inputs)
                if fresh:
                    notes.setdefault(fresh[0], fresh[1])
                head = _checkpoint_head(source, label_names)
                if head:
                    notes.setdefault(f"{source.name}\x1fhead", head)
                unknown = _unknown_tokens(source.name, tokenizer, inputs.splits)
                if unknown:
                    notes.setdefault(model_key, unknown)
                joined = _pairs_run_together(source.name, tokenizer, inputs.splits)
                if joined:
                    notes.setdefault(f"{source.name}\x1fpairs", joined)
                if getattr(tokenizer, "ablate_pads_with_eos", False):
                    notes.setdefault(f"{source.name}\x1fpadding", (
                        f"{source.name}'s tokenizer has no padding token: batches are padded with "
                        f"its end-of-sequence token {tokenizer.eos_token!r} (id {tokenizer.eos_token_id}), "
                        "and the model's config takes it as its pad_token_id (a decoder classifies a "
                        "text by its last token that is not that one)"))
            limit = limits[model_key]
            if limit is not None and trial.recipe.max_length > limit:
                if model_key not in longer:
                    longer[model_key] = count_longer(inputs.splits, tokenizer, limit)
                if longer[model_key]:
                    count = longer[model_key]
                    raise AblateInputError(
                        f"max_length = {trial.recipe.max_length} is more than the {limit} tokens "
                        f"that {source.name} can take, and {count} "
                        f"{'example is' if count == 1 else 'examples are'} longer than that; set "
                        f"max_length = {limit} or less")
            length_key = f"{model_key}\x1f{trial.recipe.max_length}"
            if length_key not in cut:
                _check_room(trial, source.name, tokenizer, inputs.splits)
                cut.add(length_key)
                note = _cut_texts(trial, source.name, tokenizer, inputs.splits, limit)
                if note:
                    notes[length_key] = note
            _check_vocabulary(source, config, tokenizer, inputs.splits)
            same = _model_own_dropout(spec, trial, config)
            if same:
                notes.setdefault(trial.variant, same)
            problem = check_precision(trial.recipe.precision)
            if problem:
                raise AblateInputError(f"precision = {trial.recipe.precision!r}: {problem}")
            apply_dropout(config, trial.recipe)
            devices = spec.experiment.devices_per_trial
            if trial.recipe.batch_size % devices:
                raise AblateInputError(
                    f"batch_size = {trial.recipe.batch_size} is the global batch of "
                    f"devices_per_trial = {devices} processes: it must be a multiple of {devices}")
            class_weights(trial.recipe, np.arange(len(label_names)), len(label_names))
            lost = check_train_size(inputs.splits, trial.recipe.max_train_samples)
            if lost:
                notes.setdefault(f"{trial.variant}\x1ftrain size", f"{trial.variant}: {lost}")
        except AblateInputError as err:
            change = _change_behind(spec, trial, str(err))
            if change:  # the file's key that gave the generated variant its value
                where = f"{where} ([ablation.changes] {change})"
            given = _set_behind(spec, trial, str(err))
            where = f"{set_shown(given)}: {trial.variant}" if given else where
            beside = next((beside_the_file(spec.path, name)
                           for name in (spec.model.name, getattr(trial.recipe, "model", None))
                           if isinstance(name, str) and f"name = {name!r}" in str(err)), "")
            raise AblateInputError(f"{where}: {err}{beside}") from None
    rows = len(inputs.splits.train)
    stops = [check(t, rows) for t in {t.variant: t for t in trials}.values()
             for check in (_never_stops_early, _never_lowers_the_rate)]
    environment = [note for note in (accelerate_note(),) if note]
    return (list(notes.values()) + [note for note in stops if note] + _evaluates_once(trials, rows)
            + environment)


# What a distributed launcher (torchrun, mpirun, a cluster's job) sets for its processes. accelerate
# reads any of them as "this process is one of several": a trial trained in this process (not
# in the torchrun that devices_per_trial starts, whose processes preflight never runs in) joined
# a process group and waited for the other ranks forever, at its first step, saying nothing.
LAUNCHER_VARIABLES = ("LOCAL_RANK", "WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE",
                      "MV2_COMM_WORLD_SIZE")


def check_launcher_environment() -> None:
    """Refuse, in one line, an environment that would make a trial wait for other processes, or
    fail to join a launcher's process group. `torchrun --nproc-per-node=1` (LOCAL_RANK=0,
    WORLD_SIZE=1 and its rendezvous, MASTER_ADDR) trains as outside it: not refused."""
    found = []
    for name in LAUNCHER_VARIABLES[1:]:
        value = os.environ.get(name)
        if value is None:
            continue
        try:
            several = int(value) > 1
        except ValueError:
            several = True  # accelerate's int() of it would fail the trial instead
        if several:
            found.append(f"{name}={value}")
    rank = os.environ.get("LOCAL_RANK")
    if found:
        why = "each trial would wait for the other processes forever"
    elif rank is not None and "MASTER_ADDR" not in os.environ:
        found, why = [f"LOCAL_RANK={rank}"], ("each trial would fail to join a process group (no "
                                              "MASTER_ADDR to meet the other processes at)")
    else:
        return
    raise AblateInputError(
        f"the environment sets {', '.join(found)}, as a distributed launcher (torchrun, mpirun, "
        f"a cluster job) does for its processes: {why}; unset "
        f"{'it' if len(found) == 1 else 'them'} (or run ablate outside the launcher): ablate starts "
        "its own processes, one trial on several devices with [experiment] devices_per_trial, "
        "several trials at once with --workers N")


UNKNOWN_NOTE_SHARE = 0.05  # English text on an English vocabulary: well under 1 %


def _unknown_tokens(model: str, tokenizer: Any, splits: Any) -> str | None:
    """A note when the tokenizer reads much of the training text as its unknown token (an English
    vocabulary on Chinese reviews: two thirds), which no knob of a study can make up for."""
    from .data import UNKNOWN_SAMPLE, unknown_token_share

    share = unknown_token_share(splits, tokenizer)
    if share is None or share < UNKNOWN_NOTE_SHARE:
        return None
    return (f"{model}'s tokenizer reads {share:.0%} of the training texts' tokens as "
            f"{tokenizer.unk_token} (of up to {UNKNOWN_SAMPLE} texts): the model sees little of "
            "them; a model whose vocabulary covers their language reads them")


def _pairs_run_together(model: str, tokenizer: Any, splits: Any) -> str | None:
    """A note where the tokenizer marks nothing between a pair's texts (GPT-2's and other
    decoders' add no special token and give no token types): the model reads the two as one
    text, with no sign of where the second begins."""
    if "text_pair" not in splits.train.columns or tokenizer.num_special_tokens_to_add(pair=True):
        return None
    if max(tokenizer("a", "b").get("token_type_ids") or [0]):
        return None
    return (f"{model}'s tokenizer puts nothing between the two texts of a pair (no separator "
            "token, no token types): the model reads each pair as one text run together, with no "
            "sign of where the second begins; a model whose tokenizer separates them (BERT's "
            "[SEP]) reads them as a pair")


def _check_room(trial: TrialSpec, model: str, tokenizer: Any, splits: Any) -> None:
    """A max_length no longer than the special tokens the tokenizer adds (BERT: 2 to a text, 3 to
    a pair) reads no word of any example; below them the tokenizer does not truncate at all (it
    logs an error and returns the whole text), so a long example reaches the model past its
    positions and the trial fails in training."""
    pairs = "text_pair" in splits.train.columns
    special = tokenizer.num_special_tokens_to_add(pair=pairs)
    length = trial.recipe.max_length
    if special and length <= special:
        raise AblateInputError(
            f"max_length = {length} leaves no token for the text: {model}'s tokenizer adds "
            f"{special} special tokens to {'a text pair' if pairs else 'a text'}, and max_length "
            f"counts them; give {special + 1} or more")


def _cut_texts(trial: TrialSpec, model: str, tokenizer: Any, splits: Any,
               limit: int | None) -> str | None:
    """A note when a variant's max_length cuts training texts short (movie reviews at 128
    tokens): truncation is silent, and the model never reads the rest of them."""
    from .data import count_cut

    length = trial.recipe.max_length
    longer, total = count_cut(splits, tokenizer, length)
    if not longer:
        return None
    share = f"{longer / total:.0%}" if longer / total >= 0.01 else "under 1%"
    more = ("; a larger max_length reads more of them" if limit is None
            else f"; a larger max_length (up to {limit}) reads more of them" if length < limit
            else "")
    pairs = "text_pair" in splits.train.columns
    read = (f"each pair loses tokens from the end of whichever of its texts is longer, one at a "
            f"time, until the two fit in {length} tokens" if pairs  # truncation=True: longest_first
            else f"the model reads only their first {length} tokens")
    # Named where max_length comes from: a resumed search checks only its probes, and the
    # baseline's note read "[search.space] learning_rate: max_length = 32 truncates ...".
    named = trial.variant if "max_length" in trial.overrides else BASELINE
    return (f"{named}: max_length = {length} truncates {share} of the training "
            f"{'text pairs' if pairs else 'texts'} "
            f"({longer} of {total}{' sampled' if total < len(splits.train) else ''}): {model}'s "
            f"tokenizer makes them longer, and {read}{more}")


FRESH_NAMED = 3  # weights a note on overrides that discard pretrained ones names


def _fresh_weights(trial: TrialSpec, source: Any, skeleton: Any,
                   inputs: TrialInputs) -> tuple[str, str] | None:
    """(key, note) where config overrides change the shape of pretrained weights (hidden_size,
    intermediate_size, vocab_size, max_position_embeddings, ...) or add weights the model has none
    of (more layers than it has): loading cannot use the pretrained values there, so they start
    from random ones, silently (transformers' load report is turned down), and the variant
    compares a partly untrained model rather than the setting it names."""
    from .train import model_skeleton

    if not source.config:
        return None
    plain = dataclasses.replace(source, config={}, variant_config=())
    shapes = {name: tuple(tensor.shape)
              for name, tensor in model_skeleton(plain, inputs.model_config(plain)).state_dict().items()}
    weights = skeleton.state_dict()
    changed = [name for name, tensor in weights.items()
               if name in shapes and tuple(tensor.shape) != shapes[name]]
    added = [name for name in weights if name not in shapes]
    if not changed and not added:
        return None

    what = [f"change the shape of {len(changed)} of its {len(shapes)} pretrained weights "
            f"({some_of(changed, FRESH_NAMED)})"] if changed else []
    what += [f"add {len(added)} weights it has none of ({some_of(added, FRESH_NAMED)})"] if added else []
    keys = " and ".join(sorted({source.config_key(key) for key in source.config}))
    note = (f"{trial.variant}: {keys} = {toml_value(source.config)} on {source.name}: the overrides "
            f"{' and '.join(what)}; those start from random values, not pretrained ones, so this "
            "trial trains them from scratch")
    return json.dumps([source.name, changed, added]), note


def _checkpoint_head(source: Any, label_names: list[str]) -> str | None:
    """The note for a checkpoint fine-tuned as a classifier (its config names its classes, not
    transformers' LABEL_0, LABEL_1, ...) whose head is not the data's: the same classes in another
    order are kept as they are, row by id (each class starts from the weights trained for
    another), and a head of another size starts from random values (ignore_mismatched_sizes);
    both silently. The config's own names are read again: load_model_config sets the data's."""
    from transformers import AutoConfig

    own = AutoConfig.from_pretrained(source.name, revision=source.revision).id2label
    names = [str(own[i]) for i in sorted(own)]
    if all(re.fullmatch(r"LABEL_\d+", name) for name in names) or names == label_names:
        return None
    if len(names) != len(label_names):
        return (f"{source.name}'s classification head has {len(names)} classes "
                f"({some_of(names)}), the data {len(label_names)} "
                f"({some_of(label_names)}): it starts from random values, not from "
                "the checkpoint's head")
    # SST-2's NEGATIVE and POSITIVE are the data's negative and positive
    data = {name.casefold(): name for name in label_names}
    if len(data) != len(label_names) or sorted(data) != sorted(name.casefold() for name in names):
        return None  # other classes: its head is a start as any other
    order = [data[name.casefold()] for name in names]
    if order == label_names:
        return None
    i = next(i for i, (theirs, ours) in enumerate(zip(order, label_names, strict=True)) if theirs != ours)
    return (f"{source.name}'s classification head names the data's {len(names)} classes in another "
            f"order (its id {i} is {names[i]!r}, the data's {label_names[i]!r}): fine-tuning starts "
            "from its head as it is, each class from the weights its id had there, trained for "
            "another class; to start from the head as trained, give the classes in its order: "
            f"[data] label_names = {toml_value(order)} (where the labels are written as names)")


def _model_own_dropout(spec: ExperimentSpec, trial: TrialSpec, config: Any) -> str | None:
    """A variant's dropout equal to what the model uses when the baseline leaves it unset
    (BERT's 0.1): that change trains the baseline's dropout."""
    from .train import DROPOUT_KEYS

    value = trial.overrides.get("dropout")
    if (value is None or spec.baseline.dropout is not None
            or {"model", "model_config"} & set(trial.overrides)):  # another model: its own dropout
        return None
    own = [getattr(config, key) for key in DROPOUT_KEYS if getattr(config, key, None) is not None]
    if not own or any(v != value for v in own):
        return None
    model = spec.baseline.model or spec.model.name
    return (f"{trial.variant}: dropout={value:g} changes nothing: it is {model}'s own dropout, "
            "which the baseline (dropout unset) trains with")


def _never_stops_early(trial: TrialSpec, rows: int) -> str | None:
    """Early stopping waits `patience` evaluations after the best one, and the first evaluation
    is always the best so far: it can stop no sooner than evaluation patience + 1, and the last
    evaluation is at the last step. A trial that evaluates patience + 1 times or fewer trains to
    its end whatever the patience, as its baseline does."""
    recipe = trial.recipe
    if not recipe.early_stopping_patience:
        return None
    steps, every, evaluations = _evaluations(trial, rows)
    patience = recipe.early_stopping_patience
    if evaluations > patience + 1:
        return None
    return (f"{trial.variant}: early_stopping_patience = {patience} never "
            f"stops training: it evaluates {evaluations} time(s) in its {steps} steps (every "
            f"{every}), and the first evaluation is always the best so far, so {patience} "
            f"evaluation(s) without improvement end no sooner than its last step; a smaller "
            "eval_steps or patience lets it stop")


def _evaluations(trial: TrialSpec, rows: int) -> tuple[int, int, int]:
    """(steps, steps between evaluations, evaluations) of a trial on `rows` training rows; the
    last step evaluates too."""
    recipe = trial.recipe
    rows = min(rows, recipe.max_train_samples or rows)
    batches = -(-rows // recipe.batch_size)  # per epoch, as the Trainer counts them
    per_epoch = max(1, -(-batches // recipe.gradient_accumulation_steps))
    steps = recipe.max_steps if recipe.max_steps > 0 else math.ceil(recipe.epochs * per_epoch)
    every = recipe.eval_steps if recipe.eval_steps > 0 else per_epoch
    return steps, every, -(-steps // every)


def _evaluates_once(trials: list[TrialSpec], rows: int) -> list[str]:
    """An eval_steps of at least a trial's steps evaluates once, at its last step (the starter's
    50 on a study cut to 200 rows: 13 steps): its curves have one validation point and the best
    checkpoint is the last. One note per eval_steps, naming the variants; early stopping's own
    note says it where a patience is set."""
    once: dict[int, list[tuple[str, int]]] = {}
    for trial in {t.variant: t for t in trials}.values():
        recipe = trial.recipe
        if recipe.eval_steps <= 0 or recipe.early_stopping_patience:
            continue
        steps, _, evaluations = _evaluations(trial, rows)
        if evaluations == 1 and steps > 1:
            once.setdefault(recipe.eval_steps, []).append((trial.variant, steps))
    notes = []
    for every, named in once.items():
        counts = sorted({steps for _, steps in named})
        steps = f"{counts[0]}" if len(counts) == 1 else f"{counts[0]}–{counts[-1]}"
        notes.append(f"eval_steps = {every} is not less than the {steps} training steps of "
                     f"{some_of([variant for variant, _ in named])}: "
                     + ("it evaluates" if len(named) == 1 else "each evaluates")
                     + " once, at its last step, so its curves have one validation point and "
                     "the last checkpoint is the one picked; a smaller eval_steps (or 0: once "
                     "per epoch) evaluates during training")
    return notes


# torch's ReduceLROnPlateau (no knob sets its arguments) lowers the rate once more than
# `patience` evaluations after the best did not improve on it: at evaluation patience + 2.
PLATEAU_PATIENCE = 10


def _never_lowers_the_rate(trial: TrialSpec, rows: int) -> str | None:
    """reduce_lr_on_plateau first lowers the rate at evaluation PLATEAU_PATIENCE + 2, and only
    the steps after it train at the lower rate: a trial that evaluates no more often than that
    trains at a constant rate, as lr_scheduler = 'constant' does."""
    if trial.recipe.lr_scheduler != "reduce_lr_on_plateau":
        return None
    steps, every, evaluations = _evaluations(trial, rows)
    earliest = PLATEAU_PATIENCE + 2
    if evaluations > earliest:
        return None
    return (f"{trial.variant}: lr_scheduler = 'reduce_lr_on_plateau' never lowers the learning "
            f"rate: it evaluates {evaluations} time(s) in its {steps} steps (every {every}), and "
            f"the plateau lowers it once {PLATEAU_PATIENCE + 1} evaluations after the best did not "
            f"improve on it (the first is always the best so far), so at the {earliest}th at the "
            "earliest, for the steps after it; it trains as lr_scheduler = 'constant' does; a "
            "smaller eval_steps gives it room")


def _knob_of(message: str) -> str | None:
    """The knob a preflight message starts with (`precision = 'fp16': ...`), if it does; for
    overrides from both `[model] config and model_config = ...`, model_config."""
    knob = re.match(r"(?:\[model\] config and )?(\w+)", message)
    return knob.group(1) if knob is not None and knob.group(1) in KNOBS else None


def _change_behind(spec: ExperimentSpec, trial: TrialSpec, message: str) -> str | None:
    """The [ablation.changes] entry that gave an [ablation] variant (full, full_minus_*,
    baseline_plus_*) the knob a preflight message starts with: the name the file wrote."""
    knob = _knob_of(message)
    if (spec.ablation is None or knob not in trial.overrides
            or not (trial.variant == FULL or trial.variant.startswith((MINUS, PLUS)))):
        return None
    return next((name for name, change in spec.ablation.changes.items()
                 if change.get(knob) == trial.overrides[knob]), None)


def _set_behind(spec: ExperimentSpec, trial: TrialSpec, message: str) -> str | None:
    """The --set that gave the knob a preflight message starts with, if one did (see
    _knob_set_behind); else the --set of the [model] or [experiment] key it names: a model path
    typed on the command line is the --set's mistake, not the file's, whose own key is fine."""
    knob = _knob_of(message)
    given = _knob_set_behind(spec, trial, knob, message) if knob is not None else None
    return given or _section_set_behind(spec.sets, message)


def _section_set_behind(sets: Sequence[str], message: str) -> str | None:
    """The --set of the key outside the knobs that a preflight message names: `[model] name` (a
    model that cannot be loaded; where the line names a [model] revision, that revision's --set
    first: a revision the model lacks fails as its name does), `[model] config` (an override the
    model refuses, also where a variant's model_config joins it) or devices_per_trial (a batch it
    cannot split)."""
    if message.startswith("[model] name"):
        revision = (_knob_set(sets, "model.revision") if " at [model] revision = " in message
                    else None)
        return revision or _knob_set(sets, "model.name", "model")
    if message.startswith("[model] config"):
        return _knob_set(sets, "model.config", "model")
    if "devices_per_trial = " in message:
        return _knob_set(sets, "experiment.devices_per_trial", "experiment")
    return None


def _knob_set_behind(spec: ExperimentSpec, trial: TrialSpec, knob: str, message: str) -> str | None:
    """The --set that gave the trial `knob` (the one `message` starts with): the variant's own
    (variants.NAME.KNOB) where it changes that knob, [search.space]'s for a value a search can
    propose, the [ablation.changes] entry's for an [ablation] variant, else the baseline's."""
    if knob in trial.overrides:
        from .search import PROBE, space_set

        if trial.variant.startswith(PROBE):  # a value [search.space] can propose
            return space_set(spec, knob)
        change = _change_behind(spec, trial, message)
        if change:
            return last_set(spec.sets, "ablation", "ablation.changes", f"ablation.changes.{change}",
                            f"ablation.changes.{change}.{knob}")
        suffix = trial.variant.removeprefix(BASELINE + "_")
        return _knob_set(spec.sets, f"variants.{suffix}.{knob}", f"variants.{suffix}")
    return _knob_set(spec.sets, f"baseline.{knob}")


def _knob_set(sets: Sequence[str], key: str, *others: str) -> str | None:
    """last_set of `key` or `others`, where a --set of one key inside the knob's table
    (`baseline.model_config.num_attention_heads=4`) counts as one of `key`."""
    return next((item for item in reversed(sets)
                 if (written := item.split("=", 1)[0].strip()) in (key, *others)
                 or written.startswith(key + ".")), None)


def _check_vocabulary(source: Any, config: Any, tokenizer: Any, splits: Any) -> None:
    """An overridden vocab_size or type_vocab_size smaller than the tokenizer's ids builds a model
    whose embeddings the first batch indexes past (an IndexError in training)."""
    if "vocab_size" in source.config and len(tokenizer) > config.vocab_size:
        raise AblateInputError(
            f"{source.config_key('vocab_size')} vocab_size = {config.vocab_size} is less than the "
            f"{len(tokenizer)} token ids of {source.name}'s tokenizer; leave it out or give "
            f"{len(tokenizer)} or more")
    # A pair's second text has token type 1 where the tokenizer gives token types (BERT's); RoBERTa's
    # and DistilBERT's give none, and the model embeds every token as type 0.
    types = getattr(config, "type_vocab_size", None)
    if "text_pair" not in splits.train.columns or not isinstance(types, int):
        return
    given = tokenizer("a", "b").get("token_type_ids") or [0]
    if max(given) < types:
        return
    if "type_vocab_size" in source.config:
        raise AblateInputError(
            f"{source.config_key('type_vocab_size')} type_vocab_size = {types}: text pairs need "
            f"{max(given) + 1} segment types with {source.name}'s tokenizer; leave it out or give "
            f"{max(given) + 1} or more")
    raise AblateInputError(
        f"{source.name}: its config has type_vocab_size = {types}, but its tokenizer gives a text "
        f"pair's second text token type {max(given)}, which the model has no embedding for; "
        "train text pairs on a model with two segment types, or leave [data] text_pair_column out")
