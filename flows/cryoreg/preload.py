"""Imports the run's later stages need, done ahead while the run would otherwise wait (for
Prefect's API to start, for the dbt process to build): one module at a time, in the main thread
(imports in a second thread could deadlock on the import locks)."""

from __future__ import annotations

import importlib

_PENDING: list[str] = []


def plan(modules: tuple[str, ...]) -> None:
    """The modules to import ahead, in the order the stages need them."""
    _PENDING[:] = list(modules)


def next_module() -> bool:
    """Import the next pending module; False when none is left."""
    if not _PENDING:
        return False
    importlib.import_module(_PENDING.pop(0))
    return True
