"""Power per device in stated scopes (docs/formulas.md §6.1). Pure arithmetic.

- accelerator: the chip alone, TDP x the fraction of TDP it draws while training;
- server: + the host's share (CPUs, memory, NICs, switches, fans), from measured system power,
  not the nameplate maximum;
- facility: server x PUE (cooling, power conversion): what a provider meters and bills.

Every energy and carbon figure planner prints names its scope; the default is facility.
"""

from __future__ import annotations

SCOPES = ("accelerator", "server", "facility")
DEFAULT_SCOPE = "facility"

# Average accelerator draw while training, as a fraction of TDP. This project's NVML runs put
# busy dense steps at 0.93-0.98 of TDP on an H100 and 0.96-0.99 on an H200
# (docs/validation/2026-11-23-h100.md, -h200.md); a multi-node step also waits on the
# network at lower power, so the default is a round 0.90.
ACCELERATOR_FRACTION = 0.90
ACCELERATOR_FRACTION_SOURCE = (
    "NVML on this project's H100 and H200: 0.93-0.99 of TDP in busy dense training "
    "(docs/validation/2026-11-23-h100.md, -h200.md); multi-node steps wait on the network at "
    "lower power: 0.90")

# The host draws well below its nameplate share. DGX H100: 10.2 kW maximum, 6.5-8.5 kW typical
# (hardware_facts.md §1c [S28]). At the typical midpoint 7.5 kW with the 8 GPUs at 0.90 x 700 W,
# the rest is (7,500 - 8 x 630) / 8 = 307.5 W per GPU slot: 0.535 of the 575 W nameplate share.
HOST_LOAD_FRACTION = (7_500 - 8 * ACCELERATOR_FRACTION * 700) / 8 / 575
HOST_LOAD_SOURCE = (
    "DGX H100 typical 6.5-8.5 kW against a 10.2 kW maximum (hardware_facts.md §1c [S28]): "
    "at 7.5 kW with the GPUs at 0.90 of TDP the host draws 0.535 of its nameplate share; "
    "checked, not fitted, against GPT-3's measured 330 W per V100 incl. host "
    "(Patterson et al. 2021, Table 4)")


def accelerator_power_w(tdp_w: float, fraction: float) -> float:
    """Average accelerator W while training: TDP x the fraction drawn."""
    return tdp_w * fraction


def host_power_w(nameplate_host_w: float, load_fraction: float) -> float:
    """Average host W per device slot: its nameplate share x the measured load fraction."""
    return nameplate_host_w * load_fraction


def scope_power_w(scope: str, accelerator_w: float, host_w: float) -> float:
    """W per device in a scope, before PUE: the accelerator alone, or with its host share
    (server and facility; facility then multiplies energy by PUE)."""
    return accelerator_w if scope == "accelerator" else accelerator_w + host_w


def scope_pue(scope: str, pue: float) -> float:
    """The PUE a scope's energy is multiplied by: the facility's, else 1."""
    return pue if scope == "facility" else 1.0
