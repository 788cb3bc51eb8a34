"""README.md documents every key and every command; nothing else ties it to the code, so it drifts.

These checks read README's tables and code blocks and hold them against the config dataclasses
and the argparse parser: a key or option added, renamed or removed, or a default changed, on one
side only, fails here by name. They load no model and train nothing.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import shlex
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ablation import cli, search, variants
from ablation.config import (
    ABLATION_MODES,
    DataSpec,
    ExperimentSection,
    ModelSpec,
    Recipe,
    TrackingSpec,
    parse_ablation,
)
from ablation.errors import AblateInputError

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")


# --------------------------------------------------------------------------- reading README


def _sections() -> dict[str, str]:
    """Each heading's text (up to the next heading), by the heading's title; `#` lines inside
    code blocks are comments, not headings."""
    sections: dict[str, list[str]] = {}
    current: list[str] = []
    in_code = False
    for line in README.splitlines():
        if line.startswith("```"):
            in_code = not in_code
        if not in_code and re.match(r"#{1,6} ", line):
            current = sections.setdefault(line.lstrip("#").strip(), [])
            continue
        current.append(line)
    return {title: "\n".join(lines) for title, lines in sections.items()}


SECTIONS = _sections()


def _code_blocks(text: str = README) -> list[str]:
    return re.findall(r"^```[^\n]*\n(.*?)^```", text, re.S | re.M)


@dataclasses.dataclass(frozen=True)
class Row:
    """One key of a README table: its default and allowed-values cells, as written."""

    default: str
    allowed: str


def _table(title: str) -> dict[str, Row]:
    """The key tables under a heading, by key: a row naming several keys (`config`, `revision`)
    gives each its own default where the default cell lists one per key."""
    rows: dict[str, Row] = {}
    for line in SECTIONS[title].splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if not line.startswith("| `") or len(cells) != 3:
            continue  # not a key row: the header, the --- line, prose
        keys = re.findall(r"`([^`]+)`", cells[0])
        defaults = cells[1].split(", ") if len(keys) > 1 else [cells[1]]
        if len(defaults) != len(keys):
            defaults = [cells[1]] * len(keys)
        for key, default in zip(keys, defaults, strict=True):
            rows[key] = Row(default, cells[2])
    return rows


TABLES: dict[str, type] = {
    "`[experiment]`": ExperimentSection,
    "`[data]`": DataSpec,
    "`[model]`": ModelSpec,
    "`[tracking]`": TrackingSpec,
    "Knobs: `[baseline]` and each variant": Recipe,
}


def _fields(cls: type) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cls)}


KEYS = [(title, key) for title, cls in TABLES.items() for key in _fields(cls)]
DOCUMENTED = [(title, key) for title in TABLES for key in _table(title)]


def _literal(cell: str) -> tuple[bool, Any]:
    """(True, value) where a default cell starts with a TOML value in backticks (`2e-5`, `"text"`,
    `[42]`, `false`); (False, None) where it describes the default in words ("the model's",
    `maximize` (scores) / ..., `reports/<name>`): a default resolved from other keys."""
    match = re.match(r"`([^`]*)`", cell)
    if not match:
        return False, None
    try:
        return True, tomllib.loads(f"v = {match[1]}")["v"]
    except tomllib.TOMLDecodeError:
        return False, None


def _same_default(code: Any, documented: Any) -> bool:
    """2e-5 is 2e-05, 3 is 3.0, (42,) is [42]; an unset key (None, "") is an empty value."""
    if isinstance(code, tuple):
        code = list(code)
    if code is None or code == "":
        return documented in ("", {}, [])
    if isinstance(code, bool) or isinstance(documented, bool):  # false is not 0
        return code is documented
    return code == documented


# --------------------------------------------------------------------------- config keys


@pytest.mark.parametrize(("title", "key"), KEYS, ids=[f"{t}:{k}" for t, k in KEYS])
def test_every_config_key_is_in_its_readme_table_with_its_default(title: str, key: str) -> None:
    table = _table(title)
    assert key in table, f"README's {title} table has no row for {key!r}"
    is_literal, documented = _literal(table[key].default)
    code = _fields(TABLES[title])[key].default
    if is_literal:
        assert _same_default(code, documented), (
            f"README's {title} table says {key} defaults to {table[key].default}; the code: {code!r}")
    else:  # a default in words stands for a key left unset, resolved from others
        assert code in (None, ""), (
            f"README's {title} table describes {key}'s default in words "
            f"({table[key].default!r}); the code's default is {code!r}: write it as `value`")


@pytest.mark.parametrize(("title", "key"), DOCUMENTED, ids=[f"{t}:{k}" for t, k in DOCUMENTED])
def test_every_key_readme_documents_exists(title: str, key: str) -> None:
    assert key in _fields(TABLES[title]), f"README's {title} table documents {key!r}, a key the code lacks"


def _check(title: str, key: str) -> Callable[[Any], Any]:
    return _fields(TABLES[title])[key].metadata["check"]


def _accepts(check: Callable[[Any], Any], value: Any) -> bool:
    try:
        check(value)
    except ValueError:
        return False
    return True


def _bound_claims() -> list[tuple[str, str, str, Any, bool]]:
    """(title, key, claim, value, accepted) for the range an allowed cell opens with: `≥ 1` or
    `> 0` (the bound, and one step beyond it on the other side: 1 for an integer key, 1e-9 for a
    number), `in [0, 1)` (both ends, and the middle)."""
    claims = []
    for title, key in DOCUMENTED:
        if key not in _fields(TABLES[title]):
            continue
        allowed, check = _table(title)[key].allowed, _check(title, key)
        # "≥ 1", "integer ≥ 1", "whole seconds ≥ 1", "-1 (use epochs) or ≥ 1"
        if match := re.match(r"[^`:;]{0,20}?(≥|>) (\d+)\b", allowed):
            bound, inclusive = int(match[2]), match[1] == "≥"
            step = 1 if not _accepts(check, bound + 0.5) else 1e-9  # an integer refuses 1.5
            claims += [(title, key, match[0], bound, inclusive),
                       (title, key, match[0], bound - step if inclusive else bound + step,
                        not inclusive)]
        elif match := re.match(r"in ([\[(])(\d+), (\d+)([\])])", allowed):
            low, high = int(match[2]), int(match[3])
            claims += [(title, key, match[0], low, match[1] == "["),
                       (title, key, match[0], high, match[4] == "]"),
                       (title, key, match[0], (low + high) / 2, True)]
    return claims


BOUNDS = _bound_claims()


@pytest.mark.parametrize(("title", "key", "claim", "value", "accepted"), BOUNDS,
                         ids=[f"{k}:{c}:{v}" for _, k, c, v, _ in BOUNDS])
def test_a_range_readme_states_is_the_one_the_code_checks(title: str, key: str, claim: str,
                                                          value: Any, accepted: bool) -> None:
    assert _accepts(_check(title, key), value) == accepted, (
        f"README's {title} table says {key} is {claim!r}, but the code "
        f"{'refuses' if accepted else 'takes'} {value!r}")


def _choices(check: Callable[[Any], Any]) -> list[str] | None:
    """The values a `one of` check allows, from its own error line ("must be one of 'a', 'b'")."""
    try:
        check("\0 not a choice")
    except ValueError as err:
        if "one of" in str(err):
            return re.findall(r"'([^']*)'", str(err).split("one of", 1)[1])
    return None


CHOICE_KEYS = [(title, key) for title, key in KEYS if _choices(_check(title, key)) is not None]


@pytest.mark.parametrize(("title", "key"), CHOICE_KEYS, ids=[f"{t}:{k}" for t, k in CHOICE_KEYS])
def test_the_values_readme_allows_are_the_codes_choices(title: str, key: str) -> None:
    row = _table(title)[key]
    choices = _choices(_check(title, key))
    written = set(re.findall(r"`\"?([a-z0-9_-]+)\"?`", row.default + " " + row.allowed))
    assert set(choices) <= written, (
        f"README's {title} table does not name {sorted(set(choices) - written)} among {key}'s values")
    named = set(re.findall(r"`\"?([a-z0-9_-]+)\"?`", row.allowed))
    assert named <= set(choices), (
        f"README's {title} table allows {key} = {sorted(named - set(choices))}, which the code refuses")


# --------------------------------------------------------------------------- [sweep], [ablation], [search]


def _toml_block(title: str) -> dict[str, Any]:
    return tomllib.loads(_code_blocks(SECTIONS[title])[0])


def test_sweep_example_sweeps_knobs_and_its_short_names_are_the_codes() -> None:
    block = _toml_block("`[sweep]`: one factor at a time")
    assert set(block["sweep"]) <= set(_fields(Recipe))
    text = SECTIONS["`[sweep]`: one factor at a time"]
    missing = [short for short in {*variants.SUFFIXES.values(), *variants.CONFIG_SUFFIXES.values()}
               if f"`{short}`" not in text and f"`{short}-" not in text]
    assert not missing, f"README's [sweep] does not list the short names {missing}"


def test_ablation_modes_and_default_are_the_codes() -> None:
    title = "`[ablation]`: a set of changes, one at a time"
    assert set(_toml_block(title)["ablation"]) == {"mode", "changes"}
    for mode in ABLATION_MODES:
        assert f"`{mode}`" in SECTIONS[title], f"README's [ablation] does not describe mode {mode!r}"
    default = parse_ablation({"changes": {"cw": {"class_weight": "balanced"}}}, Path("x.toml")).mode
    marked = re.search(r'^mode = "([^"]+)" +# \(default\)', SECTIONS[title], re.M)
    assert marked and marked[1] == default, f"README's [ablation] should mark {default!r} (default)"


def test_search_keys_choices_and_defaults_are_the_codes() -> None:
    title = "`[search]`: hyperparameter search with pruning"
    assert set(_toml_block(title)["search"]) == set(search.SEARCH_KEYS)
    for key, choices, default in [("sampler", search.SAMPLERS, search.DEFAULT_SAMPLER),
                                  ("pruner", search.PRUNERS, search.DEFAULT_PRUNER)]:
        # sampler = "tpe"   # tpe (default) | random | grid | cmaes (cmaes needs ...)
        comment = re.search(rf"^{key} = .*?#(.*)$", SECTIONS[title], re.M)[1]
        written = [part.split()[0] for part in comment.split("|")]
        marked = [part.split()[0] for part in comment.split("|") if "(default)" in part]
        assert written == list(choices), f"README's [search] {key} lists {written}, the code {choices}"
        assert marked == [default], f"README's [search] {key} should mark {default!r} (default)"


# --------------------------------------------------------------------------- commands

PARSER = cli.build_parser()


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


COMMANDS = _subparsers(PARSER)


def _options(parser: argparse.ArgumentParser) -> set[str]:
    return {option for action in parser._actions for option in action.option_strings
            if option.startswith("--") and option != "--help"}


def _synopses() -> dict[str, set[str]]:
    """The options each command's usage lines in README's code blocks give (`ablate run FILE
    [--only NAME ...]`, and the indented lines that go on with it)."""
    options: dict[str, set[str]] = {}
    for block in _code_blocks():
        command = None
        for line in block.splitlines():
            if match := re.match(r"ablate (\w+) [A-Z_]+\b|ablate (init) \[", line):
                command = match[1] or match[2]
                options.setdefault(command, set())
            elif not line.startswith(" "):
                command = None
            if command:
                options[command] |= set(re.findall(r"--[a-z][a-z-]*", line.split("#")[0]))
    return options


SYNOPSES = _synopses()


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_has_its_readme_usage_with_every_option(command: str) -> None:
    assert command in SYNOPSES, f"README's Commands block has no usage line for `ablate {command}`"
    assert SYNOPSES[command] == _options(COMMANDS[command]), (
        f"`ablate {command}`: README's usage gives {sorted(SYNOPSES[command])}, "
        f"the parser takes {sorted(_options(COMMANDS[command]))}")


def test_every_command_readme_gives_usage_for_exists() -> None:
    assert set(SYNOPSES) <= set(COMMANDS), (
        f"README gives usage for {sorted(set(SYNOPSES) - set(COMMANDS))}, which the parser lacks")


def _inline_commands() -> list[str]:
    """Every `ablate CMD ...` README writes in backticks in its prose (also inside a ``...``
    span that quotes an error line, and wrapped over two lines)."""
    prose = re.sub(r"^```.*?^```", "", README, flags=re.S | re.M)
    commands = [" ".join(span.split()) for span in re.findall(r"`(ablate [a-z]+\b[^`]*)`", prose)]
    # ... and `status --json`, `report --format`: a command named with one of its options
    return commands + [f"ablate {span}" for span in re.findall(r"`([a-z]+ --[a-z][^`]*)`", prose)]


MENTIONS = sorted({(match[1], option) for span in _inline_commands()
                   for match in [re.match(r"ablate ([a-z]+)", span)]
                   for option in re.findall(r"(?:^|\s)(--[a-z][a-z-]*)", span)})


@pytest.mark.parametrize(("command", "option"), MENTIONS, ids=[f"{c} {o}" for c, o in MENTIONS])
def test_every_option_readme_gives_a_command_exists(command: str, option: str) -> None:
    assert command in COMMANDS, f"README names `ablate {command}`, which is no command"
    assert option in _options(COMMANDS[command]), f"README gives `ablate {command} {option}`, which it lacks"


def _command_lines() -> list[str]:
    """The `ablate ...` command lines of README's code blocks (a `$ ` prompt dropped, `\\` lines
    joined, and those in backticks inside output), less usage lines (`[--only NAME ...]`)."""
    lines = []
    for block in _code_blocks():
        for line in block.replace("\\\n", " ").splitlines():
            line = line.strip().removeprefix("$ ")
            candidates = [line] + re.findall(r"`(ablate [^`]+)`", line)
            lines += [c for c in candidates if c.startswith("ablate ") and " [" not in c]
    return lines


COMMAND_LINES = _command_lines()


@pytest.mark.parametrize("line", COMMAND_LINES)
def test_every_readme_command_line_parses(line: str) -> None:
    # A shell variable ($S) stands for options the text spells out, `| head` is the shell's, and
    # `...` elides what the text says: none of them is ablate's to parse.
    words = shlex.split(line.split(" | ")[0], comments=True)
    words = [word for word in words if not word.startswith("$") and word != "..."]
    try:
        PARSER.parse_args(words[1:])
    except AblateInputError as err:
        pytest.fail(f"README's `{line}` does not parse: {err}")


# --------------------------------------------------------------------------- markdown


def _unclosed_code_spans() -> list[str]:
    """Each backtick run of README's prose that no run of the same length closes within its
    paragraph or list item: markdown shows it as literal backticks and turns what follows inside
    out (`ablate run ...`` opens a span at the second run that runs on to the next pair)."""
    prose = re.sub(r"^ *```.*?^ *```", "", README, flags=re.S | re.M)
    unclosed = []
    for block in re.split(r"\n\s*\n|\n(?=\s*(?:[-*] |\d+\. |#|>|\|))", prose):
        runs = [(match.start(), len(match[0])) for match in re.finditer(r"`+", block)]
        while runs:
            start, length = runs.pop(0)
            closing = next((i for i, (_, n) in enumerate(runs) if n == length), None)
            if closing is None:
                unclosed.append(" ".join(block[max(0, start - 60):start + 60].split()))
            else:
                del runs[:closing + 1]
    return unclosed


def test_every_code_span_readme_opens_is_closed() -> None:
    assert not _unclosed_code_spans(), f"README's code spans left open: {_unclosed_code_spans()}"


def test_the_layout_names_every_module() -> None:
    """Development's layout of `ablation/` names each module (`config.py`, and a package's as
    `_plan`), so that a module added or moved is placed in it."""
    layout = SECTIONS["Development"].split("Layout of `ablation/`", 1)[1]
    package = Path(cli.__file__).parent
    missing = [str(path.relative_to(package)) for path in sorted(package.rglob("*.py"))
               if path.stem not in ("__init__", "__main__")
               and f"`{path.name}`" not in layout and f"`{path.stem}`" not in layout]
    assert not missing, f"README's layout of ablation/ does not name {missing}"


def test_where_results_are_names_every_picture_the_report_draws() -> None:
    """Where results are listed the metric, confusion and curve plots but not learning_curve.png,
    which a report of a `max_train_samples` sweep draws: each file a report may draw is named."""
    from ablation.report.plots import plot_names

    layout = SECTIONS["Where results are"]
    missing = [f"{name}.png" for name in plot_names() if f"{name}.png" not in layout]
    assert not missing, f"README's Where results are does not name {missing}"
