"""The registry extract contract, read from the one place it is declared.

The contract (files, columns, kinds, codes, ranges, references, which columns identify a
person) is data in the dbt project's sources file, where the staging models' row checks read
it too; this module gives Python (ingest's header checks, synth, the tests) the same view.
"""

from __future__ import annotations

from dataclasses import dataclass

import yaml

from cryoreg.config import project_folder

CONTRACT_FILE = (
    project_folder("dbt_project") / "models" / "staging" / "registry" / "_registry__sources.yml"
)
LINEAGE = ("_extract_date", "_source_file", "_source_line", "_run_id", "_loaded_at")


@dataclass(frozen=True)
class Column:
    name: str
    kind: str  # text | date | integer | number | code
    required: bool = False
    codes: tuple[str, ...] = ()
    low: float | None = None
    high: float | None = None
    identifies: bool = False  # the value identifies a person (never in the analysts' file)
    not_before: str | None = None  # a date column of the same row this date may not precede


@dataclass(frozen=True)
class ExtractFile:
    entity: str  # ledger table name
    id_column: str
    columns: tuple[Column, ...]  # the extract columns, record_status last
    parent: tuple[str, str] | None = None  # (parent entity, foreign-key column)
    # (parent date column, own date column, reason): own date may not precede the parent's
    date_order: tuple[str, str, str] | None = None

    @property
    def file_name(self) -> str:
        return f"{self.entity}.csv"

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @property
    def required_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns if c.required)

    def column(self, name: str) -> Column:
        return next(c for c in self.columns if c.name == name)


def _column(entry: dict) -> Column:
    meta = (entry.get("config") or {}).get("meta") or {}
    low, high = meta.get("range") or (None, None)
    return Column(
        entry["name"],
        meta.get("kind", "text"),
        bool(meta.get("required")),
        tuple(meta.get("codes") or ()),
        low,
        high,
        bool(meta.get("identifies")),
        meta.get("not_before"),
    )


def load_contract(path=CONTRACT_FILE) -> tuple[ExtractFile, ...]:
    """The extract files of the contract, parents before children."""
    source = yaml.safe_load(path.read_text(encoding="utf-8"))["sources"][0]
    files = []
    for table in source["tables"]:
        meta = (table.get("config") or {}).get("meta") or {}
        if "id_column" not in meta:
            continue  # not an extract file (the run log)
        parent, order = meta.get("parent"), meta.get("date_order")
        files.append(
            ExtractFile(
                table["name"],
                meta["id_column"],
                tuple(_column(c) for c in table["columns"] if not c["name"].startswith("_")),
                (parent["table"], parent["column"]) if parent else None,
                (order["parent_date"], order["own_date"], order["reason"]) if order else None,
            )
        )
    return tuple(files)


FILES: tuple[ExtractFile, ...] = load_contract()
BY_NAME = {f.file_name: f for f in FILES}
BY_ENTITY = {f.entity: f for f in FILES}
MODALITIES = BY_ENTITY["procedures"].column("guidance").codes
