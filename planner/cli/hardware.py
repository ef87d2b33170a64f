"""`planner hardware list|show`."""

from __future__ import annotations


import click

from planner.catalog.catalog import hardware_paths, load_hardware
from planner.cli.options import format_option, profiles_option
from planner.report import render_rows
from planner.units import GIB
from planner.report.tabular import dumps_json


def _row(hw) -> dict:
    bf16 = hw.peak_dense_bf16_tflops or hw.peak_dense_fp16_tflops
    fp8 = hw.peak_dense_fp8_tflops
    od = hw.price("on_demand")
    return {
        "name": hw.name, "display_name": hw.display_name, "vendor": hw.vendor,
        "bf16_tflops": bf16.value if bf16 else None, "fp8_tflops": fp8.value if fp8 else None,
        "memory_gib": round(hw.memory_bytes / GIB, 1),
        "hbm_tb_per_s": hw.hbm_bandwidth_tb_per_s.value,
        "scale_up_gb_per_s": hw.scale_up_bandwidth_gb_per_s_one_way.value,
        "tdp_w": hw.tdp_w.value,
        "on_demand_usd_per_h": od.usd_per_device_hour if od else None,
        "mfu_expected": hw.efficiency.expected,
    }


@click.group()
def hardware() -> None:
    """Accelerator profiles (hardware_profiles/*.yaml and your own)."""


@hardware.command("list")
@format_option
@profiles_option
def list_hardware(fmt: str, profiles_dirs: tuple[str, ...]) -> None:
    """List hardware profiles: dense peaks, memory, bandwidth, power, price."""
    rows = [_row(load_hardware(n, profiles_dirs)) for n in hardware_paths(profiles_dirs)]
    cols = ["name", "bf16_tflops", "fp8_tflops", "memory_gib", "hbm_tb_per_s",
            "scale_up_gb_per_s", "tdp_w", "on_demand_usd_per_h", "mfu_expected"]
    click.echo(render_rows(rows, cols, fmt), nl=False)


@hardware.command("show")
@click.argument("name")
@format_option
@profiles_option
def show_hardware(name: str, fmt: str, profiles_dirs: tuple[str, ...]) -> None:
    """Show every figure of a profile with its source."""
    hw = load_hardware(name, profiles_dirs)
    data = hw.model_dump(mode="json", exclude_none=True)
    if fmt == "json":
        click.echo(dumps_json(data))
        return
    rows = []
    for key, v in data.items():
        if isinstance(v, dict) and "value" in v:
            rows.append({"field": key, "value": v["value"], "confidence": v["confidence"],
                         "source": v["source"] + (f" ({v['note']})" if v.get("note") else "")})
        elif key == "prices":
            for q in v:
                rows.append({"field": f"price.{q['tier']}", "value": q["usd_per_device_hour"],
                             "confidence": q["confidence"],
                             "source": f"{q['provider']}, {q['date']}: {q['source']}"})
        elif key == "efficiency":
            rows.append({"field": "efficiency", "value":
                         f"{v['low']} / {v['expected']} / {v['high']}", "confidence": "",
                         "source": v["source"]})
        else:
            rows.append({"field": key, "value": v, "confidence": "", "source": ""})
    click.echo(render_rows(rows, ["field", "value", "confidence", "source"], fmt), nl=False)
