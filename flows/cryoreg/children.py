"""The run's child processes (Prefect's temporary API, the dbt process) end with it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time


def start(module: str, fd: int, **popen) -> subprocess.Popen:
    """Start `python -m module FD PARENT`, handing it the socket `fd` (its main calls
    exit_with_parent(PARENT)). The child is out of the run's process group: a stop signal
    reaches the run alone, which stops its children itself."""
    return subprocess.Popen(
        [sys.executable, "-m", module, str(fd), str(os.getpid())],
        pass_fds=[fd],
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        **popen,
    )


def exit_with_parent(parent: int) -> None:
    """Stop this process (SIGTERM) when the run that started it, `parent`, is gone: even after
    a SIGKILL, which skips the run's own clean-up."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, daemon=True).start()
