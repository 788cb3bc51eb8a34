"""What the terminal shows: plain lines (logs, pipes, --quiet) and the live table of trials."""

from __future__ import annotations

import io
import os
import pty
import re
import select
import subprocess
import sys

import pytest

from ablation import cli
from ablation.progress import Board, fmt_duration


@pytest.fixture(autouse=True)
def _stderr_put_back(monkeypatch: pytest.MonkeyPatch) -> None:
    """A LiveTable takes stderr over until it is closed; a test's table may not be."""
    monkeypatch.setattr(sys, "stderr", sys.stderr)


def test_the_board_shows_each_trial_with_its_state_step_metric_and_eta():
    from rich.console import Console

    board = Board("macro_f1")
    done, running = board.row("baseline-s42", 42), board.row("baseline_bs32-s42", 42)
    board.row("baseline_lr-s42", 42)  # still waiting
    done.state, done.started, done.ended, done.value = "done", 0.0, 100.0, 0.75
    running.state, running.started, running.step, running.max_steps, running.value = \
        "running", 100.0, 25, 100, 0.5
    console = Console(record=True, width=120)
    console.print(board.table(now=150.0))
    text = console.export_text()
    # running: 50 s for 25 of 100 steps → 150 s left; the study: that, plus one waiting trial at
    # the mean duration of those done (100 s)
    assert "trials: 1/3 finished · study ETA 4 min 10 s" in text
    lines = {line.split()[1]: line for line in text.splitlines() if "-s42" in line}
    assert lines["baseline-s42"].split()[3:6] == ["42", "│", "done"]
    assert "25/100" in lines["baseline_bs32-s42"] and "0.5000" in lines["baseline_bs32-s42"]
    assert "2 min 30 s" in lines["baseline_bs32-s42"]
    assert "waiting" in lines["baseline_lr-s42"]
    assert fmt_duration(59.6) == "1 min 00 s" and fmt_duration(7) == "7 s"
    console = Console(record=True, width=120)
    console.print(Board("macro_f1").table(now=0.0))  # the first frame, before the plan
    assert "trials: planning the study" in console.export_text()


def test_a_duration_of_an_hour_or_more_is_in_hours_and_minutes():
    """970 steps to go at 23.3 s a step: the ETA read `377 min 13 s`."""
    assert fmt_duration(22633.3) == "6 h 17 min"
    assert fmt_duration(3599) == "59 min 59 s" and fmt_duration(3600) == "1 h 00 min"
    assert fmt_duration(7190) == "2 h 00 min"  # rounded to a minute
    assert fmt_duration(30 * 3600 + 65) == "30 h 01 min"


def test_a_table_taller_than_the_terminal_keeps_the_running_trial_in_sight():
    """42 trials on a 24-line terminal: rich cut the table at the bottom ("..."), and once the
    trials above filled the screen the running one was below the cut; the title moved, nothing
    else did. The rows around the running trial are shown, the others counted in one line each."""
    from rich.console import Console

    board = Board("macro_f1")
    for number in range(42):
        row = board.row(f"baseline_lr{number:02d}-s42", 42)
        if number < 25:
            row.state, row.started, row.ended, row.value = "done", 0.0, 10.0, 0.5
    board.rows["baseline_lr03-s42"].state = "failed"
    running = board.rows["baseline_lr25-s42"]
    running.state, running.started, running.step, running.max_steps = "running", 0.0, 3, 4
    running.resumed_at = 0
    console = Console(record=True, width=80, height=24)
    console.print(board.table(now=5.0, height=24))
    lines = console.export_text().splitlines()
    assert len(lines) <= 24 - 1  # and the cursor's line below it
    assert "baseline_lr25-s42" in "".join(lines) and "3/4" in "".join(lines)
    assert lines[0].startswith("trials: 25/42 finished")  # the title counts every trial
    text = "\n".join(lines)
    assert "… 24 more (23 done, 1 failed)" in text
    assert "… 2 more (2 waiting)" in text
    console = Console(record=True, width=80)
    console.print(board.table(now=5.0))  # no height: every row (the last table, kept on screen)
    assert "baseline_lr00-s42" in console.export_text() and "more" not in console.export_text()


def test_trial_names_too_long_for_the_terminal_are_folded_not_cut_to_look_alike():
    """On 80 columns the trial column had 23 characters: baseline_warmup_ratio_0.1-s42 and
    baseline_warmup_ratio_0.2-s42 both showed as `baseline_warmup_ratio_…`. A name is folded
    over lines of its cell instead, and the rows counted for the terminal's height by the lines
    they take."""
    from rich.console import Console

    board = Board("macro_f1")
    for ratio in range(1, 31):
        board.row(f"baseline_warmup_ratio_0.{ratio:02d}-s42", 42)
    running = board.rows["baseline_warmup_ratio_0.20-s42"]
    running.state, running.started, running.step, running.max_steps = "running", 0.0, 30, 1000
    running.resumed_at, running.value = 0, 0.5
    console = Console(record=True, width=80, height=24)
    console.print(board.table(now=700.0, height=24, width=80))
    lines = console.export_text().splitlines()
    assert len(lines) <= 24 - 1
    text = "".join(line.split("│")[1].strip() for line in lines if line.startswith("│"))
    assert "…" not in text.replace("… ", "")  # only the counting lines' own
    for ratio in range(20, 24):  # the running trial and those after it, whole
        assert f"baseline_warmup_ratio_0.{ratio:02d}-s42" in text
    assert "6 h 17 min" in "".join(lines)  # the running one's ETA: it is in sight


@pytest.mark.parametrize("width", [50, 56, 60, 64])
def test_a_narrow_terminal_s_table_fits_its_height_with_the_running_trial(width):
    """A 56-column pane (tmux, an editor's terminal) of 24 lines, 32 trials: the columns beside
    the trial's took more than the width left them, so rich folded the names over more lines than
    counted and wrapped the ETA (`3 min 48` over ` s`): the table came out taller than the
    terminal and rich cut it at the bottom, the running trial with it (at 50 columns 27 lines
    for 23). What is shown is measured as rich lays it out."""
    from rich.console import Console

    board = Board("macro_f1")
    for number in range(32):
        row = board.row(f"baseline_lr{number:02d}-s42", 42)
        if number < 20:
            row.state, row.started, row.ended, row.value = "done", 0.0, 10.0, 0.5
            row.step = row.max_steps = 140
    running = board.rows["baseline_lr21-s42"]
    running.state, running.started, running.step, running.max_steps = "running", 0.0, 3, 140
    running.resumed_at, running.value = 0, 0.4321
    console = Console(record=True, width=width, height=24)
    console.print(board.table(now=5.0, height=24, width=width))
    lines = console.export_text().splitlines()
    assert len(lines) <= 24 - 1
    cells = "".join(line.split("│")[1].strip() for line in lines if line.startswith("│"))
    assert "baseline_lr21-s42" in cells  # the running trial, whole
    running_line = next(line for line in lines if "running" in line)
    assert "3/140" in running_line and "0.4321" in running_line  # its cells not cut
    assert "3 min 48 s" in running_line  # nor wrapped


def test_a_resumed_trial_s_eta_counts_only_the_steps_this_attempt_trained(monkeypatch):
    """Resumed from a checkpoint at step 500 of 1000, its first 10 steps in 10 s: 490 s left
    (counting the restored 500 as done in those 10 s said 10 s)."""
    from ablation import progress

    class Live:  # rich's Live, without a terminal
        def __init__(self, *args, **kwargs):
            pass

        def start(self):
            pass

        def update(self, renderable):
            pass

    monkeypatch.setattr("rich.live.Live", Live)
    clock = [0.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: clock[0])
    table = progress.LiveTable("macro_f1")
    table.trial_started("baseline-s42", 42)
    row = table.board.rows["baseline-s42"]
    assert row.eta_s(now=5.0) is None  # no step yet
    for step in range(501, 511):  # the first at 1 s (the checkpoint loaded), then 1 s a step
        clock[0] = float(step - 500)
        table.step("baseline-s42", step, 1000)
    assert row.eta_s(now=10.0) == 490.0


def test_a_trial_s_first_eta_leaves_out_the_time_before_its_first_step(monkeypatch):
    """A real 30 s trial of 84 steps: 4 s loading the model and data before its first step, then
    0.3 s a step. At step 1 its ETA read 4 min 00 s (the loading counted as that step's time),
    and 2 min 10 s at step 3. From the steps since its first: no ETA at its first step, 24.6 s
    left at its second."""
    from ablation import progress

    monkeypatch.setattr("rich.live.Live", _FakeLive)
    clock = [0.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: clock[0])
    table = progress.LiveTable("macro_f1")
    table.planned([("baseline-s42", 42)])
    table.trial_started("baseline-s42", 42)
    row = table.board.rows["baseline-s42"]
    clock[0] = 4.0
    table.step("baseline-s42", 1, 84)
    assert row.eta_s(now=4.0) is None  # one step: no pace of its own yet
    for step in range(2, 4):
        clock[0] = 4.0 + 0.3 * (step - 1)
        table.step("baseline-s42", step, 84)
        assert row.eta_s(now=clock[0]) == pytest.approx(0.3 * (84 - step))
    table.close()


class _FakeLive:
    """rich's Live without a terminal: keeps what it was last given to show."""

    def __init__(self, renderable, *args, **kwargs):
        self.shown, self.transient = renderable, kwargs.get("transient", False)

    def start(self):
        pass

    def update(self, renderable, refresh=False):
        self.shown = renderable

    def stop(self):
        pass


def _last_frame(table) -> str:
    from rich.console import Console

    console = Console(record=True, width=120)
    console.print(table.live.shown)
    return console.export_text()


def test_a_progress_bar_under_the_live_table_is_one_line_redrawn_then_one_line_above(monkeypatch):
    """datasets' bar ("tokenizing train", on stderr) while the table is live: rich's stderr
    proxy held each redraw (`\\r`) until the bar's last newline, then printed every one of them
    as a line of its own: nothing while it ran, then 13 lines for 2 s of tokenizing."""
    from rich.console import Console

    from ablation import progress

    monkeypatch.setattr("rich.live.Live", _FakeLive)
    monkeypatch.setattr(sys, "stderr", _Terminal())  # stderr on the terminal, with the table
    table = progress.LiveTable("macro_f1")
    table.console = Console(record=True, file=io.StringIO(), width=100)
    table.planned([("baseline-s42", 42)])
    sys.stderr.write("\rtokenizing train:   0%|          | 0/50000")
    sys.stderr.write("\rtokenizing train:  48%|####8     | 24000/50000")
    frame = _last_frame(table).splitlines()
    assert frame[-1].startswith("tokenizing train:  48%")  # under the table, while it runs
    assert "tokenizing" not in table.console.export_text(clear=False)
    sys.stderr.write("\rtokenizing train: 100%|##########| 50000/50000\n")
    assert table.console.export_text().splitlines() == [
        "tokenizing train: 100%|##########| 50000/50000"]  # once, above the table
    assert "tokenizing" not in _last_frame(table)
    sys.stderr.write("WARNING ablation.tracking: offline\n")  # a logged line goes above too
    assert "WARNING ablation.tracking: offline" in table.console.export_text()
    table.close()
    assert not isinstance(sys.stderr, progress.AboveTable)  # the terminal's own again


def test_stderr_redirected_away_from_the_terminal_keeps_what_is_written_to_it(monkeypatch):
    """`ablate run FILE 2> warnings.log` on a terminal: the live table took stderr over and
    printed the warnings on the terminal, among the table's lines; the file stayed empty."""
    from ablation import progress

    monkeypatch.setattr(sys, "stdout", _Terminal())
    log = io.StringIO()  # a file: not a terminal
    monkeypatch.setattr(sys, "stderr", log)
    table = progress.LiveTable("macro_f1")
    try:
        assert table.console.is_terminal
        sys.stderr.write("WARNING ablation.tracking: offline\n")
    finally:
        table.close()
    assert log.getvalue() == "WARNING ablation.tracking: offline\n"
    assert "WARNING" not in sys.stdout.getvalue()


def test_a_trial_cut_short_by_ctrl_c_is_not_left_running_in_the_last_frame(monkeypatch):
    """Ctrl+C (or an error) ends the run while a trial trains: the table left on the terminal
    said that trial was still running, with an ETA, while `status` said it was interrupted."""
    from ablation import progress

    monkeypatch.setattr("rich.live.Live", _FakeLive)
    table = progress.LiveTable("macro_f1")
    table.planned([("baseline-s42", 42), ("baseline_bs32-s42", 42)])
    table.trial_started("baseline-s42", 42)
    for step in range(1, 11):
        table.step("baseline-s42", step, 28)
    table.close()  # what cmd_run does as KeyboardInterrupt leaves run_study
    row = next(line for line in _last_frame(table).splitlines() if "baseline-s42" in line)
    assert "interrupted" in row and "running" not in row
    assert row.split("│")[6].strip() == ""  # no ETA for a trial that is not training
    waiting = next(line for line in _last_frame(table).splitlines() if "baseline_bs32" in line)
    assert "waiting" in waiting  # queued: the next run trains it


def test_no_study_eta_before_a_trial_has_a_pace_to_estimate_from(monkeypatch):
    """A study's first trial loading its model, no step taken: the title said `study ETA 0 s`.
    A running trial without a pace counts as a waiting one: none yet, then the mean of those
    done."""
    from ablation import progress

    one = progress.Board("macro_f1")  # a study of one trial, loading its model
    one.row("baseline-s42", 42).state = "running"
    assert one.study_eta_s(now=5.0) is None
    monkeypatch.setattr("rich.live.Live", _FakeLive)
    clock = [0.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: clock[0])
    table = progress.LiveTable("macro_f1")
    table.planned([("baseline-s42", 42), ("baseline_bs32-s42", 42)])
    table.trial_started("baseline-s42", 42)
    clock[0] = 5.0
    table.step("baseline-s42", 1, 28)  # its first step: no pace yet (nothing since it)
    assert "ETA" not in _last_frame(table).splitlines()[0]
    clock[0] = 10.0
    table.step("baseline-s42", 2, 28)  # 5 s a step, 26 to go; the other one still unknown
    assert "ETA" not in _last_frame(table).splitlines()[0]
    clock[0] = 100.0
    table.trial_ended("baseline-s42", "COMPLETE", 0.5)
    table.trial_started("baseline_bs32-s42", 42)  # the last one, loading: 100 s, as the first
    title = _last_frame(table).splitlines()[0].rstrip()
    assert title == "trials: 1/2 finished · study ETA 1 min 40 s"
    clock[0] = 200.0
    table.trial_ended("baseline_bs32-s42", "COMPLETE", 0.6)  # nothing left: no `study ETA 0 s`
    assert _last_frame(table).splitlines()[0].rstrip() == "trials: 2/2 finished"
    table.close()


def test_a_trial_stopped_by_early_stopping_says_so_in_the_table(monkeypatch):
    """Early stopping ended a trial at step 6 of 28: the table said `done` and `6/28`, as if it
    had trained every step or were cut short by something else."""
    from ablation import progress

    monkeypatch.setattr("rich.live.Live", _FakeLive)
    table = progress.LiveTable("macro_f1")
    table.planned([("baseline-s42", 42), ("baseline_bs32-s42", 42)])
    for key, steps in (("baseline-s42", 6), ("baseline_bs32-s42", 28)):
        table.trial_started(key, 42)
        for step in range(1, steps + 1):
            table.step(key, step, 28)
        table.trial_ended(key, "COMPLETE", 0.5)
    table.close()
    frame = _last_frame(table)
    assert frame.startswith("trials: 2/2 finished")
    stopped = next(line for line in frame.splitlines() if "baseline-s42" in line).split("│")
    assert [cell.strip() for cell in stopped[3:5]] == ["stopped early", "6/28"]
    full = next(line for line in frame.splitlines() if "baseline_bs32-s42" in line).split("│")
    assert [cell.strip() for cell in full[3:5]] == ["done", "28/28"]


def test_a_real_trial_stopped_early_shows_so_in_the_last_table(write_experiment, monkeypatch):
    """The Trainer's own steps: early stopping at step 6 of 28 (no improvement at the second
    evaluation); the last table, left on the terminal, says so."""
    from ablation import progress
    from ablation.config import load_spec
    from ablation.sweep import run_study

    monkeypatch.setattr("rich.live.Live", _FakeLive)
    path = write_experiment(variants="", baseline="learning_rate = 1e-12\nbatch_size = 16\n"
                                                  "epochs = 2\neval_steps = 3\n"
                                                  "early_stopping_patience = 1\n")
    table = progress.LiveTable("macro_f1")
    run_study(load_spec(path), echo=table)
    table.close()
    row = next(line for line in _last_frame(table).splitlines() if "baseline-s42" in line)
    assert [cell.strip() for cell in row.split("│")[3:5]] == ["stopped early", "6/28"]


def test_a_run_with_nothing_to_train_leaves_no_empty_table(monkeypatch):
    """Every trial complete, re-used: the table said "planning the study" over no rows while the
    report was written, and stayed on the terminal so when the run ended."""
    from ablation import progress

    monkeypatch.setattr("rich.live.Live", _FakeLive)
    table = progress.LiveTable("macro_f1")
    assert "trials: planning the study" in _last_frame(table)  # while the data load
    table.planned([])
    assert "planning" not in _last_frame(table)
    assert "trials: none to train" in _last_frame(table)
    table.close()
    assert table.live.transient  # erased when it stops: the plain lines say what was re-used


def test_a_search_s_trials_to_come_count_in_the_live_table(write_experiment, monkeypatch):
    """The sampler proposes search trials one by one, after the plan: the title said "1/2
    finished · study ETA 0 s" with 2 of 3 trials to go, and grew a trial at every proposal."""
    from ablation import progress
    from ablation.config import load_spec
    from ablation.sweep import run_study

    monkeypatch.setattr("rich.live.Live", _FakeLive)
    path = write_experiment(
        variants="", baseline="learning_rate = 1e-3\nbatch_size = 16\nmax_steps = 4\neval_steps = 2\n",
        extra='[search]\nn_trials = 2\nsampler = "random"\n[search.space]\n'
              "learning_rate = { low = 1e-4, high = 1e-2, log = true }\n")
    table = progress.LiveTable("macro_f1")
    titles: list[str] = []
    redraw = table._redraw

    def recorded(*args, **kwargs) -> None:
        redraw(*args, **kwargs)
        titles.append(_last_frame(table).splitlines()[0])

    monkeypatch.setattr(table, "_redraw", recorded)
    run_study(load_spec(path), echo=table)
    table.close()
    counted = [title.split()[1] for title in titles if "finished" in title]
    assert counted[0] == "0/3" and counted[-1] == "3/3"
    assert {count.split("/")[1] for count in counted} == {"3"}


def test_a_search_proposal_that_repeats_an_earlier_trial_counts_as_finished(monkeypatch):
    from ablation import progress

    monkeypatch.setattr("rich.live.Live", _FakeLive)
    table = progress.LiveTable("macro_f1")
    table.planned([("baseline-s42", 42)], proposals=2)
    assert _last_frame(table).startswith("trials: 0/3 finished")
    for key in ("baseline-s42", "search_1-s42"):
        table.trial_started(key, 42)
        table.trial_ended(key, "COMPLETE", 0.5)
    table.trial_repeated("search_2-s42", 42, 0.5)  # the parameters of search_1: not trained
    frame = _last_frame(table)
    assert frame.startswith("trials: 3/3 finished")
    assert "repeated" in next(line for line in frame.splitlines() if "search_2-s42" in line)


def test_quiet_prints_one_line_per_trial_and_no_evaluation_lines(write_experiment, capsys):
    path = write_experiment()
    assert cli.main(["run", str(path), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "trial 0 baseline-s42: baseline recipe" in out and "trial 1 baseline_bs32-s42 done:" in out
    assert " step " not in out
    assert "report: " in out


def _run_on_a_terminal(path) -> str:
    """`ablate run PATH` on a pseudo-terminal (exit code 0): what the terminal received."""
    controller, terminal = pty.openpty()
    env = dict(os.environ, COLUMNS="120", LINES="40", TERM="xterm")
    process = subprocess.Popen([sys.executable, "-m", "ablation", "run", str(path)], stdin=terminal,
                               stdout=terminal, stderr=terminal, env=env, close_fds=True)
    os.close(terminal)
    output = b""
    while True:
        ready, _, _ = select.select([controller], [], [], 120)
        if not ready:
            break
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # the process closed the terminal
            break
        if not chunk:
            break
        output += chunk
    assert process.wait(timeout=120) == 0
    return output.decode("utf-8", "replace")


def test_a_terminal_gets_the_live_table(write_experiment):
    """`ablate run` on a pseudo-terminal redraws a table of the trials; the final one shows them all
    finished."""
    text = _run_on_a_terminal(write_experiment())
    assert "trials: 2/2 finished" in text
    assert "baseline_bs32-s42" in text and "done" in text
    assert "report: " in text


def test_a_warning_prints_above_the_live_table(write_experiment):
    """A warning logged while the table is live (here: a tracker that cannot start) is printed
    above the table, as messages are, not glued to its last line and wiped by the next redraw."""
    from ablation.config import load_spec

    path = write_experiment(tracking='backend = "swanlab"\nmode = "local"')
    output_dir = load_spec(path).output_dir
    output_dir.mkdir(parents=True)
    (output_dir / "swanlog").write_text("a file where the folder should be")
    text = _run_on_a_terminal(path)
    # a message longer than the terminal is wrapped at a space, wherever the temporary folder's
    # path (pytest-<N>: more digits on a machine that ran more suites) puts the edge
    assert "this study runs without tracking" in re.sub(r" ?\r\n", " ", text)
    assert "┘WARNING" not in text  # written past the live display, at the end of its last line
    assert re.search(r"\x1b\[2K(\x1b\[[0-9;]*m)*WARNING ablation.tracking", text), \
        "the live display clears itself, prints the warning, and draws itself again below it"


class _Terminal(io.StringIO):
    """stdout and stderr both on one terminal: what is written, in order."""

    def isatty(self) -> bool:
        return True


def test_plain_lines_print_above_the_step_bar_not_onto_it(monkeypatch):
    """`ablate run FILE | tee run.log` or an `ablate worker` on a terminal: the Trainer's step
    bar (stderr) sits on the terminal's last line; an evaluation line (stdout) was written onto
    the end of the bar, and the bar's next redraw wrote over it."""
    from tqdm import tqdm

    from ablation.progress import Lines

    terminal = _Terminal()
    monkeypatch.setattr(sys, "stdout", terminal)
    monkeypatch.setattr(sys, "stderr", terminal)
    lines = Lines()
    assert lines.step_bars
    bar = tqdm(total=28, file=sys.stderr)
    bar.update(5)
    bar.refresh()
    lines.evaluated("baseline-s42", 5, 28, 0.36, 1.095, "macro_f1", 0.18)
    bar.close()
    before, after = terminal.getvalue().split("  baseline-s42  step 5/28", 1)
    assert before.endswith("\r")  # the bar was cleared: the line starts the terminal's line
    assert after.split("\n", 1)[1].lstrip("\r").startswith(" 18%")  # the bar, drawn again below


def test_no_step_bar_where_lines_cannot_be_printed_above_it(monkeypatch):
    """`ablate run FILE --workers 2` on a terminal: each worker drew its step bar on the same
    last line, the two overwriting each other and the lines between them. `ablate run FILE |
    tee run.log`: the lines reach the terminal through the pipe, whenever tee writes them, onto
    the bar drawn on stderr."""
    from ablation import interrupts
    from ablation.progress import Lines

    monkeypatch.setattr(sys, "stderr", _Terminal())
    monkeypatch.setattr(sys, "stdout", _Terminal())
    assert Lines().step_bars  # an `ablate worker` of its own keeps its bar
    monkeypatch.setattr(sys, "stdout", io.StringIO())  # a pipe
    assert not Lines().step_bars
    monkeypatch.setattr(sys, "stdout", _Terminal())
    monkeypatch.setenv(interrupts.STARTED_BY_RUN, "1234")
    assert not Lines().step_bars


def test_the_workers_of_one_run_leave_the_study_s_lines_to_the_run(write_experiment, monkeypatch,
                                                                  capsys):
    """`ablate run FILE --workers 4` printed the study's data lines 5 times (the run's, then each
    worker's), `worker on study ...` 4 times, and a `worker done: 1 trial(s) complete` of each
    worker among the trials' lines, counts a reader could take for the study's."""
    from conftest import stored_study

    from ablation import interrupts
    from ablation.config import load_spec
    from ablation.sweep import Work

    path = stored_study(write_experiment, trials=2)
    spec = load_spec(path)
    said: list[str] = []
    Work(spec, None, said.append).prepare()
    assert any(line.startswith("data: train ") for line in said)  # a worker of its own says them
    assert cli.main(["worker", str(path)]) == 0
    out = capsys.readouterr().out
    assert "worker on study tiny" in out and "worker done: 0 trial(s) complete" in out
    monkeypatch.setenv(interrupts.STARTED_BY_RUN, "1234")
    said.clear()
    Work(spec, None, said.append).prepare()
    assert said == []
    assert cli.main(["worker", str(path)]) == 0
    assert capsys.readouterr().out == ""


def test_an_evaluation_line_names_eval_loss_once_when_it_is_the_metric():
    from ablation.progress import Lines

    written: list[str] = []
    lines = Lines(written.append)
    lines.evaluated("baseline-s42", 10, 57, 0.53, 1.1021, "eval_loss", 1.1021)
    lines.evaluated("baseline-s42", 20, 57, 1.05, 1.0, "macro_f1", 0.5)
    assert written == ["  baseline-s42  step 10/57  epoch 0.53  eval_loss 1.1021",
                       "  baseline-s42  step 20/57  epoch 1.05  eval_loss 1.0000  macro_f1 0.5000"]


@pytest.mark.parametrize("term", ["dumb", "unknown"])
def test_a_dumb_terminal_gets_plain_lines_not_a_table_it_cannot_redraw(monkeypatch, term):
    """Emacs' M-x shell and other TERM=dumb terminals: rich cannot move the cursor there, so the
    live table was drawn once, at the end; a run showed each trial's start and end line and
    nothing between them (its evaluation lines left out for the table). Plain lines, as in a
    log: one per evaluation."""
    from types import SimpleNamespace

    from ablation.progress import Lines, LiveTable

    monkeypatch.setattr(sys, "stdout", _Terminal())
    monkeypatch.setattr(sys, "stderr", _Terminal())
    spec = SimpleNamespace(experiment=SimpleNamespace(metric="macro_f1"))
    args = SimpleNamespace(quiet=False, workers=1)
    monkeypatch.setenv("TERM", "xterm-256color")
    shown = cli._progress(spec, args)
    shown.close()
    assert isinstance(shown, LiveTable)  # a terminal that can redraw it
    monkeypatch.setenv("TERM", term)
    shown = cli._progress(spec, args)
    shown.close()
    assert type(shown) is Lines and not shown.quiet
    assert not shown.step_bars  # the Trainer's bars move the cursor up: `^[[A` there
    written: list[str] = []
    shown.write = written.append
    shown.evaluated("baseline-s42", 10, 84, 0.71, 1.0945, "macro_f1", 0.1818)
    assert written == ["  baseline-s42  step 10/84  epoch 0.71  eval_loss 1.0945  macro_f1 0.1818"]


def test_one_long_variant_name_does_not_widen_every_line_of_the_summary(write_experiment, capsys):
    """A variant named in 90 characters padded every name of the run's summary to it: on an
    80-column terminal each row of the table and of `what mattered` wrapped over two lines. The
    long name is a line of its own, with its figures under it; the others stay as they were."""
    long = "lr_" + "x" * 85
    path = write_experiment(variants=f"bs32 = {{ batch_size = 32 }}\n{long} = {{ batch_size = 8 }}\n")
    assert cli.main(["run", str(path), "--quiet"]) == 0
    out = capsys.readouterr().out
    summary = out[out.index("\nvariant "):]
    short = [line for line in summary.splitlines() if line.split()[:1] == ["baseline_bs32"]]
    assert len(short) == 2  # its row, its effect
    row, effect = short
    assert len(row) <= 80, row
    assert effect.index(" vs ") <= 2 + cli.SUMMARY_NAME_WIDTH, effect  # was 2 + 90 + 2
    lines = summary.splitlines()
    for at, line in enumerate(lines):
        if line.strip() == f"baseline_{long}":  # the name alone, then its row's figures
            assert "batch_size=8" in lines[at + 1] or "vs baseline" in lines[at + 1]
    assert sum(line.strip() == f"baseline_{long}" for line in lines) == 2


def test_the_last_table_on_a_narrow_terminal_keeps_the_trial_names(monkeypatch):
    """The table left on the terminal when the study ends has every row, laid out for the
    terminal's width as the live one is: on 40 columns (a split pane, or `COLUMNS=40`) its trial
    column got no width at all beside the seed's, and no trial was named in it."""
    from rich.console import Console

    from ablation import progress

    monkeypatch.setattr("rich.live.Live", _FakeLive)
    table = progress.LiveTable("macro_f1")
    table.console = Console(record=True, file=io.StringIO(), width=40, height=24)
    table.planned([("baseline-s42", 42), ("baseline_bs32-s42", 42)])
    for key in ("baseline-s42", "baseline_bs32-s42"):
        row = table.board.rows[key]
        row.state, row.started, row.ended, row.value, row.step, row.max_steps = (
            "done", 0.0, 5.0, 0.1818, 14, 14)
    table.close()
    console = Console(record=True, width=40)
    console.print(table.live.shown)
    lines = console.export_text().splitlines()
    assert max(map(len, lines)) <= 40
    cells = "".join(line.split("│")[1].strip() for line in lines if line.startswith("│"))
    assert "baseline-s42" in cells and "baseline_bs32-s42" in cells
