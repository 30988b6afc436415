"""The outputs over HTTP: `cryoreg docs --serve` serves the whole outputs folder, so the
report, the nights, the Data Docs and the dbt docs open in a browser (and from the Prefect
UI's report link, with CRYOREG_REPORT_BASE_URL)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import urllib.request

import pytest

from conftest import CRYOREG

pytestmark = pytest.mark.xdist_group("paper")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_docs_serve_serves_every_output_page(paper_site, tmp_path):
    site = tmp_path / "site"
    shutil.copytree(paper_site.base, site, ignore=shutil.ignore_patterns("*.lock"))
    port = _free_port()
    server = subprocess.Popen(
        [*CRYOREG, "docs", "--serve", "--port", str(port)],
        cwd=site,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        lines: list[str] = []
        deadline = time.monotonic() + 180
        while not any("dbt docs " in line for line in lines) and time.monotonic() < deadline:
            lines.append(server.stdout.readline())
        base = f"http://127.0.0.1:{port}"
        for page in ("report.html", "data_docs/index.html", "dbt_docs/index.html"):
            assert any(f"{base}/{page}" in line for line in lines), (page, lines)
            with urllib.request.urlopen(f"{base}/{page}", timeout=10) as response:
                assert response.status == 200 and b"<html" in response.read(4096).lower()
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_the_report_link_uses_the_configured_base_url(tmp_path, monkeypatch):
    from cryoreg.flows import artifacts

    assert artifacts.report_link(tmp_path) == (tmp_path / "report.html").resolve().as_uri()
    monkeypatch.setenv("CRYOREG_REPORT_BASE_URL", "http://reports.example.org:8080/cryoreg/")
    assert artifacts.report_link(tmp_path) == "http://reports.example.org:8080/cryoreg/report.html"
