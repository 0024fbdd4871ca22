"""Django settings for DynConfig: server settings, per deployment.

The environment is read here, once, through django-environ, and nowhere else. Production
differs from development by environment variables, not by code:

    DYNCONFIG_ENV         development | staging | production | test   (default: development)
    DYNCONFIG_CONFIG_DIR  where the environment YAML files live        (default: config/environments)
    DATABASE_URL          unset: an SQLite file under var/             (embedded default)
    REDIS_URL             unset: no Redis, in-process caching only     (embedded default)
    CELERY_BROKER_URL     unset: Redis if REDIS_URL is set, else a filesystem broker under var/
    DYNCONFIG_VAR_DIR     where the embedded defaults keep their files (default: var/)
    SECRET_KEY            required in production
    ALLOWED_HOSTS         comma-separated; default 127.0.0.1,localhost outside production
    DEBUG                 default on in development only; production refuses to start with it on

API access and security (docs/security.md):

    DYNCONFIG_ANONYMOUS_READS      value reads without a token; default on outside production
    DYNCONFIG_TOKEN_CACHE_SECONDS  how long a process trusts a token it looked up (default 5):
                                   a revoked token works elsewhere for at most that long
    DYNCONFIG_TOKEN_OUTAGE_GRACE   while the database is unreachable, how long after its last
                                   successful lookup a token keeps working (ISO 8601, default
                                   PT10M; 0: none, every token gets 503 during an outage)
    DYNCONFIG_THROTTLE_READ        rate of GET/HEAD/OPTIONS per token, or per IP without one
                                   (default 6000/min; `off` for no limit)
    DYNCONFIG_THROTTLE_WRITE       rate of the other methods, likewise (default 120/min)
    DYNCONFIG_NUM_PROXIES          proxies in front of the app, to find the client IP in
                                   X-Forwarded-For (default 1 behind a TLS proxy, else 0)
    DYNCONFIG_BEHIND_TLS_PROXY     trust X-Forwarded-Proto: https (default on in production)
    SECURE_SSL_REDIRECT            redirect http to https (default on in production)
    SECURE_HSTS_SECONDS            HSTS max-age (default a year in production, else 0: none)
    SECURE_HSTS_INCLUDE_SUBDOMAINS, SECURE_HSTS_PRELOAD   default on in production
    SECURE_COOKIES                 session and CSRF cookies over https only (default on in production)
    CSRF_TRUSTED_ORIGINS           comma-separated origins (https://ops.example.com) allowed to POST
    DYNCONFIG_ADMIN_PATH           where the admin lives (default admin/)
    DYNCONFIG_CHANGE_REQUESTS      edits of value types, source links and overrides wait for a
                                   second operator's approval (default on in production only)

Reads and refreshes (docs/resolution.md):

    DYNCONFIG_READ_BUDGET     seconds a consumer's read waits for sources (default 0.15)
    DYNCONFIG_REFRESH_BUDGET  seconds a refresh gives the sources of one value (default 3)
    DYNCONFIG_L1_MAX_ENTRIES  answers a process keeps in memory (L1), least recently used
                              evicted first (default 10000)

Change events and webhooks (docs/api.md):

    DYNCONFIG_CHANGE_RETENTION      how long the change stream keeps events (ISO 8601, default PT1H)
    DYNCONFIG_STREAM_HEARTBEAT      seconds between a stream's heartbeats (default 15)
    DYNCONFIG_CHANGE_CHECK_INTERVAL seconds between announcements of overrides' starts and
                                    expiries (beat; default 1)
    DYNCONFIG_WEBHOOK_ATTEMPTS      attempts per webhook delivery (default 6)
    DYNCONFIG_WEBHOOK_BACKOFF       seconds before a delivery's first retry, doubled each time (default 10)
    DYNCONFIG_WEBHOOK_TIMEOUT       seconds per delivery attempt (default 5)

Monitoring (docs/monitoring.md):

    DYNCONFIG_METRICS_DIR   prometheus_client's multiprocess files, shared by every process of a
                            host (default var/metrics); empty it when none runs
    DYNCONFIG_LOG_FORMAT    json | plain (default json in production, plain elsewhere)
    LOG_LEVEL               the root logger's level (default INFO)

Runtime values (value types, sources, weights, overrides) are data in the database, edited by
operators; see config/README.md for where that line is drawn.
"""

import os
import re
from datetime import timedelta
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

from core.durations import parse_duration

BASE_DIR = Path(__file__).resolve().parent.parent

ENVIRONMENTS = ("development", "staging", "production", "test")

env = environ.Env()
VAR_DIR = Path(env.str("DYNCONFIG_VAR_DIR", default=str(BASE_DIR / "var")))

DYNCONFIG_ENV = env.str("DYNCONFIG_ENV", default="development")
if DYNCONFIG_ENV not in ENVIRONMENTS:
    raise ImproperlyConfigured(
        f"DYNCONFIG_ENV={DYNCONFIG_ENV!r} is not one of {', '.join(ENVIRONMENTS)}."
    )
IS_PRODUCTION = DYNCONFIG_ENV == "production"

# Prometheus metrics are summed over every process (web workers, Celery workers): each writes
# its numbers to files in this directory (prometheus_client's multiprocess mode), and /metrics
# adds them up. prometheus_client reads PROMETHEUS_MULTIPROC_DIR once, when it is first imported,
# so it is exported here: every process (manage.py, wsgi, celery) loads these settings before any
# of our code imports prometheus_client. core/metrics.py checks it again for a process that
# imported prometheus_client earlier (gunicorn's master, through deploy/gunicorn.conf.py).
DYNCONFIG_METRICS_DIR = Path(env.str("DYNCONFIG_METRICS_DIR", default=str(VAR_DIR / "metrics")))
DYNCONFIG_METRICS_DIR.mkdir(parents=True, exist_ok=True)
os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(DYNCONFIG_METRICS_DIR)

DYNCONFIG_CONFIG_DIR = Path(env.str("DYNCONFIG_CONFIG_DIR", default="config/environments"))
if not DYNCONFIG_CONFIG_DIR.is_absolute():
    DYNCONFIG_CONFIG_DIR = BASE_DIR / DYNCONFIG_CONFIG_DIR

DEBUG = env.bool("DEBUG", default=DYNCONFIG_ENV == "development")
SECRET_KEY = env.str("SECRET_KEY", default="")
if IS_PRODUCTION and DEBUG:
    raise ImproperlyConfigured("DEBUG must be off in production (unset DEBUG or set DEBUG=false).")
if IS_PRODUCTION and not SECRET_KEY:
    raise ImproperlyConfigured("SECRET_KEY must be set in production.")
if not SECRET_KEY:
    # Outside production only: a fixed, public key for local work. Never used in production.
    SECRET_KEY = "dynconfig-insecure-development-key-do-not-use-in-production"

ALLOWED_HOSTS = env.list(
    "ALLOWED_HOSTS", default=[] if IS_PRODUCTION else ["127.0.0.1", "localhost", "testserver"]
)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_jsonform",
    "audit",
    "config",
    "access",
    "values",
    "sources",
    "monitoring",
    "planning",
    "webhooks",
]

MIDDLEWARE = [
    # First: every log line of the request, other middleware's included, carries its id.
    "monitoring.logging.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # A consumer's value read is answered here, without the rest of the stack (read_lane.py).
    "dynconfig_site.read_lane.ValueReadLaneMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # A view that finds the database unreachable answers 503 database_unavailable (JSON under
    # /api/, a short page elsewhere) instead of a 500; DRF views do so in api_errors.py.
    "dynconfig_site.database_outage.DatabaseOutageMiddleware",
]

ROOT_URLCONF = "dynconfig_site.urls"
WSGI_APPLICATION = "dynconfig_site.wsgi.application"
ASGI_APPLICATION = "dynconfig_site.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": env.db_url("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'dynconfig.sqlite3'}")
}
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
# How long a SQLite connection waits for another process's write to finish before giving up
# with "database is locked" (seconds): the embedded default's web, worker and beat share one
# file, and a refresh or dispatch holds the write lock for milliseconds, far below this.
SQLITE_BUSY_TIMEOUT_SECONDS = 20
# The embedded default with several writing processes (docs/deploy.md): a write-ahead log, so
# readers never block the writer nor it them; synchronous=NORMAL, safe with a WAL (a power cut
# may lose the last commits, never corrupt the file) and far fewer fsyncs; IMMEDIATE
# transactions, which take the write lock when they begin and so wait for it (busy timeout)
# instead of failing at once when a read inside them later turns into a write.
SQLITE_OPTIONS = {
    "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL",
    "transaction_mode": "IMMEDIATE",
    "timeout": SQLITE_BUSY_TIMEOUT_SECONDS,
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    VAR_DIR.mkdir(exist_ok=True)
    # Options given in DATABASE_URL's query string take precedence.
    DATABASES["default"]["OPTIONS"] = {**SQLITE_OPTIONS, **DATABASES["default"].get("OPTIONS", {})}

REDIS_URL = env.str("REDIS_URL", default="")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": REDIS_URL,
            "OPTIONS": {
                "CLIENT_CLASS": "django_redis.client.DefaultClient",
                # A Redis that hangs must not hang reads: fail fast and let the tier be skipped.
                "SOCKET_CONNECT_TIMEOUT": 0.25,
                "SOCKET_TIMEOUT": 0.25,
            },
            "KEY_PREFIX": "dynconfig",
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# Celery (dynconfig_site/celery.py reads every CELERY_* setting here).
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=REDIS_URL or "filesystem://")
if CELERY_BROKER_URL.startswith("filesystem://"):
    # The embedded default: a broker that needs no server, folders under var/.
    BROKER_DIR = VAR_DIR / "broker"
    (BROKER_DIR / "out").mkdir(parents=True, exist_ok=True)
    (BROKER_DIR / "processed").mkdir(parents=True, exist_ok=True)
    (BROKER_DIR / "control").mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR / "out"),
        "data_folder_out": str(BROKER_DIR / "out"),
        "processed_folder": str(BROKER_DIR / "processed"),
        "control_folder": str(BROKER_DIR / "control"),  # else Kombu writes ./control in the cwd
        "store_processed": False,
    }
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_IGNORE_RESULT = True  # tasks report through the database and logs, not results
CELERY_TASK_SOFT_TIME_LIMIT = 60  # seconds: one context's refresh (sources have 3 s; margin for retries)
CELERY_TASK_TIME_LIMIT = 90
CELERY_TASK_ACKS_LATE = True  # a worker killed mid-task leaves the task for another (tasks are idempotent)
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TIMEZONE = "UTC"
# How often beat runs the dispatcher that reads each value type's schedule from the database.
DYNCONFIG_DISPATCH_INTERVAL = env.float("DYNCONFIG_DISPATCH_INTERVAL", default=10.0)
# How long a consumer's read waits for sources before answering with the best it has (seconds;
# a value type's `read_budget` takes precedence): the seed's "< 200 ms overhead" with room for
# the rest of the read. Retries and rate-limit waits belong to refreshes (values/resolution.py).
DYNCONFIG_READ_BUDGET = env.float("DYNCONFIG_READ_BUDGET", default=0.15)
# How long a refresh (background, refresh_values, an operator's "refresh now") gives the sources
# of one value, every tier and retry included (seconds).
DYNCONFIG_REFRESH_BUDGET = env.float("DYNCONFIG_REFRESH_BUDGET", default=3.0)
# How many answers one process keeps in memory (L1), least recently used evicted first: the
# bound of a web process's memory whatever number of contexts it reads (about 6 KB of RSS per
# answer of the built-ins, so ~60 MB at the default: bench/run.py --scale); the rest are a Redis
# GET away (L2).
DYNCONFIG_L1_MAX_ENTRIES = env.int("DYNCONFIG_L1_MAX_ENTRIES", default=10_000)
if DYNCONFIG_L1_MAX_ENTRIES < 1:
    raise ImproperlyConfigured(f"DYNCONFIG_L1_MAX_ENTRIES={DYNCONFIG_L1_MAX_ENTRIES} must be at least 1.")
# How long the record of source calls (source health) is kept: an ISO 8601 duration.
DYNCONFIG_HEALTH_RETENTION = env.str("DYNCONFIG_HEALTH_RETENTION", default="P7D")
# Change events (values.events, docs/api.md "Change stream"): how long the stream keeps them (a
# subscriber away for less resumes without loss; ISO 8601), the seconds between a stream's
# heartbeats (proxies close idle connections: keep it below their idle timeout), and how often
# beat announces overrides that started or expired (seconds).
DYNCONFIG_CHANGE_RETENTION = env.str("DYNCONFIG_CHANGE_RETENTION", default="PT1H")
DYNCONFIG_STREAM_HEARTBEAT = env.float("DYNCONFIG_STREAM_HEARTBEAT", default=15.0)
DYNCONFIG_CHANGE_CHECK_INTERVAL = env.float("DYNCONFIG_CHANGE_CHECK_INTERVAL", default=1.0)
# Webhooks (webhooks/, docs/api.md "Webhooks"): attempts per delivery, the wait before the first
# retry (doubled for each next one, seconds), and each attempt's timeout (seconds).
DYNCONFIG_WEBHOOK_ATTEMPTS = env.int("DYNCONFIG_WEBHOOK_ATTEMPTS", default=6)
DYNCONFIG_WEBHOOK_BACKOFF = env.float("DYNCONFIG_WEBHOOK_BACKOFF", default=10.0)
DYNCONFIG_WEBHOOK_TIMEOUT = env.float("DYNCONFIG_WEBHOOK_TIMEOUT", default=5.0)

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

ADMIN_PATH = env.str("DYNCONFIG_ADMIN_PATH", default="admin/")



def _throttle_rate(variable: str, *, default: str) -> str | None:
    """A DRF rate such as `6000/min` (per second, minute, hour or day); `off`: no limit."""
    rate = env.str(variable, default=default).strip()
    if rate.lower() == "off":
        return None
    if not re.fullmatch(r"[0-9]+/(s|sec|second|m|min|minute|h|hour|d|day)", rate):
        raise ImproperlyConfigured(f"{variable}={rate!r} is not a rate such as 6000/min, 100/s, or off.")
    return rate


def _duration(variable: str, *, default: str) -> timedelta:
    """An ISO 8601 duration such as `PT10M` (core/durations.py); `0` for none."""
    text = env.str(variable, default=default).strip()
    if text == "0":
        return timedelta(0)
    try:
        return parse_duration(text)
    except ValueError as error:
        raise ImproperlyConfigured(f"{variable}: {error}") from None


# Whether a reverse proxy terminates TLS in front of us and says so in X-Forwarded-Proto.
BEHIND_TLS_PROXY = env.bool("DYNCONFIG_BEHIND_TLS_PROXY", default=IS_PRODUCTION)

REST_FRAMEWORK = {
    # The token first: its `WWW-Authenticate: Bearer` makes a missing credential a 401, not a 403.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "access.authentication.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "EXCEPTION_HANDLER": "dynconfig_site.api_errors.api_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": None,
    # Per token, or per client IP (access/throttling.py); 429 with Retry-After past the rate.
    "DEFAULT_THROTTLE_CLASSES": [
        "access.throttling.ReadRateThrottle",
        "access.throttling.WriteRateThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {
        "read": _throttle_rate("DYNCONFIG_THROTTLE_READ", default="6000/min"),
        "write": _throttle_rate("DYNCONFIG_THROTTLE_WRITE", default="120/min"),
    },
    # The client's address is the one our last proxy appended to X-Forwarded-For; what a client
    # sends there itself is not trusted (it would pick its own rate-limit bucket).
    "NUM_PROXIES": env.int("DYNCONFIG_NUM_PROXIES", default=1 if BEHIND_TLS_PROXY else 0),
}
# How long a process trusts a token it looked up (access/authentication.py): a revoked token
# keeps working in other processes for at most this many seconds.
DYNCONFIG_TOKEN_CACHE_SECONDS = env.float("DYNCONFIG_TOKEN_CACHE_SECONDS", default=5.0)
# While the database is unreachable, a token looked up successfully within this long keeps
# working (access/authentication.py): consumers keep reading through an outage, while an unknown
# token is still never accepted. An ISO 8601 duration; 0 turns it off.
DYNCONFIG_TOKEN_OUTAGE_GRACE = _duration("DYNCONFIG_TOKEN_OUTAGE_GRACE", default="PT10M")
# Whether value reads need no sign-in (never in production).
DYNCONFIG_ANONYMOUS_READS = env.bool("DYNCONFIG_ANONYMOUS_READS", default=not IS_PRODUCTION)
# Whether operators' edits of value types, source links and overrides wait for a second
# operator's approval (values.change_requests, docs/change-requests.md): on in production.
DYNCONFIG_CHANGE_REQUESTS = env.bool("DYNCONFIG_CHANGE_REQUESTS", default=IS_PRODUCTION)

# The OpenAPI schema (/api/schema/) and its Swagger UI (/api/docs/), by drf-spectacular.
SPECTACULAR_SETTINGS = {
    "TITLE": "DynConfig API",
    "DESCRIPTION": (
        "Dynamic configuration values for the campaign planner: each value resolved with its "
        "provenance (which tier served it, which sources contributed), plus the operator "
        "endpoints (overrides, fallbacks, refresh, rollback, source breakers).\n\n"
        "Authenticate with `Authorization: Bearer <token>` (scopes `values:read`, `values:write`, "
        "`sources:manage`) or an admin session. Every error has one shape: "
        "`{\"error\": {\"status\", \"code\", \"message\", \"fields\"?}}`."
    ),
    "VERSION": "1.0.0",
    # Operations tagged (grouped in Swagger UI) by the path segment after /api/v1/: values, sources...
    "SCHEMA_PATH_PREFIX": r"/api/v[0-9]+",
    # The schema and the docs are readable by whoever may read values (anonymous in development).
    "SERVE_PERMISSIONS": ["access.permissions.CanReadValues"],
    "SERVE_INCLUDE_SCHEMA": False,  # the schema endpoint is not part of the API it describes
    # Swagger UI and ReDoc from drf-spectacular-sidecar's static files: no CDN, nothing external.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Separate request and response components, so read-only fields are not asked for as input.
    "COMPONENT_SPLIT_REQUEST": True,
    # One name for a choice set several serializers share (else drf-spectacular invents a hash).
    "ENUM_NAME_OVERRIDES": {"HealthStatusEnum": ["healthy", "degraded", "down"]},
    # Every operation documents the one error format (dynconfig_site/api_schema.py).
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "dynconfig_site.api_schema.add_error_responses",
    ],
}

# Security headers and cookies (`manage.py check --deploy` is clean in production). Production
# defaults assume HTTPS only; development keeps working over plain http.
if BEHIND_TLS_PROXY:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=IS_PRODUCTION)
# Probes call the app directly over http (no proxy, no X-Forwarded-Proto): no redirect for them.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
# A year, what the browsers' preload lists ask for. 0 (no HSTS) outside production: browsers
# would otherwise insist on https for localhost.
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31_536_000 if IS_PRODUCTION else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=IS_PRODUCTION)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=IS_PRODUCTION)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = env.bool("SECURE_COOKIES", default=IS_PRODUCTION)
SESSION_COOKIE_HTTPONLY = True
# No script of ours reads the CSRF cookie (forms and the API docs page embed the token).
CSRF_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = CSRF_COOKIE_SAMESITE = "Lax"
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

# Logs: one line per record on stderr, JSON in production (for a log pipeline), plain text
# elsewhere. The filter adds request_id (and value_type / source when the code passes them); the
# formatters mask credentials that would slip into a line (monitoring/logging.py, docs/monitoring.md).
DYNCONFIG_LOG_FORMAT = env.str("DYNCONFIG_LOG_FORMAT", default="json" if IS_PRODUCTION else "plain")
if DYNCONFIG_LOG_FORMAT not in ("json", "plain"):
    raise ImproperlyConfigured(f"DYNCONFIG_LOG_FORMAT={DYNCONFIG_LOG_FORMAT!r} is not json or plain.")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"context": {"()": "monitoring.logging.LogContextFilter"}},
    "formatters": {
        "plain": {"()": "monitoring.logging.PlainFormatter"},
        "json": {"()": "monitoring.logging.JsonFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": DYNCONFIG_LOG_FORMAT,
            "filters": ["context"],
        }
    },
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
}
# Celery workers and beat log through the same handler (same format, filters) instead of Celery's.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
