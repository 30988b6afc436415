"""The report's figures as SVG, drawn from the analysis' fitted curves (nothing is refitted).

Kaplan-Meier and cumulative-incidence figures by matplotlib (no pyplot: no global backend
state); the attrition flowchart laid out here and written by a Jinja2 template.
"""

from __future__ import annotations

import io
import math
import re
import textwrap
from dataclasses import dataclass

import numpy as np
from markupsafe import Markup, escape

from cryoreg.analysis.results import (
    SIZE_GROUPS,
    AttritionStep,
    CumulativeIncidence,
    FollowUp,
    KaplanMeier,
    LtpFreeSurvival,
    OverallSurvival,
    StepCurve,
)

GROUP_LABELS = {"all": "All tumors", "lt4cm": "< 4 cm", "ge4cm": "≥ 4 cm"}
COLORS = {"all": "#222222", "lt4cm": "#1f5fa8", "ge4cm": "#c0392b"}
FIGURE_STYLE = {"svg.fonttype": "none", "svg.hashsalt": "cryoreg", "font.size": 9}
# above this many steps a curve is read on a 1/1000-axis grid: it looks the same, and the
# file stays small at registry scale
MAX_STEPS_DRAWN = 1500
# room between a panel's title and its axes for a legend of two lines (title and entries)
LEGEND_PAD = 34


def p_text(p: float | None) -> str:
    if p is None:
        return "–"
    return "< 0.0001" if p < 0.0001 else f"{p:.4f}"


# --- SVG documents -----------------------------------------------------------------------------


def inline(svg: str, element_id: str, label: str) -> Markup:
    """An SVG document as an inline <svg> element: no XML prolog, namespaces or metadata."""
    svg = standalone(svg[svg.index("<svg") :])
    # Several figures share one HTML document and so one id namespace: matplotlib's ids
    # (clip paths, markers) would collide across figures. Prefix them with the figure's id.
    svg = re.sub(r'\bid="([^"]+)"', rf'id="{element_id}-\1"', svg)
    svg = re.sub(r"url\(#([^)]+)\)", rf"url(#{element_id}-\1)", svg)
    svg = re.sub(r'href="#([^"]+)"', rf'href="#{element_id}-\1"', svg)
    head, rest = svg.split(">", 1)
    head = re.sub(r'\s(xmlns(:\w+)?|width|height)="[^"]*"', "", head)
    attrs = f' id="{element_id}" role="img" aria-label="{escape(label)}" class="figure-svg"'
    return Markup(head.replace("<svg", "<svg" + attrs, 1) + ">" + rest)


def standalone(svg: str) -> str:
    """The file version of a matplotlib SVG: reproducible, without the metadata block."""
    return re.sub(r"<metadata>.*?</metadata>\s*", "", svg, flags=re.S)


def _svg_text(fig, source: str) -> str:
    """The figure as an SVG document, naming the marts it comes from under its axes (the file
    is also read apart from the report)."""
    fig.text(0.01, 0.0, f"Source: {source}", ha="left", va="top", fontsize=7, color="#555555")
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    return buf.getvalue()


# --- axes --------------------------------------------------------------------------------------


def _axis_years(max_time: float) -> tuple[int, np.ndarray]:
    xmax = max(1, min(10, math.ceil(max_time)))
    return xmax, np.arange(0, xmax + 1)


def _compact(n: int) -> str:
    """At-risk counts short enough for an 11-column table at registry scale."""
    if n < 10_000:
        return str(n)
    return f"{n / 1000:.0f}k" if n < 1_000_000 else f"{n / 1e6:.1f}M"


def _at_risk_table(table, rows: list[tuple[str, FollowUp | None]], years: np.ndarray) -> None:
    """Number at risk (time >= t) under a survival axis, one row per curve."""
    for row, (_, follow_up) in enumerate(rows):
        for year in years:
            count = follow_up.at_risk_by_year[int(year)] if follow_up else 0
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


def _drawn(curve: StepCurve, xmax: float) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """The steps to draw (times, values, band as two columns with 0 where undefined)."""
    x, y = curve.times, curve.values
    band = None
    if curve.lower is not None and curve.upper is not None:
        band = np.nan_to_num(np.column_stack([curve.lower, curve.upper]), nan=0.0)
    if len(x) > MAX_STEPS_DRAWN:
        grid = np.linspace(0, min(xmax, x[-1]), 1001)
        steps = np.searchsorted(x, grid, side="right") - 1
        x, y = grid, y[steps]
        band = None if band is None else band[steps]
    return x, y, band


# --- Kaplan-Meier ------------------------------------------------------------------------------


def _km_curve(ax, km: KaplanMeier, name: str, xmax: float, label: str | None = None) -> None:
    if km.curve is None:
        return
    color = COLORS[name]
    x, y, band = _drawn(km.curve, xmax)
    label = label or f"{GROUP_LABELS[name]} (n = {km.n}, events = {km.events})"
    ax.step(x, y, where="post", color=color, lw=1.4, label=label)
    ax.fill_between(x, band[:, 0], band[:, 1], step="post", color=color, alpha=0.15, lw=0)
    # one tick per 1/500 of the axis is indistinguishable from all of them, and keeps it small
    grid = max(km.follow_up.max_time, 1.0) / 500
    censored = np.unique(np.round(km.censored_times / grid) * grid)
    if len(censored):
        ax.plot(censored, km.curve.at(censored), "|", color=color, ms=5, mew=0.8)


def km_svg(survival: LtpFreeSurvival) -> str | None:
    """Fig. 4-like LTP-free survival: all tumors, and < 4 cm vs >= 4 cm, with at-risk tables."""
    if survival["all"].follow_up is None:
        return None
    import matplotlib
    from matplotlib.figure import Figure

    xmax, years = _axis_years(survival["all"].follow_up.max_time)
    p = survival.logrank_p
    p_label = "Log-rank p not computable" if p is None else f"Log-rank p {p_text(p)}"
    p_label = p_label.replace("p 0", "p = 0")  # "p < 0.0001" or "p = 0.0123"
    panels = [("A. All tumors", ("all",), None), ("B. By tumor size", SIZE_GROUPS, p_label)]
    with matplotlib.rc_context(FIGURE_STYLE):
        fig = Figure(figsize=(11, 5))
        grid = fig.add_gridspec(2, 2, height_ratios=[4, 0.8], hspace=0.45, wspace=0.25)
        for col, (title, groups, legend_title) in enumerate(panels):
            ax = fig.add_subplot(grid[0, col])
            table = fig.add_subplot(grid[1, col], sharex=ax)
            for name in groups:
                _km_curve(ax, survival[name], name, xmax)
            rows = [(GROUP_LABELS[g], survival[g].follow_up) for g in groups]
            _at_risk_table(table, rows, years)
            _time_axis(ax, xmax, years, title, "LTP-free survival")
            # above the axes, under the title: inside, it would hide a curve or its band
            ax.set_title(title, pad=LEGEND_PAD)
            legend = ax.legend(
                loc="lower left",
                bbox_to_anchor=(0, 1.01),
                ncol=len(groups),
                title=legend_title,
                alignment="left",
                columnspacing=1.2,
                handlelength=1.6,
                frameon=False,
                borderaxespad=0,
            )
            legend.set_gid(f"legend-{col}")
        return _svg_text(fig, survival.source)


def os_svg(overall: OverallSurvival) -> str | None:
    """Kaplan-Meier overall survival per patient from the first procedure."""
    km = overall.km
    if km is None or km.follow_up is None:
        return None
    import matplotlib
    from matplotlib.figure import Figure

    xmax, years = _axis_years(km.follow_up.max_time)
    label = f"All patients (n = {km.n}, deaths = {km.events})"
    with matplotlib.rc_context(FIGURE_STYLE):
        fig = Figure(figsize=(6.5, 4.6))
        grid = fig.add_gridspec(2, 1, height_ratios=[4, 0.45], hspace=0.45)
        ax = fig.add_subplot(grid[0])
        table = fig.add_subplot(grid[1], sharex=ax)
        _km_curve(ax, km, "all", xmax, label=label)
        _at_risk_table(table, [("Patients", km.follow_up)], years)
        _time_axis(ax, xmax, years, "Overall survival from the first procedure", "Survival")
        ax.set_xlabel("Years after the first cryoablation")
        ax.legend(loc="lower left", frameon=False)
        return _svg_text(fig, f"{overall.source} (died, overall_survival_years)")


# --- competing risks -----------------------------------------------------------------------------


def _cif_curves(ax, risk, name: str, xmax: float, death: bool) -> None:
    """AJ cumulative incidence of LTP (band: 95% CI), 1 - KM dashed, death CIF dotted."""
    color, label = COLORS[name], GROUP_LABELS[name]
    x, y, band = _drawn(risk.ltp, xmax)
    ax.step(x, y, where="post", color=color, lw=1.5, label=f"{label}: LTP, Aalen-Johansen")
    ax.fill_between(x, band[:, 0], band[:, 1], step="post", color=color, alpha=0.15, lw=0)
    kx, ky, _ = _drawn(risk.km, xmax)
    ax.step(kx, 1 - ky, where="post", color=color, lw=1.1, ls="--", label=f"{label}: 1 − KM")
    if death:
        dx, dy, _ = _drawn(risk.death, xmax)
        ax.step(
            dx,
            dy,
            where="post",
            color="#777777",
            lw=1.1,
            ls=":",
            label=f"{label}: death without LTP",
        )


def cif_svg(incidence: CumulativeIncidence) -> str | None:
    """Cumulative incidence of LTP with death as a competing risk beside 1 - KM."""
    if incidence.error or incidence["all"].follow_up is None:
        return None
    import matplotlib
    from matplotlib.figure import Figure

    xmax, years = _axis_years(incidence["all"].follow_up.max_time)
    panels = [("A. All tumors", ("all",)), ("B. By tumor size", SIZE_GROUPS)]
    with matplotlib.rc_context(FIGURE_STYLE):
        fig = Figure(figsize=(11, 5.4))
        grid = fig.add_gridspec(2, 2, height_ratios=[4, 0.8], hspace=0.45, wspace=0.25)
        for col, (title, groups) in enumerate(panels):
            ax = fig.add_subplot(grid[0, col])
            table = fig.add_subplot(grid[1, col], sharex=ax)
            for name in groups:
                if incidence[name].ltp is not None:
                    _cif_curves(ax, incidence[name], name, xmax, death=col == 0)
            rows = [(GROUP_LABELS[g], incidence[g].follow_up) for g in groups]
            _at_risk_table(table, rows, years)
            _time_axis(ax, xmax, years, title, "Cumulative incidence")
            ax.legend(loc="upper left", frameon=False, fontsize=8)
        columns = "ltp_competing_event, ltp_competing_time_years, size_group"
        return _svg_text(fig, f"{incidence.source} ({columns})")


# --- attrition flowchart -------------------------------------------------------------------------


@dataclass(frozen=True)
class Box:
    x: float
    y: float
    w: float
    h: float
    cls: str
    lines: list[str]
    text_cls: str = ""

    @property
    def text_x(self) -> float:
        return self.x + self.w / 2

    @property
    def text_y(self) -> float:
        return self.y + 21


def _tumors(n: int) -> str:
    return f"{n} tumor" if n == 1 else f"{n} tumors"


def flowchart_layout(steps: tuple[AttritionStep, ...]) -> dict:
    """Fig. 1-like inclusion chart: a box per step, excluded tumors in side boxes; `parts` in
    drawing order (arrows as (x1, y1, x2, y2), boxes as Box)."""
    box_w, side_w, left, side_x, center = 280, 260, 10, 340, 150
    parts: list[Box | tuple] = []
    y = 10
    for i, step in enumerate(steps):
        if i:
            side = [f"Excluded: {_tumors(step.tumors_excluded)}"]
            side += textwrap.wrap(step.exclusion_reason or "", 36)
            side_h = 16 + 16 * len(side)
            gap = max(64, side_h + 20)
            mid = y + gap / 2
            parts.append((center, y, center, y + gap - 2))
            if step.tumors_excluded:
                parts.append((center, mid, side_x - 2, mid))
                parts.append(Box(side_x, mid - side_h / 2, side_w, side_h, "fc-excl", side))
            y += gap
        lines = [*textwrap.wrap(step.step, 34), f"n = {_tumors(step.tumors_remaining)}"]
        h = 16 + 16 * len(lines)
        parts.append(Box(left, y, box_w, h, "fc-step", lines, "fc-text"))
        y += h
    return {"parts": parts, "width": side_x + side_w + 10, "height": y + 30, "source_y": y + 22}
