"""Read the output of an nccl-tests benchmark (all_reduce_perf, reduce_scatter_perf,
all_gather_perf; github.com/NVIDIA/nccl-tests, and rccl-tests): who ran it and the bus
bandwidth each message size reached, for `planner calibration link`.

The parts read:

    #  Rank  0 Group  0 Pid   6899 on node-a device  0 [0000:04:00] NVIDIA H100 80GB HBM3
    ...
    #       size         count      type   redop    root     time   algbw   busbw #wrong ...
           8589934592    2147483648     float     sum      -1    47535  180.71  338.82  0 ...

One "Rank" line per GPU names its host (rccl-tests and nccl-tests before 2022 print no
``Group``), so the hosts give the nodes and the ranks on each. The column header names the
columns (older versions have no ``root``; ``-S 1`` adds a date and time); a row gives
out-of-place then in-place figures. The bus bandwidth (busbw, GB/s) is nccl-tests' own
normalisation: the algorithm bandwidth times 2(n-1)/n for an all-reduce and (n-1)/n for the
others (PERFORMANCE.md), the factors the step-time model charges. Lines of NCCL_DEBUG output
and the ``srun --label`` / ``mpirun --tag-output`` prefixes are skipped.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from planner.errors import SpecError

PREFIX = re.compile(r"^\s*(?:\d+:\s|\[\d+,\d+\]<std(?:out|err)>:\s?)")
RANK_LINE = re.compile(r"^#\s*Rank\s+(\d+)\s+(?:Group\s+(\d+)\s+)?Pid\s+\d+\s+on\s+(\S+)\s+"
                       r"device\s+\d+\s+\[[^\]]*\]\s+(.+?)\s*$")
TEST_NAME = re.compile(r"\b(all_reduce|reduce_scatter|all_gather|alltoall|broadcast|reduce|"
                       r"sendrecv|gather|scatter|hypercube)_perf(?:_mpi)?\b")
NCCL_LOG = re.compile(r"\bNCCL (?:INFO|WARN|TRACE)\b")
COLLECTIVES = ("all_reduce", "reduce_scatter", "all_gather")  # the model's collectives
MAX_MESSAGE_BYTES = 2**50  # nccl-tests' -e goes to a few GiB; larger is not a real row


@dataclass(frozen=True)
class NcclTestsResult:
    """What one nccl-tests run says."""

    collective: str | None  # from the command or header, when the file names it
    ranks_per_host: tuple[int, ...]  # one entry per host, in the order the hosts appear
    device_name: str
    rows: tuple[tuple[int, float], ...]  # (message bytes, best of out-of-place / in-place busbw)

    @property
    def ranks(self) -> int:
        return sum(self.ranks_per_host)

    @property
    def nodes(self) -> int:
        return len(self.ranks_per_host)


def parse_nccl_tests(text: str, where: str) -> NcclTestsResult:
    """The run in ``text`` (the output of one nccl-tests run); SpecError naming ``where``
    and the line when it is not nccl-tests output, holds more than one run, or does not say
    what it ran on."""
    ranks: dict[int, tuple[str, str, str]] = {}
    columns: list[str] | None = None
    rows: list[tuple[int, float]] = []
    headers = 0
    names = {m.group(1) for m in TEST_NAME.finditer(text)}
    if len(names) > 1:
        raise SpecError(f"{where}: holds output of {', '.join(sorted(n + '_perf' for n in names))};"
                        " give one run per file")
    collective = names.pop() if names else None
    if collective is not None and collective not in COLLECTIVES:
        tests = ", ".join(c + "_perf" for c in COLLECTIVES)
        raise SpecError(f"{where}: is {collective}_perf output; the step-time model's link "
                        f"bandwidth comes from one of {tests}")
    blocks = 0
    for n, line in enumerate(text.splitlines(), 1):
        stripped = PREFIX.sub("", line).strip()
        rank = RANK_LINE.match(stripped)
        if stripped.startswith("#") and stripped.lstrip("# ").startswith("Using devices"):
            blocks += 1
        if rank:
            r = int(rank.group(1))
            entry = (rank.group(2) or "0", rank.group(3), rank.group(4))
            if ranks.get(r, entry) != entry:
                raise SpecError(f"{where}:{n}: rank {r} appears twice, on different hosts or "
                                "GPUs; give one run per file")
            ranks[r] = entry
        elif stripped.startswith("#") and "busbw" in stripped.split() and "size" in stripped:
            columns, headers = stripped.lstrip("#").split(), headers + 1
        elif columns and stripped[:1].isdigit() and not NCCL_LOG.search(stripped):
            row = _row(stripped.split(), columns)
            if row is None:
                raise SpecError(f"{where}:{n}: not an nccl-tests result row under the header "
                                f"{' '.join(columns)!r}: {stripped[:80]!r}")
            rows.append(row)
    if columns is None or not rows:
        raise SpecError(f"{where}: not nccl-tests output (no 'size ... busbw' header with "
                        "result rows under it); give the output of all_reduce_perf, e.g. "
                        "`all_reduce_perf -b 8 -e 8G -f 2 -g 1 > results.txt`")
    if headers > 1 or blocks > 1:
        raise SpecError(f"{where}: holds {max(headers, blocks)} runs; give one run per file")
    if not ranks:
        raise SpecError(f"{where}: names no ranks ('#  Rank  0 ... Pid ... on HOST device ...' "
                        "lines), so the ranks and nodes it ran on are unknown; keep the whole "
                        "output")
    if sorted(ranks) != list(range(len(ranks))):
        missing = sorted(set(range(max(ranks) + 1)) - set(ranks))
        raise SpecError(f"{where}: its Rank lines skip rank{'s' if len(missing) > 1 else ''} "
                        f"{', '.join(map(str, missing[:5]))}; keep the whole output")
    groups = {g for g, _, _ in ranks.values()}
    if len(groups) > 1:
        raise SpecError(f"{where}: ran as {len(groups)} separate groups (NCCL_TESTS_SPLIT), "
                        "each measuring its own bus bandwidth; calibrate from a run of one group")
    hosts = Counter(host for _, host, _ in (ranks[r] for r in sorted(ranks)))
    devices = " / ".join(sorted({name for _, _, name in ranks.values()}))
    return NcclTestsResult(collective, tuple(hosts.values()), devices, tuple(rows))


def _row(tokens: list[str], columns: list[str]) -> tuple[int, float] | None:
    """(size in bytes, best bus bandwidth in GB/s) of one result row, None if malformed."""
    if "timestamp" in columns and len(tokens) == len(columns) + 1:  # `-S 1`: date and time
        at = columns.index("timestamp")
        tokens = tokens[:at] + [" ".join(tokens[at:at + 2])] + tokens[at + 2:]
    if len(tokens) != len(columns):
        return None
    try:
        size = int(tokens[columns.index("size")])
        busbw = [float(tokens[i]) for i, c in enumerate(columns) if c == "busbw"]
    except ValueError:
        return None
    if not 0 <= size <= MAX_MESSAGE_BYTES or not busbw or \
            not all(math.isfinite(b) and 0 <= b < 1e9 for b in busbw):
        return None
    return size, max(busbw)


def read_nccl_tests(path: Path) -> NcclTestsResult:
    """Parse the nccl-tests output file at ``path`` (bounded read, one-line errors)."""
    from planner.catalog.yamlio import read_text

    return parse_nccl_tests(read_text(path, "nccl-tests output"), str(path))
