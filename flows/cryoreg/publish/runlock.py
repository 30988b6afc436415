"""One nightly run at a time per warehouse.

Two runs on one warehouse would build on the same working files and publish over each other, so
`cryoreg run` holds an exclusive lock from its start to its publish. It is an flock on a lock file
beside the warehouse (`warehouse/.cryoreg.duckdb.lock`): the kernel releases it when the holder
exits in any way, kill -9 included, so a crashed run never leaves a stale lock to clear by hand.
The file itself is never deleted (deleting it would let two runs lock two different files); it
only records who holds it: pid, start time and command, for the refusal message and for people.
"""

from __future__ import annotations

import fcntl
import os
import shlex
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

_held: set[Path] = set()  # lock files this process holds


class RunLockedError(RuntimeError):
    """Another run holds the warehouse."""


def lock_path(warehouse: Path) -> Path:
    """The lock file of a warehouse: hidden, in the same folder (one lock per real file)."""
    warehouse = Path(warehouse).resolve()
    return warehouse.with_name(f".{warehouse.name}.lock")


def _holder(fd: int) -> str:
    """'pid 1234, started ...' from the lock file (the holder may be writing it just now)."""
    for _ in range(20):
        fields = dict(
            line.split(": ", 1)
            for line in os.pread(fd, 4096, 0).decode(errors="replace").splitlines()
            if ": " in line
        )
        if "pid" in fields:
            return f"pid {fields['pid']}, started {fields.get('started', '?')}"
        time.sleep(0.05)
    return "pid unknown"


@contextmanager
def hold(
    warehouse: Path, wait: bool = False, on_wait: Callable[[str], None] | None = None
) -> Iterator[Path]:
    """Hold the warehouse's run lock for the block; raise RunLockedError if another run has it,
    or with wait=True block until it is free (calling on_wait(why) first). Within a process
    that holds it already (the command, then its flow), it is held once more, not refused."""
    path = lock_path(warehouse)
    if path in _held:
        yield path
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)  # not inherited by child processes
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            why = f"{warehouse} is in use by another run ({_holder(fd)})"
            if not wait:
                raise RunLockedError(f"{why}; try again later or pass --wait") from None
            if on_wait:
                on_wait(why)
            fcntl.flock(fd, fcntl.LOCK_EX)
        started = datetime.now().astimezone().isoformat(timespec="seconds")
        command = shlex.join(sys.argv)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid: {os.getpid()}\nstarted: {started}\ncommand: {command}\n".encode(), 0)
        _held.add(path)
        try:
            yield path
        finally:
            _held.discard(path)
            os.ftruncate(fd, 0)  # nobody holds it now (a killed holder leaves its lines: harmless)
    finally:
        os.close(fd)  # releases the flock
