"""What people see, in a real browser: the report, the trend page, the nights index, the Data
Docs and the dbt lineage site in headless Chromium.

Playwright drives the system's Chromium (`executable_path`), so no browser download is needed.
Every host name but 127.0.0.1 fails to resolve, so the pages are checked to work offline.
Screenshots land in the test's tmp folder. The module also scans every file under out/ for the
synthetic identifiers.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pytest

pytestmark = pytest.mark.xdist_group("paper")

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    # offline: every host name but the loopback fails to resolve
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
]


def _needs_chromium() -> None:
    if Path(CHROMIUM).is_file():
        return
    if os.environ.get("CI"):
        pytest.fail(f"chromium is not installed at {CHROMIUM} (CI must install it)")
    pytest.skip("chromium is not installed (apt-get install chromium); CI runs this test")


@dataclass
class Seen:
    """What a page did: console errors, uncaught exceptions, failed loads; every address."""

    errors: list[str] = field(default_factory=list)
    urls: list[str] = field(default_factory=list)

    def console(self, message) -> None:
        """dbt's docs app requests a few un-interpolated template URLs (`{{ getIcon(...) }}`,
        `${require(...favicon.ico)}`) before Angular fills them in: an upstream quirk that does
        not affect the page, recognisable by the encoded brace in the URL, and ignored here.
        Failed loads reach the console as errors too."""
        url = message.location.get("url", "")
        if message.type == "error" and "%7B" not in url + message.text:
            self.errors.append(f"{message.text} {url}")


# Cytoscape draws the lineage graph on canvases inside #cy: wait until enough pixels are painted.
LINEAGE_PAINTED = """least => {
  let painted = 0;
  for (const c of document.querySelectorAll('#cy canvas')) {
    if (!c.width || !c.height) continue;
    const data = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    for (let i = 3; i < data.length; i += 4) if (data[i]) painted++;
  }
  return painted > least && painted;
}"""


def _assert_visible(page, selector: str, min_children: int = 1, min_px: int = 100) -> str:
    """The element is shown, at least min_px wide and high, with content; returns its tag."""
    element = page.locator(selector)
    assert element.count(), f"{selector} is missing"
    element = element.first
    assert element.is_visible(), selector
    box = element.bounding_box()
    assert box["width"] > min_px and box["height"] > min_px, (selector, box)
    children = element.locator("*").count()
    assert children >= min_children, (selector, children)
    return element.evaluate("el => el.tagName.toLowerCase()")


def _assert_offline(seen: Seen) -> None:
    local = ("file:", "data:", "about:", "http://127.0.0.1")
    remote = [u for u in seen.urls if not u.startswith(local)]
    assert not remote, remote


# --- the paper run, its report, its Data Docs and its dbt docs ---------------------------------


@pytest.fixture(scope="module")
def outputs(paper_site):
    assert (paper_site.base / "out" / "dbt_docs" / "index.html").exists()
    return paper_site.base


@pytest.fixture(scope="module")
def docs_url(outputs):
    from cryoreg.cli import docs

    server = docs.docs_server(outputs / "out" / "dbt_docs", port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/index.html"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def browser():
    _needs_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=FLAGS, timeout=60_000
        )
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    """A fresh tab (own cookies, cache and storage) of 1200 x 900 CSS pixels."""
    context = browser.new_context(viewport={"width": 1200, "height": 900}, device_scale_factor=1)
    tab = context.new_page()
    yield tab
    context.close()


@pytest.fixture
def seen(page) -> Seen:
    seen = Seen()
    page.on("console", seen.console)
    page.on("pageerror", lambda error: seen.errors.append(f"uncaught: {error}"))
    page.on("request", lambda request: seen.urls.append(request.url))
    return seen


def test_report_renders_figures_and_flowchart(outputs, page, seen, tmp_path):
    page.goto((outputs / "out" / "report.html").as_uri())
    shot = page.screenshot(path=tmp_path / "report.png", full_page=True)
    assert _assert_visible(page, "#km-figure", min_children=50) == "svg"
    assert _assert_visible(page, "#attrition-flowchart", min_children=5) == "svg"
    for selector in ("#os-figure", "#cif-figure"):
        _assert_visible(page, selector, min_children=50)
    for selector in ("#cox-table", "#cif-table", "#os-table"):
        _assert_visible(page, selector, min_children=5, min_px=40)
    text = page.inner_text("body")
    assert "Every figure of the paper is reproduced." in text
    assert "Clustered by patient" in text and "Why the two differ" in text
    assert seen.errors == []
    _assert_offline(seen)
    assert len(shot) > 50_000


def test_report_prints(outputs, page):
    page.goto((outputs / "out" / "report.html").as_uri())
    pdf = page.pdf(print_background=False)
    assert pdf.startswith(b"%PDF") and len(pdf) > 50_000


def test_data_docs_open_from_the_report_and_render_offline(outputs, page, seen, tmp_path):
    """The report links the night's Data Docs; the index lists every suite with its status,
    and every page it links to renders GE's content with the offline stylesheet."""
    page.goto((outputs / "out" / "report.html").as_uri())
    page.click("a[href='data_docs/index.html']")
    page.wait_for_load_state()
    assert page.title() == "cryoreg Data Docs"
    page.screenshot(path=tmp_path / "data_docs.png", full_page=True)
    suites = page.locator("table").first.locator("tbody tr")
    targets = suites.locator("td:first-child").all_inner_texts()
    assert {"marts.fct_tumor", "marts.dim_patient", "delta.tumors"} <= set(targets), targets
    statuses = suites.locator("td:nth-child(2)").all_inner_texts()
    assert set(statuses) <= {"passed", "warned", "failed", "not applicable"}, statuses
    passed = page.locator("td.passed").first  # the index's stylesheet: status in colour
    assert passed.evaluate("el => getComputedStyle(el).color") == "rgb(43, 138, 62)"
    _assert_visible(page, "table", min_children=5, min_px=40)
    links = page.locator("td a").evaluate_all("links => links.map(a => a.href)")
    assert len(links) >= len(targets), links  # a result page per suite, and the suites
    for link in links:
        page.goto(link)
        heading = page.locator("h4").first.inner_text()
        assert heading in ("Expectation Validation Result", "Expectation Suite"), link
        _assert_visible(page, ".ge-section", min_children=3)
        navbar = page.locator("nav.navbar").first  # GE's layout, drawn by the offline stylesheet
        assert navbar.evaluate("el => getComputedStyle(el).display") == "flex", link
    assert seen.errors == []
    _assert_offline(seen)


def _shown(page, selector: str) -> int:
    """How many elements matching selector are displayed."""
    return page.locator(selector).evaluate_all("els => els.filter(e => e.offsetParent).length")


def test_data_docs_pages_name_their_asset_and_night_and_navigate(outputs, page, seen, tmp_path):
    """A validation page names the data asset it checked and the night in its top bar; the
    table of contents jumps to a column, "Failed Only" hides the checks that passed, and the
    top bar leads home to the index, all without a script."""
    metrics = json.loads((outputs / "out" / "metrics.json").read_text())
    run = metrics["run"]
    night = f"{run['started_at'][:10]}-{run['run_id'][:8]}"  # the kept night's folder name
    assert (outputs / "out" / "nights" / night).is_dir()
    index = (outputs / "out" / "data_docs" / "index.html").as_uri()
    page.goto(index)
    row = page.locator("tbody tr", has=page.locator("td:first-child", has_text="marts.fct_tumor"))
    row.locator("a", has_text="result").click()
    page.wait_for_load_state()
    page.screenshot(path=tmp_path / "data_docs_fct_tumor.png", full_page=True)
    header = page.locator(".alert-secondary", has_text="Data asset").first.inner_text()
    assert "Data asset: fct_tumor" in header and "None" not in header, header
    crumbs = page.locator(".ge-breadcrumbs").first
    assert crumbs.is_visible()
    assert f"Validations / marts.fct_tumor / fct_tumor / {night} /" in crumbs.inner_text()
    assert page.locator(".navbar-brand a").first.inner_text().strip() == "Great Expectations"
    # the table of contents is shown and its links jump to the column's section
    toc = page.locator("#navigation a.nav-link")
    assert toc.count() > 3 and page.locator("#navigation").is_visible()
    column = toc.nth(2)
    target = column.get_attribute("href")
    column.click()
    assert page.evaluate("location.hash") == target
    top = page.locator(target).bounding_box()["y"]
    assert 0 <= top < 900, top
    # the filter: every check of this mart passed, so "Failed Only" hides them all
    passed = "tr:has(> .hide-succeeded-validation-target-child)"
    shown = _shown(page, passed)
    assert shown >= 5
    page.get_by_text("Failed Only").click()
    assert _shown(page, passed) == 0
    assert not column.is_visible()  # its column passed: its link goes too
    page.get_by_text("Show All").click()
    assert _shown(page, passed) == shown and column.is_visible()
    # home, from the top bar
    crumbs.get_by_role("link", name="Home").click()
    page.wait_for_load_state()
    assert page.url == index and page.title() == "cryoreg Data Docs"
    # a delta's page names the file's rows of the night; its suite page leads home too
    row = page.locator("tbody tr", has=page.locator("td:first-child", has_text="delta.tumors"))
    row.locator("a", has_text="result").click()
    page.wait_for_load_state()
    header = page.locator(".alert-secondary", has_text="Data asset").first.inner_text()
    assert "Data asset: tumors.csv, this night's rows" in header, header
    page.goto(index)
    row.locator("a", has_text="suite").click()
    page.wait_for_load_state()
    assert page.locator(".ge-breadcrumbs").first.is_visible()
    page.locator(".navbar-brand a").first.click()
    page.wait_for_load_state()
    assert page.url == index
    assert seen.errors == []
    _assert_offline(seen)


def test_trends_and_nights_open_from_the_report_and_link_back(outputs, page, seen, tmp_path):
    """The report links the trend page (chart and tables drawn) and the nights index, which
    links the night's kept report; each page leads back."""
    out = outputs / "out"
    page.goto((out / "report.html").as_uri())
    page.click("text=Trends across nights")
    page.wait_for_load_state()
    assert page.url == (out / "trends.html").as_uri()
    page.screenshot(path=tmp_path / "trends.png", full_page=True)
    assert _assert_visible(page, "#trend-figure", min_children=50) == "svg"
    assert page.locator("#trend-figure #trend-figure-trend-te use").count() == 1  # one night
    for selector in ("#trend-table", "#check-table"):
        _assert_visible(page, selector, min_children=5, min_px=40)
    page.click("#to-nights")
    page.wait_for_load_state()
    assert page.url == (out / "nights" / "index.html").as_uri()
    page.screenshot(path=tmp_path / "nights.png", full_page=True)
    _assert_visible(page, "#nights-table", min_children=5, min_px=40)
    rows = page.locator("#nights-table tbody tr")
    assert rows.count() == 1
    rows.first.locator("a").click()  # the night's own report, as published
    page.wait_for_load_state()
    assert page.url.endswith("/report.html") and "/nights/" in page.url
    _assert_visible(page, "#km-figure", min_children=50)
    page.click("text=Trends across nights")
    page.wait_for_load_state()
    assert page.url == (out / "trends.html").as_uri()
    page.click("#to-report")
    page.wait_for_load_state()
    assert page.url == (out / "report.html").as_uri()
    assert seen.errors == []
    _assert_offline(seen)


def test_dbt_docs_lineage_graph_renders_offline(docs_url, page, seen, tmp_path):
    page.goto(docs_url + "#!/overview?g_v=1")
    painted = page.wait_for_function(LINEAGE_PAINTED, arg=5000, timeout=60_000).json_value()
    page.screenshot(path=tmp_path / "dbt_lineage.png")
    _assert_visible(page, "#cy", min_children=1)
    assert painted > 5000, painted
    assert seen.errors == []
    _assert_offline(seen)


def test_dbt_docs_describe_the_marts(docs_url, page, seen, tmp_path):
    page.goto(docs_url + "#!/model/model.cryoreg.fct_tumor")
    page.wait_for_function("() => document.body.innerText.includes('ltp_competing_event')")
    page.screenshot(path=tmp_path / "dbt_fct_tumor.png")
    assert "One row per treated tumor" in page.inner_text("body")
    assert seen.errors == []
    _assert_offline(seen)


def test_dbt_docs_open_on_the_registry_and_its_definitions(docs_url, page, seen):
    """The site's front page explains the registry and leads to each clinical definition."""
    page.goto(docs_url)
    page.wait_for_function("() => document.body.innerText.includes('The clinical definitions')")
    assert "cryoreg: the liver cryoablation registry" in page.inner_text("body")
    page.click("text=technique efficacy study")
    page.wait_for_function(
        "() => location.hash.includes('int_tumor_technique_efficacy_study')"
        " && document.body.innerText.includes('te_study_day')"
    )
    assert seen.errors == []
    _assert_offline(seen)


# --- de-identification of everything under out/ ----------------------------------------------


def test_no_identifier_in_any_output_file(outputs):
    """Every synthetic MRN, name and birth date (and the pseudonym key) is absent from every
    file under out/: report, figures, metrics.json and the dbt docs site."""
    patients = outputs / "extracts" / "2014-12-31" / "patients.csv"
    with duckdb.connect() as con:
        rows = con.execute(
            "select patient_mrn, patient_name, birth_date "
            f"from read_csv('{patients}', all_varchar = true)"
        ).fetchall()
    secrets = {v for row in rows for v in row if v}
    secrets.add(os.environ["CRYOREG_PSEUDONYM_KEY"])  # nor the HMAC key (set by conftest)
    files = [p for p in (outputs / "out").rglob("*") if p.is_file()]
    names = {p.relative_to(outputs / "out").as_posix() for p in files}
    assert {"report.html", "metrics.json", "dbt_docs/index.html", "dbt_docs/catalog.json"} <= names
    leaks = {}
    for path in files:
        text = path.read_text(encoding="utf-8", errors="ignore")
        found = sorted(s for s in secrets if s in text)
        if found:
            leaks[path.name] = found[:5]
    assert not leaks, leaks
