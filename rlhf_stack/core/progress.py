"""Progress for long steps: a rich progress bar on a terminal, periodic log lines otherwise."""

from __future__ import annotations

import logging
import sys
import time

log = logging.getLogger("rlhf_stack")


class Progress:
    """`with Progress("teacher scores", total=n) as p: ... p.advance()`"""

    def __init__(self, description: str, total: int, log_every_s: float = 10.0):
        self.description = description
        self.total = total
        self.done = 0
        self._log_every_s = log_every_s
        self._bar = None
        self._task = None
        self._start = self._last_log = time.perf_counter()

    def __enter__(self) -> "Progress":
        if sys.stderr.isatty():
            from rich.progress import BarColumn, MofNCompleteColumn, TimeElapsedColumn, TimeRemainingColumn
            from rich.progress import Progress as RichProgress

            self._bar = RichProgress("{task.description}", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                                     TimeRemainingColumn(), transient=False)
            self._bar.start()
            self._task = self._bar.add_task(self.description, total=self.total)
        return self

    def advance(self, n: int = 1) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(self._task, advance=n)
            return
        now = time.perf_counter()
        if now - self._last_log >= self._log_every_s or self.done >= self.total:
            self._last_log = now
            log.info("%s: %d/%d (%.0f s)", self.description, self.done, self.total, now - self._start)

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.stop()
