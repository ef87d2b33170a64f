"""Layout search: enumerate every valid layout, drop those that do not fit, rank the rest.

All candidate layouts for one or many device counts are evaluated at once with numpy arrays
through the same memory and step-time models `planner estimate` uses (estimators/vec.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from planner.estimators.memory import MemoryDefaults, memory_terms
from planner.estimators.params import ParamCount, count_params
from planner.estimators.step_time import (
    COMPONENTS, PerfParams, flops_inputs, step_seconds, step_time_terms,
)
from planner.estimators.vec import Degrees
from planner.planning.defaults import round_batch
from planner.specs import HardwareProfile, ModelSpec, TrainingSpec
from planner.vocab import RECOMPUTE, ZERO_STAGES


@dataclass(frozen=True)
class SearchSpace:
    """The choices a search varies besides the device count."""

    micro_batches: tuple[int, ...] = (1, 2, 4, 8)
    recompute: tuple[str, ...] = RECOMPUTE
    zero_stages: tuple[int, ...] = ZERO_STAGES
    virtual_stages: tuple[int, ...] = (1, 2, 4, 8)
    max_pp: int = 64
    max_cp: int = 16
    fixed: dict = field(default_factory=dict)  # degree name (vocab.DEGREE_FLAGS) -> value
    sequence_parallel: bool | None = None  # None: on when tp > 1
    gpipe: bool = False  # GPipe schedule instead of 1F1B / interleaved
    refine: bool = True  # expand the best layouts (see refinements)
    dp_comm_overlap: bool = True  # data-parallel collectives prefetched behind compute
    tp_comm_overlap: bool = False
    framework: int = 0  # code: index in vocab.FRAMEWORKS
    offload: int = 0  # code: index in vocab.OFFLOADS


@dataclass
class Candidates:
    """Evaluated layouts (parallel arrays) and why the others were rejected."""

    arrays: dict[str, np.ndarray]
    rejected: dict[str, int]
    searched: int
    closest: dict | None = None  # the smallest-memory layout evaluated (it may not fit)

    def __len__(self) -> int:
        return len(self.arrays["devices"])

    def take(self, idx) -> Candidates:
        return Candidates({k: v[idx] for k, v in self.arrays.items()}, self.rejected,
                          self.searched, self.closest)


def _divisors(n: int, cap: int | None = None) -> list[int]:
    return [d for d in range(1, (cap or n) + 1) if n % d == 0]


def degree_options(model: ModelSpec, training: TrainingSpec, hw: HardwareProfile,
                   space: SearchSpace) -> dict[str, list[int]]:
    """Per-degree values that are valid for the model alone (before the device count)."""
    domain = int(hw.scale_up_domain_devices.value)
    g = model.kv_heads
    tp = [t for t in _divisors(model.num_heads, domain)
          if model.mla or g % t == 0 or t % g == 0]
    opts = {
        "tp": tp,
        "pp": sorted(set(_divisors(model.num_layers, space.max_pp)) |
                     {q for q in (2, 4, 8, 16, 32, 64) if q <= min(space.max_pp,
                                                               model.num_layers // 2)}),
        "cp": [c for c in _divisors(training.seq_len, space.max_cp) if c & (c - 1) == 0],
        "ep": _divisors(model.moe.num_experts) if model.moe else [1],
        "micro_batch_size": list(space.micro_batches),
        "recompute": [RECOMPUTE.index(r) for r in space.recompute],
        "zero_stage": list(space.zero_stages),
        "virtual_stages": list(space.virtual_stages),
    }
    for key, value in space.fixed.items():
        if key in opts:
            opts[key] = [RECOMPUTE.index(value) if key == "recompute" else value]
    return opts


def _grid(axes: list[np.ndarray]) -> list[np.ndarray]:
    """Cartesian product of 1-D arrays as flat columns (first axis varies slowest)."""
    return [a.ravel() for a in np.meshgrid(*axes, indexing="ij")]


def enumerate_layouts(model: ModelSpec, training: TrainingSpec, hw: HardwareProfile,
                      device_counts: list[int], space: SearchSpace,
                      batch_fixed: bool) -> tuple[dict[str, np.ndarray], dict[str, int], int]:
    """Every combination of degrees for each device count, with rejection counts.

    The product is built in two steps so that the many (devices, tp, pp, cp) combinations
    that do not divide the device count are counted but never expanded.
    """
    opts = degree_options(model, training, hw, space)
    outer_names = ["devices", "tp", "pp", "cp"]
    inner_names = ["ep", "micro_batch_size", "recompute", "zero_stage", "virtual_stages"]
    outer = _grid([np.asarray(device_counts, dtype=np.int64)] +
                  [np.asarray(opts[k], dtype=np.int64) for k in outer_names[1:]])
    inner = _grid([np.asarray(opts[k], dtype=np.int64) for k in inner_names])
    n_inner = len(inner[0])
    searched = len(outer[0]) * n_inner
    n, t, p, c = outer
    ok = n % (t * p * c) == 0
    rejected = {"tp x pp x cp does not divide the device count": int((~ok).sum()) * n_inner}
    rows = np.nonzero(ok)[0]
    cols = {k: np.repeat(v[rows], n_inner) for k, v in zip(outer_names, outer)}
    cols.update({k: np.tile(v, len(rows)) for k, v in zip(inner_names, inner)})
    n, t, p, c = (cols[k] for k in outer_names)
    e, mb, v = cols["ep"], cols["micro_batch_size"], cols["virtual_stages"]
    dp = n // (t * p * c)
    checks = [
        (dp % e == 0, "ep does not divide dp"),
        ((v == 1) | ((p > 1) & (p * v <= model.num_layers)),
         "virtual stages need pp > 1 and a layer per model chunk"),
        ((space.offload == 0) | (cols["zero_stage"] >= 1), "offload needs ZeRO 1-3"),
    ]
    unit = dp * mb
    target = training.global_batch_size
    if batch_fixed:
        batch = np.full_like(n, target)
        checks.append((target % unit == 0, "global batch not divisible by dp x micro-batch"))
    else:  # round the default batch to the nearest multiple of dp x micro-batch
        batch = round_batch(target, unit).astype(np.int64)
        checks.append((batch <= 2 * target,
                       "dp x micro-batch exceeds twice the default global batch"))
    keep = np.ones(len(n), dtype=bool)
    for mask, reason in checks:
        rejected[reason] = int((keep & ~mask).sum())
        keep &= mask
    shard = space.fixed.get("dp_shard")
    shard = dp if shard is None else np.full_like(dp, shard)
    mask = dp % shard == 0
    rejected["dp_shard does not divide dp"] = int((keep & ~mask).sum())
    keep &= mask
    reshard = np.full_like(dp, int(space.fixed.get("reshard_after_forward", True)))
    cols.update(dp=dp, global_batch_size=batch, dp_shard=shard, reshard_after_forward=reshard)
    idx = np.nonzero(keep)[0]
    return {k: val[idx] for k, val in cols.items()}, rejected, searched


def evaluate(model: ModelSpec, training: TrainingSpec, hw: HardwareProfile, cols: dict,
             perf: PerfParams, mem_defaults: MemoryDefaults,
             params: ParamCount | None = None,
             space: SearchSpace = SearchSpace()) -> dict[str, np.ndarray]:
    """Memory and step time for arrays of layouts."""
    params = params or count_params(model)
    sp = (cols["tp"] > 1) if space.sequence_parallel is None else \
        np.full(len(cols["tp"]), space.sequence_parallel)
    v = cols["virtual_stages"]
    schedule = np.full(len(v), 2) if space.gpipe else np.where(v > 1, 1, 0)
    deg = Degrees(**{k: cols[k] for k in (
        "devices", "tp", "pp", "cp", "ep", "dp", "zero_stage", "micro_batch_size", "recompute",
        "virtual_stages", "global_batch_size", "dp_shard", "reshard_after_forward")},
        sequence_parallel=sp.astype(np.int64), pipeline_schedule=schedule,
        dp_comm_overlap=int(space.dp_comm_overlap), tp_comm_overlap=int(space.tp_comm_overlap),
        framework=space.framework, offload=space.offload)
    mem = memory_terms(model, training, deg, mem_defaults, params)
    fl = flops_inputs(model, training, params)
    terms = step_time_terms(model, training, deg, hw, params, fl, perf)
    step = step_seconds(terms)
    tokens = cols["global_batch_size"] * training.seq_len
    peak = hw.peak_flops_per_s(training.precision)
    out = {f"{k}_s": np.broadcast_to(terms[k], step.shape) for k in COMPONENTS}
    rc = cols["recompute"]
    out.update(memory_bytes=mem["total"], step_s=step,
               hw_flops_per_token=fl["model"] + fl["attention_fwd"] * (rc >= 1)
               + 2 * fl["layers_matmul"] * (rc == 2),
               mfu=fl["model"] * tokens / (step * cols["devices"] * peak),
               tokens_per_s=tokens / step)
    return out


def search(model: ModelSpec, training: TrainingSpec, hw: HardwareProfile,
           device_counts: list[int], space: SearchSpace = SearchSpace(),
           batch_fixed: bool = True, perf: PerfParams = PerfParams(),
           mem_defaults: MemoryDefaults = MemoryDefaults()) -> Candidates:
    """Evaluate all valid layouts on the given device counts; keep those that fit."""
    cols, rejected, searched = enumerate_layouts(model, training, hw, device_counts, space,
                                                 batch_fixed)
    if len(cols["devices"]) == 0:
        return Candidates(cols, rejected, searched)
    params = count_params(model)
    res = evaluate(model, training, hw, cols, perf, mem_defaults, params, space)
    fits = res["memory_bytes"] <= hw.memory_bytes
    rejected["does not fit in device memory"] = int((~fits).sum())
    merged = {**cols, **res}
    low = int(np.argmin(res["memory_bytes"]))
    closest = {k: np.asarray(v)[low].item() for k, v in merged.items()}
    kept = {k: np.asarray(v)[fits] for k, v in merged.items()}
    extra = refinements(model, hw, kept, space) if space.refine else {"devices": []}
    if len(extra["devices"]):
        more = evaluate(model, training, hw, extra, perf, mem_defaults, params, space)
        ok = more["memory_bytes"] <= hw.memory_bytes
        searched += len(ok)
        rejected["does not fit in device memory"] += int((~ok).sum())
        kept = {k: np.concatenate([kept[k], np.asarray({**extra, **more}[k])[ok]])
                for k in kept}
    return Candidates(kept, rejected, searched, closest)


MAX_VIRTUAL_STAGES = 32
NEAR_BEST = 0.01  # the answer's tie window (sizing.headroom_order, spread.near_best_factors)
RISK_MARGIN = 0.05  # the answer's memory-risk window (sizing.headroom_order)
_FAMILY = ("devices", "tp", "pp", "cp", "ep", "zero_stage", "micro_batch_size", "recompute")


def refinement_seeds(fit: dict[str, np.ndarray], space: SearchSpace) -> np.ndarray:
    """The fitting layouts whose refinements could beat the best of their device count, one
    per family (the degrees a refinement keeps). A refinement changes only the data-parallel
    collectives (HSDP, kept weights), the bubble and the pipeline p2p (interleaving), and each
    of those is >= 0, so a layout's step less them, per sequence trained (how the answer
    ranks layouts on one device count), bounds every refinement of it from below; the
    optimizer step only grows under HSDP. The answer also picks within windows of the best
    (the 1% tie window, most headroom first; safe layouts within 5% when the tied ones are at
    memory risk; the range widened over the tied), so seeds are taken up to those windows
    above the best. Ranking seeds by their own step instead missed the layouts held back by
    full-width collectives (Llama-3-8B on 8,192 H100: 816K device-hours found, 572K there)."""
    gbs = fit["global_batch_size"]
    key = fit["step_s"] / gbs
    bound = (fit["step_s"] - fit["dp_comm_s"] - fit["bubble_s"] - fit["pp_comm_s"]) / gbs
    counts, at = np.unique(fit["devices"], return_inverse=True)
    best = np.full(len(counts), np.inf)
    np.minimum.at(best, at, key)
    cand = np.nonzero(bound < best[at] * (1 + NEAR_BEST) * (1 + RISK_MARGIN))[0]
    if not len(cand):
        return cand
    fixed_v = "virtual_stages" in space.fixed
    cols = [fit[c][cand] for c in _FAMILY]
    # interleaving depth is re-enumerated unless fixed (or there is no pipeline)
    cols.append(np.where(fixed_v | (fit["pp"][cand] == 1), fit["virtual_stages"][cand], 0))
    cols += [fit["dp_shard"][cand], fit["reshard_after_forward"][cand]]
    order = np.lexsort((key[cand], *cols[::-1]))  # by family, then fastest first
    fam = np.stack([c[order] for c in cols], axis=1)
    first = np.ones(len(order), dtype=bool)
    first[1:] = np.any(fam[1:] != fam[:-1], axis=1)
    return cand[order[first]]


def refinements(model: ModelSpec, hw: HardwareProfile, fit: dict[str, np.ndarray],
                space: SearchSpace) -> dict[str, np.ndarray]:
    """Variants of the fitting layouts that could beat their device count's best
    (refinement_seeds) that the base grid does not hold: every interleaving depth v that
    divides the layers per stage (the base grid tries 1, 2, 4, 8; Megatron's 530B run used 3,
    Calculon's best GPT-3 layouts one layer per chunk), HSDP shard groups of 1, 2, 4 and 8
    scale-up domains (ZeRO 1-3), and keeping gathered weights from forward to backward
    (ZeRO 3). Degrees the user fixed stay fixed (HSDP's shard group and resharding too)."""
    if not len(fit["devices"]):
        return {k: v[:0] for k, v in fit.items()}
    domain = int(hw.scale_up_domain_devices.value)
    picks = refinement_seeds(fit, space)
    rows, vs, shards, keeps = [], [], [], []
    base_v = ({space.fixed["virtual_stages"]} if "virtual_stages" in space.fixed else
              set(space.virtual_stages))
    for i in picks:
        p, dp = int(fit["pp"][i]), int(fit["dp"][i])
        z, unit = int(fit["zero_stage"][i]), int(fit["tp"][i] * fit["cp"][i])
        own_shard, own_keep = int(fit["dp_shard"][i]), int(fit["reshard_after_forward"][i])
        v_opts = [int(fit["virtual_stages"][i])]
        if "virtual_stages" not in space.fixed and p > 1:
            per = -(-model.num_layers // p)
            v_opts = [v for v in range(1, min(per, MAX_VIRTUAL_STAGES) + 1)
                      if per % v == 0 and p * v <= model.num_layers]
        s_opts = [own_shard]
        if "dp_shard" not in space.fixed and z >= 1:
            s_opts += sorted({k * domain // unit for k in (1, 2, 4, 8)
                              if k * domain >= unit and dp % (k * domain // unit) == 0
                              and k * domain // unit < dp} - {own_shard})
        r_opts = [own_keep] + ([1 - own_keep] if z == 3 and
                               "reshard_after_forward" not in space.fixed else [])
        for v in v_opts:
            for sh in s_opts:
                for r in r_opts:
                    if v in base_v and sh == own_shard and r == own_keep:
                        continue  # already in the base grid
                    rows.append(i)
                    vs.append(v)
                    shards.append(sh)
                    keeps.append(r)
    idx = np.asarray(rows, dtype=np.int64)
    out = {k: v[idx] for k, v in fit.items() if k in _LAYOUT_COLUMNS}
    out.update(virtual_stages=np.asarray(vs, dtype=np.int64),
               dp_shard=np.asarray(shards, dtype=np.int64),
               reshard_after_forward=np.asarray(keeps, dtype=np.int64))
    return out


_LAYOUT_COLUMNS = ("devices", "tp", "pp", "cp", "ep", "dp", "zero_stage", "micro_batch_size",
                   "recompute", "virtual_stages", "global_batch_size", "dp_shard",
                   "reshard_after_forward")


def device_grid(node: int, max_devices: int, min_devices: int = 1) -> list[int]:
    """Device counts to try: 1, 2, 4 below a node; then whole nodes: every power of two,
    three times a power of two, and a ~1.25x geometric ladder in between."""
    counts = {d for d in (1, 2, 4) if d < node}
    k = 1
    while k * node <= max_devices:
        counts.update({k * node, 3 * k * node})
        k *= 2
    k = 1
    while k * node <= max_devices:
        counts.add(k * node)
        k = max(k + 1, int(k * 1.25))
    return sorted(c for c in counts if min_devices <= c <= max_devices)
