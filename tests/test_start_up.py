"""A run with a new PREFECT_HOME and a new warehouse starts from the machine's cache (an empty
Prefect database, migrated; dbt's parse of the project) and gives the same night as one that
built it; a broken cache costs time, not the night."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
from pathlib import Path

from conftest import CRYOREG, metric_differences


def _night(base: Path, name: str, cache: Path) -> dict:
    """`cryoreg run` on base/extracts into a warehouse and a Prefect home of its own."""
    env = {k: v for k, v in os.environ.items() if k not in ("DBT_TARGET_PATH", "DBT_LOG_PATH")}
    env |= {"CRYOREG_CACHE_DIR": str(cache), "PREFECT_HOME": str(base / name / "prefect")}
    args = ["run", "--warehouse", f"{name}/cryoreg.duckdb", "--out", f"{name}/out"]
    proc = subprocess.run(
        [*CRYOREG, *args], cwd=base, env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads((base / name / "out" / "metrics.json").read_text())


def _files_parsed(base: Path, name: str) -> int:
    """How many of the project's files the night's dbt parse read (0: all from its state)."""
    perf = base / name / "cryoreg.store.dbt" / "target" / "perf_info.json"
    return json.loads(perf.read_text())["parsed_path_count"]


def _migration(database: Path) -> str:
    with sqlite3.connect(database) as con:
        return con.execute("select version_num from alembic_version").fetchone()[0]


def test_new_homes_and_warehouses_start_from_the_cache_and_a_broken_cache_is_rebuilt(tmp_path):
    subprocess.run([*CRYOREG, "synth", "extracts"], cwd=tmp_path, check=True, capture_output=True)
    cache = tmp_path / "cache"
    cache.mkdir()

    first = _night(tmp_path, "first", cache)
    template = next(cache.glob("prefect-*.db"))
    home = tmp_path / "first" / "prefect" / "prefect.db"
    assert _migration(template) == _migration(home)  # the cache holds a migrated database
    parse = next(cache.glob("dbt-parse-*.msgpack"))
    assert _files_parsed(tmp_path, "first") > 100  # a new machine parses the whole project

    # a cache entry that is not what it claims to be costs time, never the night
    template.write_bytes(b"truncated")
    second = _night(tmp_path, "second", cache)
    assert _migration(template) == _migration(home)  # rebuilt
    assert _files_parsed(tmp_path, "second") == 0  # a new warehouse: dbt's parse from the cache

    parse.write_bytes(b"truncated")
    third = _night(tmp_path, "third", cache)  # Prefect from the rebuilt cache; dbt parses all
    assert _migration(tmp_path / "third" / "prefect" / "prefect.db") == _migration(home)
    assert _files_parsed(tmp_path, "third") > 100
    assert parse.stat().st_size > 100_000  # rebuilt

    for night in (second, third):
        assert not metric_differences(
            {k: v for k, v in first.items() if k != "run"},
            {k: v for k, v in night.items() if k != "run"},
        )
