"""`cryoreg sql`, as an analyst uses it: a piped file, every statement's result, CSV and JSON
out to a file, wide results without hidden columns, and a real prompt with history."""

from __future__ import annotations

import csv
import json
import os
import pty
import select
import subprocess
import time

import pytest

from conftest import CRYOREG, run_cryoreg

pytestmark = pytest.mark.xdist_group("paper")


def piped(site, text: str, *options: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*CRYOREG, "sql", *options],
        cwd=site.base,
        input=text,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_piped_file_prints_every_statement(paper_site):
    proc = piped(
        paper_site,
        "show tables;\n"
        "select count(*) as tumors from marts.fct_tumor;\n"
        "select sum(tumor_count) as treated from marts.fct_procedure;\n",
    )
    assert proc.returncode == 0, proc.stderr
    for table in ("marts.fct_tumor", "marts.dim_patient", "quarantine.rejected_rows"):
        assert table in proc.stdout
    assert "| 299     |" in proc.stdout  # count(*)
    assert "| 299     |" in proc.stdout.split("treated", 1)[1]  # a sum: plain digits
    assert "int128" not in proc.stdout and "HUGEINT" not in proc.stdout


def test_csv_and_json_to_a_file_hold_every_row(paper_site, tmp_path):
    out = tmp_path / "tumors.csv"
    run_cryoreg(
        "sql",
        "select tumor_key, size_group from marts.fct_tumor order by tumor_key",
        "--format",
        "csv",
        "--output",
        str(out),
        cwd=paper_site.base,
    )
    with out.open(newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["tumor_key", "size_group"] and len(rows) == 1 + 299  # beyond a screen
    proc = run_cryoreg(
        "sql",
        "select size_group, count(*) as n, sum(diameter_mm)::hugeint as mm "
        "from marts.fct_tumor group by 1 order by 1",
        "--format",
        "json",
        cwd=paper_site.base,
    )
    groups = json.loads(proc.stdout)
    assert [g["size_group"] for g in groups] == ["ge4cm", "lt4cm"]
    assert sum(g["n"] for g in groups) == 299 and all(isinstance(g["mm"], int) for g in groups)


def test_a_wide_result_hides_no_column(paper_site):
    proc = run_cryoreg("sql", "select * from marts.fct_tumor limit 2", cwd=paper_site.base)
    for column in ("tumor_key", "te_study_date", "ltp_competing_event", "follow_up_years"):
        assert proc.stdout.count(f"{column} ") >= 2, column  # once per record
    assert "(2 rows)" in proc.stdout


def test_bad_options_and_statements_are_one_line(paper_site, tmp_path):
    proc = run_cryoreg("sql", "select 1", "--format", "xml", cwd=paper_site.base, check=False)
    assert proc.returncode != 0 and len(proc.stderr.strip().splitlines()) == 1
    proc = piped(paper_site, "select 1 as one;\nselect * from marts.nope;\nselect 2;\n")
    assert proc.returncode == 1
    assert "| 1   |" in proc.stdout and "| 2   |" not in proc.stdout
    assert proc.stderr.strip().splitlines()[0].startswith("error: Catalog Error")


def test_the_prompt_edits_lines_and_keeps_history(paper_site, tmp_path):
    """Under a real terminal: the tables are listed, a statement split over two lines runs, and
    the history file keeps it for the next session."""
    history = tmp_path / "history"
    env = {**os.environ, "CRYOREG_SQL_HISTORY": str(history), "TERM": "dumb"}
    pid, fd = pty.fork()
    if pid == 0:
        os.chdir(paper_site.base)
        os.execvpe(CRYOREG[0], [*CRYOREG, "sql"], env)
    output = b""

    def read_until(marker: bytes, timeout: float = 60, since: int = 0) -> None:
        nonlocal output
        end = time.monotonic() + timeout
        while marker not in output[since:] and time.monotonic() < end:
            if select.select([fd], [], [], 0.5)[0]:
                try:
                    output += os.read(fd, 65536)
                except OSError:
                    break
        assert marker in output[since:], output.decode(errors="replace")[-2000:]

    read_until(b"cryoreg> ")
    assert b"marts.fct_tumor" in output
    os.write(fd, b"select count(*) as n\r")
    read_until(b"...> ")
    os.write(fd, b"from marts.dim_patient;\r")
    read_until(b"(1 row)")
    read_until(b"cryoreg> ", timeout=30, since=output.index(b"(1 row)"))  # the next prompt
    os.write(fd, b"\x04")  # Ctrl-D on an empty line quits
    end = time.monotonic() + 60
    while os.waitpid(pid, os.WNOHANG) == (0, 0):
        if time.monotonic() > end:
            os.kill(pid, 9)
            raise AssertionError("the prompt did not quit on Ctrl-D")
        time.sleep(0.2)
    assert b"| 186" in output
    assert "from marts.dim_patient;" in history.read_text()
