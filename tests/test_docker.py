"""docker/: the image and compose file are consistent with the project, with or without Docker.

No Docker daemon (or compose plugin) runs on CI machines, so this checks what `docker compose
config` would and a bit more: every service, volume and command is coherent; where the compose
plugin exists, `docker compose config` must accept the file too.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import tomllib

import pytest
import typer
import yaml

from cryoreg.cli.main import app

from conftest import REPO

DOCKER = REPO / "docker"
ENV = {"PREFECT_DB_PASSWORD": "pw", "CRYOREG_PSEUDONYM_KEY": "key"}


def _parse(argv: list[str]) -> tuple[str, dict]:
    """The command and its parameters as `cryoreg ARGV` parses them, without running it."""
    command = typer.main.get_command(app).commands[argv[0]]
    return argv[0], command.make_context(f"cryoreg {argv[0]}", argv[1:]).params


def _interpolate(value: str) -> str:
    """Compose's ${VAR}, ${VAR:-default} and ${VAR:?error} with a test environment."""

    def sub(match: re.Match) -> str:
        name, op, arg = match.group(1), match.group(2), match.group(3)
        if name in ENV:
            return ENV[name]
        if op == ":?":
            raise AssertionError(f"{name} is required: {arg}")
        return arg or ""

    return re.sub(r"\$\{(\w+)(?:(:-|:\?)([^}]*))?\}", sub, value)


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((DOCKER / "compose.yaml").read_text())


def test_dockerfile_copies_what_exists_and_runs_cryoreg():
    lines = [ln.strip() for ln in (DOCKER / "Dockerfile").read_text().splitlines()]
    base = next(ln for ln in lines if ln.startswith("FROM "))
    python = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"]
    assert "python:3.11" in base and "3.11" in python
    copies = [shlex.split(ln)[1:-1] for ln in lines if ln.startswith("COPY ")]
    for sources in copies:
        for source in sources:
            assert (REPO / source).exists(), f"Dockerfile copies missing {source}"
    assert 'ENTRYPOINT ["cryoreg"]' in lines
    cmd = next(json.loads(ln.removeprefix("CMD ")) for ln in lines if ln.startswith("CMD "))
    command, params = _parse(cmd)
    assert command == "run" and str(params["warehouse"]).startswith("/data/warehouse/")
    assert any("-c requirements.lock" in ln for ln in lines), "image must use the lock file"


def test_compose_services_volumes_and_commands(compose):
    services = compose["services"]
    assert set(services) == {"postgres", "prefect-server", "worker"}
    declared = set(compose["volumes"])
    for service in services.values():
        for volume in service.get("volumes", []):
            source = _interpolate(volume).split(":")[0]
            assert source in declared or source.startswith((".", "/")), volume
        for dependency in service.get("depends_on", {}):
            assert dependency in services
    server_env = services["prefect-server"]["environment"]
    assert _interpolate(server_env["PREFECT_API_DATABASE_CONNECTION_URL"]).startswith(
        "postgresql+asyncpg://prefect:pw@postgres:5432/"
    )
    worker = services["worker"]
    assert worker["environment"]["PREFECT_API_URL"] == "http://prefect-server:4200/api"
    assert worker["environment"]["CRYOREG_ENV"] == "production"
    command, params = _parse([_interpolate(str(a)) for a in worker["command"]])
    assert command == "serve" and params["cron"] == "0 2 * * *"
    assert str(params["warehouse"]).startswith("/data/warehouse/")


def test_secrets_come_from_the_environment(compose):
    text = (DOCKER / "compose.yaml").read_text()
    assert "${CRYOREG_PSEUDONYM_KEY:?" in text and "${PREFECT_DB_PASSWORD:?" in text
    example = (DOCKER / ".env.example").read_text()
    assert re.search(r"^CRYOREG_PSEUDONYM_KEY=$", example, re.M), "no key in the example"


@pytest.mark.skipif(
    not shutil.which("docker")
    or subprocess.run(["docker", "compose", "version"], capture_output=True).returncode != 0,
    reason="the docker compose plugin is not installed here",
)
def test_docker_compose_config_accepts_the_file(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in ENV.items()))
    proc = subprocess.run(
        [
            "docker",
            "compose",
            "-f",
            str(DOCKER / "compose.yaml"),
            "--env-file",
            str(env_file),
            "config",
            "--quiet",
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
