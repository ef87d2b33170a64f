"""Offload time terms by hand (ZeRO-Offload §4.1; PCIe Gen5 x16; CPU-Adam throughput)."""

import numpy as np
import pytest

from planner.estimators.offload import (
    cpu_optimizer_s, offload_bytes_per_step, offload_transfer_s,
)


def test_zero_offload_moves_4_bytes_per_parameter_per_step():
    # Ren et al. 2021 §4.1: 2 B of fp16 gradients down and 2 B of fp16 parameters up per
    # parameter per step (one micro-batch). 1e9 parameters: 2 GB each way, 2e9 / 64e9 s.
    down, up = offload_bytes_per_step(1e9, 1, 1)
    assert (down, up) == (2e9, 2e9)
    assert offload_transfer_s(1e9, 1, 1) == pytest.approx(2e9 / 64e9)  # 31.25 ms
    # gradients go down every micro-batch; the parameters come up once
    assert offload_bytes_per_step(1e9, 8, 1) == (16e9, 2e9)
    assert offload_transfer_s(1e9, 8, 1) == pytest.approx(0.25)


def test_parameter_offload_uploads_every_gather():
    # forward + backward of each of 8 micro-batches: 16 uploads of the 2 GB shard
    assert offload_bytes_per_step(1e9, 8, 2) == (16e9, 32e9)
    assert offload_transfer_s(1e9, 8, 2, host_link_gb_per_s=32) == pytest.approx(1.0)


def test_no_offload_costs_nothing_and_arrays_work():
    assert offload_transfer_s(1e9, 8, 0) == 0 and cpu_optimizer_s(1e9, 8, 0) == 0
    t = offload_transfer_s(np.array([1e9, 1e9, 1e9]), np.array([1, 1, 8]), np.array([0, 1, 2]))
    assert list(t) == pytest.approx([0, 2e9 / 64e9, 32e9 / 64e9])


def test_cpu_adam_step():
    # 8 devices each owning 1e9 parameters' states on one host at 4e9 parameters/s: 2 s
    assert cpu_optimizer_s(1e9, 8, 1) == pytest.approx(2.0)
