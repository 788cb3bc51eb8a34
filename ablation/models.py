"""Trained weights that outlive their trial: each trial's selected model, and the study's best one.

`[experiment] save_models` decides what is kept:

- ``"best"`` (default): every trial saves its selected (best-by-validation) weights to
  ``trials/<key>/model/``; after the study the best trial's folder becomes ``best_model/`` and the
  other trials' folders are removed.
- ``"all"``: the same, but every trial keeps its ``model/`` folder (``best_model/`` is a copy), and
  its ``checkpoints/`` folder keeps the checkpoint of every evaluation (for
  ``ablate evaluate --checkpoints``).
- ``"none"``: no weights are kept.

A model folder is a plain Hugging Face folder (config with label names, weights, tokenizer), so
``transformers.pipeline("text-classification", model=folder)`` loads it; ``ablate.json`` beside
the weights says which trial it is and how it was trained.

The best trial is the report's: the best variant (by its mean over seeds of the selection metric),
and of that variant the seed whose trial scored best.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import interrupts
from .config import PRECISIONS, ExperimentSpec, home_path, not_utf8
from .errors import AblateInputError, first_line

log = logging.getLogger(__name__)

MODEL_DIR = "model"  # in trials/<key>/
BEST_MODEL = "best_model"  # in the study's output_dir
MODEL_INFO = "ablate.json"  # beside the weights: which trial, which recipe, its metrics
STUDY_ATTR = "best_model"  # study user attribute: which trial best_model/ holds


def keep_trial_model(trainer: Any, trial: Any, spec: ExperimentSpec, trial_dir: Path,
                     result: dict[str, Any]) -> str | None:
    """After a trial's evaluation: save its loaded-back best weights (no optimizer) to
    trials/<key>/model/ unless save_models = "none", and remove its checkpoints unless
    save_models = "all". Returns the model folder relative to output_dir, or None."""
    mode = spec.experiment.save_models
    checkpoint_dir = trial_dir / "checkpoints"
    saved = None
    if mode in ("best", "all"):
        target = trial_dir / MODEL_DIR
        trainer.save_model(str(target))  # config (label names), weights, tokenizer; rank 0 only
        if trainer.args.should_save:
            info = {"study": spec.name, "trial": trial.key, "variant": trial.variant,
                    "seed": trial.seed, "overrides": trial.overrides,
                    "max_length": trial.recipe.max_length, "precision": result.get("precision"),
                    "text_pair_column": spec.data.text_pair_column,
                    "text_column": spec.data.text_column, "label_column": spec.data.label_column,
                    "metric": spec.experiment.metric, "best_step": result.get("best_step"),
                    "validation": result.get("validation"), "test": result.get("test"),
                    "validation_predicted": predicted_counts(result.get("validation_confusion"))}
            (target / MODEL_INFO).write_text(json.dumps(info, indent=2, default=str) + "\n",
                                             encoding="utf-8")
            length = _truncate_like_the_trial(target, trainer)
            if mode == "all":  # each checkpoint too, for `evaluate --checkpoints` and pipelines
                for checkpoint in checkpoint_dir.glob("checkpoint-*"):
                    _set_model_max_length(checkpoint, length)
        saved = target.relative_to(spec.output_dir).as_posix()
    if mode == "all":
        # Kept for `ablate evaluate --checkpoints`; without the identity file a re-run of the
        # trial starts over instead of resuming from its finished checkpoints.
        from .train import CHECKPOINT_IDENTITY

        (checkpoint_dir / CHECKPOINT_IDENTITY).unlink(missing_ok=True)
        if trainer.args.should_save:
            _keep_evaluations_only(checkpoint_dir, result)
    else:
        shutil.rmtree(checkpoint_dir, ignore_errors=True)  # the selected weights were evaluated
    return saved


# What a checkpoint holds for a resume only (the Trainer's names): a kept one is a model to score.
RESUME_STATE = ("optimizer.pt", "scheduler.pt", "scaler.pt", "rng_state*.pth", "log_window-*.json")


def _keep_evaluations_only(checkpoint_dir: Path, result: dict[str, Any]) -> None:
    """save_models = "all" keeps the checkpoint of every evaluation. With checkpoint_steps the
    trial also wrote resumable checkpoints between evaluations, every checkpoint with its
    optimizer, scheduler and RNG states (bert-base: 1.3 GB rather than 440 MB), and a log window
    beside each: of use to a resume only, which the finished trial no longer has."""
    evaluated = {point.get("step") for point in result.get("eval_history") or ()}
    for path in checkpoint_dir.glob("checkpoint-*"):
        step = path.name.split("-")[-1]
        if not (step.isdigit() and int(step) in evaluated):
            shutil.rmtree(path, ignore_errors=True)
            continue
        for pattern in RESUME_STATE:
            for state in path.glob(pattern):
                state.unlink(missing_ok=True)
    for window in checkpoint_dir.glob("log_window-*.json"):
        window.unlink(missing_ok=True)


def _truncate_like_the_trial(target: Path, trainer: Any) -> int:
    """The saved tokenizer's model_max_length becomes the length `ablate predict` truncates this
    model at (the trial's max_length, from ablate.json, within the model's positions), so that
    `pipeline(..., truncation=True)` labels a long text alike, not at the pretrained limit (512).
    Returns that length."""
    from .inference import max_length_of

    length = max_length_of(target, trainer.processing_class, trainer.model)
    _set_model_max_length(target, length)
    return length


def _set_model_max_length(folder: Path, length: int) -> None:
    path = folder / "tokenizer_config.json"
    if not path.is_file():
        return
    config = json.loads(path.read_text(encoding="utf-8"))
    config["model_max_length"] = length
    path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def keeping_models(spec: ExperimentSpec) -> tuple[str, ...]:
    """The --set that makes a re-run keep its model, where the study keeps none (the study's
    own --sets, repeated in a suggested command, would say "none" again)."""
    return ("experiment.save_models=best",) if spec.experiment.save_models == "none" else ()


def best_record(built: dict[str, Any]) -> Any:
    """The report's best trial: of the best variant, the seed with the best value; or None."""
    variants = built["variants"]
    if not len(variants) or not variants["best"].any():
        return None
    name = variants.loc[variants["best"], "variant"].iloc[0]
    candidates = [r for r in built["chosen"] if r.variant == name and r.value is not None]
    if not candidates:
        return None
    pick = max if built["greater_is_better"] else min
    return pick(candidates, key=lambda r: r.value)


def stale_best_model(spec: ExperimentSpec, built: dict[str, Any]) -> str | None:
    """When best_model/ holds another trial than the report's best one (whose model was removed
    while it was not the best, and a later --rerun changed which is), one line that says so."""
    from .report.markdown import code

    kept, best = built.get("best_model"), best_record(built)
    if not kept or best is None or kept["key"] == best.key or exported_elsewhere(spec, kept):
        return None
    return (f"{BEST_MODEL}/ holds trial {kept['key']}, no longer the best: the best trial, {best.key}, "
            f"kept no model (save_models = \"{spec.experiment.save_models}\" removed it while "
            f"another trial was the best); {code(spec.command('run', '--rerun', best.variant))} "
            "trains it again and keeps it")


def stale_best_model_note(spec: ExperimentSpec) -> str | None:
    """stale_best_model's line for `predict` and `evaluate` of the study's best_model/, read from
    its storage (as run and the report say it); None where the storage cannot say: a model used
    away from its study's storage still labels texts."""
    from .records import with_run_sets
    from .report import build_best

    study = _stored_study(spec)
    if study is None:
        return None
    spec = with_run_sets(spec, study)
    recorded = study.user_attrs.get(STUDY_ATTR)
    elsewhere = exported_elsewhere(spec, recorded)
    if elsewhere:  # another machine's run exported a newer best; this folder's is an older one
        try:
            here = model_info(spec.output_dir / BEST_MODEL).get("trial")
        except AblateInputError:
            here = None
        if here and here != recorded.get("key"):
            return (f"{BEST_MODEL}/ here holds trial {here}, no longer the best: the best, trial "
                    f"{recorded.get('key')}, is in {elsewhere}, exported by the run there; copy "
                    "that folder here to use it")
    return stale_best_model(spec, build_best(spec, study))


def with_study_sets(spec: ExperimentSpec) -> ExperimentSpec:
    """`spec`, its commands to paste repeating the `--set`s its study was run with, as `report`
    and `status` print them (records.with_run_sets); where its storage cannot say (never run
    here, unreachable), the command's own `--set`s alone."""
    from .records import with_run_sets

    study = _stored_study(spec)
    return spec if study is None else with_run_sets(spec, study)


def _stored_study(spec: ExperimentSpec) -> Any:
    """The study in its storage, or None where the storage cannot say (never run here, or
    unreachable): what predict and evaluate read of it is a note or a hint, never a refusal."""
    from .queue import open_study

    try:
        return open_study(spec, create=False)
    except AblateInputError:
        return None


def best_model_reads_pairs(spec: ExperimentSpec, best: dict[str, Any]) -> bool:
    """Whether the exported best model was trained on text pairs: its ablate.json says (as
    `predict` and `evaluate` read it), else the study file. `ablate predict` takes each text of
    such a model with its second text (--pair), so what suggests it gives one."""
    try:
        info = json.loads((spec.output_dir / best["path"] / MODEL_INFO).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        info = {}
    if isinstance(info, dict) and "text_pair_column" in info:
        return bool(info["text_pair_column"])
    return bool(spec.data.text_pair_column)


def _exported_from(spec: ExperimentSpec) -> dict[str, str]:
    """Where this command's best_model/ is: the machine and the output folder. Machines sharing a
    storage each have their own output folder; the study records the one that exported."""
    import socket

    return {"host": socket.gethostname(), "output_dir": str(spec.output_dir.absolute())}


def exported_elsewhere(spec: ExperimentSpec, info: dict[str, Any] | None) -> str | None:
    """Where the recorded best_model/ is, `host:/path/best_model`, when another output folder
    (another machine's) holds it rather than this command's; None where it is this one's, or
    recorded before the study said where (read as this one's)."""
    where = (info or {}).get("exported_from")
    if not where or where == _exported_from(spec) or _holds_recorded(spec, info):
        return None
    return f"{where['host']}:{Path(where['output_dir']) / info['path']}"


def _holds_recorded(spec: ExperimentSpec, info: dict[str, Any]) -> bool:
    """Whether this output folder's best_model/ holds the recorded trial's model, whatever the
    record says of where: a container's host name changes between sessions, and a project
    folder moves, while the folder holds what was exported."""
    try:
        here = model_info(spec.output_dir / info["path"])
    except AblateInputError:
        return False
    return here.get("study") == spec.name and here.get("trial") == info.get("key")


def export_best_model(spec: ExperimentSpec, study: Any, built: dict[str, Any],
                      echo: Callable[[str], None] = print) -> dict[str, Any] | None:
    """Make output_dir/best_model/ the best trial's model and record it in the study (and in
    `built`, for the report); with save_models = "best", remove the other trials' models.
    Returns what was recorded, or None when nothing could be exported. A best_model/ another
    output folder holds (another machine's run exported it) is left recorded where it is."""
    mode = spec.experiment.save_models
    built["best_model"] = study.user_attrs.get(STUDY_ATTR)
    elsewhere = exported_elsewhere(spec, built["best_model"])
    deleted = (built["best_model"] and not elsewhere
               and not (spec.output_dir / built["best_model"]["path"]).is_dir())
    if deleted:  # best_model/ deleted since (by hand, a clean-up): not to be named as there
        built["best_model"] = None
        study.set_user_attr(STUDY_ATTR, None)
    best = best_record(built)
    if mode == "none" or best is None:
        return built["best_model"]
    target = spec.output_dir / BEST_MODEL
    source = spec.output_dir / "trials" / best.key / MODEL_DIR
    info = {"path": BEST_MODEL, "trial": best.number, "key": best.key, "variant": best.variant,
            "seed": best.seed, "metric": built["metric"], "value": best.value,
            "exported_from": _exported_from(spec)}
    current = built["best_model"]
    staging = spec.output_dir / f".{BEST_MODEL}.tmp"
    if current == info and target.is_dir():
        pass  # already exported
    elif not source.is_dir() and _holds_model_of(target, spec, best):
        # A run killed (kill -9) after moving the model in, before the study recorded it.
        study.set_user_attr(STUDY_ATTR, info)
        built["best_model"] = info
    elif not source.is_dir() and elsewhere and current["key"] == best.key:
        echo(f"best model: trial {best.key}'s model is in {elsewhere}, exported by the run "
             "there; this output folder keeps none")
        return current
    elif not source.is_dir() and not _holds_model_of(staging, spec, best):
        why = (f"{target} was deleted, and {source} is missing" if deleted else
               f"{source} is missing: it ran with save_models = \"none\", or on another machine")
        echo(f"best model: trial {best.key} kept no model ({why}); re-run it to keep one: "
             f"{spec.command('run', '--rerun', best.variant, sets=keeping_models(spec))}")
        return current
    else:
        _check_replaceable(target, spec, best.key)
        # Cut in half by Ctrl+C, the trial's model would sit in the staging folder: the interrupt
        # waits until best_model/ and the study say the same. A kill -9 cannot wait: the next
        # export finds the model there and finishes the move.
        with interrupts.held():
            if not source.is_dir():
                pass  # in staging already, moved there by a run killed before it was in place
            elif mode == "best":
                shutil.rmtree(staging, ignore_errors=True)
                source.rename(staging)  # the trial's own folder: moving it costs no disk
            else:
                shutil.rmtree(staging, ignore_errors=True)
                shutil.copytree(source, staging)
            shutil.rmtree(target, ignore_errors=True)
            staging.rename(target)
            study.set_user_attr(STUDY_ATTR, info)
        built["best_model"] = info
        log.info("best model: trial %s -> %s", best.key, target)
    if mode == "best":
        _remove_other_models(spec, echo)
    return info


def _check_replaceable(target: Path, spec: ExperimentSpec, key: str) -> None:
    """best_model/ is replaced whole: a link put in its place (to a serving folder) or a file
    failed the move with a traceback, the new model left in the staging folder. Refused before
    anything moves; the trial's model stays where it is for the run that exports it."""
    if not (target.is_symlink() or (target.exists() and not target.is_dir())):
        return
    what = (f"a symbolic link (to {target.resolve()})" if target.is_symlink() else "a file")
    raise AblateInputError(
        f"{target} is {what}: ablate replaces {BEST_MODEL}/ whole with the best trial's model "
        f"(now {key}'s) and writes into no folder of yours; remove it (or move it elsewhere: a "
        f"link to {target} from elsewhere keeps up with it), then `{spec.command('run')}` "
        "exports the model there")


def _remove_other_models(spec: ExperimentSpec, echo: Callable[[str], None]) -> None:
    """save_models = "best": the trials' models, once best_model/ is exported. A model that a
    run with save_models = "all" kept (its trial's checkpoints/ beside it: "best" removes them
    as the model is saved) stays: `ablate run FILE --rerun V --set experiment.save_models=all`,
    which predict and evaluate suggest to keep one, was undone without a word by the next plain
    `ablate run FILE` of a file saying "best"."""
    kept = []
    for folder in sorted((spec.output_dir / "trials").glob(f"*/{MODEL_DIR}")):
        if (folder.parent / "checkpoints").is_dir():
            kept.append(folder.relative_to(spec.output_dir).as_posix())
        else:
            shutil.rmtree(folder, ignore_errors=True)
    if kept:
        echo(f"note: save_models = \"best\" keeps the models of {len(kept)} trial(s) that a run "
             f"with save_models = \"all\" kept ({', '.join(kept[:3])}{', ...' if len(kept) > 3 else ''}"
             f"), with their checkpoints; delete those folders by hand if they are no longer wanted")


def _holds_model_of(folder: Path, spec: ExperimentSpec, best: Any) -> bool:
    """Whether `folder` holds the model that trial `best` saved: its ablate.json names the study
    and the trial and gives the validation metrics stored with the trial (an earlier attempt of
    the same variant and seed, superseded by a --rerun, gives its own)."""
    try:
        info = model_info(folder)
    except AblateInputError:
        return False
    return ((folder / "config.json").is_file() and info.get("study") == spec.name
            and info.get("trial") == best.key and info.get("validation") == best.result.get("validation"))


def trial_dir(spec: ExperimentSpec, key: str, option: str) -> Path:
    """trials/<key>/ of the study, for an option naming one of its trials (as variant-s<seed>)."""
    trials = spec.output_dir / "trials"
    known = sorted(p.name for p in trials.glob("*") if p.is_dir()) if trials.is_dir() else []
    if key not in known:  # listed: a file system that ignores case (macOS's) finds BASELINE-s42 too
        raise AblateInputError(
            f"{option} {key!r}: study {spec.name!r} has no trial of that name in {trials} "
            f"(trials: {', '.join(known) or 'none yet'}); name one as variant-s<seed>, e.g. "
            "baseline-s42")
    return trials / key


def trial_model(spec: ExperimentSpec, key: str) -> Path:
    """`--trial KEY`: that trial's saved model (best_model/ when it is the best trial's)."""
    folder = trial_dir(spec, key, "--trial") / MODEL_DIR
    best = spec.output_dir / BEST_MODEL
    if not (folder / "config.json").is_file() and model_info(best).get("trial") == key:
        folder = best
    if not (folder / "config.json").is_file():
        mode = spec.experiment.save_models
        raise AblateInputError(
            f"--trial {key!r}: the trial kept no model ({folder} is missing: save_models = "
            f"\"{mode}\" keeps " + ("none" if mode == "none" else "the best trial's alone")
            + f"; \"all\" keeps every trial's): `{keep_all_command(spec, key)}`")
    return folder


def keep_all_command(spec: ExperimentSpec, key: str) -> str:
    """The run that trains trial `key`'s variant again, keeping every model and checkpoint (with
    the --sets its study was run with: without them it would train other settings)."""
    variant = key.rsplit("-s", 1)[0]
    return with_study_sets(spec).command("run", "--rerun", variant, sets=("experiment.save_models=all",))


def resolve_model(argument: str, sets: list[str] | None = None,
                  need_data: bool = True, trial: str | None = None) -> tuple[Path, Any, Any]:
    """MODEL_OR_STUDY → (model folder, the study's spec or None, the tokenizer its check loaded
    or None: see check_classifier_folder). A folder is a model; a file
    is an experiment file (with its --set overrides) whose best_model/ is used, or the model of
    its trial `trial` (--trial). need_data=False: the study's local data may have moved (predict,
    evaluate on other data do not read it)."""
    path = home_path(argument)
    if path.is_dir() and trial is not None:
        raise AblateInputError(
            f"--trial {trial!r} names a trial of a study: give its experiment file as "
            f"MODEL_OR_STUDY, not the model folder {argument!r} (which is already one model)")
    if path.is_dir():
        if not (path / "config.json").is_file():
            inner = next((path / name for name in (MODEL_DIR, BEST_MODEL)
                          if (path / name / "config.json").is_file()), None)
            if inner is not None:  # a trial's folder, or a study's output folder
                raise AblateInputError(
                    f"MODEL_OR_STUDY {argument!r} is a folder but not a saved model (no "
                    f"config.json); it holds the model folder {str(inner)!r}: give that")
            raise AblateInputError(
                f"MODEL_OR_STUDY {argument!r} is a folder but not a saved model (no config.json); "
                f"give a study's {BEST_MODEL}/ or trials/<trial>/{MODEL_DIR}/ folder, or an "
                "experiment file")
        return path, None, check_classifier_folder(path)
    if not path.exists():
        raise AblateInputError(
            f"MODEL_OR_STUDY {argument!r}: no such model folder or experiment file{_hub_id_hint(argument)}")
    from .config import LOCAL_DATA_SUFFIXES, load_spec

    experiment_file = path.suffix.lower() == ".toml"
    if not experiment_file and (path.parent / "config.json").is_file():  # its config.json, weights
        raise AblateInputError(
            f"MODEL_OR_STUDY {argument!r} is a file of the model folder {str(path.parent)!r}: "
            "give the folder itself")
    if path.name.lower().endswith(LOCAL_DATA_SUFFIXES):
        raise AblateInputError(
            f"MODEL_OR_STUDY {argument!r} is a data file; give a model folder or an experiment file "
            "(.toml) first, then the texts (predict) or --dataset DATA (evaluate)")
    if not experiment_file:  # a file named otherwise may still be one; one that is no TOML is not
        _check_experiment_file(path, argument)
    spec = load_spec(path, sets, need_data=need_data)
    if trial is not None:
        folder = trial_model(spec, trial)
        return folder, spec, check_classifier_folder(folder)
    folder = spec.output_dir / BEST_MODEL
    if not (folder / "config.json").is_file():
        import optuna

        from .queue import StudyNotFound, open_study
        from .records import with_run_sets
        from .status import not_run_here

        try:  # one never run says so, with the run command (or where its study is instead)
            study = open_study(spec, create=False)
        except StudyNotFound as never_run:
            raise not_run_here(spec, never_run) from None
        spec = with_run_sets(spec, study)  # its commands run the study's settings
        if not study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
            raise AblateInputError(
                f"study {spec.name!r} has no complete trial yet, so no best model; see "
                f"`{spec.command('status')}`")
        from .report import build_report

        best = best_record(build_report(spec, study))
        rerun = ("--rerun", best.variant) if best is not None else ()
        exported = study.user_attrs.get(STUDY_ATTR)
        elsewhere = exported_elsewhere(spec, exported)
        if elsewhere and best is not None and exported["key"] == best.key:
            raise AblateInputError(
                f"study {spec.name!r} has its best model in {elsewhere} (trial {best.key}, "
                f"exported by the run there), not in {folder}: copy that folder here, or use it "
                "there")
        kept = spec.output_dir / "trials" / best.key / MODEL_DIR if best is not None else None
        if kept is not None and (kept / "config.json").is_file():  # save_models = "all": a copy
            raise AblateInputError(
                f"study {spec.name!r} has no best model: {_why_no_best_model(folder, best)}; "
                f"trial {best.key} kept its own copy in {kept}: use it with `--trial {best.key}`, "
                f"or `{spec.command('run')}` copies it back to {folder} without training")
        raise AblateInputError(
            f"study {spec.name!r} has no best model: {_why_no_best_model(folder, best)}; train "
            "the best variant again keeping its model: "
            f"`{spec.command('run', *rerun, sets=keeping_models(spec))}`")
    return folder, spec, check_classifier_folder(folder)


def _hub_id_hint(argument: str) -> str:
    """For MODEL_OR_STUDY written as a Hub id (`textattack/bert-base-uncased-SST-2`): predict and
    evaluate read a local folder, so the cache's snapshot of it is named where it holds one."""
    from huggingface_hub import constants

    from .config import looks_like_path
    from .hub import cached_snapshot

    if looks_like_path(argument) or argument.count("/") > 1 or argument.endswith(".toml"):
        return ""
    snapshot = cached_snapshot(Path(constants.HF_HUB_CACHE) / f"models--{argument.replace('/', '--')}")
    if snapshot:
        return (f"; a Hub id is not read here, a local folder is: the Hugging Face cache holds this "
                f"one as {str(snapshot)!r}")
    if "/" not in argument:  # an id of the Hub's first models, or a file or folder name mistyped
        return ""
    return ("; if it is a Hub id: a local folder is read here, not a Hub id (save the model with "
            "save_pretrained, or give its snapshot folder in the Hugging Face cache)")


EXPERIMENT_FILE_MAX = 4 * 2**20  # bytes: far more than any experiment file


def _check_experiment_file(path: Path, argument: str) -> None:
    """A MODEL_OR_STUDY file without the .toml suffix that is not TOML (a study.db, a text file)
    is refused as what it is, not as a broken experiment file."""
    import tomllib

    try:
        with path.open("rb") as file:  # a study.db of gigabytes is not read whole to say so
            head = file.read(EXPERIMENT_FILE_MAX + 1)
        if len(head) > EXPERIMENT_FILE_MAX:
            why = f"{path.stat().st_size / 2**20:.0f} MB; an experiment file is a short text"
        else:
            tomllib.loads(head.decode("utf-8-sig"))
            return
    except OSError:
        return  # load_spec says why it cannot be read
    except UnicodeDecodeError:
        why = "not UTF-8 text"
    except tomllib.TOMLDecodeError as err:
        why = f"not TOML: {err}"
    raise AblateInputError(
        f"MODEL_OR_STUDY {argument!r} is not an experiment file ({why}); give a model folder or an "
        "experiment file (.toml) first, then the texts (predict) or --dataset DATA (evaluate)")


def _why_no_best_model(folder: Path, best: Any) -> str:
    """Why a study with a complete trial has no best_model/, from what its best trial recorded:
    it kept no model (save_models = "none"), it trained on another machine (which kept it), or
    the folder was deleted since (by hand, a clean-up)."""
    result = best.result if best is not None else {}
    missing = f"{folder} " + ("has no config.json" if folder.is_dir() else "is missing")
    if "model_dir" not in result:  # no best trial, or one recorded before model_dir was
        return (f"{missing}: deleted, or its trials ran with [experiment] save_models = "
                "\"none\" or on another machine")
    if result["model_dir"] is None:
        return (f"its best trial, {best.key}, kept no model ([experiment] save_models = "
                "\"none\")")
    import socket

    host = (best.worker or "").rpartition(":")[0]
    if host and host != socket.gethostname():
        return f"{missing} (trial {best.key} trained on {host}, which kept its model)"
    return f"{missing} (deleted since trial {best.key} kept its model there)"


WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")
# A tokenizer's vocabulary: tokenizer_config.json alone is not one (transformers then builds a
# tokenizer of the special tokens only, every word [UNK]); SentencePiece's is any "*.model"
# (spiece.model, sentencepiece.bpe.model), checked beside these.
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json")


def check_classifier_folder(folder: Path) -> Any:
    """A folder given as the model must hold a text classifier whole: transformers would fail
    with a traceback on a broken config or missing weights, and quietly make up a tokenizer
    (every word [UNK]) or a random head (other labels at every call) where those are missing.
    Returns the tokenizer it loaded to judge a folder without a vocabulary file, for
    load_classifier to use rather than load it again; None where it loaded none."""
    where = f"MODEL_OR_STUDY {str(folder)!r}"
    odd = not_utf8(str(folder.resolve()))
    if odd is not None:  # safetensors' error read as a damaged file, to be copied again
        raise AblateInputError(f"{where} is {odd}")
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise AblateInputError(f"{where}: config.json cannot be read as JSON ({err})") from None
    if not isinstance(config, dict) or not config.get("model_type"):
        raise AblateInputError(f"{where}: config.json names no model_type; give a folder written "
                               "by save_pretrained")
    heads = config.get("architectures")
    if heads and not any(str(h).endswith("ForSequenceClassification") for h in heads):
        raise AblateInputError(
            f"{where} holds a {heads[0]}, not a text classifier (a ...ForSequenceClassification "
            "model): its classification layer would be random")
    check_saved_weights(folder, where)
    if holds_vocabulary_file(folder):
        return None
    from transformers import AutoTokenizer  # refused before any data is read, unless it needs none

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder))
    except (OSError, ValueError, ImportError):
        return None  # load_classifier says why, as for any folder
    check_saved_vocabulary(folder, where, tokenizer)
    return tokenizer


_SAVE_WHOLE = "give a folder written by save_pretrained (config.json, the weights and the tokenizer)"


def check_saved_weights(folder: Path, where: str) -> None:
    """A model folder without its weights: transformers fails with a traceback (predict), or every
    trial failed as it started while validate said ok (a study's [model] name)."""
    if not any((folder / name).is_file() for name in WEIGHT_FILES):
        raise AblateInputError(
            f"{where} holds no weights ({' or '.join(WEIGHT_FILES[::2])}); {_SAVE_WHOLE}")


def check_saved_vocabulary(folder: Path, where: str, tokenizer: Any) -> None:
    """A model folder without a tokenizer vocabulary: transformers makes a tokenizer of the special
    tokens alone, every word [UNK], and trains or predicts on nothing, unsaid. Judged on the
    tokenizer loaded, as tokenizers of characters or bytes (CANINE's) need no vocabulary file."""
    if holds_vocabulary_file(folder) or not made_up_tokenizer(tokenizer):
        return
    raise AblateInputError(
        f"{where} holds no tokenizer vocabulary (tokenizer.json, vocab.txt, ...): transformers "
        f"makes a tokenizer of {len(tokenizer)} tokens, the special ones, every word [UNK]; save "
        "the tokenizer beside the model, as `tokenizer.save_pretrained(folder)` does")


def holds_vocabulary_file(folder: Path) -> bool:
    return any((folder / name).is_file() for name in TOKENIZER_FILES) or any(folder.glob("*.model"))


def made_up_tokenizer(tokenizer: Any) -> bool:
    """Whether `tokenizer` is the one transformers makes where a model has no vocabulary files:
    the special tokens and next to nothing else (a real one, of characters or bytes too, holds
    hundreds of tokens at least)."""
    return len(tokenizer) - len(set(tokenizer.all_special_ids)) < 10


def model_info(folder: Path) -> dict[str, Any]:
    """The model folder's ablate.json (which trial, max_length, metrics), or {} for a model
    saved by something else (no ablate.json). A broken one is refused: read as none, predict
    would truncate at the tokenizer's limit and drop the text pair column, unsaid."""
    path = folder / MODEL_INFO
    try:
        text = path.read_text(encoding="utf-8")
    except (FileNotFoundError, NotADirectoryError):
        return _checkpoint_reading(folder)
    except (OSError, ValueError) as err:  # a folder of that name, unreadable, not UTF-8
        raise AblateInputError(f"{path} cannot be read ({first_line(err)}): it says how the model "
                               f"was trained; {_COPY_AGAIN}") from None
    try:
        info = json.loads(text)
    except ValueError as err:
        raise AblateInputError(f"{path} is not valid JSON ({first_line(err)}): it says how the "
                               f"model was trained; {_COPY_AGAIN}") from None
    if not isinstance(info, dict):
        kind = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
            type(info), "a number")
        raise AblateInputError(f"{path} holds {kind}, not a JSON object of "
                               f"the trial's settings (max_length, text_pair_column, ...); "
                               f"{_COPY_AGAIN}")
    _check_reading(info, path)
    return info


def _check_reading(info: dict[str, Any], path: Path) -> None:
    """The settings predict and evaluate read, each of its kind: a value edited by hand (a
    max_length of "abc" or -5) ended in a traceback where the texts were tokenized."""
    allowed = {"max_length": "a whole number of tokens >= 1",
               "text_pair_column": "a column name or null",
               "text_column": "a column name or null", "label_column": "a column name or null",
               "precision": "a precision name (fp32, bf16, fp16) or null"}
    for key, what in allowed.items():
        value = info.get(key)
        if value is None:
            continue
        if key == "max_length":
            good = isinstance(value, int) and not isinstance(value, bool) and value >= 1
        elif key == "precision":  # as a trial resolves it (train.resolve_precision): not auto
            good = value in PRECISIONS and value != "auto"
        else:
            good = isinstance(value, str) and bool(value.strip())
        if not good:
            raise AblateInputError(f"{path} has {key} {json.dumps(value)}, not {what}; "
                                   f"{_COPY_AGAIN}")


def predicted_counts(confusion: Any) -> list[int] | None:
    """How many validation examples the kept checkpoint predicted as each class (the confusion
    matrix's column sums), for ablate.json: `predict` says of a model that predicted one class for
    all of them that its labels are that guess. None without a matrix."""
    if not confusion:
        return None
    return [int(sum(column)) for column in zip(*confusion, strict=True)]


def one_class_note(folder: Path, info: dict[str, Any]) -> str | None:
    """The note for a model whose trial's checkpoint predicted one class for every validation
    example (ablate.json's validation_predicted): it has not learned from the text, and every
    label `predict` prints is that one guess; None otherwise (or where ablate.json cannot say)."""
    counts = info.get("validation_predicted")
    if not (isinstance(counts, list) and len(counts) > 1
            and all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in counts)):
        return None
    predicted = [index for index, count in enumerate(counts) if count]
    if len(predicted) != 1:
        return None
    try:
        names = json.loads((folder / "config.json").read_text(encoding="utf-8")).get("id2label", {})
        name = repr(str(names.get(str(predicted[0]), predicted[0])))
    except (OSError, ValueError, AttributeError):
        name = f"class {predicted[0]}"
    trial = f" (trial {info['trial']})" if isinstance(info.get("trial"), str) else ""
    return (f"this model{trial} predicted {name} for every one of its {sum(counts)} validation "
            "examples when it was trained: it has not learned from the text, so the labels here "
            "are that one guess, not a reading of the texts (its study's report: Diagnosis)")


# What a kept checkpoint reads as its trial did: the trial's settings, not its results.
READING_KEYS = ("max_length", "text_pair_column", "text_column", "label_column", "precision")


def _checkpoint_reading(folder: Path) -> dict[str, Any]:
    """A kept checkpoint (trials/<trial>/checkpoints/checkpoint-N) has no ablate.json: given as
    the model, it reads its texts as its trial was trained to (a pair model's second text, where
    it truncated), from the trial's model's ablate.json (model/, or best_model/ where that is
    the trial's), as `evaluate --checkpoints` reads them. {} for any other folder."""
    checkpoints = folder.parent
    if not (folder.name.startswith("checkpoint-") and checkpoints.name == "checkpoints"):
        return {}
    trial = checkpoints.parent
    for kept in (trial / MODEL_DIR, trial.parent.parent / BEST_MODEL):
        if (kept / MODEL_INFO).is_file():
            info = model_info(kept)
            if kept.name == MODEL_DIR or info.get("trial") == trial.name:
                return {key: info[key] for key in READING_KEYS if key in info}
    return {}


_COPY_AGAIN = ("copy or save the model folder again (read without it, texts would be cut at "
               "another length and a text pair column lost)")
