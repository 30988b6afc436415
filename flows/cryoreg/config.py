"""Run configuration: paths and secrets come from arguments and the environment, never code."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]  # the checkout, when run from one
# the folders shipped in the package, and the variable that overrides each
PROJECT_FOLDERS = {"dbt_project": "CRYOREG_DBT_PROJECT", "expectations": "CRYOREG_EXPECTATIONS_DIR"}

DEMO_PSEUDONYM_KEY = "cryoreg-demo-key-NOT-SECRET"
DEFAULT_QUARANTINE_LIMIT = 0.05
DEFAULT_WAREHOUSE = Path("warehouse/cryoreg.duckdb")
# hours after which a registry file whose newest ledger row is older warns / fails the night
DEFAULT_FRESHNESS_HOURS = {"CRYOREG_FRESHNESS_WARN_HOURS": 48, "CRYOREG_FRESHNESS_ERROR_HOURS": 168}
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


def project_folder(name: str) -> Path:
    """Where the dbt project ("dbt_project") or the expectation suites ("expectations") are.

    Its variable when set; else the copy an installed wheel carries inside the package; else,
    in a source checkout or an editable install, the repository's own top-level folder.
    """
    override = os.environ.get(PROJECT_FOLDERS[name])
    if override:
        return Path(override)
    packaged = resources.files("cryoreg") / name
    if isinstance(packaged, Path) and packaged.is_dir():  # dbt needs real files, not a zip
        return packaged
    return PROJECT_ROOT / name


def dbt_state_dir(store: Path) -> Path:
    """dbt's target/ (partial parsing, compiled SQL) and logs/ beside the store: writable
    where the package may not be, and kept between nights so that dbt parses only what
    changed. cryoreg.store.duckdb -> cryoreg.store.dbt/"""
    return store.with_name(f"{store.stem}.dbt")


def cache_dir() -> Path:
    """Machine-wide copies that only save time, each rebuilt by the run that misses it (an
    empty Prefect database, migrated, for a new PREFECT_HOME): CRYOREG_CACHE_DIR, else
    $XDG_CACHE_HOME/cryoreg, else ~/.cache/cryoreg. Deleting it is always safe."""
    given = os.environ.get("CRYOREG_CACHE_DIR")
    if given:
        return Path(given).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "cryoreg"


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


ENGINES = ("duckdb", "spark")


def engine() -> str:
    """Where the warehouse is built: "duckdb" (an embedded file, the default) or "spark"."""
    name = os.environ.get("CRYOREG_ENGINE", "duckdb").strip().lower() or "duckdb"
    if name not in ENGINES:
        raise ConfigurationError(f"CRYOREG_ENGINE={name!r}: expected one of {', '.join(ENGINES)}")
    return name


@dataclass(frozen=True)
class SparkSettings:
    """The Spark session a run builds on: its master (local[*] on one machine, a cluster's URL
    in production), the warehouse folder its tables are written to, the metastore that names
    them, and the database analysts read."""

    master: str
    warehouse_dir: str
    metastore_dir: str
    published_db: str


def spark_settings(warehouse: Path) -> SparkSettings:
    """CRYOREG_SPARK_MASTER, CRYOREG_SPARK_WAREHOUSE_DIR, CRYOREG_SPARK_METASTORE_DIR and
    CRYOREG_SPARK_DATABASE; the folders default to beside the store (cryoreg.store.spark/),
    whether `warehouse` is the published file's path or the store's."""
    store = warehouse if warehouse.stem.endswith(".store") else store_path(warehouse)
    base = store.with_name(f"{store.stem}.spark")
    return SparkSettings(
        master=os.environ.get("CRYOREG_SPARK_MASTER") or "local[*]",
        warehouse_dir=os.environ.get("CRYOREG_SPARK_WAREHOUSE_DIR") or str(base / "tables"),
        metastore_dir=os.environ.get("CRYOREG_SPARK_METASTORE_DIR") or str(base / "metastore"),
        published_db=os.environ.get("CRYOREG_SPARK_DATABASE") or "cryoreg",
    )


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
class Freshness:
    """Source freshness thresholds in whole hours; None: no such threshold."""

    warn_after: int | None
    error_after: int | None

    def dbt_vars(self) -> dict[str, int]:
        """The dbt vars the sources' freshness reads (0: no threshold)."""
        return {
            "freshness_warn_after_hours": self.warn_after or 0,
            "freshness_error_after_hours": self.error_after or 0,
        }


def freshness() -> Freshness:
    """How old a registry file's newest ledger row may be: past the warning threshold its
    freshness check warns, past the error threshold it fails the night (0 turns either off).

    A nightly extract lands every day: two days without rows warns, a week fails by default.
    """
    hours = {}
    for name, default in DEFAULT_FRESHNESS_HOURS.items():
        raw = os.environ.get(name, "").strip()
        if not raw:
            hours[name] = default
            continue
        try:
            hours[name] = int(raw)
        except ValueError as exc:
            raise ConfigurationError(f"{name}={raw!r} is not a whole number of hours") from exc
        if hours[name] < 0:
            raise ConfigurationError(f"{name}={raw!r} must be 0 (off) or more hours")
    warn, error = hours.values()
    if warn and error and warn >= error:
        raise ConfigurationError(
            f"CRYOREG_FRESHNESS_WARN_HOURS={warn} must be below "
            f"CRYOREG_FRESHNESS_ERROR_HOURS={error}"
        )
    return Freshness(warn or None, error or None)


def notify_url(given: str | None = None) -> str | None:
    """Where the nightly deployment's alerts go: the given URL, else CRYOREG_NOTIFY_URL; None
    when neither is set (no alerts)."""
    url = (given if given is not None else os.environ.get("CRYOREG_NOTIFY_URL", "")).strip()
    if not url:
        return None
    if not url.lower().startswith(("http://", "https://")):
        raise ConfigurationError(f"notify URL {url!r} must be an http:// or https:// address")
    return url


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
