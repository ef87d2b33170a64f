"""Grid intensity and PUE lookup (codecarbon data snapshot + cloud-region mapping)."""

import json

import pytest

from planner.catalog import grid_snapshot
from planner.catalog.regions import grid_factor, known_regions, world_average
from planner.errors import UnknownNameError


def test_snapshot_matches_installed_codecarbon():
    pytest.importorskip("codecarbon")
    shipped = json.loads(grid_snapshot.SNAPSHOT.read_text())
    fresh = grid_snapshot.build_from_codecarbon()
    if fresh["_source"]["codecarbon_version"] != shipped["_source"]["codecarbon_version"]:
        pytest.skip("a different codecarbon is installed; regenerate the snapshot")
    assert fresh == shipped


def test_lbs_per_mwh_conversion():
    # eGRID publishes lbs/MWh: 1000 lbs/MWh = 453.59237 g/kWh.
    assert grid_snapshot.LBS_PER_MWH_TO_G_PER_KWH * 1000 == pytest.approx(453.59237)


@pytest.mark.parametrize("text,iso", [("FR", "FRA"), ("FRA", "FRA"), ("france", "FRA"),
                                       ("fr", "FRA"), ("UK", "GBR"), ("SE", "SWE")])
def test_country_forms(text, iso):
    snap = json.loads(grid_snapshot.SNAPSHOT.read_text())
    g = grid_factor(text)
    assert g.region == iso
    assert g.g_co2e_per_kwh == snap["countries"][iso]["g_co2e_per_kwh"]


def test_hardware_facts_reference_values():
    # hardware_facts.md §3c (OWID 2023 via codecarbon): USA 369, France 56, Sweden 41.
    assert grid_factor("US").g_co2e_per_kwh == pytest.approx(369, abs=1)
    assert grid_factor("FR").g_co2e_per_kwh == pytest.approx(56, abs=1)
    assert grid_factor("SE").g_co2e_per_kwh == pytest.approx(41, abs=1)
    # §3b: GCP europe-west4 236 g/kWh (Google's own figure in codecarbon impact.csv)
    assert grid_factor("gcp:europe-west4").g_co2e_per_kwh == 236


def test_us_state_and_aws_region_agree():
    va = grid_factor("US-VA")
    aws = grid_factor("aws:us-east-1")
    assert aws.g_co2e_per_kwh == va.g_co2e_per_kwh
    assert aws.pue == 1.15 and "AWS" in aws.pue_source
    assert grid_factor("virginia").region == "US-VA"


def test_azure_maps_to_country():
    assert grid_factor("azure:westeurope").g_co2e_per_kwh == grid_factor("NL").g_co2e_per_kwh
    assert grid_factor("azure:westeurope").pue == 1.18


def test_world_average_default():
    w = world_average()
    assert w.g_co2e_per_kwh == 475 and w.pue >= 1


@pytest.mark.parametrize("bad,suggestion", [("aws:us-east-9", "aws:us-east-1"),
                                            ("gcp:europe-west44", "gcp:europe-west4"),
                                            ("Frnace", "FRA"), ("ibm:dal10", None)])
def test_unknown_region_suggests(bad, suggestion):
    with pytest.raises(UnknownNameError) as e:
        grid_factor(bad)
    assert bad in str(e.value)
    if suggestion:
        assert suggestion in str(e.value)


def test_every_known_region_resolves():
    names = known_regions()
    assert len(names) > 250
    for n in names:
        assert grid_factor(n).g_co2e_per_kwh >= 0
