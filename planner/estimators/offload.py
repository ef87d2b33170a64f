"""Host-offload time terms for the step-time model: PCIe traffic and the CPU optimizer step.

ZeRO-Offload (Ren et al. 2021, arXiv:2101.06840) keeps the fp32 optimizer states on the host
and steps there; each step the device sends its gradients down and receives the updated bf16
parameters (§4.1: 4 bytes per parameter moved per step, 2 each way). With the parameters on
the host too (FSDP CPUOffload, ZeRO-Infinity), every gather first copies the layer's shard up.
These are pure functions on numbers or numpy arrays (vec.py); how much of the transfer hides
behind compute is the step-time model's call.
"""

from __future__ import annotations

from typing import Any

from planner.estimators.vec import vmax

# PCIe Gen5 x16: 32 GT/s x 16 lanes x 128/130 encoding / 8 = 63 GB/s per direction
# (PCI-SIG PCIe 5.0 base specification, 2019); H100/H200 SXM and MI300X hosts use it.
HOST_LINK_GB_PER_S_ONE_WAY = 64.0
HOST_LINK_SOURCE = ("PCIe Gen5 x16 nominal, 32 GT/s x 16 lanes = ~64 GB/s per direction "
                    "(PCI-SIG PCIe 5.0); pinned copies reach ~80-90% of it")
# DeepSpeed CPU-Adam: ~0.22 s for 1B and ~2.6 s for 10B parameters on a DGX-2 host (2 x
# 24-core Xeon Platinum 8168), ZeRO-Offload Table 2 (recalled; 6-7x PyTorch's CPU Adam):
# ~4e9 parameters per second per host, shared by the host's devices.
CPU_ADAM_PARAMS_PER_S_PER_HOST = 4.0e9
CPU_ADAM_SOURCE = ("DeepSpeed CPU-Adam on a DGX-2 host: ~0.22 s per 1B parameters "
                   "(Ren et al. 2021, ZeRO-Offload, Table 2)")


def offload_bytes_per_step(params_per_device: Any, micro_batches: Any, offload: Any,
                           grad_bytes: float = 2, param_bytes: float = 2) -> tuple[Any, Any]:
    """(device-to-host, host-to-device) bytes per device per optimizer step.

    ``params_per_device``: the parameters whose optimizer state this device owns (its ZeRO
    shard); ``offload``: code 0 none, 1 optimizer, 2 optimizer_params (vocab.OFFLOADS).
    optimizer: gradients go down every micro-batch (accumulated on the host), the updated
    parameters come up once. optimizer_params: the shard comes up for the forward and again
    for the backward of every micro-batch (FSDP CPUOffload re-copies what it re-gathers),
    which replaces the once-per-step parameter upload.
    """
    on = 1 * (offload >= 1)
    params_too = 1 * (offload == 2)
    down = on * micro_batches * grad_bytes * params_per_device
    up_once = param_bytes * params_per_device
    up = on * (up_once + (2 * micro_batches * up_once - up_once) * params_too)
    return down, up


def offload_transfer_s(params_per_device: Any, micro_batches: Any, offload: Any,
                       host_link_gb_per_s: float = HOST_LINK_GB_PER_S_ONE_WAY,
                       grad_bytes: float = 2, param_bytes: float = 2) -> Any:
    """Seconds of host-link traffic per step per device: the busier direction over the
    one-way bandwidth (PCIe is full duplex; each device has its own x16 link)."""
    down, up = offload_bytes_per_step(params_per_device, micro_batches, offload,
                                      grad_bytes, param_bytes)
    return vmax(down, up) / (host_link_gb_per_s * 1e9)


def cpu_optimizer_s(params_per_device: Any, devices_per_host: Any, offload: Any,
                    params_per_s_per_host: float = CPU_ADAM_PARAMS_PER_S_PER_HOST) -> Any:
    """Seconds of the CPU optimizer step per optimizer step: the host steps the shards of
    all its devices at CPU-Adam's throughput (0 without offload)."""
    on = 1 * (offload >= 1)
    return on * params_per_device * devices_per_host / params_per_s_per_host
