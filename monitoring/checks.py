"""Readiness: can this process reach what it needs? Each check has a hard timeout.

    readiness() -> (is_ready, {"database": {...}, "redis": {...}, "broker": {...}})

Each result is {"ok": bool, "seconds": float} plus "error" (a failed check: the reason, with
URL passwords and credentials masked) or "detail" (e.g. Redis not configured, which is fine in
the embedded default). The checks run at once, each in a thread of its own, so a hung server
costs CHECK_TIMEOUT_SECONDS, not one timeout per check; a check still running then has failed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

import redis
from django.conf import settings
from django.db import connections

from dynconfig_site.celery import app
from monitoring.logging import redact

# A probe answers within a few seconds (Kubernetes' default timeout is 1 s, others' 2-5 s): each
# check gets this long, connecting included.
CHECK_TIMEOUT_SECONDS = 1.5


def readiness() -> tuple[bool, dict[str, dict]]:
    """Run every check (database, redis, broker) at once; (all ok, result per check)."""
    checks: dict[str, Callable[[], str | None]] = {
        "database": _database,
        "redis": _redis,
        "broker": _broker,
    }
    executor = ThreadPoolExecutor(max_workers=len(checks), thread_name_prefix="readyz")
    started = time.monotonic()
    futures = {name: executor.submit(_timed, check) for name, check in checks.items()}
    results: dict[str, dict] = {}
    for name, future in futures.items():
        remaining = max(CHECK_TIMEOUT_SECONDS - (time.monotonic() - started), 0.0)
        try:
            results[name] = future.result(timeout=remaining)
        except FutureTimeout:
            results[name] = {"ok": False, "seconds": round(time.monotonic() - started, 4),
                             "error": f"no answer within {CHECK_TIMEOUT_SECONDS:g} s"}
    executor.shutdown(wait=False)  # a hung check's thread ends with its socket timeout
    return all(result["ok"] for result in results.values()), results


def _timed(check: Callable[[], str | None]) -> dict:
    started = time.monotonic()
    try:
        detail = check()
    except Exception as error:  # noqa: BLE001 - whatever failed, the check reports it
        return {"ok": False, "seconds": round(time.monotonic() - started, 4),
                "error": redact(f"{type(error).__name__}: {error}")}
    result = {"ok": True, "seconds": round(time.monotonic() - started, 4)}
    if detail:
        result["detail"] = detail
    return result


def _database() -> None:
    connection = connections["default"]  # this thread's own connection, closed below
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    finally:
        connection.close()


def _redis() -> str | None:
    if not settings.REDIS_URL:
        return "not configured (in-process caching only)"
    client = redis.Redis.from_url(
        settings.REDIS_URL, socket_connect_timeout=CHECK_TIMEOUT_SECONDS, socket_timeout=CHECK_TIMEOUT_SECONDS
    )
    try:
        client.ping()
    finally:
        client.close()
    return None


def _broker() -> None:
    with app.connection_for_write(connect_timeout=CHECK_TIMEOUT_SECONDS) as connection:
        connection.ensure_connection(max_retries=0)  # one try: the thread has the timeout
