"""Trust under faults: one run at a time per warehouse, and a stop signal leaves it intact.

The real `cryoreg` command in subprocesses, as a scheduler would start (and stop) it: its own
process group, the signal sent to the whole group.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from cryoreg.publish import runlock
from cryoreg.synth.nights import extract_dates

from conftest import CRYOREG, run_cryoreg

pytestmark = pytest.mark.xdist_group("concurrency")

RUN_TIMEOUT = 600  # one paper night takes ~20 s; a loaded 2-core machine is far slower
REFUSAL_SECONDS = 15  # a refused run never starts Prefect: ~1 s, with room for a busy machine
STOP_SECONDS = 10  # from the signal to the exit


def start_cryoreg(*args: str, cwd: Path, log: str = "run") -> subprocess.Popen:
    """`cryoreg ARGS` in its own session, stdout and stderr to files in cwd (never a full pipe)."""
    with (cwd / f"{log}.stdout").open("w") as out, (cwd / f"{log}.stderr").open("w") as err:
        return subprocess.Popen(
            [*CRYOREG, *args],
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            start_new_session=True,
        )


def output(cwd: Path, log: str = "run") -> tuple[str, str]:
    return ((cwd / f"{log}.stdout").read_text(), (cwd / f"{log}.stderr").read_text())


def wait_for(proc: subprocess.Popen, path: Path, text: str, timeout: float = RUN_TIMEOUT) -> None:
    """Until `text` appears in the file the process writes (it must not exit first)."""
    deadline = time.monotonic() + timeout
    while text not in path.read_text():
        assert proc.poll() is None, f"exited ({proc.returncode}) before {text!r}"
        assert time.monotonic() < deadline, f"no {text!r} within {timeout} s"
        time.sleep(0.1)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def leftovers(*folders: Path) -> list[str]:
    """A run's working files (whatever their exact per-run names) left behind."""
    return sorted(
        str(p)
        for folder in folders
        if folder.exists()
        for p in folder.iterdir()
        if "building" in p.name or p.name.startswith(".run-")
    )


def fct_tumor_rows(warehouse: Path) -> int:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return con.execute("select count(*) from marts.fct_tumor").fetchone()[0]


# --- the lock on its own (no Prefect, no pipeline) ---


TRY_HOLD = """
import sys
from pathlib import Path
from cryoreg.publish import runlock
try:
    with runlock.hold(Path(sys.argv[1])):
        print("held")
except runlock.RunLockedError as exc:
    print(exc)
"""


def test_a_second_process_is_refused_with_the_holders_pid(tmp_path):
    warehouse = tmp_path / "warehouse" / "cryoreg.duckdb"

    def try_hold() -> str:
        proc = subprocess.run(
            [sys.executable, "-c", TRY_HOLD, str(warehouse)],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return proc.stdout

    with runlock.hold(warehouse) as lock_file:
        assert lock_file == warehouse.with_name(".cryoreg.duckdb.lock")
        assert f"pid: {os.getpid()}\n" in lock_file.read_text()
        with runlock.hold(warehouse):  # the same process (the command, then its flow): held
            pass
        message = try_hold()
    assert message.count("\n") == 1
    assert re.fullmatch(
        rf"{re.escape(str(warehouse))} is in use by another run \(pid {os.getpid()}, started "
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d\); try again later or pass --wait\n",
        message,
    ), message
    assert try_hold() == "held\n"  # released: free again
    assert lock_file.exists() and not warehouse.exists()  # the lock file stays


# --- the command: refusal, arguments, a signal while waiting ---


@pytest.fixture
def paper_extracts(tmp_path) -> Path:
    """tmp_path with extracts/ from `cryoreg synth --profile paper` (one night)."""
    run_cryoreg("synth", "extracts", "--profile", "paper", cwd=tmp_path)
    return tmp_path


def test_run_on_a_warehouse_in_use_is_refused_at_once(paper_extracts):
    base = paper_extracts
    warehouse = base / "warehouse" / "cryoreg.duckdb"
    with runlock.hold(warehouse):
        began = time.monotonic()
        proc = run_cryoreg("run", cwd=base, check=False)
        seconds = time.monotonic() - began
    assert proc.returncode == 75, proc.stderr  # EX_TEMPFAIL: try again later
    assert seconds < REFUSAL_SECONDS
    assert len(proc.stderr.splitlines()) == 1, proc.stderr
    assert proc.stderr.startswith(
        "cryoreg: error: warehouse/cryoreg.duckdb is in use by another run "
        f"(pid {os.getpid()}, started "
    ), proc.stderr
    assert proc.stderr.rstrip().endswith("; try again later or pass --wait")
    assert "temporary server" not in proc.stdout  # Prefect never started
    assert not warehouse.exists()
    assert leftovers(warehouse.parent, base / "out") == []


def test_run_with_a_missing_extracts_folder_fails_at_once(tmp_path):
    began = time.monotonic()
    proc = run_cryoreg("run", "--extracts", "no/such/extracts", cwd=tmp_path, check=False)
    assert time.monotonic() - began < REFUSAL_SECONDS
    assert proc.returncode != 0
    assert proc.stderr.splitlines() == [
        "cryoreg: error: --extracts no/such/extracts: no such folder"
    ]
    assert "temporary server" not in proc.stdout
    assert not (tmp_path / "warehouse" / "cryoreg.duckdb").exists()


def test_a_waiting_run_stops_on_sigterm(paper_extracts):
    base = paper_extracts
    warehouse = base / "warehouse" / "cryoreg.duckdb"
    with runlock.hold(warehouse):
        proc = start_cryoreg("run", "--wait", cwd=base)
        try:
            wait_for(proc, base / "run.stdout", "cryoreg: waiting: ", timeout=60)
            os.killpg(proc.pid, signal.SIGTERM)
            code = proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    stdout, stderr = output(base)
    assert f"is in use by another run (pid {os.getpid()}, started " in stdout
    assert code == 128 + signal.SIGTERM, stderr
    assert stderr.splitlines() == [
        "cryoreg: interrupted by SIGTERM; the published warehouse is unchanged"
    ]
    assert not warehouse.exists()


# --- real nights ---


def test_two_runs_started_together_publish_once(paper_extracts):
    base = paper_extracts
    warehouse = base / "warehouse" / "cryoreg.duckdb"
    runs = [start_cryoreg("run", cwd=base, log=f"run{i}") for i in (1, 2)]
    try:
        codes = [proc.wait(timeout=RUN_TIMEOUT) for proc in runs]
    finally:
        for proc in runs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    logs = [output(base, f"run{i}") for i in (1, 2)]
    assert sorted(codes) == [0, 75], logs
    winner, loser = (0, 1) if codes[0] == 0 else (1, 0)
    stderr = logs[loser][1]
    assert len(stderr.splitlines()) == 1, stderr
    assert stderr.startswith(
        "cryoreg: error: warehouse/cryoreg.duckdb is in use by another run "
        f"(pid {runs[winner].pid}, started "
    ), stderr
    assert "cryoreg run summary" in logs[winner][0]
    assert fct_tumor_rows(warehouse) == 299
    assert (base / "out" / "metrics.json").exists()
    assert leftovers(warehouse.parent, base / "out") == []


def temporary_server_port(stdout: str) -> int | None:
    found = re.search(r"Starting temporary server on http://127\.0\.0\.1:(\d+)", stdout)
    return int(found.group(1)) if found else None


def test_sigterm_stops_a_night_and_leaves_the_published_warehouse(tmp_path):
    base = tmp_path
    run_cryoreg("synth", "registry", "--profile", "paper", "--nights", "2", cwd=base)
    first, second = extract_dates(2)
    shutil.copytree(base / "registry" / first, base / "extracts" / first)
    run_cryoreg("run", cwd=base)
    warehouse = base / "warehouse" / "cryoreg.duckdb"
    published = sha256(warehouse)
    metrics = (base / "out" / "metrics.json").read_bytes()
    shutil.copytree(base / "registry" / second, base / "extracts" / second)  # tonight's work

    proc = start_cryoreg("run", cwd=base)
    try:
        wait_for(proc, base / "run.stdout", "stage started")
        time.sleep(1)  # into the stage's work
        os.killpg(proc.pid, signal.SIGTERM)  # as a scheduler stops a job: its whole group
        signalled = time.monotonic()
        code = proc.wait(timeout=60)
        seconds = time.monotonic() - signalled
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    stdout, stderr = output(base)
    assert code == 128 + signal.SIGTERM, (stdout[-3000:], stderr)
    assert seconds < STOP_SECONDS, seconds
    assert stderr.splitlines()[-1].startswith("cryoreg: interrupted by SIGTERM"), stderr
    assert stderr.splitlines()[-1].endswith("the published warehouse is unchanged"), stderr
    assert sha256(warehouse) == published
    assert (base / "out" / "metrics.json").read_bytes() == metrics
    assert leftovers(warehouse.parent, base / "out") == []
    port = temporary_server_port(stdout)  # the run stopped Prefect's temporary server
    if port is not None:
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
    assert fct_tumor_rows(warehouse) > 0  # still opens


def dbt_processes(run: subprocess.Popen) -> list[int]:
    """The pids of the dbt process a run started (its command line names the run's pid)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"cryoreg.transform.dbt_process" in argv and str(run.pid).encode() in argv:
            found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    """Is the process running (not gone, not a zombie waiting for init to reap it)?"""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def second_night(base: Path) -> tuple[Path, str, bytes]:
    """A published first night, and the second night's folder waiting in extracts/: the
    warehouse, its sha256 and the published metrics."""
    run_cryoreg("synth", "registry", "--profile", "paper", "--nights", "2", cwd=base)
    first, second = extract_dates(2)
    shutil.copytree(base / "registry" / first, base / "extracts" / first)
    run_cryoreg("run", cwd=base)
    warehouse = base / "warehouse" / "cryoreg.duckdb"
    shutil.copytree(base / "registry" / second, base / "extracts" / second)
    return warehouse, sha256(warehouse), (base / "out" / "metrics.json").read_bytes()


def test_a_stop_during_the_dbt_build_ends_the_dbt_process_too(tmp_path):
    warehouse, published, metrics = second_night(tmp_path)
    proc = start_cryoreg("run", cwd=tmp_path)
    try:
        wait_for(proc, tmp_path / "run.stdout", "nodes done")  # the dbt process is building
        children = dbt_processes(proc)
        assert children  # dbt builds in a process of its own
        os.killpg(proc.pid, signal.SIGTERM)  # the run's group: the dbt process is not in it
        code = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    stdout, stderr = output(tmp_path)
    assert code == 128 + signal.SIGTERM, (stdout[-3000:], stderr)
    assert stderr.splitlines() == [
        "cryoreg: interrupted by SIGTERM; the published warehouse is unchanged"
    ] or stderr.splitlines()[-1].startswith("cryoreg: interrupted by SIGTERM"), stderr
    assert "leaked" not in stderr
    assert dbt_processes(proc) == [] and not any(alive(pid) for pid in children)
    assert sha256(warehouse) == published
    assert (tmp_path / "out" / "metrics.json").read_bytes() == metrics

    run_cryoreg("run", cwd=tmp_path)  # the store recovers: the next night publishes
    assert sha256(warehouse) != published


def test_a_dbt_process_that_dies_fails_the_night_in_one_line(tmp_path):
    warehouse, published, metrics = second_night(tmp_path)
    proc = start_cryoreg("run", cwd=tmp_path)
    try:
        wait_for(proc, tmp_path / "run.stdout", "nodes done")  # the dbt process is building
        for pid in dbt_processes(proc):
            os.kill(pid, signal.SIGKILL)  # as the kernel's out-of-memory killer would
        code = proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    stdout, stderr = output(tmp_path)
    assert code == 1, (stdout[-3000:], stderr)
    assert stderr.splitlines() == [stderr.splitlines()[0]], stderr
    assert stderr.startswith("cryoreg: error: dbt build failed: the dbt process ended"), stderr
    assert sha256(warehouse) == published
    assert (tmp_path / "out" / "metrics.json").read_bytes() == metrics
