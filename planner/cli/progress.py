"""Progress of `planner validate` on stderr: a bar at a terminal, else plain lines."""

from __future__ import annotations

import sys
import time

import click


class Progress:
    """A step bar at a terminal; one plain line per phase and per step anywhere else.

    ``plain`` when stdout or stderr is not a terminal (a CI log, ``| tee``, a file): lines
    like ``planner validate: [ 21.4 s] step 3/7 2.41 s`` on stderr, flushed at once, so a log shows
    where a slow run is."""

    def __init__(self, total_steps: int, warmup: int, plain: bool | None = None) -> None:
        self.total, self.warmup = total_steps, warmup
        if plain is None:
            plain = not (_isatty(sys.stdout) and _isatty(sys.stderr))
        self.plain = plain
        self._bar = None
        self._t0 = self._last = time.perf_counter()

    def __enter__(self) -> Progress:
        if not self.plain:
            self._bar = click.progressbar(length=self.total, label="training steps",
                                          file=sys.stderr, show_pos=True)
            self._bar.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)

    def phase(self, text: str) -> None:
        """What is measured next (plain mode only: the bar counts steps)."""
        self._last = time.perf_counter()
        if self.plain:
            self._line(text)

    def step(self, i: int) -> None:
        """Step ``i`` (1-based, warm-up included) has finished."""
        now = time.perf_counter()
        took, self._last = now - self._last, now
        if self._bar is not None:
            self._bar.update(1)
        elif self.plain:
            kind = " (warm-up)" if i <= self.warmup else ""
            self._line(f"step {i}/{self.total}{kind} {took:.2f} s")

    def _line(self, text: str) -> None:
        elapsed = time.perf_counter() - self._t0
        click.echo(f"planner validate: [{elapsed:5.1f} s] {text}", err=True)
        sys.stderr.flush()


def _isatty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False
