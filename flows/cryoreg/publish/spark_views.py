"""Publishing on Spark: analysts read the night's tables through views that switch together.

The published tables (the same as in the analysts' DuckDB file: marts, de-identified
quarantine, audit) are written to a database of their own per run, `<database>_<run>`, from
that file; only when every table is written do the views of `<database>` (CRYOREG_SPARK_DATABASE,
default `cryoreg`) switch to them. A run that fails or is killed before the switch leaves the
views on the previous night's tables. The previous night's database is kept (a query that
started before the switch finishes on it); older ones are dropped.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from cryoreg.publish.warehouse import PUBLISHED_TABLES


def run_database(database: str, run_id: str) -> str:
    return f"{database}_{run_id.replace('-', '')[:12]}"


def write_tables(spark, published_file: Path, database: str, run_id: str) -> str:
    """Copy the night's published tables into the run's own database (nothing switches yet)."""
    target = run_database(database, run_id)
    spark.sql(f"create database if not exists {target}")
    with duckdb.connect(str(published_file), read_only=True) as con:
        for schema, _, table in PUBLISHED_TABLES:
            columns = con.execute(
                "select column_name, data_type from information_schema.columns "
                "where table_schema = ? and table_name = ? order by ordinal_position",
                [schema, table],
            ).fetchall()
            select = ", ".join(
                f'cast("{c}" as varchar) as "{c}"' if t == "JSON" else f'"{c}"' for c, t in columns
            )
            arrow = con.execute(f"select {select} from {schema}.{table}").to_arrow_table()
            spark.createDataFrame(arrow).write.mode("overwrite").saveAsTable(f"{target}.{table}")
    return target


def switch_views(spark, database: str, run_id: str) -> None:
    """Point every view of `database` at this run's tables, then drop the databases of runs
    older than the night before."""
    target = run_database(database, run_id)
    spark.sql(f"create database if not exists {database}")
    previous = None
    if spark.catalog.tableExists(f"{database}.published_run"):
        previous = spark.sql(f"select run_database from {database}.published_run").first()[0]
    for _, _, table in PUBLISHED_TABLES:
        spark.sql(f"create or replace view {database}.{table} as select * from {target}.{table}")
    spark.sql(
        f"create or replace view {database}.published_run as "
        f"select '{run_id}' as run_id, '{target}' as run_database"
    )
    for (name,) in spark.sql(f"show databases like '{database}_*'").collect():
        if name not in (target, previous):
            spark.sql(f"drop database if exists {name} cascade")
