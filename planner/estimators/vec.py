"""Arithmetic that works the same on Python numbers and numpy arrays.

The memory and step-time models are written once, with these helpers instead of branches, so
`planner estimate` evaluates one layout with plain floats (no numpy import at start-up) and
`planner plan` evaluates a million layouts at once with arrays.
"""

from __future__ import annotations

from typing import Any

from planner.results import frozen
from planner.vocab import FRAMEWORKS, OFFLOADS, RECOMPUTE, SCHEDULES


def vmax(a: Any, b: Any) -> Any:
    """Elementwise max of numbers or arrays."""
    return a + (b - a) * (b > a)


def vmin(a: Any, b: Any) -> Any:
    """Elementwise min of numbers or arrays."""
    return a + (b - a) * (b < a)


@frozen
class Degrees:
    """One layout (numbers) or many (equal-length arrays): the degrees that a search varies.

    Fields carry the spec names; closed vocabularies are integer codes (index in planner.vocab).
    """

    devices: Any
    tp: Any
    pp: Any
    cp: Any
    ep: Any
    dp: Any
    zero_stage: Any  # 0-3
    micro_batch_size: Any  # sequences
    recompute: Any  # code: 0 none, 1 selective, 2 full
    sequence_parallel: Any  # 1 when on
    pipeline_schedule: Any  # code: 0 1f1b, 1 interleaved, 2 gpipe
    virtual_stages: Any  # model chunks per pipeline rank
    global_batch_size: Any  # sequences per optimizer step
    dp_shard: Any = None  # ZeRO/FSDP shard group within dp; None: all of dp (no HSDP)
    reshard_after_forward: Any = 1  # ZeRO-3/FSDP: 1 re-gathers parameters for backward
    dp_comm_overlap: Any = 1  # 1: DP collectives prefetched/bucketed behind compute
    tp_comm_overlap: Any = 0  # 1: TP collectives overlapped with GEMMs
    framework: Any = 0  # code: index in vocab.FRAMEWORKS
    offload: Any = 0  # code: index in vocab.OFFLOADS

    @property
    def shard(self) -> Any:
        """Data-parallel ranks one ZeRO/FSDP shard group spans."""
        return self.dp if self.dp_shard is None else self.dp_shard

    @property
    def micro_batches(self) -> Any:
        """Micro-batches per pipeline per step: B / (dp x b)."""
        return self.global_batch_size / (self.dp * self.micro_batch_size)

    @classmethod
    def from_specs(cls, training, par) -> Degrees:
        return cls(
            devices=par.devices, tp=par.tp, pp=par.pp, cp=par.cp, ep=par.ep, dp=par.dp,
            zero_stage=par.zero_stage, micro_batch_size=training.micro_batch_size,
            recompute=RECOMPUTE.index(training.recompute), sequence_parallel=int(par.sp),
            pipeline_schedule=SCHEDULES.index(par.pipeline_schedule),
            virtual_stages=par.virtual_stages, global_batch_size=training.global_batch_size,
            dp_shard=par.shard, reshard_after_forward=int(par.reshard_after_forward),
            dp_comm_overlap=int(par.dp_comm_overlap), tp_comm_overlap=int(par.tp_comm_overlap), framework=FRAMEWORKS.index(par.framework),
            offload=OFFLOADS.index(par.offload),
        )
