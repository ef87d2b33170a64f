"""Files planner writes: always through a temporary file in the same directory and a rename,
so a reader never sees half a file and an interrupted write leaves the old one in place."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from planner.errors import PlannerError


@contextmanager
def atomic_path(path: str | os.PathLike, mode: int = 0o644) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``path``.

    An OSError (missing directory, no permission, disk full) becomes a one-line
    PlannerError naming the file; the temporary file is removed on any failure."""
    out = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
        os.close(fd)
    except OSError as e:
        raise PlannerError(f"cannot write {out}: {e.strerror}") from None
    try:
        yield Path(tmp)
        os.chmod(tmp, mode)
        os.replace(tmp, out)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise PlannerError(f"cannot write {out}: {e.strerror}") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | os.PathLike, text: str, mode: int = 0o644) -> None:
    """Write text atomically (flushed to disk before the rename)."""
    with atomic_path(path, mode) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
