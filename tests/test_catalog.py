"""Shipped data: every hardware profile and preset validates; user profile directories work."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from planner.catalog.catalog import (
    PROFILES_ENV, hardware_paths, load_hardware, load_model, shipped_dir,
)
from planner.errors import SpecError, UnknownNameError
from planner.specs.hardware import Figure

REQUIRED = ["v100", "a100-40gb", "a100-80gb", "h100-sxm", "h100-pcie", "h200", "h800", "b200",
            "gb200", "l40s", "l4", "mi250x", "mi300x", "mi325x", "tpu-v4", "tpu-v5e", "tpu-v5p",
            "tpu-v6e", "gaudi2", "gaudi3", "trainium2"]
SHIPPED = sorted(p.stem for p in shipped_dir("hardware_profiles").glob("*.yaml"))


def test_required_accelerators_ship():
    assert len(SHIPPED) >= 22
    missing = [n for n in REQUIRED if n not in SHIPPED]
    assert not missing, missing


@pytest.mark.parametrize("name", SHIPPED)
def test_profile_is_complete_and_sourced(name):
    hw = load_hardware(name)
    assert hw.name == name
    figures = [v for v in (getattr(hw, f) for f in type(hw).model_fields) if isinstance(v, Figure)]
    assert len(figures) >= 9
    for fig in figures:
        assert fig.source.strip()
    assert hw.memory_bytes > 8 * 2**30
    assert hw.supported_precisions
    assert len({q.tier for q in hw.prices}) >= 2, "on-demand and at least one cheaper tier"
    assert hw.price("on_demand") or any(q.tier == "assumption" for q in hw.prices)
    assert 0 < hw.efficiency.low <= hw.efficiency.expected <= hw.efficiency.high < 0.8
    assert hw.tdp_w.value > 0 and hw.host_power_w_per_device.value >= 0


@pytest.mark.parametrize("path", sorted(shipped_dir("hardware_profiles").glob("*.yaml")))
def test_profile_files_reference_the_schema(path):
    first = path.read_text().splitlines()[0]
    assert first == ("# yaml-language-server: "
                     "$schema=../planner/data/schema/hardware_profile.schema.json")


def test_dense_peaks_not_sparse():
    # hardware_facts.md §5 pitfall 1: H100 SXM BF16 is 989 dense (1,979 with sparsity).
    assert load_hardware("h100-sxm").peak_dense_bf16_tflops.value == pytest.approx(989.4, 0.01)
    assert load_hardware("a100-80gb").peak_dense_bf16_tflops.value == 312


def _write_profile(directory: Path, name: str, **changes) -> Path:
    text = (shipped_dir("hardware_profiles") / "h100-sxm.yaml").read_text()
    text = text.replace("name: h100-sxm", f"name: {name}")
    for old, new in changes.items():
        text = text.replace(old, new)
    path = directory / f"{name}.yaml"
    path.write_text(text)
    return path


def test_user_profiles_dir_flag_and_env(tmp_path, monkeypatch):
    _write_profile(tmp_path, "my-h100", **{"value: 700\n": "value: 650\n"})
    assert load_hardware("my-h100", (str(tmp_path),)).tdp_w.value == 650
    with pytest.raises(UnknownNameError):
        load_hardware("my-h100")
    monkeypatch.setenv(PROFILES_ENV, str(tmp_path))
    assert "my-h100" in hardware_paths()
    assert load_hardware("my-h100").tdp_w.value == 650


def test_user_profile_overrides_shipped(tmp_path):
    _write_profile(tmp_path, "h100-sxm", **{"value: 700\n": "value: 690\n"})
    assert load_hardware("h100-sxm", (str(tmp_path),)).tdp_w.value == 690


def test_bad_user_profile_names_file_line_and_key(tmp_path):
    path = _write_profile(tmp_path, "typo", **{"tdp_w:": "tdp_watts:"})
    with pytest.raises(SpecError) as e:
        load_hardware("typo", (str(tmp_path),))
    msg = str(e.value)
    assert str(path) in msg and "tdp_watts" in msg and "line" in msg and "tdp_w" in msg


def test_profile_name_must_match_file(tmp_path):
    path = _write_profile(tmp_path, "other")
    path.rename(tmp_path / "renamed.yaml")
    with pytest.raises(SpecError, match="must match the file name"):
        load_hardware("renamed", (str(tmp_path),))


def test_missing_profiles_dir():
    with pytest.raises(SpecError, match="does not exist"):
        hardware_paths(("/nonexistent/dir",))


def test_model_yaml_and_directory(tmp_path):
    text = (Path(load_model.__code__.co_filename).parent.parent / "data" / "models" /
            "llama3-8b.yaml").read_text()
    (tmp_path / "mine.yaml").write_text(text.replace("name: llama3-8b", "name: mine"))
    assert load_model(str(tmp_path / "mine.yaml")).name == "mine"


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_non_editable_install_finds_shipped_data(tmp_path):
    """`pip install .` (a real wheel, not editable) ships profiles, presets and grid data."""
    root = Path(__file__).resolve().parent.parent
    target = tmp_path / "site"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation",
         "--quiet", "--target", str(target), str(root)],
        capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr[-2000:]
    env = {**os.environ, "PYTHONPATH": str(target)}
    env.pop(PROFILES_ENV, None)
    code = ("import planner, json; from planner.catalog.catalog import hardware_paths;"
            "e = planner.estimate('llama3-8b', 'tpu-v5p', 8, '1T', 'gcp:europe-west4',"
            " zero_stage=3);"
            "print(planner.__file__); print(len(hardware_paths()), e.model.params_total)")
    run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    where, counts = run.stdout.splitlines()
    assert where.startswith(str(target))
    n_profiles, params = counts.split()
    assert int(n_profiles) == len(SHIPPED) and int(params) == 8_030_261_248


@pytest.mark.parametrize("value", ["1.5", "0"])
def test_fa2_attention_fraction_is_a_fraction(tmp_path, value):
    _write_profile(tmp_path, "fast-fa2", **{"  value: 0.57\n": f"  value: {value}\n"})
    with pytest.raises(SpecError, match=r"fa2_attention_fraction: value must be"):
        load_hardware("fast-fa2", (str(tmp_path),))


def test_fa2_fraction_is_given_where_flashattention2_runs_and_only_there():
    # FlashAttention-2 is native on Ampere and Ada and runs at 0.57 of FlashAttention-3 on
    # Hopper (Shah et al. 2024). Its ROCm port (MI200/MI300), Blackwell and the rest have no
    # published figure here, so --attention-kernel fa2 is refused on them.
    ampere_ada = {"a100-40gb", "a100-80gb", "a10g", "rtx-4090", "l4", "l40s"}
    hopper = {"h100-sxm", "h100-pcie", "h100-nvl", "h200", "h800"}
    for name in SHIPPED:
        fig = load_hardware(name).fa2_attention_fraction
        want = 1.0 if name in ampere_ada else 0.57 if name in hopper else None
        assert (fig.value if fig else None) == want, name
