"""Rendering a scenario's answer: the paragraph a report and `planner run` print."""

from __future__ import annotations

from planner.planning.scenario import ScenarioResult
from planner.report.fmt import carbon, duration, energy, money, plural
from planner.units import fmt_count


def scenario_answer(result: ScenarioResult) -> str:
    """One paragraph: which option wins the scenario's objective, with its ranges."""
    sc, plans, questions = result.scenario, result.plans, result.questions
    key = {"time": lambda e: e.time.wall_clock_days, "cost": lambda e: e.cost.total_usd,
           "carbon": lambda e: e.carbon.kg_co2e}[sc.constraints.objective]
    ranked = sorted(plans, key=key)
    best = ranked[0]
    word = {"time": "fastest", "cost": "cheapest", "carbon": "lowest-carbon"}[
        sc.constraints.objective]
    r = best.range
    text = (f"{sc.question} Asked as '{questions[plans.index(best)]}' for each option, the "
            f"{word} is {best.hardware.name}: {plural(best.layout.devices, 'device')} for "
            f"{duration(r.expected.wall_clock_days)} ({duration(r.low.wall_clock_days)} to "
            f"{duration(r.high.wall_clock_days)}), {money(r.expected.cost_usd)} "
            f"({money(r.low.cost_usd)} to {money(r.high.cost_usd)}) at "
            f"${best.cost.usd_per_device_hour:g}/device-hour, "
            f"{energy(r.expected.energy_kwh)} and {carbon(r.expected.kg_co2e)} CO2e "
            f"({best.carbon.region}), {_what(best)} on "
            f"{fmt_count(best.tokens)} tokens.")
    fastest = min(plans, key=lambda e: e.time.wall_clock_days)
    if sc.constraints.objective != "time" and fastest is not best:
        text += (f" The fastest is {fastest.hardware.name} "
                 f"({duration(fastest.range.expected.wall_clock_days)}, "
                 f"{money(fastest.range.expected.cost_usd)}).")
    if len(ranked) > 1 and ranked[1] is not fastest or \
            sc.constraints.objective == "time" and len(ranked) > 1:
        nxt = ranked[1]
        text += (f" Next is {nxt.hardware.name} ({plural(nxt.layout.devices, 'device')}, "
                 f"{duration(nxt.range.expected.wall_clock_days)}, "
                 f"{money(nxt.range.expected.cost_usd)}).")
    text += (" Ranges span the best and worst efficiency and goodput cases (and the batch and "
             "layout choice where defaulted); prices are indicative list prices with their "
             "dates in the assumptions.")
    return text


def _what(e) -> str:
    """'training M (N parameters)', or for a fine-tune what trains and what stays frozen."""
    m = e.model
    if m.finetune is None:
        return f"training {m.name} ({fmt_count(m.params_total)} parameters)"
    return (f"fine-tuning {m.name} ({m.finetune}: {fmt_count(m.params_trainable)} trainable, "
            f"{fmt_count(m.params_frozen)} frozen)")
