"""Every `planner ...` command in the README runs, and the shown error is what users get.

The README's sample outputs are checked, with the docs' ones, by tests/test_docs.py."""

import re
import shlex
from pathlib import Path

import pytest

from planner.cli import cli

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()
BLOCKS = re.findall(r"```(\w*)\n(.*?)```", README, flags=re.S)


def _commands(lang: str) -> list[str]:
    lines = []
    for block_lang, body in BLOCKS:
        if block_lang == lang:
            for line in body.splitlines():
                line = line.split("  #")[0].strip()
                if line.startswith("planner "):
                    lines.append(line)
    return lines


COMMANDS = _commands("bash")


def test_readme_has_an_example_of_every_task():
    for cmd in ("estimate", "plan", "compare", "budget", "measure", "validate", "backtest",
                "run"):
        assert any(line.split()[1] == cmd for line in COMMANDS), cmd


REPO = Path(__file__).resolve().parent.parent


def _needs_gpu(line: str) -> bool:
    if "--device cuda" not in line:
        return False
    try:
        import torch
        return not torch.cuda.is_available()
    except ImportError:
        return True


@pytest.mark.parametrize("line", COMMANDS)
def test_readme_command_runs(runner, line, tmp_path, monkeypatch):
    """Each example as written, run in a scratch directory (files it writes land there)."""
    if _needs_gpu(line):
        pytest.skip("needs a CUDA GPU")
    if line.startswith("planner validate"):
        pytest.importorskip("torch")
    (tmp_path / "scenarios").symlink_to(REPO / "scenarios")
    (tmp_path / "tests").symlink_to(REPO / "tests")
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(cli, shlex.split(line)[1:])
    assert result.exit_code == 0, result.stderr
    # `planner measure` reports on stderr, leaving stdout to the measured command.
    reported = result.stderr if line.startswith("planner measure ") else ""
    assert result.stdout.strip() or "written to" in result.stderr or "complete, exit 0" in reported


def test_readme_error_example(runner):
    m = re.search(r"\$ (planner [^\n]+)\n(error: [^\n]+)", README)
    result = runner.invoke(cli, shlex.split(m.group(1))[1:])
    assert result.exit_code == 1 and result.stderr.strip() == m.group(2)
