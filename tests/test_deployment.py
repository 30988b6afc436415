"""The nightly deployment on a real `prefect server` (127.0.0.1): schedule, trigger, Completed."""

from __future__ import annotations

import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from conftest import CRYOREG, run_cryoreg

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


class Webhook:
    """A webhook receiver on 127.0.0.1: keeps the JSON body of every POST it gets."""

    def __init__(self) -> None:
        received = self.received = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                received.append(json.loads(body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        # a chat service's hook: the path holds its secret token
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/secret-token"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def about(self, run_id: str) -> list[dict]:
        """The notifications received so far naming a night (by its run id's first 8)."""
        return [m for m in list(self.received) if run_id[:8] in m["subject"]]

    def wait_about(self, run_id: str, timeout: float = 60) -> list[dict]:
        """The notifications naming a night, once one arrived (the server sends them a few
        seconds after the event)."""
        deadline = time.monotonic() + timeout
        while not self.about(run_id):
            if time.monotonic() > deadline:
                subjects = [m.get("subject") for m in self.received]
                raise AssertionError(f"no notification about {run_id[:8]}; got {subjects}")
            time.sleep(0.5)
        return self.about(run_id)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def alerts(server, tmp_path_factory):
    """Alerts set up as the README says, `cryoreg serve --notify-url URL`, towards a webhook
    receiver; the serve process stops once the automations are on the server (the other tests
    serve the same deployment), the server keeps sending."""
    base = tmp_path_factory.mktemp("alerts")
    hook = Webhook()
    log = base / "serve.log"
    serve = [*CRYOREG, "serve", "--cron", "0 2 1 1 *", "--notify-url", hook.url]
    with _process(serve, {**server.env, "PREFECT_HOME": str(base / "home")}, log):

        def automations():
            found = server.client.post("/automations/filter", json={}).json()
            return {a["name"] for a in found if a["enabled"]} >= {
                "cryoreg: night failed",
                "cryoreg: night warned",
            }

        _wait_for(automations, 120, "the alert automations", log)
        _wait_for(lambda: "cryoreg: alerts to" in log.read_text(), 30, "serve's line", log)
    assert "secret-token" not in log.read_text()  # never printed
    yield hook
    hook.close()


def _identifiers(extracts: Path) -> set[str]:
    """Every MRN, name and birth date of a synthetic registry."""
    import duckdb

    with duckdb.connect() as con:
        rows = con.execute(
            "select patient_mrn, patient_name, birth_date from read_csv("
            f"'{extracts}/*/patients.csv', all_varchar = true)"
        ).fetchall()
    return {value for row in rows for value in row if value and len(value) > 3}


def _no_identifiers(messages: list[dict], extracts: Path) -> None:
    secrets = _identifiers(extracts)
    assert secrets
    for message in messages:
        leaked = sorted(s for s in secrets if s in json.dumps(message))
        assert not leaked, leaked[:5]


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


def test_run_attaches_its_data_quality_to_the_flow_run(server, alerts, tmp_path):
    """A night with defective rows (quarantined, under the limit) shows in the Prefect UI how its
    checks came out and which of them warned, and sends one alert naming the night, its warned
    checks, its report and the steward's page, without an identifier."""
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
    run = metrics["run"]
    night = f"{run['started_at'][:10]}-{run['run_id'][:8]}"
    [message] = alerts.wait_about(run["run_id"])
    warned = len(quality["warnings"])
    s = "s" if warned != 1 else ""
    assert message["subject"] == f"cryoreg night {night}: published with {warned} warned check{s}"
    assert message["text"] == f"{message['subject']}\n{message['body']}"
    listed = [line[2:] for line in message["body"].splitlines() if line.startswith("- ")]
    assert len(listed) == min(warned, 10)
    assert {line.split(" (")[0] for line in listed} <= {row["check"] for row in rows}
    report = f"{(tmp_path / 'out').resolve().as_uri()}/nights/{night}/report.html"
    assert f"Report: {report}" in message["body"]
    page = message["body"].split("for the registry steward: ", 1)[1].splitlines()[0]
    assert Path(page).parent == tmp_path / "warehouse" / "steward" and Path(page).exists()
    _no_identifiers([message], tmp_path / "extracts")
    time.sleep(1)  # a second notification of the night would have arrived by now
    assert len(alerts.about(run["run_id"])) == 1


def test_a_failed_night_alerts_with_its_stage(server, alerts, tmp_path):
    """A night that fails (an extract lacks a required column) sends one alert: the night, the
    state, the stage and the error's type; not the error's text, which may quote a value."""
    run_cryoreg("synth", "extracts", cwd=tmp_path)
    night = tmp_path / "bad" / "2015-01-01"
    night.mkdir(parents=True)
    patients = (tmp_path / "extracts" / "2014-12-31" / "patients.csv").read_text().splitlines()
    header = patients[0].split(",")
    keep = [i for i, name in enumerate(header) if name != "sex"]
    (night / "patients.csv").write_text(
        "\n".join(",".join(row.split(",")[i] for i in keep) for row in patients[:20]) + "\n"
    )
    proc = run_cryoreg("run", "--extracts", "bad", cwd=tmp_path, env=server.env, check=False)
    assert proc.returncode == 1 and "missing required column sex" in proc.stderr
    [failed] = [r for r in _flow_runs(server, "FAILED") if r["parameters"]["extracts"] == "bad"]
    [message] = alerts.wait_about(failed["id"])
    assert message["subject"].startswith("cryoreg night ")
    assert message["subject"].endswith(f"-{failed['id'][:8]}: Failed")
    body = message["body"]
    assert f"The nightly run {failed['name']} ({failed['id']}) ended Failed" in body
    assert "in the stage 'ingest extracts' (RegistryInputError)" in body
    assert "Nothing was published" in body and "missing required column" not in body
    _no_identifiers([message], night.parent)


def _flow_runs(server, state: str) -> list[dict]:
    """The server's flow runs of the nightly flow in a state (FAILED, ...)."""
    return server.client.post(
        "/flow_runs/filter",
        json={
            "flows": {"name": {"any_": ["cryoreg-nightly"]}},
            "flow_runs": {"state": {"type": {"any_": [state]}}},
        },
    ).json()


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
            """The deployment as this serve applied it (the alerts' serve, earlier in the
            module, applied the same deployment with its own schedule)."""
            resp = client.get("/deployments/name/cryoreg-nightly/nightly")
            dep = resp.json() if resp.status_code == 200 else None
            served = dep and any(s["schedule"].get("cron") == "0 2 * * *" for s in dep["schedules"])
            return dep if served else None

        dep = _wait_for(deployment, 120, "the nightly deployment with its schedule", serve_log)
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


def test_serve_refuses_a_notify_url_that_is_not_a_web_address(tmp_path):
    proc = run_cryoreg(
        "serve", "--notify-url", "mailto:steward@example.org", cwd=tmp_path, check=False
    )
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        "cryoreg: error: notify URL 'mailto:steward@example.org' must be an http:// or https://"
        " address"
    ]
