"""Landing on Spark: one extract file appended to the ledger (raw.<table>) with Spark's CSV
reader, the same lineage and the same file-level checks and messages as on DuckDB.

The file is checked as a whole first (UTF-8 throughout, its header: landing.read_header and
the contract), then read as text, every field a string, with its record number (line of the
record = number + 1, the header being line 1). A line with too few or too many fields lands as
a row of its own with its fields and the reason, for staging to quarantine as malformed_row,
as on DuckDB.
"""

from __future__ import annotations

import codecs
from datetime import datetime
from pathlib import Path

from cryoreg.contract import ExtractFile
from cryoreg.ingest.folders import RegistryInputError
from cryoreg.ingest.landing import FileAccount, checked_header

CHUNK = 16 * 2**20
# where Spark's reader puts the text of a record whose field count is not the header's
CORRUPT = "_cryoreg_malformed"


def check_utf8(path: Path, label: str) -> None:
    """The whole file must be UTF-8 (Spark's reader would replace bad bytes silently)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    done = 0
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as exc:
                position = done + exc.start
                raise RegistryInputError(
                    f"{label}: not a valid UTF-8 CSV file: invalid byte at position {position}"
                ) from None
            done += len(chunk)
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            raise RegistryInputError(
                f"{label}: not a valid UTF-8 CSV file: the file ends inside a character"
            ) from None


def land_file(
    spark,
    path: Path,
    spec: ExtractFile,
    extract: str,
    label: str,
    run_id: str,
    loaded_at: datetime,
) -> FileAccount:
    """Append one CSV's rows to raw.<table> on Spark, text as received, checking it first."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import StringType, StructField, StructType

    header = checked_header(path, spec, label)
    check_utf8(path, label)
    account = FileAccount(extract, label)
    account.unknown_columns = [h for h in header if h not in spec.column_names]

    fields = [f"c{i}" for i in range(len(header))]
    schema = StructType([StructField(c, StringType()) for c in [*fields, CORRUPT]])
    read = spark.read.csv(
        str(path.resolve()),
        schema=schema,
        header=False,
        multiLine=True,
        quote='"',
        escape='"',
        encoding="UTF-8",
        mode="PERMISSIVE",
        columnNameOfCorruptRecord=CORRUPT,
        ignoreLeadingWhiteSpace=False,
        ignoreTrailingWhiteSpace=False,
    )
    # multiLine files are not split: one file is one partition, read in order, so the
    # generated id counts the records from 0 (the header), with no Python per row
    numbered = read.withColumn("_source_line", F.monotonically_increasing_id() + 1)
    rows = numbered.where(F.col("_source_line") > 1)
    malformed = F.col(CORRUPT).isNotNull()  # a record whose field count is not the header's
    by_name = {name: f"c{i}" for i, name in enumerate(header)}
    nothing = F.lit(None).cast("string")
    columns = [
        F.when(malformed, nothing).otherwise(F.col(by_name[c])).alias(c)
        if c in by_name
        else nothing.alias(c)
        for c in spec.column_names
    ]
    reason = f"wrong number of fields: expected {len(fields)} (the header's)"
    landed = rows.select(
        *columns,
        F.to_date(F.lit(extract)).alias("_extract_date"),
        F.lit(label).alias("_source_file"),
        F.col("_source_line"),
        F.lit(run_id).alias("_run_id"),
        F.lit(loaded_at).cast("timestamp").alias("_loaded_at"),
        F.regexp_replace(F.col(CORRUPT), "[\\r\\n]+$", "").alias("_raw_text"),
        F.when(malformed, F.lit(reason)).alias("_read_error"),
    )
    landed.write.insertInto(f"raw.{spec.entity}")
    account.read = spark.sql(
        f"select count(*) from raw.{spec.entity} where _source_file = ? and _run_id = ?",
        args=[label, run_id],
    ).collect()[0][0]
    return account
