"""Rewrite the stale rows of the README's and docs' sample outputs (and docs/validation.md's
throughput and backtest tables) from live output.

    python tests/regen_samples.py [--check]

For the maintainer after a change that moves numbers (tests/test_docs.py says which sample is
stale): each row of a sample is replaced by the live output line that starts with the same
label (its first words, up to three, before any number), in order; abridged rows ("...") and rows with no such line are
left alone, so a changed table still fails the test and gets a human look.
"""

from __future__ import annotations

import os
import shlex
import sys
import tempfile
from pathlib import Path

from click.testing import CliRunner

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_docs import PAGES, README, REPO, SAMPLE  # noqa: E402

from planner.cli import cli  # noqa: E402


def _label(row: str) -> tuple[str, ...]:
    """The row's leading words (at most three), up to its first number."""
    words = []
    for w in row.split()[:3]:
        if w[0].isdigit() or w[0] in "$+-(":
            break
        words.append(w)
    return tuple(words)


def _live(line: str) -> list[str]:
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "scenarios").symlink_to(REPO / "scenarios")
        (Path(tmp) / "tests").symlink_to(REPO / "tests")
        runner = CliRunner()
        cwd = os.getcwd()
        os.chdir(tmp)
        try:
            result = runner.invoke(cli, shlex.split(line)[1:])
        finally:
            os.chdir(cwd)
    return result.stdout.splitlines()


def regen(path: Path) -> int:
    text = path.read_text()
    changed = 0
    out_parts, last = [], 0
    for m in SAMPLE.finditer(text):
        cmds = [c for c in m.group("cmd").splitlines() if c.strip().startswith("planner ")]
        sample = m.group("out")
        if len(cmds) != 1 or sample.lstrip().startswith("$ "):
            continue
        live = _live(cmds[0].split("  #")[0].strip())
        norm = {" ".join(x.split()) for x in live}
        rows, at = sample.split("\n"), 0
        for i, row in enumerate(rows):
            if not row.strip() or row.rstrip().endswith("...") or " ".join(row.split()) in norm:
                continue
            for j in range(at, len(live)):
                if live[j].strip() and _label(live[j]) == _label(row):
                    rows[i], at, changed = live[j], j + 1, changed + 1
                    break
        out_parts += [text[last:m.start("out")], "\n".join(rows)]
        last = m.end("out")
    out_parts.append(text[last:])
    if changed and "--check" not in sys.argv:
        path.write_text("".join(out_parts))
    return changed


def regen_validation() -> int:
    """docs/validation.md: each throughput row (matched by its run name, in order) and the
    backtest tables and summary, as the code computes them now."""
    from planner.checks.throughput import report
    from planner.cli.backtest import backtest_cmd

    path = REPO / "docs" / "validation.md"
    lines = path.read_text().split("\n")
    live: dict[str, list[str]] = {}
    for row in report().splitlines()[2:]:
        live.setdefault(row.split(" | ")[0], []).append(row)
    changed, used = 0, {}
    for i, line in enumerate(lines):
        key = line.split(" | ")[0]
        if line.startswith("| ") and key in live and used.get(key, 0) < len(live[key]):
            new = live[key][used.get(key, 0)]
            used[key] = used.get(key, 0) + 1
            changed += new != line
            lines[i] = new
    out = CliRunner().invoke(backtest_cmd, ["--format", "markdown"]).stdout.split("\n")
    bt = {" | ".join(r.split(" | ")[:3]): r for r in out if r.startswith("| ") and "---" not in r}
    for i, line in enumerate(lines):
        key = " | ".join(line.split(" | ")[:3])
        if line.startswith("| ") and key in bt and bt[key] != line:
            lines[i], changed = bt[key], changed + 1
        if line.startswith("Device-hours over"):
            new = next(r for r in out if r.startswith("Device-hours over"))
            changed += new != line
            lines[i] = new
    if changed and "--check" not in sys.argv:
        path.write_text("\n".join(lines))
    return changed


if __name__ == "__main__":
    for page in [README, *PAGES]:
        n = regen(page)
        if n:
            print(f"{page.relative_to(REPO)}: {n} rows rewritten")
    n = regen_validation()
    if n:
        print(f"docs/validation.md: {n} table rows rewritten")
