"""Lint-time stand-in for dbt's `target` (only a dbt run knows the real one)."""

database = "cryoreg"
schema = "main"
type = "duckdb"
