"""report.html from a small real DuckDB warehouse: one self-contained file a clinician can read.

The report is written from the analysis' results alone: the warehouse is gone by then.
"""

from __future__ import annotations

import dataclasses
import re
from html.parser import HTMLParser

import duckdb
import pytest

from cryoreg.analysis import metrics as analyze
from cryoreg.analysis.results import Cohort, Outcome, Results, Summary
from cryoreg.flows import artifacts
from cryoreg.quality import checks
from cryoreg.report import figures
from cryoreg.report import html as report

RUN = {
    "run_id": "run-42",
    "code_version": "0.1.0+abc123",
    "started_at": "2024-03-02T02:00:00+00:00",
    "finished_at": "2024-03-02T02:00:40+00:00",
    "extracts": [
        {"name": "2024-03-01", "content_hash": "a1" * 32, "loaded_this_run": False},
        {"name": "2024-03-02", "content_hash": "b2" * 32, "loaded_this_run": True},
    ],
    "files": [
        {
            "extract": "2024-03-02",
            "file": "patients.csv",
            "read": 12,
            "loaded": 10,
            "quarantined": 2,
        },
        {"extract": "2024-03-02", "file": "tumors.csv", "read": 41, "loaded": 40, "quarantined": 1},
    ],
    "dbt": {"nodes": 30, "passed": 30, "warned": []},
}

MARTS_SQL = """
create schema marts;
create table marts.fct_tumor as
select 't' || i as tumor_key, 'p' || ((i + 1) // 2) as procedure_key,
       'pt' || ((i + 3) // 4) as patient_key, date '2006-01-01' + (30 * i)::int as procedure_date,
       case when i <= 10 then 4.0 + i * 0.3 else 0.5 + (i % 12) * 0.25 end as diameter_cm,
       case when i <= 10 then 'ge4cm' else 'lt4cm' end as size_group,
       case when i % 4 = 0 then 'primary' else 'metastasis' end as origin,
       'colorectal' as histology,
       i <> 40 as ts_evaluable, case when i <> 40 then i % 13 <> 0 end as ts_success,
       i <= 36 as te_evaluable, case when i <= 36 then i % 9 <> 0 end as te_success,
       case when i <= 36 then (i <= 10 and i % 3 <> 0) or i % 5 = 0 end as ltp_event,
       case when i <= 36 then 0.3 + (i * 37 % 23) * 0.3 end as ltp_time_years,
       case when i <= 36 then 0.8 + (i * 37 % 23) * 0.3 end as follow_up_years,
       case when i <= 36 then i % 3 = 0 end as patient_died,
       case when i <= 36 and i % 3 = 0 then 1.5 + (i * 37 % 23) * 0.3 end as death_time_years,
       case when i > 36 then null when ltp_event then 'ltp' when patient_died then 'death'
            else 'censored' end as ltp_competing_event,
       case when ltp_competing_event = 'death' then death_time_years else ltp_time_years end
           as ltp_competing_time_years
from range(1, 41) as r(i);
create table marts.fct_procedure as
select procedure_key, any_value(patient_key) as patient_key,
       min(procedure_date) as procedure_date,
       ['CT', 'MRI', 'PET/CT'][1 + k % 3] as guidance,
       max(size_group) filter (where size_group = 'ge4cm') is not null as ge4,
       case when ge4 then 'ge4cm' else 'lt4cm' end as size_group,
       count(*)::int as tumor_count,
       k % 3 = 0 as any_ae, k % 6 = 0 as major_ae,
       null::int as max_ctcae_grade
from (select *, replace(procedure_key, 'p', '')::int as k from marts.fct_tumor)
group by procedure_key, k;
alter table marts.fct_procedure drop column ge4;
create table marts.dim_patient as
select patient_key, case when i % 2 = 1 then 'F' else 'M' end as sex,
       (40 + 3 * i)::int as age_at_first_procedure, 2 as procedure_count,
       i % 3 = 0 as died, 0.4 + (i * 7 % 11) * 0.5 as overall_survival_years
from (select distinct patient_key, replace(patient_key, 'pt', '')::int as i from marts.fct_tumor);
create table marts.fct_adverse_event (event_key varchar, procedure_key varchar, onset_day int,
                                      ctcae_grade int, in_30_day_window bool);
create table marts.fct_tumor_attrition as
select * from (values
    (1, 'Tumors treated', 40, 0, null),
    (2, 'Evaluable for technical success', 39, 1, 'technical result <not> recorded & co'),
    (3, 'Evaluable for technique efficacy', 36, 3, 'no determinate imaging 30-180 days')
) as t(step_order, step, tumors_remaining, tumors_excluded, exclusion_reason);
"""


def analyzed(path, *statements: str):
    """The results of a real DuckDB warehouse of MARTS_SQL (then `statements`), after which
    the warehouse file is deleted: the report must not need it."""
    with duckdb.connect(str(path)) as con:
        con.execute(MARTS_SQL)
        for statement in statements:
            con.execute(statement)
    with duckdb.connect(str(path), read_only=True) as con:
        results = analyze.compute(con)
    path.unlink()
    return results


@pytest.fixture(scope="module")
def analysis(tmp_path_factory):
    return analyzed(tmp_path_factory.mktemp("report") / "warehouse.duckdb")


@pytest.fixture(scope="module")
def built(analysis, tmp_path_factory):
    out = report.write_report(analysis, tmp_path_factory.mktemp("report-out"), run=RUN)
    return analyze.metrics_json(analysis, RUN), out, out.read_text(encoding="utf-8")


class _Elements(HTMLParser):
    """Tags by id, and every tag seen, to check structure without a browser."""

    def __init__(self):
        super().__init__()
        self.by_id: dict[str, str] = {}
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append((tag, attrs))
        if "id" in attrs:
            self.by_id[attrs["id"]] = tag


def _elements(text: str) -> _Elements:
    parser = _Elements()
    parser.feed(text)
    return parser


def _inline_svg(text: str, element_id: str) -> str:
    start = text.index(f'<svg id="{element_id}"')
    return text[start : text.index("</svg>", start)]


def test_one_self_contained_html_file(built):
    _, out, text = built
    assert out.name == "report.html"
    assert [p.name for p in out.parent.glob("*.html")] == ["report.html"]
    assert text.startswith("<!DOCTYPE html>")
    assert "http://" not in text and "https://" not in text
    parsed = _elements(text)
    for tag, attrs in parsed.tags:
        assert tag not in ("link", "script", "img", "iframe", "object"), tag
        for name in ("src", "href"):
            assert not (attrs.get(name) or "").startswith(("//", "http")), attrs
    assert not re.search(r"@import|url\(\s*['\"]?(https?:)?//", text)
    assert "@media print" in text


def test_km_figure_is_inline_svg_with_curves(built):
    metrics, out, text = built
    parsed = _elements(text)
    assert parsed.by_id["km-figure"] == "svg"
    svg = _inline_svg(text, "km-figure")
    assert svg.count("<path") > 10
    assert "Number at risk" in svg and "Years after cryoablation" in svg
    assert "&lt; 4 cm" in svg or "< 4 cm" in svg
    n_all = metrics["ltp_free_survival"]["all"]["n"]
    assert f"All tumors (n = {n_all}" in svg
    assert "Log-rank" in svg
    assert (out.parent / "km_ltp_free_survival.svg").read_text().startswith("<?xml")


def test_flowchart_shows_the_attrition_rows(built):
    _, out, text = built
    parsed = _elements(text)
    assert parsed.by_id["attrition-flowchart"] == "svg"
    svg = _inline_svg(text, "attrition-flowchart")
    for count in ("n = 40 tumors", "n = 39 tumors", "n = 36 tumors"):
        assert count in svg
    assert "Excluded: 1 tumor<" in svg and "Excluded: 3 tumors" in svg
    assert "technical result &lt;not&gt; recorded &amp; co" in svg  # data text is escaped
    assert "<not>" not in text
    assert (out.parent / "attrition_flowchart.svg").exists()


def test_paper_table_beside_this_run(built):
    metrics, _, text = built
    for paper in ("279/295 (94.6%)", "213/228 (93.4%)", "17/195 (8.7%)", "8/41 (19.5%)"):
        assert paper in text
    te = metrics["technique_efficacy"]["all"]
    assert f"{te['k']}/{te['n']} ({te['pct']:.1f}%)" in text
    low, high = te["ci95"]
    assert f"{100 * low:.1f}–{100 * high:.1f}%" in text
    assert "p, χ² (this run)" in text and "p, Fisher (this run)" in text
    assert text.count('class="differs"') >= 10  # this toy cohort is not the paper's
    assert "expected cell count" in text


def test_cox_and_row_accounting_sections(built):
    _, _, text = built
    assert "Hazard ratio" in text and "diameter (per cm)" in text
    assert "patients.csv" in text and "tumors.csv" in text
    assert "<td>53</td><td>50</td><td>3</td>" in text  # totals: read = loaded + quarantined
    assert "2024-03-01 to 2024-03-02" in text and "run-42" in text
    assert "marts.fct_tumor_attrition" in text


def paper_results(results: Results) -> Results:
    """Results as a run that reproduces the paper would produce them (the rest as `results`)."""
    p = analyze.proportion

    def compared(groups: dict, a: str, b: str) -> Outcome:
        return Outcome(groups, analyze.compare(groups[a], groups[b]))

    return dataclasses.replace(
        results,
        cohort=Cohort(
            patients=186,
            women=95,
            age_years=Summary(mean=60.94, min=29, max=88),
            procedures=236,
            guidance={"CT": 126, "MRI": 100, "PET/CT": 10},
            tumors=299,
            metastases=243,
            primary=56,
            diameter_cm=Summary(mean=2.46, median=2.2, min=0.3, max=7.8),
            follow_up_years=Summary(mean=2.52, min=0.17, max=14.6),
        ),
        technical_success=Outcome({"all": p(279, 295)}),
        technique_efficacy=compared(
            {"all": p(231, 258), "lt4cm": p(213, 228), "ge4cm": p(18, 30)}, "lt4cm", "ge4cm"
        ),
        local_tumor_progression=compared(
            {"all": p(60, 258), "lt4cm": p(41, 228), "ge4cm": p(19, 30)}, "lt4cm", "ge4cm"
        ),
        adverse_events=compared(
            {
                "any": p(80, 236),
                "major": p(25, 236),
                "major_lt4cm": p(17, 195),
                "major_ge4cm": p(8, 41),
            },
            "major_lt4cm",
            "major_ge4cm",
        ),
    )


def _paper_table(text: str) -> str:
    start = text.index('<table class="results">')
    return text[start : text.index("</table>", start)]


def test_a_run_reproducing_the_paper_has_no_differing_row(analysis):
    text = report.render(paper_results(analysis))
    assert "Every figure of the paper is reproduced." in text
    table = _paper_table(text)
    assert 'class="differs"' not in table and "≠" not in table
    assert "0.0412" in table and "0.0517" in table  # both p values of the major-AE comparison


def test_paper_figures_are_printed_as_in_the_paper(analysis):
    """The paper's column comes from cryoreg.paper, in the paper's printed format."""
    table = _paper_table(report.render(analysis))
    for printed in (
        "186 / 95",
        "60.9 (29–88)",
        "126 / 100 / 10",
        "2.5 / 2.2 (0.3–7.8)",
        "2.5 (2 months–14.6)",
        "279/295 (94.6%)",
        "18/30 (60.0%)",
        "80/236 (33.9%)",
        "&lt; 0.0001",
        ">0.04<",
    ):
        assert printed in table, printed
    assert "the paper prints 33.8%" in table  # cryoreg.paper's notes


def test_p_matches_at_the_papers_precision():
    assert report.p_matches("< 0.0001", 3e-8) and not report.p_matches("< 0.0001", 0.0002)
    assert report.p_matches("0.04", 0.0412) and not report.p_matches("0.04", 0.0517)
    assert not report.p_matches("0.04", None)


def test_tolerant_without_run_block_or_attrition_mart(tmp_path):
    results = analyzed(tmp_path / "bare.duckdb", "drop table marts.fct_tumor_attrition")
    out = report.write_report(results, tmp_path / "out")
    text = out.read_text(encoding="utf-8")
    assert "produced outside the nightly flow" in text
    assert 'id="attrition-flowchart"' in text and "not available" in text
    assert 'id="km-figure"' in text


def test_figures_beyond_the_paper(built):
    metrics, out, text = built
    parsed = _elements(text)
    for element_id, needle in [
        ("os-figure", "Overall survival from the first procedure"),
        ("cif-figure", "Aalen-Johansen"),
    ]:
        assert parsed.by_id[element_id] == "svg"
        svg = _inline_svg(text, element_id)
        assert svg.count("<path") > 5 and needle in svg and "Number at risk" in svg
    assert (out.parent / "overall_survival.svg").exists()
    assert (out.parent / "ltp_cumulative_incidence.svg").exists()
    assert "Why the two differ" in text and "1 − KM" in text
    deaths = metrics["ltp_cumulative_incidence"]["all"]["deaths"]
    assert f"({deaths} of 36 tumors here)" in text


def test_cox_table_shows_naive_and_clustered_errors(built):
    metrics, _, text = built
    table = text[text.index("<table id='cox-table'>") :]
    table = table[: table.index("</table>")]
    assert "Naive (tumors independent)" in table and "Clustered by patient" in table
    robust = metrics["cox_clustered"]["covariates"]["diameter_cm"]["ci95"]
    assert f"{robust[0]:.2f}–{robust[1]:.2f}" in table
    assert f"patients (clusters) = {metrics['cox_clustered']['clusters']}" in text


def test_every_figure_and_table_names_its_source(built):
    _, out, text = built
    files = sorted(out.parent.glob("*.svg"))
    assert len(files) == 4
    for svg in files:  # also when read apart from the report
        assert "Source: marts." in svg.read_text(), svg.name
    captions = re.findall(r"<figcaption>(.*?)</figcaption>", text, flags=re.S)
    assert len(captions) == 4
    for caption in captions:
        assert "Source: marts." in " ".join(caption.split()), caption[:80]
    for table_id in ("os-table", "cif-table", "cox-table"):
        after = text[text.index(f"id='{table_id}'") :]
        assert "Source: marts." in after[: after.index("</p>", after.index("</table>"))]
    assert "Sources: patients and age from marts.dim_patient" in text


def test_inline_figures_do_not_share_ids(built):
    _, _, text = built
    ids = re.findall(r'\bid="([^"]+)"', text)
    assert len(ids) == len(set(ids))
    for ref in re.findall(r"url\(#([^)]+)\)", text):
        assert ref in ids, ref


def test_beyond_the_paper_sections_tolerate_an_older_warehouse(tmp_path):
    results = analyzed(
        tmp_path / "old.duckdb",
        "alter table marts.fct_tumor drop column ltp_competing_event",
        "alter table marts.dim_patient drop column overall_survival_years",
    )
    text = report.write_report(results, tmp_path / "out").read_text(encoding="utf-8")
    assert 'id="os-figure"' in text and 'id="cif-figure"' in text
    assert "not available" in text and 'id="km-figure"' in text


def _data_quality(text: str) -> str:
    return text[text.index("<h2>Data quality</h2>") :]


STATUS = {
    "status": "failed",
    "checks": 10,
    "passed": 7,
    "failed": 2,
    "error": 0,
    "not_applicable": 1,
    "kinds": {"passed": 7, "warned": 1, "failed": 1, "not applicable": 1},
    "fatal": ["raw.tumors.diameter_mm:range <b>"],
    "warnings": ["delta.imaging:row_count_change"],
}


def test_data_quality_section_lists_fatal_and_warnings(analysis):
    status = STATUS
    html = _data_quality(report.render(analysis, run={"data_quality": status}))
    assert "Status: <strong>failed</strong>" in html
    assert "10 checks:\n7 passed, 1 warned, 1 failed, 1 not applicable." in html
    assert "raw.tumors.diameter_mm:range &lt;b&gt;" in html  # escaped
    assert "delta.imaging:row_count_change" in html
    assert "data_docs/index.html" not in html  # no Data Docs folder: no dead link
    linked = report.render(analysis, run={"data_quality": status}, data_docs=True)
    assert "href='data_docs/index.html'" in _data_quality(linked)
    assert "No data-quality checks" in _data_quality(report.render(analysis))


def test_data_docs_are_linked_when_the_run_wrote_them(analysis, tmp_path):
    (tmp_path / "data_docs").mkdir()
    (tmp_path / "data_docs" / "index.html").write_text("<html></html>")
    run = {**RUN, "data_quality": STATUS}
    text = report.write_report(analysis, tmp_path, run=run).read_text(encoding="utf-8")
    assert "href='data_docs/index.html'" in text


def _points(fragment: str) -> list[tuple[float, float]]:
    """The (x, y) points an SVG fragment draws at: path vertices and text anchors."""
    points = []
    for d in re.findall(r'\bd="([^"]+)"', fragment):
        numbers = [float(n) for n in re.findall(r"-?\d+(?:\.\d+)?", d)]
        points += list(zip(numbers[::2], numbers[1::2], strict=True))
    for x, y in re.findall(r'<text[^>]*\bx="([^"]+)" y="([^"]+)"', fragment):
        points.append((float(x), float(y)))
    return points


def _band_box(svg: str, color: str) -> tuple[float, float, float, float]:
    """The bounding box (x0, y0, x1, y1) of the shaded confidence band drawn in `color`."""
    uses = re.findall(
        rf'<use xlink:href="#([^"]+)" x="([^"]+)" y="([^"]+)" style="fill: {color}; '
        r'fill-opacity: 0.15"',
        svg,
    )
    assert uses, f"no band in {color}"
    points = []
    for ref, dx, dy in uses:
        d = re.search(rf'<path id="{ref}" d="([^"]+)"', svg)[0]
        points += [(x + float(dx), y + float(dy)) for x, y in _points(d)]
    xs, ys = [x for x, _ in points], [y for _, y in points]
    return min(xs), min(ys), max(xs), max(ys)


def test_km_legend_hides_no_curve_or_band(built):
    """Panel B's legend sits above its axes: it can cover neither the >= 4 cm band nor a curve."""
    _, out, _ = built
    svg = (out.parent / "km_ltp_free_survival.svg").read_text()
    legend = svg[svg.index('<g id="legend-1">') : svg.index("</g>\n  </g>", svg.index("legend-1"))]
    assert "Log-rank p" in legend and "≥ 4 cm (n = " in legend
    axes = svg[: svg.index('<g id="legend-1">')]
    axes = axes[axes.rindex('<g id="axes_') :]  # panel B's axes, whose last child is the legend
    frame = _points(re.search(r'<g id="patch_\d+">\s*<path d="[^"]+"', axes)[0])
    top = min(y for _, y in frame)
    legend_bottom = max(y for _, y in _points(legend))
    assert legend_bottom < top  # SVG y grows downwards
    x0, y0, x1, y1 = _band_box(axes, figures.COLORS["ge4cm"])
    assert y0 >= top and legend_bottom < y0


def test_run_time_reads_in_utc_to_the_minute(built, analysis):
    _, _, text = built
    assert "<dd>2024-03-02 02:00 UTC (took 40 seconds) · run run-42</dd>" in text
    assert "2024-03-02T02:00" not in text
    run = {"started_at": "2026-12-05T03:13:05+01:00", "finished_at": "2026-12-05T03:13:06+01:00"}
    assert "<dd>2026-12-05 02:13 UTC (took 1 second)</dd>" in report.render(analysis, run=run)


def test_counts_read_in_the_singular_for_one(built, analysis):
    _, _, text = built
    assert "(2 extract folders)" in text and "dbt build: 30 nodes" in text
    assert re.search(r"\d+ rows differ from the paper", text)
    run = {
        "extracts": RUN["extracts"][:1],
        "dbt": {"nodes": 1, "passed": 1, "warned": []},
        "data_quality": {**STATUS, "checks": 1},
    }
    one = report.render(analysis, run=run)
    assert "(1 extract folder)" in one and "dbt build: 1 node," in one
    assert "— 1 check:" in one
    assert not re.search(r"\b1 (extract folders|nodes|checks|rows|tumors|years)\b", one)
    assert report.plural(0, "file") == "0 files" and report.plural(1, "night") == "1 night"


def test_glossary_defines_the_terms_and_outcome_rows_link_to_them(built):
    _, _, text = built
    glossary = text[text.index("<h2 id='glossary'>") :]
    terms = re.findall(r"<dt id='term-([^']+)'>([^<]+)</dt><dd>([^<]+)</dd>", glossary)
    names = " | ".join(term for _, term, _ in terms)
    for term in (
        "Technical success",
        "Technique efficacy",
        "Local tumor progression",
        "Adverse event",
        "Major adverse event",
        "TE-evaluable",
        "LTP-free survival",
        "Kaplan-Meier",
        "Competing risk / cumulative incidence",
        "Size group &lt; 4 cm / ≥ 4 cm",
    ):
        assert term in names, term
    assert "CTCAE" in dict((i, d) for i, _, d in terms)["major-adverse-event"]
    ids = set(re.findall(r"""\bid=['"]([^'"]+)['"]""", text))
    links = re.findall(r'<th scope="row"><a class="term" href="#([^"]+)">([^<]+)</a>', text)
    for target, _ in links:
        assert target in ids, target
    linked = {label.split(":")[0] for _, label in links}
    assert linked == {
        "Technical success",
        "Technique efficacy",
        "Local tumor progression",
        "Adverse events (30 days)",
    }
    assert ("term-major-adverse-event", "Adverse events (30 days): major") in links


def test_artifact_lists_the_checks_that_did_not_pass(tmp_path):
    """The Prefect table of the night's failed and warned checks, from the run block that
    audit.check_results gives the flow."""
    check = checks.CheckResult
    with duckdb.connect(str(tmp_path / "store.duckdb")) as con:
        kept = checks.record(
            con,
            "run-1",
            [
                check(
                    "raw.tumors.diameter_mm:range", "ingest", "conformance", "fatal", 0.01, 5, 100
                ),
                check("dbt:not_null_x", "dbt", "completeness", "warn", 0.0, 3),
                check("delta (imaging):rows", "great_expectations", "plausibility", "warn", None),
                check("pandera:fct_tumor", "pandera", "conformance", "fatal", 0.0, 0, 10),
            ],
            exceptions={},
        )
    metrics = {"run": {"data_quality": checks.run_status(kept).as_dict()}}
    assert artifacts.quality_rows(metrics) == [
        {
            "check": "raw.tumors.diameter_mm:range",
            "tool": "ingest",
            "kind": "failed",
            "failing rows": 5,
            "tolerated share": "1.0%",
        },
        {
            "check": "dbt:not_null_x",
            "tool": "dbt",
            "kind": "warned",
            "failing rows": 3,
            "tolerated share": "0%",
        },
        {
            "check": "delta (imaging):rows",
            "tool": "great_expectations",
            "kind": "warned",
            "failing rows": "could not run",
            "tolerated share": "",
        },
    ]
    assert artifacts.quality_markdown(metrics) == (
        "Data quality: **failed** (1 passed, 2 warned, 1 failed, 0 not applicable); "
        "see audit.check_results"
    )
    assert artifacts.quality_rows({"run": {}}) == [] and not artifacts.quality_markdown({})
