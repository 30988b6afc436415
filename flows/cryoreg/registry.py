"""The registry extract contract: files, columns, types, codes and references.

One declaration drives ingest's header checks and its set-based row validation.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Column:
    name: str
    kind: str  # text | date | integer | number | code
    required: bool = False
    codes: tuple[str, ...] = ()
    low: float | None = None
    high: float | None = None


@dataclass(frozen=True)
class ExtractFile:
    entity: str  # raw table name
    id_column: str
    columns: tuple[Column, ...]
    parent: tuple[str, str] | None = None  # (parent entity, foreign-key column)
    # (parent date column, own date column, reason): own date may not precede the parent's
    date_order: tuple[str, str, str] | None = None
    extra: tuple[str, ...] = field(default=("record_status",))

    @property
    def file_name(self) -> str:
        return f"{self.entity}.csv"

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns) + self.extra

    @property
    def required_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns if c.required)


MODALITIES = ("CT", "MRI", "PET/CT")

FILES: tuple[ExtractFile, ...] = (
    ExtractFile(
        "patients",
        "patient_mrn",
        (
            Column("patient_mrn", "text", required=True),
            Column("patient_name", "text"),
            Column("sex", "code", required=True, codes=("F", "M")),
            Column("birth_date", "date", required=True),
            Column("death_date", "date"),
            Column("last_contact_date", "date"),
        ),
    ),
    ExtractFile(
        "procedures",
        "procedure_id",
        (
            Column("procedure_id", "text", required=True),
            Column("patient_mrn", "text", required=True),
            Column("procedure_date", "date", required=True),
            Column("guidance", "code", required=True, codes=MODALITIES),
            Column("anesthesia", "code", codes=("general", "moderate")),
            Column("probe_count", "integer", low=1, high=25),
        ),
        parent=("patients", "patient_mrn"),
        date_order=("birth_date", "procedure_date", "procedure before birth"),
    ),
    ExtractFile(
        "tumors",
        "tumor_id",
        (
            Column("tumor_id", "text", required=True),
            Column("procedure_id", "text", required=True),
            Column("origin", "code", required=True, codes=("primary", "metastasis")),
            Column("histology", "text", required=True),
            Column("liver_segment", "integer", low=1, high=8),
            Column("diameter_mm", "number", required=True, low=1, high=300),
            Column(
                "technical_result",
                "code",
                required=True,
                codes=("complete", "incomplete", "not_assessed"),
            ),
        ),
        parent=("procedures", "procedure_id"),
    ),
    ExtractFile(
        "imaging",
        "imaging_id",
        (
            Column("imaging_id", "text", required=True),
            Column("tumor_id", "text", required=True),
            Column("imaging_date", "date", required=True),
            Column("modality", "code", required=True, codes=(*MODALITIES, "US")),
            Column(
                "finding",
                "code",
                required=True,
                codes=("no_tumor", "residual_tumor", "local_progression", "indeterminate"),
            ),
        ),
        parent=("tumors", "tumor_id"),
        date_order=("procedure_date", "imaging_date", "imaging before its procedure"),
    ),
    ExtractFile(
        "adverse_events",
        "event_id",
        (
            Column("event_id", "text", required=True),
            Column("procedure_id", "text", required=True),
            Column("onset_date", "date", required=True),
            Column("ctcae_grade", "integer", required=True, low=1, high=5),
            Column("description", "text"),
        ),
        parent=("procedures", "procedure_id"),
    ),
)

BY_NAME = {f.file_name: f for f in FILES}
BY_ENTITY = {f.entity: f for f in FILES}
