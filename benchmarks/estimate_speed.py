"""Speed of `planner estimate`: cold start of the command, and time per estimate in-process.

    python benchmarks/estimate_speed.py

Targets on a 2-core machine: cold start under 0.3 s (median of 10 process runs) and under
0.3 ms per estimate in-process. The interpreter's own start-up (`python -c pass`) is printed
too, since on some machines it is most of the cold start.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time


def _median_run(argv: list[str], runs: int = 10) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    bare = _median_run([sys.executable, "-c", "pass"])
    imports = _median_run([sys.executable, "-c", "import planner.cli"])
    cold = _median_run([sys.executable, "-m", "planner", "estimate"])
    print(f"python -c pass (interpreter start-up)  median of 10: {bare * 1e3:7.1f} ms")
    print(f"import planner.cli                     median of 10: {imports * 1e3:7.1f} ms")
    print(f"planner estimate (cold start)          median of 10: {cold * 1e3:7.1f} ms"
          f"   target < 300 ms")
    print(f"  of which planner's own work: {(cold - bare) * 1e3:.1f} ms")

    import planner
    from planner.catalog.regions import grid_factor
    from planner.plan import estimate
    from planner.specs import ParallelismSpec, TrainingSpec

    model, hw = planner.load_model("llama3-70b"), planner.load_hardware("h100-sxm")
    training = TrainingSpec(tokens=15e12, seq_len=8192, global_batch_size=2048)
    par = ParallelismSpec(devices=2048, tp=8, pp=4)
    grid = grid_factor("aws:us-east-1")
    estimate(model, hw, training, par, grid=grid)  # warm caches
    n = 2000
    t0 = time.perf_counter()
    for _ in range(n):
        estimate(model, hw, training, par, grid=grid)
    per = (time.perf_counter() - t0) / n
    print(f"estimate() in-process, llama3-70b on 2048 x h100-sxm: {per * 1e3:.3f} ms per "
          f"estimate (n={n})   target < 0.3 ms")


if __name__ == "__main__":
    main()
