"""The CPU-contention check behind validate's "CPU busy with other work" flag."""

import subprocess
import sys
import time

import pytest

psutil = pytest.importorskip("psutil")

from planner.profiling.contention import CpuContention  # noqa: E402

BURN = "import time\nt = time.perf_counter()\nwhile time.perf_counter() - t < 1.5: pass"


def test_own_child_processes_are_not_contention():
    # torch.compile's worker processes are children of the validating process; their CPU
    # time was counted as "other processes" before (a false flag on --compile runs).
    # (Asserted on the process's own account, not on stop(): what else the machine runs
    # while the test does would move that.)
    c = CpuContention().start()
    child = subprocess.Popen([sys.executable, "-c", BURN])
    time.sleep(1.0)
    assert c._own_seconds() - c._me0 > 0.3  # the live child's CPU time is ours
    child.wait()
    assert c._own_seconds() - c._me0 > 0.5  # and still ours once it has exited and is reaped
    assert c.stop() is not None


def test_an_unrelated_process_is_contention():
    # A burner started through a shell that exits at once is re-parented away from us:
    # not our child, so its core counts as "other".
    subprocess.run(["sh", "-c", f'"{sys.executable}" -c "{BURN}" >/dev/null 2>&1 &'],
                   check=True)
    time.sleep(0.2)
    c = CpuContention().start()
    time.sleep(1.0)
    assert c.stop() > 0.4
    time.sleep(0.5)  # let the burner finish
