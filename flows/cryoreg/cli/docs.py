"""`cryoreg docs`: the dbt documentation and lineage site of the published warehouse.

dbt's catalog needs a database connection, and dbt-duckdb opens its file read-write: the site is
therefore generated against a temporary copy, so the published warehouse is never locked or
touched. The site is dbt's own single-page app; with `--static` dbt embeds the manifest and the
catalog into one index.html, which works offline and from file:// (the plain index.html fetches
manifest.json with XHR, which browsers refuse on file://).
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import os
import shutil
import tempfile
from pathlib import Path

from cryoreg import config

SITE_FILES = ("manifest.json", "catalog.json")


PAGES = (
    ("report", "report.html"),
    ("trends", "trends.html"),
    ("nights", "nights/index.html"),
    ("data docs", "data_docs/index.html"),
    ("dbt docs", "dbt_docs/index.html"),
)


class DocsError(RuntimeError):
    """The docs site could not be generated."""


def generate_docs(warehouse: Path, out_dir: Path) -> Path:
    """Generate the dbt docs site of `warehouse` into out_dir/dbt_docs; returns that folder.

    The folder holds index.html (self-contained: manifest and catalog embedded) beside
    manifest.json and catalog.json for tools. No pseudonym key is needed or used: docs compile
    the models but never run the HMAC, and no key can end up in the site.
    """
    warehouse = Path(warehouse)
    if not warehouse.is_file():
        raise DocsError(f"no warehouse at {warehouse}: run `cryoreg run` first")
    site = Path(out_dir) / "dbt_docs"
    with tempfile.TemporaryDirectory(prefix="cryoreg-docs-") as tmp:
        work = Path(tmp)
        copy = work / "cryoreg.duckdb"
        shutil.copyfile(warehouse, copy)
        target = work / "target"
        _dbt_docs_generate(copy, target, work / "logs")
        staged = work / "site"
        staged.mkdir()
        shutil.copyfile(target / "static_index.html", staged / "index.html")
        for name in SITE_FILES:
            shutil.copyfile(target / name, staged / name)
        if site.exists():
            shutil.rmtree(site)
        site.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(staged, site)
    return site


def _dbt_docs_generate(warehouse: Path, target: Path, logs: Path) -> None:
    from dbt.cli.main import dbtRunner

    from cryoreg.transform.dbt import _release_duckdb

    project = str(config.project_folder("dbt_project"))
    saved = {k: os.environ.get(k) for k in ("CRYOREG_WAREHOUSE_PATH", "CRYOREG_PSEUDONYM_KEY")}
    os.environ["CRYOREG_WAREHOUSE_PATH"] = str(warehouse)
    os.environ["CRYOREG_PSEUDONYM_KEY"] = ""  # never needed for docs; keeps it out of the site
    args = [
        "docs",
        "generate",
        "--static",
        "--project-dir",
        project,
        "--profiles-dir",
        project,
        "--target-path",
        str(target),
        "--log-path",
        str(logs),
        "--quiet",
    ]
    try:
        outcome = dbtRunner().invoke(args)
    finally:
        _release_duckdb()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    if not outcome.success or not (target / "static_index.html").is_file():
        reason = outcome.exception or "see the dbt log"
        raise DocsError(f"dbt docs generate failed: {str(reason).strip().splitlines()[0]}")


def docs_server(site: Path, port: int = 8080, host: str = "127.0.0.1") -> http.server.HTTPServer:
    """An HTTP server of the site folder, bound to the loopback interface only.

    port 0 picks a free port (server.server_address tells which).
    """
    handler = functools.partial(_QuietHandler, directory=str(site))
    return http.server.ThreadingHTTPServer((host, port), handler)


def serve_docs(out_dir: Path, port: int = 8080) -> None:
    """Serve the outputs folder (the report, the nights, the Data Docs and the dbt docs) on
    127.0.0.1 until interrupted (Ctrl-C): a browser opens them over HTTP, the way the report
    link of a Prefect run does with CRYOREG_REPORT_BASE_URL."""
    with docs_server(out_dir, port) as server:
        host, bound = server.server_address[:2]
        base = f"http://{host}:{bound}"
        print(f"serving {out_dir}/ on {base}/ (Ctrl-C to stop):", flush=True)
        for label, page in PAGES:
            if (out_dir / page).exists():
                print(f"  {label:<10} {base}/{page}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            server.serve_forever()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the standard library's name
        """No per-request lines on stderr: the command's output stays the site's address."""
