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

Runtime values (value types, sources, weights, overrides) are data in the database, edited by
operators; see config/README.md for where that line is drawn.
"""

from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

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
    "config",
    "access",
    "values",
    "sources",
    "monitoring",
    "planning",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
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
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    VAR_DIR.mkdir(exist_ok=True)

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
    "UNAUTHENTICATED_USER": None,
}
# Whether value reads need no sign-in (never in production).
DYNCONFIG_ANONYMOUS_READS = env.bool("DYNCONFIG_ANONYMOUS_READS", default=not IS_PRODUCTION)

if IS_PRODUCTION:
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=3600)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
}
