"""The CLI keeps its surface: every command's help text, options and exit code as recorded.

``data/cli_help.txt`` was recorded from the CLI before it was split into one module per
command group. New commands may appear; a recorded one must read exactly as it did.
"""

from __future__ import annotations

import re
from pathlib import Path

from typer.main import get_command
from typer.testing import CliRunner

from pipelines.cli import app

RECORDED = Path(__file__).parent / "data" / "cli_help.txt"
HEADER = re.compile(r"^\$ telcolake (.*) --help  exit=(\d+)$", re.M)


def recorded() -> dict[str, tuple[int, str]]:
    text = RECORDED.read_text()
    marks = list(HEADER.finditer(text))
    out = {}
    for m, nxt in zip(marks, marks[1:] + [None], strict=True):
        body = text[m.end() + 1 : nxt.start() - 1 if nxt else len(text)]
        out[m.group(1).strip()] = (int(m.group(2)), body)
    return out


def current(path: str) -> tuple[int, str]:
    args = path.split() + ["--help"]
    result = CliRunner().invoke(app, args, terminal_width=100, env={"COLUMNS": "100"})
    return result.exit_code, result.output


def test_the_recording_covers_every_group():
    names = set(recorded())
    assert {"", "broker", "jobs", "partners", "partners token", "churn", "catalog", "ingest", "bill-run"} <= names
    assert len(names) == 38


def test_every_recorded_command_reads_the_same():
    changed = [path for path, (code, text) in recorded().items() if path and current(path) != (code, text)]
    assert changed == []


def test_the_top_level_help_still_lists_every_recorded_command():
    code, text = recorded()[""]
    now_code, now = current("")
    assert now_code == code
    listed = [line for line in text.splitlines() if re.match(r"^│ [a-z]", line)]
    assert listed and all(line in now for line in listed)


def test_commands_are_registered_once():
    root = get_command(app)
    names = root.list_commands(root.context_class(root))
    assert len(names) == len(set(names))
