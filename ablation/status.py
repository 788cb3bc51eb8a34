"""Where a study's trials stand, read from the storage alone: what `ablate status` prints and
`status --json` gives, computed here once so that the command line only prints it.

Nothing here loads torch or transformers: `status` answers in a second while trials train.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property, partial
from typing import TYPE_CHECKING, Any

from .errors import some_of
from .records import INTERRUPTED, TrialRecord, is_search_variant, latest_by_key, load_records

if TYPE_CHECKING:
    import optuna

    from .config import ExperimentSpec
    from .queue import PlanningRun, StudyNotFound

SUMMARY_STATES = ("complete", "pruned", "running", "queued", "not queued yet", "failed",
                  "interrupted", "process gone")  # the order `status` sums them up in


@dataclass(frozen=True)
class StatusSummary:
    """How many of the study's trials (variant x seed, their latest attempt) stand where, what
    the file has that the storage has not seen and the other way round, and what to type next,
    so that a reader need not count rows, nor guess that a failed or interrupted trial trains
    again."""

    counts: dict[str, int]  # by state, as `status` names them; only those with trials
    unqueued: list[str]  # the file's trials the storage has not seen
    gone: list[str]  # variants the study holds that the file no longer has
    earlier: int  # attempts that a later one of the same trial replaced
    next_command: str | None  # `ablate run` where trials have no result and none runs
    retry_command: str | None  # `--retry-failed`, where the failed ones are not all of them
    file_name: str  # the experiment file's name, for "not in FILE now"
    # The storage has heartbeats, so `run` trains a trial whose process is gone again (on a
    # journal its row gives the --rerun that does).
    gone_trains_again: bool = True
    # [search] proposals that took an earlier trial's result, not trained: no attempt of theirs
    repeated: int = 0
    # variants whose stored trials were given other changes than the file now says (edited
    # while a run trains, or since): {variant: ("run" or "queued", stored, file)}; `run`
    # refuses the file so, hence no `next`
    changed: dict[str, tuple[str, str, str]] = field(default_factory=dict)
    run_command: str = ""  # `ablate run FILE` with the study's --sets
    rerun_commands: dict[str, str] = field(default_factory=dict)  # variant: its `--rerun`
    training: set[str] = field(default_factory=set)  # changed variants a live process trains now

    @property
    def trials(self) -> int:
        return sum(self.counts.values())

    @property
    def to_train(self) -> int:
        return _without_result(self.counts, self.gone_trains_again)

    def ordered(self) -> list[tuple[str, int]]:
        """(state, count), the known states in `status`'s order, any other after them."""
        known = [(k, self.counts.get(k, 0)) for k in SUMMARY_STATES]
        return known + [(k, n) for k, n in self.counts.items() if k not in SUMMARY_STATES]

    def lines(self) -> list[str]:
        parts = [f"{n} {k}" for k, n in self.ordered() if n]
        again = f"; {self.earlier} earlier attempt(s) not counted" if self.earlier else ""
        again += (f"; {self.repeated} search proposal(s) that repeated an earlier trial's "
                  "parameters, not trained" if self.repeated else "")
        lines = [f"{self.trials} trial(s): {', '.join(parts)}{again}"]
        if self.unqueued:
            lines.append(f"not queued yet: {some_of(self.unqueued, STATUS_NAMED)}")
        if self.gone:
            lines.append(f"not in {self.file_name} now: {some_of(self.gone, STATUS_NAMED)} (their results "
                         "still count in the report)")
        for variant, (state, then, now) in self.changed.items():
            rerun = f"`{self.rerun_commands[variant]}`"
            if state == "run":
                when, way = "its results are of the stored changes", f"{rerun} trains it again"
            elif variant in self.training and self.gone_trains_again:  # `--rerun` is refused
                when = "its trials train and report what they were queued with"
                way = f"once they are done, {rerun} trains it again"
            elif variant in self.training:  # no heartbeats: `--rerun` takes it as abandoned
                when = "its trials train and report what they were queued with"
                way = (f"{rerun} takes them as abandoned (this storage has no heartbeats to tell "
                       "a live process from a dead one) and trains it instead")
            else:  # `--rerun` fails the queued attempts and queues the file's recipe
                when = "its queued trials would train and report what they were queued with"
                way = f"{rerun} trains it instead"
            lines.append(f"changed in {self.file_name} since it was {state}: {variant} ({then} → "
                         f"{now}): {when}, and `{self.run_command}` refuses the file as it is; "
                         f"{way} as the file says (the old attempts kept as superseded)")
        if self.next_command:
            retry = (f" (`{self.retry_command}`: the failed ones alone)" if self.retry_command
                     else "")
            lines.append(f"next: `{self.next_command}` trains the {self.to_train} without a "
                         f"result{retry}")
        return lines

    def to_json(self) -> dict[str, Any]:
        """Every known state with its count, zero included: a script reads them without a
        default. Names as in `status`, spaces made underscores (`not_queued_yet`)."""
        return {"trials": self.trials,
                "states": {k.replace(" ", "_"): n for k, n in self.ordered()},
                "earlier_attempts": self.earlier, "repeated_proposals": self.repeated,
                "not_queued_yet": self.unqueued,
                "not_in_file": self.gone, "without_result": self.to_train,
                "next": self.next_command, "retry_failed": self.retry_command,
                "changed": {variant: {"state": state, "stored": then, "file": now}
                            for variant, (state, then, now) in self.changed.items()}}


# `status` names this many trials (or variants) not queued yet, or no longer in the file, then
# counts them: a seed added to a study of 61 variants listed 61 keys on one line. --json has all.
STATUS_NAMED = 10


def _without_result(counts: dict[str, int], gone_trains_again: bool) -> int:
    kinds = ["failed", "interrupted", "not queued yet", "queued"]
    if gone_trains_again:
        kinds.append("process gone")
    return sum(counts.get(k, 0) for k in kinds)


def summarize(spec: ExperimentSpec, records: list[TrialRecord], stale: set[int],
              heartbeats: bool = True) -> StatusSummary:
    """The sum under `status`'s table. `stale`: RUNNING trials whose process is gone;
    `heartbeats`: the storage has them, so `run` trains a trial whose process is gone again."""
    from .sweep._plan import changed_variants, with_left_out_sets
    from .variants import expand, trained_recipe

    latest = list(latest_by_key(records).values())
    counts: dict[str, int] = {}
    for r in latest:
        if r.number in stale:
            kind = "process gone"
        elif r.state == "FAIL":
            kind = "interrupted" if r.error == INTERRUPTED else "failed"
        else:
            kind = {"COMPLETE": "complete", "PRUNED": "pruned", "RUNNING": "running",
                    "WAITING": "queued"}.get(r.state, r.state.lower())
        counts[kind] = counts.get(kind, 0) + 1
    stored = {r.key for r in records}
    in_file = expand(spec)
    unqueued = [t.key for t in in_file if t.key not in stored]
    if unqueued:
        counts["not queued yet"] = len(unqueued)
    variants = {t.variant for t in in_file}
    # [search] trials are never in the file's trials: gone only where it has no [search] now
    gone = sorted({r.variant for r in latest if r.variant not in variants
                   and not (is_search_variant(r.variant) and spec.search is not None)})
    # as `run` compares them: by what they train, the superseded left out, with the --sets of
    # the run that queued them (status FILE without them: `next` gives them, and run takes them)
    compared = with_left_out_sets(spec, spec.run_sets) or spec
    changed, _ = changed_variants([r for r in records if not r.superseded], expand(compared),
                                  partial(trained_recipe, compared))
    next_command = retry_command = None
    without_result = _without_result(counts, heartbeats)
    if without_result and not counts.get("running") and not changed:
        next_command = spec.command("run")
        if counts.get("failed") and without_result > counts["failed"]:
            retry_command = spec.command("run", "--retry-failed")
    repeated = sum(1 for r in records if r.repeat_of is not None)
    return StatusSummary(counts, unqueued, gone, len(records) - repeated - len(latest),
                         next_command, retry_command, spec.path.name, heartbeats, repeated,
                         changed, spec.command("run"),
                         {v: spec.command("run", "--rerun", v) for v in changed},
                         {r.variant for r in latest if r.state == "RUNNING" and r.number not in stale
                          and r.variant in changed})


@dataclass(frozen=True)
class StudyStatus:
    """A study's trials as the storage holds them (superseded attempts included), which of the
    running ones lost their process, and how long since each running one last beat; or, for a
    study not made yet, the first `ablate run` that is planning it."""

    spec: ExperimentSpec  # with the study's run settings: its commands run what it ran
    metric: str  # what the trials' values are
    records: list[TrialRecord]
    stale: set[int]  # RUNNING in the storage, but their process is gone
    heard: dict[int, float]  # seconds since each running trial's last heartbeat, by number
    heartbeats: bool  # the storage has them (not a journal)
    planning: PlanningRun | None = None

    @cached_property
    def latest(self) -> set[int]:
        """The numbers of each trial's latest attempt."""
        return {r.number for r in latest_by_key(self.records).values()}

    @property
    def failed(self) -> bool:
        """A latest attempt failed or lost its process: `status` exits 1, as `run` would."""
        return any(r.state == "FAIL" or r.number in self.stale
                   for r in self.records if r.number in self.latest)

    def summary(self) -> StatusSummary:
        return summarize(self.spec, self.records, self.stale, self.heartbeats)

    def note(self, record: TrialRecord) -> str:
        """The row's last column: the error, where a running trial is and how far it got, what
        to do about one whose process is gone."""
        from .queue import paused_here

        spec = self.spec
        note = record.error or ""
        if record.state == "RUNNING":
            note = ", ".join(([f"in {record.worker}"] if record.worker else [])
                             + progress_words(record, self.heard.get(record.number)))
        log = spec.output_dir / "trials" / record.key / "trial.log"  # its latest attempt's
        if (record.state == "FAIL" and record.number in self.latest
                and record.error != INTERRUPTED and log.is_file()):
            note += f" (log: {log})"  # the traceback the one line leaves out, as `run` points to
        if record.repeat_of is not None:
            names = {r.number: r.variant for r in self.records}
            note = (f"proposed the parameters of {names.get(record.repeat_of, record.repeat_of)}: "
                    "its result, not trained again")
        if record.pruned_at_step is not None:
            note = f"pruned at step {record.pruned_at_step}"
        if record.number in self.stale:
            again = (f"`{spec.command('run')}` runs it again" if self.heartbeats
                     else f"`{spec.command('run', '--rerun', record.variant)}` runs it again")
            if paused_here(record.worker):  # stopped, not dead: its heartbeats stopped all the same
                note = (f"was in {record.worker}, which is paused (Ctrl+Z) and sends no heartbeats: "
                        f"`fg` it to go on, or {again} and the paused one stops when it wakes")
            else:
                note = ((f"was in {record.worker}: " if record.worker else "")
                        + f"its process is gone; {again}")
        return note

    def to_json(self) -> dict[str, Any]:
        """`status --json`: every trial, superseded ones included, in plain JSON types, and the
        sum `status` prints under its table (`summary`; null while the first run plans)."""
        from .config import shown_storage

        spec = self.spec
        return {"study": spec.name, "storage": shown_storage(spec.experiment.storage),
                "metric": self.metric,
                "planning": self.planning.to_json() if self.planning is not None else None,
                "trials": [{"number": r.number, "key": r.key, "variant": r.variant, "seed": r.seed,
                            "state": r.state,
                            "value": (r.value if r.value is not None and math.isfinite(r.value)
                                      else None),
                            "error": r.error, "superseded": r.superseded, "worker": r.worker,
                            "process_gone": r.number in self.stale,
                            "pruned_at_step": r.pruned_at_step, "repeat_of": r.repeat_of,
                            "progress": progress_json(r, self.heard)}
                           for r in self.records],
                "summary": None if self.planning is not None else self.summary().to_json()}


def study_status(spec: ExperimentSpec) -> StudyStatus:
    """The study's status from its storage; a study not made yet whose first run is planning:
    that run (no study and none planning it: refused as never run, StudyNotFound)."""
    from .queue import has_heartbeats, last_heard_s, stale_numbers
    from .records import with_run_sets

    study, planning = study_or_planning(spec)
    if study is None:
        return StudyStatus(spec, spec.experiment.metric, [], set(), {}, True, planning)
    records = load_records(study)
    heard = last_heard_s(study) if any(r.state == "RUNNING" for r in records) else {}
    return StudyStatus(with_run_sets(spec, study),
                       study.user_attrs.get("metric") or spec.experiment.metric, records,
                       stale_numbers(study), heard, has_heartbeats(study))


def study_or_planning(spec: ExperimentSpec) -> tuple[optuna.Study | None, PlanningRun | None]:
    """(the stored study, None); or (None, the `run` planning it) where there is no study yet but
    its first run plans (loading and checking its data, after which it makes the study). No study
    and no run planning it: refused as never run."""
    from .queue import StudyNotFound, open_study, planning_run

    try:
        return open_study(spec, create=False), None
    except StudyNotFound as never_run:
        planning = planning_run(spec)
        if planning is None:
            raise not_run_here(spec, never_run) from None
        return None, planning


def not_run_here(spec: ExperimentSpec, never_run: StudyNotFound) -> StudyNotFound:
    """The file's study is in another folder (a relative output_dir, run from elsewhere; a
    renamed file): where it is, as `run` says, not "run it first", which trains it again."""
    from .queue import StudyNotFound
    from .sweep import relative_storage_hint, study_elsewhere

    elsewhere = study_elsewhere(spec)
    if elsewhere is None:  # or run from a folder neither the file's nor this one: where it looked
        hint = relative_storage_hint(spec)
        return StudyNotFound(f"{never_run} — {hint}") if hint else never_run
    return StudyNotFound(f"{str(never_run).split(';')[0]}, but {elsewhere}")


def still_planning(planning: PlanningRun) -> str:
    """What a study's first run is doing while it plans, naming it (`host:pid`, since when)."""
    return (f"its first `ablate run` ({planning.named()}) is still planning (loading, checking "
            "and tokenizing the data); nothing has trained yet")


def progress_words(record: TrialRecord, heard_s: float | None) -> list[str]:
    """A running trial's step and how long since its process last beat, as its heartbeats
    stored them (`step 120 of 400`, `last heard 8 s ago`); none before training has begun, nor
    of a trial trained on several processes, nor without heartbeats (a journal)."""
    from .progress import fmt_duration

    words = []
    if record.progress and record.progress.get("max_steps"):
        words.append(f"step {record.progress['step']} of {record.progress['max_steps']}")
    if heard_s is not None:
        words.append(f"last heard {fmt_duration(heard_s)} ago")
    return words


def progress_json(record: TrialRecord, heard: dict[int, float]) -> dict[str, Any] | None:
    """A RUNNING trial's `{"step", "max_steps", "last_heard_s"}` (each null where its heartbeats
    have not said it); null for the others."""
    if record.state != "RUNNING":
        return None
    progress = record.progress or {}
    last = heard.get(record.number)
    return {"step": progress.get("step"), "max_steps": progress.get("max_steps"),
            "last_heard_s": None if last is None else round(last, 1)}
