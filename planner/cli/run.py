"""`planner run SCENARIO` (size every candidate, write a report) and `planner budget`."""

from __future__ import annotations

import math
import signal
from pathlib import Path

import click

from planner.cli.finetune_options import finetune_options
from planner.cli.options import COUNT, RANGE, format_option, profiles_option
from planner.errors import SpecError
from planner.vocab import ATTENTION_KERNELS, KERNELS, PRECISIONS
from planner.report.tabular import dumps_json


def _backtest():
    """The planner's own backtest, when that module is installed (for reports)."""
    try:
        from planner.checks.backtest import run_backtest
    except ImportError:
        return None
    return run_backtest()


class _Interrupted(click.ClickException):
    """One line and 128 + N for SIGINT, SIGTERM or SIGHUP."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


MD_MARK = "<!-- written by planner run --report: the markdown twin of {html} -->"


def _planner_wrote(md: Path) -> bool:
    """True when ``md`` ends with the mark planner puts on the markdown twin."""
    try:
        with open(md, "rb") as f:
            f.seek(max(md.stat().st_size - 1024, 0))
            return b"<!-- written by planner run --report" in f.read()
    except OSError:
        return False


def _report_paths(report_path: str | None, md_path: str | None):
    """--report and its markdown twin, checked before the scenario is sized: an .html and an
    .md file name, not the same file, in directories where a file can be created. The twin
    is --report-md, else the .html's name with .md, which is refused when a file by that name
    exists that planner did not write (planner never replaces a file you did not name)."""
    from planner.fileio import check_writable

    if md_path and not report_path:
        raise SpecError("--report-md needs --report FILE.html (the markdown is its twin)")
    if not report_path:
        return None, None
    if not report_path.endswith((".html", ".htm")):
        raise SpecError(f"--report '{report_path}': use a .html file name")
    if md_path and not md_path.endswith(".md"):
        raise SpecError(f"--report-md '{md_path}': use a .md file name")
    html = check_writable(report_path, "the report")
    md = Path(md_path).expanduser() if md_path else html.with_suffix(".md")
    if not md_path and md.exists() and not _planner_wrote(md):
        raise SpecError(f"--report {html} would replace {md}, which planner did not write; "
                        "name the markdown file with --report-md PATH (or move that file)")
    check_writable(md, "the markdown report")
    if md.resolve() == html.resolve():
        raise SpecError("--report and --report-md name the same file")
    return html, md


@click.command("run")
@click.argument("scenario")
@profiles_option
@click.option("--report", "report_path", type=click.Path(dir_okay=False),
              help="Write a self-contained HTML report here, and the same as markdown beside "
                   "it (.md; refused if that file exists and planner did not write it).")
@click.option("--report-md", "md_path", type=click.Path(dir_okay=False),
              help="Write the markdown twin here instead of beside the HTML file.")
@format_option
def run_cmd(scenario, profiles_dirs, report_path, md_path, fmt) -> None:
    """Size every candidate of a scenario (a shipped name or a YAML file) and compare them.

    --report and its markdown twin are checked before anything is computed and written
    through temporary files and renames, as a pair: SIGINT, SIGTERM or SIGHUP leave both old
    files (or, once the renames have begun, both new) and exit 128+N with one line.
    """
    from planner.fileio import Interrupted, exit_on_signals

    written: list[Path] = []
    try:
        with exit_on_signals():
            _run(scenario, profiles_dirs, report_path, md_path, fmt, written)
    except Interrupted as e:
        if e.signum == signal.SIGINT and not report_path:
            raise KeyboardInterrupt from None  # nothing was to be written: a quiet Ctrl-C
        what = (f"the report was written ({' and '.join(map(str, written))})" if written else
                "no report written, existing files untouched" if report_path else
                "nothing written")
        raise _Interrupted(f"interrupted by {e.name}: {what}", e.exit_code) from None


def _run(scenario, profiles_dirs, report_path, md_path, fmt, written: list) -> None:
    from planner.report.plan import render_compare
    from planner.planning.scenario import load_scenario, run_scenario
    from planner.report.scenario import scenario_answer

    html_path, md_out = _report_paths(report_path, md_path)
    sc, path = load_scenario(scenario)
    result = run_scenario(sc, path, profiles_dirs)
    if html_path:
        from planner.fileio import write_texts_atomic
        from planner.report.figures import scenario_figures
        from planner.report.html import render_html, render_markdown

        from planner.checks.throughput import all_checks

        figures, backtest, checks = scenario_figures(result), _backtest(), all_checks()
        md = render_markdown(result, figures, backtest, checks).rstrip("\n")
        files = [(html_path, render_html(result, figures, backtest, checks)),
                 (md_out, md + "\n\n" + MD_MARK.format(html=html_path.name) + "\n")]
        write_texts_atomic(files)
        written.extend(p for p, _ in files)
        click.echo(f"report written to {' and '.join(str(p) for p, _ in files)}", err=True)
    if fmt == "json":
        click.echo(dumps_json({**result.to_dict(), "answer": scenario_answer(result)}))
        return
    text = render_compare(result.plans, fmt, sc.title)
    click.echo(text + ("\n" if fmt != "csv" else "") + (scenario_answer(result) + "\n"
                                                          if fmt in ("table", "markdown") else ""),
               nl=False)
    if result.extra.get("serving") is not None and fmt in ("table", "markdown"):
        from planner.report.serve import render_serving_rows

        click.echo(render_serving_rows(result.extra["serving"], fmt), nl=False)


@click.command("budget")
@click.option("--usd", type=COUNT, help="Money to spend: 1M, 250K.")
@click.option("--flops", type=COUNT, help="Or: useful training FLOPs, e.g. 1e24.")
@click.option("--device-hours", type=COUNT, help="Or: device-hours, e.g. 500K.")
@click.option("--model", "-m", help="Price this model's training: the tokens the budget buys "
              "on the best layout on --devices (the plan `planner estimate` gives for them).")
@click.option("--hardware", "-H", default="h100-sxm", show_default=True)
@profiles_option
@click.option("--region", "-r", help="With --model: where it runs (grid, PUE).")
@click.option("--seq-len", type=click.IntRange(min=1), help="With --model: sequence length.")
@click.option("--global-batch", type=click.IntRange(min=1),
              help="With --model: sequences per step (default: the published-runs rule).")
@click.option("--precision", type=click.Choice(PRECISIONS), default="bf16", show_default=True)
@click.option("--price-tier", help="Price tier in the profile (default on_demand).")
@click.option("--price-per-hour", type=click.FloatRange(min=0, min_open=True))
@click.option("--deadline-days", type=click.FloatRange(min=0, min_open=True),
              help="Finish within D days (sets the device count). Default 90.")
@click.option("--devices", "-n", type=click.IntRange(min=1), help="Or: use N devices.")
@click.option("--tokens-per-param", type=click.FloatRange(min=0, min_open=True),
              help="Also allocate for an over-trained model (e.g. 100 for inference-heavy).")
@click.option("--efficiency", type=RANGE, help="Fraction of peak: 0.4 or 0.3:0.4:0.5.")
@click.option("--goodput", type=click.FloatRange(min=0, max=1, min_open=True))
@click.option("--kernels", type=click.Choice(KERNELS),
              help="With --model: fused (default) or eager PyTorch elementwise kernels.")
@click.option("--attention-kernel", type=click.Choice(ATTENTION_KERNELS),
              help="With --model: native (default) or fa2 (FlashAttention-2; 0.57x on Hopper).")
@finetune_options(data=False)
@format_option
def budget_cmd(usd, flops, device_hours, model, hardware, profiles_dirs, region, seq_len,
               global_batch, precision, price_tier, price_per_hour, deadline_days, devices,
               tokens_per_param, efficiency, goodput, kernels, attention_kernel, fmt,
               **finetune) -> None:
    """What a budget buys: compute, the compute-optimal model and tokens, loss, devices, days.

    With --model: the tokens --usd buys for that model on the best layout on --devices
    (default one node), with the same days, cost, energy and carbon `planner estimate`
    prints for that many tokens.
    """
    finetune = {k: v for k, v in finetune.items() if v is not None}
    if model:
        _budget_model(usd, model, hardware, profiles_dirs, region, precision, price_tier,
                      price_per_hour, deadline_days, devices, efficiency, goodput, fmt,
                      seq_len=seq_len, global_batch_size=global_batch, kernels=kernels,
                      attention_kernel=attention_kernel, **finetune)
        return
    for flag, value in (("--kernels", kernels), ("--attention-kernel", attention_kernel)):
        if value:
            raise SpecError(f"{flag} sets how a model's training runs: give --model too")
    if finetune:
        flag = "--" + next(iter(finetune)).replace("_", "-")
        raise SpecError(f"{flag} prices a fine-tune of a model: give --model too")
    from planner.planning.budget import answer_budget
    from planner.catalog.catalog import load_hardware
    from planner.planning.reliability import FAILURE_MODEL_SOURCE, goodput_for_compute
    from planner.planning.outcome_chain import price_quote
    from planner.results import Assumption
    from planner.specs import Assumptions

    given = [x for x in (usd, flops, device_hours) if x]
    if len(given) != 1:
        raise SpecError("give exactly one of --usd, --flops or --device-hours")
    if deadline_days and devices:
        raise SpecError("give --deadline-days or --devices, not both")
    hw = load_hardware(hardware, profiles_dirs)
    peak = hw.peak_flops_per_s(precision)
    if peak is None:
        raise SpecError(f"{hw.name} has no {precision} peak; valid precisions: "
                        f"{', '.join(hw.supported_precisions)}")
    price, tier, provider, psrc = price_quote(hw, Assumptions(
        price_tier=price_tier, price_usd_per_device_hour=price_per_hour))
    eff = efficiency or (hw.efficiency.low, hw.efficiency.expected, hw.efficiency.high)
    notes = [Assumption(name="usd_per_device_hour", value=price, unit="USD", source=psrc,
                        defaulted=price_per_hour is None),
             Assumption(name="efficiency", value="/".join(f"{x:g}" for x in eff),
                        unit="low/expected/high", defaulted=efficiency is None,
                        source=hw.efficiency.source if efficiency is None else "set by user")]
    if not deadline_days and not devices:
        deadline_days = 90.0
        notes.append(Assumption(name="deadline_days", value=90.0, unit="days", defaulted=True,
                                source="planner default when neither --deadline-days nor "
                                       "--devices is given"))
    node = int(hw.devices_per_node.value)
    g = goodput or 0.9
    for _ in range(2):  # the default goodput depends on the device count, which depends on hours
        hours = (flops / (3600 * peak * eff[1] * g)) if flops else (device_hours or usd / price)
        n = devices or max(1, math.ceil(hours / (deadline_days * 24) / node)) * node
        g = goodput or goodput_for_compute(n, hours * 3600 * peak * eff[1] * g, Assumptions(
            price_tier=price_tier))
    hours = (flops / (3600 * peak * eff[1] * g)) if flops else (device_hours or usd / price)
    devices = n
    notes.append(Assumption(name="goodput", value=g, unit="fraction", defaulted=goodput is None,
                            source=FAILURE_MODEL_SOURCE + " (checkpoint of the compute-optimal model)"
                            if goodput is None else "set by user"))
    ans = answer_budget(hw, precision, hours, usd, price, tuple(eff), g, devices,
                        tokens_per_param, notes)
    click.echo(_render_budget(ans, fmt), nl=False)


def _budget_model(usd, model, hardware, profiles_dirs, region, precision, price_tier,
                  price_per_hour, deadline_days, devices, efficiency, goodput, fmt,
                  **training) -> None:
    from planner.planning.budget import budget_for_model
    from planner.report import render_estimate
    from planner.report.fmt import money
    from planner.units import fmt_count

    if not usd:
        raise SpecError("--model needs --usd (the money to spend)")
    if deadline_days:
        raise SpecError("--model prices a job on --devices; --deadline-days is for the "
                        "compute-optimal allocation (drop --model) or `planner plan`")
    opts = {"precision": precision, "price_tier": price_tier, "region": region,
            "price_usd_per_device_hour": price_per_hour, "profiles_dirs": profiles_dirs,
            "goodput_expected": goodput, **training}
    if efficiency:
        opts["efficiency"] = {"low": efficiency[0], "expected": efficiency[1],
                              "high": efficiency[2], "source": "set by user (--efficiency)"}
    est = budget_for_model(usd, model, hardware, devices, **opts)
    if fmt in ("table", "markdown"):
        click.echo(f"{money(usd)} buys {fmt_count(est.tokens)} tokens of {est.model.name} on "
                   f"{est.layout.devices} x {est.hardware.name}: "
                   f"{_days(est.time.wall_clock_days)}\n")
    click.echo(render_estimate(est, fmt), nl=False)


def _days(days: float) -> str:
    """'94.6 days'; under a day (a fine-tune) in hours or minutes."""
    from planner.report.fmt import duration

    return f"{days:,.1f} days" if days >= 1 else duration(days)


def _render_budget(ans, fmt: str) -> str:
    from planner.report.fmt import money
    from planner.report.tabular import render_rows
    from planner.units import fmt_count

    if fmt == "json":
        return dumps_json(ans.to_dict()) + "\n"
    rows = []
    # best case first, as in every range planner prints: the most compute the money buys
    for case, label in (("low", "best case"), ("expected", "expected"), ("high", "worst case")):
        c = ans.cases[case]
        for a in c.allocations:
            rows.append({"case": f"{label} ({c.efficiency:.2f} of peak)", "flops": c.flops,
                         "rule": a.rule, "params": fmt_count(a.params) if fmt == "table"
                         else a.params, "tokens": fmt_count(a.tokens) if fmt == "table"
                         else a.tokens, "tokens_per_param": round(a.tokens_per_param, 1),
                         "loss_chinchilla": round(a.loss_chinchilla_fit, 3),
                         "loss_besiroglu": round(a.loss_besiroglu_fit, 3)})
    cols = ["case", "flops", "rule", "params", "tokens", "tokens_per_param", "loss_chinchilla",
            "loss_besiroglu"]
    if fmt == "csv":
        return render_rows(rows, cols, "csv")
    spend = f"{money(ans.usd)} at ${ans.usd_per_device_hour:g}/h buys " if ans.usd else ""
    head = (f"{spend}{fmt_count(ans.device_hours)} {ans.hardware} device-hours = "
            f"{ans.devices:,} devices for {ans.days:,.1f} days (goodput {ans.goodput:.2f})\n\n")
    notes = "\nAssumptions:\n" + "".join(
        f"  {a.name} = {a.value} {a.unit}  [{'default' if a.defaulted else 'yours'}] "
        f"{a.source}\n" for a in ans.assumptions)
    return head + render_rows(rows, cols, fmt) + notes
