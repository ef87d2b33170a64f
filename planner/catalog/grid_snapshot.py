"""Build planner/data/grid/codecarbon_grid.json from an installed codecarbon.

`planner estimate` must answer instantly without codecarbon (and its pandas import), so the
grid-intensity tables are copied once from codecarbon's packaged data into a small JSON file.
Regenerate after upgrading codecarbon:  python -m planner.catalog.grid_snapshot
tests/test_regions.py checks the snapshot against codecarbon whenever codecarbon is installed.
"""

from __future__ import annotations

import csv
import importlib.metadata
import io
import json
from importlib import resources
from pathlib import Path

from planner.fileio import write_text_atomic

LBS_PER_MWH_TO_G_PER_KWH = 453.59237 / 1000.0  # 1 lb = 453.59237 g; 1 MWh = 1000 kWh
SNAPSHOT = Path(__file__).resolve().parent.parent / "data" / "grid" / "codecarbon_grid.json"


def build_from_codecarbon() -> dict:
    """Read codecarbon's packaged data files into planner's compact grid table."""
    data = resources.files("codecarbon") / "data"
    mix = json.loads((data / "private_infra" / "global_energy_mix.json").read_text())
    countries = {
        iso: {"name": v["country_name"], "g_co2e_per_kwh": v["carbon_intensity"],
              "year": v["year"]}
        for iso, v in sorted(mix.items())
        if v.get("carbon_intensity") is not None
    }
    usa = json.loads((data / "private_infra" / "2023" / "usa_emissions.json").read_text())
    states = {
        v["regionCode"]: {
            "name": name,
            "g_co2e_per_kwh": round(v["emissions"] * LBS_PER_MWH_TO_G_PER_KWH, 3),
        }
        for name, v in sorted(usa.items())
        if not name.startswith("_") and len(v["regionCode"]) == 2  # skip the national 'usa' row
    }
    text = (data / "cloud" / "impact.csv").read_text(encoding="utf-8-sig")
    gcp = {
        r["region"]: {"g_co2e_per_kwh": float(r["impact"]), "country_iso3": r["countryIsoCode"],
                      "location": r["city"] or r["country_name"]}
        for r in csv.DictReader(io.StringIO(text))
        if r["provider"] == "gcp"
    }
    version = importlib.metadata.version("codecarbon")
    return {
        "_source": {
            "codecarbon_version": version,
            "countries": "codecarbon data/private_infra/global_energy_mix.json (Our World in "
            "Data, carbon_intensity_elec, mostly 2023)",
            "us_states": f"codecarbon data/private_infra/2023/usa_emissions.json ({usa['_source']['name']}), "
            "converted from lbs/MWh",
            "gcp": "codecarbon data/cloud/impact.csv (Google Cloud region carbon data, "
            "https://cloud.google.com/sustainability/region-carbon)",
            "world_average_g_co2e_per_kwh": 475,
            "world_average_source": "codecarbon carbon_intensity_per_source.json world_average "
            "(IEA 2019), codecarbon's own last-resort fallback",
        },
        "countries": countries,
        "us_states": states,
        "gcp": gcp,
    }


def main() -> None:
    snap = build_from_codecarbon()
    write_text_atomic(SNAPSHOT, json.dumps(snap, indent=1, sort_keys=True) + "\n")
    print(f"wrote {SNAPSHOT} from codecarbon {snap['_source']['codecarbon_version']}")


if __name__ == "__main__":
    main()
