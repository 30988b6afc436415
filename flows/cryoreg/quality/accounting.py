"""Row accounting after the build: per file of the run, read = loaded + quarantined, proven
against the ledger, and the quarantine's share limit."""

from __future__ import annotations

import duckdb

from cryoreg.contract import FILES
from cryoreg.ingest.folders import RegistryInputError
from cryoreg.ingest.landing import IngestResult


def account(
    con: duckdb.DuckDBPyConnection,
    result: IngestResult,
    run_id: str,
    limit: float,
    steward_hint: str = "",
) -> None:
    """After the build: per file of this run, loaded and quarantined (quarantine.rejected_rows),
    read = loaded + quarantined proven against the ledger, the share limit applied."""
    landed = dict(
        con.execute(
            " union all ".join(
                f"select _source_file, count(*) from raw.{s.entity} where _run_id = $run "
                "group by all"
                for s in FILES
            ),
            {"run": run_id},
        ).fetchall()
    )
    rejected = dict(
        con.execute(
            "select file, count(*) from quarantine.rejected_rows where run_id = ? group by all",
            [run_id],
        ).fetchall()
    )
    for acc in result.files:
        acc.quarantined = rejected.get(acc.file, 0)
        acc.loaded = landed.get(acc.file, 0) - acc.quarantined
        if acc.read != acc.loaded + acc.quarantined:
            raise RegistryInputError(
                f"{acc.file}: row accounting broken: read {acc.read} != loaded {acc.loaded}"
                f" + quarantined {acc.quarantined}"
            )
    if result.files:
        con.executemany(
            "insert into audit.file_accounting values (?, ?, ?, ?, ?, ?, ?)",
            [
                [run_id, a.extract, a.file, a.read, a.loaded, a.quarantined, a.unknown_columns]
                for a in result.files
            ],
        )
    for acc in result.files:
        if acc.read and acc.quarantined / acc.read > limit:
            first = con.execute(
                "select reason from quarantine.rejected_rows where run_id = ? and file = ? "
                "order by line limit 1",
                [run_id, acc.file],
            ).fetchone()[0]
            raise RegistryInputError(
                f"{acc.file}: {acc.quarantined} of {acc.read} rows quarantined "
                f"({acc.quarantined / acc.read:.1%}), above the limit of {limit:.1%} "
                f"(CRYOREG_QUARANTINE_LIMIT); first problem: {first}{steward_hint}"
            )
