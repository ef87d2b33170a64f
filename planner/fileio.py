"""Files planner writes: always through a temporary file in the same directory and a rename,
so a reader never sees half a file and an interrupted write leaves the old one in place.

The temporary file is ``.NAME.PID.XXXXXXXX.tmp`` beside the target. It is removed when the
write fails or is interrupted; one left by a process that was killed (SIGKILL, power loss) is
removed by the next write of the same target once its process is gone. ``check_writable``
proves, before any work starts, that a target can be written, by creating and removing a file
in its directory (``os.access`` says yes to root even where nothing can be created, e.g.
/proc). ``write_texts_atomic`` writes several files as a set (an HTML report and its markdown
twin): every temporary file is written first and the renames follow with SIGINT, SIGTERM and
SIGHUP deferred, so an interruption leaves all the old files or all the new ones.
"""

from __future__ import annotations

import os
import signal
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path

from planner.errors import PlannerError

SQLITE_HEADER = b"SQLite format 3\x00"
DEFERRED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
# A leftover temporary file without a process id in its name (written before they had one)
# is removed once it is this old: no write takes that long.
STALE_AFTER_S = 600.0


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def clean_stale_temps(path: str | os.PathLike) -> list[Path]:
    """Remove ``.NAME.*.tmp`` files that an interrupted earlier write of ``path`` left.

    A file whose name carries a process id is removed when that process no longer exists;
    one without is removed when older than STALE_AFTER_S. Returns the paths removed."""
    out = Path(path)
    prefix, removed = f".{out.name}.", []
    try:
        entries = list(os.scandir(out.parent))
    except OSError:
        return removed
    for entry in entries:
        name = entry.name
        if not (name.startswith(prefix) and name.endswith(".tmp")):
            continue
        middle = name[len(prefix):-len(".tmp")]
        pid_text = middle.split(".", 1)[0]
        try:
            if pid_text.isdigit() and "." in middle:
                pid = int(pid_text)
                if pid == os.getpid() or _pid_alive(pid):
                    continue
            elif time.time() - entry.stat().st_mtime < STALE_AFTER_S:
                continue
            os.unlink(entry.path)
            removed.append(Path(entry.path))
        except OSError:
            continue
    return removed


def _mkstemp(out: Path) -> Path:
    try:
        fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.{os.getpid()}.",
                                   suffix=".tmp")
        os.close(fd)
    except OSError as e:
        raise PlannerError(f"cannot write {out}: {e.strerror}") from None
    return Path(tmp)


@contextmanager
def atomic_path(path: str | os.PathLike, mode: int = 0o644) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``path``.

    An OSError (missing directory, no permission, disk full) becomes a one-line
    PlannerError naming the file; the temporary file is removed on any failure."""
    out = Path(path)
    clean_stale_temps(out)
    tmp = _mkstemp(out)
    try:
        yield tmp
        os.chmod(tmp, mode)
        os.replace(tmp, out)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise PlannerError(f"cannot write {out}: {e.strerror}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _write_file(tmp: Path, text: str) -> None:
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def write_text_atomic(path: str | os.PathLike, text: str, mode: int = 0o644) -> None:
    """Write text atomically (flushed to disk before the rename)."""
    with atomic_path(path, mode) as tmp:
        _write_file(tmp, text)


def write_texts_atomic(files: Sequence[tuple[str | os.PathLike, str]],
                       mode: int = 0o644) -> None:
    """Write several files as a set: all temporary files first, then the renames with
    SIGINT/SIGTERM/SIGHUP deferred, so an interruption leaves all old files or all new ones.

    Only SIGKILL (or a crash of the machine) between two renames, a window of microseconds,
    can leave some new and some old."""
    with ExitStack() as stack:
        pending = []
        for path, text in files:
            out = Path(path)
            clean_stale_temps(out)
            tmp = _mkstemp(out)
            stack.callback(tmp.unlink, missing_ok=True)
            try:
                _write_file(tmp, text)
                os.chmod(tmp, mode)
            except OSError as e:
                raise PlannerError(f"cannot write {out}: {e.strerror}") from None
            pending.append((tmp, out))
        with signals_deferred():
            for tmp, out in pending:
                try:
                    os.replace(tmp, out)
                except OSError as e:
                    raise PlannerError(f"cannot write {out}: {e.strerror}") from None


@contextmanager
def signals_deferred() -> Iterator[list[int]]:
    """Hold SIGINT, SIGTERM and SIGHUP for the block; the first one held is delivered again,
    to the handler that was in place, when the block ends (main thread only)."""
    held: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield held
        return
    previous = {s: signal.signal(s, lambda signum, _f: held.append(signum))
                for s in DEFERRED_SIGNALS}
    try:
        yield held
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        if held:
            os.kill(os.getpid(), held[0])


class Interrupted(BaseException):
    """SIGINT, SIGTERM or SIGHUP arrived (raised by ``exit_on_signals``'s handler).

    A BaseException, like KeyboardInterrupt, so ``except Exception`` does not swallow it;
    ``atomic_path`` removes its temporary file on the way out."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum
        self.name = signal.Signals(signum).name
        self.exit_code = 128 + signum


@contextmanager
def exit_on_signals() -> Iterator[None]:
    """Turn SIGINT, SIGTERM and SIGHUP into ``Interrupted`` for the block (main thread)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, _frame) -> None:
        raise Interrupted(signum)

    previous = {s: signal.signal(s, handler) for s in DEFERRED_SIGNALS}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def is_sqlite_file(path: str | os.PathLike) -> bool:
    """True when ``path`` is a file that starts with SQLite's header."""
    try:
        with open(path, "rb") as f:
            return f.read(len(SQLITE_HEADER)) == SQLITE_HEADER
    except OSError:
        return False


def _probe(directory: Path) -> None:
    """Create and remove a file in ``directory``; OSError if it cannot be done."""
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".planner-probe.", suffix=".tmp")
    os.close(fd)
    os.unlink(tmp)


def check_writable(path: str | os.PathLike, what: str = "file",
                   create_parents: bool = False) -> Path:
    """Prove ``path`` can be written (atomically) before any work starts; PlannerError if not.

    Refused: a directory, something that is not a regular file (a device, a FIFO: a rename
    would replace it), a missing directory (unless ``create_parents``: then the nearest
    existing ancestor must be writable), and a directory where no file can be created."""
    out = Path(path).expanduser()
    if out.is_dir():
        raise PlannerError(f"cannot write {what} {out}: it is a directory")
    if out.exists() and not out.is_file():
        raise PlannerError(f"cannot write {what} {out}: it is not a regular file "
                           "(planner writes a new file and renames it over the old one)")
    directory = out.parent
    if create_parents:
        directory = next((p for p in (directory, *directory.parents) if p.exists()),
                         Path(os.sep))
    if not directory.is_dir():
        raise PlannerError(f"cannot write {what} {out}: directory '{out.parent}' does not "
                           "exist" if not directory.exists() else
                           f"cannot write {what} {out}: '{directory}' is not a directory")
    try:
        _probe(directory)
    except OSError as e:
        raise PlannerError(f"cannot write {what} {out}: no file can be created in "
                           f"'{directory}' ({e.strerror})") from None
    return out
