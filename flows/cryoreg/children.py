"""The run's child processes (Prefect's temporary API, the dbt process) end with it."""

from __future__ import annotations

import os
import signal
import threading
import time


def exit_with_parent(parent: int) -> None:
    """Stop this process (SIGTERM) when the run that started it, `parent`, is gone: even after
    a SIGKILL, which skips the run's own clean-up."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, daemon=True).start()
