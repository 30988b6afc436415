"""Synthetic registry extracts (`cryoreg synth`): the paper's cohort, or a large one for scale.

Both profiles run one vectorised generator. The paper profile draws exact-count label arrays
(shuffled per seed) and calibrates the continuous values (ages, diameters, follow-up) so that the
pipeline reproduces every count of Glazer et al. (AJR 2017); the scale profile draws the same
shares at random, chunk by chunk, so a million patients never sit in memory at once. Frames are
built first and written afterwards, so that `--nights` can split them into a full load and
daily deltas (new, corrected and deleted rows whose final state is the one-night registry) and
`--faults` can corrupt a share of rows, with a ground-truth manifest of what ingest must
quarantine (and why) written beside the extract folders.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl

EPOCH = date(1970, 1, 1)
EXTRACT_DATE = date(2014, 12, 31)
EXTRACT_DAY = (EXTRACT_DATE - EPOCH).days
FIRST_DAY = (date(1998, 1, 1) - EPOCH).days
PETCT_GUIDANCE_FROM = (date(2008, 1, 1) - EPOCH).days
PETCT_IMAGING_FROM = (date(2002, 1, 1) - EPOCH).days
MISSING = -(10**7)  # day number of a missing date

COLUMNS = {
    "patients": (
        "patient_mrn",
        "patient_name",
        "sex",
        "birth_date",
        "death_date",
        "last_contact_date",
    ),
    "procedures": (
        "procedure_id",
        "patient_mrn",
        "procedure_date",
        "guidance",
        "anesthesia",
        "probe_count",
    ),
    "tumors": (
        "tumor_id",
        "procedure_id",
        "origin",
        "histology",
        "liver_segment",
        "diameter_mm",
        "technical_result",
    ),
    "imaging": ("imaging_id", "tumor_id", "imaging_date", "modality", "finding"),
    "adverse_events": ("event_id", "procedure_id", "onset_date", "ctcae_grade", "description"),
}

# --- the paper's cohort as exact counts (the scale profile uses them as shares) ---------------
PAPER_PATIENTS = 186
WOMEN = 95
PROCS_PER_PATIENT = (145, 33, 7, 1)  # patients with 1, 2, 3, 4 procedures: 236 procedures
TUMORS_PER_PROC = (189, 34, 10, 3)  # procedures with 1..4 tumors: 299 tumors
PRIMARY_TUMORS = 56
PROC_SIZE = (195, 41)  # procedures lt4cm / ge4cm (by largest tumor): one >= 40 mm tumor each
GUIDANCE = ("CT", "MRI", "PET/CT")
CT_MRI = (126, 100)
PETCT = 10  # only from 2008 on
PETCT_SHARE_FROM_2008 = 0.065
AGE_MIN, AGE_MAX, AGE_SUM = 29, 88, 11327  # mean 60.898 -> 60.9
DIAMETER_SUM = 7475  # 299 tumors, mean 25.0 mm
FOLLOW_UP_MEAN_DAYS = 2.5 * 365.25
FOLLOW_UP_MAX_DAYS = 5330  # 14.59 years: the one longest-followed tumor
FOLLOW_UP_MIN_DAYS = 61  # 2.0 months: the one shortest-followed tumor
FOLLOW_UP_CAP_DAYS = 5200  # every other tumor stays below the maximum
FOLLOW_UP_FLOOR_DAYS = 100  # a patient's imaging runs at least this long after the last procedure
EVALUABLE_MIN_DAYS = 90  # shorter possible follow-up: the tumor is planned not TE-evaluable
SCALE_FOLLOW_UP = 1000.0  # days per unit of the follow-up draw (the paper calibrates its own)

# Tumor plan cells: (size group 0 lt4cm / 1 ge4cm, class, technical_result, count).
# Classes: not TE-evaluable; TE failure (residual tumor: an LTP event); TE success with later
# local progression; TE success without progression.
NE, FAIL, LTP, CLEAN = 0, 1, 2, 3
TECH = ("complete", "incomplete", "not_assessed")
CELLS = np.array(
    [
        (0, FAIL, 0, 11), (0, FAIL, 1, 4), (0, LTP, 0, 25), (0, LTP, 1, 1),
        (0, CLEAN, 0, 186), (0, CLEAN, 1, 1), (0, NE, 0, 26), (0, NE, 1, 1), (0, NE, 2, 3),
        (1, FAIL, 0, 6), (1, FAIL, 1, 6), (1, LTP, 0, 7), (1, CLEAN, 0, 10), (1, CLEAN, 1, 1),
        (1, NE, 0, 8), (1, NE, 1, 2), (1, NE, 2, 1),
    ]
)  # fmt: skip
CELL_GROUP, CELL_CLASS, CELL_TECH, CELL_COUNT = CELLS.T
AE_CLASSES = ((131, 47, 17), (25, 8, 8))  # per procedure size group: none / minor / major
AE_EVENTS_P = (0.70, 0.22, 0.08)  # 1, 2, 3 events within 30 days of an AE procedure
P_LATE_AE = 0.03  # procedures with an event after day 30 (kept, never counted)
P_GRADE5 = 0.04  # scale: share of major-AE procedures (a patient's last) ending in death

ORIGINS = ("primary", "metastasis")
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
MODALITIES = ("CT", "MRI", "PET/CT", "US")
MODALITY_P = (0.50, 0.35, 0.07, 0.08)
FINDINGS = ("no_tumor", "residual_tumor", "local_progression", "indeterminate")
NO, RES, PROG, IND = 0, 1, 2, 3
# why a tumor is not TE-evaluable: no imaging / only reads before day 30 / only indeterminate
# reads inside days 30-180 / first read after day 180
LOST, EARLY, INDET, LATE = 0, 1, 2, 3
NE_KINDS_P = (0.30, 0.20, 0.25, 0.25)
SCHEDULE = (90, 180, 270, 365, 545, 730, *range(1095, 5200, 365))  # days after the procedure

AE_TEXT = {
    1: ("pain at the probe site", "nausea", "post-ablation syndrome, fever and malaise",
        "skin frostbite at the probe site", "transient transaminase elevation"),
    2: ("small perihepatic hematoma", "pneumothorax, no intervention",
        "pleural effusion, no drainage", "fever requiring antibiotics", "pain requiring opioids"),
    3: ("hemorrhage requiring transfusion", "pneumothorax requiring chest tube",
        "hepatic abscess requiring drainage", "biloma requiring drainage",
        "acute kidney injury (myoglobinuria)", "bile duct stricture"),
    4: ("cryoshock", "hemorrhage requiring embolization", "hemothorax requiring surgery",
        "multiorgan failure, ICU admission"),
    5: ("death from multiorgan failure after cryoshock", "death from hemorrhage"),
}  # fmt: skip
FIRST_F = (
    "Mary", "Patricia", "Linda", "Barbara", "Susan", "Maria", "Ana", "Chloé", "Aisha", "Mei",
    "Priya", "Jennifer", "Elizabeth", "Nancy", "Karen", "Sofía", "Ingrid", "Yuki",
)  # fmt: skip
FIRST_M = (
    "James", "John", "Robert", "Michael", "William", "David", "José", "Mohammed", "Wei", "Raj",
    "Thomas", "Charles", "Daniel", "Jürgen", "Kwame", "Luis", "André", "Hiroshi",
)  # fmt: skip
LAST = (
    "Smith", "Johnson", "Williams", "Brown", "Jones", "García", "Miller", "Davis", "O'Brien",
    "Martínez", "Nguyen", "Kim", "Patel", "Müller", "Cohen", "Rossi", "Smith-Jones", "Anderson",
    "Taylor", "Thomas", "Moore", "Jackson", "Martin", "Lee", "Okafor", "Silva",
)  # fmt: skip
MRN_SPACE, MRN_STEP = 9_000_000, 7_654_321  # affine permutation: unique MRNs across chunks


@dataclass
class _Draw:
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


def _pick(p, size, rng: np.random.Generator) -> np.ndarray:
    return rng.choice(len(p), size=size, p=np.asarray(p) / np.sum(p))


def _starts(counts: np.ndarray) -> np.ndarray:
    return np.cumsum(counts) - counts


# --- continuous distributions ------------------------------------------------------------------
_LT_TUMORS = int(CELL_COUNT[CELL_GROUP == 0].sum())
_MEDIAN_P = (sum(CELL_COUNT) // 2) / (_LT_TUMORS - 1)  # the cohort median is a tumor under 4 cm


def _diameter_lt(p: np.ndarray, g: float) -> np.ndarray:
    """Quantiles of tumors under 4 cm: 3 mm, median 22 mm, 39 mm; the shape g sets the mean."""
    low = 3 + 19 * (np.minimum(p, _MEDIAN_P) / _MEDIAN_P) ** g
    high = 22 + 17 * (np.maximum(p - _MEDIAN_P, 0) / (1 - _MEDIAN_P)) ** g
    return np.rint(np.where(p <= _MEDIAN_P, low, high)).astype(np.int64)


def _diameter_ge(p: np.ndarray) -> np.ndarray:
    """Quantiles of tumors of 4 cm or more: 40 to 78 mm, most near the low end."""
    return np.rint(40 + 38 * p**2.5).astype(np.int64)


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


def _ages(d: _Draw, n: int) -> np.ndarray:
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
class _Plan:
    """Arrays of one cohort (the paper's, or one scale chunk) while it is being planned."""

    def __init__(self, d: _Draw, n_pat: int):
        self.d, self.rng, self.paper, self.n_pat = d, d.rng, d.exact, n_pat


def _structure(c: _Plan) -> None:
    """Patients -> procedures -> tumors, and (paper) the patients that pin extreme values."""
    d, rng = c.d, c.rng
    c.n_proc_of = d.labels(c.n_pat, PROCS_PER_PATIENT) + 1
    c.proc_pat = np.repeat(np.arange(c.n_pat), c.n_proc_of)
    c.n_proc = len(c.proc_pat)
    c.proc_first = _starts(c.n_proc_of)
    c.proc_seq = np.arange(c.n_proc) - c.proc_first[c.proc_pat]
    c.is_last_proc = c.proc_seq == c.n_proc_of[c.proc_pat] - 1
    c.n_tum_of = d.labels(c.n_proc, TUMORS_PER_PROC) + 1
    c.tum_proc = np.repeat(np.arange(c.n_proc), c.n_tum_of)
    c.n_tum = len(c.tum_proc)
    c.tum_first = _starts(c.n_tum_of)
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


def _patients(c: _Plan) -> None:
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
    for origin, flag in zip(ORIGINS, (c.primary, ~c.primary), strict=True):
        idx = np.flatnonzero(flag)
        c.histology[idx] = shift + _pick([p for _, p in HISTOLOGY[origin]], len(idx), rng)
        shift += len(HISTOLOGY[origin])


def _procedure_dates(c: _Plan) -> None:
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


def _procedure_labels(c: _Plan) -> None:
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
        c.guidance = np.full(c.n_proc, 2, np.int64)
        c.guidance[rest] = d.labels(len(rest), CT_MRI)
    else:
        c.guidance = _pick(CT_MRI, c.n_proc, rng)
        c.guidance[late & (rng.random(c.n_proc) < PETCT_SHARE_FROM_2008)] = 2


def _tumors(c: _Plan) -> None:
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
            _force(c.rng, c.cell, t, _cell_of(0, klass, 0), c.tum_group, c.frozen)


def _early_events(c: _Plan) -> None:
    """Adverse events within 30 days; a grade-5 event ends its patient's follow-up."""
    rng = c.rng
    n_ev = np.where(c.ae_class > 0, _pick(AE_EVENTS_P, c.n_proc, rng) + 1, 0)
    if c.paper:
        grade5 = np.zeros(c.n_proc, bool)
        grade5[c.proc_first[c.pin_g5]] = True
        n_ev[grade5] = 1
    else:
        grade5 = (c.ae_class == 2) & c.is_last_proc & (rng.random(c.n_proc) < P_GRADE5)
    ev_proc = np.repeat(np.arange(c.n_proc), n_ev)
    n = len(ev_proc)
    kind = _pick((0.40, 0.30, 0.27, 0.03), n, rng)
    onset = np.select(
        [kind == 0, kind == 1, kind == 2], [0, rng.integers(1, 4, n), rng.integers(4, 30, n)], 30
    )
    onset = np.minimum(onset, c.cap[ev_proc])
    order = np.lexsort((onset, ev_proc))
    ev_proc, onset = ev_proc[order], onset[order]
    rank = np.arange(n) - _starts(n_ev)[ev_proc]
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


def _follow_up(c: _Plan, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Per patient the last imaging day, per tumor its follow-up (days), for a given scale."""
    end = np.minimum(EXTRACT_DAY, c.last_proc_day + FOLLOW_UP_FLOOR_DAYS + scale * c.base)
    end = np.where(c.death_at != MISSING, np.minimum(end, c.death_at), end)
    end = np.where(c.end_fixed != MISSING, c.end_fixed, end).astype(np.int64)
    f = end[c.tum_pat] - c.proc_day[c.tum_proc]
    return end, np.where(c.end_fixed[c.tum_pat] != MISSING, f, np.minimum(f, FOLLOW_UP_CAP_DAYS))


def _outcomes(c: _Plan) -> None:
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
    kind = _pick((0.03, 0.35, 0.52, 0.07, 0.03), n, rng)
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

    ne_kind = _pick(NE_KINDS_P, n, rng)
    ne_kind = np.where((ne_kind >= INDET) & (c.f < 200), EARLY, ne_kind)
    ne_kind = np.where((ne_kind == EARLY) & (c.f < 2), LOST, ne_kind)
    c.ne_kind = np.where(c.klass == NE, ne_kind, -1)


def _imaging(c: _Plan) -> None:
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
    find[:, 0] = np.array([IND, NO, RES])[_pick((0.5, 0.35, 0.15), n, rng)]
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
    modality = _pick(MODALITY_P, len(rows), rng)
    modality = np.where((modality == 2) & (when < PETCT_IMAGING_FROM), 0, modality)
    second = np.flatnonzero(cols == 3)  # the other cross-sectional modality on the same day
    modality[second] = np.where(modality[second - 1] == 1, 0, 1)
    c.img_tumor, c.img_day, c.img_modality, c.img_finding = rows, when, modality, find[rows, cols]


def _late_events(c: _Plan) -> None:
    """A few adverse events after day 30: in the registry, outside the 30-day window."""
    rng = c.rng
    pat_end = np.where(c.death_at != MISSING, c.death_at, EXTRACT_DAY)
    room = np.minimum(pat_end[c.proc_pat] - c.proc_day, 400) - 1
    procs = np.flatnonzero((rng.random(c.n_proc) < P_LATE_AE) & (room > 31) & ~c.grade5)
    n = len(procs)
    onset = np.where(rng.random(n) < 0.15, 31, rng.integers(32, np.maximum(room[procs], 33)))
    onset[:1] = 31 if c.paper else onset[:1]  # the paper's cohort surely has the day-31 edge
    grade = _pick((0.35, 0.35, 0.25, 0.05), n, rng) + 1
    ev_proc = np.concatenate([c.ev_proc, procs])
    onset = np.concatenate([c.onset, np.minimum(onset, room[procs])])
    grade = np.concatenate([c.grade, grade])
    order = np.lexsort((onset, ev_proc))
    c.ev_proc, c.onset, c.grade = ev_proc[order], onset[order], grade[order]


def _patient_ends(c: _Plan) -> None:
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


def _plan(d: _Draw, n_pat: int) -> _Plan:
    c = _Plan(d, n_pat)
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


# --- frames and files -------------------------------------------------------------------------
@dataclass
class Frames:
    """The five extract files of one chunk, columns in the contract's order."""

    patients: pl.DataFrame
    procedures: pl.DataFrame
    tumors: pl.DataFrame
    imaging: pl.DataFrame
    adverse_events: pl.DataFrame

    def items(self) -> list[tuple[str, pl.DataFrame]]:
        return [(name, getattr(self, name)) for name in COLUMNS]


def _ids(prefix: str, start: int, n: int, width: int) -> pl.Series:
    numbers = pl.Series(np.arange(start + 1, start + n + 1, dtype=np.int64))
    return prefix + numbers.cast(pl.String).str.zfill(width)


def _null_at(series: pl.Series, missing: np.ndarray) -> pl.Series:
    idx = np.flatnonzero(missing)
    return series.scatter(idx, None) if len(idx) else series


def _dates(days: np.ndarray) -> pl.Series:
    series = pl.Series(np.where(days == MISSING, 0, days).astype(np.int32)).cast(pl.Date)
    return _null_at(series, days == MISSING)


def _codes(names, index: np.ndarray, missing: np.ndarray | None = None) -> pl.Series:
    series = pl.Series(list(names), dtype=pl.String).gather(index)
    return series if missing is None else _null_at(series, missing)


def _ints(values: np.ndarray, missing: np.ndarray) -> pl.Series:
    return _null_at(pl.Series(values.astype(np.int64)), missing)


def _frames(c: _Plan, offsets: dict[str, int]) -> Frames:
    """The plan as the five extract files; ids continue from offsets (updated in place)."""
    rng, n_pat, n_proc, n_tum = c.rng, c.n_pat, c.n_proc, c.n_tum
    n_img, n_ev = len(c.img_tumor), len(c.ev_proc)
    serial = offsets["patient"] + np.arange(n_pat, dtype=np.int64)
    mrn_number = (serial * MRN_STEP + offsets["mrn_shift"]) % MRN_SPACE + 1_000_000
    mrn = "MRN" + pl.Series(mrn_number).cast(pl.String)
    first = np.where(
        c.female,
        rng.integers(0, len(FIRST_F), n_pat),
        len(FIRST_F) + rng.integers(0, len(FIRST_M), n_pat),
    )
    name = _codes(LAST, rng.integers(0, len(LAST), n_pat)) + ", " + _codes(FIRST_F + FIRST_M, first)
    patients = pl.DataFrame(
        {
            "patient_mrn": mrn,
            "patient_name": name,
            "sex": _codes(("F", "M"), np.where(c.female, 0, 1)),
            "birth_date": _dates(c.birth),
            "death_date": _dates(c.death),
            "last_contact_date": _dates(c.contact),
        }
    )

    proc_id = _ids("PRC", offsets["procedure"], n_proc, 8)
    largest = np.maximum.reduceat(c.diameter, c.tum_first)
    probes = 1 + largest / 14 + (c.n_tum_of - 1) * 1.2 + rng.normal(0, 0.8, n_proc)
    anesthesia = _pick((0.78, 0.20, 0.02), n_proc, rng)
    procedures = pl.DataFrame(
        {
            "procedure_id": proc_id,
            "patient_mrn": mrn.gather(c.proc_pat),
            "procedure_date": _dates(c.proc_day),
            "guidance": _codes(GUIDANCE, c.guidance),
            "anesthesia": _codes(("general", "moderate", ""), anesthesia, anesthesia == 2),
            "probe_count": _ints(np.clip(np.rint(probes), 1, 25), rng.random(n_proc) < 0.01),
        }
    )

    tum_id = _ids("TUM", offsets["tumor"], n_tum, 8)
    tumors = pl.DataFrame(
        {
            "tumor_id": tum_id,
            "procedure_id": proc_id.gather(c.tum_proc),
            "origin": _codes(ORIGINS, np.where(c.primary[c.tum_pat], 0, 1)),
            "histology": _codes(HISTOLOGY_NAMES, c.histology[c.tum_pat]),
            "liver_segment": _ints(_pick(SEGMENT_P, n_tum, rng) + 1, rng.random(n_tum) < 0.02),
            "diameter_mm": c.diameter,
            "technical_result": _codes(TECH, CELL_TECH[c.cell]),
        }
    )

    imaging = pl.DataFrame(
        {
            "imaging_id": _ids("IMG", offsets["imaging"], n_img, 9),
            "tumor_id": tum_id.gather(c.img_tumor),
            "imaging_date": _dates(c.img_day),
            "modality": _codes(MODALITIES, c.img_modality),
            "finding": _codes(FINDINGS, c.img_finding),
        }
    )

    texts = [t for g in sorted(AE_TEXT) for t in AE_TEXT[g]]
    text_start = _starts(np.array([len(AE_TEXT[g]) for g in sorted(AE_TEXT)]))
    text_count = np.array([len(AE_TEXT[g]) for g in sorted(AE_TEXT)])
    g = c.grade - 1
    text = text_start[g] + np.floor(rng.random(n_ev) * text_count[g]).astype(np.int64)
    adverse_events = pl.DataFrame(
        {
            "event_id": _ids("AE", offsets["event"], n_ev, 8),
            "procedure_id": proc_id.gather(c.ev_proc),
            "onset_date": _dates(c.proc_day[c.ev_proc] + c.onset),
            "ctcae_grade": c.grade.astype(np.int64),
            "description": _codes(texts, text, rng.random(n_ev) < 0.03),
        }
    )
    for key, n in (
        ("patient", n_pat),
        ("procedure", n_proc),
        ("tumor", n_tum),
        ("imaging", n_img),
        ("event", n_ev),
    ):
        offsets[key] += n
    return Frames(patients, procedures, tumors, imaging, adverse_events)


def iter_frames(
    profile: str = "paper",
    patients: int | None = None,
    seed: int = 20171201,
    chunk_patients: int = 50_000,
) -> Iterator[Frames]:
    """The registry as frames, chunk by chunk (a single chunk for the paper profile)."""
    offsets = dict.fromkeys(("patient", "procedure", "tumor", "imaging", "event"), 0)
    offsets["mrn_shift"] = seed % MRN_SPACE
    if profile == "paper":
        if patients not in (None, PAPER_PATIENTS):
            raise ValueError(f"profile paper has {PAPER_PATIENTS} patients")
        rng = np.random.default_rng(seed)
        yield _frames(_plan(_Draw(rng, exact=True), PAPER_PATIENTS), offsets)
        return
    if profile != "scale":
        raise ValueError(f"unknown profile {profile!r} (paper or scale)")
    if not patients or patients < 1 or patients > MRN_SPACE:
        raise ValueError(f"profile scale needs 1 to {MRN_SPACE} patients")
    if chunk_patients < 1:
        raise ValueError("chunk_patients must be positive")
    for i, start in enumerate(range(0, patients, chunk_patients)):
        rng = np.random.default_rng([seed, i])
        n = min(chunk_patients, patients - start)
        yield _frames(_plan(_Draw(rng, exact=False), n), offsets)


def write_frames(folder: Path, chunks: Iterator[Frames]) -> Path:
    """Write chunks as one extract folder: header once, later chunks appended."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, chunk in enumerate(chunks):
        for name, frame in chunk.items():
            with open(folder / f"{name}.csv", "wb" if i == 0 else "ab") as sink:
                frame.write_csv(sink, include_header=i == 0)
    return folder


def _chain(first: Frames, rest: Iterator[Frames]) -> Iterator[Frames]:
    yield first
    yield from rest


# --- nightly deltas (--nights) and injected defects (--faults) -------------------------------
ID_COLUMN = {
    "patients": "patient_mrn",
    "procedures": "procedure_id",
    "tumors": "tumor_id",
    "imaging": "imaging_id",
    "adverse_events": "event_id",
}
PARENT = {  # entity -> (parent entity, foreign-key column)
    "procedures": ("patients", "patient_mrn"),
    "tumors": ("procedures", "procedure_id"),
    "imaging": ("tumors", "tumor_id"),
    "adverse_events": ("procedures", "procedure_id"),
}
ID_FORMAT = {
    "procedures": ("PRC", 8),
    "tumors": ("TUM", 8),
    "imaging": ("IMG", 9),
    "adverse_events": ("AE", 8),
}
MANIFEST_DIR = "_manifest"  # beside the extract folders; not a YYYY-MM-DD name, never ingested
MANIFEST_COLUMNS = (
    "extract",
    "file",
    "line",
    "id",
    "kind",
    "column",
    "value",
    "expected_reason",
    "quarantined",
    "cause",
)
MAX_FAULT_RATE = 0.5
P_LATE = {"patients": 0.12, "procedures": 0.08, "imaging": 0.15, "adverse_events": 0.10}
P_CORRECTED = 0.03  # rows first sent with a wrong value, corrected in a later night

# Per file: (defect kind, columns it may hit). One defect per corrupted row; the kinds are dealt
# in turn so that even a small file gets a varied mix. `accepted` defects (stray whitespace and
# case) must load after normalising; `impossible_date` in procedures/imaging and `orphan` are
# found only when references are resolved.
FAULT_KINDS = {
    "patients": (
        ("bad_date", ("birth_date", "death_date", "last_contact_date")),
        ("future_date", ("death_date", "last_contact_date")),
        ("impossible_date", ("death_date", "last_contact_date")),
        ("unknown_code", ("sex",)),
        ("missing_required", ("sex", "birth_date")),
        ("duplicate_id", ("patient_mrn",)),
        ("accepted", ("sex",)),
    ),
    "procedures": (
        ("bad_date", ("procedure_date",)),
        ("future_date", ("procedure_date",)),
        ("impossible_date", ("procedure_date",)),
        ("unknown_code", ("guidance", "anesthesia")),
        ("not_a_number", ("probe_count",)),
        ("out_of_range", ("probe_count",)),
        ("missing_required", ("procedure_date", "guidance")),
        ("orphan", ("patient_mrn",)),
        ("duplicate_id", ("procedure_id",)),
        ("accepted", ("guidance", "anesthesia")),
    ),
    "tumors": (
        ("unknown_code", ("origin", "technical_result")),
        ("not_a_number", ("diameter_mm",)),
        ("out_of_range", ("diameter_mm", "liver_segment")),
        ("missing_required", ("origin", "histology", "diameter_mm", "technical_result")),
        ("orphan", ("procedure_id",)),
        ("duplicate_id", ("tumor_id",)),
        ("accepted", ("origin", "histology", "technical_result")),
    ),
    "imaging": (
        ("bad_date", ("imaging_date",)),
        ("future_date", ("imaging_date",)),
        ("impossible_date", ("imaging_date",)),
        ("unknown_code", ("modality", "finding")),
        ("missing_required", ("imaging_date", "modality", "finding")),
        ("orphan", ("tumor_id",)),
        ("duplicate_id", ("imaging_id",)),
        ("accepted", ("modality", "finding")),
    ),
    "adverse_events": (
        ("bad_date", ("onset_date",)),
        ("future_date", ("onset_date",)),
        ("not_a_number", ("ctcae_grade",)),
        ("out_of_range", ("ctcae_grade",)),
        ("missing_required", ("onset_date", "ctcae_grade")),
        ("orphan", ("procedure_id",)),
        ("duplicate_id", ("event_id",)),
        ("accepted", ("ctcae_grade",)),
    ),
}
WRONG_CODES = {
    "sex": ("U", "X", "W", "2"),
    "guidance": ("US", "CBCT", "fluoroscopy", "PET-CT"),
    "anesthesia": ("local", "sedation", "GA"),
    "origin": ("secondary", "unknown", "recurrence"),
    "technical_result": ("partial", "success", "n/a"),
    "modality": ("XR", "PET-CT", "CEUS", "SPECT"),
    "finding": ("stable", "complete_response", "progression", "NED"),
}
OUT_OF_RANGE = {
    "probe_count": ((0, 1), (26, 41)),
    "diameter_mm": ((0, 1), (301, 1000), (-60, -1)),
    "liver_segment": ((0, 1), (9, 10)),
    "ctcae_grade": ((0, 1), (6, 10)),
}
ROMAN = ("0", "I", "II", "III", "IV", "V")
NOTES = ("_kind", "_col", "_code", "_value")  # what _corrupt did to a row


def extract_dates(nights: int) -> list[str]:
    """Folder names: the full load on the extract date, then one delta per following day."""
    return [date.fromordinal(EXTRACT_DATE.toordinal() + j).isoformat() for j in range(nights)]


def manifest_path(out_root: Path, extract: str) -> Path:
    """Where the ground truth of one extract folder's defects lives (never read by ingest)."""
    return Path(out_root) / MANIFEST_DIR / f"{extract}.faults.csv"


def _text(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.with_columns(pl.all().cast(pl.String))


def _annotate(chunk: Frames) -> dict[str, pl.DataFrame]:
    """Text frames with hidden helper columns: `_idx` (order), `_pat` (the row's patient) and
    `_anchor` (the date a reference check compares against)."""
    t = {name: _text(frame).with_row_index("_idx") for name, frame in chunk.items()}
    left = {"how": "left", "maintain_order": "left"}
    pat = t["patients"].with_columns(_pat=pl.col("patient_mrn"), _anchor=pl.col("birth_date"))
    proc = t["procedures"].join(
        pat.select("patient_mrn", pl.col("birth_date").alias("_anchor")), on="patient_mrn", **left
    )
    proc = proc.with_columns(_pat=pl.col("patient_mrn"))
    tum = t["tumors"].join(
        proc.select("procedure_id", "_pat", pl.col("procedure_date").alias("_anchor")),
        on="procedure_id",
        **left,
    )
    img = t["imaging"].join(tum.select("tumor_id", "_pat", "_anchor"), on="tumor_id", **left)
    ae = t["adverse_events"].join(
        proc.select("procedure_id", "_pat", pl.col("procedure_date").alias("_anchor")),
        on="procedure_id",
        **left,
    )
    out = {"patients": pat, "procedures": proc, "tumors": tum, "imaging": img, "adverse_events": ae}
    return {
        name: f.with_columns(
            _key=pl.col("_idx").cast(pl.Float64),
            record_status=pl.lit(None, pl.String),
            _mistake=pl.lit(False),
        )
        for name, f in out.items()
    }


# --- nights -----------------------------------------------------------------------------------
def _arrivals(t: dict[str, pl.DataFrame], k: int, rng: np.random.Generator) -> None:
    """`_night`: when each row first reaches the registry; children never before their parent."""

    def later(name: str, n: int) -> np.ndarray:
        return np.where(rng.random(n) < P_LATE.get(name, 0.0), rng.integers(1, k, n), 0)

    def inherit(name: str, parent: str, key: str) -> None:
        f = t[name].join(
            t[parent].select(key, pl.col("_night").alias("_up")),
            on=key,
            how="left",
            maintain_order="left",
        )
        night = np.maximum(f["_up"].to_numpy(), later(name, f.height))
        t[name] = f.drop("_up").with_columns(_night=pl.Series(night))

    t["patients"] = t["patients"].with_columns(
        _night=pl.Series(later("patients", t["patients"].height))
    )
    inherit("procedures", "patients", "patient_mrn")
    inherit("tumors", "procedures", "procedure_id")
    inherit("imaging", "tumors", "tumor_id")
    inherit("adverse_events", "procedures", "procedure_id")


def _shift_dates(values: pl.Series, days: np.ndarray) -> pl.Series:
    moved = values.str.to_date().cast(pl.Int32) + pl.Series(days.astype(np.int32))
    return moved.cast(pl.Date).cast(pl.String)


def _earlier_version(name: str, f: pl.DataFrame, rng: np.random.Generator) -> pl.DataFrame:
    """A plausible first version of each row, corrected later to the final one."""
    n = f.height
    if name == "patients":
        return f.with_columns(pl.col("patient_name").str.to_uppercase())
    if name == "procedures":
        probes = f["probe_count"].cast(pl.Int64)
        step = pl.Series(np.where(rng.random(n) < 0.5, -1, 1))
        changed = (probes + step).clip(1, 25)
        changed = pl.select(
            pl.when(changed == probes).then(probes + 1).otherwise(changed)
        ).to_series()
        return f.with_columns(probe_count=changed.cast(pl.String))
    if name == "tumors":
        mm = f["diameter_mm"].cast(pl.Int64)
        step = pl.Series(rng.integers(1, 6, n) * np.where(rng.random(n) < 0.5, -1, 1))
        changed = (mm + step).clip(1, 300)
        changed = pl.select(pl.when(changed == mm).then(mm + 1).otherwise(changed)).to_series()
        return f.with_columns(diameter_mm=changed.cast(pl.String))
    if name == "imaging":
        now = f["finding"].replace_strict(FINDINGS, range(len(FINDINGS))).to_numpy()
        other = (now + rng.integers(1, len(FINDINGS), n)) % len(FINDINGS)
        return f.with_columns(finding=_codes(FINDINGS, other))
    grade = f["ctcae_grade"].cast(pl.Int64).to_numpy()
    other = np.where(grade < 5, (grade - 1 + rng.integers(1, 4, n)) % 4 + 1, grade)
    return f.with_columns(ctcae_grade=pl.Series(other).cast(pl.String))


def _new_ids(name: str, counter: dict, n: int) -> pl.Series:
    """Ids for rows entered by mistake: counted down from the top of the id space, so they
    never meet a real id."""
    start = counter[name]
    counter[name] += n
    if name == "patients":
        serial = MRN_SPACE - 1 - (start + np.arange(n, dtype=np.int64))
        number = (serial * MRN_STEP + counter["mrn_shift"]) % MRN_SPACE + 1_000_000
        return "MRN" + pl.Series(number, dtype=pl.Int64).cast(pl.String)
    prefix, width = ID_FORMAT[name]
    number = 10**width - 1 - (start + np.arange(n, dtype=np.int64))
    return prefix + pl.Series(number, dtype=pl.Int64).cast(pl.String).str.zfill(width)


def _tombstones(f: pl.DataFrame, name: str) -> pl.DataFrame:
    """Deletion rows: the id and record_status=deleted, every other value empty."""
    keep = {ID_COLUMN[name], "_pat", "_night", "_key", "_idx"}
    return f.with_columns(
        [pl.lit(None, pl.String).alias(c) for c in COLUMNS[name] if c not in keep]
        + [pl.lit("deleted").alias("record_status"), pl.col("_key") + 1e12]
    )


def _mistakes(t, k: int, rng, counter: dict) -> dict[str, list[pl.DataFrame]]:
    """Rows entered by mistake in one night and deleted in a later one: reads and events keyed
    twice, and a patient registered twice (with a procedure and a tumor), deleted as a whole."""
    rows: dict[str, list[pl.DataFrame]] = {name: [] for name in COLUMNS}

    def add(name: str, f: pl.DataFrame, night: int, gone: int) -> None:
        f = f.with_columns(_mistake=pl.lit(True))
        rows[name].append(f.with_columns(_night=pl.lit(night, pl.Int64), _key=pl.col("_key") + 0.5))
        rows[name].append(_tombstones(f, name).with_columns(_night=pl.lit(gone, pl.Int64)))

    for night in range(k - 1):
        gone = int(rng.integers(night + 1, k))
        for name, per in (("imaging", 500), ("adverse_events", 200)):
            pool = np.flatnonzero(t[name]["_night"].to_numpy() <= night)
            take = rng.choice(pool, min(len(pool), max(1, t[name].height // per)), replace=False)
            copy = t[name][np.sort(take)]
            add(
                name,
                copy.with_columns(_new_ids(name, counter, copy.height).alias(ID_COLUMN[name])),
                night,
                gone,
            )
        procs = np.flatnonzero(t["procedures"]["_night"].to_numpy() <= night)
        if not len(procs):
            continue
        proc = t["procedures"][int(rng.choice(procs))]
        tum = t["tumors"].filter(pl.col("procedure_id") == proc["procedure_id"][0]).head(1)
        pat = t["patients"].filter(pl.col("patient_mrn") == proc["patient_mrn"][0])
        mrn, pid = _new_ids("patients", counter, 1), _new_ids("procedures", counter, 1)
        add("patients", pat.with_columns(patient_mrn=mrn), night, gone)
        add("procedures", proc.with_columns(procedure_id=pid, patient_mrn=mrn), night, gone)
        add(
            "tumors",
            tum.with_columns(tumor_id=_new_ids("tumors", counter, 1), procedure_id=pid),
            night,
            gone,
        )
    return rows


def _split_nights(chunk: Frames, k: int, rng, counter: dict) -> list[dict[str, pl.DataFrame]]:
    """One chunk as k folders: its final state is exactly the chunk. Night 0 is the full load
    of what had arrived; later nights bring new rows, corrections (same id, changed values)
    and deletions (record_status=deleted) of rows entered by mistake.

    `_cand` marks rows whose patient's history is a single version of every row: only those may
    be corrupted, so the quarantine they cause is the same whichever way the nights are loaded.
    """
    t = _annotate(chunk)
    if k == 1:
        return [{name: f.with_columns(_cand=pl.lit(True)) for name, f in t.items()}]
    _arrivals(t, k, rng)
    mistakes = _mistakes(t, k, rng, counter)
    touched = [m["_pat"] for name in COLUMNS for m in mistakes[name]]
    versions: dict[str, list[pl.DataFrame]] = {}
    for name, f in t.items():
        night = f["_night"].to_numpy()
        fix = np.where(
            (night < k - 1) & (rng.random(f.height) < P_CORRECTED),
            rng.integers(np.minimum(night + 1, k - 1), k),
            -1,
        )
        if name == "procedures":
            fix[f["probe_count"].is_null().to_numpy()] = -1
        fixed = pl.Series(fix > 0)
        first = _earlier_version(name, f.filter(fixed), rng)
        later = f.filter(fixed).with_columns(_night=pl.Series(fix[fix > 0]))
        touched.append(f.filter(fixed)["_pat"])
        versions[name] = [f.filter(~fixed), first, later]
    history = pl.concat(touched).unique().implode()  # patients with more than one version
    nights: list[dict[str, pl.DataFrame]] = [{} for _ in range(k)]
    for name in COLUMNS:
        rows = pl.concat(versions[name] + mistakes[name], how="vertical_relaxed")
        rows = rows.with_columns(_cand=~pl.col("_pat").is_in(history) & ~pl.col("_mistake"))
        for j in range(k):
            nights[j][name] = rows.filter(pl.col("_night") == j).sort("_key").drop("_night")
    return nights


# --- faults -----------------------------------------------------------------------------------
def _choose(options: list[pl.Series], rng: np.random.Generator) -> pl.Series:
    stack = np.stack([o.to_numpy().astype(object) for o in options])
    pick = rng.integers(0, len(options), stack.shape[1])
    return pl.Series(stack[pick, np.arange(stack.shape[1])].tolist(), dtype=pl.String)


def _bad_values(kind: str, column: str, vals: pl.Series, anchor: pl.Series, rng, day: int):
    """Defective replacements for vals (text), vectorised per (kind, column)."""
    n = len(vals)
    if kind == "missing_required":
        return pl.Series([None] * n, dtype=pl.String)
    if kind == "orphan":  # a truncated id: one digit short, so no such row exists
        return vals.str.head(-1)
    if kind == "unknown_code":
        return _codes(WRONG_CODES[column], rng.integers(0, len(WRONG_CODES[column]), n))
    if kind == "bad_date":  # day-first, Feb 30, Apr 31, no separators
        d = vals.str.to_date()
        year = d.dt.year().cast(pl.String)
        return _choose(
            [d.dt.strftime("%d/%m/%Y"), year + "-02-30", year + "-04-31", d.dt.strftime("%Y%m%d")],
            rng,
        )
    if kind == "future_date":
        return _dates(day + rng.integers(1, 400, n)).cast(pl.String)
    if kind == "impossible_date":  # before birth, or a read before its procedure
        back = rng.integers(1, 61, n) if column == "imaging_date" else rng.integers(1, 3651, n)
        return _shift_dates(anchor, -back)
    if kind == "not_a_number":
        if column == "ctcae_grade":
            return _choose(["G" + vals, _codes(ROMAN, vals.cast(pl.Int64).to_numpy())], rng)
        if column == "diameter_mm":
            return _choose([vals + "mm", "~" + vals, vals + " mm"], rng)
        return _choose([vals + " probes", pl.Series(["n/a"] * n)], rng)
    if kind == "out_of_range":
        ranges = np.asarray(OUT_OF_RANGE[column])
        pick = rng.integers(0, len(ranges), n)
        return pl.Series(rng.integers(ranges[pick, 0], ranges[pick, 1])).cast(pl.String)
    if kind == "accepted":  # stray whitespace and case, fine after trimming and case folding
        cased = _choose(
            [vals.str.to_lowercase(), vals.str.to_uppercase(), vals.str.to_titlecase()], rng
        )
        return _choose([" " + cased, cased + " ", "  " + cased + " "], rng)
    raise ValueError(kind)


def _row_level(name: str, kind: str) -> bool:
    """Kinds ingest finds in the row itself (the others when it resolves references)."""
    if kind in ("accepted", "orphan"):
        return False
    return kind != "impossible_date" or name == "patients"


def _corrupt(name: str, f: pl.DataFrame, rate: float, rng, day: int) -> pl.DataFrame:
    """Corrupt round(rate x rows) candidate rows of one file, one defect each; note in `_kind`,
    `_col` and `_code` (the reason ingest gives in the row itself) what was done."""
    n = f.height
    notes = {c: pl.repeat(None, n, dtype=pl.String, eager=True) for c in NOTES}
    cand = np.flatnonzero(f["_cand"].to_numpy() & f["record_status"].is_null().to_numpy())
    m = min(len(cand), int(round(rate * n)))
    rows = np.sort(rng.choice(cand, m, replace=False)) if m else np.zeros(0, np.int64)
    kinds = FAULT_KINDS[name]
    deal = rng.permutation(len(kinds))[np.arange(m) % len(kinds)]
    dupes = []
    for g, (kind, columns) in enumerate(kinds):
        sel = rows[deal == g]
        if not len(sel):
            continue
        eligible = np.column_stack([f[c].gather(sel).is_not_null().to_numpy() for c in columns])
        pick = np.argmax(rng.random(eligible.shape) * eligible, axis=1)
        ok = eligible[np.arange(len(sel)), pick]
        for ci, column in enumerate(columns):
            idx = sel[ok & (pick == ci)]
            if not len(idx):
                continue
            if kind == "duplicate_id":
                dupes.append(idx)
                new = f[column].gather(idx)
            else:
                new = _bad_values(
                    kind, column, f[column].gather(idx), f["_anchor"].gather(idx), rng, day
                )
                f = f.with_columns(f[column].clone().scatter(idx, new))
            notes["_kind"].scatter(idx, kind)
            notes["_col"].scatter(idx, column)
            notes["_value"].scatter(idx, new)
            if _row_level(name, kind):
                notes["_code"].scatter(idx, kind)
    f = f.with_columns(**notes)
    if dupes:  # the same row again further down the file: the earlier copy is the defect
        idx = np.sort(np.concatenate(dupes))
        top = f["_key"].max()
        key = f["_key"].gather(idx).to_numpy()
        copies = f[idx].with_columns(
            *(pl.lit(None, pl.String).alias(c) for c in NOTES),
            _key=pl.Series(key + 0.25 + rng.random(len(idx)) * (top - key)),
        )
        f = pl.concat([f, copies]).sort("_key", maintain_order=True)
    return f


def _simulate(nights: list[dict[str, pl.DataFrame]]) -> dict[str, pl.DataFrame]:
    """Ingest's verdict on every row of every folder, loaded in one run: `_outcome` is the
    reason code of a quarantined row (row problems first, then missing parents parents-first,
    so children of a quarantined row are orphans), null for a loaded one."""
    live: dict[str, pl.Series] = {}
    out = {}
    for name in COLUMNS:
        idc = ID_COLUMN[name]
        rows = pl.concat(
            [f[name].with_columns(_folder=pl.lit(j, pl.Int64)) for j, f in enumerate(nights)],
            how="vertical_relaxed",
        )
        current = (
            rows.filter(pl.col("_code").is_null())
            .sort("_folder", "_line")
            .unique(subset=idc, keep="last", maintain_order=True)
            .filter(pl.col("record_status").is_null())
        )
        verdict = pl.lit(None, pl.String)
        if name in PARENT:
            parent, fk = PARENT[name]
            verdict = (
                pl.when(~pl.col(fk).is_in(live[parent].implode()))
                .then(pl.lit("orphan"))
                .when(pl.col("_kind") == "impossible_date")
                .then(pl.lit("impossible_date"))
            )
        current = current.with_columns(_verdict=verdict)
        live[name] = current.filter(pl.col("_verdict").is_null())[idc]
        rows = rows.join(
            current.select("_folder", "_line", "_verdict"),
            on=["_folder", "_line"],
            how="left",
            maintain_order="left",
        )
        out[name] = rows.with_columns(_outcome=pl.coalesce("_code", "_verdict"))
    return out


def _manifest_rows(verdicts: dict[str, pl.DataFrame], extracts: list[str]) -> pl.DataFrame:
    """The corrupted rows and the rows quarantined because of them, one line each."""
    parts = []
    for name, rows in verdicts.items():
        idc = ID_COLUMN[name]
        parent, fk = PARENT.get(name, (None, idc))
        hit = rows.filter(pl.col("_kind").is_not_null() | pl.col("_outcome").is_not_null())
        extract = pl.col("_folder").replace_strict(
            list(range(len(extracts))), extracts, return_dtype=pl.String
        )
        cascade = pl.col("_kind").is_null()
        inherited = (pl.col("_outcome") == "orphan") & (pl.col("_kind").fill_null("") != "orphan")
        parts.append(
            hit.select(
                extract.alias("extract"),
                (extract + f"/{name}.csv").alias("file"),
                pl.col("_line").alias("line"),
                pl.col(idc).alias("id"),
                pl.col("_kind").fill_null("cascade").alias("kind"),
                pl.when(cascade).then(pl.lit(fk)).otherwise(pl.col("_col")).alias("column"),
                pl.when(cascade).then(pl.col(fk)).otherwise(pl.col("_value")).alias("value"),
                pl.col("_outcome").fill_null("").alias("expected_reason"),
                pl.col("_outcome").is_not_null().alias("quarantined"),
                pl.when(inherited)
                .then(pl.lit(f"{parent} ") + pl.col(fk))
                .otherwise(pl.lit(""))
                .alias("cause"),
            )
        )
    return pl.concat(parts)


# --- writing ----------------------------------------------------------------------------------
class _Writer:
    """Appends chunks to the night folders, numbering physical lines as ingest will (header =
    line 1); for a faulty registry, one file per folder gets a UTF-8 BOM and another its
    columns in a different order, both of which ingest must accept."""

    def __init__(self, folders: list[Path], rng: np.random.Generator | None):
        self.folders, self.lines = folders, {}
        self.layout: dict[tuple[int, str], tuple[list[str], bool]] = {}
        self.file_rows: list[dict] = []
        for j, folder in enumerate(folders):
            names = list(COLUMNS)
            bom = reorder = None
            if rng is not None:
                bom, reorder = rng.choice(names, 2, replace=False)
            for name in names:
                columns = list(COLUMNS[name]) + (["record_status"] if j else [])
                if name == reorder:
                    order = rng.permutation(len(columns))
                    order = order if (order != np.arange(len(columns))).any() else order[::-1]
                    columns = [columns[i] for i in order]
                    self._note(folder.name, name, "reordered_columns", ",".join(columns))
                if name == bom:
                    self._note(folder.name, name, "bom", "\\ufeff")
                self.layout[(j, name)] = (columns, name == bom)

    def _note(self, extract: str, name: str, kind: str, value: str) -> None:
        self.file_rows.append(
            dict.fromkeys(MANIFEST_COLUMNS, "")
            | {"extract": extract, "file": f"{extract}/{name}.csv", "line": 1, "kind": kind}
            | {"value": value, "quarantined": False}
        )

    def number(self, nights: list[dict[str, pl.DataFrame]]) -> None:
        for j, night in enumerate(nights):
            for name, f in night.items():
                start = self.lines.get((j, name), 0) + 2
                night[name] = f.with_columns(_line=pl.int_range(start, start + f.height))
                self.lines[(j, name)] = self.lines.get((j, name), 0) + f.height

    def write(self, nights: list[dict[str, pl.DataFrame]]) -> None:
        for j, night in enumerate(nights):
            self.folders[j].mkdir(parents=True, exist_ok=True)
            for name, f in night.items():
                columns, bom = self.layout[(j, name)]
                path = self.folders[j] / f"{name}.csv"
                first = not path.exists()
                with open(path, "wb" if first else "ab") as sink:
                    if first and bom:
                        sink.write("\ufeff".encode())
                    f.select(columns).write_csv(sink, include_header=first)


def write_registry(
    out_root: Path,
    profile: str = "paper",
    patients: int | None = None,
    seed: int = 20171201,
    chunk_patients: int = 50_000,
    faults: float = 0.0,
    nights: int = 1,
    without_faulty: bool = False,
) -> list[Path]:
    """Write the synthetic extract folders under out_root/<extract date>/; return them.

    nights > 1 writes a full load and nights-1 daily deltas whose final state is the
    single-night registry. faults > 0 corrupts that share of each file's rows and writes the
    ground truth to out_root/_manifest/<date>.faults.csv. without_faulty writes instead the same
    registry with neither the defects nor the rows they get quarantined (nor their children):
    what a run on the faulty one should load.
    """
    if not 0.0 <= faults <= MAX_FAULT_RATE:
        raise ValueError(f"faults must be a share between 0 and {MAX_FAULT_RATE}")
    if nights < 1:
        raise ValueError("nights must be at least 1")
    chunks = iter_frames(profile, patients, seed, chunk_patients)
    first = next(chunks)  # validates the arguments before anything is written
    if faults == 0 and nights == 1:
        folder = Path(out_root) / EXTRACT_DATE.isoformat()
        write_frames(folder, _chain(first, chunks))
        return [folder]
    extracts = extract_dates(nights)
    folders = [Path(out_root) / name for name in extracts]
    faulty = faults > 0 and not without_faulty
    writer = _Writer(folders, np.random.default_rng([seed, 1 << 20]) if faulty else None)
    counter = dict.fromkeys(COLUMNS, 0) | {"mrn_shift": seed % MRN_SPACE}
    manifest = []
    for i, chunk in enumerate(_chain(first, chunks)):
        split = _split_nights(chunk, nights, np.random.default_rng([seed, i, 1]), counter)
        rng = np.random.default_rng([seed, i, 2])
        days = [(date.fromisoformat(e) - EPOCH).days for e in extracts]
        bad = [
            {name: _corrupt(name, f, faults, rng, days[j]) for name, f in night.items()}
            for j, night in enumerate(split)
        ]
        writer.number(bad)
        if without_faulty:
            _drop_quarantined(split, _simulate(bad))
            writer.write(split)
        else:
            if faulty:
                manifest.append(_manifest_rows(_simulate(bad), extracts))
            writer.write(bad)
    if faulty:
        _write_manifests(Path(out_root), extracts, manifest, writer.file_rows)
    return folders


def _drop_quarantined(nights: list[dict[str, pl.DataFrame]], verdicts) -> None:
    """Remove every id that a run on the faulty registry would not load."""
    for name, rows in verdicts.items():
        idc = ID_COLUMN[name]
        gone = rows.filter(pl.col("_outcome").is_not_null())[idc]
        kept = rows.filter(pl.col("_outcome").is_null())[idc]
        removed = gone.filter(~gone.is_in(kept.implode())).implode()
        for night in nights:
            night[name] = night[name].filter(~pl.col(idc).is_in(removed))


def _write_manifests(out_root: Path, extracts, parts: list[pl.DataFrame], file_rows) -> None:
    rows = pl.concat([pl.DataFrame(file_rows, schema=parts[0].schema), *parts])
    rows = rows.with_columns(pl.col("line").cast(pl.Int64)).sort("file", "line", "kind")
    for extract in extracts:
        path = manifest_path(out_root, extract)
        path.parent.mkdir(parents=True, exist_ok=True)
        rows.filter(pl.col("extract") == extract).write_csv(path)
