"""The plan as the five extract files: ids, MRNs, names, codes and dates as the registry sends them.

Frames are built chunk by chunk (one chunk for the paper profile) and written afterwards, so that
`nights` can split them into folders and `faults` can corrupt them first.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import polars as pl

from cryoreg.contract import BY_ENTITY, FILES
from cryoreg.synth.cohort import (
    CELL_TECH,
    FINDINGS,
    GUIDANCE,
    HISTOLOGY_NAMES,
    MISSING,
    MODALITIES,
    ORIGINS,
    PAPER_PATIENTS,
    SEGMENT_P,
    TECH,
    Draw,
    Plan,
    pick,
    plan,
    starts,
)

STATUS = "record_status"  # the contract's last column: sent in the deltas only
COLUMNS = {f.entity: tuple(c for c in f.column_names if c != STATUS) for f in FILES}
PRIMARY, METASTASIS = (ORIGINS.index(o) for o in ("primary", "metastasis"))
SEX = BY_ENTITY["patients"].column("sex").codes
ANESTHESIA = BY_ENTITY["procedures"].column("anesthesia").codes
ANESTHESIA_P = {"general": 0.78, "moderate": 0.20, None: 0.02}
PROBES = BY_ENTITY["procedures"].column("probe_count")
SEGMENT = BY_ENTITY["tumors"].column("liver_segment")

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
ID_FORMAT = {  # prefix and digits of the ids synth gives (the contract's ids are any text)
    "procedures": ("PRC", 8),
    "tumors": ("TUM", 8),
    "imaging": ("IMG", 9),
    "adverse_events": ("AE", 8),
}


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


def _ids(entity: str, offsets: dict[str, int], n: int) -> pl.Series:
    prefix, width = ID_FORMAT[entity]
    start = offsets[entity]
    numbers = pl.Series(np.arange(start + 1, start + n + 1, dtype=np.int64))
    return prefix + numbers.cast(pl.String).str.zfill(width)


def _null_at(series: pl.Series, missing: np.ndarray) -> pl.Series:
    idx = np.flatnonzero(missing)
    return series.scatter(idx, None) if len(idx) else series


def dates(days: np.ndarray) -> pl.Series:
    series = pl.Series(np.where(days == MISSING, 0, days).astype(np.int32)).cast(pl.Date)
    return _null_at(series, days == MISSING)


def codes(names, index: np.ndarray, missing: np.ndarray | None = None) -> pl.Series:
    series = pl.Series(list(names), dtype=pl.String).gather(index)
    return series if missing is None else _null_at(series, missing)


def _ints(values: np.ndarray, missing: np.ndarray) -> pl.Series:
    return _null_at(pl.Series(values.astype(np.int64)), missing)


def shift_dates(values: pl.Series, days: np.ndarray) -> pl.Series:
    moved = values.str.to_date().cast(pl.Int32) + pl.Series(days.astype(np.int32))
    return moved.cast(pl.Date).cast(pl.String)


def _frames(c: Plan, offsets: dict[str, int]) -> Frames:
    """The plan as the five extract files; ids continue from offsets (updated in place)."""
    rng, n_pat, n_proc, n_tum = c.rng, c.n_pat, c.n_proc, c.n_tum
    n_img, n_ev = len(c.img_tumor), len(c.ev_proc)
    serial = offsets["patients"] + np.arange(n_pat, dtype=np.int64)
    mrn_number = (serial * MRN_STEP + offsets["mrn_shift"]) % MRN_SPACE + 1_000_000
    mrn = "MRN" + pl.Series(mrn_number).cast(pl.String)
    first = np.where(
        c.female,
        rng.integers(0, len(FIRST_F), n_pat),
        len(FIRST_F) + rng.integers(0, len(FIRST_M), n_pat),
    )
    name = codes(LAST, rng.integers(0, len(LAST), n_pat)) + ", " + codes(FIRST_F + FIRST_M, first)
    patients = pl.DataFrame(
        {
            "patient_mrn": mrn,
            "patient_name": name,
            "sex": codes(SEX, np.where(c.female, SEX.index("F"), SEX.index("M"))),
            "birth_date": dates(c.birth),
            "death_date": dates(c.death),
            "last_contact_date": dates(c.contact),
        }
    )

    proc_id = _ids("procedures", offsets, n_proc)
    largest = np.maximum.reduceat(c.diameter, c.tum_first)
    probes = 1 + largest / 14 + (c.n_tum_of - 1) * 1.2 + rng.normal(0, 0.8, n_proc)
    anesthesia = pick([ANESTHESIA_P[a] for a in (*ANESTHESIA, None)], n_proc, rng)
    procedures = pl.DataFrame(
        {
            "procedure_id": proc_id,
            "patient_mrn": mrn.gather(c.proc_pat),
            "procedure_date": dates(c.proc_day),
            "guidance": codes(GUIDANCE, c.guidance),
            "anesthesia": codes((*ANESTHESIA, ""), anesthesia, anesthesia == len(ANESTHESIA)),
            "probe_count": _ints(
                np.clip(np.rint(probes), PROBES.low, PROBES.high), rng.random(n_proc) < 0.01
            ),
        }
    )

    tum_id = _ids("tumors", offsets, n_tum)
    tumors = pl.DataFrame(
        {
            "tumor_id": tum_id,
            "procedure_id": proc_id.gather(c.tum_proc),
            "origin": codes(ORIGINS, np.where(c.primary[c.tum_pat], PRIMARY, METASTASIS)),
            "histology": codes(HISTOLOGY_NAMES, c.histology[c.tum_pat]),
            "liver_segment": _ints(
                pick(SEGMENT_P, n_tum, rng) + SEGMENT.low, rng.random(n_tum) < 0.02
            ),
            "diameter_mm": c.diameter,
            "technical_result": codes(TECH, CELL_TECH[c.cell]),
        }
    )

    imaging = pl.DataFrame(
        {
            "imaging_id": _ids("imaging", offsets, n_img),
            "tumor_id": tum_id.gather(c.img_tumor),
            "imaging_date": dates(c.img_day),
            "modality": codes(MODALITIES, c.img_modality),
            "finding": codes(FINDINGS, c.img_finding),
        }
    )

    texts = [t for g in sorted(AE_TEXT) for t in AE_TEXT[g]]
    text_start = starts(np.array([len(AE_TEXT[g]) for g in sorted(AE_TEXT)]))
    text_count = np.array([len(AE_TEXT[g]) for g in sorted(AE_TEXT)])
    g = c.grade - 1
    text = text_start[g] + np.floor(rng.random(n_ev) * text_count[g]).astype(np.int64)
    adverse_events = pl.DataFrame(
        {
            "event_id": _ids("adverse_events", offsets, n_ev),
            "procedure_id": proc_id.gather(c.ev_proc),
            "onset_date": dates(c.proc_day[c.ev_proc] + c.onset),
            "ctcae_grade": c.grade.astype(np.int64),
            "description": codes(texts, text, rng.random(n_ev) < 0.03),
        }
    )
    files = {"patients": patients, "procedures": procedures, "tumors": tumors}
    files |= {"imaging": imaging, "adverse_events": adverse_events}
    frames = Frames(**{name: f.select(COLUMNS[name]) for name, f in files.items()})
    for name, frame in frames.items():
        offsets[name] += frame.height
    return frames


def iter_frames(
    profile: str = "paper",
    patients: int | None = None,
    seed: int = 20171201,
    chunk_patients: int = 50_000,
) -> Iterator[Frames]:
    """The registry as frames, chunk by chunk (a single chunk for the paper profile)."""
    offsets = dict.fromkeys(COLUMNS, 0)
    offsets["mrn_shift"] = seed % MRN_SPACE
    if profile == "paper":
        if patients not in (None, PAPER_PATIENTS):
            raise ValueError(f"profile paper has {PAPER_PATIENTS} patients")
        rng = np.random.default_rng(seed)
        yield _frames(plan(Draw(rng, exact=True), PAPER_PATIENTS), offsets)
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
        yield _frames(plan(Draw(rng, exact=False), n), offsets)
