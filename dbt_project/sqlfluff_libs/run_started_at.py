"""Lint-time stand-in for dbt's `run_started_at` (a datetime only a dbt run has)."""


def strftime(fmt: str) -> str:
    return "2000-01-01 00:00:00.000000"
