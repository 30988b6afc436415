"""Outcomes and data quality across nights: audit.night_metrics and out/trends.html.

Each published night appends one row to audit.night_metrics in the store (its key outcomes as
k, n and exact 95% CI, and how its checks came out), and the analysts' file carries a copy. The
trend page is drawn from that history and audit.check_results alone: it never reads an old
night's files, so it shows what the warehouse says.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path

import duckdb
from markupsafe import Markup

from cryoreg.quality.checks import KINDS, kind
from cryoreg.report import figures
from cryoreg.report.html import _environment
from cryoreg.report.text import check_counts

TABLE = "audit.night_metrics"
# (column prefix, label, block of metrics.json, group in that block)
KEY_OUTCOMES = (
    ("ts", "Technical success", "technical_success", "all"),
    ("te", "Technique efficacy", "technique_efficacy", "all"),
    ("ltp", "Local tumor progression", "local_tumor_progression", "all"),
    ("ae_any", "Any adverse event (30 days)", "adverse_events", "any"),
    ("ae_major", "Major adverse event (30 days)", "adverse_events", "major"),
)
CHECK_COLUMNS = {k: "checks_" + k.replace(" ", "_") for k in KINDS}
COLORS = ("#1f5fa8", "#2b8a3e", "#c0392b", "#8e44ad", "#d68910")


def ensure_table(con: duckdb.DuckDBPyConnection) -> None:
    """Create audit.night_metrics on first use: one row per published night, never rewritten.
    Times are UTC."""
    outcomes = ", ".join(
        f"{p}_k bigint, {p}_n bigint, {p}_ci_low double, {p}_ci_high double"
        for p, *_ in KEY_OUTCOMES
    )
    checks = ", ".join(f"{c} bigint" for c in CHECK_COLUMNS.values())
    con.execute("create schema if not exists audit")
    con.execute(
        f"""create table if not exists {TABLE} (
            run_id varchar not null, started_at timestamp not null,
            published_at timestamp not null, extracts_loaded varchar[], code_version varchar,
            {outcomes}, data_quality varchar, {checks})"""
    )


def _utc(moment: datetime) -> datetime:
    """A naive UTC time, as DuckDB's timestamp columns hold it."""
    return moment.astimezone(UTC).replace(tzinfo=None)


def night_row(metrics: dict, started: datetime, published: datetime) -> dict:
    """The night's row of audit.night_metrics, from its metrics.json content: counts, rates and
    check outcomes only (nothing that identifies a patient)."""
    run = metrics.get("run") or {}
    row = {
        "run_id": str(run["run_id"]),
        "started_at": _utc(started),
        "published_at": _utc(published),
        "extracts_loaded": [x["name"] for x in run.get("extracts") or [] if x["loaded_this_run"]],
        "code_version": run.get("code_version"),
    }
    for prefix, _, block, group in KEY_OUTCOMES:
        p = metrics[block][group]
        low, high = p.get("ci95") or (None, None)
        row |= {f"{prefix}_k": p["k"], f"{prefix}_n": p["n"]}
        row |= {f"{prefix}_ci_low": low, f"{prefix}_ci_high": high}
    quality = run.get("data_quality") or {}
    row["data_quality"] = quality.get("status")
    kinds = quality.get("kinds") or {}
    row |= {column: kinds.get(k, 0) for k, column in CHECK_COLUMNS.items()}
    return row


def append(con: duckdb.DuckDBPyConnection, row: dict) -> None:
    """Add one night's row (creating the table on first use)."""
    ensure_table(con)
    columns = ", ".join(row)
    marks = ", ".join("?" for _ in row)
    con.execute(f"insert into {TABLE} ({columns}) values ({marks})", list(row.values()))


def history(con: duckdb.DuckDBPyConnection) -> list[dict]:
    """Every published night's row, oldest first."""
    cursor = con.execute(f"select * from {TABLE} order by published_at, run_id")
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def check_history(con: duckdb.DuckDBPyConnection) -> dict[str, dict[str, int]]:
    """Per published night (run id), its checks in audit.check_results counted by kind; a
    failed night's checks are left out (it published nothing)."""
    rows = con.execute(
        f"""select run_id, status, severity, count(*) from audit.check_results
        where run_id in (select run_id from {TABLE}) group by all"""
    ).fetchall()
    counts: dict[str, dict[str, int]] = {}
    for run_id, status, severity, n in rows:
        night = counts.setdefault(run_id, dict.fromkeys(KINDS, 0))
        night[kind(status, severity)] += n
    return counts


def folder(night: dict) -> str:
    """The night's folder under out/nights/: its start date (UTC) and the run id's first 8."""
    return f"{night['started_at']:%Y-%m-%d}-{night['run_id'][:8]}"


def outcome(night: dict, prefix: str) -> dict:
    """One key outcome of a night: k, n, percent (None without a denominator) and its CI."""
    k, n = night[f"{prefix}_k"], night[f"{prefix}_n"]
    ci = (night[f"{prefix}_ci_low"], night[f"{prefix}_ci_high"])
    return {"k": k, "n": n, "pct": 100 * k / n if n else None, "ci": ci}


def check_text(night: dict) -> str:
    """A night's checks by kind, in the words of the report and the run summary."""
    return check_counts({k: night[column] for k, column in CHECK_COLUMNS.items()})


def chart_svg(nights: list[dict]) -> str | None:
    """Each key outcome's rate per night with its 95% CI as error bars, nights in order.

    Each outcome's points are one group with the id `trend-<prefix>`, so they can be found.
    """
    if not nights:
        return None
    import matplotlib
    from matplotlib.figure import Figure

    x = list(range(len(nights)))
    with matplotlib.rc_context(figures.FIGURE_STYLE):
        fig = Figure(figsize=(11, 4.6))
        ax = fig.add_subplot()
        fig.subplots_adjust(bottom=0.3)  # room for the slanted night labels above the source
        for (prefix, label, *_), color in zip(KEY_OUTCOMES, COLORS, strict=True):
            points = [outcome(night, prefix) for night in nights]
            y = [math.nan if p["pct"] is None else p["pct"] for p in points]
            low = [0.0 if p["pct"] is None else p["pct"] - 100 * p["ci"][0] for p in points]
            high = [0.0 if p["pct"] is None else 100 * p["ci"][1] - p["pct"] for p in points]
            drawn = ax.errorbar(
                x, y, yerr=[low, high], color=color, marker="o", ms=4, lw=1.2, capsize=3,
                label=label,
            )  # fmt: skip
            drawn.lines[0].set_gid(f"trend-{prefix}")
        step = max(1, math.ceil(len(nights) / 12))
        ax.set_xticks(x[::step], [folder(n) for n in nights][::step], rotation=30, ha="right")
        ax.set_xlim(-0.5, len(nights) - 0.5)
        ax.set(ylim=(0, 100), ylabel="% (95% CI, exact)", title="Key outcomes by night")
        ax.grid(alpha=0.3, lw=0.5)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)
        return figures._svg_text(fig, f"{TABLE} (k, n, ci_low, ci_high per outcome)")


def render(nights: list[dict], checks: dict[str, dict[str, int]], chart: Markup | None) -> str:
    """The trend page: the chart, the outcomes per night, the checks per night."""
    return (
        _environment()
        .get_template("trends.html")
        .render(
            nights=nights,
            outcomes=KEY_OUTCOMES,
            outcome=outcome,
            folder=folder,
            checks=checks,
            kinds=KINDS,
            chart=chart,
            table=TABLE,
        )
    )


def write_page(con: duckdb.DuckDBPyConnection, out_dir: Path) -> Path:
    """out_dir/trends.html, self-contained, from the warehouse's history of published nights."""
    nights = history(con)
    svg = chart_svg(nights)
    chart = svg and figures.inline(svg, "trend-figure", "Key outcomes by night with 95% CIs")
    path = out_dir / "trends.html"
    path.write_text(render(nights, check_history(con), chart), encoding="utf-8")
    return path
