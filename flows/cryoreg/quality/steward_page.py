"""The steward's quarantine page: every row held back after a night, each problem with what to
fix.

It shows values as received (MRNs and names included), so it lives where the registry's store
lives and like the store is readable by its owner only; it is never written under out/, which
analysts read. It is written before the quarantine limit is applied, so a night stopped by the
limit still leaves the page that lists what stopped it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb
from jinja2 import Environment, PackageLoader, select_autoescape

FOLDER = "steward"
MAX_ROWS = 5_000  # a page a browser still opens; every row stays in quarantine.rejected_rows
MAX_VALUE = 200  # characters of a value shown (a malformed line can hold megabytes)

# What the registry's sender can do about each reason (docs/extract-contract.md, "What happens
# to bad input").
FIXES = {
    "missing_required": "send the row again with the value filled in",
    "bad_date": "write the date as YYYY-MM-DD, a real calendar date",
    "future_date": "correct the date: it lies after the date of the extract",
    "unknown_code": "use one of the column's codes (docs/extract-contract.md)",
    "not_a_number": "send a plain number (digits, an optional sign and decimal point)",
    "out_of_range": "correct the value: it lies outside the column's range",
    "impossible_date": "correct whichever of the two dates is wrong",
    "duplicate_id": "send each id once per file (the later copy was kept)",
    "orphan": "send the parent row or correct the reference; the row then comes back by itself",
    "malformed_row": "give the line as many fields as the header (quote values holding commas)",
}


@dataclass(frozen=True)
class Problem:
    file: str
    line: int
    record_id: str | None
    column: str
    value: str | None
    code: str
    message: str
    tonight: bool

    @property
    def fix(self) -> str:
        return FIXES.get(self.code, "see docs/extract-contract.md")

    @property
    def shown_value(self) -> str:
        if self.value is None:
            return "(empty)"
        if len(self.value) <= MAX_VALUE:
            return self.value
        return f"{self.value[:MAX_VALUE]}... ({len(self.value):,} characters)"


def folder(store: Path) -> Path:
    """The steward's folder beside the store."""
    return store.parent / FOLDER


def page_of(store: Path, run_id: str) -> Path | None:
    """The page a run wrote, if it wrote one (what an alert about the night points to)."""
    found = sorted(folder(store).glob(f"quarantine-*-{run_id[:8]}.html"))
    return found[-1] if found else None


def write(con: duckdb.DuckDBPyConnection, store: Path, run_id: str) -> Path | None:
    """Write the night's page (None when nothing is held back) and return its path."""
    held, tonight = con.execute(
        "select count(*), count(*) filter (where run_id = ?) from quarantine.rejected_rows",
        [run_id],
    ).fetchone()
    if not held:
        return None
    rows = con.execute(
        """select file, line, record_id, p.col, p.val, p.code, p.msg, run_id = $run
        from (select *, unnest(problems) as p from quarantine.rejected_rows)
        order by run_id = $run desc, file, line
        limit $limit""",
        {"run": run_id, "limit": MAX_ROWS},
    ).fetchall()
    by_reason = con.execute(
        """select p.code, count(*) from
            (select unnest(problems) as p from quarantine.rejected_rows)
        group by all order by 2 desc, 1"""
    ).fetchall()
    now = datetime.now(UTC)
    html = _template().render(
        run_id=run_id,
        written_at=now.strftime("%Y-%m-%d %H:%M UTC"),
        held=held,
        tonight=tonight,
        by_reason=[(code, count, FIXES.get(code, "")) for code, count in by_reason],
        problems=[Problem(*row) for row in rows],
        shown_limit=MAX_ROWS,
    )
    target = folder(store) / f"quarantine-{now:%Y-%m-%d}-{run_id[:8]}.html"
    _write_private(target, html)
    return target


def _template():
    env = Environment(
        loader=PackageLoader("cryoreg.quality", "templates"), autoescape=select_autoescape()
    )
    return env.get_template("steward_quarantine.html")


def _write_private(target: Path, text: str) -> None:
    """Owner-only folder and file, created so from the start (never briefly world-readable)."""
    target.parent.mkdir(mode=0o700, exist_ok=True)
    os.chmod(target.parent, 0o700)
    partial = target.with_name(f".{target.name}.partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(partial, target)
