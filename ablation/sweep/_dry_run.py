"""`ablate run --dry-run`: what a run with the same options would do, from the same plan as the
run, changing nothing (no study, folder or file is made)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..config import ExperimentSpec


def dry_run(spec: ExperimentSpec, only: list[str], rerun: list[str], retry_failed: bool,
            force_new: bool, echo: Callable[[str], None] = print) -> None:
    """What `run` with the same options would do, from the same plan, changing nothing: each
    line to `echo`. What the run would refuse is refused here (AblateInputError)."""
    from ..queue import (
        StudyNotFound,
        check_none_running,
        has_heartbeats,
        left_to_train,
        open_study,
        stale_numbers,
    )
    from ..records import latest_by_key, load_records
    from ..search import left_running, reruns, retries, run_probes, search_names, selected
    from ..tracking import check_installed
    from ..variants import describe_changes
    from ._plan import checked_plan, run_selection
    from ._runner import check_own_output_dir, check_trial_folders, force_new_leftovers, make_output_dir
    from ._study import study_elsewhere

    trials = run_selection(spec, only, rerun, retry_failed)
    make_output_dir(spec, dry_run=True)
    check_own_output_dir(spec)
    check_installed(spec)  # what run refuses first
    try:
        study = open_study(spec, create=False)
    except StudyNotFound:  # never run (nothing created): all to run; an unusable storage is refused
        study = None
        elsewhere = study_elsewhere(spec)
        if elsewhere:
            echo(f"note: {elsewhere}")
    if study is not None and force_new:
        check_none_running(study)
        echo(f"--force-new: would delete study {spec.name!r} "
             f"({len(study.get_trials(deepcopy=False))} trial(s)), its trial logs and SwanLab runs "
             f"in {spec.output_dir}, and start afresh")
        study = None
    elif force_new:  # no study to delete: what an earlier run left in the output folder
        echo(force_new_leftovers(spec, dry_run=True)[0])
    to_queue, skipped, replaced, notes = [], [], [], []
    if study is None:
        to_queue = trials
    else:
        # The run's own checks: what it would refuse, the dry run refuses now.
        to_queue, skipped, replaced, notes = checked_plan(study, spec, trials, rerun,
                                                          retry_failed)
    for note in notes:
        echo(f"note: {note}")
    retry_search, propose = selected(spec, only, rerun, retry_failed)
    # Failed search trials the run would try again.
    retried = [t for t, _ in retries(study, spec)] if study is not None and retry_search else []
    # `--rerun search_N` of one left running without heartbeats: failed, superseded, run again.
    reran = reruns(study, spec, rerun) if study is not None else []  # --force-new: moot
    retried += [t for t, _ in reran]
    # Search trials left running (killed, or training elsewhere): the run waits for them.
    running = [t for t in (left_running(study, spec) if study is not None and retry_search else [])
               if t.key not in {r.key for r, _ in reran}]
    probes = run_probes(spec, study, propose, bool(retried))
    # An earlier run's queued (or process-gone) trials, which the run trains and checks too.
    left_keys = left_to_train(study) if study is not None else set()  # one read of the storage
    left = [t for t in trials if t.key in left_keys]
    check_trial_folders(to_queue + retried + left, spec)
    # What run checks once the data and models load, where it has anything to train (a [search]
    # whose n_trials are made proposes none, and reads no data)
    if to_queue or left or retried or probes:
        from ..data import load_study_splits
        from ..preflight import TrialInputs, preflight
        from ._study import check_same_data, check_same_models

        inputs = TrialInputs(spec, load_study_splits(spec))
        for note in inputs.splits.notes:  # what `run` says of the data it would train on
            echo(f"data: {note}")
        echo(f"data: {inputs.splits.summary()}")
        if study is not None:
            check_same_data(study, spec, inputs.splits.fingerprint(), source=inputs.splits.source)
        for note in preflight(spec, to_queue + probes, inputs):
            echo(f"note: {note}")
        check_same_models(study, spec, to_queue + probes + left)
    elif study is not None:  # as the run: its re-used trials' rows, where they changed
        from ._study import other_rows_note

        note = other_rows_note(study, spec)
        if note:
            echo(f"note: {note}")
    queued = {t.key for t in to_queue + retried}
    # Not queued anew: a trial still queued (an interrupted run's) is trained by this run too.
    stored = load_records(study) if study is not None else []
    latest = latest_by_key(stored)
    waiting = {key for key, r in latest.items() if r.state == "WAITING" and key not in queued}
    # RUNNING, but its process is gone (as `status` says): with heartbeats, the run queues it
    # again once they have stopped, and trains it; without (a journal), only --rerun does.
    stale = stale_numbers(study) if study is not None else set()
    gone = {key for key, r in latest.items() if r.number in stale and key not in queued}
    requeued = gone if study is not None and has_heartbeats(study) else set()
    listed = trials + retried + running
    echo(f"plan: {len(listed)} trial(s), "
         f"{len(queued | ((waiting | requeued) & {t.key for t in trials + running}))} to run")
    rows = []
    for trial in listed:
        if trial.key in queued:
            state = "to run again" if trial.key in latest and trial.variant in rerun else "to run"
        elif trial.key in skipped:
            state = "complete, re-used"
        elif retry_failed:
            state = "not failed, left"
        elif trial.key in waiting:
            state = "queued, to run"
        elif trial.key in requeued:
            state = "process gone, to run"
        elif trial.key in gone:
            state = "process gone: --rerun it"
        else:
            state = "running elsewhere"
        rows.append((trial, state))
    width = max([32, *(len(t.key) for t in listed)])  # long names keep the columns
    column = max([18, *(len(state) for _, state in rows)])  # `process gone: --rerun it` is 24
    for trial, state in rows:
        echo(f"  {trial.key:<{width}} {state:<{column}} {describe_changes(trial.overrides)}")
    if reran:
        echo(f"the abandoned running attempt(s) of {', '.join(t.key for t, _ in reran)} would be "
             "kept as failed and superseded")
    if replaced:
        states = {r.number: r.state for r in stored}
        done = sum(states.get(number) == "COMPLETE" for number in replaced)
        waiting = sum(states.get(number) == "WAITING" for number in replaced)  # other changes
        left = len(replaced) - done - waiting
        parts = ([f"{done} complete result(s)"] * bool(done)
                 + [f"{waiting} queued trial(s) with other changes than the file's"] * bool(waiting)
                 + [f"{left} abandoned running trial(s)"] * bool(left))
        echo(f"the {' and '.join(parts)} of the variants run again would be kept as superseded")
    if spec.search is not None and not propose:
        echo("then [search]: no new trials: --only, --rerun and --retry-failed run only what they "
             "select (--only search selects the search)")
    elif spec.search is not None:
        made = 0 if study is None else len(search_names(study))
        left = max(0, spec.search.n_trials - made)
        echo(f"then [search]: {left} more trial(s) proposed by the {spec.search.sampler} sampler "
             f"(n_trials {spec.search.n_trials}, {made} made so far)")
