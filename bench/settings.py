"""Settings for the benchmark's gunicorn only: the project's, plus one bare DRF view.

Selected with DJANGO_SETTINGS_MODULE=bench.settings by bench/run.py. Nothing else changes, so
the real read API and the bare view run under the same middleware, authentication and
permissions (anonymous reads allowed outside production).
"""

from dynconfig_site.settings import *  # noqa: F401,F403

ROOT_URLCONF = "bench.bare_urls"
