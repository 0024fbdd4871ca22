"""gunicorn's configuration for DynConfig: `gunicorn -c deploy/gunicorn.conf.py dynconfig_site.wsgi`.

Only what the Prometheus metrics need (docs/monitoring.md); bind, workers and timeouts stay on
the command line (deploy/systemd/dynconfig-web.service, Procfile). Each worker writes its metrics
to files of its own in DYNCONFIG_METRICS_DIR, which /metrics adds up; when a worker exits
(recycled, killed, a reload), `child_exit` tells prometheus_client, so that its live gauges
stop counting (its counters stay in the sums, as counters must).
"""

import os


def child_exit(server, worker):
    # Imported here, in the master, only when a worker has gone: the settings decide the
    # directory (DYNCONFIG_METRICS_DIR, default var/metrics), so it is read from them.
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dynconfig_site.settings")
    from django.conf import settings
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid, path=str(settings.DYNCONFIG_METRICS_DIR))
