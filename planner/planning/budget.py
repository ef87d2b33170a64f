"""What a budget buys: compute, the compute-optimal model and data, the predicted loss.

docs/formulas.md §5: C = device-hours x 3600 x peak x efficiency x goodput (§5.4);
allocation under C = 6 N D by the Chinchilla fit (Hoffmann et al. 2022, Eq. 4, and the
20-tokens-per-parameter rule of Approaches 1-2, Table 3) and the Besiroglu et al. 2024
refit of Approach 3; loss L(N, D) = E + A / N^alpha + B / D^beta (Eq. 2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from planner.errors import SpecError
from planner.results import Result


@dataclass(frozen=True)
class LossFit:
    """A parametric loss fit L(N, D) = E + A/N^alpha + B/D^beta."""

    name: str
    E: float
    A: float
    B: float
    alpha: float
    beta: float
    source: str

    def loss(self, params: float, tokens: float) -> float:
        return self.E + self.A / params**self.alpha + self.B / tokens**self.beta

    def optimal(self, flops: float) -> tuple[float, float]:
        """(N_opt, D_opt) minimising the loss at C = 6 N D (Hoffmann et al. Eq. 4)."""
        a, b = self.beta / (self.alpha + self.beta), self.alpha / (self.alpha + self.beta)
        g = (self.alpha * self.A / (self.beta * self.B)) ** (1 / (self.alpha + self.beta))
        return g * (flops / 6) ** a, (flops / 6) ** b / g


CHINCHILLA = LossFit("Chinchilla (Hoffmann 2022, Approach 3)", 1.69, 406.4, 410.7, 0.34, 0.28,
                     "Hoffmann et al. 2022, Eq. 2 and App. D.2 (rounded constants)")
BESIROGLU = LossFit("Besiroglu et al. 2024 refit", 1.8172, 482.01, 2085.43, 0.3478, 0.3658,
                    "Besiroglu, Erdil, Barnett, You 2024, arXiv:2404.10102")


@dataclass(frozen=True)
class Allocation(Result):
    """A model size and token count for a compute budget, with its predicted loss."""

    rule: str
    params: float
    tokens: float
    tokens_per_param: float
    loss_chinchilla_fit: float
    loss_besiroglu_fit: float
    source: str


def useful_flops(device_hours: float, peak_flops_per_s: float, efficiency: float,
                 goodput: float) -> float:
    """Training FLOPs a number of billed device-hours delivers (docs/formulas.md §5.4)."""
    return device_hours * 3600 * peak_flops_per_s * efficiency * goodput


def by_tokens_per_param(flops: float, ratio: float) -> tuple[float, float]:
    """(N, D) with D = ratio x N and C = 6 N D: N = sqrt(C / (6 ratio))."""
    n = math.sqrt(flops / (6 * ratio))
    return n, ratio * n


def allocations(flops: float, tokens_per_param: float | None = None) -> list[Allocation]:
    """Compute-optimal allocations of ``flops`` under each rule (and an over-training ratio)."""
    rules = [("Chinchilla 20 tokens/param (Approaches 1-2)", *by_tokens_per_param(flops, 20.0),
              "Hoffmann et al. 2022, Table 3: D_opt ~ 20 N_opt"),
             ("Besiroglu et al. 2024 refit", *BESIROGLU.optimal(flops), BESIROGLU.source)]
    if tokens_per_param:
        rules.append((f"{tokens_per_param:g} tokens/param (over-trained for inference)",
                      *by_tokens_per_param(flops, tokens_per_param),
                      "Sardana et al. 2024: smaller models on more tokens when inference "
                      "dominates"))
    return [Allocation(rule=r, params=n, tokens=d, tokens_per_param=d / n,
                       loss_chinchilla_fit=CHINCHILLA.loss(n, d),
                       loss_besiroglu_fit=BESIROGLU.loss(n, d), source=src)
            for r, n, d, src in rules]


@dataclass(frozen=True)
class BudgetCase(Result):
    efficiency: float
    flops: float
    allocations: list[Allocation]


@dataclass(frozen=True)
class BudgetAnswer(Result):
    hardware: str
    usd: float | None
    usd_per_device_hour: float
    device_hours: float
    devices: int
    days: float
    goodput: float
    cases: dict[str, BudgetCase]  # low (best case) / expected / high (worst case)
    assumptions: list


def answer_budget(hardware, precision: str, device_hours: float, usd: float | None,
                  price: float, efficiency: tuple[float, float, float], goodput: float,
                  devices: int, tokens_per_param: float | None, assumptions: list) -> BudgetAnswer:
    """Allocations for the best, expected and worst cases of one budget.

    ``efficiency`` is the profile's (low, expected, high) fraction of peak; the cases are keyed
    as every range in planner's output: ``low`` is the best case (the high efficiency, the
    most compute the money buys) and ``high`` the worst, as an estimate's ``range.low`` is its
    shortest, cheapest outcome (docs/json.md)."""
    peak = hardware.peak_flops_per_s(precision)
    cases = {}
    for name, eff in zip(("low", "expected", "high"), reversed(efficiency)):
        c = useful_flops(device_hours, peak, eff, goodput)
        cases[name] = BudgetCase(efficiency=eff, flops=c,
                                 allocations=allocations(c, tokens_per_param))
    days = device_hours / devices / 24
    return BudgetAnswer(hardware=hardware.name, usd=usd, usd_per_device_hour=price,
                        device_hours=device_hours, devices=devices, days=days, goodput=goodput,
                        cases=cases, assumptions=assumptions)


def budget_for_model(usd: float, model, hardware: str, devices: int | None = None,
                     **options):
    """The job a budget buys for one model: the tokens that ``usd`` pays for on the best
    layout on ``devices`` (or one node), as the Estimate `planner estimate` prints for that
    many tokens. Cost is linear in tokens on a fixed layout, so one estimate prices a token
    and a second one, at the affordable token count, is the answer."""
    from planner.planning.answer import estimate_plan

    if not usd or usd <= 0:
        raise SpecError("--usd: give a positive amount with --model (e.g. 1M)")
    probe = estimate_plan(model, hardware, devices, options.pop("tokens", None), **options)
    tokens = probe.tokens * usd / probe.cost.total_usd
    return estimate_plan(model, hardware, probe.layout.devices, tokens, **options)
