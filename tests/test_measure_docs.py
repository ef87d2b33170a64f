"""Every `planner measure` / `planner runs` example in docs/commands/measure.md runs as documented."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

from planner.cli import cli

DOC = Path(__file__).resolve().parent.parent / "docs" / "commands" / "measure.md"
EXAMPLES = [line.strip() for lang, body in re.findall(r"```(\w*)\n(.*?)```", DOC.read_text(),
                                                      flags=re.DOTALL)
            if lang == "console" for line in body.splitlines()
            if line.strip().startswith("planner ")]


def test_the_doc_has_an_example_of_each_command():
    joined = "\n".join(EXAMPLES)
    for words in ("planner measure", "--extrapolate-to", "planner runs list",
                  "planner runs summary", "planner runs export"):
        assert words in joined


def test_examples_run_in_order(runner, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # `--output run.json` lands here
    for line in EXAMPLES:
        result = runner.invoke(cli, shlex.split(line)[1:])
        assert result.exit_code == 0, (line, result.stderr)
        assert (result.stdout + result.stderr).strip(), line
    assert Path("run.json").is_file()
    listed = json.loads(runner.invoke(cli, ["runs", "list", "--format", "json"]).stdout)
    assert len(listed) == sum(line.startswith("planner measure") for line in EXAMPLES)
