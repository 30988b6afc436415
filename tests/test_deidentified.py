"""The analysts' file holds no identifier in any schema; the registry's store is owner-only.

Scans every column of every table of every schema of the published warehouse of the paper
demo (and every file under out/) for the registry's MRNs, names and birth dates and for the
pseudonym key, with faults, so that the quarantine holds rows of patients too.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import stat

import duckdb
import pytest

from conftest import run_cryoreg

pytestmark = pytest.mark.xdist_group("deidentified")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    base = tmp_path_factory.mktemp("deidentified")
    run_cryoreg("synth", "extracts", "--profile", "paper", "--faults", "0.03", cwd=base)
    run_cryoreg("run", cwd=base, env={"CRYOREG_QUARANTINE_LIMIT": "0.5"})
    return base


def identifiers(site) -> dict[str, set[str]]:
    """The values that identify a person, as the extract gave them, and the key."""
    with duckdb.connect() as con:
        rows = con.execute(
            "select patient_mrn, patient_name, birth_date from read_csv(?, all_varchar = true)",
            [str(site / "extracts" / "2014-12-31" / "patients.csv")],
        ).fetchall()
    found = {
        "mrn": {r[0].strip() for r in rows if r[0] and r[0].strip()},
        "name": {r[1].strip() for r in rows if r[1] and r[1].strip()},
        "birth_date": {r[2].strip() for r in rows if r[2] and r[2].strip()},
    }
    found["key"] = {os.environ["CRYOREG_PSEUDONYM_KEY"]}
    assert found["mrn"] and found["name"] and found["birth_date"]
    return found


def test_no_identifier_in_any_table_of_the_published_file(site):
    found = identifiers(site)
    with duckdb.connect(str(site / "warehouse" / "cryoreg.duckdb"), read_only=True) as con:
        con.execute("create temp table needles (kind varchar, needle varchar)")
        con.executemany(
            "insert into temp.needles values (?, ?)",
            [[kind, value] for kind, values in found.items() for value in values],
        )
        columns = con.execute(
            """select table_schema, table_name, column_name from information_schema.columns
            where table_catalog = current_database() and table_schema <> 'temp'"""
        ).fetchall()
        schemas = {c[0] for c in columns}
        assert {"marts", "audit", "quarantine"} <= schemas
        assert not schemas & {"raw", "staging", "intermediate"}
        leaks = []
        for schema, table, column in columns:
            cell = f'cast("{column}" as varchar)'
            hits = con.execute(
                f"""select n.kind, n.needle, {cell} from "{schema}"."{table}" t
                join temp.needles n on {cell} = n.needle
                    or (n.kind in ('mrn', 'name', 'key') and contains({cell}, n.needle))
                limit 3"""
            ).fetchall()
            leaks += [(schema, table, column, *hit) for hit in hits]
    assert leaks == []


def test_no_identifier_in_any_output_file(site):
    found = identifiers(site)
    needles = found["mrn"] | found["name"] | found["key"]
    leaks = []
    for path in (site / "out").rglob("*"):
        if path.is_file():
            text = path.read_bytes().decode("utf-8", errors="replace")
            leaks += [(str(path), n) for n in needles if n in text][:3]
    assert leaks == []


def test_the_store_is_owner_only_and_holds_the_ledger(site):
    store = site / "warehouse" / "cryoreg.store.duckdb"
    assert stat.S_IMODE(store.stat().st_mode) == 0o600
    with duckdb.connect(str(store), read_only=True) as con:
        mrns = {r[0] for r in con.execute("select patient_mrn from raw.patients").fetchall()}
        full = con.execute(
            "select count(*) from quarantine.rejected_rows where entity = 'patients'"
        ).fetchone()[0]
    assert identifiers(site)["mrn"] <= {m.strip() for m in mrns if m}
    assert full > 0  # the faults put patients rows in quarantine, with their MRNs, here only


def test_patient_key_is_the_hmac_sha256_of_the_mrn_under_the_configured_key(site):
    """Keys stay linkable across nights, versions and tools: anyone holding the key (and only
    they) can compute a patient's key with any standard HMAC-SHA256."""
    key = os.environ["CRYOREG_PSEUDONYM_KEY"].encode("utf-8")
    with duckdb.connect(str(site / "warehouse" / "cryoreg.store.duckdb"), read_only=True) as con:
        pairs = con.execute(
            "select patient_mrn, patient_key from staging.stg_registry__patients"
            " where patient_mrn is not null"
        ).fetchall()
    assert len(pairs) > 100
    for mrn, patient_key in pairs:
        assert patient_key == hmac.new(key, mrn.encode("utf-8"), hashlib.sha256).hexdigest()
