"""Running a documented `planner ...` line as a user would: shared by the README and docs tests."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from planner.cli import cli

REPO = Path(__file__).resolve().parent.parent
BLOCK = re.compile(r"```(\w*)\n(.*?)```", flags=re.S)


def planner_lines(text: str, lang: str = "bash") -> list[str]:
    """The `planner ...` lines of a page's code blocks in ``lang`` (comments cut)."""
    lines = []
    for block_lang, body in BLOCK.findall(text):
        if block_lang == lang:
            for line in body.splitlines():
                line = line.split("  #")[0].strip()
                if line.startswith("planner "):
                    lines.append(line)
    return lines


def needs_gpu(line: str) -> bool:
    if "--device cuda" not in line:
        return False
    try:
        import torch
        return not torch.cuda.is_available()
    except ImportError:
        return True


def run_example(runner, line: str, tmp_path: Path, monkeypatch) -> None:
    """The example as written, in a scratch directory (files it writes land there)."""
    if needs_gpu(line):
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
