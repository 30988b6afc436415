"""The `cryoreg` command itself: its version and help, and what a run shows on a terminal (a
live list of its stages, the summary as tables) and off it (the plain lines users grep)."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import shutil
import stat
import struct
import subprocess
import termios
import time

import pytest

import cryoreg

from conftest import CRYOREG, REPO, run_cryoreg

pytestmark = pytest.mark.xdist_group("paper")

STAGES = (
    "ingest extracts",
    "source freshness",
    "dbt build",
    "analysts' file",
    "data quality",
    "analyze",
    "report",
    "publish",
)
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def run_on_terminal(*args: str, cwd, timeout: float = 600) -> tuple[int, str, str]:
    """`cryoreg ARGS` with stdout on a real pseudo-terminal (120x40), stderr in a file; returns
    the exit code, everything the terminal received (escape codes included) and stderr."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    env = {**os.environ, "TERM": "xterm-256color"}
    env.pop("COLUMNS", None)
    with (cwd / "terminal.stderr").open("w") as err:
        proc = subprocess.Popen(
            [*CRYOREG, *args], cwd=cwd, env=env, stdin=slave, stdout=slave, stderr=err
        )
    os.close(slave)
    received, deadline = bytearray(), time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if not select.select([master], [], [], 1.0)[0]:
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the command exited, its side of the terminal is closed
                break
            if not data:
                break
            received += data
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)
    return proc.returncode, received.decode(), (cwd / "terminal.stderr").read_text()


def screen_lines(received: str) -> list[str]:
    """Every line the terminal drew, redraws included, without escape codes."""
    return [line.rstrip() for line in re.split(r"[\r\n]+", ANSI.sub("", received))]


def plain_line(stdout: str, label: str) -> str:
    """The value after a label in the plain summary (`technique efficacy     231/258 (...)`)."""
    return next(line for line in stdout.splitlines() if line.startswith(label))[len(label) :]


def test_version_names_the_package_and_its_commit():
    proc = run_cryoreg("--version", cwd=REPO)
    commit = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    version = f"{cryoreg.__version__}+{commit}" if commit else cryoreg.__version__
    assert proc.stdout == f"cryoreg {version}\n"
    assert proc.stderr == ""


def test_help_lists_every_command():
    proc = run_cryoreg("--help", cwd=REPO)
    listed = {m[1] for m in re.finditer(r"^\W*(\w+)\s{2,}\S", proc.stdout, re.M)}
    assert {"synth", "run", "serve", "docs", "sql"} <= listed, proc.stdout
    assert "--version" in proc.stdout


def test_usage_errors_exit_2_with_one_error_line(tmp_path):
    for args, where in ((["run", "--no-such-option"], "cryoreg run"), ([], "cryoreg")):
        proc = run_cryoreg(*args, cwd=tmp_path, check=False)
        assert proc.returncode == 2, proc.stderr
        errors = [ln for ln in proc.stderr.splitlines() if ": error: " in ln]
        assert len(errors) == 1 and errors[0].startswith(f"{where}: error: "), proc.stderr
    assert not (tmp_path / "warehouse").exists()


def test_run_off_a_terminal_prints_the_plain_log_and_summary(paper_site):
    stdout = paper_site.run_stdout
    assert "\x1b[" not in stdout and "│" not in stdout  # no escape codes, no drawn tables
    for stage in STAGES:
        assert re.search(rf"stage finished: {stage} in \d+\.\d\d s$", stdout, re.M), stage
    assert "\ncryoreg run summary\n===================\n" in stdout
    assert f"{'file':<34}{'read':>10}{'loaded':>10}{'quarantined':>13}" in stdout
    assert re.search(
        r"^data quality: passed \(\d+ checks: \d+ passed, 0 warned, 0 failed", stdout, re.M
    )
    # every file was loaded by this run, seconds ago
    assert re.search(
        r"^registry freshness: passed \(5 files, newest rows at most 0\.\d h old; "
        r"warn after 48 h, error after 168 h\)$",
        stdout,
        re.M,
    ), stdout
    # the build's progress: a line at each tenth of its nodes, the last one all of them
    steps = [
        (int(m[1]), int(m[2]))
        for m in re.finditer(r"- dbt build: (\d+)/(\d+) nodes done$", stdout, re.M)
    ]
    total = int(re.search(r"dbt build: (\d+) nodes, \d+ passed", stdout)[1])
    assert len(steps) == 10 and steps[-1] == (total, total), steps
    assert [done for done, _ in steps] == sorted({done for done, _ in steps})
    # the total counts the start-up too: at least from the first line of the run's log (the
    # temporary Prefect server starting) to the flow's last
    stamps = [
        sum(float(x) * unit for x, unit in zip(m.groups(), (3600, 60, 1), strict=True))
        for m in re.finditer(r"^(\d\d):(\d\d):(\d\d\.\d+) \| ", stdout, re.M)
    ]
    total = float(re.search(r"^finished in ([\d.]+) s$", stdout, re.M)[1])
    assert total >= (stamps[-2] - stamps[0]) % 86400 - 0.1, stdout


def test_run_on_a_terminal_shows_live_stages_and_summary_tables(paper_site, tmp_path):
    shutil.copytree(paper_site.base / "extracts", tmp_path / "extracts")
    code, received, stderr = run_on_terminal("run", cwd=tmp_path)
    assert code == 0, stderr
    assert "error" not in stderr, stderr
    lines = screen_lines(received)

    def first(pattern: str) -> int:
        return next(i for i, line in enumerate(lines) if re.search(pattern, line))

    # the list is live: start-up and the dbt build are drawn running, ticking, then done
    for stage in ("start-up", "dbt build"):
        running = [ln for ln in lines if re.search(rf"{stage}\s+running\s+\d+\.\d s", ln)]
        assert len({re.search(r"(\d+\.\d) s", ln)[1] for ln in running}) > 1, stage
        assert first(rf"{stage}\s+running") < first(rf"✓\s+{stage}\s+done\s+\d+\.\d s")
    for stage in ("start-up", *STAGES):
        assert any(re.search(rf"✓\s+{stage}\s+done\s+\d+\.\d s", ln) for ln in lines), stage
    read = sum(int(n) for n in re.findall(r": read (\d+) rows$", paper_site.run_stdout, re.M))
    assert any(re.search(rf"ingest extracts .* 5 files, {read:,} rows read", ln) for ln in lines)
    assert any(re.search(r"dbt build .* \d+ nodes, \d+ passed, \d+ warned", ln) for ln in lines)
    # while it ran, the build's nodes done of its total, redrawn as they finished
    drawn = [
        (int(m[1]), int(m[2]))
        for ln in lines
        if (m := re.search(r"dbt build\s+running\s+\d+\.\d s\s+(\d+)/(\d+) nodes", ln))
    ]
    assert len({done for done, _ in drawn}) > 3, drawn
    assert len({total for _, total in drawn}) == 1 and max(drawn)[0] <= drawn[0][1]
    # the summary as tables, with the same figures as the plain summary of the same registry
    assert any(re.search(r"┃ file\s+┃\s+read ┃ loaded ┃ quarantined ┃", ln) for ln in lines)
    efficacy = plain_line(paper_site.run_stdout, "technique efficacy     ")
    assert any(re.search(rf"│ technique efficacy\s+│ {re.escape(efficacy)}", ln) for ln in lines)
    assert any(ln.startswith("data quality: passed") for ln in lines)
    assert any(re.fullmatch(r"finished in \d+\.\d s", ln) for ln in lines)
    # none of the plain output: neither the run log's lines nor the text summary
    assert not any("| INFO    | Task run" in ln or ln == "===================" for ln in lines)


def test_a_failed_run_is_one_line_and_its_traceback_is_in_the_log_file(tmp_path):
    """The terminal (and the scheduler's mail) gets lines without tracebacks and one error
    line naming the run's log file; the file, owner-only beside the store, has everything."""
    night = tmp_path / "extracts" / "2015-01-01"
    night.mkdir(parents=True)
    (night / "tumors.csv").write_text("tumor_id,procedure_id\nT1,P1\n")
    proc = run_cryoreg("run", cwd=tmp_path, check=False)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stdout + proc.stderr
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith("cryoreg: error: 2015-01-01/tumors.csv: missing required column")
    log = tmp_path / line.split("(full log: ", 1)[1].rstrip(")")
    assert log.parent == tmp_path / "warehouse" / "logs"
    assert stat.S_IMODE(log.stat().st_mode) == 0o600
    text = log.read_text()
    assert "Traceback (most recent call last)" in text and "RegistryInputError" in text
