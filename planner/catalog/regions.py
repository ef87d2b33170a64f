"""Grid carbon intensity and PUE for a region: a country, a US state or a cloud region.

Accepted forms: ``FR`` / ``FRA`` / ``France``; ``US-VA`` / ``virginia``; ``aws:us-east-1``,
``gcp:europe-west4``, ``azure:westeurope``. Data: a snapshot of codecarbon's packaged tables
(see grid_snapshot.py) plus cloud_regions.yaml. Loaded lazily and cached: a few ms.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from planner.catalog.yamlio import read_yaml
from planner.errors import UnknownNameError
from planner.results import frozen

# ISO 3166-1 alpha-2 -> alpha-3 for the countries users most often type.
_ISO2 = dict(
    pair.split(":") for pair in (
        "AE:ARE AR:ARG AT:AUT AU:AUS BE:BEL BG:BGR BH:BHR BR:BRA CA:CAN CH:CHE CL:CHL CN:CHN "
        "CO:COL CZ:CZE DE:DEU DK:DNK EE:EST EG:EGY ES:ESP FI:FIN FR:FRA GB:GBR GR:GRC HK:HKG "
        "HR:HRV HU:HUN ID:IDN IE:IRL IL:ISR IN:IND IS:ISL IT:ITA JP:JPN KE:KEN KR:KOR LT:LTU "
        "LU:LUX LV:LVA MX:MEX MY:MYS NG:NGA NL:NLD NO:NOR NZ:NZL PH:PHL PK:PAK PL:POL PT:PRT "
        "QA:QAT RO:ROU RS:SRB RU:RUS SA:SAU SE:SWE SG:SGP SI:SVN SK:SVK TH:THA TR:TUR TW:TWN "
        "UA:UKR UK:GBR US:USA VN:VNM ZA:ZAF"
    ).split()
)


@frozen
class GridFactor:
    """Location-based grid carbon intensity and the PUE that goes with the region."""

    region: str  # as resolved, e.g. "aws:us-east-1"
    location: str  # human-readable place
    g_co2e_per_kwh: float
    intensity_source: str
    pue: float
    pue_source: str


@lru_cache(maxsize=1)
def _tables() -> tuple[dict, dict]:
    data = Path(__file__).resolve().parent.parent / "data" / "grid"
    snap = json.loads((data / "codecarbon_grid.json").read_text())
    clouds, _ = read_yaml(data / "cloud_regions.yaml")  # libyaml: 5x faster than pure Python
    return snap, clouds


def world_average() -> GridFactor:
    """codecarbon's last-resort world average with the default PUE (used when no region)."""
    snap, clouds = _tables()
    src = snap["_source"]
    return GridFactor(
        "world", "world average", float(src["world_average_g_co2e_per_kwh"]),
        src["world_average_source"], clouds["pue"]["default"]["value"],
        clouds["pue"]["default"]["source"],
    )


def country_iso3(grid: GridFactor) -> str | None:
    """ISO 3166 alpha-3 country of a resolved region (cloud regions: the mapped country)."""
    snap, clouds = _tables()
    if grid.region in snap["countries"]:
        return grid.region
    if grid.region.startswith("US-"):
        return "USA"
    provider, _, name = grid.region.partition(":")
    if provider == "gcp":
        return snap["gcp"].get(name, {}).get("country_iso3")
    if provider in ("aws", "azure"):
        return (clouds.get(provider) or {}).get(name, {}).get("country_iso3")
    return None


def known_regions() -> list[str]:
    """Every accepted region name (for suggestions and `planner regions`)."""
    snap, clouds = _tables()
    names = list(snap["countries"]) + [f"US-{s}" for s in snap["us_states"]]
    names += [f"gcp:{r}" for r in snap["gcp"]]
    names += [f"{p}:{r}" for p in ("aws", "azure") for r in clouds[p]]
    return names


def _country(iso3: str, region: str, location: str | None, pue_key: str) -> GridFactor:
    snap, clouds = _tables()
    c = snap["countries"][iso3]
    version = snap["_source"]["codecarbon_version"]
    pue = clouds["pue"][pue_key]
    return GridFactor(
        region, location or c["name"], c["g_co2e_per_kwh"],
        f"{c['name']} {c['year']} average, Our World in Data via codecarbon {version}",
        pue["value"], pue["source"],
    )


def _state(code: str, region: str, location: str | None, pue_key: str) -> GridFactor:
    snap, clouds = _tables()
    s = snap["us_states"][code]
    pue = clouds["pue"][pue_key]
    version = snap["_source"]["codecarbon_version"]
    return GridFactor(
        region, location or f"{s['name'].title()}, USA", s["g_co2e_per_kwh"],
        f"US EPA eGRID2023 state average ({s['name']}), via codecarbon {version}",
        pue["value"], pue["source"],
    )


def _cloud(provider: str, name: str, raw: str) -> GridFactor:
    snap, clouds = _tables()
    region = f"{provider}:{name}"
    if provider == "gcp":
        if name not in snap["gcp"]:
            raise UnknownNameError("region", raw, [f"gcp:{r}" for r in snap["gcp"]])
        r = snap["gcp"][name]
        pue = clouds["pue"]["gcp"]
        return GridFactor(
            region, f"{r['location']} ({name})", r["g_co2e_per_kwh"],
            "Google Cloud region carbon data via codecarbon impact.csv",
            pue["value"], pue["source"],
        )
    table = clouds.get(provider) or {}
    if name not in table:
        valid = [f"{provider}:{r}" for r in table] if table else known_regions()
        raise UnknownNameError("region", raw, valid)
    r = table[name]
    loc = f"{r['location']} ({name})"
    if r.get("us_state"):
        return _state(r["us_state"], region, loc, provider)
    return _country(r["country_iso3"], region, loc, provider)


@lru_cache(maxsize=256)
def grid_factor(region: str) -> GridFactor:
    """Resolve a region string to its grid intensity and PUE; UnknownNameError if unknown.
    Cached: the tables are the shipped snapshot, and every estimate asks."""
    snap, _ = _tables()
    raw = region.strip()
    key = raw.lower()
    if ":" in key:
        provider, name = key.split(":", 1)
        if provider not in ("aws", "gcp", "azure"):
            raise UnknownNameError("region", raw, known_regions())
        return _cloud(provider, name, raw)
    upper = raw.upper()
    if upper.startswith("US-") and upper[3:] in snap["us_states"]:
        return _state(upper[3:], upper, None, "default")
    for code, s in snap["us_states"].items():
        if s["name"].lower() == key:
            return _state(code, f"US-{code}", None, "default")
    iso3 = _ISO2.get(upper, upper)
    if iso3 in snap["countries"]:
        return _country(iso3, iso3, None, "default")
    for code, c in snap["countries"].items():
        if c["name"].lower() == key:
            return _country(code, code, None, "default")
    raise UnknownNameError("region", raw, known_regions())
