"""Validate: pandera contracts of the fixed marts (types, keys, codes, cross-column logic).

contracts.check_marts runs them (Arrow into polars, lazily, every failing check in one pass) and
records each check in audit.check_results.
"""

from __future__ import annotations

import duckdb
import pandera.polars as pa
import polars as pl

HMAC_HEX = r"^[0-9a-f]{64}$"
SIZE_GROUPS = ["lt4cm", "ge4cm"]


class MartValidationError(RuntimeError):
    """A mart broke its contract: the run must not publish."""


def _null_unless(flag: str, column: str) -> pa.Check:
    """`column` is filled exactly when `flag` is true (e.g. te_success only if te_evaluable)."""
    return pa.Check(
        lambda data: data.lazyframe.select(
            pl.col(column).is_not_null() == pl.col(flag).fill_null(False)
        ),
        name=f"{column}_set_iff_{flag}",
    )


def _int(*checks: pa.Check, nullable: bool = False) -> pa.Column:
    return pa.Column(pl.Int64, checks=list(checks), nullable=nullable, coerce=True)


def _key(pattern: str | None = None) -> pa.Column:
    checks = [pa.Check.str_matches(pattern)] if pattern else []
    return pa.Column(pl.String, checks=checks, unique=True, nullable=False)


def _ref(pattern: str | None = None) -> pa.Column:
    checks = [pa.Check.str_matches(pattern)] if pattern else []
    return pa.Column(pl.String, checks=checks, nullable=False)


MART_SCHEMAS: dict[str, pa.DataFrameSchema] = {
    "fct_tumor": pa.DataFrameSchema(
        {
            "tumor_key": _key(),
            "procedure_key": _ref(),
            "patient_key": _ref(HMAC_HEX),
            "procedure_date": pa.Column(pl.Date),
            "diameter_cm": pa.Column(pl.Float64, pa.Check.in_range(0.1, 30.0)),
            "size_group": pa.Column(pl.String, pa.Check.isin(SIZE_GROUPS)),
            "origin": pa.Column(pl.String, pa.Check.isin(["primary", "metastasis"])),
            "histology": pa.Column(pl.String),
            "ts_evaluable": pa.Column(pl.Boolean),
            "ts_success": pa.Column(pl.Boolean, nullable=True),
            "te_evaluable": pa.Column(pl.Boolean),
            "te_success": pa.Column(pl.Boolean, nullable=True),
            "ltp_event": pa.Column(pl.Boolean, nullable=True),
            "ltp_time_years": pa.Column(pl.Float64, pa.Check.ge(0), nullable=True),
            "follow_up_years": pa.Column(pl.Float64, pa.Check.ge(0), nullable=True),
        },
        checks=[
            _null_unless("ts_evaluable", "ts_success"),
            _null_unless("te_evaluable", "te_success"),
            _null_unless("te_evaluable", "ltp_event"),
            _null_unless("te_evaluable", "ltp_time_years"),
            pa.Check(
                lambda data: data.lazyframe.select(
                    (pl.col("size_group") == "ge4cm") == (pl.col("diameter_cm") >= 4.0)
                ),
                name="size_group_matches_diameter",
            ),
            pa.Check(
                lambda data: data.lazyframe.select(
                    (pl.col("ltp_time_years") <= pl.col("follow_up_years") + 1e-9).fill_null(True)
                ),
                name="ltp_time_within_follow_up",
            ),
        ],
        strict=False,
    ),
    "fct_procedure": pa.DataFrameSchema(
        {
            "procedure_key": _key(),
            "patient_key": _ref(HMAC_HEX),
            "procedure_date": pa.Column(pl.Date),
            "guidance": pa.Column(pl.String, pa.Check.isin(["CT", "MRI", "PET/CT"])),
            # a procedure whose tumors were all quarantined keeps its adverse events
            "size_group": pa.Column(pl.String, pa.Check.isin(SIZE_GROUPS), nullable=True),
            "tumor_count": _int(pa.Check.ge(0)),
            "any_ae": pa.Column(pl.Boolean),
            "major_ae": pa.Column(pl.Boolean),
            "max_ctcae_grade": _int(pa.Check.in_range(1, 5), nullable=True),
        },
        checks=[
            _null_unless("any_ae", "max_ctcae_grade"),
            pa.Check(
                lambda data: data.lazyframe.select(
                    pl.col("major_ae") == (pl.col("max_ctcae_grade").fill_null(0) >= 3)
                ),
                name="major_ae_is_grade_3_or_more",
            ),
        ],
    ),
    "dim_patient": pa.DataFrameSchema(
        {
            "patient_key": _key(HMAC_HEX),
            "sex": pa.Column(pl.String, pa.Check.isin(["F", "M"])),
            "age_at_first_procedure": _int(pa.Check.in_range(0, 120)),
            "procedure_count": _int(pa.Check.ge(1)),
        }
    ),
    "fct_adverse_event": pa.DataFrameSchema(
        {
            "event_key": _key(),
            "procedure_key": _ref(),
            "onset_day": _int(),
            "ctcae_grade": _int(pa.Check.in_range(1, 5)),
            "in_30_day_window": pa.Column(pl.Boolean),
        },
        checks=[
            pa.Check(
                lambda data: data.lazyframe.select(
                    pl.col("in_30_day_window") == pl.col("onset_day").is_between(0, 30)
                ),
                name="window_is_day_0_to_30",
            )
        ],
    ),
}

FORBIDDEN_COLUMNS = ("mrn", "name", "birth")


def assert_no_identifying_columns(con: duckdb.DuckDBPyConnection) -> None:
    """No marts column may be named like an identifier (MRN, name, birth date)."""
    identifying = con.execute(
        "select table_name || '.' || column_name from information_schema.columns "
        "where table_schema = 'marts' and ("
        + " or ".join(f"column_name ilike '%{word}%'" for word in FORBIDDEN_COLUMNS)
        + ")"
    ).fetchall()
    if identifying:
        raise MartValidationError(
            f"marts hold identifying column(s): {', '.join(c for (c,) in identifying)}"
        )
