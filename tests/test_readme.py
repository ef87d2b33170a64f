"""Every `planner ...` command in the README runs, and the shown error is what users get.

The README's sample outputs are checked, with the docs' ones, by tests/test_docs.py."""

import re
import shlex
from pathlib import Path

import pytest

from planner.cli import cli

from doc_examples import planner_lines, run_example  # noqa: E402

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


COMMANDS = planner_lines(README)


def test_readme_has_an_example_of_every_task():
    for cmd in ("estimate", "plan", "compare", "budget", "measure", "validate", "backtest",
                "run", "serve"):
        assert any(line.split()[1] == cmd for line in COMMANDS), cmd




@pytest.mark.parametrize("line", COMMANDS)
def test_readme_command_runs(runner, line, tmp_path, monkeypatch):
    run_example(runner, line, tmp_path, monkeypatch)


def test_readme_error_example(runner):
    m = re.search(r"\$ (planner [^\n]+)\n(error: [^\n]+)", README)
    result = runner.invoke(cli, shlex.split(m.group(1))[1:])
    assert result.exit_code == 1 and result.stderr.strip() == m.group(2)
