"""Prefect's temporary API for `cryoreg run`, started before the heavy imports.

Without PREFECT_API_URL, Prefect starts a temporary API server lazily, when the flow first needs
it: after our imports (dbt, pandas, pandera...), and the server's own start-up (its imports, then
SQLite migrations in PREFECT_HOME) adds 4-11 s to the run. Here the server starts first, in a
child process, so both start-ups overlap. It is the same app Prefect's temporary server runs
(`create_app(ephemeral=True)`: no UI, no background services) on the same PREFECT_HOME database.

The child stops when the run exits (atexit), and on its own when its parent dies (a kill skips
atexit), so no server outlives a run. It runs in a session of its own: the signal a terminal or
a scheduler sends to the run's process group (Ctrl-C, SIGTERM, SIGHUP) reaches only the run,
which then reports its crashed state to a server still up, and stops it last.

With PREFECT_API_URL set (a `prefect server`, as the deployment uses), nothing is started and
the run reports to that server.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

from cryoreg import children
from cryoreg import preload as imports

STOP_WAIT_SECONDS = 5

# The temporary API serves one run's flow and task states: no UI, and no block catalogue. Block
# auto-registration imports every installed Prefect collection and fills the block tables (the
# flow uses no blocks); it was the largest part of the server's start-up.
SERVER_ENV = {
    "PREFECT_UI_ENABLED": "false",
    "PREFECT_API_BLOCKS_REGISTER_ON_START": "false",
    "PREFECT_MEMOIZE_BLOCK_AUTO_REGISTRATION": "false",
}


def _log(message: str) -> None:
    """One line in the run log's format (Prefect's logging is not imported yet)."""
    now = datetime.now()
    print(f"{now:%H:%M:%S}.{now.microsecond // 1000:03d} | INFO    | cryoreg - {message}")


class TemporaryApi:
    """A Prefect API server in a child process, listening on a port bound here."""

    def __init__(self) -> None:
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(128)  # requests queue until the server is up: no port race, no retry
        self.url = f"http://127.0.0.1:{listener.getsockname()[1]}/api"
        env = {**os.environ, **SERVER_ENV}
        # out of the run's process group: see the module docstring
        self.process: subprocess.Popen | None = children.start(
            "cryoreg.flows.prefect_api", listener.fileno(), env=env
        )
        listener.close()
        atexit.register(self.stop)  # registered before Prefect's own exit hooks: runs after them

    def ready(self) -> bool:
        """Does the API answer right now? (Never waits for it.)"""
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=0.05) as resp:
                return resp.status == 200
        except (OSError, urllib.error.URLError):
            return False

    def wait_ready(self, timeout: float) -> None:
        """Block until the API answers /health (migrations done)."""
        deadline = time.monotonic() + timeout
        while True:
            if self.process is None or self.process.poll() is not None:
                code = None if self.process is None else self.process.returncode
                raise RuntimeError(f"the temporary Prefect API server exited (code {code})")
            left = deadline - time.monotonic()
            if left <= 0:
                raise RuntimeError(
                    f"the temporary Prefect API server did not answer within {timeout:.0f} s"
                )
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=min(left, 5)) as resp:
                    if resp.status == 200:
                        return
            except (OSError, urllib.error.URLError):
                pass
            time.sleep(0.05)

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        _log(f"Stopping temporary server on {self.url.removesuffix('/api')}")
        process.terminate()
        try:
            process.wait(timeout=STOP_WAIT_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def start() -> TemporaryApi | None:
    """Start the temporary API now unless PREFECT_API_URL names a server to use."""
    if os.environ.get("PREFECT_API_URL"):
        return None
    api = TemporaryApi()
    _log(f"Starting temporary server on {api.url.removesuffix('/api')}")
    return api


def use(api: TemporaryApi | None, preload: bool = True) -> None:
    """Point Prefect at the temporary API, once it answers; call before the flow runs.

    With `preload`, import what the stages import later anyway while the server is still
    starting, one module at a time, stopping as soon as it answers. PREFECT_API_URL may also
    come from a Prefect profile or prefect.toml: then that server is used and the temporary
    one stopped.
    """
    if api is None:
        return
    from prefect.context import refresh_global_settings_context
    from prefect.settings import get_current_settings

    settings = get_current_settings()
    if settings.api.url:
        api.stop()
        return
    while preload and not api.ready() and imports.next_module():
        pass
    api.wait_ready(settings.server.ephemeral.startup_timeout_seconds)
    os.environ["PREFECT_API_URL"] = api.url
    os.environ.setdefault("PREFECT_UI_URL", "")  # no UI: no "View at" link to a dead server
    refresh_global_settings_context()  # Prefect read the environment when it was imported


@contextlib.contextmanager
def run_settings(api: TemporaryApi | None) -> Iterator[None]:
    """Prefect's settings for the flow run on the temporary API: no flow-run heartbeats.

    Heartbeats let a lasting server tell a crashed run from a long one; the temporary API ends
    with its run, and the engine's heartbeat thread, which sleeps in one-second steps, held up
    the end of every night by up to a second.
    """
    if api is None or api.process is None:
        yield
        return
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        yield


def prepare_database() -> bool:
    """Give a new PREFECT_HOME an empty database already at Prefect's newest migration.

    Migrating a new SQLite database through every Alembic revision costs ~5 s, on each run with
    a new PREFECT_HOME (a first night, a container, a test). The result is the same for every
    home and the same Prefect, so the first such run keeps a copy in the machine's cache
    (config.cache_dir(): prefect-<version>.db) and later new homes start from it; the server's
    own start-up then finds nothing to migrate. Only for Prefect's default SQLite file; a
    cache that cannot be read or written only costs the migration. True when the home's
    database is new, so at the newest migration.
    """
    import prefect
    from prefect.settings import get_current_settings

    from cryoreg import config

    settings = get_current_settings()
    home = Path(settings.home)
    database = home / "prefect.db"
    url = settings.server.database.connection_url
    url = url.get_secret_value() if url is not None else None
    if url not in (None, f"sqlite+aiosqlite:///{database}") or database.exists():
        return False
    template = config.cache_dir() / f"prefect-{prefect.__version__}.db"
    try:
        if template.is_file():
            return _place(template, database)  # False: another run's appeared meanwhile
    except (OSError, sqlite3.Error):  # unreadable or not a database: migrate, and replace it
        pass
    import asyncio

    from prefect.server.database import provide_database_interface

    asyncio.run(provide_database_interface().create_db())
    try:
        template.parent.mkdir(parents=True, exist_ok=True)
        _place(database, template, replace=True)
    except (OSError, sqlite3.Error):
        pass
    return True


def _place(source: Path, target: Path, replace: bool = False) -> bool:
    """Copy a SQLite database whole (sqlite's backup, so a WAL's pages come too) to a temporary
    name beside `target`, then give it the name: a new home's file only if none appeared
    meanwhile (a second run starting on the same home keeps the first one's), the cache's
    always. Whether the copy took the name."""
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    try:
        with sqlite3.connect(source) as src, sqlite3.connect(partial) as dst:
            src.backup(dst)
        src.close()
        dst.close()
        if replace:
            os.replace(partial, target)
        else:
            os.link(partial, target)
        return True
    except FileExistsError:
        return False
    finally:
        partial.unlink(missing_ok=True)


def _serve(fd: int, parent: int) -> None:
    children.exit_with_parent(parent)  # by SIGTERM: uvicorn shuts down cleanly
    new = prepare_database()
    import uvicorn
    from prefect.server.api.server import create_app
    from prefect.settings import PREFECT_API_DATABASE_MIGRATE_ON_START, temporary_settings

    sock = socket.socket(fileno=fd)
    app = create_app(ephemeral=True, final=True)
    config = uvicorn.Config(app, log_level="error", lifespan="on")
    # a new database is at the newest migration: no migration check at start-up (~0.2 s)
    with temporary_settings(updates={PREFECT_API_DATABASE_MIGRATE_ON_START: not new}):
        uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    _serve(int(sys.argv[1]), int(sys.argv[2]))
