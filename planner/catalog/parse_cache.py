"""A cache of parsed YAML files as JSON, so a warm `planner estimate` skips importing PyYAML
(~25 ms) and parsing the preset, the profile and the region table.

Entries are keyed by the file's resolved path, modification time (ns) and size, so an edited
file is parsed again, and each stores a CRC-32 of the source's text and its own data, checked
on every hit: an entry that does not match the file as it is now (an edit that kept the size
and time, a damaged or hand-edited entry) or that does not parse (not JSON, nested too
deeply, over MAX_ENTRY_BYTES) is a miss, and the file is parsed again. Only documents that
survive a JSON round trip unchanged are cached (plain mappings, lists, strings, numbers,
booleans, null; not YAML dates or non-string keys), so a cache hit returns exactly what
parsing would. Best effort: a cache directory that cannot be read or written is skipped
silently; the file is then parsed as usual. Validation still runs on every load: only parsing
is cached.

Directory: $PLANNER_CACHE_DIR, else $XDG_CACHE_HOME/planner, else ~/.cache/planner;
PLANNER_CACHE_DIR set to an empty string turns the cache off.
"""

from __future__ import annotations

import json
import os
import zlib
from pathlib import Path
from typing import Any

FORMAT = 3  # bump when the cached form (or what parsing accepts) changes
MAX_ENTRY_BYTES = 16 * 2**20  # a 4 MiB source with its aliases expanded, as JSON


def cache_dir() -> Path | None:
    """Where parsed files are kept, or None when the cache is off."""
    env = os.environ.get("PLANNER_CACHE_DIR")
    if env is not None:
        return Path(env) / "yaml" if env else None
    base = os.environ.get("XDG_CACHE_HOME")
    if not base:
        home = os.path.expanduser("~")
        if home.startswith("~"):  # no home directory: no cache (never a literal ./~)
            return None
        base = os.path.join(home, ".cache")
    return Path(base) / "planner" / "yaml"


def _entry(path: Path) -> tuple[Path, str] | None:
    """(cache file, the source's resolved path) for the file as it is now."""
    where = cache_dir()
    if where is None:
        return None
    try:
        st = path.stat()
        source = str(path.resolve())
    except OSError:
        return None
    # crc32 only spreads names (hashlib's OpenSSL load costs 3 ms); the entry also stores
    # the source path, checked on every read.
    name = f"{zlib.crc32(source.encode()):08x}-{st.st_mtime_ns}-{st.st_size}-v{FORMAT}.json"
    return where / name, source


def _crc(source_text: bytes, data_text: str) -> int:
    return zlib.crc32(data_text.encode("utf-8"), zlib.crc32(source_text))


def get(path: Path) -> Any | None:
    """The parsed document if a current entry exists, else None."""
    found = _entry(path)
    if found is None:
        return None
    entry, source = found
    try:
        with open(entry, "rb") as f:
            raw = f.read(MAX_ENTRY_BYTES + 1)
        header, _, data_text = raw.decode("utf-8").partition("\n")
        stored = json.loads(header)
        if len(raw) > MAX_ENTRY_BYTES or not isinstance(stored, dict) or \
                stored.get("source") != source or \
                stored.get("crc") != _crc(path.read_bytes(), data_text):
            return None
        return json.loads(data_text)
    except (OSError, ValueError, RecursionError):  # (UnicodeDecodeError is a ValueError)
        return None


def put(path: Path, data: Any, text: str) -> None:
    """Remember ``data``, parsed from ``text`` (the file's content), if JSON represents it
    exactly."""
    found = _entry(path)
    if found is None:
        return
    entry, source = found
    try:
        if json.loads(json.dumps(data)) != data:
            return
        data_text = json.dumps(data, separators=(",", ":"))
    except (TypeError, ValueError, RecursionError):  # dates, sets, non-string keys...
        return
    header = json.dumps({"source": source, "crc": _crc(text.encode("utf-8"), data_text)})
    from planner.errors import PlannerError
    from planner.fileio import write_text_atomic

    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(entry, header + "\n" + data_text)
    except (OSError, PlannerError):
        return
