"""Read the output of an nccl-tests benchmark (all_reduce_perf, reduce_scatter_perf,
all_gather_perf; github.com/NVIDIA/nccl-tests; rccl-tests prints the same): who ran it and the
bus bandwidth it reached, for `planner calibration link`.

The parts read:

    #  Rank  0 Group  0 Pid   6899 on node-a device  0 [0000:04:00] NVIDIA H100 80GB HBM3
    ...
    #       size         count      type   redop    root     time   algbw   busbw #wrong ...
           8589934592    2147483648     float     sum      -1    47535  180.71  338.82  0 ...

One "Rank" line per GPU names its host, so the hosts give the nodes. The column header names
the columns (older versions have no ``root``); a row gives out-of-place then in-place figures.
The bus bandwidth (busbw, GB/s) is nccl-tests' own normalisation: the algorithm bandwidth times
2(n-1)/n for an all-reduce and (n-1)/n for the others (PERFORMANCE.md), the same factors the
step-time model charges, so one figure serves every collective.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

from planner.errors import SpecError

RANK_LINE = re.compile(r"^#\s*Rank\s+(\d+)\s+Group\s+\d+\s+Pid\s+\d+\s+on\s+(\S+)\s+device\s+"
                       r"\d+\s+\[[^\]]*\]\s+(.+?)\s*$")
TEST_NAME = re.compile(r"\b(all_reduce|reduce_scatter|all_gather|alltoall|broadcast|reduce|"
                       r"sendrecv|gather|scatter|hypercube)_perf\b")
COLLECTIVES = ("all_reduce", "reduce_scatter", "all_gather")  # the model's collectives


@dataclass(frozen=True)
class NcclTestsResult:
    """What one nccl-tests output says."""

    collective: str | None  # from the command or header, when the file names it
    ranks: int
    nodes: int
    device_name: str
    message_bytes: int  # the size at which the bus bandwidth peaked
    bus_bandwidth_gb_per_s: float  # the largest of out-of-place and in-place there
    largest_bytes: int  # the largest size measured


def parse_nccl_tests(text: str, where: str) -> NcclTestsResult:
    """The result in ``text`` (the output of one nccl-tests run); SpecError naming ``where``
    and the line when it is not nccl-tests output or does not say what it ran on."""
    ranks: dict[int, tuple[str, str]] = {}
    columns: list[str] | None = None
    rows: list[tuple[int, float]] = []
    named = TEST_NAME.search(text)
    collective = named.group(1) if named else None
    if collective is not None and collective not in COLLECTIVES:
        raise SpecError(f"{where}: is {collective}_perf output; the step-time model's link "
                        f"bandwidth comes from one of {', '.join(c + '_perf' for c in COLLECTIVES)}")
    for n, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        rank = RANK_LINE.match(stripped)
        if rank:
            ranks[int(rank.group(1))] = (rank.group(2), rank.group(3))
        elif stripped.startswith("#") and "busbw" in stripped.split() and "size" in stripped:
            columns = stripped.lstrip("#").split()
        elif columns and stripped[:1].isdigit():  # a result row (NCCL INFO lines are not)
            row = _row(stripped.split(), columns)
            if row is None:
                raise SpecError(f"{where}:{n}: not an nccl-tests result row under the header "
                                f"{' '.join(columns)!r}: {stripped[:80]!r}")
            rows.append(row)
    if columns is None or not rows:
        raise SpecError(f"{where}: not nccl-tests output (no 'size ... busbw' header with "
                        "result rows under it); give the output of all_reduce_perf, e.g. "
                        "`all_reduce_perf -b 8 -e 8G -f 2 -g 1 > results.txt`")
    if not ranks:
        raise SpecError(f"{where}: names no ranks ('#  Rank  0 Group  0 Pid ... on HOST device "
                        "...' lines), so the ranks and nodes it ran on are unknown; keep the "
                        "whole output")
    size, busbw = max(rows, key=lambda r: (r[1], r[0]))  # the largest size among equals
    names = {name for _, name in ranks.values()}
    return NcclTestsResult(collective, len(ranks), len({host for host, _ in ranks.values()}),
                           " / ".join(sorted(names)), size, busbw, max(s for s, _ in rows))


def _row(tokens: list[str], columns: list[str]) -> tuple[int, float] | None:
    """(size in bytes, best bus bandwidth in GB/s) of one result row, None if malformed."""
    if len(tokens) != len(columns):
        return None
    try:
        size = int(tokens[columns.index("size")])
        busbw = [float(tokens[i]) for i, c in enumerate(columns) if c == "busbw"]
    except ValueError:
        return None
    if size < 0 or not busbw or not all(math.isfinite(b) and b >= 0 for b in busbw):
        return None
    return size, max(busbw)


def read_nccl_tests(path: Path) -> NcclTestsResult:
    """Parse the nccl-tests output file at ``path`` (bounded read, one-line errors)."""
    from planner.catalog.yamlio import read_text

    return parse_nccl_tests(read_text(path, "nccl-tests output"), str(path))
