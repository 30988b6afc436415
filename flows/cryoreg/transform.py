"""Transform: run `dbt build` in-process on the working copy of the warehouse."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from cryoreg.config import DBT_PROJECT_DIR


class TransformError(RuntimeError):
    """dbt could not build the warehouse or an error-severity test failed."""


@dataclass
class DbtSummary:
    nodes: int = 0
    passed: int = 0
    warned: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    results: list[dict] = field(default_factory=list)


def dbt_build(warehouse: Path, pseudonym_key: str) -> DbtSummary:
    """Build and test every model; the profile reads the file path and key from the env.

    No per-run `--vars`: dbt hashes the command-line vars into its partial-parse state, so a
    run id passed there made every night re-parse the whole project (about 3 s). With the
    same warehouse path and key, dbt reuses target/partial_parse.msgpack between nights.
    """
    from dbt.cli.main import dbtRunner

    os.environ["CRYOREG_WAREHOUSE_PATH"] = str(warehouse)
    os.environ["CRYOREG_PSEUDONYM_KEY"] = pseudonym_key
    args = [
        "build",
        "--project-dir",
        str(DBT_PROJECT_DIR),
        "--profiles-dir",
        str(DBT_PROJECT_DIR),
        "--quiet",
    ]
    try:
        outcome = dbtRunner().invoke(args)
    finally:
        _release_duckdb()
    summary = DbtSummary()
    results = getattr(outcome.result, "results", None) or []
    for res in results:
        node = res.node
        status = str(res.status)
        summary.nodes += 1
        failures = getattr(res, "failures", None)
        summary.results.append(
            {
                "name": node.name,
                "resource_type": str(node.resource_type),
                "status": status,
                "failures": failures,
                "execution_time": res.execution_time,
                "message": res.message,
                "severity": getattr(getattr(node, "config", None), "severity", None),
                "tags": list(getattr(node, "tags", []) or []),
                "attached_node": getattr(node, "attached_node", None),
            }
        )
        if status in ("success", "pass"):
            summary.passed += 1
        elif status == "warn":
            summary.warned.append(f"{node.name}: {res.message}")
        elif status not in ("skipped", "no-op"):
            summary.failed.append(f"{node.name}: {res.message}")
    if not outcome.success:
        if summary.failed:
            first = summary.failed[0].splitlines()[0]
            more = f" (and {len(summary.failed) - 1} more)" if len(summary.failed) > 1 else ""
            raise TransformError(f"dbt build failed: {first}{more}")
        reason = outcome.exception or "see dbt_project/logs/dbt.log"
        raise TransformError(f"dbt build failed: {str(reason).splitlines()[0]}")
    return summary


def _release_duckdb() -> None:
    """Close the DuckDB instance dbt-duckdb keeps open in-process after a build.

    Later stages open the same file (read-only) and publish renames it; neither may race a
    connection dbt forgot to close.
    """
    from dbt.adapters.duckdb.connections import DuckDBConnectionManager

    with DuckDBConnectionManager._LOCK:
        env = DuckDBConnectionManager._ENV
        if env is not None:
            env.close()
            DuckDBConnectionManager._ENV = None
