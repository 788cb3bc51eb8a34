"""Is the stored study the one this file describes? Its identity (data, model, baseline, metric)
and content fingerprints, recorded by the first run and checked by every later run and worker,
so that results trained from other data or weights are never compared as if they were alike.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import optuna

from .. import records
from ..config import ExperimentSpec, home_path, last_set, shown_storage
from ..errors import AblateInputError, set_shown
from ..variants import TrialSpec

# Study user attributes that say which study it is: a file that differs in any of them would
# mix its results with the stored ones.
IDENTITY_ATTRS = ("data", "model", "baseline", "metric", "direction")
DATA_FINGERPRINT = "data_fingerprint"
DATA_SOURCE = "data_source_fingerprint"  # the files as read, before ablate makes rows of them
MODEL_FINGERPRINTS = "model_fingerprints"  # model name[@revision] -> preflight.model_fingerprint
HEARTBEAT = "heartbeat"  # of the last run: a worker judging others by another one is refused


def study_identity(spec: ExperimentSpec) -> dict[str, Any]:
    """What the stored trials' results depend on besides their own variant and seed, as JSON
    (the form the storage gives back)."""
    resolved = spec.to_dict()
    identity = {"data": resolved["data"], "model": resolved["model"],
                "baseline": resolved["baseline"], "metric": spec.experiment.metric,
                "direction": spec.experiment.direction}
    return json.loads(json.dumps(identity))


def _first_difference(key: str, stored: Any, mine: Any, section: bool = True
                      ) -> tuple[str, Any, Any] | None:
    """(dotted key, stored value, this file's value) of the first difference, or None.

    In a section ([data], [model], [baseline]) only the keys both sides have are compared: a
    key added by a newer ablate has a default that does what the older one did."""
    if isinstance(stored, dict) and isinstance(mine, dict):
        subs = set(stored) & set(mine) if section else set(stored) | set(mine)
        for sub in sorted(subs):
            found = _first_difference(f"{key}.{sub}", stored.get(sub), mine.get(sub), False)
            if found:
                return found
        return None
    return None if stored == mine else (key, stored, mine)


def _shown(value: Any) -> str:
    """A stored or new value as the file writes it: epochs = 3, which the recipe keeps as 3.0."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return "unset" if value is None else repr(value) if isinstance(value, str) else json.dumps(value)


NEW_STUDY = "use a new [experiment] name, or --force-new to delete that study and start afresh"
# A worker only trains what `ablate run` queued: it must read what that run read.
SAME_AS_RUN = "start the worker with the experiment file and --set options of the `ablate run` that queued it"


def refusal(spec: ExperimentSpec, what: str, advice: str) -> AblateInputError:
    return AblateInputError(f"storage {shown_storage(spec.experiment.storage)} holds study "
                            f"{spec.name!r} run with {what}; {advice}")


def check_same_study(study: optuna.Study, spec: ExperimentSpec,
                     keys: tuple[str, ...] = IDENTITY_ATTRS, advice: str = NEW_STUDY,
                     elsewhere: tuple[str, ...] = ()) -> None:
    """Refuse to add trials to a stored study of the same name but another data, model,
    baseline or metric: their results would be compared as if they were alike. New variants
    and seeds are fine. `elsewhere`: keys (`model.name`) that may differ, as a path on another
    machine does. A study ablate did not make is refused too (check_made_here)."""
    stored = study.user_attrs
    for key, mine in study_identity(spec).items():
        if key not in keys or key not in stored:
            continue  # a study from before these were recorded
        left_out = {sub for section, _, sub in (name.partition(".") for name in elsewhere)
                    if section == key}
        found = _first_difference(key, _without(stored[key], left_out), _without(mine, left_out))
        if found:
            where, old, new = found
            # A key of [experiment] (metric, direction) is stored bare; --set names its section.
            parts = where.split(".")
            given = last_set(spec.sets, *{".".join(parts[:n]) for n in range(1, len(parts) + 1)},
                             f"experiment.{where}")
            says = f"{set_shown(given)} says" if given else "this file says"
            raise refusal(spec, f"{where}={_shown(old)}; {says} {_shown(new)}", advice)
    if "direction" in keys:  # after them: a study whose stored direction differs is ablate's
        check_made_here(study, spec)


# A study ablate did not make is someone's own: not to be deleted (--force-new) nor joined.
NOT_OURS = ("give this file a new [experiment] name (or another storage): ablate would add its "
            "trials to that study")


def check_made_here(study: optuna.Study, spec: ExperimentSpec) -> None:
    """Refuse a study of the file's name that ablate did not make (a user's own Optuna study in
    a shared storage): its Optuna direction is not the file's (Optuna's best trial, and a
    search's sampler and pruner, go by the study's own), or it holds trials, none of them
    ablate's, and none of the attributes ablate records."""
    directions = [d.name.lower() for d in study.directions]
    if directions != [spec.experiment.direction]:
        raise refusal(spec, f"Optuna direction {' and '.join(directions)}: a study ablate did "
                            f"not make (this file's {spec.experiment.metric} is to "
                            f"{spec.experiment.direction})", NOT_OURS)
    trials = study.get_trials(deepcopy=False)
    if trials and not set(IDENTITY_ATTRS) & set(study.user_attrs) \
            and not any(records.is_ours(t.user_attrs) for t in trials):
        raise refusal(spec, f"{len(trials)} trial(s) ablate did not make (none has its variant "
                            "and seed user attributes: an Optuna study of another program)",
                      NOT_OURS)


def _without(section: Any, keys: set[str]) -> Any:
    return {k: v for k, v in section.items() if k not in keys} if isinstance(section, dict) else section


def study_elsewhere(spec: ExperimentSpec) -> str | None:
    """Where a new study's file already has one, of the same data, model, baseline and metric,
    which this run would not go on with but train again beside: a file without [experiment]
    name (nor output_dir) names its study after itself, so a renamed copy names another; a
    relative output_dir (reports/<name> by default) starts at the folder ablate runs in, so the
    file run from another folder writes elsewhere. A note saying where, for a new study."""
    import tomllib

    from ..config import from_here

    written = tomllib.loads(spec.text).get("experiment", {})
    output_set = last_set(spec.sets, "experiment", "experiment.output_dir")
    relative = None if output_set else written.get("output_dir", f"reports/{spec.name}")
    folder = spec.path.parent
    if isinstance(relative, str) and not home_path(relative).is_absolute() \
            and folder.resolve() != Path.cwd().resolve():
        there = (folder / relative).resolve()
        if _study_like(there / "resolved.json", spec, run_in=folder) == spec.name:
            return (f"{there} holds study {spec.name!r} of this file, made by a run in {folder} "
                    f"(relative paths start at the folder ablate runs in, here {Path.cwd()}): run it "
                    f"from {folder} to go on with that study's results rather than train them again")
    if {"name", "output_dir"} & set(written) or last_set(spec.sets, "experiment.name") or output_set:
        return None
    for resolved in sorted(spec.output_dir.parent.glob("*/resolved.json")):
        name = _study_like(resolved, spec)
        if name is not None and name != spec.name:
            return (f"{from_here(resolved.parent)} holds study {name!r}, run on the data, model, "
                    f"baseline and metric this file gives; this file names its study {spec.name!r} "
                    f"after itself: set [experiment] name = {json.dumps(name, ensure_ascii=False)} "
                    "to go on with that study's results rather than train them again")
    return None


def relative_storage_hint(spec: ExperimentSpec) -> str | None:
    """Where the study's storage is a relative path (the default study.db of a relative
    output_dir, or a relative sqlite:/// storage), read from the folder ablate runs in: a study
    made by a run in another folder (neither the file's nor this one) is in that folder, which
    nothing here records. Why this storage was looked in, and the --set that points at that
    one; None where the storage is the same from every folder."""
    import os
    import tomllib

    from ..config import apply_sets

    try:
        raw = tomllib.loads(spec.text)
        apply_sets(raw, list(spec.sets), spec.path)
    except (ValueError, AblateInputError):
        return None
    written = raw.get("experiment") if isinstance(raw.get("experiment"), dict) else {}
    output = written.get("output_dir", f"reports/{spec.name}")
    storage = written.get("storage")

    def relative(value: Any) -> str | None:  # as typed, less a leading ./
        if not isinstance(value, str) or not value or home_path(value).is_absolute():
            return None
        return os.path.normpath(value)

    sets = []
    if storage is None:  # the default: study.db in output_dir
        if relative(output) is None:
            return None
        which = (f" is study.db in output_dir {output!r}"
                 + ("" if "output_dir" in written else " (the default)") + ",")
    else:
        path = storage[len("sqlite:///"):] if storage.startswith("sqlite:///") else ""
        if relative(path) is None or path == ":memory:":
            return None
        which = f", {storage!r}, is"
        sets.append(f"experiment.storage=sqlite:///FOLDER/{relative(path)}")
    if relative(output) is not None:  # the report, trials and best model are there too
        sets.append(f"experiment.output_dir=FOLDER/{relative(output)}")
    return (f"or, if a run in another folder made it: that storage{which} a relative path "
            f"read from the folder ablate runs in (here {Path.cwd()}), so its study is in the "
            "folder that run ran in (FOLDER): run this command there, or point at it with "
            + " ".join(set_shown(item) for item in sets))


def _study_like(resolved: Path, spec: ExperimentSpec, run_in: Path | None = None) -> str | None:
    """The name of the study whose `resolved.json` this is, where it was run on the data, model,
    baseline and metric `spec` gives; else None. `run_in`: the folder a run of the file read its
    relative paths from (a relative dataset or model there names nothing here)."""
    try:
        stored = json.loads(resolved.read_text(encoding="utf-8"))
        theirs = {"data": stored["data"], "model": stored["model"], "baseline": stored["baseline"],
                  "metric": stored["experiment"]["metric"],
                  "direction": stored["experiment"]["direction"]}
        name = stored["experiment"]["name"]
    except (OSError, ValueError, KeyError, TypeError):
        return None  # none, or not one of ours
    mine = study_identity(spec)
    if run_in is not None:
        for section, key in ((mine["data"], "dataset"), (mine["model"], "name"),
                             (mine["baseline"], "model")):
            value = section.get(key)
            if isinstance(value, str) and value and not home_path(value).is_absolute() \
                    and (run_in / value).exists():
                section[key] = str((run_in / value).resolve())
    return None if any(_first_difference(key, theirs[key], mine[key]) for key in mine) else name


def check_same_data(study: optuna.Study, spec: ExperimentSpec, fingerprint: str,
                    advice: str = NEW_STUDY, source: str | None = None) -> None:
    """The same [data] keys can still read other rows (a file changed on disk; a worker given
    other files or --sets; the same files, which an upgraded ablate cleans, labels, carves or
    samples otherwise: `source`, the files' own fingerprint, tells that apart where the study
    recorded it)."""
    found = _other_rows(study, spec, fingerprint, source)
    if found is not None:
        what, own_advice = found
        raise refusal(spec, what, own_advice or advice)


def _other_rows(study: optuna.Study, spec: ExperimentSpec, fingerprint: str,
                source: str | None) -> tuple[str, str | None] | None:
    """What check_same_data refuses (the rows, and advice of its own where it has one); None
    where the rows are the study's, or it recorded none."""
    stored = study.user_attrs.get(DATA_FINGERPRINT)
    if stored is None or stored == fingerprint:
        return None
    rows = f"other data rows (content fingerprint {stored}; {spec.data.dataset} now gives {fingerprint}"
    stored_source = study.user_attrs.get(DATA_SOURCE)
    if source is not None and stored_source == source:
        return (f"{rows}, from the same files: this ablate cleans, labels, carves or samples them "
                "otherwise than the ablate that ran the study), so new trials would train and be "
                "scored on other rows than its stored ones",
                "its results stay in `ablate report`; go on with it under the ablate version that "
                "ran it, or train the file afresh under a new [experiment] name")
    cause = "other files, or other keys that pick rows"
    if stored_source is None:  # a study from an ablate that did not record its files
        cause = ("other files, other keys that pick rows, or an older ablate that made other "
                 "rows of the same files")
    return f"{rows}: {cause})", None


def other_rows_note(study: optuna.Study, spec: ExperimentSpec) -> str | None:
    """Where a run has nothing to train, it checks no rows and re-uses the stored trials: were
    the local data edited since, they and the report written of them are of the old rows, which
    the user who edited them would not expect. The note says so, in check_same_data's words
    (which refuses the same study once something is to train). Local data only, read (never
    tokenized) for its fingerprint; data that no longer loads changes nothing (the run does not
    need it), nor does a Hub dataset (not downloaded for a note)."""
    from ..data import load_study_splits

    if DATA_FINGERPRINT not in study.user_attrs or not home_path(spec.data.dataset).exists():
        return None
    try:
        splits = load_study_splits(spec)
    except AblateInputError:
        return None
    found = _other_rows(study, spec, splits.fingerprint(), splits.source)
    if found is None:
        return None
    what, own_advice = found
    return str(refusal(spec, f"{what}; nothing is left to train: the trials re-used, and the "
                             "report of them, are of the study's rows, not these",
                       own_advice or f"to train on these, {NEW_STUDY}"))


def _model_key(name: str, revision: str | None) -> str:
    return f"{name}@{revision}" if revision else name


def _stored_model_key(study: optuna.Study) -> str | None:
    """The key of the [model] the study was run with, in MODEL_FINGERPRINTS."""
    model = study.user_attrs.get("model") or {}
    return _model_key(model["name"], model.get("revision")) if "name" in model else None


def moved_by_content(study: optuna.Study) -> tuple[str, ...]:
    """The path keys that may differ from the study's ([data] dataset, [model] name: a project
    folder moved, data and model copied elsewhere) since what they hold is checked by content
    before a trial trains (`check_same_data`, `check_same_models`)."""
    models = study.user_attrs.get(MODEL_FINGERPRINTS) or {}
    return ((("data.dataset",) if DATA_FINGERPRINT in study.user_attrs else ())
            + (("model.name",) if _stored_model_key(study) in models else ()))


def check_same_models(study: optuna.Study | None, spec: ExperimentSpec, trials: list[TrialSpec],
                      advice: str = NEW_STUDY) -> dict[str, str]:
    """The same model name can still hold other weights (a folder trained again in place, a Hub
    model whose cache moved to a newer commit): trials trained from them now would be compared
    with stored ones trained from the old. Returns the fingerprints of the `trials`' models, for
    the study to record. The [model] is compared with the study's [model] wherever either sits
    (a worker on another machine, a project folder moved)."""
    from ..preflight import model_fingerprint
    from ..train import ModelSource

    stored = (study.user_attrs.get(MODEL_FINGERPRINTS) if study is not None else None) or {}
    run_model = _stored_model_key(study) if study is not None else None
    stored_as = {_model_key(spec.model.name, spec.model.revision): run_model} if run_model else {}
    found: dict[str, str] = {}
    for trial in trials:
        source = ModelSource.of(spec, trial.recipe)
        key = _model_key(source.name, source.revision)
        if key in found:
            continue
        fingerprint = model_fingerprint(source.name, source.revision)
        elsewhere = stored_as.get(key, key)  # the study's [model], where this one names another
        if fingerprint is None:
            if elsewhere != key and elsewhere in stored:  # the name alone was what told them apart
                given = last_set(spec.sets, "model.name", "model.revision", "model")
                names = f"{set_shown(given)} names" if given else "this file names"
                raise refusal(spec, f"model {elsewhere}; {names} model {key}, whose files "
                               "cannot be compared with it (not a folder here, nor in the Hub "
                               "cache)", advice)
            continue
        found[key] = fingerprint
        old = stored.get(elsewhere)
        if old is None or old == fingerprint:
            continue
        if fingerprint.startswith("files "):
            what = (f"other files in model folder {key} (content fingerprint {old.split()[-1]}; it "
                    f"now gives {fingerprint.split()[-1]}: its weights, config or tokenizer changed "
                    "on disk)")
        else:
            what = (f"model {key} at Hub {old}; the local cache now gives {fingerprint} (the model "
                    "was updated on the Hub)")
        raise refusal(spec, what, advice)
    return found


def record_study_attrs(study: optuna.Study, spec: ExperimentSpec, splits: Any,
                        models: dict[str, str]) -> None:
    models = {**(study.user_attrs.get(MODEL_FINGERPRINTS) or {}), **models}
    values = {"label_names": splits.label_names, "description": spec.experiment.description,
              DATA_FINGERPRINT: splits.fingerprint(), DATA_SOURCE: splits.source,
              MODEL_FINGERPRINTS: models,
              HEARTBEAT: spec.experiment.heartbeat,
              records.RUN_SETS: records.run_sets(spec), **study_identity(spec)}
    for key, value in values.items():
        if study.user_attrs.get(key) != value:
            study.set_user_attr(key, value)
