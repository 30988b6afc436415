"""Prefect artifacts: what the Prefect UI shows for each run (metrics, row accounting, the
night's data quality, links)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact

from cryoreg.report.text import check_counts, p_text, proportion_text

ROWS = [
    ("technical success", "technical_success", "all"),
    ("technique efficacy", "technique_efficacy", "all"),
    ("technique efficacy < 4 cm", "technique_efficacy", "lt4cm"),
    ("technique efficacy >= 4 cm", "technique_efficacy", "ge4cm"),
    ("local tumor progression", "local_tumor_progression", "all"),
    ("LTP < 4 cm", "local_tumor_progression", "lt4cm"),
    ("LTP >= 4 cm", "local_tumor_progression", "ge4cm"),
    ("any adverse event", "adverse_events", "any"),
    ("major adverse event", "adverse_events", "major"),
]
log = logging.getLogger(__name__)


def metrics_markdown(metrics: dict) -> str:
    lines = ["| outcome | this run | p (chi-square) |", "|---|---|---|"]
    for label, block, key in ROWS:
        p = p_text(metrics[block].get("p_chi2")) if key == "lt4cm" else ""
        lines.append(f"| {label} | {proportion_text(metrics[block][key])} | {p} |")
    logrank = metrics["ltp_free_survival"].get("logrank_p")
    lines.append(f"| LTP-free survival, log-rank <4 vs >=4 cm | | {p_text(logrank)} |")
    return "\n".join(lines)


def quality_rows(metrics: dict) -> list[dict]:
    """The night's checks that did not pass: failed (fatal) first, then warned."""
    status = metrics.get("run", {}).get("data_quality") or {}
    return list(status.get("not_passed") or [])


def quality_markdown(metrics: dict) -> str | None:
    """The night's data-quality status and its checks counted by kind, in the report's words."""
    status = metrics.get("run", {}).get("data_quality")
    if not status:
        return None
    counts = check_counts(status.get("kinds") or {})
    return f"Data quality: **{status.get('status')}** ({counts}); see audit.check_results"


def report_link(out: Path, night: str | None = None) -> str:
    """Where the Prefect UI's link to the report points: CRYOREG_REPORT_BASE_URL (the outputs
    folder served over HTTP, e.g. by `cryoreg docs --serve`) when set, since browsers do not
    open file:// links from a web page; else the file itself. With a night (its folder under
    nights/), that night's kept report, which later nights leave as it is."""
    page = f"nights/{night}/report.html" if night else "report.html"
    base = os.environ.get("CRYOREG_REPORT_BASE_URL", "").strip()
    if base:
        return f"{base.rstrip('/')}/{page}"
    return f"{out.resolve().as_uri()}/{page}"


def _attach(create, *args, **kwargs) -> None:
    """An artifact is a convenience for the UI: failing to attach one never fails the run."""
    try:
        create(*args, **kwargs)
    except Exception as exc:
        log.warning("cryoreg: artifact %s not attached: %s", kwargs.get("key"), exc)


def publish_run_artifacts(metrics: dict, out: Path) -> None:
    """Attach the run's results to the flow run; never fails the run."""
    _attach(
        create_markdown_artifact,
        metrics_markdown(metrics),
        key="cryoreg-metrics",
        description="Glazer 2017 outcomes",
    )
    files = metrics.get("run", {}).get("files", [])
    if files:
        _attach(
            create_table_artifact,
            [{k: f[k] for k in ("file", "read", "loaded", "quarantined")} for f in files],
            key="cryoreg-row-accounting",
            description="rows read = loaded + quarantined, per extract file",
        )
    quality = quality_markdown(metrics)
    if quality:
        _attach(
            create_markdown_artifact,
            quality,
            key="cryoreg-data-quality",
            description="the night's checks by kind",
        )
    not_passed = quality_rows(metrics)
    if not_passed:
        _attach(
            create_table_artifact,
            not_passed,
            key="cryoreg-checks-not-passed",
            description="the night's checks that warned or failed (audit.check_results)",
        )
    _attach(
        create_link_artifact,
        report_link(out),
        link_text="report.html",
        key="cryoreg-report",
    )
