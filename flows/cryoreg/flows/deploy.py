"""The nightly deployment: the same flow, served against a Prefect server on a cron schedule."""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from pathlib import Path

DEFAULT_CRON = "0 2 * * *"
DEPLOYMENT_NAME = "nightly"
HEALTH_TIMEOUT_SECONDS = 5


class NoPrefectServerError(RuntimeError):
    """`cryoreg serve` has no Prefect server to register with."""


def prefect_server_url() -> str:
    """The Prefect server the deployment registers with: PREFECT_API_URL (or the active Prefect
    profile's). Without one, Prefect would start a temporary server that lives as long as this
    process and has no scheduler: the deployment would wait forever for runs that never come."""
    from prefect.settings import get_current_settings

    url = get_current_settings().api.url
    if not url:
        raise NoPrefectServerError(
            "cryoreg serve needs a Prefect server: start one (prefect server start) and set "
            "PREFECT_API_URL, e.g. http://127.0.0.1:4200/api"
        )
    try:
        with urllib.request.urlopen(f"{url.rstrip('/')}/health", timeout=HEALTH_TIMEOUT_SECONDS):
            pass
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise NoPrefectServerError(
            f"no Prefect server answers at PREFECT_API_URL={url} ({reason})"
        ) from None
    return url


def local_timezone() -> str:
    """The IANA zone the schedule runs in: CRYOREG_TIMEZONE, then TZ, then the system's."""
    for candidate in (os.environ.get("CRYOREG_TIMEZONE"), os.environ.get("TZ")):
        if candidate:
            return candidate
    zone_file = Path("/etc/timezone")
    if zone_file.exists() and zone_file.read_text().strip():
        return zone_file.read_text().strip()
    localtime = Path("/etc/localtime")
    if localtime.is_symlink() and "zoneinfo/" in str(localtime.resolve()):
        return str(localtime.resolve()).split("zoneinfo/", 1)[1]
    return "UTC"


def serve_nightly(
    extracts: Path,
    warehouse: Path,
    out: Path,
    cron: str = DEFAULT_CRON,
    timezone: str = "",
    notify_url: str | None = None,
) -> None:
    """Register the deployment with its schedule (and, given a URL, the alerts) and run
    scheduled flow runs until stopped."""
    prefect_server_url()
    from prefect.schedules import Cron

    if notify_url:
        from cryoreg.flows import alerts

        names = alerts.configure(notify_url)
        automations = " and ".join(f"'{name}'" for name in names)
        print(f"cryoreg: alerts to {_shown(notify_url)} (automations {automations})", flush=True)

    from cryoreg.flows.nightly import nightly

    parameters = {
        "extracts": str(extracts.resolve()),
        "warehouse": str(warehouse.resolve()),
        "out": str(out.resolve()),
    }
    nightly.serve(
        name=DEPLOYMENT_NAME,
        schedules=[Cron(cron, timezone=timezone or local_timezone())],
        parameters=parameters,
        tags=["cryoreg", "nightly"],
        global_limit=1,  # one run at a time: runs share the working copy and OUT
        description="Ingest the registry's nightly extracts, rebuild the marts, report, publish.",
    )


def _shown(url: str) -> str:
    """A webhook URL without its path and query, which often hold its secret token."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}/..." if parts.path not in ("", "/") else url
