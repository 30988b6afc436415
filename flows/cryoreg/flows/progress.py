"""Progress within a stage (dbt nodes done of total), for whoever shows it while the run works.

`cryoreg run` on a terminal listens (its live stage list redraws on every node); the run log
and the Prefect UI get a line at each tenth of the way, so a plain log (cron, CI) shows how far
a long build is without a line per node.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator

Listener = Callable[[str, int, int], None]  # (stage, done, total)
STEPS = 10  # plain log lines per stage: at each tenth of the total, and the last
_listeners: list[Listener] = []


@contextlib.contextmanager
def listening(listener: Listener) -> Iterator[None]:
    """Call `listener(stage, done, total)` on every step reported while the block runs."""
    _listeners.append(listener)
    try:
        yield
    finally:
        _listeners.remove(listener)


class StageProgress:
    """The progress of one stage: tells the listeners of each step and logs every tenth.

    Called from dbt's worker threads: steps are serialised, and a step reported after a later
    one (threads finish out of order) is dropped.
    """

    def __init__(self, stage: str, logger: logging.Logger | logging.LoggerAdapter) -> None:
        self.stage = stage
        self.logger = logger
        self.done = -1
        self.logged = 0  # tenths logged so far
        self._lock = threading.Lock()

    def __call__(self, done: int, total: int) -> None:
        with self._lock:
            if done <= self.done or total <= 0:
                return
            self.done = done
            for listener in list(_listeners):
                listener(self.stage, done, total)
            tenth = STEPS if done >= total else done * STEPS // total
            if tenth > self.logged:
                self.logged = tenth
                self.logger.info("%s: %d/%d nodes done", self.stage, done, total)
