"""The docs stay true: their examples run, their sample outputs and tables are what the code
prints now, their links resolve, and every "formulas.md §N" citation in the code names a
section of docs/formulas.md."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from planner.cli import cli

from doc_examples import BLOCK, planner_lines, run_example  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
DOCS = REPO / "docs"
PAGES = sorted(DOCS.rglob("*.md"))

# Written by another change; linked from the README and docs/README.md before it lands.
PENDING_PAGES = {DOCS / "errors.md"}


def _rel(path: Path) -> str:
    return str(path.relative_to(REPO))


README_COMMANDS = set(planner_lines(README.read_text()))
# Each docs example once; the ones the README also shows are run by tests/test_readme.py.
DOC_COMMANDS = sorted({(_rel(p), line) for p in PAGES for line in planner_lines(p.read_text())
                       if line not in README_COMMANDS})


def test_docs_have_a_page_per_command_with_examples():
    expected = {
        "estimate": "planner estimate", "plan": "planner plan", "compare": "planner compare",
        "budget": "planner budget", "run": "planner run", "backtest": "planner backtest",
        "validate": "planner validate", "models-hardware-regions": "planner models list",
        "serve": "planner serve",
    }
    for page, command in expected.items():
        text = (DOCS / "commands" / f"{page}.md").read_text()
        assert command in "\n".join(planner_lines(text)), page
    measure = (DOCS / "commands" / "measure.md").read_text()
    assert "planner measure" in "\n".join(planner_lines(measure, "console"))
    joined = "\n".join(line for _, line in DOC_COMMANDS)
    for cmd in ("models show", "hardware list", "hardware show", "regions show"):
        assert f"planner {cmd}" in joined


@pytest.mark.parametrize("page,line", DOC_COMMANDS, ids=[f"{p}: {l[:80]}" for p, l in DOC_COMMANDS])
def test_docs_command_runs(runner, page, line, tmp_path, monkeypatch):
    run_example(runner, line, tmp_path, monkeypatch)


# -- sample outputs ---------------------------------------------------------------------------

# A sample is an unlabelled code block that follows a bash block holding exactly one `planner`
# command, with only prose between them. ```text blocks (times, energies that vary) are not
# checked, nor are error transcripts (`$ planner ...`, checked by test_readme_error_example).
SAMPLE = re.compile(r"```bash\n(?P<cmd>[^`]*?)```\n(?P<prose>(?:(?!```)[^\n]*\n)*?)```\n"
                    r"(?P<out>.*?)```", flags=re.S)


def _samples(path: Path) -> list[tuple[str, str]]:
    found = []
    for m in SAMPLE.finditer(path.read_text()):
        cmds = [c for c in m.group("cmd").splitlines() if c.strip().startswith("planner ")]
        if len(cmds) == 1 and not m.group("out").lstrip().startswith("$ "):
            found.append((cmds[0].split("  #")[0].strip(), m.group("out")))
    return found


SAMPLES = [(_rel(p), cmd, out) for p in [README, *PAGES] for cmd, out in _samples(p)]


def test_samples_are_found():
    pages = {page for page, _, _ in SAMPLES}
    assert {"README.md", "docs/commands/estimate.md"} <= pages
    assert sum(page == "README.md" for page in pages) and len(SAMPLES) >= 7


@pytest.mark.parametrize("page,line,sample", SAMPLES,
                         ids=[f"{p}: {c[:60]}" for p, c, _ in SAMPLES])
def test_sample_output_is_current(runner, page, line, sample, tmp_path, monkeypatch):
    """Every row shown (abridged or not) is a row of what the command prints now."""
    (tmp_path / "scenarios").symlink_to(REPO / "scenarios")
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(cli, shlex.split(line)[1:])
    assert result.exit_code == 0, result.stderr
    out = " ".join(result.stdout.split())
    rows = [row for row in sample.splitlines() if row.strip() and not row.rstrip().endswith("...")]
    assert rows
    stale = [row for row in rows if " ".join(row.split()) not in out]
    assert not stale, (f"{page}: sample of `{line}` is stale; regenerate it from live output. "
                       f"First stale row: {stale[0]}")


COMPARE_SAMPLES = [(p, c, o) for p, c, o in SAMPLES if c.split()[1] == "compare"]


@pytest.mark.parametrize("page,line,sample", COMPARE_SAMPLES,
                         ids=[p for p, _, _ in COMPARE_SAMPLES])
def test_compare_sample_shows_every_hardware_row(runner, page, line, sample):
    """A compare sample's table has every row the command prints, one per answering
    --hardware (the README's left out mi300x's): rows present but stale are
    test_sample_output_is_current's, rows missing are this test's."""
    args = shlex.split(line)[1:]
    names = args[args.index("--hardware") + 1].split(",")
    result = runner.invoke(cli, args)
    assert result.exit_code == 0, result.stderr
    live = [r.split()[0] for r in result.stdout.splitlines() if r.split()[:1] and
            r.split()[0] in names]
    shown = [r.split()[0] for r in sample.splitlines() if r.split()[:1] and
             r.split()[0] in names]
    assert shown == live, f"{page}: the sample of `{line}` shows {shown}, the command {live}"


# -- tables moved from the README -------------------------------------------------------------

VALIDATION = DOCS / "validation.md"


def test_validation_throughput_table_is_current():
    from planner.checks.throughput import report

    text = VALIDATION.read_text()
    rows = report().splitlines()[2:]
    assert len(rows) == 57
    for row in rows:
        assert row in text, f"docs/validation.md throughput table is stale: {row}"


def test_validation_throughput_table_says_which_rows_set_a_constant():
    text = VALIDATION.read_text()
    calibrated = text.split("**Rows that set a constant.**")[1].split("**Held-out rows.**")[0]
    held_out = text.split("**Held-out rows.**")[1].split("\n## ")[0]
    assert calibrated.count("\n| GPT ") == 13 and calibrated.count("eager PyTorch, seq") == 9
    assert "\n| Llama 3" not in calibrated and "NeMo on" not in calibrated
    assert calibrated.count("NeMo FP8 on") == 1 and held_out.count("NeMo FP8 on") == 5
    assert held_out.count("\n| Llama 3 405B") == 3 and held_out.count("\n| GPT ") == 5
    assert "recompute" not in "".join(l for l in held_out.splitlines() if l.startswith("| GPT "))
    assert held_out.count("NeMo on") == 6 and "eager PyTorch, seq" not in held_out
    assert held_out.count("FSDP2 on 64 A100") == 8 and held_out.count("\n| PaLM") == 1
    assert held_out.count("FSDP on 128 a100-80gb") == 3 and held_out.count("FSDP on 96 h100") == 3


def test_validation_backtest_tables_are_current(runner):
    from planner.cli.backtest import backtest_cmd

    text = VALIDATION.read_text()
    out = runner.invoke(backtest_cmd, ["--format", "markdown"]).stdout
    rows = [line for line in out.splitlines() if line.startswith("| ") and "---" not in line]
    assert len(rows) > 11
    stale = [row for row in rows if row not in text]
    assert not stale, f"docs/validation.md backtest table is stale; first differing row: {stale[0]}"
    summary = next(line for line in out.splitlines() if line.startswith("Device-hours over"))
    assert summary in text


# -- formulas.md citations --------------------------------------------------------------------

FORMULAS = DOCS / "formulas.md"
CITATION = re.compile(r"formulas\.md §(\d+(?:\.\d+)*)")


def _sections() -> set[str]:
    heads = re.findall(r"^#{2,3} (\d+(?:\.\d+)*)\.? ", FORMULAS.read_text(), flags=re.M)
    return set(heads)


def _citations() -> dict[str, list[str]]:
    cited: dict[str, list[str]] = {}
    for path in sorted((REPO / "planner").rglob("*")):
        if path.suffix not in {".py", ".yaml", ".yml", ".json", ".md"} or not path.is_file():
            continue
        for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            for section in CITATION.findall(line):
                cited.setdefault(section, []).append(f"{_rel(path)}:{n}")
    return cited


def test_formulas_sections_are_numbered():
    sections = _sections()
    assert {"1", "1.1", "2.9", "3.4", "4.6", "5.4", "7.2", "8", "10"} <= sections
    assert "3.4" in sections and "3.41" not in sections


def test_every_formulas_citation_in_the_code_names_a_section():
    cited = _citations()
    assert len(cited) >= 15, sorted(cited)  # the code cites many sections; none found = broken
    missing = {s: where for s, where in cited.items() if s not in _sections()}
    assert not missing, f"cited but not a heading of docs/formulas.md: {missing}"


def test_formulas_carries_the_known_corrections():
    text = FORMULAS.read_text()
    assert "178,557,088,768" in text  # Falcon-180B, tied LM head
    loss = text.split("### 3.4 ")[1].split("\n### ")[0]
    assert "12 bytes per logit element" in loss
    assert "validation/2026-11-23-h100.md" in loss


# -- README and links -------------------------------------------------------------------------

def test_readme_is_a_short_front_door():
    lines = README.read_text().splitlines()
    assert len(lines) <= 250, f"README.md has {len(lines)} lines; move detail to docs/"
    text = "\n".join(lines)
    order = ["## What will it cost?", "## Which hardware?", "## What does a budget buy?",
             "## Measure my run", "## Check planner against reality", "## Scenarios and reports",
             "## From Python", "## Mistakes get one line"]
    positions = [text.index(h) for h in order]
    assert positions == sorted(positions)
    assert "](docs/README.md)" in text and "](docs/errors.md)" in text


def _slug(heading: str) -> str:
    slug = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return slug.replace(" ", "-")


LINK = re.compile(r"\]\(([^)\s]+)\)")


@pytest.mark.parametrize("page", [README, *PAGES], ids=_rel)
def test_relative_links_resolve(page):
    text = BLOCK.sub("", page.read_text())
    broken = []
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target):
            continue
        path_part, _, anchor = target.partition("#")
        dest = (page.parent / path_part).resolve() if path_part else page
        if dest in PENDING_PAGES:
            continue
        if not dest.exists():
            broken.append(target)
        elif anchor and dest.suffix == ".md":
            heads = re.findall(r"^#+ (.+)$", BLOCK.sub("", dest.read_text()), flags=re.M)
            if anchor not in {_slug(h) for h in heads}:
                broken.append(target)
    assert not broken, f"{_rel(page)}: broken links {broken}"
