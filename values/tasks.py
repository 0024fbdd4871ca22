"""Celery tasks: thin and idempotent, each calls one service of values.refresh (or, for
`apply_due_change_requests`, of values.change_requests).

`dispatch_refreshes` runs every DYNCONFIG_DISPATCH_INTERVAL seconds (beat, dynconfig_site/celery.py)
and queues one `refresh_value` per due (value type, context) pair; running it twice queues
nothing twice (each pair is leased). `refresh_value` refreshes one pair; running it twice
fetches twice, which is harmless. Neither retries itself: a failed refresh backs off in the
database and the dispatcher queues it again when its backoff is over. Time limits and JSON
serialization come from the CELERY_* settings.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings

from values.change_requests import change_request_apply_due
from values.events import override_transitions_publish
from values.refresh import REFRESH_LEASE, refresh_dispatch, refresh_failure_record, value_refresh

logger = logging.getLogger(__name__)


@shared_task(
    name="values.tasks.dispatch_refreshes",
    # A dispatch waiting longer than a tick is superseded by the next one: after a worker
    # outage, the backlog of beat's messages expires instead of running one after another.
    expires=settings.DYNCONFIG_DISPATCH_INTERVAL,
)
def dispatch_refreshes() -> int:
    """Queue the refreshes that are due now; returns how many were queued."""
    return len(refresh_dispatch(enqueue=_enqueue_refresh))


@shared_task(name="values.tasks.refresh_value", expires=REFRESH_LEASE.total_seconds())
def refresh_value(key: str, context: dict[str, Any] | None = None) -> str:
    """Refresh `key` in `context` from its sources; returns refreshed, unchanged or failed."""
    try:
        outcome = value_refresh(key=key, context=context)
    except SoftTimeLimitExceeded:
        refresh_failure_record(key=key, context=context, reason="stopped at the task's soft time limit")
        logger.warning("refresh of %s %s stopped at the soft time limit", key, context)
        return "failed"
    logger.info("refresh of %s %s: %s (%s) %s", key, outcome.context, outcome.status, outcome.tier, outcome.reason)
    return outcome.status


def _enqueue_refresh(key: str, context: dict[str, Any]) -> None:
    # The message expires with the pair's lease (the task's `expires`): a refresh that could
    # not run in time is queued afresh by a later tick rather than run late and twice.
    refresh_value.delay(key, context)


@shared_task(
    name="values.tasks.apply_due_change_requests",
    # Like the dispatcher: a run waiting longer than a tick is superseded by the next one.
    expires=settings.DYNCONFIG_DISPATCH_INTERVAL,
)
def apply_due_change_requests() -> int:
    """Apply the approved change requests whose scheduled time has come; returns how many.
    Idempotent and safe in two workers at once: each request's row is locked, and a request
    is applied only while it is still scheduled (values.change_requests)."""
    done = change_request_apply_due()
    for change_request in done:
        logger.info("change request %s: %s %s", change_request.pk, change_request.state, change_request.failure)
    return len(done)


@shared_task(
    name="values.tasks.announce_override_transitions",
    # Superseded by the next tick: a backlog after a worker outage must not run one after another.
    expires=settings.DYNCONFIG_CHANGE_CHECK_INTERVAL * 5,
)
def announce_override_transitions() -> int:
    """Publish a change event for each override that started or expired since the last run."""
    return len(override_transitions_publish())
