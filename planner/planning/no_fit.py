"""Why a sizing question has no answer, in one line: no layout splits the job, or none fits
in memory; the nearest device counts that would, and the best layout without the user's
degrees. Also the check of the degrees the user gave, before a search would silently find
nothing. The search itself is sizing's."""

from __future__ import annotations

from typing import Any

import numpy as np

from planner.estimators.layout import check_layout
from planner.planning.resolve import Request, parallelism_spec, training_spec
from planner.planning.search import Candidates, device_grid
from planner.planning.sizing import Question, _row, _row_from, _search, outcomes
from planner.units import GIB
from planner.vocab import LAYOUT_FLAGS, layout_extras


def describe_layout(row: dict[str, Any]) -> str:
    """'tp 8 pp 4 cp 1 ep 1 dp 64, ZeRO-1, micro-batch 1, recompute selective, optimizer
    sharded over 8, 8 replicas, 2 virtual stages' (the shard-group words are vocab's)."""
    text = (f"tp {row['tp']} pp {row['pp']} cp {row['cp']} ep {row['ep']} dp {row['dp']}, "
            f"ZeRO-{row['zero_stage']}, micro-batch {row['micro_batch_size']}, "
            f"recompute {row['recompute']}")
    text += "".join(f", {x}" for x in layout_extras(row))
    return text + (f", {row['virtual_stages']} virtual stages" if row["virtual_stages"] > 1
                   else "")


def _given(req: Request) -> str:
    return " ".join(f"{LAYOUT_FLAGS[k]} {v}" for k, v in req.given_degrees().items())


def no_fit_message(req: Request, q: Question, counts: list[int], c: Candidates) -> str:
    """Why nothing fits, the fewest devices that would, and the closest layout here."""
    hw, given = req.hw, _given(req)
    where = f"{counts[0]}" if q.kind == "devices" else f"at most {q.max_devices}"
    if c.closest is None and c.searched:  # nothing to fit: no layout splits the job here
        why = sorted(((n, r) for r, n in c.rejected.items() if n), reverse=True)[:2]
        batch = req.training.get("global_batch_size")
        msg = (f"no layout of {req.model.name} on {where} x {hw.name}"
               + (f" with {given}" if given else "") + " divides its "
               + (f"{batch}-sequence batch" if batch else "batch")
               + f" and {req.model.num_layers} layers ({c.searched:,} tried; "
               + "; ".join(f"{r}: {n:,}" for n, r in why) + ")")
        return msg + fit_hints(req, q, counts)
    msg = (f"{req.model.name} does not fit on {where} x {hw.name} "
           f"({hw.memory_bytes / GIB:.0f} GiB)" + (f" with {given}" if given else ""))
    if c.closest is not None:
        row = _row_from(c.closest)
        msg += (f": the closest layout needs {c.closest['memory_bytes'] / GIB:.1f} GiB per "
                f"device ({describe_layout(row)})")
    return msg + fit_hints(req, q, counts)


def fit_hints(req: Request, q: Question, counts: list[int]) -> str:
    """'; the fewest devices that fit: N[; without your degrees the best layout is ...]'."""
    hw, given, msg = req.hw, _given(req), ""
    node = int(hw.devices_per_node.value)
    probe = _search(req, device_grid(node, 1 << 20, min_devices=max(counts) + 1))
    # a fixed count that no layout splits (3,072 GPUs for a 2,048-sequence batch) can sit
    # between counts that fit: name the one below too, not only the next one up
    below = _search(req, device_grid(node, max(counts) - 1)) if q.kind == "devices" and \
        max(counts) > 1 else probe[:0]
    if len(probe) and len(below):
        msg += (f"; the nearest device counts that fit: {int(below.arrays['devices'].max())}"
                f" and {int(probe.arrays['devices'].min())}")
        msg += f" with {given}" if given else ""
    elif len(probe):
        msg += f"; the fewest devices that fit: {int(probe.arrays['devices'].min())}"
        msg += f" with {given}" if given else ""
    elif given:
        msg += "; no device count up to 1M fits with these degrees"
    if given and q.kind == "devices":
        free = _search(req, counts, relax=True)
        if len(free):
            out = outcomes(req, free)
            i = int(np.argmin(out["days"]))
            msg += (f"; without them the best layout on {counts[0]} devices is "
                    f"{describe_layout(_row(free, out, i))}")
    return msg


def check_given(req: Request, devices: int | None) -> None:
    """The degrees the user gave, checked as `estimate` checks a full layout (one line that
    names the rule), before a search would silently find nothing."""
    given = req.given_degrees()
    if not given:
        return
    deg = {k: given.get(k, 1) for k in ("tp", "pp", "cp", "ep")}
    v = given.get("virtual_stages", 1) if "pp" in given else 1
    n = devices or deg["tp"] * deg["pp"] * deg["cp"] * deg["ep"]
    par = parallelism_spec(req, n, **deg, virtual_stages=v,
                           pipeline_schedule="interleaved" if v > 1 else "1f1b")
    mb = given.get("micro_batch_size", 1)
    complete = devices and {"tp", "pp", "cp", "micro_batch_size"} <= set(given)
    batch = req.training["global_batch_size"] if complete and req.batch_given else par.dp * mb
    check_layout(req.model, training_spec(req, micro_batch_size=mb, global_batch_size=batch),
                 par, req.hw)
