"""A link calibration: the fraction of a link's rate that a measured collective reached, as the
step-time model charges it (docs/performance-model.md, "Calibration corrects the model").

The model's collectives (estimators/data_parallel.py, ``group_link``) run at

    inside one scale-up domain   scale-up link x scale_up_efficiency
    across domains               min(scale-up, k x per-device NIC rate x scale_out_efficiency)

with k the group's ranks in each domain (NCCL runs one ring per NIC rail). A measured bus
bandwidth over R ranks on N nodes inverts that: inside one domain the efficiency is busbw / link
rate; across nodes, with k = R / N ranks per node (at most the domain), it is
busbw / (k x NIC rate). A measurement above the link rate (NCCL's tree, NVLS or SHARP beat the
ring's bound, most on two or three nodes) is stored at 1.0 and said so.
"""

from __future__ import annotations

import datetime

from planner.catalog.calibrations import LEVELS, LinkCalibration
from planner.errors import SpecError
from planner.estimators.step_time import DEFAULT_PERF
from planner.specs.hardware import HardwareProfile

# The bus bandwidth of a collective rises with the message until its per-hop latency stops
# mattering: about 1 GiB on NVLink and InfiniBand (nccl-tests PERFORMANCE.md; a 2-node H100
# all-reduce reaches 30% of its 8 GiB figure at 64 MiB and 88% at 1 GiB). The model charges
# latency separately, so it wants the plateau.
MIN_MESSAGE_BYTES = 256 * 2**20


def infer_level(hw: HardwareProfile, ranks: int, nodes: int, level: str | None) -> str:
    """The level a collective over ``ranks`` on ``nodes`` measured (``level``: the user's,
    checked); SpecError naming --level when the profile cannot tell."""
    domain = int(hw.scale_up_domain_devices.value)
    if level is not None:
        if level not in LEVELS:
            raise SpecError(f"--level {level!r} is not one of {', '.join(LEVELS)}")
        if level == "scale_up" and ranks > domain:
            raise SpecError(f"--level scale_up: {ranks} ranks do not fit one scale-up domain "
                            f"of {hw.name} ({domain} devices)")
        if level == "scale_out" and nodes == 1:
            raise SpecError("--level scale_out: the run was on one node, so it measured the "
                            "scale-up link; run it across nodes")
        return level
    if nodes == 1:
        return "scale_up"
    if ranks <= domain and domain > hw.devices_per_node.value:
        raise SpecError(f"{ranks} ranks on {nodes} nodes of {hw.name} may share one scale-up "
                        f"domain of {domain} devices; say which link they used with --level "
                        "scale_up or --level scale_out")
    return "scale_out"


def link_calibration(hw: HardwareProfile, bus_bandwidth_gb_per_s: float, ranks: int,
                     nodes: int, message_bytes: int, source: str, device_name: str,
                     level: str | None = None,
                     date: str | None = None) -> tuple[LinkCalibration, list[str]]:
    """The link calibration of a measured bus bandwidth, and warnings about it."""
    if ranks < 2:
        raise SpecError(f"{source}: ran on {ranks} rank; a collective needs at least 2")
    if ranks % nodes:
        raise SpecError(f"{source}: {ranks} ranks on {nodes} nodes are not the same number on "
                        "each node; the model's collectives assume an even spread")
    if message_bytes < MIN_MESSAGE_BYTES:
        size = (f"{message_bytes / 2**20:g} MiB" if message_bytes >= 2**20 else
                f"{message_bytes:,} bytes")
        raise SpecError(f"{source}: the bus bandwidth peaked at {size} messages; a link "
                        f"calibration needs it at {MIN_MESSAGE_BYTES // 2**20} MiB or more "
                        "(run nccl-tests with -e 1G or larger)")
    level = infer_level(hw, ranks, nodes, level)
    up = hw.scale_up_bandwidth_gb_per_s_one_way.value
    if level == "scale_up":
        rate = up
    else:
        per_node = min(ranks // nodes, int(hw.scale_up_domain_devices.value))
        rate = per_node * hw.scale_out_bandwidth_gb_per_s.value
    raw = bus_bandwidth_gb_per_s / rate
    warnings = []
    if raw > 1:
        warnings.append(
            f"the measured {bus_bandwidth_gb_per_s:.1f} GB/s is above the {rate:g} GB/s link "
            f"rate the model has for {level} on {hw.name}: NCCL's tree, NVLS or SHARP beat the "
            "ring's bound (most on few nodes); stored at 1.0 of the link rate")
    default = getattr(DEFAULT_PERF, f"{level}_efficiency")
    if raw < default / 2:
        warnings.append(f"{min(raw, 1):.2f} of the link rate is under half the model's default "
                        f"{default:g}: check the profile ({hw.name}) matches the machine and that "
                        "the run used its NICs / NVLink (NCCL_DEBUG=INFO)")
    entry = LinkCalibration(
        hardware=hw.name, level=level, efficiency=round(min(raw, 1.0), 4),
        bus_bandwidth_gb_per_s=bus_bandwidth_gb_per_s, message_bytes=message_bytes,
        ranks=ranks, nodes=nodes, date=date or datetime.date.today().isoformat(),
        device_name=device_name, source=source, capped=raw > 1)
    return entry, warnings
