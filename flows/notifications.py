"""Prefect automations that tell an operator when a night went wrong, created by `draftflow serve`.

Two automations on the nightly deployment, both calling one webhook (a Prefect `Webhook` block; the
payload is JSON with a `text` field, which Slack, Mattermost and Teams-style incoming webhooks show
as the message):

- `draftflow: nightly failed`: the flow run entered Failed, Crashed, TimedOut or Late (Late: it did
  not start on time, e.g. no worker on the pool);
- `draftflow: nightly overdue`: a night started running and neither finished nor failed within
  `overdue_hours` (a stuck stage).

Without a webhook there is nowhere to send a notification and no automation is created; the Prefect
UI still shows each run's state.
"""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from typing import Any
from uuid import UUID

log = logging.getLogger("draftflow.notifications")

NIGHTLY = "draftflow-nightly/nightly"
BLOCK_NAME = "draftflow-notify"
FAILED = "draftflow: nightly failed"
OVERDUE = "draftflow: nightly overdue"
BAD_ENDS = ["Failed", "Crashed", "TimedOut", "Late"]

PAYLOAD = json.dumps(
    {
        "text": "draftflow: nightly run {{ flow_run.name }} is {{ flow_run.state.name }}: "
        "{{ flow_run.state.message or '' }} {{ flow_run|ui_url }}",
        "flow_run_id": "{{ flow_run.id }}",
        "flow_run": "{{ flow_run.name }}",
        "state": "{{ flow_run.state.name }}",
    }
)


def overdue_payload(hours: float) -> str:
    night = "{{ event.resource['prefect.resource.name'] }}"  # Jinja, filled in by the server
    return json.dumps(
        {
            "text": f"draftflow: nightly run {night} has been running for more than {hours:g} h",
            "flow_run": night,
            "state": "Overdue",
        }
    )


def create_nightly_alerts(url: str, overdue_hours: float = 6.0) -> list[UUID]:
    """Create (or replace) both automations on the nightly deployment; returns their ids."""
    from prefect.blocks.webhook import Webhook
    from prefect.client.orchestration import get_client

    block_id: UUID = Webhook(url=url, method="POST", allow_private_urls=True).save(  # type: ignore[assignment]
        BLOCK_NAME, overwrite=True
    )  # the sync variant outside an event loop
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name(NIGHTLY)
        for name in (FAILED, OVERDUE):  # serve again: the same automations, not a second pair
            for old in client.read_automations_by_name(name):
                client.delete_automation(old.id)
        log.info("failed, late and overdue nights are notified to the webhook block %s", BLOCK_NAME)
        return [client.create_automation(a) for a in _alerts(deployment.id, block_id, overdue_hours)]


def _alerts(deployment_id: UUID, block_id: UUID, overdue_hours: float) -> list[Any]:
    from prefect.events.actions import CallWebhook
    from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture

    related = {"prefect.resource.id": f"prefect.deployment.{deployment_id}", "prefect.resource.role": "deployment"}
    failed = AutomationCore(
        name=FAILED,
        description="A night failed, crashed, timed out or was late: notify the webhook.",
        trigger=EventTrigger(
            match={"prefect.resource.id": "prefect.flow-run.*"},
            match_related=related,
            expect={f"prefect.flow-run.{state}" for state in BAD_ENDS},
            posture=Posture.Reactive,
            threshold=1,
            within=timedelta(0),
        ),
        actions=[CallWebhook(block_document_id=block_id, payload=PAYLOAD)],
    )
    overdue = AutomationCore(
        name=OVERDUE,
        description=f"A night still running after {overdue_hours:g} h: notify the webhook.",
        trigger=EventTrigger(
            match={"prefect.resource.id": "prefect.flow-run.*"},
            match_related=related,
            after={"prefect.flow-run.Running"},
            expect={f"prefect.flow-run.{state}" for state in ["Completed", "Cancelled", *BAD_ENDS]},
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=timedelta(hours=overdue_hours),
        ),
        actions=[CallWebhook(block_document_id=block_id, payload=overdue_payload(overdue_hours))],
    )
    return [failed, overdue]


def describe_alerts() -> list[dict[str, Any]]:
    """The draftflow automations on the server (for `serve`'s output and the tests)."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return [
            {"name": a.name, "enabled": a.enabled, "id": str(a.id)}
            for name in (FAILED, OVERDUE)
            for a in client.read_automations_by_name(name)
        ]
