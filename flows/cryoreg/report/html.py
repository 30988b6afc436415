"""report.html: the paper's results beside this run's, KM curves, attrition flowchart, Cox model.

One self-contained file (inline CSS and SVG, no external assets, prints cleanly) so it can be
mailed or archived as is. The two figures are also written beside it as .svg files.
"""

from __future__ import annotations

import html
import io
import math
import re
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import numpy as np

from cryoreg.analysis import metrics as analyze

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

# The paper's figures as printed (metrics.md), in the format this run's values are shown in,
# so "differs" is a plain text comparison at the paper's precision.
PAPER = {
    "patients": "186 / 95",
    "age": "60.9 (29–88)",
    "procedures": "236",
    "guidance": "126 / 100 / 10",
    "tumors": "299",
    "origin": "243 / 56",
    "diameter": "2.5 / 2.2 (0.3–7.8)",
    "follow_up": "2.5 (2 months–14.6)",
    "ts": "279/295 (94.6%)",
    "te_all": "231/258 (89.5%)",
    "te_lt4cm": "213/228 (93.4%)",
    "te_ge4cm": "18/30 (60.0%)",
    "te_p": "< 0.0001",
    "ltp_all": "60/258 (23.3%)",
    "ltp_lt4cm": "41/228 (18.0%)",
    "ltp_ge4cm": "19/30 (63.3%)",
    "ltp_p": "< 0.0001",
    "ae_any": "80/236 (33.9%)",
    "ae_major": "25/236 (10.6%)",
    "ae_major_lt4cm": "17/195 (8.7%)",
    "ae_major_ge4cm": "8/41 (19.5%)",
    "ae_p": "0.04",
}
NOTES = {"ae_any": "the paper prints 33.8%; 80/236 is 33.9%", "ae_p": "Fisher exact: 0.052"}
GROUP_LABELS = {"all": "All tumors", "lt4cm": "< 4 cm", "ge4cm": "≥ 4 cm"}
COLORS = {"all": "#222222", "lt4cm": "#1f5fa8", "ge4cm": "#c0392b"}
e = html.escape


# --- formatting ------------------------------------------------------------------------------


def fmt_prop(p: dict) -> str:
    if not p["n"]:
        return f"{p['k']}/{p['n']} (–)"
    return f"{p['k']}/{p['n']} ({p['pct']:.1f}%)"


def fmt_ci(ci: list) -> str:
    if ci[0] is None:
        return "–"
    return f"{100 * ci[0]:.1f}–{100 * ci[1]:.1f}%"


def fmt_p(p: float | None) -> str:
    if p is None:
        return "–"
    return "< 0.0001" if p < 0.0001 else f"{p:.4f}"


def p_matches(paper: str, p: float | None) -> bool:
    """Whether p reads as the paper's p at the paper's precision ("< 0.0001", "0.04")."""
    if p is None:
        return False
    if paper.startswith("<"):
        return p < float(paper.lstrip("< "))
    decimals = len(paper.split(".")[1])
    return round(p, decimals) == float(paper)


def _f(x: float | None, fmt: str = ".1f") -> str:
    return "–" if x is None else format(x, fmt)


# --- the paper's table -----------------------------------------------------------------------


def cohort_rows(c: dict) -> list[tuple[str, str, str]]:
    age, diam, fu, g = c["age_years"], c["diameter_cm"], c["follow_up_years"], c["guidance"]
    months = "–" if fu["min"] is None else f"{round(fu['min'] * 12)} months"
    return [
        ("patients", "Patients / women", f"{c['patients']} / {c['women']}"),
        ("age", "Age, y: mean (min–max)", f"{_f(age['mean'])} ({age['min']}–{age['max']})"),
        ("procedures", "Procedures", str(c["procedures"])),
        ("guidance", "Guidance CT / MRI / PET-CT", f"{g['CT']} / {g['MRI']} / {g['PET/CT']}"),
        ("tumors", "Tumors", str(c["tumors"])),
        ("origin", "Metastases / primary", f"{c['metastases']} / {c['primary']}"),
        (
            "diameter",
            "Diameter, cm: mean / median (min–max)",
            f"{_f(diam['mean'])} / {_f(diam['median'])} ({_f(diam['min'])}–{_f(diam['max'])})",
        ),
        (
            "follow_up",
            "Follow-up, y: mean (min–max)",
            f"{_f(fu['mean'])} ({months}–{_f(fu['max'])})",
        ),
    ]


def _cell(text: str, cls: str = "", rowspan: int = 1) -> str:
    attrs = (f' class="{cls}"' if cls else "") + (f' rowspan="{rowspan}"' if rowspan > 1 else "")
    return f"<td{attrs}>{text}</td>"


def _row(key: str, label: str, run: str, ci: str = "", p_cells: str = "") -> str:
    paper = PAPER[key]
    same = paper == run
    note = f'<div class="note">{e(NOTES[key])}</div>' if key in NOTES else ""
    mark = '<span class="ok">✓</span>' if same else '<span class="bad">≠ differs</span>'
    return (
        f'<tr class="{"same" if same else "differs"}"><th scope="row">{e(label)}{note}</th>'
        f"{_cell(e(paper))}{_cell(e(run))}{_cell(e(ci))}{p_cells}{_cell(mark)}</tr>"
    )


def _p_cells(prefix: str, block: dict) -> str:
    """Paper p, chi-square p (dagger when an expected cell < 5) and Fisher p, over two rows."""
    paper = PAPER[f"{prefix}_p"]
    ok = p_matches(paper, block.get("p_chi2"))
    dagger = ' <sup class="flag">†</sup>' if block.get("expected_cell_below_5") else ""
    note = f'<div class="note">{e(NOTES[f"{prefix}_p"])}</div>' if f"{prefix}_p" in NOTES else ""
    chi = e(fmt_p(block.get("p_chi2"))) + dagger + ("" if ok else ' <span class="bad">≠</span>')
    return (
        _cell(e(paper) + note, rowspan=2)
        + _cell(chi, "" if ok else "differs", rowspan=2)
        + _cell(e(fmt_p(block.get("p_fisher"))), rowspan=2)
    )


def _outcome_rows(prefix: str, title: str, block: dict, groups: dict[str, str]) -> list[str]:
    rows = []
    for group, label in groups.items():
        if group.endswith("lt4cm"):
            p_cells = _p_cells(prefix, block)  # spans the lt4cm and ge4cm rows
        elif group.endswith("ge4cm"):
            p_cells = ""
        else:
            p_cells = _cell("") * 3
        p = block[group]
        rows.append(
            _row(f"{prefix}_{group}", f"{title}: {label}", fmt_prop(p), fmt_ci(p["ci95"]), p_cells)
        )
    return rows


def paper_table(m: dict) -> str:
    blank = _cell("") * 3
    rows = [_row(k, label, run, "", blank) for k, label, run in cohort_rows(m["cohort"])]
    ts = m["technical_success"]["all"]
    rows.append(_row("ts", "Technical success", fmt_prop(ts), fmt_ci(ts["ci95"]), blank))
    sizes = {"all": "all", "lt4cm": "< 4 cm", "ge4cm": "≥ 4 cm"}
    rows += _outcome_rows("te", "Technique efficacy", m["technique_efficacy"], sizes)
    rows += _outcome_rows("ltp", "Local tumor progression", m["local_tumor_progression"], sizes)
    ae_groups = {"any": "any", "major": "major", "major_lt4cm": "major, < 4 cm"}
    ae_groups["major_ge4cm"] = "major, ≥ 4 cm"
    rows += _outcome_rows("ae", "Adverse events (30 days)", m["adverse_events"], ae_groups)
    differing = sum('class="differs"' in r for r in rows)
    flagged = [
        f"{name} (smallest expected count {m[block]['min_expected_cell']:.1f})"
        for block, name in [
            ("technique_efficacy", "technique efficacy"),
            ("local_tumor_progression", "local tumor progression"),
            ("adverse_events", "major adverse events"),
        ]
        if m[block].get("expected_cell_below_5")
    ]
    summary = (
        "Every figure of the paper is reproduced."
        if not differing
        else f"{differing} row(s) differ from the paper (marked ≠)."
    )
    footnote = (
        "† At least one expected cell count of the 2×2 table is below 5"
        + (f": {e('; '.join(flagged))}" if flagged else "")
        + ". The Pearson chi-square approximation is then unreliable and the Fisher exact p is "
        "the safer reading; the paper reports the chi-square p (without continuity correction)."
    )
    return f"""
<p class="summary">{summary}</p>
<table class="results">
<thead><tr><th>Measure</th><th>Paper</th><th>This run</th><th>95% CI (exact)</th>
<th>p, paper</th><th>p, χ² (this run)</th><th>p, Fisher (this run)</th><th>Match</th></tr></thead>
<tbody>{"".join(rows)}</tbody>
</table>
<p class="footnote">Percentages are k/n; 95% CIs are Clopper-Pearson exact intervals. Tumor
outcomes compare tumors &lt; 4 cm with ≥ 4 cm; adverse events compare procedures by their largest
tumor. {footnote}</p>
<p class="footnote">Sources: patients and age from marts.dim_patient; procedures, guidance and
adverse events from marts.fct_procedure (30-day window resolved in dbt); tumors, diameter,
follow-up, technical success, technique efficacy and progression from marts.fct_tumor.</p>"""


# --- Kaplan-Meier figure ---------------------------------------------------------------------


def _svg_inline(svg: str, element_id: str, label: str) -> str:
    """An SVG document as an inline <svg> element: no XML prolog, namespaces or metadata."""
    svg = svg[svg.index("<svg") :]
    svg = re.sub(r"<metadata>.*?</metadata>\s*", "", svg, flags=re.S)
    # Several figures share one HTML document and so one id namespace: matplotlib's ids
    # (clip paths, markers) would collide across figures. Prefix them with the figure's id.
    svg = re.sub(r'\bid="([^"]+)"', rf'id="{element_id}-\1"', svg)
    svg = re.sub(r"url\(#([^)]+)\)", rf"url(#{element_id}-\1)", svg)
    svg = re.sub(r'href="#([^"]+)"', rf'href="#{element_id}-\1"', svg)
    head, rest = svg.split(">", 1)
    head = re.sub(r'\s(xmlns(:\w+)?|width|height)="[^"]*"', "", head)
    attrs = f' id="{element_id}" role="img" aria-label="{e(label)}" class="figure-svg"'
    return head.replace("<svg", "<svg" + attrs, 1) + ">" + rest


def _standalone(svg: str) -> str:
    """The file version of a matplotlib SVG: reproducible, without the metadata block."""
    return re.sub(r"<metadata>.*?</metadata>\s*", "", svg, flags=re.S)


FIGURE_STYLE = {"svg.fonttype": "none", "svg.hashsalt": "cryoreg", "font.size": 9}


def _svg_text(fig) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    return buf.getvalue()


def _axis_years(time: np.ndarray) -> tuple[int, np.ndarray]:
    xmax = max(1, min(10, math.ceil(float(time.max()))))
    return xmax, np.arange(0, xmax + 1)


def _at_risk_table(table, rows: list[tuple[str, np.ndarray]], years: np.ndarray) -> None:
    """Number at risk (time >= t) under a survival axis, one row per curve."""
    for row, (_, time) in enumerate(rows):
        for year in years:
            count = int(np.count_nonzero(time >= year))
            table.text(year, -row, _compact(count), ha="center", va="center")
    table.set_ylim(-len(rows) + 0.5, 0.5)
    table.set_yticks([-r for r in range(len(rows))], [label for label, _ in rows])
    table.set_title("Number at risk", loc="left", fontsize=8, pad=2)
    table.tick_params(left=False, bottom=False, labelbottom=False, axis="both", pad=14)
    for spine in table.spines.values():
        spine.set_visible(False)


def _time_axis(ax, xmax: int, years: np.ndarray, title: str, ylabel: str) -> None:
    ax.set(xlim=(0, xmax), ylim=(0, 1.02), title=title)
    ax.set_ylabel(ylabel)
    ax.set_xlabel("Years after cryoablation")
    ax.set_xticks(years)
    ax.grid(alpha=0.3, lw=0.5)
    ax.tick_params(labelbottom=True)


def km_svg(con: duckdb.DuckDBPyConnection, logrank_p: float | None) -> str | None:
    """Fig. 4-like LTP-free survival: all tumors, and < 4 cm vs >= 4 cm, with at-risk tables."""
    data = analyze.survival_inputs(con)
    time, event, group = data["time"], data["event"], data["size_group"]
    if len(time) == 0:
        return None
    import matplotlib
    from matplotlib.figure import Figure  # no pyplot: no global backend state, renders to SVG

    xmax, years = _axis_years(time)
    p_text = "Log-rank p not computable" if logrank_p is None else f"Log-rank p {fmt_p(logrank_p)}"
    p_text = p_text.replace("p 0", "p = 0")  # "p < 0.0001" or "p = 0.0123"
    panels = [
        ("A. All tumors", {"all": np.ones(len(time), dtype=bool)}, None),
        ("B. By tumor size", {g: group == g for g in analyze.SIZE_GROUPS}, p_text),
    ]
    with matplotlib.rc_context(FIGURE_STYLE):
        fig = Figure(figsize=(11, 5))
        grid = fig.add_gridspec(2, 2, height_ratios=[4, 0.8], hspace=0.45, wspace=0.25)
        for col, (title, groups, legend_title) in enumerate(panels):
            ax = fig.add_subplot(grid[0, col])
            table = fig.add_subplot(grid[1, col], sharex=ax)
            for name, mask in groups.items():
                _km_curve(ax, time[mask], event[mask], name, xmax)
            rows = [(GROUP_LABELS[g], time[mask]) for g, mask in groups.items()]
            _at_risk_table(table, rows, years)
            _time_axis(ax, xmax, years, title, "LTP-free survival")
            ax.legend(loc="lower left", title=legend_title, frameon=False)
        return _svg_text(fig)


def os_svg(con: duckdb.DuckDBPyConnection) -> str | None:
    """Kaplan-Meier overall survival per patient from the first procedure (marts.dim_patient)."""
    try:
        data = analyze.overall_survival_inputs(con)
    except duckdb.Error:
        return None
    time, event = data["time"], data["event"]
    if len(time) == 0:
        return None
    import matplotlib
    from matplotlib.figure import Figure

    xmax, years = _axis_years(time)
    label = f"All patients (n = {len(time)}, deaths = {int(event.sum())})"
    with matplotlib.rc_context(FIGURE_STYLE):
        fig = Figure(figsize=(6.5, 4.6))
        grid = fig.add_gridspec(2, 1, height_ratios=[4, 0.45], hspace=0.45)
        ax = fig.add_subplot(grid[0])
        table = fig.add_subplot(grid[1], sharex=ax)
        _km_curve(ax, time, event, "all", xmax, label=label)
        _at_risk_table(table, [("Patients", time)], years)
        _time_axis(ax, xmax, years, "Overall survival from the first procedure", "Survival")
        ax.set_xlabel("Years after the first cryoablation")
        ax.legend(loc="lower left", frameon=False)
        return _svg_text(fig)


def _cif_curves(ax, fits: dict, name: str, label: str, xmax: float, death: bool) -> None:
    """AJ cumulative incidence of LTP (band: 95% CI), 1 - KM dashed, death CIF dotted."""
    color = COLORS[name]

    def steps(frame) -> tuple[np.ndarray, np.ndarray]:
        x, y = frame.index.to_numpy(), frame.to_numpy()
        if len(x) > 1500:  # as for KM: read the step function on a fine grid
            grid = np.linspace(0, min(xmax, x[-1]), 1001)
            y = y[np.searchsorted(x, grid, side="right") - 1]
            x = grid
        return x, y

    x, y = steps(fits["ltp"].cumulative_density_)
    ax.step(x, y[:, 0], where="post", color=color, lw=1.5, label=f"{label}: LTP, Aalen-Johansen")
    cx, ci = steps(fits["ltp"].confidence_interval_cumulative_density_)
    ci = np.nan_to_num(ci, nan=0.0)
    ax.fill_between(cx, ci.min(axis=1), ci.max(axis=1), step="post", color=color, alpha=0.15, lw=0)
    kx, ky = steps(fits["km"].survival_function_)
    ax.step(kx, 1 - ky[:, 0], where="post", color=color, lw=1.1, ls="--", label=f"{label}: 1 − KM")
    if death:
        dx, dy = steps(fits["death"].cumulative_density_)
        ax.step(
            dx,
            dy[:, 0],
            where="post",
            color="#777777",
            lw=1.1,
            ls=":",
            label=f"{label}: death without LTP",
        )


def cif_svg(con: duckdb.DuckDBPyConnection) -> str | None:
    """Cumulative incidence of LTP with death as a competing risk beside 1 - KM."""
    try:
        data = analyze.competing_inputs(con)
    except duckdb.Error:
        return None
    time, code, group = data["time"], data["code"], data["size_group"]
    if len(time) == 0:
        return None
    import matplotlib
    from matplotlib.figure import Figure

    xmax, years = _axis_years(time)
    panels = [
        ("A. All tumors", {"all": np.ones(len(time), dtype=bool)}),
        ("B. By tumor size", {g: group == g for g in analyze.SIZE_GROUPS}),
    ]
    with matplotlib.rc_context(FIGURE_STYLE):
        fig = Figure(figsize=(11, 5.4))
        grid = fig.add_gridspec(2, 2, height_ratios=[4, 0.8], hspace=0.45, wspace=0.25)
        for col, (title, groups) in enumerate(panels):
            ax = fig.add_subplot(grid[0, col])
            table = fig.add_subplot(grid[1, col], sharex=ax)
            for name, mask in groups.items():
                fits = analyze.fit_competing(time[mask], code[mask])
                if fits is not None:
                    _cif_curves(ax, fits, name, GROUP_LABELS[name], xmax, death=col == 0)
            _at_risk_table(table, [(GROUP_LABELS[g], time[m]) for g, m in groups.items()], years)
            _time_axis(ax, xmax, years, title, "Cumulative incidence")
            ax.legend(loc="upper left", frameon=False, fontsize=8)
        return _svg_text(fig)


def _compact(n: int) -> str:
    """At-risk counts short enough for an 11-column table at registry scale."""
    if n < 10_000:
        return str(n)
    return f"{n / 1000:.0f}k" if n < 1_000_000 else f"{n / 1e6:.1f}M"


def _km_curve(
    ax, time: np.ndarray, event: np.ndarray, name: str, xmax: float, label: str | None = None
) -> None:
    kmf = analyze.fit_km(time, event)
    if kmf is None:
        return
    color = COLORS[name]
    x = kmf.survival_function_.index.to_numpy()
    y = kmf.survival_function_.iloc[:, 0].to_numpy()
    ci = kmf.confidence_interval_survival_function_.to_numpy()
    ci[y == 0] = 0.0  # Greenwood is undefined at S = 0 (lifelines reports 1.0 there)
    if len(x) > 1500:  # large cohorts: the step function read on a 1/1000-axis grid looks the same
        grid = np.linspace(0, min(xmax, x[-1]), 1001)
        steps = np.searchsorted(x, grid, side="right") - 1
        x, y, ci = grid, y[steps], ci[steps]
    label = label or f"{GROUP_LABELS[name]} (n = {len(time)}, events = {int(event.sum())})"
    ax.step(x, y, where="post", color=color, lw=1.4, label=label)
    ax.fill_between(x, ci[:, 0], ci[:, 1], step="post", color=color, alpha=0.15, lw=0)
    # one tick per 1/500 of the axis is indistinguishable from all of them, and keeps it small
    grid = max(float(time.max()), 1.0) / 500
    censored = np.unique(np.round(time[~event] / grid) * grid)
    if len(censored):
        surv = kmf.survival_function_at_times(censored).to_numpy()
        ax.plot(censored, surv, "|", color=color, ms=5, mew=0.8)


# --- attrition flowchart ---------------------------------------------------------------------


def attrition_steps(con: duckdb.DuckDBPyConnection) -> list[tuple]:
    """Rows of marts.fct_tumor_attrition in order; empty when the mart is missing."""
    try:
        return con.execute(
            """
            select step_order, step, tumors_remaining, tumors_excluded, exclusion_reason
            from marts.fct_tumor_attrition order by step_order
            """
        ).fetchall()
    except duckdb.Error:
        return []


def _text_lines(x: float, y: float, lines: list[str], cls: str = "") -> str:
    spans = "".join(
        f'<tspan x="{x}" dy="{0 if i == 0 else 16}">{e(line)}</tspan>'
        for i, line in enumerate(lines)
    )
    return f'<text x="{x}" y="{y}" class="{cls}" text-anchor="middle">{spans}</text>'


def flowchart_svg(steps: list[tuple]) -> str:
    """Fig. 1-like inclusion chart: a box per step, excluded tumors in side boxes."""
    box_w, side_w, left, side_x, center = 280, 260, 10, 340, 150
    parts, y = [], 10
    for i, (_, step, remaining, excluded, reason) in enumerate(steps):
        if i:
            side = [f"Excluded: {_tumors(excluded)}", *textwrap.wrap(reason or "", 36)]
            side_h = 16 + 16 * len(side)
            gap = max(64, side_h + 20)
            mid = y + gap / 2
            parts.append(_arrow(center, y, center, y + gap - 2))
            if excluded:
                parts.append(_arrow(center, mid, side_x - 2, mid))
                parts.append(_box(side_x, mid - side_h / 2, side_w, side_h, "fc-excl"))
                parts.append(_text_lines(side_x + side_w / 2, mid - side_h / 2 + 21, side))
            y += gap
        lines = [*textwrap.wrap(step, 34), f"n = {_tumors(remaining)}"]
        h = 16 + 16 * len(lines)
        parts.append(_box(left, y, box_w, h, "fc-step"))
        parts.append(_text_lines(left + box_w / 2, y + 21, lines, "fc-text"))
        y += h
    width, height = side_x + side_w + 10, y + 10
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" font-family="Helvetica, Arial, sans-serif" '
        'font-size="13"><defs><marker id="fc-arrowhead" markerWidth="8" markerHeight="8" '
        'refX="7" refY="4" orient="auto"><path d="M0,0 L8,4 L0,8 z" fill="#333"/></marker>'
        "<style>.fc-step{fill:#eef3fa;stroke:#1f5fa8;stroke-width:1.2}"
        ".fc-excl{fill:#fbeeee;stroke:#c0392b;stroke-width:1}"
        ".fc-arrow{stroke:#333;stroke-width:1.2}.fc-text tspan:last-child{font-weight:bold}"
        "</style></defs>" + "".join(parts) + "</svg>"
    )


def _tumors(n: int) -> str:
    return f"{n} tumor" if n == 1 else f"{n} tumors"


def _box(x: float, y: float, w: float, h: float, cls: str) -> str:
    return f'<rect x="{x}" y="{y}" width="{w}" height="{h}" rx="3" class="{cls}"/>'


def _arrow(x1: float, y1: float, x2: float, y2: float) -> str:
    return (
        f'<line x1="{x1}" y1="{y1}" x2="{x2}" y2="{y2}" class="fc-arrow" '
        'marker-end="url(#fc-arrowhead)"/>'
    )


# --- other sections --------------------------------------------------------------------------


def km_table(s: dict) -> str:
    head = "".join(f"<th>{t} y</th>" for t in analyze.KM_YEARS)
    rows = []
    for g in ("all", "lt4cm", "ge4cm"):
        km = s[g]
        cells = []
        for t in analyze.KM_YEARS:
            at = km["at_years"][str(t)]
            surv = "–" if at["survival"] is None else f"{100 * at['survival']:.1f}%"
            cells.append(
                f"<td>{surv} ({fmt_ci(at['ci95'])})<br><small>at risk {at['at_risk']}</small></td>"
            )
        median = "not reached" if km["median_years"] is None else f"{km['median_years']:.1f} y"
        if not km["n"]:
            median = "–"
        rows.append(
            f"<tr><th scope='row'>{e(GROUP_LABELS[g])}</th><td>{km['n']}</td>"
            f"<td>{km['events']}</td><td>{median}</td>{''.join(cells)}</tr>"
        )
    return (
        f"<table><thead><tr><th>Group</th><th>n</th><th>LTP events</th><th>Median</th>{head}"
        f"</tr></thead><tbody>{''.join(rows)}</tbody></table>"
        f"<p class='footnote'>LTP-free survival (95% CI, Greenwood on the log(-log) scale). "
        f"Log-rank &lt; 4 cm vs ≥ 4 cm: p {e(fmt_p(s.get('logrank_p')))}. "
        "Source: marts.fct_tumor.</p>"
    )


def _ci_text(ci: list) -> str:
    return f"{_f(ci[0], '.2f')}–{_f(ci[1], '.2f')}"


def cox_section(cox: dict | None, clustered: dict | None = None) -> str:
    """The Cox table: hazard ratios with naive CIs beside CIs clustered by patient."""
    if not cox:
        return "<p>No Cox model in these metrics.</p>"
    robust = clustered if clustered and clustered.get("fitted") else None
    clusters = f", patients (clusters) = {robust['clusters']}" if robust else ""
    intro = (
        f"<p>Cox proportional hazards model of local tumor progression over TE-evaluable "
        f"tumors: n = {cox['n']}, events = {cox['events']}{clusters}; references: primary "
        f"tumor, CT guidance.</p>"
    )
    if not cox.get("fitted"):
        return intro + f"<p class='bad'>Not fitted: {e(str(cox.get('error', 'unknown')))}.</p>"
    rows = ""
    for name, c in cox["covariates"].items():
        r = (robust or {}).get("covariates", {}).get(name)
        robust_cells = (
            f"<td>{_ci_text(r['ci95'])}</td><td>{e(fmt_p(r['p']))}</td>" if r else _cell("–") * 2
        )
        rows += (
            f"<tr><th scope='row'>{e(c['label'])}</th><td>{_f(c['hr'], '.2f')}</td>"
            f"<td>{_ci_text(c['ci95'])}</td><td>{e(fmt_p(c['p']))}</td>{robust_cells}</tr>"
        )
    notes = (
        [f"Not estimable (no variation): {e(', '.join(cox['dropped']))}."] if cox["dropped"] else []
    )
    if not cox.get("converged"):
        notes.append(
            "<span class='bad'>The model did not converge cleanly; read the hazard "
            "ratios with caution.</span>"
        )
    notes += [e(w) for w in cox.get("warnings", [])]
    if clustered and not robust:
        notes.append(f"Clustered model not fitted: {e(str(clustered.get('error', 'unknown')))}.")
    notes.append(
        "Several tumors of one patient share the patient's biology, follow-up schedule and "
        "survival, so they are not independent observations: the naive standard errors treat "
        "them as if they were and are too small. The clustered columns use the robust "
        "(sandwich, Lin-Wei) variance with patients as clusters; the hazard ratios are the "
        "same, only their uncertainty changes. Source: marts.fct_tumor (TE-evaluable tumors, "
        "ltp_event, ltp_time_years, diameter_cm, origin, patient_key) joined to "
        "marts.fct_procedure (guidance)."
    )
    notes_html = "".join(f"<p class='footnote'>{n}</p>" for n in notes)
    return (
        intro + "<table id='cox-table'><thead><tr><th rowspan='2'>Covariate</th>"
        "<th rowspan='2'>Hazard ratio</th><th colspan='2'>Naive (tumors independent)</th>"
        "<th colspan='2'>Clustered by patient (robust SE)</th></tr><tr><th>95% CI</th>"
        "<th>p</th><th>95% CI</th><th>p</th></tr></thead>"
        f"<tbody>{rows}</tbody></table>{notes_html}"
    )


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}%"


def os_section(block: dict | None, figure_html: str) -> str:
    """Overall survival per patient: figure and the table at 1, 2, 3 and 5 years."""
    source = (
        "Source: marts.dim_patient (died, overall_survival_years; dbt model "
        "int_patient_overall_survival)."
    )
    if not block or block.get("error"):
        why = (block or {}).get("error", "not in these metrics")
        return f"{figure_html}<p>Overall survival {e(why)}. {source}</p>"
    cells = "".join(
        f"<td>{_pct(at['survival'])} ({fmt_ci(at['ci95'])})<br>"
        f"<small>at risk {at['at_risk']}</small></td>"
        for at in (block["at_years"][str(t)] for t in analyze.KM_YEARS)
    )
    median = "not reached" if block["median_years"] is None else f"{block['median_years']:.1f} y"
    follow = block.get("median_follow_up_years")
    head = "".join(f"<th>{t} y</th>" for t in analyze.KM_YEARS)
    return (
        f"<figure>{figure_html}<figcaption>Kaplan-Meier overall survival of the treated "
        "patients from their first cryoablation: death from any cause is the event; patients "
        "alive are censored at the last date known alive (last contact or imaging). Shaded "
        f"band: 95% CI (Greenwood, log(-log) scale); ticks: censored patients. {source}"
        "</figcaption></figure>"
        f"<table id='os-table'><thead><tr><th>Patients</th><th>Deaths</th><th>Median</th>"
        f"{head}</tr></thead><tbody><tr><td>{block['n']}</td><td>{block['events']}</td>"
        f"<td>{median}</td>{cells}</tr></tbody></table>"
        f"<p class='footnote'>Median follow-up (reverse Kaplan-Meier): {_f(follow)} years. "
        f"{source}</p>"
    )


def _cif_explanation(block: dict) -> str:
    """Why 1 - KM and the cumulative incidence differ, with this run's numbers."""
    all_ = block["all"]
    last = next(
        (t for t in reversed(analyze.KM_YEARS) if all_["at_years"][str(t)]["cif"] is not None),
        None,
    )
    numbers = ""
    if last is not None:
        at = all_["at_years"][str(last)]
        numbers = (
            f" At {last} years, 1 − KM puts the risk of progression at "
            f"{_pct(at['one_minus_km'])}, the cumulative incidence at {_pct(at['cif'])}, while "
            f"{_pct(at['death_cif'])} of tumors had their patient die without progression."
        )
    return (
        "<p class='explain'>Why the two differ: 1 − Kaplan-Meier treats a patient's death as "
        "censoring, as if the tumor could still progress later; it estimates the risk of "
        "progression in a world where nobody dies, and so overstates the share of tumors that "
        "actually progress. The Aalen-Johansen cumulative incidence counts death without "
        "progression as a competing event that ends the tumor's risk. The curves agree while "
        f"few patients have died and part as deaths accumulate ({all_['deaths']} of "
        f"{all_['n']} tumors here).{numbers}</p>"
    )


def cif_section(block: dict | None, figure_html: str) -> str:
    """Cumulative incidence of LTP with death as a competing risk, beside 1 - KM."""
    source = (
        "Source: marts.fct_tumor (TE-evaluable tumors: ltp_competing_event, "
        "ltp_competing_time_years, size_group; dbt model int_tumor_ltp_competing_risk)."
    )
    if not block or block.get("error"):
        why = (block or {}).get("error", "not in these metrics")
        return f"{figure_html}<p>Cumulative incidence {e(why)}. {source}</p>"
    head = "".join(f"<th>{t} y</th>" for t in analyze.KM_YEARS)
    rows = ""
    for g in ("all", "lt4cm", "ge4cm"):
        b = block[g]
        cells = "".join(
            f"<td>{_pct(at['cif'])} ({fmt_ci(at['ci95'])})<br><small>1 − KM "
            f"{_pct(at['one_minus_km'])} · death {_pct(at['death_cif'])}</small></td>"
            for at in (b["at_years"][str(t)] for t in analyze.KM_YEARS)
        )
        rows += (
            f"<tr><th scope='row'>{e(GROUP_LABELS[g])}</th><td>{b['n']}</td>"
            f"<td>{b['ltp_events']}</td><td>{b['deaths']}</td><td>{b['censored']}</td>{cells}</tr>"
        )
    return (
        f"<figure>{figure_html}<figcaption>Cumulative incidence of local tumor progression with "
        "death as a competing risk (Aalen-Johansen, solid, shaded band: 95% CI on the log(-log) "
        "scale) beside 1 − Kaplan-Meier with deaths censored (dashed); dotted: cumulative "
        "incidence of death without progression. A tumor's outcome is progression, else its "
        "patient's death, else censoring at its latest determinate imaging; a progression "
        f"and a death on the same day count as progression first. {source}</figcaption></figure>"
        f"{_cif_explanation(block)}"
        "<table id='cif-table'><thead><tr><th>Group</th><th>n</th><th>LTP</th><th>Deaths "
        f"without LTP</th><th>Censored</th>{head}</tr></thead><tbody>{rows}</tbody></table>"
        "<p class='footnote'>Cells: cumulative incidence of LTP (95% CI); below, 1 − KM and the "
        "cumulative incidence of death without LTP at the same time. This 1 − KM censors a "
        "tumor at its patient's death, so it differs slightly from 1 − the LTP-free survival "
        f"above, which censors at the latest imaging. {source}</p>"
    )


def accounting_section(run: dict | None) -> str:
    if not run:
        return "<p>No run information: this report was produced outside the nightly flow.</p>"
    files = run.get("files") or []
    parts = []
    if files:
        keys = ("read", "loaded", "quarantined")
        counts = [[int(f.get(k) or 0) for k in keys] for f in files]
        body = ""
        for f, (read, loaded, quarantined) in zip(files, counts, strict=True):
            ok = read == loaded + quarantined
            body += (
                f"<tr class='{'' if ok else 'differs'}'><td>{e(str(f.get('extract', '')))}</td>"
                f"<td>{e(str(f.get('file', '')))}</td><td>{read}</td><td>{loaded}</td>"
                f"<td>{quarantined}</td><td>{'✓' if ok else '≠'}</td></tr>"
            )
        totals = [sum(c[i] for c in counts) for i in range(3)]
        parts.append(
            "<table><thead><tr><th>Extract</th><th>File</th><th>Rows read</th><th>Loaded</th>"
            "<th>Quarantined</th><th>read = loaded + quarantined</th></tr></thead>"
            f"<tbody>{body}</tbody><tfoot><tr><th colspan='2'>Total</th><td>{totals[0]}</td>"
            f"<td>{totals[1]}</td><td>{totals[2]}</td><td></td></tr></tfoot></table>"
            "<p class='footnote'>Source: this run's ingest counts. Quarantined rows are listed "
            "with their reasons in quarantine.rejected_rows.</p>"
        )
    else:
        parts.append(
            "<p>No new extract folder was loaded in this run; the analysis uses the "
            "warehouse as already loaded.</p>"
        )
    extracts = run.get("extracts") or []
    if extracts:
        rows = "".join(
            f"<tr><td>{e(str(x.get('name', '')))}</td>"
            f"<td><code title='{e(str(x.get('content_hash', '')))}'>"
            f"{e(str(x.get('content_hash', ''))[:16])}</code></td>"
            f"<td>{'yes' if x.get('loaded_this_run') else 'earlier run'}</td></tr>"
            for x in extracts
        )
        parts.append(
            "<table><thead><tr><th>Extract folder</th><th>Content hash</th>"
            f"<th>Loaded</th></tr></thead><tbody>{rows}</tbody></table>"
        )
    dbt = run.get("dbt")
    if dbt:
        parts.append(
            f"<p>dbt build: {dbt.get('nodes')} nodes, {dbt.get('passed')} passed, "
            f"{len(dbt.get('warned') or [])} warned.</p>"
        )
    return "".join(parts)


def data_quality_section(run: dict | None, out_dir: Path) -> str:
    """The night's data-quality status, read from audit.check_results by the flow."""
    status = (run or {}).get("data_quality")
    if not status:
        return "<p>No data-quality checks were recorded for this report.</p>"
    lines = [
        f"<p id='data-quality'>Status: <strong>{e(str(status['status']))}</strong> — "
        f"{status['passed']} of {status['checks']} checks passed, {status['failed']} failed, "
        f"{status['error']} errors, {status['not_applicable']} not applicable.</p>"
    ]
    for title, items in (("Fatal", status.get("fatal")), ("Warnings", status.get("warnings"))):
        if items:
            lines.append(
                f"<p>{title}:</p><ul>" + "".join(f"<li>{e(str(i))}</li>" for i in items) + "</ul>"
            )
    if (out_dir / "data_docs" / "index.html").exists():
        lines.append(
            "<p><a href='data_docs/index.html'>Great Expectations Data Docs of this night</a> "
            "(expectation suites on the marts and on the night's delta).</p>"
        )
    lines.append(
        "<p class='footnote'>Source: audit.check_results (ingest, pandera, dbt tests and Great "
        "Expectations, one row per check and night); known exceptions are reviewed in "
        "expectations/known_exceptions.yml.</p>"
    )
    return "".join(lines)


def header(m: dict) -> str:
    run = m.get("run") or {}
    when = run.get("finished_at") or run.get("started_at") or datetime.now(UTC).isoformat()
    names = sorted(str(x.get("name", "")) for x in run.get("extracts") or [])
    covered = (
        f"{names[0]} to {names[-1]} ({len(names)} extract folders)" if names else "not recorded"
    )
    meta = [
        ("Run", f"{when}" + (f" · run {run['run_id']}" if run.get("run_id") else "")),
        ("Extracts covered", covered),
        ("Code version", str(run.get("code_version", "not recorded"))),
        ("Source", ", ".join(MARTS) + " (DuckDB warehouse, built by dbt)"),
    ]
    rows = "".join(f"<dt>{e(k)}</dt><dd>{e(v)}</dd>" for k, v in meta)
    return (
        "<header><h1>Percutaneous cryoablation of hepatic tumors: registry outcomes</h1>"
        f"<p class='sub'>Reproduction of the analysis of {e(PAPER_CITATION)}</p>"
        f"<dl class='meta'>{rows}</dl></header>"
    )


CSS = """
body{font-family:Helvetica,Arial,sans-serif;color:#222;max-width:1100px;margin:1.5em auto;
padding:0 1em;line-height:1.4;font-size:14px}
h1{font-size:1.5em;margin-bottom:.2em}h2{font-size:1.2em;border-bottom:1px solid #ccc;
margin-top:1.8em}.sub{color:#555;margin-top:0}
dl.meta{display:grid;grid-template-columns:max-content 1fr;gap:.2em 1em}dt{font-weight:bold}
dd{margin:0}table{border-collapse:collapse;margin:.6em 0;font-size:13px}
th,td{border:1px solid #ccc;padding:.3em .55em;text-align:left;vertical-align:top}
thead th{background:#f0f0f0}td{font-variant-numeric:tabular-nums}
tr.differs{background:#fff4e5}.bad{color:#b03a00;font-weight:bold}.ok{color:#1a7f37}
.note{font-weight:normal;font-size:11px;color:#666}.flag{color:#b03a00}
.footnote{font-size:12px;color:#555}.summary{font-weight:bold}
figure{margin:1em 0}figcaption{font-size:12px;color:#444}.figure-svg{width:100%;height:auto}
#attrition-flowchart{max-width:620px;width:100%;height:auto}
#os-figure{max-width:640px}.explain{max-width:60em}
@media print{body{max-width:none;margin:0;font-size:11px}h2{break-after:avoid}
figure,table{break-inside:avoid}tr.differs{background:none}thead th{background:none}
a{color:inherit;text-decoration:none}}
"""


def _figure(svg: str | None, out_dir: Path, file: str, element_id: str, label: str) -> str:
    """The inline SVG of a figure (also written beside the report), or a placeholder."""
    if not svg:
        return f'<p id="{element_id}">{e(label)}: no data.</p>'
    (out_dir / file).write_text(_standalone(svg))
    return _svg_inline(svg, element_id, label)


def write_report(metrics: dict, con: duckdb.DuckDBPyConnection, out_dir: Path) -> Path:
    """Write out_dir/report.html (self-contained) and its figures as .svg beside it."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    survival = metrics["ltp_free_survival"]
    km = km_svg(con, survival.get("logrank_p"))
    steps = attrition_steps(con)
    flow = flowchart_svg(steps) if steps else None
    if km:
        (out_dir / "km_ltp_free_survival.svg").write_text(_standalone(km))
        km_html = _svg_inline(km, "km-figure", "Kaplan-Meier LTP-free survival")
    else:
        km_html = '<p id="km-figure">No TE-evaluable tumors: no survival curve.</p>'
    if flow:
        (out_dir / "attrition_flowchart.svg").write_text(flow)
        flow_html = _svg_inline(flow, "attrition-flowchart", "Tumor inclusion flowchart")
    else:
        flow_html = '<p id="attrition-flowchart">marts.fct_tumor_attrition is not available.</p>'
    os_html = _figure(
        os_svg(con), out_dir, "overall_survival.svg", "os-figure", "Kaplan-Meier overall survival"
    )
    cif_html = _figure(
        cif_svg(con),
        out_dir,
        "ltp_cumulative_incidence.svg",
        "cif-figure",
        "Cumulative incidence of local tumor progression with death as a competing risk",
    )
    body = f"""{header(metrics)}
<main>
<h2>Results beside the paper</h2>{paper_table(metrics)}
<h2>Local tumor progression-free survival</h2>
<figure>{km_html}<figcaption>Kaplan-Meier local tumor progression-free survival of
technique-efficacy-evaluable tumors (as Fig. 4 of the paper): shaded bands are 95% confidence
intervals (Greenwood, log(-log) scale), ticks mark censored tumors, the tables give the number
at risk. Log-rank &lt; 4 cm vs ≥ 4 cm: p {e(fmt_p(survival.get("logrank_p")))}. Source:
marts.fct_tumor (te_evaluable, ltp_event, ltp_time_years, size_group).</figcaption>
</figure>{km_table(survival)}
<h2>Tumors included</h2>
<figure>{flow_html}<figcaption>Inclusion of tumors in the outcome analyses (as Fig. 1 of the
paper). Source: marts.fct_tumor_attrition.</figcaption></figure>
<h2>Beyond the paper: overall survival</h2>{os_section(metrics.get("overall_survival"), os_html)}
<h2>Beyond the paper: local tumor progression with death as a competing risk</h2>
{cif_section(metrics.get("ltp_cumulative_incidence"), cif_html)}
<h2>Beyond the paper: Cox model, naive and clustered by patient</h2>
{cox_section(metrics.get("cox"), metrics.get("cox_clustered"))}
<h2>Row accounting</h2>{accounting_section(metrics.get("run"))}
<h2>Data quality</h2>{data_quality_section(metrics.get("run"), out_dir)}
</main>"""
    page = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>Cryoablation registry outcomes</title><style>{CSS}</style></head>"
        f"<body>{body}</body></html>\n"
    )
    path = out_dir / "report.html"
    path.write_text(page, encoding="utf-8")
    return path
