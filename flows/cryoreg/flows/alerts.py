"""Alerts: a notification when a night fails or crashes, or ends with warned checks.

Opt-in: `cryoreg serve --notify-url URL` (or CRYOREG_NOTIFY_URL) saves on the Prefect server a
webhook block and two automations, and the server sends the notifications, so that a run
killed outside Python still raises one:

- "cryoreg: night failed": the flow run of cryoreg-nightly entered Failed or Crashed;
- "cryoreg: night warned": the event cryoreg.night.warned, which the flow emits when a night
  published with checks of severity warn that did not pass (or, with nothing new to load,
  found the registry's files stale).

A message names the night, its state, the failed stage or the warned checks, and where to look
(report, steward page, Prefect UI); never a value from an extract. A failed run's error text can
quote one (the quarantine limit names the first problem as received), so it is not sent: the
flow labels its run with the failed stage and the error's type, which the message reads.
"""

from __future__ import annotations

import logging
from pathlib import Path
from uuid import UUID

BLOCK_NAME = "cryoreg-alerts"
FLOW_NAME = "cryoreg-nightly"
FAILED = "cryoreg: night failed"
WARNED = "cryoreg: night warned"
WARNED_EVENT = "cryoreg.night.warned"
LABEL_TIMEOUT_SECONDS = 5
MAX_LISTED = 10  # warned checks named in one message; the rest are counted
# what the webhook receives: Slack, Teams, Mattermost and most chat hooks read "text"
PAYLOAD = {"text": "{{subject}}\n{{body}}", "subject": "{{subject}}", "body": "{{body}}"}

# Rendered by the Prefect server from the flow run (its state, name, id and the labels the
# flow set when it failed); a crashed run has no labels and is named by its Prefect run name.
_LABELS = "{% set labels = flow_run.labels or {} %}"
FAILED_SUBJECT = (
    _LABELS + "cryoreg night {{ labels.get('cryoreg.night') or flow_run.name }}: "
    "{{ flow_run.state.name }}"
)
FAILED_BODY = (
    _LABELS + "The nightly run {{ flow_run.name }} ({{ flow_run.id }}) ended "
    "{{ flow_run.state.name }}{% if labels.get('cryoreg.stage') %} in the stage "
    "'{{ labels.get('cryoreg.stage') }}' ({{ labels.get('cryoreg.error') }}){% endif %}. "
    "Nothing was published: the warehouse and the report are the previous night's.\n"
    "{% if labels.get('cryoreg.steward_page') %}Rows held back, for the registry steward: "
    "{{ labels.get('cryoreg.steward_page') }}\n{% endif %}"
    "Why: the run's log{% if flow_run|ui_url %}, {{ flow_run|ui_url }}"
    "{% else %} in the Prefect UI{% endif %}."
)

log = logging.getLogger(__name__)


def configure(url: str) -> list[str]:
    """Create or update the webhook block and both automations on the Prefect server in use
    (PREFECT_API_URL); returns the automations' names. Running it again changes the URL."""
    from prefect.automations import Automation, EventTrigger, Posture, SendNotification
    from prefect.blocks.notifications import CustomWebhookNotificationBlock

    block = CustomWebhookNotificationBlock(name=BLOCK_NAME, url=url, json_data=dict(PAYLOAD))
    block_id = block.save(BLOCK_NAME, overwrite=True)
    wanted = [
        Automation(
            name=FAILED,
            description="A nightly cryoreg run failed or crashed: nothing was published.",
            trigger=EventTrigger(
                expect={"prefect.flow-run.Failed", "prefect.flow-run.Crashed"},
                match={"prefect.resource.id": "prefect.flow-run.*"},
                match_related={"prefect.resource.role": "flow", "prefect.resource.name": FLOW_NAME},
                posture=Posture.Reactive,
                threshold=1,
                within=0,
            ),
            actions=[
                SendNotification(
                    block_document_id=block_id, subject=FAILED_SUBJECT, body=FAILED_BODY
                )
            ],
        ),
        Automation(
            name=WARNED,
            description="A nightly cryoreg run ended with warned checks.",
            trigger=EventTrigger(
                expect={WARNED_EVENT},
                match={"prefect.resource.id": "cryoreg.night.*"},
                posture=Posture.Reactive,
                threshold=1,
                within=0,
            ),
            actions=[
                SendNotification(
                    block_document_id=block_id,
                    subject="{{ event.payload.subject }}",
                    body="{{ event.payload.body }}",
                )
            ],
        ),
    ]
    for automation in wanted:
        try:
            automation.id = Automation.read(name=automation.name).id
        except ValueError:  # not there yet
            automation.create()
        else:
            automation.update()
    return [a.name for a in wanted]


def mark_failed(
    run_id: str, night: str, stage: str | None, error: str, steward_page: Path | None
) -> None:
    """Label the failed flow run with what the failure message names (its night, the stage
    and the error's type, the steward page); best effort: never hides the run's own error."""
    labels = {"cryoreg.night": night, "cryoreg.error": error}
    if stage:
        labels["cryoreg.stage"] = stage
    if steward_page:
        labels["cryoreg.steward_page"] = str(steward_page)
    try:
        from prefect.client.orchestration import get_client

        flow_run = UUID(run_id)
        with get_client(
            sync_client=True, httpx_settings={"timeout": LABEL_TIMEOUT_SECONDS}
        ) as client:
            client.update_flow_run_labels(flow_run, labels)
    except Exception as exc:  # noqa: BLE001 - an alert detail must not mask the failure
        log.debug("cryoreg: run not labelled for alerts: %s", exc)


def warned_message(
    night: str,
    run_id: str,
    status: dict,
    published: bool,
    report: str | None = None,
    steward_page: Path | None = None,
) -> tuple[str, str]:
    """Subject and body of the warned notification: counts, the warned checks by name (tool,
    failing rows or age), links; check names and counts only, never a value."""
    warned = [r for r in status.get("not_passed") or [] if r.get("kind") == "warned"]
    n = len(warned)
    checks = f"{n} warned check{'s' if n != 1 else ''}"
    if published:
        subject = f"cryoreg night {night}: published with {checks}"
        opening = f"The nightly run {run_id} published; its data quality is warned."
    else:
        subject = f"cryoreg night {night}: nothing new, {checks}"
        opening = f"The nightly run {run_id} had nothing new to load; its checks warned."
    lines = [opening, "Warned:"]
    for row in warned[:MAX_LISTED]:
        failing = row.get("failing rows")
        detail = f"{failing} failing rows" if isinstance(failing, int) else str(failing or "")
        lines.append(f"- {row['check']} ({row['tool']})" + (f": {detail}" if detail else ""))
    if n > MAX_LISTED:
        lines.append(f"- and {n - MAX_LISTED} more (audit.check_results)")
    if report:
        lines.append(f"Report: {report}")
    if steward_page:
        lines.append(f"Rows held back, for the registry steward: {steward_page}")
    return subject, "\n".join(lines)


def announce_warned(night: str, run_id: str, subject: str, body: str) -> None:
    """Emit cryoreg.night.warned (the warned automation sends its subject and body); Prefect
    relates it to the flow run. Without a Prefect server nobody listens: nothing happens."""
    from prefect.events import emit_event

    emit_event(
        WARNED_EVENT,
        resource={"prefect.resource.id": f"cryoreg.night.{run_id}", "prefect.resource.name": night},
        payload={"night": night, "subject": subject, "body": body},
    )
