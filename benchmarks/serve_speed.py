"""Speed of `planner serve`: cold start for one and for five hardware, and in-process time.

    python benchmarks/serve_speed.py

Targets (issue 14), median of 10 process runs with a warm parse cache: under 0.5 s for one
hardware, under 1 s for five. torch, numpy and matplotlib are never imported (without --plot).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time

from estimate_speed import _median_run  # the same timing loop (benchmarks/ is on sys.path)

ONE = ["serve", "--model", "llama3-70b", "--hardware", "h100-sxm", "--rate", "20/s",
       "--tpot", "40ms", "--precision", "fp8"]
FIVE = ["serve", "--model", "llama3-70b", "--hardware", "h100-sxm,h200,b200,mi300x,a100-80gb",
        "--tokens-per-day", "2B"]


def main() -> None:
    planner = [sys.executable, "-m", "planner"]
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "PLANNER_CACHE_DIR": tmp}
        _median_run([*planner, *FIVE], 1, env)  # fill the parse cache
        bare = _median_run([sys.executable, "-c", "pass"])
        one = _median_run([*planner, *ONE], env=env)
        five = _median_run([*planner, *FIVE], env=env)
    print(f"python -c pass (interpreter start-up)  median of 10: {bare * 1e3:7.1f} ms")
    print(f"planner serve, one hardware            median of 10: {one * 1e3:7.1f} ms"
          "   target < 500 ms")
    print(f"planner serve, five hardware           median of 10: {five * 1e3:7.1f} ms"
          "   target < 1000 ms")

    from planner.planning.serve import serve

    serve("llama3-70b", ["h100-sxm"], 1000, 500)  # warm caches
    n = 20
    t0 = time.perf_counter()
    for _ in range(n):
        serve("llama3-70b", ["h100-sxm"], 1000, 500, precision="fp8", load=("rate", 20.0),
              tpot_s=0.04)
    print(f"serve(...) in-process, one hardware: {(time.perf_counter() - t0) / n * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
