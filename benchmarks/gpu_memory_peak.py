"""What is alive at the peak of a training step on a GPU, by allocation site.

Needs a CUDA GPU. Records the caching allocator's history over one training step of a preset
(bf16, fused AdamW, as `planner validate` runs it), replays allocations and frees to find the
peak, and prints one JSON object: peak bytes, the bytes alive at the start of the step
(weights, gradients, optimizer state) and the live allocations at the peak grouped by where
they were made (the innermost planner frame and the innermost ATen/autograd frame).

  python benchmarks/gpu_memory_peak.py llama3.2-1b:4:2048
"""

from __future__ import annotations

import json
import sys
from collections import Counter

import torch

from planner.catalog.catalog import load_model
from planner.profiling.model import build_model
from planner.profiling.probes import make_batch


def _site(frames: list[dict]) -> str:
    py = next((f"{f['filename'].rsplit('/', 1)[-1]}:{f['line']} {f['name']}" for f in frames
               if "planner/" in f.get("filename", "")), "")
    op = next((f["name"][:90] for f in frames
               if any(k in f.get("name", "") for k in ("Backward", "at::native", "at::_ops"))),
              "")
    return f"{py} | {op}"


def peak(name: str, mb: int, seq: int) -> dict:
    spec = load_model(name)
    model = build_model(spec, "cuda", torch.bfloat16)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    tokens, targets = make_batch(spec.vocab_size, mb, seq, "cuda")

    def step():
        model(tokens, targets).backward()
        opt.step()
        opt.zero_grad(set_to_none=False)

    step()
    torch.cuda.synchronize()
    resident = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    torch.cuda.memory._record_memory_history(max_entries=200_000, stacks="all")
    step()
    torch.cuda.synchronize()
    snap = torch.cuda.memory._snapshot()
    torch.cuda.memory._record_memory_history(enabled=None)
    live: dict[int, tuple[int, str]] = {}
    level = best = 0
    best_live: dict[int, tuple[int, str]] = {}
    for ev in snap["device_traces"][0]:
        if ev["action"] == "alloc":
            live[ev["addr"]] = (ev["size"], _site(ev.get("frames", [])))
            level += ev["size"]
            if level > best:
                best, best_live = level, dict(live)
        elif ev["action"] in ("free_completed",) and ev["addr"] in live:
            level -= live.pop(ev["addr"])[0]
    by_site: Counter = Counter()
    for size, site in best_live.values():
        by_site[site] += size
    return {"model": name, "micro_batch": mb, "seq_len": seq,
            "max_memory_allocated": torch.cuda.max_memory_allocated(),
            "resident_at_step_start": resident, "peak_above_start_replayed": best,
            "live_at_peak_by_site_bytes": dict(by_site.most_common(25))}


if __name__ == "__main__":
    for item in sys.argv[1:]:
        n, b, s = item.split(":")
        print(json.dumps(peak(n, int(b), int(s))), flush=True)
        torch.cuda.empty_cache()
