"""Nights people can compare: `cryoreg synth --nights 3`, run night by night, then a fourth
night that fails.

Every published night is kept under out/nights/<date>-<run>/ and listed in out/nights/index.html;
audit.night_metrics (in the published file) holds each night's key outcomes, and out/trends.html
draws them, with the checks of each night, from the warehouse alone. A failed night changes
none of it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from datetime import date, timedelta
from html.parser import HTMLParser
from pathlib import Path

import duckdb
import pytest

from cryoreg.synth import nights as synth

from conftest import run_cryoreg, write_extract

pytestmark = pytest.mark.xdist_group("trends")

NIGHTS = 3
ENV = {"CRYOREG_QUARANTINE_LIMIT": "0.25"}
# (column prefix of audit.night_metrics and the trend page, block and group of metrics.json)
OUTCOMES = {
    "ts": ("technical_success", "all"),
    "te": ("technique_efficacy", "all"),
    "ltp": ("local_tumor_progression", "all"),
    "ae_any": ("adverse_events", "any"),
    "ae_major": ("adverse_events", "major"),
}
FIGURES = (
    "km_ltp_free_survival.svg",
    "attrition_flowchart.svg",
    "overall_survival.svg",
    "ltp_cumulative_incidence.svg",
)


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under folder by relative path, with a digest of its bytes."""
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def night_metrics(path: Path) -> list[tuple]:
    with duckdb.connect(str(path), read_only=True) as con:
        return con.execute("from audit.night_metrics order by published_at").fetchall()


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """Three published nights, then a fourth whose tumors.csv lacks a required column."""
    base = tmp_path_factory.mktemp("trends")
    run_cryoreg("synth", "registry", "--nights", str(NIGHTS), "--faults", "0.01", cwd=base)
    folders = synth.extract_dates(NIGHTS)
    (base / "extracts").mkdir()
    per_night = []
    for name in folders:
        shutil.copytree(base / "registry" / name, base / "extracts" / name)
        run_cryoreg("run", cwd=base, env=ENV)
        per_night.append((base / "out" / "metrics.json").read_bytes())
    warehouse = base / "warehouse" / "cryoreg.duckdb"
    store = base / "warehouse" / "cryoreg.store.duckdb"
    before = snapshot(base / "out"), night_metrics(warehouse), night_metrics(store)
    bad = (date.fromisoformat(folders[-1]) + timedelta(days=1)).isoformat()
    write_extract(base / "extracts", bad, {"tumors.csv": "tumor_id,procedure_id\nT1,P1\n"})
    failed = run_cryoreg("run", cwd=base, env=ENV, check=False)
    after = snapshot(base / "out"), night_metrics(warehouse), night_metrics(store)
    return {
        "base": base,
        "out": base / "out",
        "metrics": [json.loads(m) for m in per_night],
        "raw_metrics": per_night,
        "failed": failed,
        "before": before,
        "after": after,
    }


class Page(HTMLParser):
    """A page's table rows (by data-run) with their cells' text (by data-outcome / data-kind),
    its links, and the markers drawn in each SVG group whose id is given."""

    def __init__(self, text: str):
        super().__init__()
        self.rows: dict[str, list[dict]] = {}
        self.links: list[str] = []
        self.markers: dict[str, int] = {}
        self._row: dict | None = None
        self._cell: str | None = None
        self._groups: list[str | None] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "tr" and "data-run" in attrs:
            self._row = {}
            self.rows.setdefault(attrs["data-run"], []).append(self._row)
        elif tag == "td" and self._row is not None:
            self._cell = attrs.get("data-outcome") or attrs.get("data-kind")
            if self._cell:
                self._row[self._cell] = ""
        elif tag == "a" and attrs.get("href"):
            self.links.append(attrs["href"])
        elif tag == "g":
            self._groups.append(attrs.get("id"))
        elif tag == "use":
            for group in filter(None, self._groups):
                self.markers[group] = self.markers.get(group, 0) + 1

    def handle_endtag(self, tag):
        if tag == "td":
            self._cell = None
        elif tag == "tr":
            self._row = None
        elif tag == "g" and self._groups:
            self._groups.pop()

    def handle_data(self, data):
        if self._row is not None and self._cell:
            self._row[self._cell] += data.strip() + " "


def read(path: Path) -> Page:
    return Page(path.read_text(encoding="utf-8"))


def proportion(p: dict) -> str:
    """How the pages print k/n with its CI (what a reader compares with metrics.json)."""
    low, high = p["ci95"]
    return f"{p['k']}/{p['n']} ({p['pct']:.1f}%) {100 * low:.1f}–{100 * high:.1f}%"


def folder_of(metrics: dict) -> str:
    run = metrics["run"]
    return f"{run['started_at'][:10]}-{run['run_id'][:8]}"


def test_each_published_night_is_kept_in_its_own_folder(site):
    out, nights = site["out"], site["metrics"]
    folders = sorted(p.name for p in (out / "nights").iterdir() if p.is_dir())
    assert folders == sorted(folder_of(m) for m in nights)
    for metrics, raw in zip(nights, site["raw_metrics"], strict=True):
        kept = out / "nights" / folder_of(metrics)
        assert (kept / "metrics.json").read_bytes() == raw  # as published that night
        for name in ("report.html", "data_docs/index.html", *FIGURES):
            assert (kept / name).stat().st_size > 0, name
        report = read(kept / "report.html")
        for link in ("../../trends.html", "../../nights/index.html", "data_docs/index.html"):
            assert link in report.links and (kept / link).resolve().is_file(), link
    assert (out / "metrics.json").read_bytes() == site["raw_metrics"][-1]  # out/ is the latest
    latest = read(out / "report.html")
    assert {"trends.html", "nights/index.html"} <= set(latest.links)
    # the nights differ: data really arrived over time
    assert nights[0]["cohort"]["tumors"] < nights[-1]["cohort"]["tumors"]


def test_the_index_lists_every_night_newest_first(site):
    out, nights = site["out"], site["metrics"]
    index = read(out / "nights" / "index.html")
    assert list(index.rows) == [m["run"]["run_id"] for m in reversed(nights)]
    for metrics in nights:
        (row,) = index.rows[metrics["run"]["run_id"]]
        for prefix, (block, group) in OUTCOMES.items():
            assert row[prefix].split() == proportion(metrics[block][group]).split(), prefix
        link = f"{folder_of(metrics)}/report.html"
        assert link in index.links and (out / "nights" / link).is_file()
    assert {"../report.html", "../trends.html"} <= set(index.links)
    text = (out / "nights" / "index.html").read_text()
    for metrics in nights:
        loaded = [x["name"] for x in metrics["run"]["extracts"] if x["loaded_this_run"]]
        assert loaded and all(name in text for name in loaded)
        assert metrics["run"]["data_quality"]["status"] in text


def test_a_failed_night_changes_neither_the_outputs_nor_the_history(site):
    failed = site["failed"]
    assert failed.returncode == 1
    assert "tumors.csv: missing required column" in failed.stderr.strip().splitlines()[-1]
    files, published, stored = site["after"]
    assert (files, published, stored) == site["before"]
    assert len(published) == NIGHTS and stored == published
    kept = [name for name in files if name.startswith("nights/") and name.endswith("/report.html")]
    assert len(kept) == NIGHTS and {"report.html", "trends.html"} <= set(files)


def test_the_trend_page_shows_every_night_as_its_metrics_json(site):
    out, nights = site["out"], site["metrics"]
    page = read(out / "trends.html")
    for prefix in OUTCOMES:
        assert page.markers[f"trend-figure-trend-{prefix}"] == NIGHTS, prefix
    assert list(page.rows) == [m["run"]["run_id"] for m in nights]  # oldest first
    for metrics in nights:
        outcomes, checks = page.rows[metrics["run"]["run_id"]]  # the two tables' rows
        for prefix, (block, group) in OUTCOMES.items():
            assert outcomes[prefix].split() == proportion(metrics[block][group]).split(), prefix
        kinds = metrics["run"]["data_quality"]["kinds"]
        assert {k: int(v) for k, v in checks.items()} == kinds
        assert sum(kinds.values()) == metrics["run"]["data_quality"]["checks"] > 0
    assert {"report.html", "nights/index.html"} <= set(page.links)


def test_night_metrics_are_published_and_identify_no_one(site):
    base, nights = site["base"], site["metrics"]
    with duckdb.connect(str(base / "warehouse" / "cryoreg.duckdb"), read_only=True) as con:
        rows = con.execute("from audit.night_metrics order by published_at").fetchdf()
        cells = {
            str(v) for column in rows.columns for v in rows[column].explode().dropna().tolist()
        }
    assert rows["run_id"].tolist() == [m["run"]["run_id"] for m in nights]
    for (_, row), metrics in zip(rows.iterrows(), nights, strict=True):
        for prefix, (block, group) in OUTCOMES.items():
            p = metrics[block][group]
            assert (row[f"{prefix}_k"], row[f"{prefix}_n"]) == (p["k"], p["n"])
            assert [row[f"{prefix}_ci_low"], row[f"{prefix}_ci_high"]] == p["ci95"]
        kinds = metrics["run"]["data_quality"]["kinds"]
        assert row["checks_warned"] == kinds["warned"] and row["checks_passed"] == kinds["passed"]
        assert row["published_at"].isoformat() >= metrics["run"]["finished_at"][:19]
    identifiers = set()
    for patients in (base / "registry").glob("*/patients.csv"):
        with duckdb.connect() as con:
            found = con.execute(
                "select patient_mrn, patient_name, birth_date from read_csv(?, all_varchar = true)",
                [str(patients)],
            ).fetchall()
        identifiers |= {v.strip() for row in found for v in row if v and v.strip()}
    assert len(identifiers) > 100
    assert not [
        c for c in cells if c in identifiers or any(i in c for i in identifiers if len(i) > 6)
    ]
