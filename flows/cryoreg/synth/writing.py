"""Writing the registry: extract folders of CSV files as the hospital sends them, and the
defects manifests; `write_registry` is what `cryoreg synth` runs.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl

from cryoreg.contract import BY_ENTITY
from cryoreg.synth.cohort import EPOCH, EXTRACT_DATE
from cryoreg.synth.faults import (
    MANIFEST_COLUMNS,
    MAX_FAULT_RATE,
    corrupt,
    drop_quarantined,
    manifest_path,
    manifest_rows,
    simulate,
)
from cryoreg.synth.frames import COLUMNS, MRN_SPACE, Frames, iter_frames
from cryoreg.synth.nights import extract_dates, split_nights


def write_frames(folder: Path, chunks: Iterator[Frames]) -> Path:
    """Write chunks as one extract folder: header once, later chunks appended."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, chunk in enumerate(chunks):
        for name, frame in chunk.items():
            with open(folder / BY_ENTITY[name].file_name, "wb" if i == 0 else "ab") as sink:
                frame.write_csv(sink, include_header=i == 0)
    return folder


def _chain(first: Frames, rest: Iterator[Frames]) -> Iterator[Frames]:
    yield first
    yield from rest


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
                columns = list(BY_ENTITY[name].column_names if j else COLUMNS[name])
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
            | {"extract": extract, "file": f"{extract}/{BY_ENTITY[name].file_name}", "line": 1}
            | {"kind": kind, "value": value, "quarantined": False}
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
                path = self.folders[j] / BY_ENTITY[name].file_name
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
        split = split_nights(chunk, nights, np.random.default_rng([seed, i, 1]), counter)
        rng = np.random.default_rng([seed, i, 2])
        days = [(date.fromisoformat(e) - EPOCH).days for e in extracts]
        bad = [
            {name: corrupt(name, f, faults, rng, days[j]) for name, f in night.items()}
            for j, night in enumerate(split)
        ]
        writer.number(bad)
        if without_faulty:
            drop_quarantined(split, simulate(bad))
            writer.write(split)
        else:
            if faulty:
                manifest.append(manifest_rows(simulate(bad), extracts))
            writer.write(bad)
    if faulty:
        _write_manifests(Path(out_root), extracts, manifest, writer.file_rows)
    return folders


def _write_manifests(out_root: Path, extracts, parts: list[pl.DataFrame], file_rows) -> None:
    rows = pl.concat([pl.DataFrame(file_rows, schema=parts[0].schema), *parts])
    rows = rows.with_columns(pl.col("line").cast(pl.Int64)).sort("file", "line", "kind")
    for extract in extracts:
        path = manifest_path(out_root, extract)
        path.parent.mkdir(parents=True, exist_ok=True)
        rows.filter(pl.col("extract") == extract).write_csv(path)
