"""Keep torch's native profiler chatter off stderr.

torch.profiler's C++ side (kineto) writes debug lines such as
``USDT:2026-12-01 10:37:52 693:693 SyncActivityProfilerHandler.cpp:52] profiler_start``
straight to file descriptor 2, whatever Python's logging says (KINETO_LOG_LEVEL does not stop
them). ``native_stderr_filtered`` points fd 2 at a temporary file while a profiler runs, then
restores it and passes on every line that is not such a debug line, so real warnings and
errors still reach the user, in order.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager

# kineto's glog-style debug lines: "USDT:..." / "STAGE:..." then "PID:TID File.cpp:LINE] text".
NATIVE_DEBUG = re.compile(r"^(USDT|STAGE):\S+ \S+ \d+:\d+ \S+\.cpp:\d+\] ")


def kept_lines(text: str) -> str:
    """``text`` without kineto's debug lines."""
    return "".join(line for line in text.splitlines(keepends=True)
                   if not NATIVE_DEBUG.match(line))


@contextmanager
def native_stderr_filtered() -> Iterator[None]:
    """While the block runs, fd 2 goes to a temporary file; afterwards everything in it but
    kineto's debug lines is written to the real stderr (main thread only; else a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):
        yield
        return
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            try:
                sys.stderr.flush()
            except (OSError, ValueError):
                pass
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            rest = kept_lines(tmp.read().decode("utf-8", errors="replace"))
            if rest:
                sys.stderr.write(rest)
                sys.stderr.flush()
