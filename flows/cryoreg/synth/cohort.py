"""The cohort's plan: which patients, procedures, tumors, reads and events the registry holds.

The paper profile draws exact-count label arrays (shuffled per seed) and calibrates the
continuous values (ages, diameters, follow-up) so that the pipeline reproduces every count of
Glazer et al. (AJR 2017); the scale profile draws the same shares at random, one chunk at a
time. The plan is arrays of day numbers and label indices; `frames` turns it into the files.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np

from cryoreg import paper
from cryoreg.contract import BY_ENTITY

EPOCH = date(1970, 1, 1)
EXTRACT_DATE = date(2014, 12, 31)
EXTRACT_DAY = (EXTRACT_DATE - EPOCH).days
FIRST_DAY = (date(1998, 1, 1) - EPOCH).days
PETCT_GUIDANCE_FROM = (date(2008, 1, 1) - EPOCH).days
PETCT_IMAGING_FROM = (date(2002, 1, 1) - EPOCH).days
MISSING = -(10**7)  # day number of a missing date


def _codes(entity: str, column: str) -> tuple[str, ...]:
    return BY_ENTITY[entity].column(column).codes


# The contract's codes; labels below are indices into them
GUIDANCE = _codes("procedures", "guidance")
TECH = _codes("tumors", "technical_result")
ORIGINS = _codes("tumors", "origin")
MODALITIES = _codes("imaging", "modality")
FINDINGS = _codes("imaging", "finding")
CT, MRI, PET = (MODALITIES.index(m) for m in ("CT", "MRI", "PET/CT"))
OK, INC, NA = (TECH.index(t) for t in ("complete", "incomplete", "not_assessed"))
NO, RES, PROG, IND = (
    FINDINGS.index(f) for f in ("no_tumor", "residual_tumor", "local_progression", "indeterminate")
)

# --- the paper's cohort as exact counts (the scale profile uses them as shares) ---------------
# The figures the paper prints come from cryoreg.paper; the splits that reach them (how many
# patients had two procedures, ...) are this plan's own choices, checked against the paper's
# totals by the tests.
PAPER_PATIENTS = paper.PATIENTS
WOMEN = paper.WOMEN
PROCS_PER_PATIENT = (145, 33, 7, 1)  # patients with 1, 2, 3, 4 procedures
TUMORS_PER_PROC = (189, 34, 10, 3)  # procedures with 1..4 tumors
PRIMARY_TUMORS = paper.PRIMARY
# procedures lt4cm / ge4cm (by largest tumor): one >= 40 mm tumor each
PROC_SIZE = tuple(paper.MAJOR_ADVERSE_EVENTS[g].n for g in ("lt4cm", "ge4cm"))
CT_MRI = {g: paper.GUIDANCE[g] for g in ("CT", "MRI")}
PETCT = paper.GUIDANCE["PET/CT"]  # only from 2008 on
PETCT_SHARE_FROM_2008 = 0.065
PET_GUIDED = GUIDANCE.index("PET/CT")
CT_MRI_GUIDED = np.array([GUIDANCE.index(g) for g in CT_MRI])
AGE_MIN, AGE_MAX = paper.AGE_MIN, paper.AGE_MAX
AGE_SUM = round(paper.AGE_MEAN * paper.PATIENTS)  # a mean of 60.898 prints as 60.9
LARGE_MM = 40  # the paper's size groups: under 4 cm, 4 cm or more
DIAMETER_MIN_MM, DIAMETER_MEDIAN_MM, DIAMETER_MAX_MM = (
    round(10 * cm)
    for cm in (paper.DIAMETER_CM_MIN, paper.DIAMETER_CM_MEDIAN, paper.DIAMETER_CM_MAX)
)
DIAMETER_SUM = round(10 * paper.DIAMETER_CM_MEAN * paper.TUMORS)  # every tumor, in mm
FOLLOW_UP_MEAN_DAYS = paper.FOLLOW_UP_YEARS_MEAN * 365.25
FOLLOW_UP_MAX_DAYS = 5330  # 14.59 years (printed 14.6): the one longest-followed tumor
FOLLOW_UP_MIN_DAYS = round(paper.FOLLOW_UP_MONTHS_MIN * 365.25 / 12)  # the shortest-followed
FOLLOW_UP_CAP_DAYS = 5200  # every other tumor stays below the maximum
FOLLOW_UP_FLOOR_DAYS = 100  # a patient's imaging runs at least this long after the last procedure
EVALUABLE_MIN_DAYS = 90  # shorter possible follow-up: the tumor is planned not TE-evaluable
SCALE_FOLLOW_UP = 1000.0  # days per unit of the follow-up draw (the paper calibrates its own)

# Tumor plan cells: (size group 0 lt4cm / 1 ge4cm, class, technical_result, count).
# Classes: not TE-evaluable; TE failure (residual tumor: an LTP event); TE success with later
# local progression; TE success without progression.
NE, FAIL, LTP, CLEAN = 0, 1, 2, 3
CELLS = np.array(
    [
        (0, FAIL, OK, 11), (0, FAIL, INC, 4), (0, LTP, OK, 25), (0, LTP, INC, 1),
        (0, CLEAN, OK, 186), (0, CLEAN, INC, 1), (0, NE, OK, 26), (0, NE, INC, 1), (0, NE, NA, 3),
        (1, FAIL, OK, 6), (1, FAIL, INC, 6), (1, LTP, OK, 7), (1, CLEAN, OK, 10),
        (1, CLEAN, INC, 1), (1, NE, OK, 8), (1, NE, INC, 2), (1, NE, NA, 1),
    ]
)  # fmt: skip
CELL_GROUP, CELL_CLASS, CELL_TECH, CELL_COUNT = CELLS.T
AE_MINOR_LT4CM = 47  # procedures under 4 cm whose worst event was minor
AE_CLASSES = tuple(  # per procedure size group: procedures with no / minor / major events
    (major.n - minor - major.k, minor, major.k)
    for major, minor in (
        (paper.MAJOR_ADVERSE_EVENTS["lt4cm"], AE_MINOR_LT4CM),
        (
            paper.MAJOR_ADVERSE_EVENTS["ge4cm"],
            paper.ADVERSE_EVENTS.k - paper.MAJOR_ADVERSE_EVENTS["all"].k - AE_MINOR_LT4CM,
        ),
    )
)
AE_EVENTS_P = (0.70, 0.22, 0.08)  # 1, 2, 3 events within 30 days of an AE procedure
P_LATE_AE = 0.03  # procedures with an event after day 30 (kept, never counted)
P_GRADE5 = 0.04  # scale: share of major-AE procedures (a patient's last) ending in death

HISTOLOGY = {
    "primary": (("hcc", 0.86), ("cholangiocarcinoma", 0.14)),
    "metastasis": (
        ("colorectal", 0.55),
        ("neuroendocrine", 0.14),
        ("breast", 0.10),
        ("renal_cell", 0.08),
        ("melanoma", 0.06),
        ("sarcoma", 0.04),
        ("other", 0.03),
    ),
}
HISTOLOGY_NAMES = tuple(name for o in ORIGINS for name, _ in HISTOLOGY[o])
SEGMENT_P = (0.03, 0.10, 0.10, 0.14, 0.13, 0.15, 0.17, 0.18)
MODALITY_P = {"CT": 0.50, "MRI": 0.35, "PET/CT": 0.07, "US": 0.08}
# why a tumor is not TE-evaluable: no imaging / only reads before day 30 / only indeterminate
# reads inside days 30-180 / first read after day 180
LOST, EARLY, INDET, LATE = 0, 1, 2, 3
NE_KINDS_P = (0.30, 0.20, 0.25, 0.25)
SCHEDULE = (90, 180, 270, 365, 545, 730, *range(1095, 5200, 365))  # days after the procedure


@dataclass
class Draw:
    """Label draws: exact counts shuffled (paper) or the same shares at random (scale)."""

    rng: np.random.Generator
    exact: bool

    def labels(self, n: int, counts) -> np.ndarray:
        counts = np.asarray(counts, dtype=np.int64)
        if self.exact:
            if counts.sum() != n:
                raise ValueError(f"label counts {counts.sum()} != {n}")
            return self.rng.permutation(np.repeat(np.arange(len(counts)), counts))
        return self.rng.choice(len(counts), size=n, p=counts / counts.sum())

    def by_group(self, group: np.ndarray, tables) -> np.ndarray:
        out = np.zeros(len(group), dtype=np.int64)
        for g, counts in enumerate(tables):
            idx = np.flatnonzero(group == g)
            out[idx] = self.labels(len(idx), counts)
        return out

    def unit(self, n: int) -> np.ndarray:
        """Probabilities for quantile draws: evenly spread (paper) or uniform (scale)."""
        if self.exact:
            return self.rng.permutation(np.linspace(0.0, 1.0, n)) if n > 1 else np.zeros(n)
        return self.rng.random(n)


def pick(p, size, rng: np.random.Generator) -> np.ndarray:
    return rng.choice(len(p), size=size, p=np.asarray(p) / np.sum(p))


def starts(counts: np.ndarray) -> np.ndarray:
    return np.cumsum(counts) - counts


# --- continuous distributions ------------------------------------------------------------------
_LT_TUMORS = int(CELL_COUNT[CELL_GROUP == 0].sum())
_MEDIAN_P = (sum(CELL_COUNT) // 2) / (_LT_TUMORS - 1)  # the cohort median is a tumor under 4 cm


def _diameter_lt(p: np.ndarray, g: float) -> np.ndarray:
    """Quantiles of tumors under 4 cm: the paper's minimum, its median, 39 mm; the shape g sets
    the mean."""
    low_mm, median_mm, high_mm = DIAMETER_MIN_MM, DIAMETER_MEDIAN_MM, LARGE_MM - 1
    low = low_mm + (median_mm - low_mm) * (np.minimum(p, _MEDIAN_P) / _MEDIAN_P) ** g
    high = median_mm + (high_mm - median_mm) * (np.maximum(p - _MEDIAN_P, 0) / (1 - _MEDIAN_P)) ** g
    return np.rint(np.where(p <= _MEDIAN_P, low, high)).astype(np.int64)


def _diameter_ge(p: np.ndarray) -> np.ndarray:
    """Quantiles of tumors of 4 cm or more: 40 mm to the paper's maximum, most near the low end."""
    return np.rint(LARGE_MM + (DIAMETER_MAX_MM - LARGE_MM) * p**2.5).astype(np.int64)


def _diameter_shape() -> float:
    """The shape that puts the paper's evenly spread diameters at a mean of 25.0 mm."""
    ge = _diameter_ge(np.linspace(0, 1, PROC_SIZE[1])).sum()
    p = np.linspace(0, 1, _LT_TUMORS)
    lo, hi = 0.2, 5.0
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _diameter_lt(p, mid).sum() + ge > DIAMETER_SUM else (lo, mid)
    return hi


DIAMETER_G = _diameter_shape()


def _ages(d: Draw, n: int) -> np.ndarray:
    """Integer ages; the paper's hit 29 and 88 and sum to the mean 60.9 exactly."""
    age = np.clip(np.rint(d.rng.normal(61.0, 11.5, n)), AGE_MIN, AGE_MAX).astype(np.int64)
    if not d.exact:
        return age
    lo, hi = np.argmin(age), np.argmax(age)
    age[lo], age[hi] = AGE_MIN, AGE_MAX
    free = np.ones(n, bool)
    free[[lo, hi]] = False
    while (diff := AGE_SUM - age.sum()) != 0:
        ok = np.flatnonzero(free & (age > AGE_MIN) & (age < AGE_MAX))
        age[d.rng.choice(ok, min(abs(diff), len(ok)), replace=False)] += np.sign(diff)
    return age


def _completed_years(birth: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Whole years from birth to at (datetime64[D] arrays; the birthday counts on its day)."""

    def parts(x):
        month = x.astype("datetime64[M]")
        day = (x - month.astype("datetime64[D]")).astype(np.int64)
        return x.astype("datetime64[Y]").astype(np.int64), month.astype(np.int64) % 12 * 32 + day

    (yb, mdb), (ya, mda) = parts(birth), parts(at)
    return ya - yb - (mda < mdb)


# --- exact-count repairs (paper) ---------------------------------------------------------------
def _force(rng, labels, idx, value, stratum, frozen) -> None:
    """Give entity idx the label value by swapping with another of its stratum."""
    if labels[idx] != value:
        cand = np.flatnonzero((labels == value) & (stratum == stratum[idx]) & ~frozen)
        other = rng.choice(cand)
        labels[idx], labels[other] = value, labels[idx]


def _swap_fix(c, needs, pool, ok, fallback: np.ndarray) -> None:
    """Tumors whose cell needs `ok` but lack it swap cells with pool-cell tumors of their size
    group that have it, so the cells' counts stay exact. Scale chunks too small for that move
    the rest to the fallback cell; the paper's plan must always fit."""
    for g in (0, 1):
        group = c.tum_group == g
        bad = np.flatnonzero(group & needs[c.cell] & ~ok & ~c.frozen)
        cand = np.flatnonzero(group & pool[c.cell] & ok & ~c.frozen)
        if len(bad) > len(cand) and c.paper:
            raise RuntimeError("the synthetic plan cannot be made feasible")
        take = c.rng.choice(cand, min(len(bad), len(cand)), replace=False)
        swap, rest = bad[: len(take)], bad[len(take) :]
        c.cell[swap], c.cell[take] = c.cell[take], c.cell[swap].copy()
        c.cell[rest] = fallback[c.cell[rest]]


def _cell_of(group: int, klass: int, tech: int) -> int:
    hit = (group == CELL_GROUP) & (klass == CELL_CLASS) & (tech == CELL_TECH)
    return int(np.flatnonzero(hit)[0])


def _cell_map(klass: int) -> np.ndarray:
    """Per cell, the cell of the same group and technical result in class klass."""
    out = np.arange(len(CELLS))
    for i, (g, _, t, _) in enumerate(CELLS):
        hit = (g == CELL_GROUP) & (klass == CELL_CLASS) & (t == CELL_TECH)
        if hit.any():
            out[i] = np.flatnonzero(hit)[0]
    return out


# --- the plan, step by step --------------------------------------------------------------------
class Plan:
    """Arrays of one cohort (the paper's, or one scale chunk) while it is being planned."""

    def __init__(self, d: Draw, n_pat: int):
        self.d, self.rng, self.paper, self.n_pat = d, d.rng, d.exact, n_pat


def _structure(c: Plan) -> None:
    """Patients -> procedures -> tumors, and (paper) the patients that pin extreme values."""
    d, rng = c.d, c.rng
    c.n_proc_of = d.labels(c.n_pat, PROCS_PER_PATIENT) + 1
    c.proc_pat = np.repeat(np.arange(c.n_pat), c.n_proc_of)
    c.n_proc = len(c.proc_pat)
    c.proc_first = starts(c.n_proc_of)
    c.proc_seq = np.arange(c.n_proc) - c.proc_first[c.proc_pat]
    c.is_last_proc = c.proc_seq == c.n_proc_of[c.proc_pat] - 1
    c.n_tum_of = d.labels(c.n_proc, TUMORS_PER_PROC) + 1
    c.tum_proc = np.repeat(np.arange(c.n_proc), c.n_tum_of)
    c.n_tum = len(c.tum_proc)
    c.tum_first = starts(c.n_tum_of)
    c.tum_seq = np.arange(c.n_tum) - c.tum_first[c.tum_proc]
    c.tum_pat = c.proc_pat[c.tum_proc]
    # paper: longest and shortest follow-up, a grade-5 death (one procedure with one tumor each)
    c.pinned = np.zeros(c.n_pat, bool)
    c.pin_max = c.pin_min = c.pin_g5 = c.pin_1998 = -1
    if c.paper:
        single = np.flatnonzero((c.n_proc_of == 1) & (c.n_tum_of[c.proc_first] == 1))
        c.pin_max, c.pin_min, c.pin_g5 = rng.choice(single, 3, replace=False)
        c.pin_1998 = rng.choice(np.flatnonzero(c.n_proc_of == 2))
        c.pinned[[c.pin_max, c.pin_min, c.pin_g5]] = True


def _patients(c: Plan) -> None:
    """Sex, age at first procedure, and one disease per patient (origin and histology)."""
    d, rng = c.d, c.rng
    c.female = d.labels(c.n_pat, (WOMEN, PAPER_PATIENTS - WOMEN)) == 0
    c.age = _ages(d, c.n_pat)
    tumors = np.bincount(c.tum_pat, minlength=c.n_pat)
    if c.paper:  # primary patients carry exactly 56 tumors
        order = rng.permutation(c.n_pat)
        c.primary = np.zeros(c.n_pat, bool)
        c.primary[order[np.cumsum(tumors[order]) <= PRIMARY_TUMORS - 4]] = True
        gap = PRIMARY_TUMORS - tumors[c.primary].sum()
        ones = np.flatnonzero(~c.primary & (tumors == 1))
        c.primary[rng.choice(ones, gap, replace=False)] = True
    else:
        c.primary = rng.random(c.n_pat) < PRIMARY_TUMORS / CELL_COUNT.sum()
    c.histology = np.zeros(c.n_pat, np.int64)  # index into HISTOLOGY_NAMES
    shift = 0
    for origin in ORIGINS:
        idx = np.flatnonzero(c.primary == (origin == "primary"))
        c.histology[idx] = shift + pick([p for _, p in HISTOLOGY[origin]], len(idx), rng)
        shift += len(HISTOLOGY[origin])


def _procedure_dates(c: Plan) -> None:
    """More procedures in later years; repeat procedures 2 months to 6.5 years apart."""
    rng = c.rng
    gap = np.minimum(60 + rng.exponential(420, c.n_proc), 2400).astype(np.int64)
    gap[c.proc_seq == 0] = 0
    csum = np.cumsum(gap)
    offset = csum - csum[c.proc_first][c.proc_pat]
    span = offset[c.proc_first + c.n_proc_of - 1]
    room = EXTRACT_DAY - FIRST_DAY - span
    c.first_day = FIRST_DAY + np.floor(np.sqrt(c.d.unit(c.n_pat)) * room).astype(np.int64)
    if c.paper:
        c.first_day[c.pin_max] = EXTRACT_DAY - FOLLOW_UP_MAX_DAYS - 40
        c.first_day[c.pin_1998] = FIRST_DAY + rng.integers(0, 300)
        for p in (c.pin_min, c.pin_g5):
            c.first_day[p] = min(c.first_day[p], EXTRACT_DAY - 400 - rng.integers(0, 2000))
    c.proc_day = c.first_day[c.proc_pat] + offset
    c.last_proc_day = c.proc_day[c.proc_first + c.n_proc_of - 1]
    c.cap = EXTRACT_DAY - c.proc_day  # the most follow-up a procedure can have


def _procedure_labels(c: Plan) -> None:
    """Size group (by largest tumor), adverse-event class and guidance per procedure."""
    d, rng = c.d, c.rng
    c.pinned_proc = c.pinned[c.proc_pat]
    size = d.labels(c.n_proc, PROC_SIZE)
    if c.paper:
        for p in (c.pin_max, c.pin_min, c.pin_g5):
            _force(rng, size, c.proc_first[p], 0, np.zeros(c.n_proc), c.pinned_proc)
    c.ae_class = d.by_group(size, AE_CLASSES)
    if c.paper:
        _force(rng, c.ae_class, c.proc_first[c.pin_g5], 2, size, c.pinned_proc)
    c.proc_ge = size == 1
    late = c.proc_day >= PETCT_GUIDANCE_FROM
    if c.paper:
        pet = rng.choice(np.flatnonzero(late), PETCT, replace=False)
        rest = np.setdiff1d(np.arange(c.n_proc), pet)
        c.guidance = np.full(c.n_proc, PET_GUIDED, np.int64)
        c.guidance[rest] = CT_MRI_GUIDED[d.labels(len(rest), list(CT_MRI.values()))]
    else:
        c.guidance = CT_MRI_GUIDED[pick(list(CT_MRI.values()), c.n_proc, rng)]
        c.guidance[late & (rng.random(c.n_proc) < PETCT_SHARE_FROM_2008)] = PET_GUIDED


def _tumors(c: Plan) -> None:
    """Diameters (one >= 40 mm tumor in each ge4cm procedure) and plan cells."""
    d = c.d
    ge = c.proc_ge[c.tum_proc] & (c.tum_seq == 0)
    c.tum_group = ge.astype(np.int64)
    c.diameter = np.zeros(c.n_tum, np.int64)
    c.diameter[ge] = _diameter_ge(d.unit(int(ge.sum())))
    c.diameter[~ge] = _diameter_lt(d.unit(int((~ge).sum())), DIAMETER_G)
    c.cell = d.by_group(c.tum_group, [CELL_COUNT[g == CELL_GROUP] for g in (0, 1)])
    c.cell += np.where(c.tum_group == 1, int((CELL_GROUP == 0).sum()), 0)
    c.frozen = c.pinned[c.tum_pat]
    if c.paper:
        for p, klass in ((c.pin_max, CLEAN), (c.pin_min, CLEAN), (c.pin_g5, NE)):
            t = c.tum_first[c.proc_first[p]]
            _force(c.rng, c.cell, t, _cell_of(0, klass, OK), c.tum_group, c.frozen)


def _early_events(c: Plan) -> None:
    """Adverse events within 30 days; a grade-5 event ends its patient's follow-up."""
    rng = c.rng
    n_ev = np.where(c.ae_class > 0, pick(AE_EVENTS_P, c.n_proc, rng) + 1, 0)
    if c.paper:
        grade5 = np.zeros(c.n_proc, bool)
        grade5[c.proc_first[c.pin_g5]] = True
        n_ev[grade5] = 1
    else:
        grade5 = (c.ae_class == 2) & c.is_last_proc & (rng.random(c.n_proc) < P_GRADE5)
    ev_proc = np.repeat(np.arange(c.n_proc), n_ev)
    n = len(ev_proc)
    kind = pick((0.40, 0.30, 0.27, 0.03), n, rng)
    onset = np.select(
        [kind == 0, kind == 1, kind == 2], [0, rng.integers(1, 4, n), rng.integers(4, 30, n)], 30
    )
    onset = np.minimum(onset, c.cap[ev_proc])
    order = np.lexsort((onset, ev_proc))
    ev_proc, onset = ev_proc[order], onset[order]
    rank = np.arange(n) - starts(n_ev)[ev_proc]
    major = c.ae_class[ev_proc] == 2
    grade = np.where(major, rng.integers(1, 5, n), rng.integers(1, 3, n))
    grade[major & (rank == 0)] = np.where(rng.random(int((major & (rank == 0)).sum())) < 0.75, 3, 4)
    last_of_g5 = grade5[ev_proc] & (rank == n_ev[ev_proc] - 1)
    grade[last_of_g5] = 5
    c.grade5 = grade5
    c.death_at = np.full(c.n_pat, MISSING, np.int64)
    g5_day = c.proc_day[ev_proc[last_of_g5]] + onset[last_of_g5]
    c.death_at[c.proc_pat[ev_proc[last_of_g5]]] = g5_day
    c.ev_proc, c.onset, c.grade = ev_proc, onset, grade


def _follow_up(c: Plan, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Per patient the last imaging day, per tumor its follow-up (days), for a given scale."""
    end = np.minimum(EXTRACT_DAY, c.last_proc_day + FOLLOW_UP_FLOOR_DAYS + scale * c.base)
    end = np.where(c.death_at != MISSING, np.minimum(end, c.death_at), end)
    end = np.where(c.end_fixed != MISSING, c.end_fixed, end).astype(np.int64)
    f = end[c.tum_pat] - c.proc_day[c.tum_proc]
    return end, np.where(c.end_fixed[c.tum_pat] != MISSING, f, np.minimum(f, FOLLOW_UP_CAP_DAYS))


def _outcomes(c: Plan) -> None:
    """Follow-up, TE-study day and the feasible outcome class of every tumor."""
    rng = c.rng
    c.end_fixed = np.full(c.n_pat, MISSING, np.int64)
    if c.paper:
        c.end_fixed[c.pin_max] = c.first_day[c.pin_max] + FOLLOW_UP_MAX_DAYS
        c.end_fixed[c.pin_min] = c.first_day[c.pin_min] + FOLLOW_UP_MIN_DAYS
    c.base = rng.exponential(1.0, c.n_pat)

    # TE-evaluable tumors need room for follow-up (the lower bound holds for any scale)
    evaluable_cell = CELL_CLASS != NE
    ok = _follow_up(c, 0.0)[1] >= EVALUABLE_MIN_DAYS
    _swap_fix(c, evaluable_cell, ~evaluable_cell, ok, _cell_map(NE))
    evaluable = evaluable_cell[c.cell]

    if c.paper:  # calibrate: mean follow-up of TE-evaluable tumors 2.5 years
        lo, hi = 0.0, 20_000.0
        for _ in range(60):
            mid = (lo + hi) / 2
            short = _follow_up(c, mid)[1][evaluable].mean() < FOLLOW_UP_MEAN_DAYS
            lo, hi = (mid, hi) if short else (lo, mid)
        c.scale = hi
    else:
        c.scale = SCALE_FOLLOW_UP
    c.end, c.f = _follow_up(c, c.scale)

    # the TE study: at 1 or 3 months mostly, a few on the window's edges (day 30, day 180)
    n = c.n_tum
    kind = pick((0.03, 0.35, 0.52, 0.07, 0.03), n, rng)
    te_day = np.select(
        [kind == 0, kind == 1, kind == 2, kind == 3],
        [30, rng.integers(31, 46, n), rng.integers(60, 121, n), rng.integers(121, 180, n)],
        180,
    )
    c.te_day = np.minimum(te_day, c.f)
    c.solo = c.frozen & (c.f == FOLLOW_UP_MIN_DAYS)  # paper: its only read at 2 months
    c.te_day[c.solo] = FOLLOW_UP_MIN_DAYS

    # later progression needs a read after the TE study
    ok = c.f >= c.te_day + 90
    ltp_cell = CELL_CLASS == LTP
    _swap_fix(c, ltp_cell, evaluable_cell & ~ltp_cell, ok, _cell_map(CLEAN))
    c.klass = CELL_CLASS[c.cell]

    ne_kind = pick(NE_KINDS_P, n, rng)
    ne_kind = np.where((ne_kind >= INDET) & (c.f < 200), EARLY, ne_kind)
    ne_kind = np.where((ne_kind == EARLY) & (c.f < 2), LOST, ne_kind)
    c.ne_kind = np.where(c.klass == NE, ne_kind, -1)


def _imaging(c: Plan) -> None:
    """Imaging reads of every tumor from its plan, as slots of a (tumors x slots) grid.

    Slots in date order: an early read (< day 30), an indeterminate read inside the TE window,
    the TE study, a same-day second read, the surveillance schedule (3-monthly in year 1,
    6-monthly in year 2, then yearly) and the last read at follow-up end.
    """
    rng, klass, ne_kind, te_day, f = c.rng, c.klass, c.ne_kind, c.te_day, c.f
    n, k = c.n_tum, 5 + len(SCHEDULE)
    day = np.zeros((n, k), np.int64)
    on = np.zeros((n, k), bool)
    find = np.full((n, k), NO, np.int64)
    ev, some, indet = klass != NE, ~c.solo, ne_kind == INDET

    on[:, 0] = ((ev & (rng.random(n) < 0.08)) | (ne_kind == EARLY)) & some
    day[:, 0] = np.minimum(rng.integers(1, 30, n), np.maximum(f, 1))
    find[:, 0] = np.array([IND, NO, RES])[pick((0.5, 0.35, 0.15), n, rng)]
    on[:, 1] = (ev & (te_day >= 40) & (rng.random(n) < 0.06) & some) | indet
    day[:, 1] = np.where(
        indet, rng.integers(30, 120, n), rng.integers(30, np.maximum(te_day - 6, 31))
    )
    find[:, 1] = IND
    on[:, 2] = ev | indet
    day[:, 2] = np.where(indet, rng.integers(day[:, 1] + 1, 181), te_day)
    find[:, 2] = np.select([indet, klass == FAIL], [IND, RES], NO)
    on[:, 3] = ev & (rng.random(n) < 0.04) & some
    day[:, 3] = te_day
    find[:, 3] = np.where((klass == FAIL) & (rng.random(n) < 0.5), RES, NO)
    sched = np.asarray(SCHEDULE)[None, :] + rng.integers(-14, 15, (n, len(SCHEDULE)))
    later = ne_kind >= INDET
    low = np.where(later, 180, te_day + 20)[:, None]
    on[:, 4:-1] = (ev | later)[:, None] & (sched > low) & (sched < (f - 20)[:, None])
    on[:, 4:-1] &= some[:, None]
    day[:, 4:-1] = sched
    on[:, -1] = (ev & (f > te_day)) | later
    day[:, -1] = f

    # findings after the TE study; a progressing tumor progresses at one of its reads
    u = rng.random((n, k - 4))
    pos = np.cumsum(on[:, 4:], axis=1)
    r = np.floor(rng.random(n) ** 1.5 * pos[:, -1]).astype(np.int64)[:, None] + 1
    kl = klass[:, None]
    clean = np.where(u < 0.93, NO, IND)
    clean[:, -1] = np.where(u[:, -1] < 0.85, NO, IND)
    find[:, 4:] = np.select(
        [kl == NE, kl == FAIL, (kl == LTP) & (pos == r), (kl == LTP) & (pos > r)],
        [
            np.select([u < 0.8, u < 0.9], [NO, PROG], IND),
            np.select([u < 0.3, u < 0.5, u < 0.9], [RES, PROG, NO], IND),
            PROG,
            np.select([u < 0.4, u < 0.9], [PROG, NO], IND),
        ],
        clean,
    )

    rows, cols = np.nonzero(on)
    when = c.proc_day[c.tum_proc][rows] + day[rows, cols]
    modality = pick([MODALITY_P[m] for m in MODALITIES], len(rows), rng)
    modality = np.where((modality == PET) & (when < PETCT_IMAGING_FROM), CT, modality)
    second = np.flatnonzero(cols == 3)  # the other cross-sectional modality on the same day
    modality[second] = np.where(modality[second - 1] == MRI, CT, MRI)
    c.img_tumor, c.img_day, c.img_modality, c.img_finding = rows, when, modality, find[rows, cols]


def _late_events(c: Plan) -> None:
    """A few adverse events after day 30: in the registry, outside the 30-day window."""
    rng = c.rng
    pat_end = np.where(c.death_at != MISSING, c.death_at, EXTRACT_DAY)
    room = np.minimum(pat_end[c.proc_pat] - c.proc_day, 400) - 1
    procs = np.flatnonzero((rng.random(c.n_proc) < P_LATE_AE) & (room > 31) & ~c.grade5)
    n = len(procs)
    onset = np.where(rng.random(n) < 0.15, 31, rng.integers(32, np.maximum(room[procs], 33)))
    onset[:1] = 31 if c.paper else onset[:1]  # the paper's cohort surely has the day-31 edge
    grade = pick((0.35, 0.35, 0.25, 0.05), n, rng) + 1
    ev_proc = np.concatenate([c.ev_proc, procs])
    onset = np.concatenate([c.onset, np.minimum(onset, room[procs])])
    grade = np.concatenate([c.grade, grade])
    order = np.lexsort((onset, ev_proc))
    c.ev_proc, c.onset, c.grade = ev_proc[order], onset[order], grade[order]


def _patient_ends(c: Plan) -> None:
    """Death after the last activity for many patients, last contact for the others; birth
    dates that give exactly the planned age at the first procedure."""
    rng, n = c.rng, c.n_pat
    last = c.last_proc_day.copy()
    np.maximum.at(last, c.tum_pat[c.img_tumor], c.img_day)
    np.maximum.at(last, c.proc_pat[c.ev_proc], c.proc_day[c.ev_proc] + c.onset)
    dies = (c.end < EXTRACT_DAY - 30) & (rng.random(n) < 0.65)
    death = np.where(dies, last + rng.integers(7, 366, n), MISSING)
    death = np.where(death > EXTRACT_DAY, MISSING, death)
    c.death = np.where(c.death_at != MISSING, c.death_at, death)
    contact = np.minimum(EXTRACT_DAY, last + rng.integers(0, 91, n))
    c.contact = np.where(c.death != MISSING, MISSING, contact)

    first = c.first_day.astype("datetime64[D]")
    month = first.astype("datetime64[M]")
    anniversary = (month - 12 * c.age).astype("datetime64[D]")
    anniversary += first - month.astype("datetime64[D]")
    birth = anniversary - rng.integers(1, 361, n)
    leap_day = (birth.astype("datetime64[M]").astype(np.int64) % 12 == 1) & (
        (birth - birth.astype("datetime64[M]").astype("datetime64[D]")).astype(np.int64) == 28
    )
    birth = np.where(leap_day, birth - 1, birth)  # no 29 February birthdays
    if not np.array_equal(_completed_years(birth, first), c.age):
        raise AssertionError("birth dates do not give the planned ages")
    c.birth = birth.astype(np.int64)


def plan(d: Draw, n_pat: int) -> Plan:
    """The cohort of n_pat patients, planned step by step."""
    c = Plan(d, n_pat)
    for step in (
        _structure,
        _patients,
        _procedure_dates,
        _procedure_labels,
        _tumors,
        _early_events,
        _outcomes,
        _imaging,
        _late_events,
        _patient_ends,
    ):
        step(c)
    return c
