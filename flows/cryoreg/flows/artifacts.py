"""Prefect artifacts: what the Prefect UI shows for each run (metrics, row accounting, links)."""

from __future__ import annotations

from pathlib import Path

from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact

from cryoreg.report.text import p_text, proportion_text

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


def metrics_markdown(metrics: dict) -> str:
    lines = ["| outcome | this run | p (chi-square) |", "|---|---|---|"]
    for label, block, key in ROWS:
        p = p_text(metrics[block].get("p_chi2")) if key == "lt4cm" else ""
        lines.append(f"| {label} | {proportion_text(metrics[block][key])} | {p} |")
    logrank = metrics["ltp_free_survival"].get("logrank_p")
    lines.append(f"| LTP-free survival, log-rank <4 vs >=4 cm | | {p_text(logrank)} |")
    return "\n".join(lines)


def publish_run_artifacts(metrics: dict, out: Path) -> None:
    """Attach the run's results to the flow run; never fails the run."""
    create_markdown_artifact(
        metrics_markdown(metrics), key="cryoreg-metrics", description="Glazer 2017 outcomes"
    )
    files = metrics.get("run", {}).get("files", [])
    if files:
        create_table_artifact(
            [{k: f[k] for k in ("file", "read", "loaded", "quarantined")} for f in files],
            key="cryoreg-row-accounting",
            description="rows read = loaded + quarantined, per extract file",
        )
    create_link_artifact(
        (out / "report.html").resolve().as_uri(), link_text="report.html", key="cryoreg-report"
    )
