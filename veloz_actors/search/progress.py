"""A progress line on stderr: done / total, rate and ETA, redrawn at most a few times a second. Pure, no Ray."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO

__all__ = ["ProgressBar", "SearchProgress"]


@dataclass(frozen=True, slots=True)
class SearchProgress:
    """Where a search stands: ``done`` of ``total`` sets (``resumed`` of them read back from disk, ``computed`` run now)."""

    done: int
    total: int
    resumed: int
    computed: int
    elapsed_seconds: float
    failed_chunks: int = 0

    @property
    def rate_per_second(self) -> float:
        return self.computed / self.elapsed_seconds if self.elapsed_seconds > 0 else 0.0

    @property
    def eta_seconds(self) -> float | None:
        rate = self.rate_per_second
        return (self.total - self.done) / rate if rate > 0 else None


class ProgressBar:
    """Draws :class:`SearchProgress` as ``[#####.....] 128/256 50.0%  412.3 sets/s  ETA 0:00:01``.

    On a terminal the line is redrawn in place; otherwise one line is printed every ``every_seconds`` and at the end.
    """

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        every_seconds: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        width: int = 28,
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.every = every_seconds if every_seconds is not None else (0.1 if self.tty else 5.0)
        self.clock = clock
        self.width = width
        self._last = -1e18

    def update(self, progress: SearchProgress, *, final: bool = False) -> None:
        now = self.clock()
        if not final and now - self._last < self.every:
            return
        self._last = now
        line = self.render(progress)
        if self.tty:
            self.stream.write("\r" + line + ("\n" if final else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def render(self, p: SearchProgress) -> str:
        fraction = p.done / p.total if p.total else 1.0
        filled = int(fraction * self.width)
        eta = p.eta_seconds
        eta_text = "--:--" if eta is None else _clock(eta)
        extra = f"  resumed {p.resumed}" if p.resumed else ""
        if p.failed_chunks:
            extra += f"  retried chunks {p.failed_chunks}"
        return (
            f"[{'#' * filled}{'.' * (self.width - filled)}] {p.done}/{p.total} {fraction * 100:5.1f}%  "
            f"{p.rate_per_second:,.1f} sets/s  ETA {eta_text}  elapsed {_clock(p.elapsed_seconds)}{extra}"
        )


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
