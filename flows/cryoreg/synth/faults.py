"""Injected defects (`--faults`) and their ground truth: realistic bad rows dealt across each
file, and a manifest of what ingest must quarantine (with its reason) and what it must accept,
written beside the extract folders where ingest never looks.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from cryoreg.contract import BY_ENTITY, FILES, Column, ExtractFile
from cryoreg.synth.frames import COLUMNS, codes, dates, shift_dates

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


KINDS = (
    "bad_date",
    "future_date",
    "impossible_date",
    "unknown_code",
    "not_a_number",
    "out_of_range",
    "missing_required",
    "orphan",
    "duplicate_id",
    "accepted",
)
NO_FUTURE = ("birth_date",)  # a birth date in the future would put every procedure before it
NOT_A_NUMBER = ("probe_count", "diameter_mm", "ctcae_grade")  # the ones _bad_values misspells
ACCEPTED_TOO = ("histology", "ctcae_grade")  # besides codes: lower-cased text, a trimmed grade
# How far above the contract's range an out_of_range value may go (it may also sit one below
# the range), and for diameters a negative size; the columns in the order they are dealt.
ABOVE_RANGE = {"probe_count": 15, "diameter_mm": 699, "liver_segment": 1, "ctcae_grade": 4}
NEGATIVE = {"diameter_mm": ((-60, -1),)}


def _targets(spec: ExtractFile, kind: str) -> tuple[str, ...]:
    """The columns of one file a defect kind may hit: those whose contract rule it breaks."""
    fk = spec.parent[1] if spec.parent else None
    own_date = spec.date_order[1] if spec.date_order else None
    if kind == "out_of_range":
        return tuple(c for c in ABOVE_RANGE if c in spec.column_names)

    def hit(c: Column) -> bool:
        return {
            "bad_date": c.kind == "date",
            "future_date": c.kind == "date" and c.name not in NO_FUTURE,
            "impossible_date": c.not_before is not None or c.name == own_date,
            "unknown_code": c.kind == "code",
            "not_a_number": c.name in NOT_A_NUMBER,
            "missing_required": c.required and c.name not in (spec.id_column, fk),
            "orphan": c.name == fk,
            "duplicate_id": c.name == spec.id_column,
            "accepted": c.kind == "code" or c.name in ACCEPTED_TOO,
        }[kind]

    return tuple(c.name for c in spec.columns if hit(c))


def _outside(name: str) -> tuple[tuple[int, int], ...]:
    """[low, high) draws of values outside the contract's range of column name."""
    column = next(f.column(name) for f in FILES if name in f.column_names)
    low, high = int(column.low), int(column.high)
    return ((low - 1, low), (high + 1, high + 1 + ABOVE_RANGE[name]), *NEGATIVE.get(name, ()))


# Per file: (defect kind, columns it may hit). One defect per corrupted row; the kinds are dealt
# in turn so that even a small file gets a varied mix. `accepted` defects (stray whitespace and
# case) must load after normalising; `impossible_date` against a parent's date and `orphan` are
# found only when references are resolved.
FAULT_KINDS = {
    spec.entity: tuple((kind, cols) for kind in KINDS if (cols := _targets(spec, kind)))
    for spec in FILES
}
OUT_OF_RANGE = {name: _outside(name) for name in ABOVE_RANGE}
WRONG_CODES = {
    "sex": ("U", "X", "W", "2"),
    "guidance": ("US", "CBCT", "fluoroscopy", "PET-CT"),
    "anesthesia": ("local", "sedation", "GA"),
    "origin": ("secondary", "unknown", "recurrence"),
    "technical_result": ("partial", "success", "n/a"),
    "modality": ("XR", "PET-CT", "CEUS", "SPECT"),
    "finding": ("stable", "complete_response", "progression", "NED"),
}
ROMAN = ("0", "I", "II", "III", "IV", "V")
NOTES = ("_kind", "_col", "_code", "_value")  # what _corrupt did to a row


def manifest_path(out_root: Path, extract: str) -> Path:
    """Where the ground truth of one extract folder's defects lives (never read by ingest)."""
    return Path(out_root) / MANIFEST_DIR / f"{extract}.faults.csv"


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
        return codes(WRONG_CODES[column], rng.integers(0, len(WRONG_CODES[column]), n))
    if kind == "bad_date":  # day-first, Feb 30, Apr 31, no separators
        d = vals.str.to_date()
        year = d.dt.year().cast(pl.String)
        return _choose(
            [d.dt.strftime("%d/%m/%Y"), year + "-02-30", year + "-04-31", d.dt.strftime("%Y%m%d")],
            rng,
        )
    if kind == "future_date":
        return dates(day + rng.integers(1, 400, n)).cast(pl.String)
    if kind == "impossible_date":  # before birth, or a read before its procedure
        back = rng.integers(1, 61, n) if column == "imaging_date" else rng.integers(1, 3651, n)
        return shift_dates(anchor, -back)
    if kind == "not_a_number":
        if column == "ctcae_grade":
            return _choose(["G" + vals, codes(ROMAN, vals.cast(pl.Int64).to_numpy())], rng)
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


def _row_level(spec: ExtractFile, kind: str, column: str) -> bool:
    """Kinds ingest finds in the row itself (the others when it resolves references): a date
    before another of the same row is, a date before the parent's is not."""
    if kind in ("accepted", "orphan"):
        return False
    return kind != "impossible_date" or spec.column(column).not_before is not None


def _anchor(spec: ExtractFile, f: pl.DataFrame, column: str) -> pl.Series:
    """The date the contract says column may not precede: of the same row, or the parent's."""
    before = spec.column(column).not_before
    return f[before] if before else f["_anchor"]


def corrupt(name: str, f: pl.DataFrame, rate: float, rng, day: int) -> pl.DataFrame:
    """Corrupt round(rate x rows) candidate rows of one file, one defect each; note in `_kind`,
    `_col` and `_code` (the reason ingest gives in the row itself) what was done."""
    n = f.height
    notes = {c: pl.repeat(None, n, dtype=pl.String, eager=True) for c in NOTES}
    cand = np.flatnonzero(f["_cand"].to_numpy() & f["record_status"].is_null().to_numpy())
    m = min(len(cand), int(round(rate * n)))
    rows = np.sort(rng.choice(cand, m, replace=False)) if m else np.zeros(0, np.int64)
    kinds, spec = FAULT_KINDS[name], BY_ENTITY[name]
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
                anchor = _anchor(spec, f, column).gather(idx)
                new = _bad_values(kind, column, f[column].gather(idx), anchor, rng, day)
                f = f.with_columns(f[column].clone().scatter(idx, new))
            notes["_kind"].scatter(idx, kind)
            notes["_col"].scatter(idx, column)
            notes["_value"].scatter(idx, new)
            if _row_level(spec, kind, column):
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


def simulate(nights: list[dict[str, pl.DataFrame]]) -> dict[str, pl.DataFrame]:
    """Ingest's verdict on every row of every folder, loaded in one run: `_outcome` is the
    reason code of a quarantined row (row problems first, then missing parents parents-first,
    so children of a quarantined row are orphans), null for a loaded one."""
    live: dict[str, pl.Series] = {}
    out = {}
    for name in COLUMNS:
        spec = BY_ENTITY[name]
        idc = spec.id_column
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
        if spec.parent:
            parent, fk = spec.parent
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


def manifest_rows(verdicts: dict[str, pl.DataFrame], extracts: list[str]) -> pl.DataFrame:
    """The corrupted rows and the rows quarantined because of them, one line each."""
    parts = []
    for name, rows in verdicts.items():
        spec = BY_ENTITY[name]
        idc = spec.id_column
        parent, fk = spec.parent or (None, idc)
        hit = rows.filter(pl.col("_kind").is_not_null() | pl.col("_outcome").is_not_null())
        extract = pl.col("_folder").replace_strict(
            list(range(len(extracts))), extracts, return_dtype=pl.String
        )
        cascade = pl.col("_kind").is_null()
        inherited = (pl.col("_outcome") == "orphan") & (pl.col("_kind").fill_null("") != "orphan")
        parts.append(
            hit.select(
                extract.alias("extract"),
                (extract + f"/{spec.file_name}").alias("file"),
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


def drop_quarantined(nights: list[dict[str, pl.DataFrame]], verdicts) -> None:
    """Remove every id that a run on the faulty registry would not load."""
    for name, rows in verdicts.items():
        idc = BY_ENTITY[name].id_column
        gone = rows.filter(pl.col("_outcome").is_not_null())[idc]
        kept = rows.filter(pl.col("_outcome").is_null())[idc]
        removed = gone.filter(~gone.is_in(kept.implode())).implode()
        for night in nights:
            night[name] = night[name].filter(~pl.col(idc).is_in(removed))
