"""Power scopes (planner/estimators/power.py) against measured system power.

GPT-3's 330 W per V100 (Patterson et al. 2021, Table 4: "Measured System Average Power per
Accelerator", host included) is held out: it sets no constant. T5 and Meena (TPU v3, 311 and
289 W measured) set the tpu-v3 profile's host figure, so they check arithmetic, not a forecast.
"""

import pytest

from planner.catalog.catalog import load_hardware
from planner.estimators import power as pw


def _server_w(name: str) -> float:
    hw = load_hardware(name)
    acc = pw.accelerator_power_w(hw.tdp_w.value, pw.ACCELERATOR_FRACTION)
    host = pw.host_power_w(hw.host_power_w_per_device.value, pw.HOST_LOAD_FRACTION)
    return pw.scope_power_w("server", acc, host)


def test_host_load_fraction_from_dgx_h100_typical_power():
    # (7,500 W - 8 x 0.90 x 700 W) / 8 = 307.5 W of a 575 W nameplate share.
    assert pw.HOST_LOAD_FRACTION == pytest.approx(307.5 / 575)


@pytest.mark.parametrize("hardware,measured_w", [("v100", 330.0)])
def test_server_scope_matches_measured_system_power(hardware, measured_w):
    assert _server_w(hardware) == pytest.approx(measured_w, rel=0.15)


@pytest.mark.parametrize("measured_w", [85.7e6 / 1.12 / (512 * 20 * 24),
                                        232e6 / 1.09 / (1024 * 30 * 24)])
def test_tpu_v3_server_scope_against_t5_and_meena(measured_w):
    assert _server_w("tpu-v3") == pytest.approx(measured_w, rel=0.15)


def test_scopes_nest():
    acc, host = 630.0, 307.5
    a = pw.scope_power_w("accelerator", acc, host)
    s = pw.scope_power_w("server", acc, host)
    assert a == 630.0 and s == 937.5
    assert pw.scope_pue("facility", 1.2) == 1.2
    assert pw.scope_pue("server", 1.2) == pw.scope_pue("accelerator", 1.2) == 1.0
    # the server's average is well below the nameplate 1,275 W an H100 slot was charged
    assert s < 700 + 575


def test_estimate_energy_in_each_scope():
    import planner
    kw = dict(model="llama3-8b", hardware="h100-sxm", devices=64, tokens="1T", seq_len=8192,
              global_batch_size=512, tp=1, pp=1, cp=1, ep=1, zero_stage=2, micro_batch_size=1,
              recompute="none", virtual_stages=1, pue=1.2)
    fac = planner.estimate(**kw)
    acc = planner.estimate(**kw, power_scope="accelerator")
    srv = planner.estimate(**kw, power_scope="server")
    h = fac.time.device_hours
    assert acc.time.device_hours == h
    assert acc.energy.kwh == pytest.approx(h * 630 / 1e3)
    assert fac.energy.accelerator_kwh == pytest.approx(acc.energy.kwh)
    assert srv.energy.kwh == pytest.approx(h * (630 + 307.5) / 1e3)
    assert fac.energy.it_kwh == pytest.approx(srv.energy.kwh)
    assert fac.energy.kwh == pytest.approx(srv.energy.kwh * 1.2)
    assert fac.energy.facility_kwh == pytest.approx(fac.energy.kwh)
    scopes = (acc.energy.scope, srv.energy.scope, fac.energy.scope)
    assert scopes == ("accelerator", "server", "facility")
    grid = acc.carbon.grid_g_co2e_per_kwh
    assert acc.carbon.kg_co2e == pytest.approx(acc.energy.kwh * grid / 1e3)
    assert acc.carbon.scope == "accelerator"
