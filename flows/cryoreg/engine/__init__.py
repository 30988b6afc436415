"""Where the warehouse is built: DuckDB (embedded, the default) or Apache Spark."""
