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
