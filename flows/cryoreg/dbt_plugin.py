"""dbt-duckdb plugin: the keyed hash (HMAC-SHA256) that turns MRNs into patient keys.

The key comes from the dbt profile (`config: {key: ...}`, read from CRYOREG_PSEUDONYM_KEY) and
lives only in this process: the SQL calls `cryoreg_pseudonym(mrn)` and never sees the key, so it
cannot leak into compiled SQL, logs or the manifest. An empty key fails closed: the function
raises when called, rather than producing keys anyone could recompute.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import duckdb
import pyarrow as pa
from dbt.adapters.duckdb.plugins import BasePlugin

FUNCTION_NAME = "cryoreg_pseudonym"


def pseudonym(value: str, key: bytes) -> str:
    """Hex HMAC-SHA256 of the UTF-8 value: stable per key, not reversible without it."""
    return hmac.new(key, value.encode("utf-8"), hashlib.sha256).hexdigest()


def _arrow_pseudonym(key: bytes):
    """One call per vector of values (not per row), nulls stay null."""

    def udf(values: pa.Array | pa.ChunkedArray) -> pa.Array:
        if not key:
            raise ValueError(
                f"{FUNCTION_NAME}: the pseudonym key is empty; set CRYOREG_PSEUDONYM_KEY"
            )
        digests = [None if v is None else pseudonym(v, key) for v in values.to_pylist()]
        return pa.array(digests, type=pa.string())

    return udf


class Plugin(BasePlugin):
    """Registers cryoreg_pseudonym(VARCHAR) -> VARCHAR on every dbt DuckDB connection."""

    def initialize(self, plugin_config: dict[str, Any]) -> None:
        self._key = str(plugin_config.get("key") or "").encode("utf-8")

    def configure_connection(self, conn: duckdb.DuckDBPyConnection) -> None:
        conn.create_function(
            FUNCTION_NAME,
            _arrow_pseudonym(self._key),
            [duckdb.sqltype("VARCHAR")],
            duckdb.sqltype("VARCHAR"),
            type="arrow",
            null_handling="special",
            side_effects=False,
        )
