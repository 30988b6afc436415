"""The run summary printed at the end of `cryoreg run`: accounting, key metrics, outputs."""

from __future__ import annotations

from cryoreg.report.text import check_counts, p_text, proportion_text


def render(result: dict, seconds: float) -> str:
    metrics = result["metrics"]
    lines = ["", "cryoreg run summary", "=" * 19, ""]
    if result.get("nothing_new"):
        lines += [
            "nothing new: every extract folder is loaded already and the code is unchanged;",
            f"the published warehouse stays as it is ({result['warehouse']})",
            f"finished in {seconds:.1f} s",
        ]
        return "\n".join(lines)
    files = metrics.get("run", {}).get("files", [])
    if files:
        lines.append(f"{'file':<34}{'read':>10}{'loaded':>10}{'quarantined':>13}")
        for f in files:
            lines.append(f"{f['file']:<34}{f['read']:>10}{f['loaded']:>10}{f['quarantined']:>13}")
    else:
        lines.append("no new extract folder: nothing loaded (re-run of a loaded night)")
    lines += [f"note: {w}" for w in metrics.get("run", {}).get("warnings", [])]
    cohort = metrics["cohort"]
    te, ltp, ae = (
        metrics["technique_efficacy"],
        metrics["local_tumor_progression"],
        metrics["adverse_events"],
    )
    lines += [
        "",
        f"patients {cohort['patients']}, procedures {cohort['procedures']}, "
        f"tumors {cohort['tumors']}",
        f"technical success      {proportion_text(metrics['technical_success']['all'])}",
        f"technique efficacy     {proportion_text(te['all'])}",
        f"  <4 cm / >=4 cm       {proportion_text(te['lt4cm'])} / {proportion_text(te['ge4cm'])}, "
        f"p {p_text(te.get('p_chi2'))}",
        f"local progression      {proportion_text(ltp['all'])}",
        f"  <4 cm / >=4 cm       {proportion_text(ltp['lt4cm'])} / "
        f"{proportion_text(ltp['ge4cm'])}, "
        f"p {p_text(ltp.get('p_chi2'))}",
        f"any / major AE         {proportion_text(ae['any'])} / {proportion_text(ae['major'])}",
        f"log-rank (LTP-free)    p {p_text(metrics['ltp_free_survival'].get('logrank_p'))}",
        "",
        data_quality_line(metrics.get("run", {}).get("data_quality")),
        f"warehouse  {result['warehouse']}",
    ]
    lines += [f"output     {p}" for p in result["published"]]
    lines.append(f"finished in {seconds:.1f} s")
    return "\n".join(lines)


def data_quality_line(status: dict | None) -> str:
    if not status:
        return "data quality: not checked"
    line = (
        f"data quality: {status['status']} ({status['checks']} checks: "
        f"{check_counts(status['kinds'])}); see audit.check_results"
    )
    return "\n".join([line, *(f"  warned: {w}" for w in status["warnings"])])
