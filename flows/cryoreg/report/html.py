"""report.html: the paper's results beside this run's, the curves, the attrition flowchart, the
Cox model, the row accounting and the data-quality status.

Rendered by Jinja2 (templates/) from the analysis' results and the values the flow hands in
(the run block with its data-quality status); it never opens the warehouse nor refits. One
self-contained file (inline CSS and SVG, no external assets, prints cleanly) so it can be mailed
or archived as is; the figures are also written beside it as .svg files.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup

from cryoreg import paper
from cryoreg.analysis.results import KM_YEARS, KaplanMeier, Outcome, Proportion, Results
from cryoreg.report import figures
from cryoreg.report.text import check_counts

TEMPLATES = Path(__file__).with_name("templates")
PAPER_CITATION = (
    "Glazer DI, Tatli S, Shyn PB, Vangel MG, Tuncali K, Silverman SG. Percutaneous image-guided "
    "cryoablation of hepatic tumors: single-center experience with intermediate to long-term "
    "outcomes. AJR 2017;209(6):1381-1389. doi:10.2214/AJR.16.17582"
)
MARTS = (
    "marts.dim_patient",
    "marts.fct_procedure",
    "marts.fct_tumor",
    "marts.fct_adverse_event",
    "marts.fct_tumor_attrition",
)
ATTRITION_SOURCE = "marts.fct_tumor_attrition"
# The report's terms in plain words, as docs/outcome-definitions.md defines them; each entry is
# the link target "#term-<id>" of the rows and sections that use the term.
GLOSSARY = (
    (
        "technical-success",
        "Technical success",
        "The ablation zone covered the whole tumor on imaging during the procedure or within 24 "
        "hours (result complete). Tumors whose result was not assessed are left out.",
    ),
    (
        "te-evaluable",
        "TE-evaluable",
        "A tumor with at least one determinate (not indeterminate) imaging read 30 to 180 days "
        "after its procedure. Technique efficacy, local tumor progression and LTP-free survival "
        "count these tumors only.",
    ),
    (
        "technique-efficacy",
        "Technique efficacy",
        "The earliest determinate imaging 30 to 180 days after the procedure shows no tumor "
        "left at the treated site (when several reads share that date, all must). Reported "
        "over TE-evaluable tumors.",
    ),
    (
        "local-tumor-progression",
        "Local tumor progression (LTP)",
        "Tumor seen at the treated site (residual tumor or progression) on any imaging from the "
        "technique-efficacy study on, among TE-evaluable tumors. Residual tumor at that study "
        "counts as progression, as in the paper.",
    ),
    (
        "adverse-event",
        "Adverse event",
        "A complication that began on the day of the procedure or within the 30 days after it. "
        "Counted per procedure: a procedure has one when at least one event fell in that window.",
    ),
    (
        "major-adverse-event",
        "Major adverse event",
        "An adverse event of the 30-day window graded 3 or higher on the CTCAE scale (severe, "
        "life-threatening or fatal).",
    ),
    (
        "size-group",
        "Size group < 4 cm / ≥ 4 cm",
        "A tumor is ≥ 4 cm when its diameter is 40 mm or more, < 4 cm otherwise. Procedures are "
        "grouped by their largest treated tumor for the adverse-event comparison.",
    ),
    (
        "ltp-free-survival",
        "LTP-free survival",
        "The share of TE-evaluable tumors still free of local tumor progression as time passes "
        "after the ablation; a tumor that has not progressed is followed up to its latest "
        "determinate imaging.",
    ),
    (
        "kaplan-meier",
        "Kaplan-Meier",
        "The usual estimate of the share still free of an event over time when follow-up ends "
        "at different times: a tumor (or patient) whose follow-up ends without the event leaves "
        "the count then (censored); the number at risk is those still followed.",
    ),
    (
        "competing-risk",
        "Competing risk / cumulative incidence",
        "A competing risk is an event that rules the outcome out, here the patient's death "
        "before progression. The cumulative incidence (Aalen-Johansen) is the share of tumors "
        "that progressed by a given time, counting such deaths as ending the risk instead of "
        "censoring them.",
    ),
)


# --- formatting (the templates' filters) -------------------------------------------------------


def fmt_prop(p: Proportion) -> str:
    if not p.n:
        return f"{p.k}/{p.n} (–)"
    return f"{p.k}/{p.n} ({p.pct:.1f}%)"


def fmt_ci(ci) -> str:
    if ci[0] is None:
        return "–"
    return f"{100 * ci[0]:.1f}–{100 * ci[1]:.1f}%"


fmt_p = figures.p_text


def _f(x: float | None, fmt: str = ".1f") -> str:
    return "–" if x is None else format(x, fmt)


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}%"


def _ratio_ci(ci) -> str:
    return f"{_f(ci[0], '.2f')}–{_f(ci[1], '.2f')}"


def _median(km: KaplanMeier) -> str:
    if not km.n:
        return "–"
    return "not reached" if km.median_years is None else f"{km.median_years:.1f} y"


def p_matches(printed: str, p: float | None) -> bool:
    """Whether p reads as the paper's p at the paper's precision ("< 0.0001", "0.04")."""
    if p is None:
        return False
    if printed.startswith("<"):
        return p < float(printed.lstrip("< "))
    decimals = len(printed.split(".")[1])
    return round(p, decimals) == float(printed)


# --- the paper's table -------------------------------------------------------------------------


def paper_figures() -> dict[str, str]:
    """The paper's figures (cryoreg.paper) as printed, in the format this run's are shown in,
    so that "differs" is a plain text comparison at the paper's precision."""
    te, ltp = paper.TECHNIQUE_EFFICACY, paper.LOCAL_TUMOR_PROGRESSION
    major = paper.MAJOR_ADVERSE_EVENTS
    figures_ = {
        "patients": f"{paper.PATIENTS} / {paper.WOMEN}",
        "age": f"{paper.AGE_MEAN:.1f} ({paper.AGE_MIN}–{paper.AGE_MAX})",
        "procedures": str(paper.PROCEDURES),
        "guidance": " / ".join(str(paper.GUIDANCE[g]) for g in ("CT", "MRI", "PET/CT")),
        "tumors": str(paper.TUMORS),
        "origin": f"{paper.METASTASES} / {paper.PRIMARY}",
        "diameter": f"{paper.DIAMETER_CM_MEAN:.1f} / {paper.DIAMETER_CM_MEDIAN:.1f} "
        f"({paper.DIAMETER_CM_MIN:.1f}–{paper.DIAMETER_CM_MAX:.1f})",
        "follow_up": f"{paper.FOLLOW_UP_YEARS_MEAN:.1f} "
        f"({paper.FOLLOW_UP_MONTHS_MIN} months–{paper.FOLLOW_UP_YEARS_MAX:.1f})",
        "ts": str(paper.TECHNICAL_SUCCESS),
        "te_p": str(paper.TECHNIQUE_EFFICACY_P),
        "ltp_p": str(paper.LOCAL_TUMOR_PROGRESSION_P),
        "ae_any": str(paper.ADVERSE_EVENTS),
        "ae_major": str(major["all"]),
        "ae_major_lt4cm": str(major["lt4cm"]),
        "ae_major_ge4cm": str(major["ge4cm"]),
        "ae_p": str(paper.MAJOR_ADVERSE_EVENTS_P),
    }
    for g in ("all", "lt4cm", "ge4cm"):
        figures_[f"te_{g}"] = str(te[g])
        figures_[f"ltp_{g}"] = str(ltp[g])
    return figures_


PAPER = paper_figures()


@dataclass(frozen=True)
class Test:
    """The p-value cells of a size-group comparison (they span its two rows)."""

    paper: str
    note: str | None
    p_chi2: float | None
    p_fisher: float | None
    matches: bool
    flagged: bool


@dataclass(frozen=True)
class Row:
    key: str
    label: str
    run: str
    ci: str = ""
    test: Test | None = None
    spanned: bool = False  # the p cells of the row above span this one
    term: str | None = None  # its GLOSSARY entry

    @property
    def paper(self) -> str:
        return PAPER[self.key]

    @property
    def note(self) -> str | None:
        return paper.NOTES.get(self.key)

    @property
    def same(self) -> bool:
        return self.paper == self.run


def cohort_rows(results: Results) -> list[Row]:
    c = results.cohort
    age, diam, fu, g = c.age_years, c.diameter_cm, c.follow_up_years, c.guidance
    months = "–" if fu.min is None else f"{round(fu.min * 12)} months"
    return [
        Row("patients", "Patients / women", f"{c.patients} / {c.women}"),
        Row("age", "Age, y: mean (min–max)", f"{_f(age.mean)} ({age.min}–{age.max})"),
        Row("procedures", "Procedures", str(c.procedures)),
        Row("guidance", "Guidance CT / MRI / PET-CT", f"{g['CT']} / {g['MRI']} / {g['PET/CT']}"),
        Row("tumors", "Tumors", str(c.tumors)),
        Row("origin", "Metastases / primary", f"{c.metastases} / {c.primary}"),
        Row(
            "diameter",
            "Diameter, cm: mean / median (min–max)",
            f"{_f(diam.mean)} / {_f(diam.median)} ({_f(diam.min)}–{_f(diam.max)})",
        ),
        Row("follow_up", "Follow-up, y: mean (min–max)", f"{_f(fu.mean)} ({months}–{_f(fu.max)})"),
    ]


def _outcome_rows(
    prefix: str, title: str, outcome: Outcome, labels: dict[str, str], term: str
) -> list[Row]:
    cmp = outcome.comparison
    printed = PAPER[f"{prefix}_p"]
    test = Test(
        printed,
        paper.NOTES.get(f"{prefix}_p"),
        cmp.p_chi2,
        cmp.p_fisher,
        p_matches(printed, cmp.p_chi2),
        bool(cmp.expected_cell_below_5),
    )
    rows = []
    for group, label in labels.items():
        p = outcome[group]
        rows.append(
            Row(
                f"{prefix}_{group}",
                f"{title}: {label}",
                fmt_prop(p),
                fmt_ci(p.ci95),
                test=test if group.endswith("lt4cm") else None,
                spanned=group.endswith("ge4cm"),
                term="major-adverse-event" if group.startswith("major") else term,
            )
        )
    return rows


def paper_table(results: Results) -> dict:
    """The rows of the paper's table beside this run, how many differ, and the comparisons
    whose 2x2 table has an expected cell count below 5."""
    ts = results.technical_success["all"]
    sizes = {"all": "all", "lt4cm": "< 4 cm", "ge4cm": "≥ 4 cm"}
    ae = {"any": "any", "major": "major", "major_lt4cm": "major, < 4 cm"}
    ae["major_ge4cm"] = "major, ≥ 4 cm"
    rows = [
        *cohort_rows(results),
        Row("ts", "Technical success", fmt_prop(ts), fmt_ci(ts.ci95), term="technical-success"),
        *_outcome_rows(
            "te", "Technique efficacy", results.technique_efficacy, sizes, "technique-efficacy"
        ),
        *_outcome_rows(
            "ltp",
            "Local tumor progression",
            results.local_tumor_progression,
            sizes,
            "local-tumor-progression",
        ),
        *_outcome_rows(
            "ae", "Adverse events (30 days)", results.adverse_events, ae, "adverse-event"
        ),
    ]
    compared = [
        (results.technique_efficacy, "technique efficacy"),
        (results.local_tumor_progression, "local tumor progression"),
        (results.adverse_events, "major adverse events"),
    ]
    return {
        "rows": rows,
        "differing": sum(not r.same or bool(r.test and not r.test.matches) for r in rows),
        "flagged": [
            f"{name} (smallest expected count {o.comparison.min_expected_cell:.1f})"
            for o, name in compared
            if o.comparison.expected_cell_below_5
        ],
    }


# --- the page ----------------------------------------------------------------------------------


def plural(n: int, word: str) -> str:
    """ "1 extract folder", "2 extract folders" (every count-noun of the report is regular)."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _utc(iso: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(iso)
    except (TypeError, ValueError):
        return None
    return moment.replace(tzinfo=moment.tzinfo or UTC).astimezone(UTC)


def when_text(run: dict) -> str:
    """When the run ended (or started) to the minute in UTC, and how long it took, in seconds:
    people read the page, not ISO timestamps."""
    started, finished = _utc(run.get("started_at")), _utc(run.get("finished_at"))
    moment = finished or started or datetime.now(UTC)
    text = moment.strftime("%Y-%m-%d %H:%M UTC")
    if started and finished:
        text += f" (took {plural(round((finished - started).total_seconds()), 'second')})"
    return text


def _placeholder(element_id: str, text: str) -> Markup:
    return Markup('<p id="{}">{}.</p>').format(element_id, text)


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=StrictUndefined,
        keep_trailing_newline=True,
    )
    env.filters.update(p=fmt_p, ci=fmt_ci, pct=_pct, f=_f, ratio_ci=_ratio_ci, plural=plural)
    env.globals.update(placeholder=_placeholder, median=_median)
    return env


def _meta(run: dict | None) -> list[tuple[str, str]]:
    run = run or {}
    names = sorted(str(x.get("name", "")) for x in run.get("extracts") or [])
    covered = (
        f"{names[0]} to {names[-1]} ({plural(len(names), 'extract folder')})" if names else None
    )
    return [
        ("Run", when_text(run) + (f" · run {run['run_id']}" if run.get("run_id") else "")),
        ("Extracts covered", covered or "not recorded"),
        ("Code version", str(run.get("code_version", "not recorded"))),
        ("Source", ", ".join(MARTS) + " (DuckDB warehouse, built by dbt)"),
    ]


def _files(run: dict | None) -> tuple[list[dict], dict]:
    """The run's per-file row accounting, each checked read = loaded + quarantined."""
    keys = ("read", "loaded", "quarantined")
    files = []
    for f in (run or {}).get("files") or []:
        counts = {k: int(f.get(k) or 0) for k in keys}
        balanced = counts["read"] == counts["loaded"] + counts["quarantined"]
        files.append({"extract": f.get("extract", ""), "file": f.get("file", ""), **counts})
        files[-1]["balanced"] = balanced
    return files, {k: sum(f[k] for f in files) for k in keys}


def _extract(x: dict) -> dict:
    return {
        "name": str(x.get("name", "")),
        "content_hash": str(x.get("content_hash", "")),
        "loaded_this_run": bool(x.get("loaded_this_run")),
    }


def _last_year_with_incidence(results: Results) -> int | None:
    incidence = results.ltp_cumulative_incidence
    if incidence.error:
        return None
    at = incidence["all"].at_years
    return next((t for t in reversed(KM_YEARS) if at[t].cif is not None), None)


def render(
    results: Results,
    run: dict | None = None,
    figures_html: dict[str, Markup | None] | None = None,
    data_docs: bool = False,
    home: str | None = None,
) -> str:
    """The page. `run` is the flow's run block (extracts, files, dbt, data_quality); the
    figures are inline SVG by name (km, flow, os, cif), placeholders where absent; `data_docs`
    links the night's Data Docs; `home`, the way up to out/, links the trend page and the
    nights index (a nightly report only)."""
    files, totals = _files(run)
    status = (run or {}).get("data_quality")
    return (
        _environment()
        .get_template("report.html")
        .render(
            citation=PAPER_CITATION,
            meta=_meta(run),
            paper=paper_table(results),
            figures={k: None for k in ("km", "flow", "os", "cif")} | (figures_html or {}),
            survival=results.ltp_free_survival,
            overall=results.overall_survival,
            incidence=results.ltp_cumulative_incidence,
            cif_last=_last_year_with_incidence(results),
            cox=results.cox,
            clustered=results.cox_clustered,
            robust=results.cox_clustered if results.cox_clustered.fitted else None,
            attrition_source=ATTRITION_SOURCE,
            years=KM_YEARS,
            groups=("all", "lt4cm", "ge4cm"),
            labels=figures.GROUP_LABELS,
            run=run,
            files=files,
            totals=totals,
            extracts=[_extract(x) for x in (run or {}).get("extracts") or []],
            dbt=(run or {}).get("dbt"),
            status=status,
            check_counts=check_counts(status.get("kinds") or {}) if status else "",
            data_docs=data_docs,
            home=home,
            glossary=GLOSSARY,
        )
    )


def flowchart_svg(results: Results) -> str | None:
    if not results.attrition:
        return None
    layout = figures.flowchart_layout(results.attrition)
    return _environment().get_template("flowchart.svg").render(**layout, source=ATTRITION_SOURCE)


def write_report(
    results: Results, out_dir: Path, run: dict | None = None, night: Path | None = None
) -> Path:
    """Write out_dir/report.html (self-contained) and its figures as .svg beside it; with
    `night` (out_dir/nights/<night>), also the night's kept copy, whose links lead up to out/."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    drawn = {
        # name: (svg, file, element id, label)
        "km": (
            figures.km_svg(results.ltp_free_survival),
            "km_ltp_free_survival.svg",
            "km-figure",
            "Kaplan-Meier LTP-free survival",
        ),
        "flow": (
            flowchart_svg(results),
            "attrition_flowchart.svg",
            "attrition-flowchart",
            "Tumor inclusion flowchart",
        ),
        "os": (
            figures.os_svg(results.overall_survival),
            "overall_survival.svg",
            "os-figure",
            "Kaplan-Meier overall survival",
        ),
        "cif": (
            figures.cif_svg(results.ltp_cumulative_incidence),
            "ltp_cumulative_incidence.svg",
            "cif-figure",
            "Cumulative incidence of local tumor progression with death as a competing risk",
        ),
    }
    inline = {}
    for name, (svg, file, element_id, label) in drawn.items():
        if svg:
            (out_dir / file).write_text(figures.standalone(svg))
            inline[name] = figures.inline(svg, element_id, label)
    data_docs = (out_dir / "data_docs" / "index.html").exists()
    if night is not None:
        night.mkdir(parents=True, exist_ok=True)
        page = render(results, run, inline, data_docs, home="../../")
        (night / "report.html").write_text(page, encoding="utf-8")
    path = out_dir / "report.html"
    home = "" if night is not None else None
    path.write_text(render(results, run, inline, data_docs, home), encoding="utf-8")
    return path
