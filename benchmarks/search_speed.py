"""Speed of the layout search (`planner plan`).

    python benchmarks/search_speed.py

Targets on this 2-core machine: at least 1,000,000 candidate layouts per second, and a full
search for llama3.1-405b on 16,384 H100s (with the refinement around the best layouts: every
interleaving depth, HSDP shard groups, FSDP resharding) under 1 s. Two rates are printed: candidates
searched (every combination of degrees, including those rejected by divisibility before any
arithmetic) and layouts fully evaluated (memory + step-time model). For scale: Calculon, the
most complete open performance model, evaluates about 84 layouts per second on this machine.
"""

from __future__ import annotations

import time

import numpy as np

from planner.planning.resolve import resolve
from planner.catalog.catalog import load_hardware, load_model
from planner.estimators.memory import MemoryDefaults
from planner.estimators.step_time import PerfParams
from planner.planning.search import device_grid, enumerate_layouts, evaluate, search, SearchSpace
from planner.planning.sizing import Question, answer
from planner.specs import TrainingSpec


def _timed(fn, repeat=5):
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> None:
    model, hw = load_model("llama3.1-405b"), load_hardware("h100-sxm")
    training = TrainingSpec(tokens=15e12, seq_len=8192, global_batch_size=2048)

    secs, c = _timed(lambda: search(model, training, hw, [16384]))
    print(f"search llama3.1-405b on 16,384 x h100-sxm: {c.searched:,} candidates, "
          f"{len(c):,} fit, {secs * 1e3:.1f} ms   (target < 1 s)")
    req = resolve("llama3.1-405b", "h100-sxm", "15T", seq_len=8192, global_batch_size=2048)
    secs, r = _timed(lambda: answer(req, Question("devices", 16384)), repeat=3)
    print(f"planner plan --devices 16384 (search + full estimate of the best): "
          f"{secs * 1e3:.1f} ms")

    grid = device_grid(8, 65536)
    secs, c = _timed(lambda: search(model, training, hw, grid, batch_fixed=False), repeat=3)
    print(f"search over {len(grid)} device counts (deadline/budget questions): "
          f"{c.searched:,} candidates in {secs:.3f} s = {c.searched / secs / 1e6:.1f}M "
          f"candidates/s   (target >= 1M/s)")

    cols, _, _ = enumerate_layouts(model, training, hw, grid, SearchSpace(), False)
    n = len(cols["devices"])
    secs, _ = _timed(lambda: evaluate(model, training, hw, cols, PerfParams(),
                                      MemoryDefaults()), repeat=3)
    print(f"full evaluation (memory + step time) of {n:,} valid layouts: {secs:.3f} s = "
          f"{n / secs / 1e6:.2f}M layouts/s")
    big = {k: np.tile(v, 8) for k, v in cols.items()}
    secs, _ = _timed(lambda: evaluate(model, training, hw, big, PerfParams(),
                                      MemoryDefaults()), repeat=3)
    print(f"full evaluation of {len(big['devices']):,} layouts: {secs:.3f} s = "
          f"{len(big['devices']) / secs / 1e6:.2f}M layouts/s")


if __name__ == "__main__":
    main()
