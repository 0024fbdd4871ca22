"""Celery tasks: thin and idempotent, each calls one service of values.refresh.

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
