"""Every `planner ...` command in the README runs, and the shown error is what users get."""

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


def test_readme_has_examples_of_every_command():
    joined = "\n".join(COMMANDS)
    for cmd in ("models list", "models show", "hardware list", "hardware show",
                "regions show", "estimate"):
        assert f"planner {cmd}" in joined


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
    assert result.stdout.strip() or "written to" in result.stderr


def test_readme_error_example(runner):
    m = re.search(r"\$ (planner [^\n]+)\n(error: [^\n]+)", README)
    result = runner.invoke(cli, shlex.split(m.group(1))[1:])
    assert result.exit_code == 1 and result.stderr.strip() == m.group(2)


def test_readme_sample_output_is_current(runner):
    line = next(c for c in COMMANDS if "--region aws:us-east-1" in c and "--format" not in c)
    out = runner.invoke(cli, shlex.split(line)[1:]).stdout
    sample = re.search(r"Output of the first `estimate` above \(abridged\):\n\n```\n(.*?)```",
                       README, flags=re.S).group(1)
    for row in sample.splitlines():
        if row.strip() and not row.rstrip().endswith("..."):
            assert " ".join(row.split()) in " ".join(out.split()), row
