"""dbt-duckdb plugin: hands the pseudonym key (HMAC-SHA256) to DuckDB without putting it in SQL.

The key comes from the dbt profile (`config: {key: ...}`, read from CRYOREG_PSEUDONYM_KEY). HMAC
is two SHA-256 passes over the key padded to the block size and XORed with two constants; the
plugin sets the two padded keys as DuckDB variables on every cursor dbt opens, and the macro
`pseudonymize` computes HMAC-SHA256 in SQL from them (vectorised, no Python per value). The key
never appears in compiled SQL, logs or the manifest. An empty key sets nothing, and the macro
then fails the query (fail closed) rather than produce keys anyone could recompute.
"""

from __future__ import annotations

import hashlib
from typing import Any

from dbt.adapters.duckdb.plugins import BasePlugin

BLOCK = 64  # SHA-256's block size in bytes (RFC 2104)
VARIABLES = ("cryoreg_hmac_inner", "cryoreg_hmac_outer")


def padded_keys(key: bytes) -> tuple[bytes, bytes]:
    """RFC 2104's inner and outer keys: the key (hashed if longer than a block) padded with
    zeros to the block, XOR 0x36 and XOR 0x5c."""
    if len(key) > BLOCK:
        key = hashlib.sha256(key).digest()
    key = key.ljust(BLOCK, b"\0")
    return bytes(b ^ 0x36 for b in key), bytes(b ^ 0x5C for b in key)


class Plugin(BasePlugin):
    """Sets the HMAC's padded keys on every cursor of dbt's DuckDB connection."""

    def initialize(self, plugin_config: dict[str, Any]) -> None:
        key = str(plugin_config.get("key") or "").encode("utf-8")
        self._pads = padded_keys(key) if key else None

    def configure_cursor(self, cursor):
        if self._pads is not None:
            for name, pad in zip(VARIABLES, self._pads, strict=True):
                cursor.execute(f"set variable {name} = unhex(?)", [pad.hex()])
        return cursor
