"""Overhead of `planner measure`: the whole call `planner measure --no-ledger -- true`.

    python benchmarks/measure_overhead.py [--runs 10]

Target: at most 1 s on this 2-core VM (docs/commands/measure.md). The machine's speed swings up
to 2x as other work comes and goes, so each figure is printed as min / median / max of several
runs, beside the interpreter's own start-up (`python -c pass`) on the same minute. Cases:

- warm: the default host meter with this machine's hardware facts already cached (every run
  after the first on a machine);
- cold: an empty cache, so codecarbon's hardware detection runs (beside the command) and is
  cached: the first run on a machine, or after a hardware or codecarbon change;
- codecarbon: `--meter codecarbon`, codecarbon's own tracker, as every run was before;
- "bytecode not written" (only where this shell sets PYTHONDONTWRITEBYTECODE): warm, as this
  shell runs it, so Python compiles planner's modules on every run (an editable install).

The caches live in a temporary directory (PLANNER_CACHE_DIR); the user's are not touched.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

MEASURE = [sys.executable, "-m", "planner", "measure", "--no-ledger"]


def _times(argv: list[str], runs: int, env: dict[str, str], fresh_cache: bool = False
           ) -> list[float]:
    out = []
    for _ in range(runs):
        if fresh_cache:
            env = {**env, "PLANNER_CACHE_DIR": tempfile.mkdtemp(prefix="planner-bench-")}
        t0 = time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, env=env)
        out.append(time.perf_counter() - t0)
    return out


def _line(name: str, times: list[float]) -> str:
    return (f"{name:<28} min {min(times):.3f} s  median {statistics.median(times):.3f} s  "
            f"max {max(times):.3f} s  ({len(times)} runs)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=10)
    args = ap.parse_args()
    cache = tempfile.mkdtemp(prefix="planner-bench-")
    # Bytecode cached in a private prefix, as after `pip install .` (which compiles at install
    # time). With PYTHONDONTWRITEBYTECODE (this sandbox sets it) an editable install compiles
    # planner's sources on every run, ~0.1-0.25 s here: printed separately.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.update(PLANNER_CACHE_DIR=cache, PYTHONPYCACHEPREFIX=tempfile.mkdtemp(
        prefix="planner-bench-pyc-"))
    nocache = {**os.environ, "PLANNER_CACHE_DIR": cache}  # as this shell has it
    subprocess.run([*MEASURE, "--", "true"], check=True, stderr=subprocess.DEVNULL, env=env)
    print(f"cpu count {os.cpu_count()}, load average {os.getloadavg()[0]:.2f}")
    print(_line("python -c pass", _times([sys.executable, "-c", "pass"], args.runs, env)))
    warm = _times([*MEASURE, "--", "true"], args.runs, env)
    print(_line("measure -- true (warm)", warm))
    if os.environ.get("PYTHONDONTWRITEBYTECODE"):
        print(_line("  ... bytecode not written", _times([*MEASURE, "--", "true"], args.runs,
                                                         nocache)))
    cold_runs = max(3, args.runs // 3)
    print(_line("measure -- true (cold)", _times([*MEASURE, "--", "true"], cold_runs, env,
                                                 fresh_cache=True)))
    print(_line("measure --meter codecarbon", _times([*MEASURE, "--meter", "codecarbon", "--",
                                                      "true"], cold_runs, env)))
    verdict = "meets" if statistics.median(warm) <= 1.0 else "MISSES"
    print(f"warm median {statistics.median(warm):.3f} s {verdict} the 1 s target")


if __name__ == "__main__":
    main()
