"""Loaded by pytest before Django starts (`-p tests.environment` in pytest.ini), because
pytest-django reads the settings before any conftest.py runs.

Test defaults: the `test` environment on the local PostgreSQL and Redis, over real
connections. Defaults only: set DATABASE_URL / REDIS_URL to point the suite elsewhere.
"""

import os

os.environ.setdefault("DYNCONFIG_ENV", "test")
# One database per pytest process (pytest-django makes `test_<name>` of it), so that two runs on
# one machine never drop each other's test database.
os.environ.setdefault("DATABASE_URL", f"postgres://postgres@127.0.0.1:5432/dynconfig_{os.getpid()}")
# Likewise a Redis database of its own (8 to 15), because tests flush theirs.
os.environ.setdefault("REDIS_URL", f"redis://127.0.0.1:6379/{8 + os.getpid() % 8}")
# A Prometheus multiprocess directory of its own (core.metrics), removed at exit: another
# run's processes must not add to this run's metrics. A test's child processes inherit it.
if "DYNCONFIG_METRICS_DIR" not in os.environ:
    import atexit
    import shutil
    import tempfile

    os.environ["DYNCONFIG_METRICS_DIR"] = tempfile.mkdtemp(prefix=f"dynconfig-metrics-{os.getpid()}-")
    atexit.register(shutil.rmtree, os.environ["DYNCONFIG_METRICS_DIR"], ignore_errors=True)

# Every test client comes from 127.0.0.1 and shares one Redis: the production rate limits would
# trip across unrelated tests. The throttling tests set their own low rates.
os.environ.setdefault("DYNCONFIG_THROTTLE_READ", "off")
os.environ.setdefault("DYNCONFIG_THROTTLE_WRITE", "off")
# A consumer's read waits this long for sources (production: 0.15 s). On a loaded test machine
# a local source can take longer than 150 ms now and then, which would turn an expected fresh
# answer into a degraded one; the tests of the read budget set their own.
os.environ.setdefault("DYNCONFIG_READ_BUDGET", "1.0")
