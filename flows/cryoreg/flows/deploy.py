"""The nightly deployment: the same flow, served against a Prefect server on a cron schedule."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_CRON = "0 2 * * *"
DEPLOYMENT_NAME = "nightly"


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
    extracts: Path, warehouse: Path, out: Path, cron: str = DEFAULT_CRON, timezone: str = ""
) -> None:
    """Register the deployment with its schedule and run scheduled flow runs until stopped."""
    from prefect.schedules import Cron

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
