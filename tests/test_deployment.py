"""The nightly deployment on a real `prefect server` (127.0.0.1): schedule, trigger, Completed."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from conftest import run_cryoreg

pytestmark = pytest.mark.xdist_group("deployment")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def _process(args: list[str], env: dict, log: Path):
    """A background process in its own session, killed with all its children afterwards."""
    with log.open("w") as handle:
        proc = subprocess.Popen(
            args, env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            yield proc
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


def _wait_for(check, timeout: float, what: str, log: Path):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(1)
    raise AssertionError(f"timed out waiting for {what}; log:\n{log.read_text()[-3000:]}")


@dataclass
class Server:
    api: str
    env: dict
    client: httpx.Client


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A real `prefect server` on 127.0.0.1 with its own SQLite database."""
    base = tmp_path_factory.mktemp("prefect-server")
    port = _free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {
        **os.environ,
        "PREFECT_HOME": str(base / "prefect-home"),
        "PREFECT_API_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{base / 'prefect.db'}",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "false",
        "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "2",
    }
    env.pop("PREFECT_API_URL", None)
    prefect = str(Path(sys.executable).with_name("prefect"))
    server_log = base / "server.log"
    with _process(
        [prefect, "server", "start", "--host", "127.0.0.1", "--port", str(port)], env, server_log
    ):
        client = httpx.Client(base_url=api, timeout=10)

        def healthy():
            try:
                return client.get("/health").status_code == 200
            except httpx.HTTPError:
                return False

        _wait_for(healthy, 120, "prefect server health", server_log)
        yield Server(api, {**env, "PREFECT_API_URL": api}, client)


def test_run_reports_to_the_server_in_prefect_api_url(server, tmp_path):
    """With PREFECT_API_URL set, `cryoreg run` starts no temporary server and uses that one."""
    run_cryoreg("synth", "extracts", cwd=tmp_path)
    proc = run_cryoreg("run", cwd=tmp_path, env=server.env)
    assert "Starting temporary server" not in proc.stdout + proc.stderr
    runs = server.client.post(
        "/flow_runs/filter",
        json={
            "flows": {"name": {"any_": ["cryoreg-nightly"]}},
            "flow_runs": {"deployment_id": {"is_null_": True}},
        },
    ).json()
    assert [r["state"]["type"] for r in runs] == ["COMPLETED"]
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["run"]["run_id"] == runs[0]["id"]  # the run id is the server's flow run id


def test_run_attaches_its_data_quality_to_the_flow_run(server, tmp_path):
    """A night with defective rows (quarantined, under the limit) shows in the Prefect UI how its
    checks came out and which of them warned."""
    run_cryoreg("synth", "extracts", "--faults", "0.02", cwd=tmp_path)
    run_cryoreg("run", cwd=tmp_path, env={**server.env, "CRYOREG_QUARANTINE_LIMIT": "0.25"})
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    quality = metrics["run"]["data_quality"]
    assert quality["warnings"], quality  # the defects make some checks warn
    found = server.client.post(
        "/artifacts/filter",
        json={"artifacts": {"flow_run_id": {"any_": [metrics["run"]["run_id"]]}}},
    ).json()
    by_key = {a["key"]: a for a in found}
    counts = ", ".join(f"{quality['kinds'][k]} {k}" for k in ("passed", "warned", "failed"))
    assert counts in by_key["cryoreg-data-quality"]["data"]
    table = by_key["cryoreg-checks-not-passed"]["data"]
    rows = json.loads(table) if isinstance(table, str) else table
    assert len(rows) == len(quality["warnings"]) + len(quality["fatal"])
    assert {row["kind"] for row in rows} == {"warned"}
    assert all(row["check"] and row["tool"] for row in rows)


def test_served_deployment_is_scheduled_and_completes_a_triggered_run(server, tmp_path):
    env, client = server.env, server.client
    run_cryoreg("synth", "extracts", cwd=tmp_path)
    serve_log = tmp_path / "serve.log"
    serve_cmd = [
        sys.executable,
        "-m",
        "cryoreg.cli",
        "serve",
        "--cron",
        "0 2 * * *",
        "--timezone",
        "Europe/Zurich",
        "--extracts",
        str(tmp_path / "extracts"),
        "--warehouse",
        str(tmp_path / "warehouse" / "cryoreg.duckdb"),
        "--out",
        str(tmp_path / "out"),
    ]
    with _process(serve_cmd, env, serve_log):

        def deployment():
            resp = client.get("/deployments/name/cryoreg-nightly/nightly")
            return resp.json() if resp.status_code == 200 else None

        dep = _wait_for(deployment, 120, "the nightly deployment", serve_log)
        schedules = [s["schedule"] for s in dep["schedules"]]
        assert schedules == [{"cron": "0 2 * * *", "timezone": "Europe/Zurich", "day_or": True}]
        assert dep["parameters"]["extracts"] == str(tmp_path / "extracts")

        def scheduled_runs():
            return client.post(
                "/flow_runs/filter",
                json={
                    "flow_runs": {
                        "deployment_id": {"any_": [dep["id"]]},
                        "state": {"type": {"any_": ["SCHEDULED"]}},
                    }
                },
            ).json()

        upcoming = _wait_for(scheduled_runs, 60, "scheduled runs", serve_log)
        for run in upcoming:
            local = run["expected_start_time"]
            assert local.endswith(("T01:00:00Z", "T00:00:00Z")), local  # 02:00 in Zurich

        flow_run = client.post(f"/deployments/{dep['id']}/create_flow_run", json={}).json()

        def finished():
            state = client.get(f"/flow_runs/{flow_run['id']}").json()["state"]
            return state if state["type"] in ("COMPLETED", "FAILED", "CRASHED") else None

        state = _wait_for(finished, 300, "the triggered flow run", serve_log)
        assert state["type"] == "COMPLETED", serve_log.read_text()[-3000:]
        artifacts = client.post(
            "/artifacts/filter",
            json={"artifacts": {"flow_run_id": {"any_": [flow_run["id"]]}}},
        ).json()
        assert {a["key"] for a in artifacts} >= {"cryoreg-metrics", "cryoreg-report"}
    assert (tmp_path / "out" / "metrics.json").exists()
    assert (tmp_path / "warehouse" / "cryoreg.duckdb").exists()


def test_serve_refuses_without_a_prefect_server(tmp_path):
    """A temporary server cannot schedule: serving against one would wait forever."""
    run_cryoreg("synth", "extracts", cwd=tmp_path)
    proc = run_cryoreg("serve", cwd=tmp_path, check=False, env={"PREFECT_API_URL": ""})
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        "cryoreg: error: cryoreg serve needs a Prefect server: start one (prefect server start)"
        " and set PREFECT_API_URL, e.g. http://127.0.0.1:4200/api"
    ]
    assert "Starting temporary server" not in proc.stdout


def test_serve_refuses_when_no_server_answers(tmp_path):
    run_cryoreg("synth", "extracts", cwd=tmp_path)
    url = f"http://127.0.0.1:{_free_port()}/api"
    proc = run_cryoreg("serve", cwd=tmp_path, check=False, env={"PREFECT_API_URL": url})
    assert proc.returncode == 1
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith(f"cryoreg: error: no Prefect server answers at PREFECT_API_URL={url}")
