"""Later extract folders (`--nights`): a full load, then daily deltas of new, corrected and
deleted rows whose final state is exactly the one-night registry, so that loading night by
night and loading at once can be compared.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import polars as pl

from cryoreg.contract import BY_ENTITY, FILES
from cryoreg.synth.cohort import EXTRACT_DATE, FINDINGS
from cryoreg.synth.frames import (
    COLUMNS,
    ID_FORMAT,
    MRN_SPACE,
    MRN_STEP,
    PROBES,
    Frames,
    codes,
)

P_LATE = {"patients": 0.12, "procedures": 0.08, "imaging": 0.15, "adverse_events": 0.10}
P_CORRECTED = 0.03  # rows first sent with a wrong value, corrected in a later night
DIAMETER = BY_ENTITY["tumors"].column("diameter_mm")


def extract_dates(nights: int) -> list[str]:
    """Folder names: the full load on the extract date, then one delta per following day."""
    return [date.fromordinal(EXTRACT_DATE.toordinal() + j).isoformat() for j in range(nights)]


def _text(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.with_columns(pl.all().cast(pl.String))


def _annotate(chunk: Frames) -> dict[str, pl.DataFrame]:
    """Text frames with hidden helper columns: `_idx` (order), `_pat` (the row's patient) and
    `_anchor` (the parent's date the contract's date order puts the row's own date after,
    looked up along the references; null in files without a date order)."""
    t: dict[str, pl.DataFrame] = {}
    dated: dict[str, pl.DataFrame] = {}  # per file: id, patient, its own and its parents' dates
    for spec in FILES:
        f = _text(getattr(chunk, spec.entity)).with_row_index("_idx")
        inherited: list[str] = []
        if spec.parent is None:
            f = f.with_columns(_pat=pl.col(spec.id_column))
        else:
            parent, fk = spec.parent
            above = dated[parent].rename({BY_ENTITY[parent].id_column: fk})
            f = f.join(above, on=fk, how="left", maintain_order="left")
            inherited = [c for c in above.columns if c.startswith("_up_")]
        anchor = pl.col(f"_up_{spec.date_order[0]}") if spec.date_order else pl.lit(None, pl.String)
        f = f.with_columns(_anchor=anchor)
        own = [pl.col(c.name).alias(f"_up_{c.name}") for c in spec.columns if c.kind == "date"]
        dated[spec.entity] = f.select(spec.id_column, "_pat", *inherited, *own)
        t[spec.entity] = f.drop(inherited).with_columns(
            _key=pl.col("_idx").cast(pl.Float64),
            record_status=pl.lit(None, pl.String),
            _mistake=pl.lit(False),
        )
    return t


def _arrivals(t: dict[str, pl.DataFrame], k: int, rng: np.random.Generator) -> None:
    """`_night`: when each row first reaches the registry; children never before their parent."""

    def later(name: str, n: int) -> np.ndarray:
        return np.where(rng.random(n) < P_LATE.get(name, 0.0), rng.integers(1, k, n), 0)

    def inherit(name: str, parent: str, key: str) -> None:
        f = t[name].join(
            t[parent].select(
                pl.col(BY_ENTITY[parent].id_column).alias(key), pl.col("_night").alias("_up")
            ),
            on=key,
            how="left",
            maintain_order="left",
        )
        night = np.maximum(f["_up"].to_numpy(), later(name, f.height))
        t[name] = f.drop("_up").with_columns(_night=pl.Series(night))

    t["patients"] = t["patients"].with_columns(
        _night=pl.Series(later("patients", t["patients"].height))
    )
    for spec in FILES:
        if spec.parent:
            inherit(spec.entity, *spec.parent)


def _earlier_version(name: str, f: pl.DataFrame, rng: np.random.Generator) -> pl.DataFrame:
    """A plausible first version of each row, corrected later to the final one."""
    n = f.height
    if name == "patients":
        return f.with_columns(pl.col("patient_name").str.to_uppercase())
    if name == "procedures":
        probes = f["probe_count"].cast(pl.Int64)
        step = pl.Series(np.where(rng.random(n) < 0.5, -1, 1))
        changed = (probes + step).clip(PROBES.low, PROBES.high)
        changed = pl.select(
            pl.when(changed == probes).then(probes + 1).otherwise(changed)
        ).to_series()
        return f.with_columns(probe_count=changed.cast(pl.String))
    if name == "tumors":
        mm = f["diameter_mm"].cast(pl.Int64)
        step = pl.Series(rng.integers(1, 6, n) * np.where(rng.random(n) < 0.5, -1, 1))
        changed = (mm + step).clip(DIAMETER.low, DIAMETER.high)
        changed = pl.select(pl.when(changed == mm).then(mm + 1).otherwise(changed)).to_series()
        return f.with_columns(diameter_mm=changed.cast(pl.String))
    if name == "imaging":
        now = f["finding"].replace_strict(FINDINGS, range(len(FINDINGS))).to_numpy()
        other = (now + rng.integers(1, len(FINDINGS), n)) % len(FINDINGS)
        return f.with_columns(finding=codes(FINDINGS, other))
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
    keep = {BY_ENTITY[name].id_column, "_pat", "_night", "_key", "_idx"}
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
                copy.with_columns(
                    _new_ids(name, counter, copy.height).alias(BY_ENTITY[name].id_column)
                ),
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


def split_nights(chunk: Frames, k: int, rng, counter: dict) -> list[dict[str, pl.DataFrame]]:
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
