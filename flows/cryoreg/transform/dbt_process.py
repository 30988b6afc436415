"""dbt in a process of its own, started as `cryoreg run` launches (on DuckDB).

A night's dbt work is Python that holds a core: dbt's imports (~1 s), the parse, and each
node's rendering (~15 ms). In the run's own process it queued behind everything else there; in
a child it runs on the machine's other core: the child imports dbt and parses the project while
the run and Prefect's API start, and while it builds, the run imports its later stages
(`cryoreg.preload`). On Spark, dbt must share the run's SparkSession, so it runs in the run's
process.

Requests (`dbt.request`) and answers (progress, then the `dbt.Outcome`) are pickled over a
socket pair. The child ends when the pipe closes or its parent is gone; a run that stops while
dbt works terminates it and waits, so that the child has let go of the store before the run's
own clean-up opens it.
"""

from __future__ import annotations

import atexit
import os
import signal
import socket
import subprocess
import sys
import threading
from multiprocessing.connection import Connection
from pathlib import Path

from cryoreg import children

STOP_WAIT_SECONDS = 5


class DbtProcess:
    """The child, its end of the pipe, and how many answers it still owes (a warm-up's)."""

    def __init__(self, log: Path) -> None:
        ours, theirs = socket.socketpair()
        self.conn: Connection | None = Connection(ours.detach())
        self.log = log
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as output:  # not the run's: a failed run's output stays one line
            self.process = children.start(
                "cryoreg.transform.dbt_process", theirs.fileno(), stdout=output, stderr=output
            )
        theirs.close()
        self.owed = 0
        atexit.register(self.stop)

    def send(self, request: dict) -> bool:
        """Send a request; False if the child is gone. Owed before it is sent: a stop signal
        in between must find the child busy."""
        self.owed += 1
        try:
            self.conn.send(request)
        except OSError:
            self.owed -= 1
            return False
        return True

    def answer(self, on_progress=None, meanwhile=None):
        """The Outcome of the last request sent (earlier ones' are dropped). A thread reads the
        pipe (progress reaches `on_progress` as it comes); this thread calls `meanwhile()`
        until it returns False, then waits."""
        answered: list = []
        done = threading.Event()

        def read() -> None:
            try:
                while True:
                    kind, *body = self.conn.recv()
                    if kind == "progress":
                        if on_progress is not None and self.owed == 1:
                            on_progress(*body)
                        continue
                    self.owed -= 1
                    if not self.owed:
                        answered.append(body[0])
                        return
            except (EOFError, OSError, AttributeError):  # the child ended, or the run stopped it
                pass
            finally:
                done.set()

        threading.Thread(target=read, name="dbt process", daemon=True).start()
        try:
            while meanwhile is not None and not done.is_set():
                if not meanwhile():
                    meanwhile = None
            while not done.wait(0.2):  # a stop signal can interrupt the wait
                pass
        except BaseException:  # a stop signal: the child must let go of the store first
            self.stop()
            raise
        return answered[0] if answered else self.ended()

    def ended(self):
        """The Outcome of a request the child did not live to answer."""
        from cryoreg.transform.dbt import Outcome

        code = self.process.wait()
        self.stop()
        why = f"the dbt process ended unexpectedly (exit code {code}; its log: {self.log})"
        return Outcome(False, why, [])

    def stop(self) -> None:
        """End the child: an idle one (it holds nothing) reads the end of the pipe and exits
        on its own; a busy one is stopped, and waited for, as it may hold the store."""
        conn, self.conn = self.conn, None
        if conn is None:
            return
        try:
            if not self.owed:
                return
            self.process.terminate()  # dbt stops its threads, as on Ctrl-C
            self.process.wait(timeout=STOP_WAIT_SECONDS)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        finally:
            conn.close()


_CHILD: DbtProcess | None = None


def start(warm_up: dict, log: Path) -> None:
    """Start the dbt process, which parses the project (`warm_up`, a parse-only request)
    while the run starts; its own output goes to `log`. Not on Spark."""
    global _CHILD
    _CHILD = DbtProcess(log)
    _CHILD.send(warm_up)


def run(request: dict, on_progress=None, meanwhile=None):
    """Run a dbt request in the dbt process if the run started one (calling `meanwhile()`
    while it works, until that returns False), else here."""
    from cryoreg.transform import dbt

    if _CHILD is None or _CHILD.conn is None:
        return dbt.run_request(request, on_progress)
    if not _CHILD.send(request):
        return _CHILD.ended()
    return _CHILD.answer(on_progress, meanwhile)


def _serve(fd: int, parent: int) -> None:
    """The child: answer requests until the pipe closes or SIGTERM comes, then exit normally
    (multiprocessing's own clean-up: dbt's locks are semaphores)."""
    signal.signal(signal.SIGTERM, _interrupt)
    children.exit_with_parent(parent)
    from cryoreg.transform import dbt

    conn = Connection(fd)
    lock = threading.Lock()  # dbt reports progress from its worker threads

    def progress(done: int, total: int) -> None:
        with lock:
            conn.send(("progress", done, total))

    while True:
        try:
            request = conn.recv()
            outcome = dbt.run_request(request, progress)
        except (EOFError, KeyboardInterrupt):
            return
        except Exception as exc:  # noqa: BLE001 - the run reports it as the command's failure
            outcome = dbt.Outcome(False, f"{type(exc).__name__}: {exc}", [])
        try:
            with lock:
                conn.send(("done", outcome))
        except OSError:  # the run is gone
            return


def _interrupt(signum, frame) -> None:
    """SIGTERM (the run stopped, or ended while dbt worked) as Ctrl-C: dbt cancels its
    queries and stops its threads."""
    raise KeyboardInterrupt


if __name__ == "__main__":
    _serve(int(sys.argv[1]), int(sys.argv[2]))
    # the exit hooks (multiprocessing's removes dbt's semaphores), but not the interpreter's
    # teardown of dbt's objects (~0.3 s)
    atexit._run_exitfuncs()
    os._exit(0)
