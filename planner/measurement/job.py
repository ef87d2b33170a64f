"""Which job, node and rank a ``planner measure`` belongs to, and whether it meters its node.

In a torchrun, SLURM or MPI job every rank (or every node's launcher) may run under
``planner measure``. One process per node meters the node (host once, its GPUs once): the
process with local rank 0, elected from the launcher's environment. The others run their
command and record a rank record with no energy, so the job's records still list every rank.

Read from the environment, first match wins for each field:

- job id: ``--job ID``; ``SLURM_JOB_ID``; ``TORCHELASTIC_RUN_ID``; ``PMIX_NAMESPACE`` (Open MPI
  5 / PMIx) or ``OMPI_MCA_ess_base_jobid`` (Open MPI 4);
- global rank: ``RANK`` (torchrun), ``SLURM_PROCID``, ``OMPI_COMM_WORLD_RANK``, ``PMI_RANK``;
- local rank: ``LOCAL_RANK`` (torchrun, deepspeed), ``SLURM_LOCALID``,
  ``OMPI_COMM_WORLD_LOCAL_RANK``, ``MPI_LOCALRANKID``;
- node: ``SLURM_NODEID``, ``GROUP_RANK`` (torchrun's node rank), else the host name;
- sizes: ``WORLD_SIZE`` / ``SLURM_NTASKS`` / ``OMPI_COMM_WORLD_SIZE``; nodes
  ``SLURM_JOB_NUM_NODES`` / ``SLURM_NNODES``, or world size / ``LOCAL_WORLD_SIZE`` (torchrun) /
  ``OMPI_COMM_WORLD_LOCAL_SIZE``.

``--job ID`` alone (no launcher) makes one process a one-rank job on its host.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from dataclasses import dataclass

from planner.errors import SpecError
from planner.results import Result

JOB_IDS = (("SLURM_JOB_ID", "slurm"), ("TORCHELASTIC_RUN_ID", "torchelastic"),
           ("PMIX_NAMESPACE", "mpi"), ("OMPI_MCA_ess_base_jobid", "mpi"))
RANKS = ("RANK", "SLURM_PROCID", "OMPI_COMM_WORLD_RANK", "PMI_RANK")
LOCAL_RANKS = ("LOCAL_RANK", "SLURM_LOCALID", "OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID")
NODES = ("SLURM_NODEID", "GROUP_RANK")
WORLD_SIZES = ("WORLD_SIZE", "SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE")
NODE_COUNTS = ("SLURM_JOB_NUM_NODES", "SLURM_NNODES")
LOCAL_SIZES = ("LOCAL_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_SIZE")


@dataclass(frozen=True)
class JobInfo(Result):
    """The job a record belongs to; ``meters_node`` says whether this process metered."""

    id: str
    scheduler: str  # slurm | torchelastic | mpi | explicit
    node: str  # node index as the launcher numbers it, else the host name
    rank: int | None  # global rank
    local_rank: int | None
    world_size: int | None
    num_nodes: int | None  # nodes the job has, when the launcher says
    meters_node: bool  # elected (local rank 0): this record carries the node's energy
    source: str  # the variables read, e.g. "SLURM_JOB_ID, SLURM_PROCID, SLURM_NODEID"


def _int(env: Mapping[str, str], names: tuple[str, ...], used: list[str]) -> int | None:
    for name in names:
        text = env.get(name, "").strip()
        if text:
            try:
                value = int(text)
            except ValueError:
                raise SpecError(f"{name}={text!r} is not a whole number (planner reads it "
                                "as a rank or size of the job)") from None
            used.append(name)
            return value
    return None


def detect_job(env: Mapping[str, str], explicit: str | None = None) -> JobInfo | None:
    """The job this process is part of, or None when there is none (not in a launcher and no
    --job); SpecError for a malformed rank variable."""
    used: list[str] = []
    job_id, scheduler = None, None
    if explicit is not None:
        if not explicit.strip():
            raise SpecError("--job needs a non-empty ID")
        job_id, scheduler = explicit.strip(), "explicit"
        used.append("--job")
    else:
        for name, kind in JOB_IDS:
            if env.get(name, "").strip():
                job_id, scheduler = env[name].strip(), kind
                used.append(name)
                break
    if job_id is None:
        return None
    rank = _int(env, RANKS, used)
    local = _int(env, LOCAL_RANKS, used)
    node = next((env[n].strip() for n in NODES if env.get(n, "").strip()), None)
    if node is not None:
        used.append(next(n for n in NODES if env.get(n, "").strip()))
    else:
        node = socket.gethostname()
    world = _int(env, WORLD_SIZES, used)
    nodes = _int(env, NODE_COUNTS, used)
    if nodes is None:
        per_node = _int(env, LOCAL_SIZES, used)
        if world and per_node:
            nodes = -(-world // per_node)
    return JobInfo(id=job_id, scheduler=scheduler, node=node, rank=rank, local_rank=local,
                   world_size=world, num_nodes=nodes, meters_node=local in (None, 0),
                   source=", ".join(used))
