"""ASGI entry point: gunicorn with uvicorn workers (docs/deploy.md, "Web over ASGI"):

    gunicorn dynconfig_site.asgi -c deploy/gunicorn.conf.py -k uvicorn_worker.UvicornWorker ...

or, for a single process in development, `uvicorn dynconfig_site.asgi:application`. Async views
read values with `values.aget_value` / `aget_many` on the event loop; sync views (the DRF API)
run on Django's thread as under WSGI.
"""
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dynconfig_site.settings")
application = get_asgi_application()
