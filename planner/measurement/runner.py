"""Run a command as a child process with its stdin/stdout/stderr passed through untouched.

The child inherits planner's file descriptors (nothing is captured or re-encoded). While it
runs, SIGINT, SIGTERM and SIGHUP sent to planner are forwarded to it, and planner waits for it
to finish, so the measurement can still be recorded. The exit code follows the shell
convention: the child's own code, or 128 + N when signal N killed it.

Ctrl-C at a terminal signals the whole foreground process group, so the child receives SIGINT
from the terminal and once more from planner; standard signals do not queue, so a child that
has not yet handled the first sees one.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from planner.errors import PlannerError

FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class CommandError(PlannerError):
    """The command could not be started; ``exit_code`` is 127 (not found) or 126 (not runnable)."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True)
class ChildOutcome:
    """How the child ended."""

    exit_code: int  # the child's code, or 128 + signal number
    signal: str | None  # name of the signal that killed it
    interrupted_by: str | None  # first signal planner received and forwarded


def resolve_command(argv: Sequence[str]) -> str:
    """The executable that ``argv[0]`` names; CommandError (127/126) if it cannot be run."""
    if not argv:
        raise CommandError("no command to measure", 2)
    name = argv[0]
    if os.sep in name or (os.altsep and os.altsep in name):
        if not os.path.exists(name):
            raise CommandError(f"command not found: {name}", 127)
        if os.path.isdir(name) or not os.access(name, os.X_OK):
            raise CommandError(f"permission denied: {name} is not an executable file", 126)
        return name
    found = shutil.which(name)
    if found is None:
        raise CommandError(f"command not found: {name} (not on PATH)", 127)
    return found


def exit_code_of(returncode: int) -> int:
    """Shell-style exit code: Popen's -N (killed by signal N) becomes 128 + N."""
    return 128 - returncode if returncode < 0 else returncode


def signal_name(signum: int) -> str:
    """'SIGINT' for 2, or 'signal N' for a number without a name."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def run_child(argv: Sequence[str], on_start: Callable[[], None] | None = None) -> ChildOutcome:
    """Run ``argv`` to completion, forwarding signals; CommandError if it cannot start."""
    executable = resolve_command(argv)
    received: list[int] = []
    proc: subprocess.Popen | None = None

    def forward(signum: int, _frame) -> None:
        received.append(signum)
        if proc is not None and proc.poll() is None:
            try:
                proc.send_signal(signum)
            except ProcessLookupError:
                pass

    if on_start:
        on_start()  # a Ctrl-C here interrupts planner itself: the child never starts
    previous = _install(forward)
    try:
        try:
            # Like a shell, pass on every inheritable descriptor, not only 0, 1 and 2.
            proc = subprocess.Popen([executable, *argv[1:]], close_fds=False)
        except FileNotFoundError:
            raise CommandError(f"command not found: {argv[0]}", 127) from None
        except PermissionError:
            raise CommandError(f"permission denied: {argv[0]}", 126) from None
        returncode = proc.wait()
    finally:
        _restore(previous)
    killed = signal_name(-returncode) if returncode < 0 else None
    return ChildOutcome(exit_code_of(returncode), killed,
                        signal_name(received[0]) if received else None)


@contextmanager
def signals_held() -> Iterator[list[int]]:
    """While recording a finished run, note (do not act on) SIGINT, SIGTERM and SIGHUP."""
    held: list[int] = []
    previous = _install(lambda signum, _frame: held.append(signum))
    try:
        yield held
    finally:
        _restore(previous)


def _install(handler) -> dict[int, object]:
    """Install ``handler`` for the forwarded signals (main thread only); the old handlers."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {s: signal.signal(s, handler) for s in FORWARDED}


def _restore(previous: dict[int, object]) -> None:
    for s, h in previous.items():
        signal.signal(s, h)
