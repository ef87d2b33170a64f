"""`planner serve`: inference sizing — layout, batch, latency, devices, $ and carbon per
million tokens."""

from __future__ import annotations

import re

import click

from planner.cli.common import model_options
from planner.cli.options import TEXT, BoundedInt, CountType, FiniteFloat, format_option, \
    profiles_option
from planner.errors import SpecError
from planner.units import MAX_GRID_G_CO2E_PER_KWH, MAX_RATE_PER_S, MAX_TOKENS_PER_DAY

_NUM = r"([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)"
_TIME = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "min": 60.0, "m": 60.0, "h": 3600.0}


class Duration(click.ParamType):
    """A time with its unit: 40ms, 1s, 0.5s, 250us."""

    name = "duration"

    def convert(self, value, param, ctx):
        if isinstance(value, float):
            return value
        m = re.fullmatch(_NUM + r"\s*(us|ms|s|min|m|h)", str(value).strip())
        if not m:
            self.fail(f"'{value}' is not a duration; give a number with a unit: 40ms, 1s",
                      param, ctx)
        seconds = float(m.group(1)) * _TIME[m.group(2)]
        if not seconds > 0:
            self.fail(f"'{value}' is no time; give a duration above 0, e.g. 40ms", param, ctx)
        return seconds


class Rate(click.ParamType):
    """Requests per unit time: 20/s, 20 (per second), 1200/min, 50K/h."""

    name = "rate"

    def convert(self, value, param, ctx):
        if isinstance(value, float):
            return value
        m = re.fullmatch(_NUM + r"\s*([KMB]?)\s*(?:/\s*(s|min|m|h))?", str(value).strip(), re.I)
        if not m:
            self.fail(f"'{value}' is not a request rate; give e.g. 20/s, 1200/min", param, ctx)
        scale = {"": 1.0, "k": 1e3, "m": 1e6, "b": 1e9}[m.group(2).lower()]
        per = _TIME[(m.group(3) or "s").lower()]
        rate = float(m.group(1)) * scale / per
        if not rate > 0:
            self.fail(f"'{value}' is no load; give a rate above 0 (e.g. 20/s), or leave "
                      "--rate out to size one replica", param, ctx)
        if not rate <= MAX_RATE_PER_S:
            self.fail(f"'{value}' is {rate:.3g} requests/s; give at most "
                      f"{MAX_RATE_PER_S:g}/s", param, ctx)
        return rate


class Speculative(click.ParamType):
    """K:ACCEPT — draft tokens per step and the acceptance rate of each: 3:0.7."""

    name = "k:accept"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        m = re.fullmatch(r"(\d+)\s*:\s*" + _NUM, str(value).strip())
        if not m or int(m.group(1)) < 1 or not 0 <= float(m.group(2)) <= 1:
            self.fail(f"'{value}': give K:ACCEPT, K >= 1 draft tokens and an acceptance rate "
                      "in [0, 1], e.g. 3:0.7", param, ctx)
        return int(m.group(1)), float(m.group(2))


PRECISIONS = ("bf16", "fp16", "fp8", "int8", "int4", "fp4")


@click.command("serve")
@model_options
@click.option("--hardware", "-H", "hardware_list", type=TEXT,
              help="Profile, or comma-separated profiles to compare (default h100-sxm).")
@profiles_option
@click.option("--input-tokens", type=BoundedInt(min=1),
              help="Prompt tokens per request (default 1000, listed and warned).")
@click.option("--output-tokens", type=BoundedInt(min=1),
              help="Generated tokens per request (default 500, listed and warned).")
@click.option("--rate", type=Rate(), help="Load: requests per second (20/s, 1200/min).")
@click.option("--tokens-per-day", type=CountType(maximum=MAX_TOKENS_PER_DAY),
              help=f"Load: input + output tokens per day (2B; at most {MAX_TOKENS_PER_DAY:g}).")
@click.option("--concurrency", type=BoundedInt(min=1), help="Load: requests in flight.")
@click.option("--devices", "-n", type=BoundedInt(min=1),
              help="The best deployment on exactly N devices.")
@click.option("--tp", type=BoundedInt(min=1), help="Fix tensor-parallel degree per replica.")
@click.option("--pp", type=BoundedInt(min=1), help="Fix pipeline stages per replica.")
@click.option("--ep", type=BoundedInt(min=1),
              help="Fix expert-parallel groups per stage (MoE; experts split over ep x tp).")
@click.option("--ttft-p50", "ttft", type=Duration(), help="Target median time to first token.")
@click.option("--tpot", type=Duration(), help="Target time per output token (40ms).")
@click.option("--precision", type=click.Choice(PRECISIONS), default="bf16", show_default=True,
              help="Weight precision (int4 = weight-only, group 128).")
@click.option("--kv-precision", type=click.Choice(["bf16", "fp16", "fp8", "int8"]),
              help="KV-cache precision (default: the activation dtype).")
@click.option("--max-batch", type=BoundedInt(min=1),
              help="Engine cap on sequences per replica (default 256, vLLM max_num_seqs).")
@click.option("--region", "-r", type=TEXT, help="FR, US-VA, aws:us-east-1, ...")
@click.option("--grid", "grid_g", type=FiniteFloat(min=0, max=MAX_GRID_G_CO2E_PER_KWH),
              help="Grid g CO2e/kWh.")
@click.option("--pue", type=FiniteFloat(min=1, max=3))
@click.option("--power-fraction", type=FiniteFloat(min=0.01, max=1.5),
              help="Average accelerator power / TDP (default 1.0).")
@click.option("--price-tier", type=TEXT, help="Price tier in the profile (on_demand, spot...).")
@click.option("--price-per-hour", type=FiniteFloat(min=0, min_open=True),
              help="Your own USD per device-hour.")
@click.option("--prefix-hit-rate", type=FiniteFloat(min=0, max=1, max_open=True),
              help="Option: share of prompt tokens found in the prefix cache (0.5).")
@click.option("--speculative", type=Speculative(),
              help="Option: speculative decoding, K draft tokens accepted at rate A: 3:0.7.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False),
              help="Write $ per million output tokens vs TPOT (.png or .svg).")
@format_option
def serve_cmd(model, hardware_list, profiles_dirs, input_tokens, output_tokens, rate,
              tokens_per_day, concurrency, devices, tp, pp, ep, ttft, tpot, precision,
              kv_precision, max_batch, region, grid_g, pue, power_fraction, price_tier,
              price_per_hour, prefix_hit_rate, speculative, plot_path, fmt,
              **shape_opts) -> None:
    """Size inference: replicas x (tp, pp, ep), the batch meeting --tpot / --ttft-p50, devices
    for the load (--rate, --tokens-per-day or --concurrency), TTFT and TPOT, tokens/s,
    $ per million input and output tokens per price tier, Wh and g CO2e per million tokens.

    With no load it sizes one replica at the cheapest batch per token; with --devices N it
    finds the best deployment on N devices. Several --hardware give side-by-side rows.
    """
    from planner.planning.serve import serve
    from planner.report.serve import plot_serve, render_serve

    loads = [(k, v) for k, v in (("rate", rate), ("tokens_per_day", tokens_per_day),
                                 ("concurrency", concurrency)) if v is not None]
    if len(loads) > 1:
        raise SpecError("give one load: --rate, --tokens-per-day or --concurrency")
    if loads and devices is not None:
        raise SpecError("--devices N asks for the best deployment on N devices; leave out "
                        f"--{loads[0][0].replace('_', '-')} (or --devices)")
    names = None if hardware_list is None else \
        [h.strip() for h in hardware_list.split(",") if h.strip()]
    if names == []:
        raise SpecError("--hardware needs at least one profile name")
    if plot_path and not plot_path.endswith((".png", ".svg")):
        raise SpecError(f"--plot '{plot_path}': use a .png or .svg file name")
    ans = serve(model, names, input_tokens, output_tokens, precision=precision,
                kv_precision=kv_precision, load=loads[0] if loads else None, ttft_s=ttft,
                tpot_s=tpot, devices=devices, tp=tp, pp=pp, ep=ep,
                max_batch=-1 if max_batch is None else max_batch, region=region,
                profiles_dirs=profiles_dirs, shape=shape_opts, grid_g_co2e_per_kwh=grid_g,
                pue=pue, power_fraction=power_fraction, price_tier=price_tier,
                price_usd_per_device_hour=price_per_hour, prefix_hit_rate=prefix_hit_rate,
                speculative=speculative)
    if plot_path:
        plot_serve(ans, plot_path)
    click.echo(render_serve(ans, fmt), nl=False)
