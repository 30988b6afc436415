"""Data quality: one table of check results for every tool, kept across nights.

pandera contracts, Great Expectations suites, dbt tests and ingest's quarantine all land in
`audit.check_results`, so a steward reads one place for trends, and the run summary and the
report take the night's data-quality status from it. A failing check listed in the reviewed
file expectations/known_exceptions.yml is recorded as a warning, never silenced.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import duckdb

from cryoreg.config import project_folder
from cryoreg.contract import FILES
from cryoreg.report.text import age_text

EXPECTATIONS_DIR = project_folder("expectations")
KNOWN_EXCEPTIONS_FILE = "known_exceptions.yml"

TOOLS = ("pandera", "great_expectations", "dbt", "ingest")
CATEGORIES = ("conformance", "completeness", "plausibility")
SEVERITIES = ("fatal", "warn")
STATUSES = ("passed", "failed", "error", "not_applicable")
# What people read, on every page and line: a failure (or a check that could not run) is
# "warned" when its severity is warn, "failed" when fatal.
KINDS = ("passed", "warned", "failed", "not applicable")


def kind(status: str, severity: str) -> str:
    """A check's outcome in the words of KINDS."""
    if status in ("passed", "not_applicable"):
        return status.replace("_", " ")
    return "warned" if severity == "warn" else "failed"


# ingest's reason codes (ingest.py) -> category of the Kahn et al. data-quality framework
REASON_CATEGORY = {
    "missing_required": "completeness",
    "bad_date": "conformance",
    "not_a_number": "conformance",
    "unknown_code": "conformance",
    "out_of_range": "conformance",
    "duplicate_id": "conformance",
    "orphan": "conformance",
    "future_date": "plausibility",
    "impossible_date": "plausibility",
}


class DataQualityError(RuntimeError):
    """A fatal data-quality check failed: the run must not publish."""


class KnownExceptionsError(RuntimeError):
    """The known-exceptions file is malformed; a steward must fix it before a run."""


@dataclass
class CheckResult:
    """One check's verdict for one run; status is derived from the counts when not given."""

    check_name: str
    tool: str
    category: str
    severity: str
    threshold: float | None = 0.0  # share of failing rows tolerated
    failing_rows: int | None = None
    checked_rows: int | None = None
    status: str | None = None
    target: str = ""
    details: dict = field(default_factory=dict)
    known_exception: str | None = None  # set by record(): why a failure only warns

    def __post_init__(self) -> None:
        for value, allowed in (
            (self.tool, TOOLS),
            (self.category, CATEGORIES),
            (self.severity, SEVERITIES),
        ):
            if value not in allowed:
                raise ValueError(f"{self.check_name}: {value!r} is not one of {allowed}")
        if self.status is None:
            self.status = judge(self.failing_rows, self.checked_rows, self.threshold)
        if self.status not in STATUSES:
            raise ValueError(f"{self.check_name}: status {self.status!r} is not one of {STATUSES}")


def judge(failing: int | None, checked: int | None, threshold: float | None) -> str:
    """passed / failed from failing rows versus the tolerated share of checked rows."""
    if failing is None:
        return "error"
    if not failing:
        return "passed"
    if checked:
        return "failed" if failing / checked > (threshold or 0.0) else "passed"
    return "failed"


@dataclass(frozen=True)
class KnownException:
    check: str
    reason: str
    reviewer: str
    reviewed: str
    expires: str | None = None

    def active(self, today: date) -> bool:
        return self.expires is None or date.fromisoformat(self.expires) >= today


def load_known_exceptions(path: Path | None = None) -> dict[str, KnownException]:
    """The reviewed exceptions, by check name; every entry needs reason, reviewer and date."""
    import yaml

    path = path or EXPECTATIONS_DIR / KNOWN_EXCEPTIONS_FILE
    if not path.exists():
        return {}
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    entries = data.get("exceptions") or []
    found: dict[str, KnownException] = {}
    for i, entry in enumerate(entries, 1):
        missing = [k for k in ("check", "reason", "reviewer", "date") if not entry.get(k)]
        if missing:
            raise KnownExceptionsError(f"{path.name}: entry {i} lacks {', '.join(missing)}")
        try:
            reviewed = date.fromisoformat(str(entry["date"])).isoformat()
            expires = entry.get("expires")
            expires = date.fromisoformat(str(expires)).isoformat() if expires else None
        except ValueError as exc:
            raise KnownExceptionsError(f"{path.name}: entry {i}: {exc}") from exc
        found[str(entry["check"])] = KnownException(
            str(entry["check"]), str(entry["reason"]), str(entry["reviewer"]), reviewed, expires
        )
    return found


def active_exception(exceptions: dict[str, KnownException], name: str) -> KnownException | None:
    """The reviewed, unexpired exception for a check, if any."""
    known = exceptions.get(name)
    return known if known and known.active(date.today()) else None


def ensure_table(con: duckdb.DuckDBPyConnection) -> None:
    """Create audit.check_results on first use; it is never truncated (trends across nights)."""
    con.execute("create schema if not exists audit")
    con.execute(
        """create table if not exists audit.check_results (
            run_id varchar not null, checked_at timestamp not null, check_name varchar not null,
            tool varchar not null, target varchar, category varchar not null,
            severity varchar not null, declared_severity varchar not null, threshold double,
            failing_rows bigint, checked_rows bigint, status varchar not null,
            known_exception varchar, details json)"""
    )


def record(
    con: duckdb.DuckDBPyConnection,
    run_id: str,
    results: Iterable[CheckResult],
    exceptions: dict[str, KnownException] | None = None,
) -> list[CheckResult]:
    """Append results to audit.check_results, downgrading listed known exceptions to warn."""
    ensure_table(con)
    exceptions = load_known_exceptions() if exceptions is None else exceptions
    rows, kept = [], []
    for res in results:
        declared = res.severity
        known = active_exception(exceptions, res.check_name)
        if known and res.status in ("failed", "error"):
            res.severity = "warn"
            res.known_exception = f"{known.reason} (reviewed by {known.reviewer}, {known.reviewed})"
        rows.append(
            [
                run_id,
                res.check_name,
                res.tool,
                res.target,
                res.category,
                res.severity,
                declared,
                res.threshold,
                res.failing_rows,
                res.checked_rows,
                res.status,
                res.known_exception,
                json.dumps(res.details, default=str, sort_keys=True),
            ]
        )
        kept.append(res)
    for start in range(0, len(rows), INSERT_BATCH):
        batch = rows[start : start + INSERT_BATCH]
        con.execute(
            "insert into audit.check_results values " + ", ".join([_ROW] * len(batch)),
            [value for row in batch for value in row],
        )
    return kept


# One multi-row insert per batch: executemany commits (and syncs the WAL) once per row, a
# second per hundred checks on a large warehouse.
_ROW = "(?, current_timestamp, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
INSERT_BATCH = 500


def previous_observation(con: duckdb.DuckDBPyConnection, check_name: str, run_id: str):
    """The observed value a check recorded in the latest earlier run (None on the first)."""
    ensure_table(con)
    rows = con.execute(
        """select (details -> 'observed_value')::varchar from audit.check_results
        where check_name = ? and run_id <> ? and (details -> 'observed_value') is not null
        order by checked_at desc limit 1""",
        [check_name, run_id],
    ).fetchall()
    return json.loads(rows[0][0]) if rows else None


def ingest_results(
    con: duckdb.DuckDBPyConnection, run_id: str, quarantine_limit: float
) -> list[CheckResult]:
    """One check per file loaded this run and per reason code that applies to it.

    Failing rows are that file's rows quarantined for the reason (first reason of a row);
    the threshold is the configured quarantine share.
    """
    read = con.execute(
        "select file, sum(rows_read) from audit.file_accounting where run_id = ? group by all",
        [run_id],
    ).fetchall()
    counts = {
        (f, code): n
        for f, code, n in con.execute(
            """select file, reason_code, count(*) from quarantine.rejected_rows
            where run_id = ? group by all""",
            [run_id],
        ).fetchall()
    }
    results = []
    for file, rows_read in read:
        entity = file.rsplit("/", 1)[-1].removesuffix(".csv")
        codes = applicable_reasons(entity) | {c for f, c in counts if f == file}
        for code in sorted(codes):
            results.append(
                CheckResult(
                    check_name=f"raw.{entity}:quarantine_{code}",
                    tool="ingest",
                    category=REASON_CATEGORY.get(code, "conformance"),
                    severity="fatal",
                    threshold=quarantine_limit,
                    failing_rows=counts.get((file, code), 0),
                    checked_rows=int(rows_read),
                    target=file,
                    details={"reason_code": code, "file": file},
                )
            )
    return results


def applicable_reasons(entity: str) -> set[str]:
    """Reason codes ingest can give a row of this file (from the registry declaration)."""
    spec = next((f for f in FILES if f.entity == entity), None)
    if spec is None:
        return set()
    kinds = {c.kind for c in spec.columns}
    codes = {"missing_required", "duplicate_id"}
    if "date" in kinds:
        codes |= {"bad_date", "future_date"}
    if "code" in kinds:
        codes.add("unknown_code")
    if kinds & {"integer", "number"}:
        codes |= {"not_a_number", "out_of_range"}
    if spec.parent:
        codes.add("orphan")
    if spec.date_order or entity == "patients":
        codes.add("impossible_date")
    return codes


def _plain(value) -> str:
    """dbt enums print as 'TestStatus.Pass' or 'pass' depending on version: keep the word."""
    return str(value).rsplit(".", 1)[-1].lower()


def dbt_category(name: str, tags: Iterable[str] = ()) -> str:
    """A dbt test's category: an explicit tag wins, else the kind of generic test."""
    for tag in tags:
        if tag in CATEGORIES:
            return tag
    if name.startswith("not_null"):
        return "completeness"
    if name.startswith(
        ("unique", "accepted_values", "relationships", "assert_marts_carry", "dbt_utils")
    ):
        return "conformance"
    return "plausibility"


def dbt_results(results: Iterable[dict]) -> list[CheckResult]:
    """dbt data tests (and any failed node) from transform.DbtSummary.results.

    Severity: a dict's 'severity' (node.config.severity) when present, else 'warn' for a
    test that warned and 'fatal' otherwise (dbt's default severity is error). Optional keys
    'tags' (a category tag wins) and 'attached_node' (the tested model) are used when given.
    """
    out = []
    for res in results:
        kind = _plain(res.get("resource_type", ""))
        status = _plain(res.get("status", ""))
        if kind != "test" and status not in ("error", "fail"):
            continue  # models, unit tests of the SQL logic and exposures are not data checks
        severity = _plain(res.get("severity") or ("warn" if status == "warn" else "error"))
        mapped = {
            "pass": "passed",
            "success": "passed",
            "warn": "failed",
            "fail": "failed",
            "error": "error",
            "skipped": "not_applicable",
            "no-op": "not_applicable",
        }.get(status, "error")
        failures = res.get("failures")
        out.append(
            CheckResult(
                check_name=f"dbt:{res['name']}",
                tool="dbt",
                category=dbt_category(str(res["name"]), res.get("tags") or ()),
                severity="warn" if severity == "warn" else "fatal",
                threshold=0.0,
                failing_rows=int(failures) if failures is not None else None,
                status=mapped,
                target=str(res.get("attached_node") or res.get("relation") or ""),
                details={"message": str(res.get("message") or "")[:500], "resource_type": kind},
            )
        )
    return out


FRESHNESS_CHECK = "dbt:source_freshness:"


def freshness_results(freshness: Iterable) -> list[CheckResult]:
    """One check per registry file from `dbt source freshness` (transform.SourceFreshness).

    Past the warning threshold the check warns; past the error threshold it is fatal (the
    night fails); a file with no rows yet is not applicable; a query that failed warns (it
    says nothing about the registry). Category completeness: the nightly rows are missing.
    """
    out = []
    for f in freshness:
        status = {
            "pass": "passed",
            "warn": "failed",
            "error": "failed",
            "no rows": "not_applicable",
        }
        limits = ", ".join(
            f"{word} after {hours} h"
            for word, hours in (("warn", f.warn_after), ("error", f.error_after))
            if hours
        )
        if f.status == "no rows":
            summary = "no rows loaded yet"
        elif f.age_hours is None:
            summary = f"could not run: {f.message}"
        else:
            summary = f"newest row loaded {age_text(f.age_hours)} ago ({limits or 'no threshold'})"
        out.append(
            CheckResult(
                check_name=FRESHNESS_CHECK + f.source,
                tool="dbt",
                category="completeness",
                severity="fatal" if f.status == "error" else "warn",
                threshold=None,
                status=status.get(f.status, "error"),
                target=f"source.{f.source}",
                details={
                    "summary": summary,
                    "age_hours": f.age_hours,
                    "loaded_at": f.loaded_at,
                    "warn_after_hours": f.warn_after,
                    "error_after_hours": f.error_after,
                    "freshness": f.status,
                },
            )
        )
    return out


def freshness_status(results: Iterable[CheckResult]) -> dict | None:
    """The night's source freshness for the summary and metrics.json: the overall kind, the
    thresholds, and each file's age (results of freshness_results, as record() kept them)."""
    mine = [r for r in results if r.check_name.startswith(FRESHNESS_CHECK)]
    if not mine:
        return None
    kinds = [kind(r.status, r.severity) for r in mine]
    overall = next((k for k in ("failed", "warned", "passed") if k in kinds), "not applicable")
    return {
        "status": overall,
        "warn_after_hours": mine[0].details.get("warn_after_hours"),
        "error_after_hours": mine[0].details.get("error_after_hours"),
        "sources": [
            {
                "source": r.check_name.removeprefix(FRESHNESS_CHECK),
                "kind": k,
                "age_hours": r.details.get("age_hours"),
                "loaded_at": r.details.get("loaded_at"),
                "summary": r.details.get("summary"),
            }
            for r, k in zip(mine, kinds, strict=True)
        ],
    }


@dataclass(frozen=True)
class QualityStatus:
    """How the night's checks came out: what the quality stage hands on (run summary, report,
    metrics.json), computed from the recorded results, not read back."""

    status: str  # passed / warned / failed
    checks: int
    counts: dict[str, int]  # by recorded status (STATUSES)
    kinds: dict[str, int]  # by the words people read (KINDS)
    fatal: list[str]
    warnings: list[str]
    not_passed: list[dict]  # failed first, then warned: check, tool, kind, failing, tolerated
    freshness: dict | None = None  # freshness_status of the registry's files, when checked

    def as_dict(self) -> dict:
        return {
            "status": self.status,
            "checks": self.checks,
            **self.counts,
            "kinds": dict(self.kinds),
            "fatal": list(self.fatal),
            "warnings": list(self.warnings),
            "not_passed": [dict(r) for r in self.not_passed],
            "freshness": self.freshness,
        }


def run_status(results: Iterable[CheckResult]) -> QualityStatus:
    """Counts per status and kind, fatal failures and warnings, of results as record() kept
    them (known exceptions already downgraded to warn)."""
    rows = sorted(results, key=lambda r: (r.tool, r.check_name))
    counts = {s: 0 for s in STATUSES}
    kinds = {k: 0 for k in KINDS}
    fatal, warnings, failed_rows, warned_rows = [], [], [], []
    for r in rows:
        counts[r.status] += 1
        kinds[kind(r.status, r.severity)] += 1
        if r.status not in ("failed", "error"):
            continue
        line = _describe(
            r.check_name, r.tool, r.status, r.failing_rows, r.checked_rows, r.threshold
        )
        if r.details.get("summary"):  # a check not about rows says how it failed
            line = f"{r.check_name} ({r.tool}): {r.details['summary']}"
        if r.known_exception:
            line += f" [known exception: {r.known_exception}]"
        (fatal if r.severity == "fatal" else warnings).append(line)
        (failed_rows if r.severity == "fatal" else warned_rows).append(_not_passed(r))
    overall = "failed" if fatal else "warned" if warnings else "passed"
    return QualityStatus(
        overall,
        len(rows),
        counts,
        kinds,
        fatal,
        warnings,
        failed_rows + warned_rows,
        freshness_status(rows),
    )


def _not_passed(r: CheckResult) -> dict:
    """A check that did not pass, as one row of a table (the Prefect artifact)."""
    could_not_run = r.status == "error" or r.failing_rows is None
    tolerated = f"{r.threshold:.1%}" if r.threshold else "0%"
    failing = "could not run" if could_not_run else r.failing_rows
    if r.details.get("summary") and r.status != "error":  # not about rows (source freshness)
        failing, tolerated = r.details["summary"], ""
    return {
        "check": r.check_name + (" (known exception)" if r.known_exception else ""),
        "tool": r.tool,
        "kind": kind(r.status, r.severity),
        "failing rows": failing,
        "tolerated share": "" if could_not_run else tolerated,
    }


def _describe(name, tool, status, failing, checked, threshold) -> str:
    if status == "error":
        return f"{name} ({tool}): could not run"
    if failing is None:
        return f"{name} ({tool}) failed"
    rows = f"{failing} of {checked} rows" if checked else f"{failing} rows"
    limit = f", tolerated {threshold:.1%}" if threshold else ""
    return f"{name} ({tool}): {rows} failing{limit}"


def raise_for_fatal(status: QualityStatus) -> None:
    """One line naming the first fatal check (and how many more) for the run's error."""
    fatal = status.fatal
    if fatal:
        more = f" (and {len(fatal) - 1} more fatal)" if len(fatal) > 1 else ""
        raise DataQualityError(f"data quality check failed: {fatal[0]}{more}")


def summarize(results: Iterable[CheckResult]) -> QualityStatus:
    """run_status, raising DataQualityError when a fatal check failed."""
    status = run_status(results)
    raise_for_fatal(status)
    return status
