"""The parse cache: a hit returns exactly what parsing would, and an edit is seen."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from planner.catalog import catalog, parse_cache
from planner.catalog.catalog import shipped_dir
from planner.catalog.yamlio import read_yaml


def test_hit_returns_what_parsing_returns(tmp_path):
    f = tmp_path / "x.yaml"
    f.write_text("a: 1\nb: [2.5, true, null, text]\nc: {d: -3.0e-5}\n")
    parsed, _ = read_yaml(f)
    assert parse_cache.get(f) == parsed == {"a": 1, "b": [2.5, True, None, "text"],
                                            "c": {"d": -3.0e-5}}
    assert read_yaml(f)[0] == parsed


def test_an_edited_file_is_parsed_again(tmp_path):
    f = tmp_path / "x.yaml"
    f.write_text("a: 1\n")
    read_yaml(f)
    f.write_text("a: 22\n")  # different size, new mtime
    os.utime(f, ns=(f.stat().st_atime_ns, f.stat().st_mtime_ns + 1_000_000))
    assert parse_cache.get(f) is None
    assert read_yaml(f)[0] == {"a": 22}


def test_documents_json_cannot_represent_exactly_are_not_cached(tmp_path):
    # YAML dates and integer keys would come back as strings from JSON
    for i, text in enumerate(("when: 2026-11-23\n", "1: one\n", "x: .nan\n")):
        f = tmp_path / f"{i}.yaml"
        f.write_text(text)
        read_yaml(f)
        assert parse_cache.get(f) is None


def test_cache_off_or_unwritable_is_not_an_error(tmp_path, monkeypatch):
    f = tmp_path / "x.yaml"
    f.write_text("a: 1\n")
    monkeypatch.setenv("PLANNER_CACHE_DIR", "")
    assert parse_cache.cache_dir() is None and read_yaml(f)[0] == {"a": 1}
    blocker = tmp_path / "file-not-dir"
    blocker.write_text("")
    monkeypatch.setenv("PLANNER_CACHE_DIR", str(blocker))
    assert read_yaml(f)[0] == {"a": 1} and parse_cache.get(f) is None


def test_every_shipped_file_is_cached_exactly():
    # presets, profiles and the region table: a warm read equals a fresh parse
    files = [*shipped_dir("hardware_profiles").glob("*.yaml"),
             *(Path(catalog.__file__).parent.parent / "data" / "models").glob("*.yaml"),
             Path(catalog.__file__).parent.parent / "data" / "grid" / "cloud_regions.yaml"]
    assert len(files) > 50
    for f in files:
        parsed, _ = read_yaml(f)
        assert parse_cache.get(f) == parsed, f


def test_a_warm_estimate_does_not_import_pyyaml(tmp_path):
    code = ("import sys; sys.argv = ['planner', 'estimate']; from planner.cli import main\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "print('yaml' in sys.modules, file=sys.stderr)")
    env = {**os.environ, "PLANNER_CACHE_DIR": str(tmp_path / "cache")}
    runs = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           env=env) for _ in range(2)]
    assert [r.stderr.strip().splitlines()[-1] for r in runs] == ["True", "False"]
    assert runs[0].stdout == runs[1].stdout  # same estimate, cold or warm


def test_an_entry_for_another_file_is_not_used(tmp_path):
    # names only spread entries; the stored source path decides
    f = tmp_path / "x.yaml"
    f.write_text("a: 1\n")
    read_yaml(f)
    entry, source = parse_cache._entry(f)
    entry.write_text('{"source": "/elsewhere.yaml", "data": {"a": 99}}')
    assert parse_cache.get(f) is None and read_yaml(f)[0] == {"a": 1}


def test_default_location_and_no_home(monkeypatch):
    monkeypatch.delenv("PLANNER_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", "/x/cache")
    assert parse_cache.cache_dir() == Path("/x/cache/planner/yaml")
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setattr(os.path, "expanduser", lambda p: p)  # no home directory known
    assert parse_cache.cache_dir() is None


def test_an_entry_that_does_not_match_its_source_or_parse_is_a_miss(tmp_path):
    f = tmp_path / "x.yaml"
    f.write_text("a: 1\n")
    read_yaml(f)
    entry, _ = parse_cache._entry(f)
    header = entry.read_text().split("\n", 1)[0]
    for damaged in (header + "\n" + "[" * 100_000 + "]" * 100_000,  # RecursionError
                    header + '\n{"a": 2}',  # data changed, its CRC not
                    header + "\n{bad", "{bad", "\xff"):
        entry.write_text(damaged)
        assert parse_cache.get(f) is None, damaged[:40]
        assert read_yaml(f)[0] == {"a": 1} and parse_cache.get(f) == {"a": 1}
    st = f.stat()  # an edit that keeps the size and the modification time
    f.write_text("a: 2\n")
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert parse_cache._entry(f)[0] == entry and parse_cache.get(f) is None
    assert read_yaml(f)[0] == {"a": 2}


def test_a_valid_file_is_never_blamed_for_its_cache_entry(runner, tmp_path):
    # an entry whose CRC was recomputed over bad data: validation fails on it, the file is
    # parsed again, and the estimate is the one the file gives
    import json
    import zlib

    from planner.cli import cli

    model = tmp_path / "m.yaml"
    model.write_text((Path(catalog.__file__).parent.parent / "data" / "models" /
                      "llama3-8b.yaml").read_text().replace("name: llama3-8b", "name: m"))
    args = ["estimate", "-m", str(model), "--format", "json"]
    first = runner.invoke(cli, args)
    assert first.exit_code == 0, first.stderr
    entry, source = parse_cache._entry(model)
    data = {**json.loads(entry.read_text().split("\n", 1)[1]), "num_layers": "many"}
    text = json.dumps(data, separators=(",", ":"))
    crc = zlib.crc32(text.encode(), zlib.crc32(model.read_bytes()))
    entry.write_text(json.dumps({"source": source, "crc": crc}) + "\n" + text)
    again = subprocess.run([sys.executable, "-m", "planner", *args], capture_output=True,
                           text=True)  # (a new process: no spec cached in memory)
    assert again.returncode == 0 and again.stderr == "" and again.stdout == first.stdout
    assert parse_cache.get(model)["num_layers"] == 32  # the entry is repaired
