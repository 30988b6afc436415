"""Shared fixtures: a real DuckDB file, real extract folders, the real `cryoreg` command."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest

REPO = Path(__file__).resolve().parents[1]
CRYOREG = [sys.executable, "-m", "cryoreg.cli"]


def run_cryoreg(*args: str, cwd: Path, env: dict | None = None, check: bool = True):
    """Run the installed command in a subprocess, as a user or the scheduler would."""
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run(
        [*CRYOREG, *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=600
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"cryoreg {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
        )
    return proc


@pytest.fixture(scope="session", autouse=True)
def isolated_tools(tmp_path_factory):
    """Each test worker gets its own Prefect home and dbt target folder."""
    home = tmp_path_factory.mktemp("tools")
    os.environ["PREFECT_HOME"] = str(home / "prefect")
    os.environ["DBT_TARGET_PATH"] = str(home / "dbt-target")
    os.environ["DBT_LOG_PATH"] = str(home / "dbt-logs")
    os.environ["DO_NOT_TRACK"] = "1"
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    os.environ.setdefault("CRYOREG_PSEUDONYM_KEY", "test-key-for-the-suite")
    yield home


def write_extract(root: Path, folder: str, files: dict[str, str]) -> Path:
    """Write one extract folder from {file name: CSV text}."""
    target = root / folder
    target.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (target / name).write_text(text, encoding="utf-8")
    return target


@dataclass(frozen=True)
class PaperSite:
    """A folder where the paper registry was synthesised, run once and documented."""

    base: Path
    run_stdout: str


@pytest.fixture(scope="session")
def paper_site(tmp_path_factory) -> PaperSite:
    """`cryoreg synth --profile paper`, `cryoreg run`, `cryoreg docs`: shared, read-only.

    Tests that use it belong to xdist group "paper" so one worker builds it once.
    """
    base = tmp_path_factory.mktemp("paper")
    run_cryoreg("synth", "extracts", "--profile", "paper", cwd=base)
    proc = run_cryoreg("run", cwd=base)
    run_cryoreg("docs", cwd=base)
    return PaperSite(base, proc.stdout)


def metric_differences(a, b, path: str = "") -> list[str]:
    """Where two metrics trees differ; floats are compared to 1e-9 relative (DuckDB's parallel
    sums are not bit-identical from run to run)."""
    if isinstance(a, dict) and isinstance(b, dict):
        keys = sorted(set(a) | set(b), key=str)
        return [d for k in keys for d in metric_differences(a.get(k), b.get(k), f"{path}/{k}")]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        pairs = enumerate(zip(a, b, strict=True))
        return [d for i, (x, y) in pairs for d in metric_differences(x, y, f"{path}[{i}]")]
    if isinstance(a, float) and isinstance(b, float | int) and not isinstance(b, bool):
        same = math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
        return [] if same else [f"{path}: {a} != {b}"]
    return [] if a == b else [f"{path}: {a!r} != {b!r}"]


# the dbt models of the registry (staging, versions, current rows, quarantine): what ingest
# tests need, without the clinical definitions and marts
REGISTRY_LAYERS = (
    "path:models/staging path:models/intermediate/registry path:models/marts/quarantine"
)


def build_registry(
    store: Path, root: Path, run_id: str = "run-1", limit: float = 1.0, publish: bool = True
):
    """Land the new folders under root in a real store, build it with the real dbt project and
    account for every row, as a night does (without Prefect, analysis or report). The run is
    marked published when `publish` (its rows then count for the next night). Returns the
    ingest result and an open connection to the store."""
    from cryoreg.ingest import landing, ledger
    from cryoreg.quality import accounting
    from cryoreg.transform import dbt as transform

    with duckdb.connect(str(store)) as con:
        result = landing.ingest(con, root, run_id)
    transform.dbt_build(store, os.environ["CRYOREG_PSEUDONYM_KEY"], select=REGISTRY_LAYERS)
    con = duckdb.connect(str(store))
    accounting.account(con, result, run_id, limit)
    if publish:
        ledger.record_event(con, run_id, "published")
    return result, con


def ingested_warehouse(tmp_path: Path, files: dict[str, str], limit: float = 0.9):
    """A real store after a real ingest and dbt build of one extract folder (2014-12-31)."""
    root = tmp_path / "extracts"
    write_extract(root, "2014-12-31", files)
    return build_registry(tmp_path / "w.duckdb", root, "run-1", limit)[1]


def quarantined(con: duckdb.DuckDBPyConnection) -> list[tuple]:
    """Rows in quarantine now, with their reason code."""
    return sorted(
        con.execute(
            "select extract, file, line, record_id, reason_code from quarantine.rejected_rows"
        ).fetchall()
    )


REGISTRY = ("patients", "procedures", "tumors", "imaging", "adverse_events")


def live_rows(con: duckdb.DuckDBPyConnection) -> dict[str, set[tuple]]:
    """Per table, the registry's current live rows (int_<table>_current) with their lineage."""
    return {
        table: set(con.execute(f"select * from intermediate.int_{table}_current").fetchall())
        for table in REGISTRY
    }


def live_ids(con: duckdb.DuckDBPyConnection) -> dict[str, set[str]]:
    """Per table, the ids of the current live rows (patients by patient_key)."""
    return {
        table: {
            row[0] for row in con.sql(f"select * from intermediate.int_{table}_current").fetchall()
        }
        for table in REGISTRY
    }


def nights_in_runs(store: Path, nights: list, runs: list[list[int]], first_run: int = 0):
    """Each run lands the folders `runs[i]` names (indexes into `nights`: (folder, files)) and
    builds the store; returns the ingest results and an open connection to the store."""
    root = store.with_suffix(".extracts")
    results = []
    for i, run in enumerate(runs):
        for k in run:
            write_extract(root, *nights[k])
        result, con = build_registry(store, root, f"run-{first_run + i}")
        results.append(result)
        if i < len(runs) - 1:
            con.close()
    return results, con


def marts_differences(a: Path, b: Path) -> dict[str, tuple[int, int]]:
    """Per marts table: rows only in a, rows only in b (EXCEPT ALL both ways)."""
    with duckdb.connect() as con:
        con.execute(f"attach '{a}' as a (read_only)")
        con.execute(f"attach '{b}' as b (read_only)")
        tables = {
            db: sorted(
                t
                for (t,) in con.execute(
                    "select table_name from information_schema.tables "
                    "where table_catalog = ? and table_schema = 'marts'",
                    [db],
                ).fetchall()
            )
            for db in ("a", "b")
        }
        assert tables["a"] == tables["b"] and len(tables["a"]) >= 4
        out = {}
        for t in tables["a"]:
            only_a, only_b = (
                con.execute(
                    f"select count(*) from (select * from {x}.marts.{t} "
                    f"except all select * from {y}.marts.{t})"
                ).fetchone()[0]
                for x, y in (("a", "b"), ("b", "a"))
            )
            rows = con.execute(f"select count(*) from a.marts.{t}").fetchone()[0]
            assert rows > 0, t
            out[t] = (only_a, only_b)
        return out


def quarantine_rows(path: Path) -> list[tuple]:
    """The quarantine's rows (extract, file, line, record id, reason) of a warehouse file."""
    with duckdb.connect(str(path), read_only=True) as con:
        return sorted(
            con.execute(
                "select extract, file, line, record_id, reason_code from quarantine.rejected_rows"
            ).fetchall()
        )
