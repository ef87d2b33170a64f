"""`planner validate`'s output: no torch profiler debug lines on stderr, plain progress lines
when not at a terminal, and the CPU default's step counts (chosen to stay under 60 s here)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from planner.cli.progress import Progress
from planner.profiling.quiet import kept_lines, native_stderr_filtered

ROOT = Path(__file__).resolve().parent.parent
USDT = "USDT:2026-12-01 10:37:52 693:693 SyncActivityProfilerHandler.cpp:52] profiler_start\n"
STAGE = "STAGE:2026-12-01 10:42:03 2554:2554 SyncActivityProfilerHandler.cpp:51] Completed\n"


def test_kept_lines_drops_only_kinetos_debug_lines():
    text = USDT + "UserWarning: something real\n" + STAGE + "USDT is a word here\n"
    assert kept_lines(text) == "UserWarning: something real\nUSDT is a word here\n"


def test_native_stderr_is_filtered_at_the_file_descriptor():
    code = (
        "import os, sys\n"
        "from planner.profiling.quiet import native_stderr_filtered\n"
        "with native_stderr_filtered():\n"
        f"    os.write(2, {USDT!r}.encode())\n"
        "    os.write(2, b'a real native warning\\n')\n"
        "    print('python stderr', file=sys.stderr)\n"
        "print('after', file=sys.stderr)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(ROOT)}, check=True)
    assert r.stderr == "a real native warning\npython stderr\nafter\n"


def test_filter_is_a_no_op_off_the_main_thread():
    import threading

    seen = []

    def work():
        with native_stderr_filtered():
            seen.append(True)

    t = threading.Thread(target=work)
    t.start()
    t.join()
    assert seen == [True]


def test_plain_progress_lines(capsys):
    with Progress(3, 1, plain=True) as p:
        p.phase("counting FLOPs")
        for i in (1, 2, 3):
            p.step(i)
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 4 and all(line.startswith("planner validate: [") for line in err)
    assert err[0].endswith("counting FLOPs")
    assert "step 1/3 (warm-up)" in err[1] and err[3].split("] ")[1].startswith("step 3/3 ")


def test_validate_subprocess_is_quiet_plain_and_uses_the_cpu_step_defaults():
    pytest.importorskip("torch")
    r = subprocess.run(
        [sys.executable, "-m", "planner", "validate", "--scale-to", "2M", "--seq-len", "32",
         "--micro-batch", "2", "--no-energy", "--format", "json"],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=600)
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert (rep["steps"], rep["warmup"]) == (6, 1)  # CPU_STEPS
    assert "USDT:" not in r.stderr and "STAGE:" not in r.stderr
    lines = [line for line in r.stderr.splitlines() if line.startswith("planner validate: [")]
    assert any("] step 7/7 " in line and line.endswith(" s") for line in lines)
    assert any("measuring peak memory" in line for line in lines)
