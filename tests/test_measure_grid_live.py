"""Optional hourly grid intensity for measured runs: a user CSV or ElectricityMaps (a fake
opener here; no network in tests), weighted by the run's overlap with each hour."""

from __future__ import annotations

import io
import json
import re
import urllib.error
from datetime import datetime, timezone

import pytest

from planner.cli import cli
from planner.errors import SpecError
from planner.measurement import grid_live
from planner.measurement.grid_live import (
    GridUnavailable, fetch_electricitymaps, live_grid, over_window, read_csv,
)


def _t(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp()


@pytest.fixture
def hourly(tmp_path):
    p = tmp_path / "grid.csv"
    p.write_text("datetime,g_co2e_per_kwh\n2026-12-01T10:00:00Z,100\n"
                 "2026-12-01T11:00:00Z,200\n\n2026-12-01T12:00:00+00:00,400\n")
    return p


def test_weighted_by_overlap_by_hand(hourly):
    h = read_csv(hourly)
    # 10:30-11:30: half an hour at 100, half at 200 -> 150
    assert over_window(h, _t("2026-12-01T10:30:00"), _t("2026-12-01T11:30:00")) == \
        pytest.approx(150.0)
    # 10:45-12:15: 15 min x 100 + 60 min x 200 + 15 min x 400 = 225 over 90 min
    assert over_window(h, _t("2026-12-01T10:45:00"), _t("2026-12-01T12:15:00")) == \
        pytest.approx((15 * 100 + 60 * 200 + 15 * 400) / 90)
    assert over_window(h, _t("2026-12-01T12:30:00"), _t("2026-12-01T13:30:00")) is None


def test_electricitymaps_export_headers(tmp_path):
    p = tmp_path / "FR_2026_hourly.csv"
    p.write_text("Datetime (UTC),Country,Carbon Intensity gCO\u2082eq/kWh (LCA)\n"
                 "2026-12-01 10:00:00,France,31.5\n")
    assert read_csv(p).values == (31.5,)


@pytest.mark.parametrize("text,msg", [
    ("", "the file is empty"),
    ("when,value\n2026-12-01T10:00:00Z,1\n", "line 1 needs a time column"),
    ("datetime,g_co2e_per_kwh\n2026-12-01T10:00:00Z,abc\n", "line 2: expected an ISO time"),
    ("datetime,g_co2e_per_kwh\n2026-12-01T10:00:00Z,-5\n", "line 2: intensity must be 0"),
    ("datetime,g_co2e_per_kwh\n", "no rows after the header"),
])
def test_bad_csv_names_file_and_line(tmp_path, text, msg):
    p = tmp_path / "g.csv"
    p.write_text(text)
    with pytest.raises(SpecError, match=msg):
        read_csv(p)


class Answer(io.BytesIO):
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_electricitymaps_history_with_a_fake_opener():
    seen = {}

    def opener(req, timeout):
        seen["url"], seen["token"] = req.full_url, req.get_header("Auth-token")
        return Answer(json.dumps({"zone": "FR", "history": [
            {"datetime": "2026-12-01T10:00:00.000Z", "carbonIntensity": 40},
            {"datetime": "2026-12-01T11:00:00.000Z", "carbonIntensity": 60}]}).encode())

    h = fetch_electricitymaps("FR", "secret", opener)
    assert seen == {"url": grid_live.HISTORY_URL.format(zone="FR"), "token": "secret"}
    assert over_window(h, _t("2026-12-01T10:30:00"), _t("2026-12-01T11:30:00")) == \
        pytest.approx(50.0)


@pytest.mark.parametrize("error,msg", [
    (urllib.error.URLError("no route"), "unreachable (no route)"),
    (urllib.error.HTTPError("u", 401, "Unauthorized", {}, None), "HTTP 401 Unauthorized"),
])
def test_electricitymaps_failures_are_one_reason(error, msg):
    def opener(req, timeout):
        raise error

    with pytest.raises(GridUnavailable, match=re.escape(msg)):
        fetch_electricitymaps("FR", "t", opener)
    lg = live_grid(None, "electricitymaps", None, "FR", {"ELECTRICITYMAPS_TOKEN": "t"})
    assert lg.intensity(0.0, 1.0, opener) == (None, f"ElectricityMaps {msg}")


def test_live_grid_input_checks():
    assert live_grid(None, None, None, "FR", {}) is None
    with pytest.raises(SpecError, match="ELECTRICITYMAPS_TOKEN"):
        live_grid(None, "electricitymaps", None, "FR", {})
    with pytest.raises(SpecError, match="--grid-zone"):
        live_grid(None, "electricitymaps", None, "aws:us-east-1", {"ELECTRICITYMAPS_TOKEN": "t"})
    with pytest.raises(SpecError, match="not both"):
        live_grid("x.csv", "electricitymaps", None, None, {})


def test_cli_hourly_csv_and_fallback(runner, tmp_path, monkeypatch):
    def no_network(*a, **k):
        raise AssertionError("network call without --grid-live")

    monkeypatch.setattr(grid_live, "fetch_electricitymaps", no_network)
    now = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0).timestamp()
    p = tmp_path / "g.csv"  # the hours around now, all at 123 g/kWh
    p.write_text("datetime,g_co2e_per_kwh\n" + "".join(
        f"{datetime.fromtimestamp(now + k * 3600, timezone.utc).isoformat()},123\n"
        for k in range(-2, 3)))
    out = tmp_path / "r.json"
    r = runner.invoke(cli, ["measure", "--meter", "cpu-time", "--no-ledger", "--grid-hourly",
                            str(p), "--format", "json", "--output", str(out), "--", "true"])
    assert r.exit_code == 0, r.stderr
    c = json.loads(out.read_text())["carbon"]
    assert c["grid_g_co2e_per_kwh"] == pytest.approx(123.0)
    assert c["grid_source"].startswith("hourly CSV")
    assert json.loads(out.read_text())["carbon"]["kg_co2e"] == pytest.approx(
        json.loads(out.read_text())["energy"]["kwh"] * 0.123)
    # A CSV that misses the run: the annual average, said on the record and in one line.
    p.write_text("datetime,g_co2e_per_kwh\n2001-01-01T00:00:00Z,5\n")
    r = runner.invoke(cli, ["measure", "--meter", "cpu-time", "--no-ledger", "--region", "FR",
                            "--grid-hourly", str(p), "--format", "json", "--output", str(out),
                            "--", "true"])
    assert r.exit_code == 0
    c = json.loads(out.read_text())["carbon"]
    assert c["grid_g_co2e_per_kwh"] == pytest.approx(56.04, abs=0.01)  # France, annual
    assert "hourly figures not used" in c["grid_source"]
    assert "planner measure: hourly grid figures not used:" in r.stderr
    # Without the flags nothing but the annual average is used (no_network not called).
    r = runner.invoke(cli, ["measure", "--meter", "cpu-time", "--no-ledger", "--", "true"])
    assert r.exit_code == 0


def test_cli_bad_csv_fails_before_running(runner, tmp_path):
    marker = tmp_path / "ran"
    p = tmp_path / "g.csv"
    p.write_text("datetime,g_co2e_per_kwh\nyesterday,5\n")
    r = runner.invoke(cli, ["measure", "--meter", "cpu-time", "--no-ledger", "--grid-hourly",
                            str(p), "--", "touch", str(marker)])
    assert r.exit_code == 1 and "line 2: expected an ISO time" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not marker.exists()
