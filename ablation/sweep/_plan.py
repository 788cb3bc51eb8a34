"""Which trials to train: the file's variant × seed trials (or the ones named on the command line),
matched against the stored study's (kept, re-used, re-run or new), with a note or a refusal for
every edit of the file that would mix unlike results.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable, Iterable
from functools import partial
from typing import Any

import optuna

from .. import queue, records
from ..config import TYPO_CUTOFF, ExperimentSpec
from ..errors import AblateInputError, some_of
from ..variants import (
    BASELINE,
    FULL,
    MINUS,
    PLUS,
    TrialSpec,
    describe_changes,
    expand,
    trained_recipe,
    variant_names,
)
from ._study import NEW_STUDY, check_same_study, moved_by_content


def select_trials(spec: ExperimentSpec, only: list[str] | None,
                  option: str = "--only") -> list[TrialSpec]:
    """Every trial of the file, or those of the variants named by --only (or `option`)."""
    known = variant_names(spec)
    if known == [BASELINE] and not spec.has_baseline and spec.search is None:
        raise AblateInputError(
            f"{spec.path}: nothing to run: no [baseline] and no variants ([variants], [sweep], "
            "[ablation] or [search]); add a [baseline] with the recipe to start from and the "
            "variants that change it")
    trials = expand(spec)
    if not only:
        return trials
    from ..search import SELECTOR

    searched = spec.search is not None and option == "--only"  # `--only search`: the search
    for name in only:
        if spec.search is not None and records.is_search_variant(name):
            raise AblateInputError(
                f"{option} {name!r}: the [search] trials of {spec.path.name} cannot be chosen one "
                f"by one (the sampler proposes them); to train {name}'s parameters again, give them "
                "a name in [variants] (the report's results table gives its changes); "
                "`--retry-failed` retries failed search trials")
        if name not in known and not (searched and name == SELECTOR):
            raise AblateInputError(
                f"{option} {name!r}: no such variant in {spec.path.name}{_variant_hint(name, known)} "
                f"(variants: "
                f"{', '.join(known)}" + (f"; {SELECTOR} selects the [search] trials)"
                                         if searched else ")"))
    return [t for t in trials if t.variant in only]


def _variant_hint(name: str, known: list[str]) -> str:
    """A did-you-mean for a variant name: `bs32` for baseline_bs32 (the short name the file or
    the sweep's naming wrote), or a typo of the part after `baseline_`, which every generated
    name shares (compared whole, any `baseline_x` would look close to any other)."""
    short = {variant.removeprefix(f"{BASELINE}_"): variant for variant in known}
    close = difflib.get_close_matches(name.removeprefix(f"{BASELINE}_"), list(short), n=1,
                                      cutoff=TYPO_CUTOFF)
    return f"; did you mean {short[close[0]]!r}?" if close else ""


def run_selection(spec: ExperimentSpec, only: list[str] | None, rerun: list[str] | None,
                  retry_failed: bool) -> list[TrialSpec]:
    """The trials a `run` plans: those of the --only and --rerun variants, or all of them. With
    --retry-failed and no --only, all of them: it queues the failed ones (`plan`) besides any --rerun."""
    from ..search import rerun_names

    if retry_failed and not only:
        return select_trials(spec, None)
    searched = rerun_names(spec, rerun)  # search trials: from the study, not the file (`reruns`)
    reran = [name for name in rerun or [] if name not in searched]
    if reran:  # an unknown one is named as a --rerun
        select_trials(spec, reran, option="--rerun")
    names = (only or []) + reran
    if searched and not names:  # `--rerun search_N` alone: no variant
        return []
    return select_trials(spec, names or None)




def checked_plan(study: optuna.Study, spec: ExperimentSpec, trials: list[TrialSpec],
                 rerun: list[str] | None, retry_failed: bool,
                 ) -> tuple[list[TrialSpec], list[str], list[int], list[str]]:
    """`plan` against a stored study once it passes the checks a run makes (the same study, the
    same search space): one place for what `run` does and `run --dry-run` shows."""
    try:
        return _checks_then_plan(study, spec, trials, rerun, retry_failed)
    except AblateInputError as err:
        with_sets = _with_left_out_sets(study, spec)
        if with_sets is None or not _passes_checks(study, with_sets, rerun, retry_failed):
            raise
        raise AblateInputError(
            f"{err}; or, to go on with the stored results, give the --set options the `ablate run` "
            f"that queued them had: `{with_sets.command('run')}`") from None


def _with_left_out_sets(study: optuna.Study, spec: ExperimentSpec) -> ExperimentSpec | None:
    """`spec` read again with the --sets of the run that last queued the study's trials that this
    command does not give (no KEY of its own): None where it leaves none out."""
    return with_left_out_sets(spec, study.user_attrs.get(records.RUN_SETS) or [])


def with_left_out_sets(spec: ExperimentSpec, run_sets: Iterable[str]) -> ExperimentSpec | None:
    """`spec` read again with those of `run_sets` (the stored --sets of the run that last queued
    the study's trials) that it does not give (no KEY of its own): None where it leaves none
    out, or where the file no longer takes one."""
    from ..config import load_spec, set_key

    given = {set_key(item) for item in spec.sets}
    left_out = [item for item in run_sets if set_key(item) not in given]
    if not left_out:
        return None
    try:
        return load_spec(spec.path, [*left_out, *spec.sets], need_data=False)
    except AblateInputError:  # a --set the file no longer takes: it cannot be the way on
        return None


def _passes_checks(study: optuna.Study, spec: ExperimentSpec, rerun: list[str] | None,
                   retry_failed: bool) -> bool:
    """Whether `spec` passes what `checked_plan` checks (its own trials: a --set may add some)."""
    try:
        _checks_then_plan(study, spec, select_trials(spec, None), rerun, retry_failed)
    except AblateInputError:
        return False
    return True


def _checks_then_plan(study: optuna.Study, spec: ExperimentSpec, trials: list[TrialSpec],
                      rerun: list[str] | None, retry_failed: bool,
                      ) -> tuple[list[TrialSpec], list[str], list[int], list[str]]:
    """The checks a run makes against the stored study, then its `plan` of `trials`."""
    from ..search import check_same_search

    check_same_study(study, spec, elsewhere=moved_by_content(study))
    check_same_search(study, spec, NEW_STUDY)
    to_queue, skipped, replaced, notes = plan(
        study, trials, rerun, retry_failed, spec.path, every=select_trials(spec, None),
        sets=spec.sets, command=spec.command, trained=partial(trained_recipe, spec),
        searched=spec.search is not None)
    return to_queue, skipped, replaced, notes


def _search_left_in_report(existing: list[records.TrialRecord]) -> list[str]:
    """A note on the search trials a study holds where the file no longer has [search]: as for a
    variant taken out of the file, the report still shows them (its Search section)."""
    made = [r.variant for r in existing if r.complete and records.is_search_variant(r.variant)]
    if not made:
        return []
    return [f"the study holds {len(made)} [search] trial(s) ({some_of(made, 5)}), which the file, "
            "with no [search] section now, no longer makes: they stay in the report (its Search "
            "section)"]


def plan(study: optuna.Study, trials: list[TrialSpec], rerun: list[str] | None = None,
         retry_failed: bool = False, path: Any = "", every: list[TrialSpec] | None = None,
         sets: list[str] | None = None, command: Callable[..., str] | None = None,
         trained: Callable[[dict[str, Any]], str] | None = None, searched: bool = True,
         ) -> tuple[list[TrialSpec], list[str], list[int], list[str]]:
    """Which selected trials to queue now, which complete ones are re-used, which trial
    numbers the caller supersedes once every check has passed (nothing is written here), and
    notes for the caller to print (see `_stored_twins`).

    Queued: every trial with no complete, waiting or running attempt (a trial that failed in an
    earlier invocation is tried once more). `rerun` variants are queued again and their complete
    results superseded; `retry_failed` queues only trials whose attempts all failed (and the
    `rerun` ones). A complete, waiting or running attempt whose changes differ from the file's
    is refused: its result would be shown under changes it was not trained with. That holds for
    `every` trial of the file (default: `trials`), selected or not: the report compares them all.

    Changes are compared by what they train (`trained`: overrides -> a key; default: the
    overrides as written): a knob written out at the baseline's value is no change. `searched`
    False (the file has no [search] now) adds a note on the search trials the study still holds.

    A `rerun` trial still running is refused where heartbeats tell a live process from a dead
    one; without them (journal storage) it is taken as abandoned: superseded, failed by the
    caller (`queue.fail_abandoned`), and queued again."""
    rerun = rerun or []
    trained = trained or _canonical
    existing = [r for r in records.load_records(study) if not r.superseded]
    reworded = _check_unchanged(existing, [t for t in (every or trials) if t.variant not in rerun],
                                path, sets or [], command, trained)
    rerun_keys = {t.key for t in trials if t.variant in rerun}
    running = [r for r in existing if r.key in rerun_keys and r.state == "RUNNING"]
    if running and queue.has_heartbeats(study):
        raise AblateInputError(_rerun_of_running(study, running[0], command))
    # A rerun variant's queued attempt with other changes than the file's (edited while it
    # waited) would train those: replaced as an abandoned one is, and the file's recipe queued
    by_key = {t.key: t for t in trials}
    requeued = {r.number for r in existing if r.key in rerun_keys and r.state == "WAITING"
                and trained(r.overrides) != trained(by_key[r.key].overrides)}
    abandoned = {r.number for r in running} | requeued
    active = [r for r in existing if not (r.key in rerun_keys and r.complete) and r.number not in abandoned]
    complete = {r.key for r in active if r.complete}
    busy = {r.key for r in active if r.state in ("WAITING", "RUNNING")}
    failed = {r.key for r in active if r.state == "FAIL"}
    skipped = [t.key for t in trials if t.key in complete]
    to_queue = [t for t in trials if t.key not in complete | busy
                and (not retry_failed or t.key in failed | rerun_keys)]
    queued = {t.key for t in to_queue}  # only a result trained again is superseded
    replaced = [r.number for r in existing
                if r.key in rerun_keys & queued and (r.complete or r.number in abandoned)]
    # A variant trained again with new changes: its results at seeds the file no longer lists
    # were trained with the old ones, and would be averaged with the new (same variant, one row).
    retrained = {t.variant: t.overrides for t in to_queue if t.key in rerun_keys}
    replaced += [r.number for r in existing
                 if r.variant in retrained and r.key not in rerun_keys and r.complete
                 and trained(r.overrides) != trained(retrained[r.variant])]
    notes = reworded + _left_in_report(existing, every or trials)
    if not searched:
        notes += _search_left_in_report(existing)
    return to_queue, skipped, replaced, notes + _stored_twins(existing, to_queue, trained)


def _left_in_report(existing: list[records.TrialRecord], trials: list[TrialSpec]) -> list[str]:
    """Notes on complete results of variants and seeds the file no longer names (removed,
    renamed, a [sweep] value changed, a seed taken out): the report still shows them, as it
    shows every result the study holds, and a user who edited them out should not be surprised."""
    variants = {t.variant for t in trials}
    seeds = {t.seed for t in trials}
    complete = [r for r in existing if r.complete and not records.is_search_variant(r.variant)]
    gone = list(dict.fromkeys(r.variant for r in complete if r.variant not in variants))
    dropped = sorted({r.seed for r in complete if r.variant in variants and r.seed not in seeds})
    notes = []
    if gone:
        notes.append(f"the study holds results of {'variant' if len(gone) == 1 else 'variants'} "
                     f"{', '.join(gone)}, which the file no longer has: they stay in the report "
                     "(it shows every result the study holds)")
    if dropped:
        notes.append(f"the study holds results at {'seed' if len(dropped) == 1 else 'seeds'} "
                     f"{', '.join(map(str, dropped))}, which the file no longer lists: they still "
                     "count in their variants' rows of the report")
    return notes


def _stored_twins(existing: list[records.TrialRecord], trials: list[TrialSpec],
                  trained: Callable[[dict[str, Any]], str]) -> list[str]:
    """Notes on trials about to train what a stored complete trial of another name already
    trained (a variant renamed in the file, say): said, not refused, as a rename may be meant."""
    done = {(r.seed, trained(r.overrides)): r.key for r in existing if r.complete}
    notes = []
    for trial in trials:
        twin = done.get((trial.seed, trained(trial.overrides)))
        if twin is not None and twin != trial.key:
            notes.append(f"{trial.key} ({describe_changes(trial.overrides)}) trains what stored "
                         f"trial {twin} trained, again under a new name")
    return notes


def _canonical(overrides: dict[str, Any]) -> str:
    return json.dumps(overrides, sort_keys=True, default=str)


def _renaming(*variants: str) -> str:
    """How changed variants keep their old results beside the new ones: new names, which for
    [ablation] variants come from the changes' names. `full` has none of its own, and every
    `full_minus_*` but one changes with any change: renaming changes leaves them changed."""
    if variants == (FULL,):
        return "run the new recipe as a new study (a new [experiment] name)"
    if FULL in variants:
        return ("run the new recipes as a new study (a new [experiment] name): `full` keeps its "
                "name whatever the changes are called")
    if all(v == FULL or v.startswith((MINUS, PLUS)) for v in variants):
        return ("give the change a new name in [ablation.changes]" if len(variants) == 1
                else "give those changes new names in [ablation.changes]")
    return "give the changed variant a new name" if len(variants) == 1 else \
        "give the changed variants new names"


def _rerun_of_running(study: optuna.Study, running: records.TrialRecord,
                      command: Callable[..., str] | None) -> str:
    """Why `--rerun` of a trial that is RUNNING is refused, with the way on: its process (where
    it trains), and the command that trains it again, at once for a process known to be gone (a
    plain run queues it again; a `--rerun` beside that would train it twice), else once the
    process has finished, or its heartbeats stopped."""
    where = f" ({running.worker})" if running.worker else ""
    run = f"`{command('run')}`" if command is not None else "a plain `ablate run`"
    if running.number in queue.stale_numbers(study):
        return (f"--rerun {running.variant}: trial {running.key} was running in another "
                f"process{where}, which is gone; {run} trains it again, without --rerun")
    status = f" (`{command('status')}` shows it)" if command is not None else ""
    return (f"--rerun {running.variant}: trial {running.key} is running in another "
            f"process{where}; run it again once it has finished{status}; if that process was "
            f"killed, {run} trains it again once its heartbeats have been silent for "
            f"{queue.stale_after_s(study):g} s")


def changed_variants(existing: list[records.TrialRecord], trials: list[TrialSpec],
                     trained: Callable[[dict[str, Any]], str] = _canonical,
                     ) -> tuple[dict[str, tuple[str, str, str]], dict[str, list[records.TrialRecord]]]:
    """The variants of `trials` whose stored complete, queued or running attempts (of
    `existing`) were given other changes than the file's: {variant: ("run" or "queued", the
    stored changes, the file's)}; and those worded otherwise that train the same recipe, with
    their stored attempts. Changes are compared by what they train (`trained`)."""
    wanted = {t.variant: t for t in trials}
    changed: dict[str, tuple[str, str, str]] = {}  # variant -> (run or queued, then, now)
    reworded: dict[str, list[records.TrialRecord]] = {}  # other words, the same recipe
    for record in existing:
        trial = wanted.get(record.variant)
        if (trial is None or record.state not in ("COMPLETE", "WAITING", "RUNNING")
                or _canonical(record.overrides) == _canonical(trial.overrides)):
            continue
        if trained(record.overrides) == trained(trial.overrides):
            reworded.setdefault(trial.variant, []).append(record)
            continue
        changed.setdefault(trial.variant, ("run" if record.complete else "queued",
                                           describe_changes(record.overrides),
                                           describe_changes(trial.overrides)))
    return changed, reworded


def _check_unchanged(existing: list[records.TrialRecord], trials: list[TrialSpec], path: Any,
                     sets: list[str], command: Callable[..., str] | None = None,
                     trained: Callable[[dict[str, Any]], str] = _canonical) -> list[str]:
    """Refuse stored trials whose variant the file now changes; returns notes on those it words
    otherwise but that train the same recipe (kept)."""
    # By variant, not variant × seed: a seed since left out of the file still counts in the
    # variant's row of the report. `sets`: a --set that changes variants shares the blame.
    source = ("the file with its --set options" if any(
        item.split("=", 1)[0].strip().startswith(("variants", "sweep", "ablation", "baseline"))
        for item in sets) else "the file")
    wanted = {t.variant: t for t in trials}
    changed, reworded = changed_variants(existing, trials, trained)
    options = [part for variant in changed for part in ("--rerun", variant)]
    # The command to paste, with the file and --sets as typed (the options alone without them).
    reruns = command("run", *options) if command else " ".join(options)
    if len(changed) == 1:
        (variant, (state, then, now)), = changed.items()
        raise AblateInputError(
            f"{path}: variant {variant!r} was {state} with {then}; {source} now says {now}: "
            f"`{reruns}` trains it again with the new changes (the old result is kept as "
            f"superseded), or {_renaming(variant)}")
    if changed:  # all of them in one line: one round trip, not one per variant
        raise AblateInputError(
            f"{path}: {len(changed)} variants were run with other changes than {source} now says ("
            + "; ".join(f"{variant}: {then} → {now}" for variant, (_, then, now) in changed.items())
            + f"): `{reruns}` trains them again with the new changes (the old results are kept as "
            f"superseded), or {_renaming(*changed)}")
    notes = []
    for variant, kept in reworded.items():
        its = "its stored result was" if len(kept) == 1 else f"its {len(kept)} stored results were"
        notes.append(f"{variant} now says {describe_changes(wanted[variant].overrides)}, which trains "
                     f"what {its} trained with ({describe_changes(kept[0].overrides)}): re-used")
    return notes
