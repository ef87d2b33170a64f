"""The calibrations an estimate applies: the link efficiencies measured on its hardware
(refit under the model's constants of the day) and the compute factor of its closest stored
run, each said in the assumptions, and not applied when the model or links changed since."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from planner.errors import SpecError
from planner.estimators.params import count_params
from planner.estimators.step_time import CALIBRATED, PERF_MODEL_VERSION, PerfParams, calibrated
from planner.results import Assumption
from planner.specs import HardwareProfile

if TYPE_CHECKING:
    from planner.planning.resolve import Request


def apply_calibration(req: Request) -> tuple[PerfParams, list[Assumption]]:
    """The performance model corrected by the stored calibrations for this hardware profile,
    and the assumptions that say so (a CPU calibration, profile `cpu`, never touches a GPU
    estimate). Measured links (`planner calibration link`) set the achieved fraction of each
    level's link rate. A compute calibration (`planner validate --calibrate`, or `planner
    calibration add` for a measured run) of a model within 10x of this one's size scales the
    compute constants it could see; the layout terms stay the model's. A flat efficiency the
    user gave overrides all of them."""
    if req.assumptions.efficiency is not None:
        return req.perf, []
    perf, notes = with_links(req.perf, req.hw)
    perf, note = _compute_calibration(req, perf)
    return perf, notes + ([note] if note is not None else [])


def with_links(perf: PerfParams, hw: HardwareProfile,
               path: Path | None = None) -> tuple[PerfParams, list[Assumption]]:
    """``perf`` with the link efficiencies measured on this hardware profile, if any (from the
    calibration file at ``path``, else the default one). Each is refit from its stored
    measurement under the model's constants now, scale-up first (it caps scale-out groups);
    one the model can no longer reproduce is not applied, and said so."""
    from planner.catalog.calibrations import LEVELS, lookup_links
    from planner.planning.link_calibration import refit

    links = lookup_links(hw.name, path)
    notes = []
    for level in (lv for lv in LEVELS if lv in links):
        cal, name = links[level], f"{level}_efficiency"
        try:
            eff = refit(cal, hw, perf)
        except SpecError as e:
            notes.append(Assumption(
                name=f"link_calibration.{level}", value="not applied", unit="", defaulted=True,
                source=f"{cal.describe()}: {e}; the model's default {getattr(perf, name):g} is "
                "used"))
            continue
        notes.append(Assumption(
            name=f"link_calibration.{level}", value=round(eff, 4), unit="of the link rate",
            defaulted=False, source=f"{cal.describe()}; was {getattr(perf, name):g} (the "
            "model's default)"))
        perf = replace(perf, **{name: eff})
    return perf, notes


def _compute_calibration(req: Request, perf: PerfParams) -> tuple[PerfParams, Assumption | None]:
    from planner.catalog.calibrations import lookup

    precision = req.training.get("precision") or "bf16"
    cal = lookup(req.hw.name, precision, count_params(req.model).total)
    if cal is None or cal.hardware != req.hw.name or cal.predicted_mfu <= 0:
        return perf, None
    if cal.model_version != PERF_MODEL_VERSION:
        return perf, Assumption(
            name="calibration", value="not applied", unit="", defaulted=True,
            source=f"the stored calibration ({cal.describe()}) was made against an earlier "
            "performance model, whose prediction it corrected; re-run `planner validate "
            "--calibrate` (or `planner calibration add` for a measured run) on this hardware")
    scale = cal.scale
    scaled = calibrated(perf, scale)
    now = links_used(req.hw.name)
    stale = (f"; it was fit with {cal.links or 'the default links'} and the links are now "
             f"{now or 'the defaults'}: re-run `planner calibration add` so it does not count "
             "the network twice" if cal.compute_scale is not None and cal.links != now else "")
    ran, asked = cal.attention_kernel, req.training.get("attention_kernel") or "native"
    if ran is None and asked != "native":
        stale += (f"; the run's attention kernel was not recorded and this estimate's {asked} "
                  "speed is applied on top of the factor, which already holds whatever kernel "
                  "the run used")
    elif ran is not None and ran != asked:
        stale += (f"; its run was fit as {ran} attention and this estimate uses {asked}, whose "
                  "speed the model applies on top of the factor (right if the run did use "
                  f"{ran}; if it used {asked}, re-run `planner calibration add` with "
                  f"--attention-kernel {asked})")
    changed = ", ".join(f"{k} {getattr(perf, k):g} -> {getattr(scaled, k):.3g}"
                        for k in CALIBRATED)
    return scaled, Assumption(
        name="calibration", value=round(scale, 4), unit="x the model's compute speed",
        defaulted=False, source=f"{cal.describe()}; " + (
            "measured / predicted throughput of that run" if cal.compute_scale is None else
            "the factor that reproduces that run's measured step time, its communication and "
            "bubble as the model has them,") + f" scales the compute constants ({changed}); "
        f"communication, bubble and layout terms are the model's{stale}")


def links_used(hardware: str, path: Path | None = None) -> str | None:
    """The link calibrations of this hardware as a compute calibration records them."""
    from planner.catalog.calibrations import lookup_links

    links = lookup_links(hardware, path)
    return ", ".join(f"{level} {cal.efficiency:.4g}" for level, cal in sorted(links.items())) \
        or None
