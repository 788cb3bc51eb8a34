"""What the terminal shows while a study runs.

`Lines` prints one plain line per event: the mode for logs, pipes, CI, worker processes and
`--quiet` (which leaves out the per-evaluation lines). `LiveTable` redraws a table of the trials
(name, seed, state, step, current metric, ETA) on a terminal, with messages printed above it.
Both are callables taking a message line, so code that only has messages to say needs nothing
else; the training loop and the sweep also report steps, evaluations and trial states.
"""

from __future__ import annotations

import io
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import interrupts


class Lines:
    """One line per event (stdout by default)."""

    step_bars = False  # the Trainer's own step bar (tqdm) under the lines, on a terminal only

    def __init__(self, write: Callable[[str], None] = print, quiet: bool = False) -> None:
        self.quiet = quiet
        # Where lines can be printed above it: both on the terminal (through a pipe, `| tee`, a
        # line reaches it whenever tee writes it), and one process (the workers of `run
        # --workers N` would share the terminal's last line).
        # TERM=dumb: the bar under an evaluation's own moved the cursor up (`^[[A` there).
        self.step_bars = (not quiet and sys.stdout.isatty() and sys.stderr.isatty()
                          and not interrupts.started_by_run() and not dumb_terminal())
        self.write = _above_bars(write) if self.step_bars else write

    def __call__(self, line: str) -> None:
        self.write(line)

    def planned(self, trials: list[tuple[str, int]], proposals: int = 0) -> None:
        """The trials this invocation waits for: (key, seed); `proposals`: the [search] trials
        the sampler is still to propose, each a trial to come that has no name yet."""

    def trial_started(self, key: str, seed: int) -> None:
        """A trial begins training in this process."""

    def step(self, key: str, step: int, max_steps: int) -> None:
        """An optimizer step is done."""

    def evaluated(self, key: str, step: int, max_steps: int, epoch: float, eval_loss: float,
                  metric: str, value: float) -> None:
        if not self.quiet:
            selected = "" if metric == "eval_loss" else f"  {metric} {value:.4f}"
            self.write(f"  {key}  step {step}/{max_steps}  epoch {epoch:.2f}  eval_loss "
                       f"{eval_loss:.4f}{selected}")

    def trial_ended(self, key: str, state: str, value: float | None = None) -> None:
        """COMPLETE, FAIL or PRUNED (the sweep prints its own line for each)."""

    def trial_repeated(self, key: str, seed: int, value: float) -> None:
        """A search proposal of an earlier trial's parameters took its result, untrained."""

    def close(self) -> None:
        """The study is over."""


def dumb_terminal() -> bool:
    """A terminal that cannot move its cursor (TERM=dumb, as in Emacs' shell): rich's own test."""
    return os.environ.get("TERM", "").lower() in ("dumb", "unknown")


def _above_bars(write: Callable[[str], None]) -> Callable[[str], None]:
    """`write`, with the step bar on the terminal's last line cleared first and drawn again
    after: a line printed onto the bar was glued to it, then written over by its next redraw."""

    def written(line: str) -> None:
        from tqdm import tqdm

        with tqdm.external_write_mode(file=sys.stdout):
            write(line)

    return written


def as_progress(echo: Callable[[str], None]) -> Lines:
    """A plain message callable (tests, library callers) as a Lines that only forwards messages."""
    return echo if isinstance(echo, Lines) else Lines(echo)


@dataclass
class TrialRow:
    key: str
    seed: int
    state: str = "waiting"
    step: int = 0
    max_steps: int = 0
    value: float | None = None
    started: float | None = None
    ended: float | None = None
    resumed_at: int | None = 0  # the step the pace counts from: this attempt's first; None
    # until its first step says
    paced_since: float | None = None  # when that step was done (None: `started`)

    def eta_s(self, now: float) -> float | None:
        """Seconds left, from the pace of this attempt's steps since its first (None until a step
        follows it): a trial resumed at step 500 has not trained 510 steps in its first seconds,
        and the model's loading before step 1 is no step's time (at step 1 of 84 a 30 s trial
        said 4 min)."""
        if self.state != "running" or self.resumed_at is None or self.started is None:
            return None
        done = self.step - self.resumed_at
        if done <= 0:
            return None
        since = self.started if self.paced_since is None else self.paced_since
        return (now - since) / done * (self.max_steps - self.step)


COMPLETE = ("done", "stopped early")  # a trial complete: every step, or early stopping's


@dataclass
class Board:
    """The state a live table shows."""

    metric: str
    rows: dict[str, TrialRow] = field(default_factory=dict)
    planned: bool = False  # the plan is made: no rows then means nothing to train
    proposals: int = 0  # [search] trials still to be proposed: trials to come, not yet rows

    def row(self, key: str, seed: int = 0) -> TrialRow:
        if key not in self.rows and self.planned and self.proposals:
            self.proposals -= 1  # a proposal, now named (the plan named every other trial)
        return self.rows.setdefault(key, TrialRow(key, seed))

    def study_eta_s(self, now: float) -> float | None:
        """Running trials' own ETAs plus the waiting ones at the mean duration of those done; a
        running trial before its first step has no pace yet and counts as a waiting one. None
        while a trial to come has nothing to be estimated from (it said `0 s` there), and once
        none is left (the last table's `study ETA 0 s` told nothing)."""
        durations = [r.ended - r.started for r in self.rows.values() if r.state in COMPLETE
                     and r.started is not None and r.ended is not None]
        running = [r.eta_s(now) for r in self.rows.values() if r.state == "running"]
        waiting = (sum(r.state == "waiting" for r in self.rows.values()) + self.proposals
                   + running.count(None))
        if (waiting and not durations) or not (waiting or running):
            return None
        mean = sum(durations) / len(durations) if durations else 0.0
        return sum(eta for eta in running if eta is not None) + waiting * mean

    def table(self, now: float, height: int | None = None, width: int | None = None) -> Any:
        """The title and a row per trial; within `height` lines of `width` columns (a
        terminal's), the rows around the running trial, those above and below it counted in a
        line each. A trial name wider than its column is folded over lines, not cut short:
        cut, names that differ at their end looked alike."""
        from rich.table import Table
        from rich.text import Text

        done = sum(r.state in (*COMPLETE, "failed", "pruned", "repeated")
                   for r in self.rows.values())
        eta = self.study_eta_s(now)
        title = (f"trials: {done}/{len(self.rows) + self.proposals} finished"
                 + (f" · study ETA {fmt_duration(eta)}" if eta is not None else "")
                 if self.rows else "trials: none to train" if self.planned
                 else "trials: planning the study")  # before the plan names any
        table = Table(title=title, title_justify="left")
        columns = [("trial", "left"), ("seed", "right"), ("state", "left"), ("step", "right"),
                   (self.metric, "right"), ("ETA", "right")]
        cells = {r.key: _cells(r, now) for r in self.rows.values()}
        name_width, extra = None, 0
        if width is not None:  # what the other columns leave the trial's (rich's layout)
            widths = [max([len(name), *(len(row[i]) for row in cells.values())])
                      for i, (name, _) in enumerate(columns[1:])]
            name_width = width - TABLE_RULES - sum(widths)
            if name_width < NARROW_NAME:  # a narrow pane: the seed is in the trial's name too
                del columns[1]
                cells = {key: row[1:] for key, row in cells.items()}
                name_width += widths[0] + 3  # its width, padding and rule
            name_width = max(1, name_width)
            extra = -(-len(title) // width) - 1  # a title wider than the terminal wraps
        for name, justify in columns:  # the other cells on one line each: a row's lines are
            # its name's (a wrapped `3 min 48` over ` s` made the table taller than counted)
            table.add_column(name, justify=justify,  # type: ignore[arg-type]
                             overflow="fold" if name == "trial" else "ellipsis",
                             no_wrap=name != "trial")
        above, shown, below = self._in_sight(
            None if height is None else height - TABLE_FRAME - extra,
            lambda r: 1 if name_width is None else -(-len(r.key) // name_width))
        blank = [""] * (len(columns) - 1)
        if above:  # one line, whatever its width
            table.add_row(Text(_more(above), no_wrap=True, overflow="ellipsis"), *blank)
        for r in shown:
            table.add_row(r.key, *cells[r.key])
        if below:
            table.add_row(Text(_more(below), no_wrap=True, overflow="ellipsis"), *blank)
        return table

    def _in_sight(self, lines: int | None, lines_of: Callable[[TrialRow], int]
                  ) -> tuple[list[TrialRow], list[TrialRow], list[TrialRow]]:
        """(above, shown, below): every row where `lines` hold them; else the running trial (or
        the next to run), the one before it and as many after it as fit, with a line left for
        each side's count."""
        rows = list(self.rows.values())
        if lines is None or sum(map(lines_of, rows)) <= lines:
            return [], rows, []
        budget = max(1, lines - 2)
        focus = next((i for i, r in enumerate(rows) if r.state == "running"),
                     next((i for i, r in enumerate(rows) if r.state == "waiting"), len(rows) - 1))
        start, end, used = focus, focus + 1, lines_of(rows[focus])  # the running one, whatever
        if start > 0 and used + lines_of(rows[start - 1]) <= budget:  # its height, then the one
            start -= 1  # before it
            used += lines_of(rows[start])
        while end < len(rows) and used + lines_of(rows[end]) <= budget:
            used += lines_of(rows[end])
            end += 1
        while start > 0 and used + lines_of(rows[start - 1]) <= budget:  # the end reached
            start -= 1
            used += lines_of(rows[start])
        return rows[:start], rows[start:end], rows[end:]


def _cells(row: TrialRow, now: float) -> tuple[str, str, str, str, str]:
    """A trial's seed, state, step, metric and ETA as the table shows them."""
    step = f"{row.step}/{row.max_steps}" if row.max_steps else ""
    value = "" if row.value is None else f"{row.value:.4f}"
    eta = row.eta_s(now)
    return str(row.seed), row.state, step, value, "" if eta is None else fmt_duration(eta)


TABLE_RULES = 6 * 2 + 7  # the columns' padding (a space each side) and the 7 vertical rules
TABLE_FRAME = 6  # lines besides the rows: title, header (3), bottom border, the cursor's below
NARROW_NAME = 12  # a trial column narrower than this on a terminal: the table leaves out the seed


def _more(rows: list[TrialRow]) -> str:
    """`… 24 more (23 done, 1 failed)`: the rows a table too tall for the terminal leaves out."""
    states = {state: sum(r.state == state for r in rows) for state in dict.fromkeys(
        r.state for r in rows)}
    return f"… {len(rows)} more ({', '.join(f'{n} {state}' for state, n in states.items())})"


def fmt_duration(seconds: float) -> str:
    """`7 s`, `2 min 47 s`; from an hour on `6 h 17 min` (it read `377 min 13 s`): hours and
    minutes, the seconds no one reads there left out."""
    seconds = max(0, round(seconds))
    if seconds >= 3600:
        hours, minutes = divmod(round(seconds / 60), 60)
        return f"{hours} h {minutes:02d} min"
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


class LiveTable(Lines):
    """A table of the trials, redrawn in place on a terminal; messages print above it."""

    def __init__(self, metric: str) -> None:
        from rich.console import Console
        from rich.live import Live

        super().__init__(quiet=True)
        self.step_bars = False
        self.board = Board(metric)
        self.console = Console()
        self.activity = ""  # a progress bar's latest redraw (datasets' tokenizing), under the table
        # stderr is ours, not rich's proxy: that held a bar's redraws until its last newline,
        # then printed each as a line.
        self.live = Live(self.board.table(time.monotonic()), console=self.console,
                         refresh_per_second=4, transient=False, redirect_stderr=False)
        self.live.start()
        self.stderr = sys.stderr
        if sys.stderr.isatty():  # `2> warnings.log`: what goes there stays there
            sys.stderr = AboveTable(self, sys.stderr)

    def _redraw(self, every_row: bool = False, now: bool = False) -> None:
        """Within the terminal's height while live (rich cuts what is taller at the bottom); the
        last table, kept on the terminal, with every row. `now`: drawn at once, not at the next
        of rich's 4 refreshes a second."""
        from rich.console import Group
        from rich.text import Text

        if every_row:  # laid out for the width all the same (40 columns left no trial's name)
            self.live.update(self.board.table(time.monotonic(), width=self.console.size.width))
            return
        height = self.console.size.height - bool(self.activity)
        table = self.board.table(time.monotonic(), height, self.console.size.width)
        shown = Group(table, Text.from_ansi(self.activity, no_wrap=True, overflow="ellipsis")
                      ) if self.activity else table
        if now:
            self.live.update(shown, refresh=True)
        else:
            self.live.update(shown)

    def above(self, line: str) -> None:
        """A line written to stderr (a warning, a finished bar), printed above the table."""
        from rich.text import Text

        self.console.print(Text.from_ansi(line), highlight=False)

    def show_activity(self, text: str, now: bool = False) -> None:
        if text != self.activity or now:
            self.activity = text
            self._redraw(now=now)

    def __call__(self, line: str) -> None:
        self.console.print(line, highlight=False, markup=False)

    def planned(self, trials: list[tuple[str, int]], proposals: int = 0) -> None:
        for key, seed in trials:
            self.board.row(key, seed)
        self.board.planned, self.board.proposals = True, proposals
        self._redraw()

    def trial_started(self, key: str, seed: int) -> None:
        row = self.board.row(key, seed)
        row.state, row.started, row.step, row.value = "running", time.monotonic(), 0, None
        row.resumed_at = row.paced_since = None  # until its first step says where it starts
        self._redraw()

    def step(self, key: str, step: int, max_steps: int) -> None:
        row = self.board.row(key)
        if row.resumed_at is None:  # this attempt's first step: the pace counts from it (the
            # steps before it were restored; the time before it loaded the model and data)
            row.resumed_at, row.paced_since = step, time.monotonic()
        row.step, row.max_steps = step, max_steps
        self._redraw()

    def evaluated(self, key: str, step: int, max_steps: int, epoch: float, eval_loss: float,
                  metric: str, value: float) -> None:
        row = self.board.row(key)
        row.step, row.max_steps, row.value = step, max_steps, value
        self._redraw()

    def trial_ended(self, key: str, state: str, value: float | None = None) -> None:
        row = self.board.row(key)
        row.state = {"COMPLETE": "done", "FAIL": "failed", "PRUNED": "pruned"}.get(state, state)
        if row.state == "done" and row.step < row.max_steps:  # `done 6/28` did not say why
            row.state = "stopped early"  # by early stopping (pruning's trials end PRUNED)
        row.ended = time.monotonic()
        if value is not None:
            row.value = value
        self._redraw()

    def trial_repeated(self, key: str, seed: int, value: float) -> None:
        row = self.board.row(key, seed)
        row.state, row.value = "repeated", value
        self._redraw()

    def close(self) -> None:
        for row in self.board.rows.values():
            if row.state == "running":  # the run ends under it (Ctrl+C, an error): not training
                row.state, row.ended = "interrupted", time.monotonic()
        self.activity = ""
        if isinstance(sys.stderr, AboveTable):
            sys.stderr.release()
            sys.stderr = self.stderr
        self._redraw(every_row=True)
        if not self.board.rows:  # nothing trained (all re-used): an empty table tells nothing
            self.live.transient = True
        self.live.stop()


class AboveTable(io.TextIOBase):
    """stderr while the live table is on the terminal, written as a terminal would show it: a
    finished line above the table; a line still being redrawn with carriage returns (a progress
    bar) as its latest redraw, under the table, until its newline."""

    def __init__(self, table: LiveTable, terminal: Any) -> None:
        super().__init__()
        self.table, self.terminal, self.pending = table, terminal, ""
        self.released = False

    def write(self, text: str) -> int:
        if self.released:  # held on to by something (a bar) past the table: the terminal's
            return self.terminal.write(text)
        *finished, self.pending = (self.pending + text).split("\n")
        activity = self.pending.rsplit("\r", 1)[-1]
        # A line printed above redraws the table as last drawn: drawn now without the finished
        # bar, not with it until the next refresh.
        self.table.show_activity(activity, now=bool(finished))
        for line in finished:
            self.table.above(line.rsplit("\r", 1)[-1])
        return len(text)

    def release(self) -> None:
        """The table is closing: a line never ended (a bar cut short) is printed, not lost, and
        what comes later goes to the terminal as it is."""
        rest = self.pending.rsplit("\r", 1)[-1]
        self.pending, self.released = "", True
        if rest.strip():
            self.table.above(rest)

    def flush(self) -> None:
        if self.released:
            self.terminal.flush()

    def isatty(self) -> bool:
        return self.terminal.isatty()

    def fileno(self) -> int:  # a progress bar sizes itself to the terminal's width
        return self.terminal.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.terminal, "encoding", "utf-8")


class CountLine:
    """`labelled 16,384 of 200,000 texts (8 %, 1,620/s)` on stderr, redrawn in place at most twice
    a second, while predict or evaluate works through a large input (minutes, with nothing else to
    show); `labelled 16,384 texts (1,620/s)` where the total is not known (predict's lines, read
    as they come). Only where stderr is a terminal: a pipe or a log gets no such lines. `clear`
    wipes it before output is written to the same terminal, and when the command ends."""

    def __init__(self, verb: str, total: int | None, unit: str,
                 share: Callable[[int], float | None] | None = None) -> None:
        """`share`: without a total, the part of the input that a count of units makes up, where
        it can be told (predict's files, by their bytes: `(8 % of the input, 1,620/s)`)."""
        self.verb, self.total, self.unit, self.share = verb, total, unit, share
        self.done, self.drawn_at = 0, 0.0
        self.first: tuple[float, int] | None = None  # when the first batch was done, and its size
        self.on = sys.stderr is not None and sys.stderr.isatty()
        self.showing = False

    def __call__(self, count: int) -> None:
        self.done += count
        now = time.monotonic()
        if self.first is None:  # the rate starts here, not at the model's loading
            self.first = (now, count)
        finished = self.total is not None and self.done >= self.total
        if self.on and (now - self.drawn_at >= 0.5 or finished):
            since, counted = now - self.first[0], self.done - self.first[1]
            said = [f"{100 * self.done // max(self.total, 1)} %"] if self.total is not None else []
            part = self.share(self.done) if self.share is not None and not said else None
            said += [f"{int(100 * part)} % of the input"] if part is not None else []
            said += [f"{counted / since:,.0f}/s"] if since >= 1 else []
            of = f" of {self.total:,}" if self.total is not None else ""
            shown = f" ({', '.join(said)})" if said else ""
            sys.stderr.write(f"\r{self.verb} {self.done:,}{of} {self.unit}{shown}\x1b[K")
            sys.stderr.flush()
            self.drawn_at, self.showing = now, True

    def restart(self, verb: str) -> None:
        """The same line counting again from 0 under `verb` (evaluate --checkpoints: the next
        checkpoint's rows), at its own rate: a line, not one per checkpoint, for `clear` to wipe."""
        self.verb, self.done, self.drawn_at, self.first = verb, 0, 0.0, None

    def clear(self) -> None:
        if self.showing:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()
            self.showing = False
