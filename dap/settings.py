"""Settings for the Data Activation Platform.

Everything comes from the environment (django-environ). With nothing set, the platform runs on the
embedded default: SQLite and django-q2's ORM broker, so nothing needs to be installed or started.
`DATABASE_URL` switches to PostgreSQL, `REDIS_URL` to django-q2's Redis broker.
"""

from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DEBUG = env.bool("DAP_DEBUG", default=True)

# Dev-only defaults: refused when DEBUG is off (see the check at the bottom of this file).
_DEV_SECRET_KEY = "dev-only-insecure-secret-key-do-not-use-in-production"
# A Fernet key (32 url-safe base64-encoded bytes). Dev-only default.
_DEV_ENCRYPTION_KEY = "ZGV2LW9ubHktZW5jcnlwdGlvbi1rZXktMzJieXRlcyE="

SECRET_KEY = env.str("DAP_SECRET_KEY", default=_DEV_SECRET_KEY)
# Key(s) that encrypt partner secrets at rest; comma-separated, the first encrypts, all decrypt (rotation).
DAP_ENCRYPTION_KEYS = env.list("DAP_ENCRYPTION_KEYS", default=[_DEV_ENCRYPTION_KEY])
ALLOWED_HOSTS = env.list("DAP_ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("DAP_CSRF_TRUSTED_ORIGINS", default=[])

# Egress IPs the platform calls partners from; shown on the new-connector screens for whitelisting.
DAP_EGRESS_IPS = env.list("DAP_EGRESS_IPS", default=["203.0.113.10", "203.0.113.11"])
# Default timeout of a whole partner request, in seconds.
DAP_DEFAULT_TIMEOUT_SECONDS = env.float("DAP_DEFAULT_TIMEOUT_SECONDS", default=3.0)

# Delivery engine.
# Retryable failures (timeouts, connection errors, 429, 5xx, throttling) retry with exponential backoff and jitter
# until this window after the change was enqueued; then they fail.
DAP_RETRY_WINDOW_SECONDS = env.int("DAP_RETRY_WINDOW_SECONDS", default=4 * 3600)
DAP_RETRY_BASE_SECONDS = env.float("DAP_RETRY_BASE_SECONDS", default=5.0)
DAP_RETRY_MAX_SECONDS = env.float("DAP_RETRY_MAX_SECONDS", default=900.0)
# DeliveryAttempt rows older than this are pruned by a schedule; so are failed/skipped outbox rows.
DAP_ATTEMPT_RETENTION_DAYS = env.int("DAP_ATTEMPT_RETENTION_DAYS", default=14)
# Rows one dispatcher claims at once (per configuration) and how long a dispatch run may hold its lease.
DAP_CLAIM_SIZE = env.int("DAP_CLAIM_SIZE", default=20000)
DAP_DISPATCH_BUDGET_SECONDS = env.float("DAP_DISPATCH_BUDGET_SECONDS", default=50.0)
DAP_LEASE_SECONDS = env.float("DAP_LEASE_SECONDS", default=120.0)
# A configuration's outbox is split into this many shards (by profile id) that workers lease independently.
DAP_DISPATCH_SHARDS = env.int("DAP_DISPATCH_SHARDS", default=4)
# A change of this many rows (or more due at the minute's schedule) queues one more dispatch task for the
# configuration, up to DAP_DISPATCH_SHARDS: several workers, on any number of machines, share a busy configuration.
DAP_KICK_ROWS_PER_TASK = env.int("DAP_KICK_ROWS_PER_TASK", default=2000)
# Concurrent requests per configuration for one-request-per-profile partners (webhook).
DAP_HTTP_CONCURRENCY = env.int("DAP_HTTP_CONCURRENCY", default=32)
# Partner quotas (token buckets per configuration, shared through Redis when REDIS_URL is set): a call waits at most
# this long for its token; beyond it the items go back to the outbox with the wait as Retry-After.
DAP_RATE_LIMIT_MAX_WAIT_SECONDS = env.float("DAP_RATE_LIMIT_MAX_WAIT_SECONDS", default=10.0)
# Cookie-sync tokens (signed profile references placed in sync pixels) are accepted for this long.
DAP_COOKIE_SYNC_TOKEN_MAX_AGE_SECONDS = env.int("DAP_COOKIE_SYNC_TOKEN_MAX_AGE_SECONDS", default=30 * 86400)
# Audiences: recent enters/exits kept for the pages and the journeys engine (pruned daily).
# Statistics days (DailyStat, the graphs, the stats API) start at midnight in this IANA time zone.
DAP_STATS_TIME_ZONE = env.str("DAP_STATS_TIME_ZONE", default="UTC")
DAP_AUDIENCE_CHANGE_RETENTION_DAYS = env.int("DAP_AUDIENCE_CHANGE_RETENTION_DAYS", default=30)
# Use HTTP(S)_PROXY / NO_PROXY and .netrc from the environment for partner calls (off: direct egress, faster).
DAP_HTTP_TRUST_ENV = env.bool("DAP_HTTP_TRUST_ENV", default=False)
# Kick the dispatcher when an enqueuing transaction commits (the schedule runs every minute anyway).
DAP_KICK_ON_COMMIT = env.bool("DAP_KICK_ON_COMMIT", default=True)

# Alerts (docs/alerts.md): an error-rate alert opens when, over the last hour, at least DAP_ALERT_MIN_ITEMS items were
# sent to a configuration and at least this fraction of them failed (0 < x <= 1).
DAP_ALERT_ERROR_RATE = env.float("DAP_ALERT_ERROR_RATE", default=0.2)
DAP_ALERT_MIN_ITEMS = env.int("DAP_ALERT_MIN_ITEMS", default=20)
# Who is told: these addresses, or (empty) every active superuser and "Marketing admin" with an e-mail address.
DAP_ALERT_EMAILS = env.list("DAP_ALERT_EMAILS", default=[])
# Optional webhook (http/https) receiving alert.opened / alert.resolved JSON, signed with the secret when one is set.
DAP_ALERT_WEBHOOK_URL = env.str("DAP_ALERT_WEBHOOK_URL", default="")
DAP_ALERT_WEBHOOK_SECRET = env.str("DAP_ALERT_WEBHOOK_SECRET", default="")
# Where the platform's pages are reachable: links in notices.
DAP_BASE_URL = env.str("DAP_BASE_URL", default="http://127.0.0.1:8000").rstrip("/")
# Outgoing e-mail: console (printed) by default; e.g. smtp+tls://user:password@smtp.example.com:587.
_email = env.email_url("DAP_EMAIL_URL", default="consolemail://")
EMAIL_BACKEND = _email["EMAIL_BACKEND"]
EMAIL_HOST = _email.get("EMAIL_HOST") or "localhost"
EMAIL_PORT = _email.get("EMAIL_PORT") or 25
EMAIL_HOST_USER = _email.get("EMAIL_HOST_USER") or ""
EMAIL_HOST_PASSWORD = _email.get("EMAIL_HOST_PASSWORD") or ""
EMAIL_USE_TLS = bool(_email.get("EMAIL_USE_TLS"))
EMAIL_USE_SSL = bool(_email.get("EMAIL_USE_SSL"))
EMAIL_TIMEOUT = env.float("DAP_EMAIL_TIMEOUT_SECONDS", default=10.0)
DEFAULT_FROM_EMAIL = SERVER_EMAIL = env.str("DAP_EMAIL_FROM", default="dap@localhost")


def _check_alert_settings() -> None:
    from urllib.parse import urlsplit

    from django.core.exceptions import ImproperlyConfigured, ValidationError
    from django.core.validators import validate_email

    if not 0 < DAP_ALERT_ERROR_RATE <= 1:
        raise ImproperlyConfigured(f"DAP_ALERT_ERROR_RATE must be a fraction in (0, 1], not {DAP_ALERT_ERROR_RATE}")
    if DAP_ALERT_MIN_ITEMS < 1:
        raise ImproperlyConfigured(f"DAP_ALERT_MIN_ITEMS must be at least 1, not {DAP_ALERT_MIN_ITEMS}")
    for address in DAP_ALERT_EMAILS:
        try:
            validate_email(address)
        except ValidationError:
            raise ImproperlyConfigured(f"DAP_ALERT_EMAILS: {address!r} is not an e-mail address") from None
    # The URLs may carry tokens (webhook URLs often do): they are never echoed in the error.
    for name, url in (("DAP_ALERT_WEBHOOK_URL", DAP_ALERT_WEBHOOK_URL), ("DAP_BASE_URL", DAP_BASE_URL)):
        try:
            parts = urlsplit(url)
            valid = parts.scheme in ("http", "https") and bool(parts.hostname)
        except ValueError:
            valid = False
        if url and not valid:
            raise ImproperlyConfigured(f"{name} must be an http:// or https:// URL with a host")
    if not DAP_BASE_URL:
        raise ImproperlyConfigured("DAP_BASE_URL must not be empty")


_check_alert_settings()

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_q",
    "connectors",
    "audiences",
    "journeys",
    "monitoring",
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

ROOT_URLCONF = "dap.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
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

WSGI_APPLICATION = "dap.wsgi.application"

DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
}
if "postgresql" in DATABASES["default"]["ENGINE"]:
    # A server that does not answer fails the connection after a few seconds (not the OS's minutes-long TCP
    # timeout), so /healthz and the workers notice; `?connect_timeout=N` in DATABASE_URL overrides it.
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault("connect_timeout", 5)
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the web process read while the worker writes.
    DATABASES["default"].setdefault("OPTIONS", {})
    DATABASES["default"]["OPTIONS"].setdefault("timeout", 20)
    DATABASES["default"]["OPTIONS"].setdefault("init_command", "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;")
    # Transactions take the write lock when they begin: a transaction that read and then writes while another
    # process committed would otherwise fail at once with "database is locked" (the busy timeout does not apply).
    DATABASES["default"]["OPTIONS"].setdefault("transaction_mode", "IMMEDIATE")
    # Tests use a file, not memory, so worker processes started by a test see the same database.
    _test = DATABASES["default"].get("TEST") or {}
    DATABASES["default"]["TEST"] = {**_test, "NAME": _test.get("NAME") or str(BASE_DIR / "var" / "test-db.sqlite3")}
    (BASE_DIR / "var").mkdir(exist_ok=True)

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(env.str("DAP_STATIC_ROOT", default=str(BASE_DIR / "staticfiles")))

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "connectors:list"
LOGOUT_REDIRECT_URL = "login"

REDIS_URL = env.str("REDIS_URL", default="")

Q_CLUSTER = {
    "name": "dap",
    "workers": env.int("DAP_Q_WORKERS", default=2),
    "timeout": 120,
    "retry": 180,
    "max_attempts": 1,
    "catch_up": False,
    "save_limit": 250,
    "label": "Tasks",
}
if REDIS_URL:
    Q_CLUSTER["redis"] = REDIS_URL
else:
    Q_CLUSTER["orm"] = "default"

# Django's cache holds the API rate-limit counters (dap/throttling.py): Redis when REDIS_URL is set, so every web
# process shares them; else each process's own memory.
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "dap-cache",
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "dap"}}
# Profile ingestion API (POST /api/v1/profiles/bulk/): calls per user, "<n>/<s|min|hour|day>"; empty: no limit.
DAP_PROFILE_INGEST_RATE = env.str("DAP_PROFILE_INGEST_RATE", default="120/min").strip()
if DAP_PROFILE_INGEST_RATE:
    import re as _re

    if not _re.fullmatch(r"[1-9]\d*/(s|sec|second|m|min|minute|h|hour|d|day)", DAP_PROFILE_INGEST_RATE):
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured(f"DAP_PROFILE_INGEST_RATE must look like 120/min, not {DAP_PROFILE_INGEST_RATE!r}")

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
        "rest_framework.authentication.TokenAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": [
        "dap.permissions.ModelPermissionsWithView",
    ],
    # JSON through dap.api_input: numbers out of range (1e400) and too deep nesting are a 400, not a 500.
    "DEFAULT_PARSER_CLASSES": [
        "dap.api_input.JSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_SCHEMA_CLASS": "dap.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "dap.api_input.LimitOffsetPagination",
    "PAGE_SIZE": 100,
    "EXCEPTION_HANDLER": "dap.exceptions.exception_handler",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Data Activation Platform API",
    "DESCRIPTION": (
        "Manage server-to-server connectors and their partner configurations. "
        "Secrets are write-only: responses only say whether a secret is set and its last 4 characters."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # Swagger UI served from our own static files (no CDN).
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "ENUM_NAME_OVERRIDES": {
        "ConnectorStatusEnum": "connectors.models.Connector.Status",
        "DeliveryStatusEnum": "connectors.models.Delivery.Status",
        "OutcomeEnum": "connectors.models.Outcome",
        "JourneyStatusEnum": "journeys.models.Journey.Status",
        "JourneyEnrollmentStatusEnum": "journeys.models.JourneyEnrollment.Status",
    },
}

# Operations (docs/operations.md).
# /healthz fails when the newest worker heartbeat (schedule "dap: worker heartbeat", every minute) is older than this.
DAP_HEARTBEAT_MAX_AGE_SECONDS = env.int("DAP_HEARTBEAT_MAX_AGE_SECONDS", default=180)
# When set, /metrics wants `Authorization: Bearer <this>` or a logged-in staff user; empty: open (protect it at the
# network).
DAP_METRICS_TOKEN = env.str("DAP_METRICS_TOKEN", default="")
# Log lines: `json` (one JSON object per line) or `text`. Both are redacted (dap/logging.py).
DAP_LOG_FORMAT = env.str("DAP_LOG_FORMAT", default="text" if DEBUG else "json").lower()
if DAP_LOG_FORMAT not in ("json", "text"):
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured(f"DAP_LOG_FORMAT must be json or text, not {DAP_LOG_FORMAT!r}")

# Error reports (technical 500 page, mails to ADMINS) hide secrets, DEBUG included (dap/error_reports.py).
DEFAULT_EXCEPTION_REPORTER_FILTER = "dap.error_reports.SecretSafeExceptionReporterFilter"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "text": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {"()": "dap.logging.JsonFormatter"},
    },
    "filters": {"redact": {"()": "dap.logging.RedactFilter"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": DAP_LOG_FORMAT, "filters": ["redact"]},
    },
    "root": {"handlers": ["console"], "level": env.str("DAP_LOG_LEVEL", default="INFO")},
    "loggers": {"django.db.backends": {"level": "INFO"}},
}

try:
    import zoneinfo

    zoneinfo.ZoneInfo(DAP_STATS_TIME_ZONE)
except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured(f"DAP_STATS_TIME_ZONE: unknown time zone {DAP_STATS_TIME_ZONE!r}") from exc

if not DEBUG:
    from django.core.exceptions import ImproperlyConfigured

    if SECRET_KEY == _DEV_SECRET_KEY or _DEV_ENCRYPTION_KEY in DAP_ENCRYPTION_KEYS:
        raise ImproperlyConfigured(
            "DAP_SECRET_KEY and DAP_ENCRYPTION_KEYS must be set when DAP_DEBUG is off; "
            "the dev-only defaults are refused in production."
        )
    # Production runs behind TLS (docs/deployment.md): cookies only over HTTPS, the proxy's X-Forwarded-Proto says
    # whether a request came in over HTTPS, and HSTS once the operator opts in.
    SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = env.bool("DAP_SECURE_COOKIES", default=True)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_HSTS_SECONDS = env.int("DAP_HSTS_SECONDS", default=0)
    # Static files (CSS, Chart.js) served by the application server itself, from `collectstatic` (in development
    # runserver serves them from the apps).
    MIDDLEWARE.insert(MIDDLEWARE.index("django.middleware.security.SecurityMiddleware") + 1,
                      "whitenoise.middleware.WhiteNoiseMiddleware")  # fmt: skip
