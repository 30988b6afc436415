"""Run configuration: paths and secrets come from arguments and the environment, never code."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DBT_PROJECT_DIR = Path(os.environ.get("CRYOREG_DBT_PROJECT", PROJECT_ROOT / "dbt_project"))

DEMO_PSEUDONYM_KEY = "cryoreg-demo-key-NOT-SECRET"
DEFAULT_QUARANTINE_LIMIT = 0.05
DEFAULT_WAREHOUSE = Path("warehouse/cryoreg.duckdb")
_demo_key_warned: list[bool] = []


class ConfigurationError(RuntimeError):
    """A setting that makes running unsafe or impossible."""


def set_quiet_defaults() -> None:
    """Keep every tool offline and telemetry-free before it is imported."""
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # the temporary API server gets 20 s by default: too little on a busy 2-core machine
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
    os.environ.setdefault("PREFECT_HOME", str(Path.home() / ".cryoreg" / "prefect"))
    Path(os.environ["PREFECT_HOME"]).expanduser().mkdir(parents=True, exist_ok=True)
    os.environ.setdefault(
        "PREFECT_LOGGING_SETTINGS_PATH",
        str(Path(__file__).parent / "flows" / "prefect_logging.yml"),
    )


def pseudonym_key() -> str:
    """The HMAC key for patient keys; a visible demo key outside production."""
    key = os.environ.get("CRYOREG_PSEUDONYM_KEY", "")
    if key:
        return key
    if os.environ.get("CRYOREG_ENV", "").lower() == "production":
        raise ConfigurationError(
            "CRYOREG_PSEUDONYM_KEY is not set and CRYOREG_ENV=production: refusing to start"
        )
    if not _demo_key_warned:  # the CLI checks early and the flow again: warn once
        _demo_key_warned.append(True)
        print(
            "warning: CRYOREG_PSEUDONYM_KEY is not set; using the public demo key "
            "(patient keys are not secret)",
            file=sys.stderr,
        )
    return DEMO_PSEUDONYM_KEY


def quarantine_limit() -> float:
    """Largest share of a file's rows that may be quarantined before the run fails."""
    raw = os.environ.get("CRYOREG_QUARANTINE_LIMIT", "")
    if not raw:
        return DEFAULT_QUARANTINE_LIMIT
    try:
        value = float(raw)
    except ValueError as exc:
        raise ConfigurationError(f"CRYOREG_QUARANTINE_LIMIT={raw!r} is not a number") from exc
    if not 0.0 <= value <= 1.0:
        raise ConfigurationError(f"CRYOREG_QUARANTINE_LIMIT={raw!r} must be between 0 and 1")
    return value


@dataclass(frozen=True)
class RunPaths:
    """Where a run reads from and writes to."""

    extracts: Path
    warehouse: Path
    out: Path

    @property
    def store(self) -> Path:
        """The registry's own store beside the published file: the ledger, staging, the full
        quarantine and the audit history (owner-only; never what analysts open)."""
        return store_path(self.warehouse)

    def candidate(self, run_id: str) -> Path:
        """The file a run builds for analysts; same folder as the published file so the
        final rename is atomic, named per run so that runs never touch each other's."""
        return self.warehouse.with_name(f".{self.warehouse.name}.{run_id}.building")


def store_path(warehouse: Path) -> Path:
    """cryoreg.duckdb -> cryoreg.store.duckdb, in the same folder."""
    return warehouse.with_name(f"{warehouse.stem}.store{warehouse.suffix or '.duckdb'}")
