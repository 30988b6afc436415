"""The Data Docs site made fit for a hospital network: an index of the night's suites, and
every page rewritten to render offline (no CDN stylesheets, scripts or images)."""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import TYPE_CHECKING

from cryoreg.quality import checks as quality
from cryoreg.quality.checks import CheckResult

if TYPE_CHECKING:
    from cryoreg.quality.expectations import Suite


def _link(site: Path, pattern: str) -> str | None:
    found = sorted(site.glob(pattern))
    return found[-1].relative_to(site).as_posix() if found else None


def index_page(
    site: Path, suites: list[Suite], results: list[CheckResult], run_id: str, exceptions: dict
) -> str:
    """A static index (GE's own index draws its tables with CDN scripts)."""
    esc = html.escape
    rows, problems = [], []
    for suite in suites:
        mine = [r for r in results if r.target == suite.target]
        count = {s: sum(r.status == s for r in mine) for s in quality.STATUSES}
        fatal = sum(
            r.status in ("failed", "error")
            and r.severity == "fatal"
            and not quality.active_exception(exceptions, r.check_name)
            for r in mine
        )
        status = (
            "not applicable"
            if count["not_applicable"] == len(mine)
            else "failed"
            if fatal
            else "warn"
            if count["failed"] + count["error"]
            else "passed"
        )
        path = suite.target.replace(".", "/")
        validation = _link(site, f"validations/{path}/**/*.html")
        expectations = _link(site, f"expectations/{path}.html")
        links = " ".join(
            f'<a href="{esc(href)}">{label}</a>'
            for href, label in ((validation, "result"), (expectations, "suite"))
            if href
        )
        rows.append(
            f"<tr><td>{esc(suite.target)}</td><td class='{status.split()[0]}'>{status}</td>"
            f"<td>{len(mine)}</td><td>{count['passed']}</td>"
            f"<td>{count['failed'] + count['error']}</td><td>{count['not_applicable']}</td>"
            f"<td>{links}</td></tr>"
        )
        for r in mine:
            if r.status == "passed":
                continue
            known = quality.active_exception(exceptions, r.check_name)
            severity = f"warn (known exception: {esc(known.reason)})" if known else r.severity
            failing = "" if r.failing_rows is None else f"{r.failing_rows} of {r.checked_rows}"
            threshold = "" if r.threshold is None else f"{r.threshold:.1%}"
            note = r.details.get("reason") or r.details.get("message") or ""
            problems.append(
                f"<tr><td>{esc(r.check_name)}</td><td>{r.status}</td><td>{severity}</td>"
                f"<td>{r.category}</td><td>{failing}</td><td>{threshold}</td>"
                f"<td>{esc(str(note))}</td></tr>"
            )
    problem_table = (
        "<table><thead><tr><th>check</th><th>status</th><th>severity</th><th>category</th>"
        "<th>failing rows</th><th>tolerated</th><th>note</th></tr></thead><tbody>"
        + "".join(problems)
        + "</tbody></table>"
        if problems
        else "<p>Every expectation passed.</p>"
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>cryoreg Data Docs</title>
<style>{OFFLINE_CSS}
td.passed{{color:#2b8a3e}}td.failed{{color:#c92a2a;font-weight:600}}td.warn{{color:#b35c00}}
</style></head>
<body><div class="container">
<h1>Data quality: Great Expectations</h1>
<p>Run <code>{esc(run_id)}</code>. Suites are the reviewed files in <code>expectations/</code>;
marts are validated whole, raw files only for the rows this run loaded (de-identified).
Every check of the run (pandera, dbt, ingest too) is in <code>audit.check_results</code>.</p>
<table><thead><tr><th>target</th><th>status</th><th>expectations</th><th>passed</th>
<th>failed</th><th>not applicable</th><th>details</th></tr></thead>
<tbody>{"".join(rows)}</tbody></table>
<h2>Checks that did not pass</h2>
{problem_table}
</div></body></html>
"""


# ---------------------------------------------------------------- offline Data Docs

_REMOTE = r"""(?:https?:)?//[^"'\s>)]+"""
_REMOTE_TAGS = [
    re.compile(rf"""<link\b[^>]*href=["']{_REMOTE}["'][^>]*/?>""", re.I),
    re.compile(rf"""<script\b[^>]*src=["']{_REMOTE}["'][^>]*>\s*</script>""", re.I),
    re.compile(rf"""<img\b[^>]*src=["']{_REMOTE}["'][^>]*/?>""", re.I),
]
_SCRIPTS = re.compile(r"<script\b[^>]*>.*?</script>", re.I | re.S)
_FORMS = re.compile(r"<form\b[^>]*>.*?</form>|<footer\b[^>]*>.*?</footer>", re.I | re.S)
_REMOTE_ATTR = re.compile(rf"""\s(?:href|src|action)=["']{_REMOTE}["']""", re.I)
_REMOTE_CSS_URL = re.compile(rf"""url\(\s*["']?{_REMOTE}["']?\s*\)""", re.I)
_URL_TEXT = re.compile(r"https?://[^\s\"'<>)]+", re.I)

OFFLINE_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,Arial,sans-serif;color:#212529;
margin:0;background:#fff}
a{color:#0b5cad}.container,.container-fluid{padding:16px 24px;box-sizing:border-box}
.row{display:flex;flex-wrap:wrap;margin:0 -8px}[class*="col-"]{padding:0 8px;box-sizing:border-box;
flex:1 1 100%}
@media (min-width:768px){.col-md-2{flex:0 0 18%;max-width:18%}.col-md-10{flex:0 0 82%;
max-width:82%}.col-md-4{flex:0 0 33%}.col-md-6{flex:0 0 50%}.col-md-8{flex:0 0 66%}}
.navbar{display:flex;align-items:center;gap:16px;padding:8px 24px;border-bottom:1px solid #dee2e6;
background:#f8f9fa}.navbar-brand{font-weight:600}.nav,.breadcrumb{list-style:none;padding:0;
margin:0;display:flex;gap:12px;flex-wrap:wrap}
.sticky{position:sticky;top:8px}.d-none{display:none}.collapse,.fade,.tab-pane{display:block;
opacity:1}
table,.table{border-collapse:collapse;width:100%;margin:8px 0}th,td{border:1px solid #dee2e6;
padding:4px 8px;text-align:left;vertical-align:top}thead th{background:#f1f3f5}
.card{border:1px solid #dee2e6;border-radius:6px;margin:12px 0}.card-header{padding:8px 12px;
background:#f8f9fa;border-bottom:1px solid #dee2e6;font-weight:600}.card-body{padding:8px 12px}
.alert{padding:8px 12px;border-radius:4px;margin:8px 0}.alert-secondary{background:#eef0f2}
.badge{display:inline-block;padding:1px 6px;border-radius:8px;background:#6c757d;color:#fff;
font-size:12px}.badge-danger{background:#c92a2a}.badge-success{background:#2b8a3e}
.badge-info{background:#1971c2}
.btn{display:inline-block;padding:3px 10px;border:1px solid #adb5bd;border-radius:4px;
text-decoration:none;color:#212529;background:#f8f9fa}
.text-danger{color:#c92a2a}.text-success{color:#2b8a3e}.ge-section{margin-bottom:24px}
.cooltip .top{display:none}.cooltip:hover .top{display:block}
.fas,.fa{font-style:normal;font-weight:700}.fa-check-circle::before{content:"\\2714";
color:#2b8a3e}.fa-times::before{content:"\\2718";color:#c92a2a}
.fa-question-circle::before{content:"?"}.fa-exclamation-triangle::before{content:"!"}
"""


def make_offline(folder: Path) -> None:
    """Strip CDN assets and remote links from Data Docs; add a small inline stylesheet.

    Pages become static HTML (no script needed): collapsed sections are shown open.
    """
    style = f"<style>{OFFLINE_CSS}</style>"
    for page in folder.rglob("*.html"):
        html = page.read_text(encoding="utf-8")
        for pattern in _REMOTE_TAGS:
            html = pattern.sub("", html)
        html = _SCRIPTS.sub("", html)
        html = _FORMS.sub("", html)
        html = _REMOTE_ATTR.sub("", html)
        html = _URL_TEXT.sub("", html)
        html = html.replace("</head>", f"{style}</head>", 1)
        page.write_text(html, encoding="utf-8")
    for sheet in folder.rglob("*.css"):
        css = sheet.read_text(encoding="utf-8")
        sheet.write_text(_URL_TEXT.sub("", _REMOTE_CSS_URL.sub("none", css)), encoding="utf-8")
    for image in folder.rglob("*.svg"):
        svg = image.read_text(encoding="utf-8")
        image.write_text(re.sub(r"<a\b[^>]*>|</a>", "", svg), encoding="utf-8")


def remote_references(folder: Path) -> list[str]:
    """Every http(s) or protocol-relative asset or link left in Data Docs pages and styles."""
    found = []
    pattern = re.compile(r"""(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}""", re.I)
    for path in [*folder.rglob("*.html"), *folder.rglob("*.css")]:
        text = path.read_text(encoding="utf-8")
        found += [f"{path.relative_to(folder)}: {m}" for m in pattern.findall(text)]
    return found
