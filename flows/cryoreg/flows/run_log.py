"""The run's log: every line, tracebacks included, in a file beside the store; the same lines
without tracebacks on the terminal. A failed run's one-line error names the file, so the
terminal (or the scheduler's mail) stays readable and nothing is lost."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from prefect.logging.formatters import PrefectFormatter

FOLDER = "logs"
FILE_FORMAT = "%(asctime)s | %(levelname)-7s | %(name)s - %(message)s"


class ConsoleFormatter(PrefectFormatter):
    """Prefect's console lines without tracebacks: they go to the run's log file."""

    def format(self, record: logging.LogRecord) -> str:
        # the record is shared with the other handlers: hide its traceback for this line only
        kept = record.exc_info, record.exc_text, record.stack_info
        record.exc_info = record.exc_text = record.stack_info = None
        try:
            return super().format(record)
        finally:
            record.exc_info, record.exc_text, record.stack_info = kept


@contextmanager
def to_file(warehouse: Path) -> Iterator[Path]:
    """Every log record of the run (Prefect's, dbt's, ours) into
    `<warehouse folder>/logs/run-<UTC time>-<pid>.log`, owner-only like the store beside it.
    Call after Prefect has configured logging (its configuration replaces handlers)."""
    folder = warehouse.parent / FOLDER
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = folder / f"run-{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{os.getpid()}.log"
    path.touch(mode=0o600)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter(FILE_FORMAT))
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield path
    finally:
        root.removeHandler(handler)
        handler.close()
