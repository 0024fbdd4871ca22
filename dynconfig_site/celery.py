"""The Celery app: `celery -A dynconfig_site worker` and `celery -A dynconfig_site beat`.

Beat runs two tasks every DYNCONFIG_DISPATCH_INTERVAL seconds: the dispatcher, which reads each
value type's `update_frequency` from the database and queues the refreshes that are due, and
the applier of approved change requests whose scheduled time has come (see values.tasks); and,
where change events exist (Redis), the announcer of overrides that start or expire, every
DYNCONFIG_CHANGE_CHECK_INTERVAL seconds. Settings come from Django's (CELERY_*), JSON only.
"""

import os

from celery import Celery
from celery.signals import worker_process_init
from django.conf import settings
from django.db import connections
from django_redis import get_redis_connection

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dynconfig_site.settings")

app = Celery("dynconfig")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@app.on_after_finalize.connect
def schedule_dispatcher(sender, **kwargs):
    sender.add_periodic_task(
        settings.DYNCONFIG_DISPATCH_INTERVAL, sender.signature("values.tasks.dispatch_refreshes"), name="dispatch refreshes"
    )
    # Approved change requests scheduled for a time: applied within a tick of it.
    sender.add_periodic_task(
        settings.DYNCONFIG_DISPATCH_INTERVAL,
        sender.signature("values.tasks.apply_due_change_requests"),
        name="apply due change requests",
    )
    # Overrides that start or expire change answers with no edit: announced as change events,
    # which live in Redis (without it, the embedded default, there are none to announce).
    if settings.REDIS_URL:
        sender.add_periodic_task(
            settings.DYNCONFIG_CHANGE_CHECK_INTERVAL,
            sender.signature("values.tasks.announce_override_transitions"),
            name="announce override starts and expiries",
        )


@worker_process_init.connect
def fresh_connections_after_fork(**kwargs):
    # A forked worker must not share its parent's database or Redis sockets.
    connections.close_all()
    try:
        get_redis_connection("default").connection_pool.reset()
    except NotImplementedError:
        pass  # no Redis cache configured (embedded default)
