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
    if level == "scale_out" and nodes == 1:
        raise SpecError("--level scale_out: the run was on one node; run it across nodes")
    if nodes == 1 or domain > node:  # one node, or a domain that spans nodes (NVL72, pods)
        if ranks > domain:
            raise SpecError(f"{ranks} ranks span scale-up domains of {domain} devices on "
                            f"{hw.name}, which the model charges at the NIC rate (it has no "
                            "level between domains inside a node); calibrate with at most "
                            f"{domain} ranks")
        if nodes > 1 and level != "scale_up":
            raise SpecError(f"on {hw.name} a scale-up domain of {domain} devices spans nodes, "
                            "and the hosts do not say which domain each rank was in: for a run "
                            f"inside one domain say --level scale_up (the model charges larger "
                            "groups at the scale-up link, so their NICs cannot be calibrated)")
        return "scale_up", ranks
    if level == "scale_up":
        raise SpecError(f"--level scale_up: the run's {ranks} ranks were on {nodes} nodes, "
                        f"across scale-up domains of {hw.name}")
    if k > domain or domain % k:
        raise SpecError(f"{k} ranks per node: the model groups ranks in each scale-up domain "
                        f"of {domain} by a divisor of {domain}; run with one that is")
    return "scale_out", k


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
    if not bus_bandwidth_gb_per_s > 0:
        raise SpecError(f"{source}: bus bandwidth {bus_bandwidth_gb_per_s:g} GB/s")
    warnings = []
    if collective is None:
        collective = "all_reduce"
        warnings.append(f"{source} does not name its test; read as all_reduce_perf")
    level, k = _level(hw, per_host, level)
    all_reduce = collective == "all_reduce"
    factor = (2 if all_reduce else 1) * (ranks - 1) / ranks
    hops = (2 if all_reduce else 1) * (ranks - 1)
    seconds = factor * message_bytes / (bus_bandwidth_gb_per_s * 1e9)
    latency = perf.latency_intra_s if level == "scale_up" else perf.latency_inter_s
    moving = seconds - hops * latency  # the part the model charges to bandwidth
    if moving <= 0.05 * seconds:
        raise SpecError(f"{source}: at {message_bytes / 2**20:g} MiB the model's latency "
                        f"({hops} hops x {latency * 1e6:g} us) is most of the measured "
                        f"{seconds * 1e3:.3g} ms; measure larger messages")
    bw = factor * message_bytes / moving / 1e9  # GB/s the model must charge
    up = hw.scale_up_bandwidth_gb_per_s_one_way.value
    if level == "scale_up":
        rate = up
    else:
        rate = k * hw.scale_out_bandwidth_gb_per_s.value
        if bw >= up * perf.scale_up_efficiency:
            raise SpecError(
                f"{source}: {bw:.1f} GB/s over {k} ranks per node reaches the model's scale-up "
                f"figure ({up * perf.scale_up_efficiency:.1f} GB/s), which caps that group, so "
                "the run cannot tell the NICs' efficiency; measure with fewer ranks per node "
                "(one per node measures one NIC)")
    raw = bw / rate
    if raw > 1:
        warnings.append(
            f"{bus_bandwidth_gb_per_s:.1f} GB/s measured needs {bw:.1f} GB/s in the model, above "
            f"the {rate:g} GB/s link rate it has for {level} on {hw.name}: NCCL's tree, NVLS or "
            "SHARP beat the ring's bound (most on few nodes); stored at 1.0 of the link rate")
    default = getattr(DEFAULT_PERF, f"{level}_efficiency")
    if raw < default / 2:
        warnings.append(f"{raw:.2f} of the link rate is under half the model's default "
                        f"{default:g}: check the profile ({hw.name}) matches the machine and that "
                        "the run used its NICs / NVLink (NCCL_DEBUG=INFO)")
    entry = LinkCalibration(
        hardware=hw.name, level=level, efficiency=round(min(raw, 1.0), 6),
        bus_bandwidth_gb_per_s=bus_bandwidth_gb_per_s, message_bytes=message_bytes,
        ranks=ranks, nodes=len(per_host), date=date or datetime.date.today().isoformat(),
        device_name=device_name, source=f"{source}, {collective}", capped=raw > 1)
    return entry, warnings
