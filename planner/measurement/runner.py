"""Run a command as a child process with its stdin/stdout/stderr passed through untouched.

The child inherits planner's file descriptors (nothing is captured or re-encoded). While it
runs, SIGINT, SIGTERM and SIGHUP sent to planner are forwarded to it, and planner waits for it
to finish, so the measurement can still be recorded. The exit code follows the shell
convention: the child's own code, or 128 + N when signal N killed it.

Ctrl-C at a terminal signals the whole foreground process group, so the child receives SIGINT
from the terminal and once more from planner; standard signals do not queue, so a child that
has not yet handled the first sees one.

``SignalGate`` holds those three signals from the moment ``planner measure`` starts until it
exits: before the command starts (argument checks, meter set-up) one ends planner at once with
128 + N and nothing run; while the command runs it is forwarded; once the command has ended it
is held, so the record is still written (and a wait for a locked ledger is cut short).

On Linux the command is started with ``PR_SET_PDEATHSIG`` = SIGKILL: if planner itself is
killed (SIGKILL, OOM killer), the kernel kills the command too instead of leaving it running,
unmeasured and unrecorded. (Descendants that the command starts are its own to clean up.)
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
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


class SetupInterrupted(BaseException):
    """A forwarded signal arrived before the command started (nothing was run)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum
        self.exit_code = 128 + signum


class SignalGate:
    """SIGINT, SIGTERM and SIGHUP for the whole of one ``planner measure``.

    ``phase`` is "setup" (a signal raises SetupInterrupted: the command never starts),
    "running" (forwarded to the child) or "finishing" (held; ``held`` lists them)."""

    def __init__(self) -> None:
        self.phase = "setup"
        self.received: list[int] = []
        self.held: list[int] = []
        self.proc: subprocess.Popen | None = None
        self._previous: dict[int, object] = {}

    def handle(self, signum: int, _frame) -> None:
        if self.phase == "setup":
            self.received.append(signum)
            raise SetupInterrupted(signum)
        if self.phase == "finishing":
            self.held.append(signum)
            return
        self.received.append(signum)
        self.forward(signum)

    def forward(self, signum: int) -> None:
        proc = self.proc
        if proc is not None and proc.poll() is None:
            try:
                proc.send_signal(signum)
            except ProcessLookupError:
                pass

    def __enter__(self) -> SignalGate:
        self._previous = _install(self.handle)
        return self

    def __exit__(self, *exc) -> None:
        _restore(self._previous)
        self._previous = {}


def _die_with_parent():
    """A preexec_fn that makes the kernel SIGKILL the child when planner dies (Linux only)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()
    pr_set_pdeathsig = 1

    def preexec() -> None:
        prctl(pr_set_pdeathsig, int(signal.SIGKILL), 0, 0, 0)
        if os.getppid() != parent:  # planner died before prctl took effect
            os.kill(os.getpid(), signal.SIGKILL)

    return preexec


def run_child(argv: Sequence[str], on_start: Callable[[], None] | None = None,
              gate: SignalGate | None = None) -> ChildOutcome:
    """Run ``argv`` to completion, forwarding signals; CommandError if it cannot start.

    With a ``gate`` (installed by the caller) signals before the child starts end the
    measurement (SetupInterrupted) and those after it ended are held; without one, handlers
    are installed for the child's lifetime only."""
    executable = resolve_command(argv)
    own = gate is None
    gate = gate or SignalGate()
    if on_start:
        on_start()  # a signal here raises SetupInterrupted (or KeyboardInterrupt): no child
    previous = _install(gate.handle) if own else {}
    try:
        gate.phase = "running"
        try:
            # Like a shell, pass on every inheritable descriptor, not only 0, 1 and 2.
            gate.proc = subprocess.Popen([executable, *argv[1:]], close_fds=False,
                                         preexec_fn=_die_with_parent())
        except FileNotFoundError:
            raise CommandError(f"command not found: {argv[0]}", 127) from None
        except PermissionError:
            raise CommandError(f"permission denied: {argv[0]}", 126) from None
        if gate.received:  # arrived between the phase change and Popen's return
            gate.forward(gate.received[0])
        returncode = gate.proc.wait()
        gate.phase = "finishing"
    finally:
        _restore(previous)
    killed = signal_name(-returncode) if returncode < 0 else None
    return ChildOutcome(exit_code_of(returncode), killed,
                        signal_name(gate.received[0]) if gate.received else None)


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
