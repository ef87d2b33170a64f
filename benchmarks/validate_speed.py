"""Wall time of the default `planner validate` on this machine (target: median <= 60 s).

    python benchmarks/validate_speed.py [--runs 3] [-- EXTRA VALIDATE ARGS]

Runs `python -m planner validate --format json` RUNS times in a row (stdout to a pipe, so
progress comes as plain lines on stderr) and prints each run's wall time, min / median / max,
the step time it measured and the load average before each run: this 2-core VM is shared and
its speed swings up to 2x, so a single run says little. It also checks that no
`USDT: ... profiler_start` line (torch's profiler debug output) reached stderr.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time


def main() -> None:
    args = sys.argv[1:]
    extra = args[args.index("--") + 1:] if "--" in args else []
    runs = int(args[args.index("--runs") + 1]) if "--runs" in args else 3
    times, leaks = [], 0
    for i in range(runs):
        load = os.getloadavg()[0]
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "planner", "validate", "--format", "json",
                               *extra], capture_output=True, text=True)
        took = time.perf_counter() - t0
        if proc.returncode != 0:
            sys.exit(f"run {i + 1} failed ({proc.returncode}): {proc.stderr[-2000:]}")
        rep = json.loads(proc.stdout)
        step = next((q["measured"] for q in rep["quantities"] if q["name"] == "step_time_s"),
                    None)
        leaks += sum(line.startswith("USDT:") for line in proc.stderr.splitlines())
        times.append(took)
        print(f"run {i + 1}: {took:.1f} s (load average {load:.2f} before; {rep['steps']} "
              f"steps after {rep['warmup']} warm-up, median step {step:.2f} s)", flush=True)
    med = statistics.median(times)
    print(f"planner validate: min {min(times):.1f} s  median {med:.1f} s  max {max(times):.1f} s "
          f"({runs} runs); {'meets' if med <= 60 else 'MISSES'} the 60 s target; "
          f"{leaks} USDT line(s) on stderr")


if __name__ == "__main__":
    main()
