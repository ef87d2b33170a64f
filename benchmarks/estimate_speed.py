"""Speed of `planner estimate`: cold start of the command, and time per estimate in-process.

    python benchmarks/estimate_speed.py

Targets on a 2-core machine (median of 10 process runs): cold start under 0.3 s with every
layout degree given (no search, numpy never imported), under 0.45 s when the layout is searched
(the built-in default); in-process `planner.estimate(...)` with a full layout under 0.3 ms. The interpreter's own start-up (`python -c pass`) is printed
too, since on some machines it is most of the cold start. The process runs use a fresh parse
cache (planner/catalog/parse_cache.py) in a temporary directory: the first run parses the
YAML and fills it (printed separately, median of 5 fresh caches); the 10 timed runs find it
warm, as every run after a user's first does. Where planner's bytecode is not cached (an
editable install with PYTHONDONTWRITEBYTECODE set, as in some sandboxes) every run compiles
its sources again, about 45 ms here; `pip install .` compiles them at install time.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time

# Every layout degree of the built-in plan, so `planner estimate` searches nothing.
FULL_LAYOUT = ["--tp", "1", "--pp", "1", "--cp", "1", "--zero", "3", "--micro-batch", "1",
               "--recompute", "selective"]


def _median_run(argv: list[str], runs: int = 10, env: dict | None = None) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, env=env)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    searched = [sys.executable, "-m", "planner", "estimate"]
    estimate = [*searched, *FULL_LAYOUT]
    with tempfile.TemporaryDirectory() as tmp:
        first = []
        for i in range(5):  # each with an empty parse cache
            env = {**os.environ, "PLANNER_CACHE_DIR": os.path.join(tmp, str(i))}
            first.append(_median_run(estimate, 1, env))
        env = {**os.environ, "PLANNER_CACHE_DIR": os.path.join(tmp, "0")}  # warm now
        bare = _median_run([sys.executable, "-c", "pass"])
        imports = _median_run([sys.executable, "-c", "import planner.cli"], env=env)
        cold = _median_run(estimate, env=env)
        cold_searched = _median_run(searched, env=env)
    import importlib.util

    where = os.path.dirname(importlib.util.find_spec("planner").origin)
    cached = os.path.isdir(os.path.join(where, "__pycache__"))
    print(f"planner imported from {where} (bytecode cached: {'yes' if cached else 'no'}; "
          f"PYTHONDONTWRITEBYTECODE={os.environ.get('PYTHONDONTWRITEBYTECODE', '')!r})")
    print(f"python -c pass (interpreter start-up)  median of 10: {bare * 1e3:7.1f} ms")
    print(f"import planner.cli                     median of 10: {imports * 1e3:7.1f} ms")
    print(f"planner estimate, first run (parses the YAML)  median of 5: "
          f"{statistics.median(first) * 1e3:7.1f} ms")
    print(f"planner estimate (cold start)          median of 10: {cold * 1e3:7.1f} ms"
          f"   target < 300 ms")
    print(f"  of which after interpreter start-up (click, pydantic, planner): "
          f"{(cold - bare) * 1e3:.1f} ms  ({' '.join(FULL_LAYOUT)})")
    print(f"planner estimate, layout searched      median of 10: {cold_searched * 1e3:7.1f} ms"
          f"   target < 450 ms")

    import planner

    args = dict(model="llama3-70b", hardware="h100-sxm", devices=2048, tokens=15e12,
                region="aws:us-east-1", seq_len=8192, global_batch_size=2048, tp=8, pp=4, cp=1,
                zero_stage=1, micro_batch_size=1, recompute="selective", virtual_stages=1)
    planner.estimate(**args)  # warm caches
    n = 2000
    t0 = time.perf_counter()
    for _ in range(n):
        planner.estimate(**args)
    per = (time.perf_counter() - t0) / n
    print(f"planner.estimate(...) in-process, llama3-70b on 2048 x h100-sxm, full layout: "
          f"{per * 1e3:.3f} ms per estimate (n={n})   target < 0.3 ms")


if __name__ == "__main__":
    main()
