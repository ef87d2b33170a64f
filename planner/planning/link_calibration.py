"""A link calibration: the fraction of a link's rate at which the step-time model reproduces a
measured collective (docs/performance-model.md, "Calibration corrects the model").

The model charges a collective over n ranks (estimators/data_parallel.py)

    t = factor x S / bw + hops x latency        factor, hops: 2(n-1)/n, 2(n-1) for an
                                                all-reduce; (n-1)/n, n-1 for the others
    bw = scale-up link x scale_up_efficiency                       inside one scale-up domain
       = min(scale-up bw, k x per-device NIC rate x scale_out_efficiency)   across domains

with k the group's ranks in each domain. A measured run (n ranks, k on each of N nodes, its
plateau bus bandwidth at message size S) is inverted through exactly that: its time
t = factor x S / busbw, less the model's own latency, gives the bandwidth the model must use,
and that over the link rate is the efficiency. Fed back, the model reproduces the measured
time for the measured collective (tests/test_link_calibration.py checks every profile).

What the model cannot represent is refused rather than stored: ranks on one node that span
scale-up domains (PCIe boxes: the model has no level between domains inside a node), a group
the scale-up cap would hide, nodes that do not each hold a scale-up domain's share, and
multi-node runs on profiles whose domain spans nodes (NVL72, TPU pods) unless the user says
the run stayed inside one domain (``--level scale_up``).
"""

from __future__ import annotations

import datetime

from planner.catalog.calibrations import LinkCalibration
from planner.errors import SpecError
from planner.estimators.step_time import DEFAULT_PERF, PerfParams
from planner.specs.hardware import HardwareProfile

# The bus bandwidth of a collective rises with the message until its latency stops mattering:
# about 1 GiB on NVLink and InfiniBand (nccl-tests PERFORMANCE.md; a 2-node H100 all-reduce
# reaches 30% of its 8 GiB figure at 64 MiB and 88% at 1 GiB). The plateau is taken over
# messages of at least this size.
MIN_MESSAGE_BYTES = 256 * 2**20


def plateau(rows: tuple[tuple[int, float], ...], source: str) -> tuple[int, float]:
    """(message bytes, bus bandwidth GB/s) of the best row at MIN_MESSAGE_BYTES or more."""
    big = [r for r in rows if r[0] >= MIN_MESSAGE_BYTES]
    if not big:
        largest = max(s for s, _ in rows)
        size = f"{largest / 2**20:g} MiB" if largest >= 2**20 else f"{largest:,} bytes"
        raise SpecError(f"{source}: the largest message is {size}; a link calibration needs "
                        f"the bus bandwidth at {MIN_MESSAGE_BYTES // 2**20} MiB or more, where "
                        "it levels off (run nccl-tests with -e 1G or larger)")
    return max(big, key=lambda r: (r[1], r[0]))


def _level(hw: HardwareProfile, per_host: tuple[int, ...], level: str | None) -> tuple[str, int]:
    """(level, ranks per scale-up domain k) the run measured, as the model would group it."""
    domain, node = int(hw.scale_up_domain_devices.value), int(hw.devices_per_node.value)
    ranks, nodes, k = sum(per_host), len(per_host), per_host[0]
    if len(set(per_host)) > 1:
        raise SpecError(f"the run had {'/'.join(map(str, per_host))} ranks on its {nodes} "
                        "nodes; the model's collectives assume the same number on each")
    if k > node:
        raise SpecError(f"{k} ranks per node is more than {hw.name}'s {node} devices per node "
                        "(a rank per device; MI250X's rccl ranks are its GCDs, two per device)")
    if level == "scale_out" and nodes == 1:
        raise SpecError("--level scale_out: the run was on one node; run it across nodes")
    if domain == 1 and (nodes == 1 or level == "scale_up"):
        raise SpecError(f"{hw.name} has no scale-up link between its devices (a domain of 1); "
                        "calibrate scale_out with one rank on each of 2 or more nodes "
                        "(mpirun -npernode 1)")
    spans = domain > node  # one domain over several nodes (NVL72, TPU pods)
    if nodes == 1 or (spans and level != "scale_out"):
        if ranks > domain:
            raise SpecError(f"{ranks} ranks span scale-up domains of {domain} devices on "
                            f"{hw.name}, which the model charges at the NIC rate (it has no "
                            "level between domains inside a node); calibrate with at most "
                            f"{domain} ranks")
        if nodes > 1 and level != "scale_up":
            raise SpecError(f"on {hw.name} a scale-up domain of {domain} devices spans nodes, "
                            "and the hosts do not say which domain each rank was in: say "
                            "--level scale_up for a run inside one domain, or --level scale_out "
                            "for one whose nodes were each in a different domain")
        return "scale_up", ranks
    if level == "scale_up":
        raise SpecError(f"--level scale_up: the run's {ranks} ranks were on {nodes} nodes, "
                        f"across scale-up domains of {hw.name}")
    if k > domain or domain // (domain // k) != k:  # the model's k = domain // stride
        raise SpecError(f"{k} ranks per node: the model groups ranks in each scale-up domain "
                        f"of {domain} as {domain} // stride; run with a count it can (1, 2, 4, "
                        f"8 ... dividing {domain})")
    return "scale_out", k


def _fit(hw: HardwareProfile, level: str, k: int, collective: str, ranks: int, size: int,
         busbw: float, perf: PerfParams, source: str) -> tuple[float, float, float]:
    """(efficiency before any cap, the bandwidth the model must charge, the link rate), both
    in GB/s, for a measured collective; SpecError where the model cannot reproduce it."""
    all_reduce = collective == "all_reduce"
    factor = (2 if all_reduce else 1) * (ranks - 1) / ranks
    hops = (2 if all_reduce else 1) * (ranks - 1)
    seconds = factor * size / (busbw * 1e9)
    latency = perf.latency_intra_s if level == "scale_up" else perf.latency_inter_s
    moving = seconds - hops * latency  # the part the model charges to bandwidth
    if moving <= 0.05 * seconds:
        raise SpecError(f"{source}: the model's ring latency ({hops} hops x {latency * 1e6:g} "
                        f"us = {hops * latency * 1e3:.3g} ms) is most or more of the measured "
                        f"{seconds * 1e3:.3g} ms at {size / 2**20:g} MiB: the model's latency "
                        "grows linearly with ranks where NCCL's trees grow with log n; "
                        "calibrate from fewer nodes or larger messages")
    bw = factor * size / moving / 1e9
    up = hw.scale_up_bandwidth_gb_per_s_one_way.value
    rate = up if level == "scale_up" else k * hw.scale_out_bandwidth_gb_per_s.value
    if level == "scale_out" and bw >= up * perf.scale_up_efficiency:
        raise SpecError(
            f"{source}: {bw:.1f} GB/s over {k} ranks per node reaches the model's scale-up "
            f"figure ({up * perf.scale_up_efficiency:.1f} GB/s), which caps that group: "
            "calibrate scale_up first (a one-node run sets that cap), or measure with fewer "
            "ranks per node (one per node measures one NIC)")
    return bw / rate, bw, rate


def link_calibration(hw: HardwareProfile, collective: str | None, per_host: tuple[int, ...],
                     message_bytes: int, bus_bandwidth_gb_per_s: float, source: str,
                     device_name: str, level: str | None = None,
                     perf: PerfParams = DEFAULT_PERF,
                     date: str | None = None) -> tuple[LinkCalibration, list[str]]:
    """The link calibration of a measured collective (``per_host``: its ranks on each node;
    ``perf``: the model's constants now, whose latency and scale-up figure it is fit with),
    and warnings about it."""
    ranks = sum(per_host)
    if ranks < 2:
        raise SpecError(f"{source}: ran on {ranks} rank; a collective needs at least 2")
    if message_bytes < MIN_MESSAGE_BYTES:
        raise SpecError(f"{source}: measured at {message_bytes / 2**20:g} MiB messages; a link "
                        f"calibration needs {MIN_MESSAGE_BYTES // 2**20} MiB or more")
    if not 1e-3 <= bus_bandwidth_gb_per_s < 1e6:
        raise SpecError(f"{source}: a bus bandwidth of {bus_bandwidth_gb_per_s:g} GB/s is not "
                        "a measurement of a real link")
    warnings = []
    if collective is None:
        collective = "all_reduce"
        warnings.append(f"{source} does not name its test; read as all_reduce_perf")
    level, k = _level(hw, per_host, level)
    raw, bw, rate = _fit(hw, level, k, collective, ranks, message_bytes,
                         bus_bandwidth_gb_per_s, perf, source)
    if raw > 1:
        warnings.append(
            f"{bus_bandwidth_gb_per_s:.1f} GB/s measured needs {bw:.1f} GB/s in the model, above "
            f"the {rate:g} GB/s link rate it has for {level} on {hw.name}: NCCL's tree, NVLS or "
            "SHARP beat the ring's bound (most on few nodes; NCCL_ALGO=Ring measures the ring); "
            "stored at 1.0 of the link rate")
    default = getattr(DEFAULT_PERF, f"{level}_efficiency")
    if raw < default / 2:
        warnings.append(f"{raw:.2f} of the link rate is under half the model's default "
                        f"{default:g}: check the profile ({hw.name}) matches the machine and that "
                        "the run used its NICs / NVLink (NCCL_DEBUG=INFO)")
    entry = LinkCalibration(
        hardware=hw.name, level=level, efficiency=min(raw, 1.0),
        bus_bandwidth_gb_per_s=bus_bandwidth_gb_per_s, message_bytes=message_bytes,
        ranks=ranks, nodes=len(per_host), date=date or datetime.date.today().isoformat(),
        device_name=device_name, source=source, capped=raw > 1, collective=collective)
    return entry, warnings


def refit(cal: LinkCalibration, hw: HardwareProfile, perf: PerfParams) -> float:
    """A stored calibration's efficiency under the model's constants now (its latency, and for
    scale-out the scale-up figure that caps it): the measurement is what is kept, so a change
    of those, or of the other level's calibration, is followed; SpecError where the model can
    no longer reproduce the measurement."""
    domain = int(hw.scale_up_domain_devices.value)
    k = min(cal.ranks // cal.nodes, domain)
    raw, _, _ = _fit(hw, cal.level, k, cal.collective, cal.ranks, cal.message_bytes,
                     cal.bus_bandwidth_gb_per_s, perf, f"the {cal.level} calibration")
    return min(raw, 1.0)
