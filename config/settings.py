"""Settings for the whole service, read from the environment (see .env.example)."""
from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import dj_database_url
from csp.constants import NONCE, NONE, SELF
from django.core.exceptions import ImproperlyConfigured
from kombu import Queue

from core.env import (
    env_bool,
    env_float,
    env_int,
    env_list,
    env_or_var_file,
    env_proxy_ssl_header,
    env_str,
    load_env_file,
    redis_url_for_kombu,
    var_dir,
)
from messaging.channels import ALL_QUEUES, CHANNELS, DEFAULT_QUEUE, RATE_LIMIT_ENVS

BASE_DIR = Path(__file__).resolve().parent.parent
# `.env` (ENV_FILE) first, so every variable below may come from it; the environment wins.
load_env_file()
VAR_DIR = var_dir()

DEBUG = env_bool("DEBUG", False)
# Else the key `make run` generated: a management command in a new shell uses the same one.
SECRET_KEY = env_or_var_file("SECRET_KEY", "secret_key")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY is required when DEBUG is off")
    SECRET_KEY = "insecure-development-key-do-not-use-in-production"
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

# --- HTTPS ----------------------------------------------------------------------------
# DEBUG off means production: https only, unless a variable says otherwise. `make run`
# (DEBUG=1) serves plain http on localhost, so every one of these is off there.
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", not DEBUG)
# Load balancer probes and Prometheus scrapes talk plain http to the process itself.
SECURE_REDIRECT_EXEMPT = [r"^health(/live|/ready)?$", r"^metrics$"]
# Browsers then refuse plain http for a year; sent only on https responses.
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0 if DEBUG else 365 * 24 * 3600)
# Covers hosts below this one only (a.relay.example.com), never the parent domain.
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
# Preloading is a request to browser vendors, made by hand and slow to undo: opt in only.
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", not DEBUG)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", not DEBUG)
# Behind a TLS-terminating proxy: the header it sets, e.g. X-Forwarded-Proto (see README).
# Behind proxies that append the client's address to X-Forwarded-For: how many. The client
# is that many entries from the right (the audit log's ip, the sign-in lockout's address);
# 0 (no proxy) takes REMOTE_ADDR. Too high, and a client could choose its own address.
TRUSTED_PROXY_HOPS = env_int("TRUSTED_PROXY_HOPS", 0)
SECURE_PROXY_SSL_HEADER = env_proxy_ssl_header("SECURE_PROXY_SSL_HEADER")
# check --deploy warns until preload is on; not preloading is a choice, not an oversight.
SILENCED_SYSTEM_CHECKS = [] if SECURE_HSTS_PRELOAD else ["security.W021"]

# Content-Security-Policy (django-csp) on every answer: scripts, styles, images and fetches
# from this service only; an inline <script> runs only with the request's nonce
# (`{{ request.csp_nonce }}`), inline <style> and style="" not at all; no plugins, no
# framing, forms post only here. /api/docs/ relaxes styles for Swagger UI (config/urls.py).
# https://developer.mozilla.org/docs/Web/HTTP/Headers/Content-Security-Policy
CONTENT_SECURITY_POLICY: dict[str, Any] = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF, NONCE],
        "style-src": [SELF],
        # Swagger UI and the admin draw a few icons as data: URIs.
        "img-src": [SELF, "data:"],
        "font-src": [SELF],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    },
}

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    # Swagger UI's files, served from STATIC_ROOT instead of a CDN (SPECTACULAR_SETTINGS).
    "drf_spectacular_sidecar",
    "django_celery_beat",
    # Failed sign-in counting and lockout; its admin pages list and lift lockouts.
    "axes",
    # Content-Security-Policy header (CONTENT_SECURITY_POLICY below).
    "csp",
    # Two-factor sign-in (core/twofactor.py): TOTP apps and single-use recovery codes.
    "django_otp",
    "django_otp.plugins.otp_totp",
    "django_otp.plugins.otp_static",
    # The apps in layers, bottom first: each imports only those listed above it.
    "core",
    "messaging",
    "flows",
    # Contact imports, segments, broadcasts: what reaches many contacts at once.
    "audiences",
    "monitoring",
    "processes",
]

MIDDLEWARE = [
    # First: every answer (a redirect or an error included) carries its X-Request-ID, and
    # every line logged while serving it the id (core.logcontext).
    "core.logcontext.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Right after the HTTPS redirect, before everything else: a static file needs no
    # session, user or CSRF token (https://whitenoise.readthedocs.io/en/stable/django.html).
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    # Query strings and url-encoded forms (Twilio's webhooks) with a NUL answer 400 naming
    # the parameter, before any view stores it (JSON bodies: the parser below).
    "core.api_parsers.UnstorableParametersMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # request.user.is_verified(): the session passed two-factor sign-in (django-otp) ...
    "django_otp.middleware.OTPMiddleware",
    # ... and where a session that has not (or a user who must and has no 2FA) may go.
    "core.twofactor.TwoFactorMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Content-Security-Policy on every answer, with a fresh nonce per request.
    "csp.middleware.CSPMiddleware",
    # A view that meets an unavailable database (a restart, a failover) answers 503 with
    # Retry-After instead of 500 (README.md, "Database outages").
    "core.api.DatabaseUnavailableMiddleware",
    # Last, as axes asks: turns a refused (locked-out) sign-in into the lockout answer.
    "axes.middleware.AxesMiddleware",
]
# Seconds a 503 for an unavailable database asks the client to wait (Retry-After).
DATABASE_RETRY_AFTER_SECONDS = env_int("DATABASE_RETRY_AFTER_SECONDS", 5)

ROOT_URLCONF = "config.urls"
# API paths have no trailing slash; never answer a POST with a redirect.
APPEND_SLASH = False
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

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

# PostgreSQL in production (postgresql://...); a SQLite file under var/ by default.
DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'db.sqlite3'}"),
        # Reuse connections for a minute: one TCP+auth handshake per request is measurable.
        conn_max_age=env_int("DB_CONN_MAX_AGE", 60),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # Server-side binding: psycopg sends parameters apart from the statement instead of
    # quoting them into it (a fifth less worker CPU per delivered message in the e2e
    # bench), and prepares a statement it has run 5 times on a connection. Turn it off
    # behind a pooler in transaction mode that cannot keep prepared statements.
    DATABASES["default"].setdefault("OPTIONS", {})["server_side_binding"] = env_bool(
        "DB_SERVER_SIDE_BINDING", True)
    # Django's backend with the health check's SELECT 1 only for a connection idle this
    # long (core.postgresql.base): not one per request under load.
    DATABASES["default"]["ENGINE"] = "core.postgresql"
DB_HEALTH_CHECK_IDLE_SECONDS = env_float("DB_HEALTH_CHECK_IDLE_SECONDS", 1.0)
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Concurrent web + worker processes share the file: wait for locks instead of failing.
    DATABASES["default"].setdefault("OPTIONS", {})["timeout"] = 30
    DATABASES["default"]["OPTIONS"]["transaction_mode"] = "IMMEDIATE"
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    # A file (not :memory:) so worker processes started by integration tests see it too.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test.sqlite3")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Sign-in -----------------------------------------------------------------------------
# django-axes first: it refuses a locked-out client before any password is checked
# (core.signin; README "Security"). The model backend then checks the password.
AUTHENTICATION_BACKENDS = [
    "core.signin.RequestOnlyAxesBackend",
    "django.contrib.auth.backends.ModelBackend",
]
# Failures per username, and separately per client address, within the window that lock it.
AXES_FAILURE_LIMIT = env_int("LOGIN_FAILURE_LIMIT", 5)
# The window and the cool-off: a lockout lifts this long after the last counted failure.
AXES_COOLOFF_TIME = timedelta(minutes=env_float("LOGIN_COOLOFF_MINUTES", 15.0))
# Either one locks: a username guessed from many addresses, an address guessing many names.
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
# Attempts refused during the cool-off do not extend it, so it ends when the page says.
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
# A success must not wipe the failures: one's own account would reset the address counter
# between guesses at someone else's.
AXES_RESET_ON_SUCCESS = False
# The address the audit log records (core.audit.client_ip): REMOTE_ADDR, or behind this many
# proxies the one they saw. axes' default believes any X-Forwarded-For, which a client can
# write to dodge the per-address limit.
AXES_CLIENT_IP_CALLABLE = "core.signin.client_ip"
AXES_LOCKOUT_CALLABLE = "core.signin.lockout_response"
# Request bodies hold passwords: keep them out of the attempt records.
AXES_SENSITIVE_PARAMETERS = ["username", "ip_address", "password", "old_password",
                             "new_password1", "new_password2"]

# Two-factor sign-in (docs/security.md): staff replay, discard, pause and change the admin
# only from a session that passed it; the name authenticator apps show for the account.
TWO_FACTOR_REQUIRED_FOR_STAFF = env_bool("TWO_FACTOR_REQUIRED_FOR_STAFF", True)
OTP_TOTP_ISSUER = env_str("OTP_TOTP_ISSUER", "Relay")

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
# Storage is always UTC; TIME_ZONE only changes how admin/dashboards display times.
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
# `collectstatic` (run by `make run`) gathers every app's files here; WhiteNoise serves them.
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(VAR_DIR / "static")))
STORAGES: dict[str, dict[str, Any]] = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    # Content-hashed names (cached for a year by WhiteNoise, so a deploy busts them) plus
    # gzip copies. `{% static %}` of a file that was never collected raises instead of
    # linking to a 404.
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}
# The dashboard's own sign-in pages (config/urls.py); members are not staff, so the admin's
# login would refuse them.
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard:overview"
LOGOUT_REDIRECT_URL = "login"

# Ten megabytes of JSON is an attack or a bug, never a message; reject early (answers 400).
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("MAX_REQUEST_BYTES", 2 * 1024 * 1024)

# --- Redis / Celery -------------------------------------------------------------------
# Without REDIS_URL, `make run` / `make test` start an embedded redis-server on this socket.
EMBEDDED_REDIS_SOCKET = VAR_DIR / "redis.sock"
REDIS_URL = env_str("REDIS_URL", f"unix://{EMBEDDED_REDIS_SOCKET}")
CELERY_BROKER_URL = redis_url_for_kombu(env_str("CELERY_BROKER_URL", REDIS_URL))
# The broker only wakes workers; state lives in PostgreSQL, so results are never stored.
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None
# JSON only: tasks carry row ids, and pickle from a shared broker is remote code execution.
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
# Ack after the task ran, so a worker dying mid-task leaves the message to be redelivered.
CELERY_TASK_ACKS_LATE = True
# With acks_late, a killed worker's message goes back to the queue instead of being acked.
CELERY_TASK_REJECT_ON_WORKER_LOST = True
# One message at a time per process: nothing sits prefetched in a process that may die.
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Redis redelivers unacked messages after this many seconds. The code never uses a
# countdown over a few seconds (long waits are database timers), so an hour is ample.
CELERY_VISIBILITY_TIMEOUT = env_int("CELERY_VISIBILITY_TIMEOUT", 3600)
CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, Any] = {
    "visibility_timeout": CELERY_VISIBILITY_TIMEOUT}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# One queue per channel so a slow provider cannot starve the others (messaging.channels).
CELERY_TASK_QUEUES = [Queue(name) for name in ALL_QUEUES]
CELERY_TASK_DEFAULT_QUEUE = DEFAULT_QUEUE
# Task events are a Redis publish per task state (received, started, succeeded): 8 % of a
# worker's samples under single-message load. Off unless asked for: Flower turns them on
# in every worker while it runs (its enable_events option, every few seconds), and off
# again is a worker restart.
CELERY_WORKER_SEND_TASK_EVENTS = env_bool("CELERY_WORKER_SEND_TASK_EVENTS", False)
# A "sent" event is one more Redis publish per task published, 37% of a publish's cost in
# the web process; Flower shows tasks from the worker's events without it.
CELERY_TASK_SEND_SENT_EVENT = env_bool("CELERY_TASK_SEND_SENT_EVENT", False)
CELERY_TIMEZONE = "UTC"
CELERY_ENABLE_UTC = True
# Beat keeps schedules in the database so they show and can be edited in Django admin.
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
# A hard ceiling so a hung provider call cannot hold a worker forever: the fallback for a
# queue without a limit of its own below.
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 300)
# Each queue's hard limit (TASK_TIME_LIMIT_<QUEUE>, seconds), set on every task published to
# it (core.tasklimits): light periodic work on `default` should never need minutes, while an
# AI batch waits on slow completions and a flows task may start a bulk batch.
TASK_TIME_LIMIT_DEFAULTS = {DEFAULT_QUEUE: 120, "ai": 600, "flows": 600}
TASK_TIME_LIMITS: dict[str, int] = {
    queue: env_int(f"TASK_TIME_LIMIT_{queue.upper()}",
                   TASK_TIME_LIMIT_DEFAULTS.get(queue, CELERY_TASK_TIME_LIMIT))
    for queue in ALL_QUEUES}
CELERY_TASK_ALWAYS_EAGER = False
# Celery's Django fixup closes the database connection after every task unless told to
# reuse it; a fresh connection per task cost more than the task. Close every 2×N tasks.
CELERY_DB_REUSE_MAX = env_int("CELERY_DB_REUSE_MAX", 500)
# Periodic tasks, declared in one place; each says why it runs at its interval.
CELERY_BEAT_SCHEDULE: dict[str, dict] = {}

# --- REST API -------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["core.auth.ApiKeyAuthentication"],
    # HasScope: a key's scopes (read, send, manage) decide which requests it may make.
    "DEFAULT_PERMISSION_CLASSES": ["core.auth.HasWorkspace", "core.auth.HasScope"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    # `?format=` is a field of this API (an import's file format, an export's csv or json),
    # never DRF's renderer switch: that one answered 404 to `?format=csv` on a JSON list.
    "URL_FORMAT_OVERRIDE": None,
    # DRF's JSONParser, refusing (400, naming the field) NULs, lone surrogates and JSON
    # nested deeper than core.api_parsers.MAX_JSON_DEPTH, which PostgreSQL or Python cannot take.
    "DEFAULT_PARSER_CLASSES": ["core.api_parsers.SafeJSONParser"],
    "DEFAULT_PAGINATION_CLASS": "core.api.Pagination",
    "DEFAULT_FILTER_BACKENDS": [
        "django_filters.rest_framework.DjangoFilterBackend",
        "rest_framework.filters.SearchFilter",
        "rest_framework.filters.OrderingFilter",
    ],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "core.api.exception_handler",
    # Per API key, atomic in Redis (API_RATE_LIMIT); answers 429 with Retry-After.
    "DEFAULT_THROTTLE_CLASSES": ["messaging.api.throttling.ApiKeyRateThrottle"],
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Relay API",
    "DESCRIPTION": "Send and schedule SMS/MMS, email, AI replies and webhooks; run flows.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # One name per shared choice set: several models and filters have a `channel` or a
    # `status`, and without these the names are hashes (Status778Enum) that change with
    # the choices and break generated clients.
    "ENUM_NAME_OVERRIDES": {
        "ChannelEnum": "messaging.models.Channel",
        "MessageStatusEnum": "messaging.models.MessageStatus",
        "ExecutionStatusEnum": "flows.models.Execution.Status",
        "FlowStartModeEnum": "flows.api.views.START_MODES",
        "DeadLetterStatusEnum": "core.models.DeadLetter.Status",
        "TimelineKindEnum": "messaging.models.TimelineKind",
        # The dead letters' kind had the name to itself before timelines came.
        "KindEnum": "core.models.DeadLetter.Kind",
        "ProviderCallOutcomeEnum": "messaging.delivery.failover.CALL_OUTCOMES",
        "ProviderStateEnum": "messaging.providers.breaker.STATES",
        "ContactImportStatusEnum": "audiences.models.ContactImport.Status",
        "BroadcastStatusEnum": "audiences.models.Broadcast.Status",
        # The lists (sms, email): suppressions' and topic preferences' channel.
        "SuppressionChannelEnum": "messaging.api.suppressions.list_choices",
    },
    # Swagger UI from the drf-spectacular-sidecar package (collected into STATIC_ROOT), so
    # /api/docs/ needs no CDN and its version is pinned with the other dependencies.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    # Error answers documented once for every operation (core/schema.py); enums as default.
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums",
                             "core.schema.postprocess_error_responses"],
}
API_PAGE_SIZE = env_int("API_PAGE_SIZE", 50)
# Avoid a database write per request: last_used_at is refreshed at most this often.
API_KEY_TOUCH_SECONDS = env_int("API_KEY_TOUCH_SECONDS", 60)
HEALTH_CHECK_TIMEOUT_SECONDS = env_float("HEALTH_CHECK_TIMEOUT_SECONDS", 2.0)

# --- Logging --------------------------------------------------------------------------
LOG_LEVEL = env_str("LOG_LEVEL", "INFO").upper()
LOG_JSON = env_bool("LOG_JSON", False)
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    # Every line carries the request, workspace, message, execution and task ids it is
    # about (core.logcontext): fields of a JSON line, "[request_id=…]" after a plain one.
    "filters": {"context": {"()": "core.logcontext.ContextFilter", "plain": not LOG_JSON}},
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s%(context)s"},
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s",
        },
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "json" if LOG_JSON else "plain",
            "filters": ["context"],
        }
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "INFO"},
        # django-axes says "BEGIN version ..." at INFO whenever Django starts, so every
        # management command would print it first; its lockout warnings still show.
        "axes": {"level": "WARNING"},
    },
}

# --- Providers ------------------------------------------------------------------------
# Each channel picks a provider here; a workspace may override it (and its credentials)
# in its settings: {"providers": {<channel>: {"name": "twilio", "account_sid": ...}}}.
# The provider names a workspace's settings may choose, per providers key (core checks the
# settings, and core sits below the channel table that lists them).
WORKSPACE_PROVIDER_NAMES = {spec.provider_settings_key: tuple(spec.providers)
                            for spec in CHANNELS.values()}
SMS_PROVIDER = env_str("SMS_PROVIDER", "console")  # twilio | http | console
# Several providers in order (e.g. "twilio,http"): a definite transient failure of one sends
# the message through the next in the same attempt. Empty: SMS_PROVIDER alone. The same
# holds for EMAIL_PROVIDERS and AI_PROVIDERS (README.md, "Provider failover").
SMS_PROVIDERS = env_list("SMS_PROVIDERS", [])
SMS_API_URL = env_str("SMS_API_URL")  # generic HTTP SMS API base (POST <base>/send-sms)
SMS_API_KEY = env_str("SMS_API_KEY")
TWILIO_ACCOUNT_SID = env_str("TWILIO_ACCOUNT_SID")
TWILIO_AUTH_TOKEN = env_str("TWILIO_AUTH_TOKEN")
TWILIO_FROM_NUMBER = env_str("TWILIO_FROM_NUMBER")
TWILIO_MESSAGING_SERVICE_SID = env_str("TWILIO_MESSAGING_SERVICE_SID")
TWILIO_API_BASE = env_str("TWILIO_API_BASE", "https://api.twilio.com")
# Public base URL of this service, for provider status callbacks and email unsubscribe links
# (empty: no callbacks requested, no unsubscribe link).
PUBLIC_BASE_URL = env_str("PUBLIC_BASE_URL")
EMAIL_PROVIDER = env_str("EMAIL_PROVIDER", "console")  # smtp | http | console
EMAIL_PROVIDERS = env_list("EMAIL_PROVIDERS", [])
EMAIL_API_URL = env_str("EMAIL_API_URL")  # generic HTTP email API base (<base>/api/email/send)
EMAIL_API_KEY = env_str("EMAIL_API_KEY")
EMAIL_FROM = env_str("EMAIL_FROM", "noreply@localhost")
DEFAULT_FROM_EMAIL = EMAIL_FROM
# Where List-Unsubscribe's mailto points (the token in its subject); empty: unsubscribe@ the
# domain of EMAIL_FROM; "-": no mailto (README.md, "Email unsubscribe").
UNSUBSCRIBE_MAILTO = env_str("UNSUBSCRIBE_MAILTO")
EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
EMAIL_USE_SSL = env_bool("EMAIL_USE_SSL", False)
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 15)
AI_PROVIDER = env_str("AI_PROVIDER", "console")  # openai | console
AI_PROVIDERS = env_list("AI_PROVIDERS", [])
AI_API_BASE = env_str("AI_API_BASE", "https://api.openai.com/v1")
AI_API_KEY = env_str("AI_API_KEY")
AI_MODEL = env_str("AI_MODEL", "gpt-4o-mini")
# Connect and read timeouts of every provider call, in seconds.
PROVIDER_CONNECT_TIMEOUT_SECONDS = env_float("PROVIDER_CONNECT_TIMEOUT_SECONDS", 5.0)
PROVIDER_TIMEOUT_SECONDS = env_float("PROVIDER_TIMEOUT_SECONDS", 15.0)
# Provider calls of one delivery batch run on this many threads at once (I/O bound).
PROVIDER_CONCURRENCY = env_int("PROVIDER_CONCURRENCY", 8)
# A 429 fails over to the next provider only when its Retry-After is at least this long;
# a shorter wait is the same provider's retry (its backoff honours the Retry-After).
PROVIDER_FAILOVER_RETRY_AFTER_SECONDS = env_float("PROVIDER_FAILOVER_RETRY_AFTER_SECONDS", 10.0)
# Circuit breakers per provider (state in Redis, shared by every worker): open after this
# many consecutive failures (0: no breakers) ...
PROVIDER_BREAKER_FAILURES = env_int("PROVIDER_BREAKER_FAILURES", 5)
# ... or when at least PROVIDER_BREAKER_MIN_CALLS calls of the current window (seconds)
# failed at this rate or more; an open breaker lets one probe call through after the
# cool-down, and closes on its success (or opens again on its failure).
PROVIDER_BREAKER_ERROR_RATE = env_float("PROVIDER_BREAKER_ERROR_RATE", 0.5)
PROVIDER_BREAKER_MIN_CALLS = env_int("PROVIDER_BREAKER_MIN_CALLS", 20)
PROVIDER_BREAKER_WINDOW_SECONDS = env_float("PROVIDER_BREAKER_WINDOW_SECONDS", 30.0)
PROVIDER_BREAKER_COOLDOWN_SECONDS = env_float("PROVIDER_BREAKER_COOLDOWN_SECONDS", 10.0)
# CIDRs that user-supplied URLs may reach although private (development and tests only).
SSRF_ALLOWED_NETWORKS = env_list("SSRF_ALLOWED_NETWORKS", [])

# --- Delivery pipeline ------------------------------------------------------------------
# Attempts and backoff per channel: transient errors retry after a full-jitter exponential
# delay (random between 0 and min(cap, base * 2^(attempt-1))), never before Retry-After.
RETRY_BASE_SECONDS = env_float("RETRY_BASE_SECONDS", 2.0)
RETRY_CAP_SECONDS = env_float("RETRY_CAP_SECONDS", 600.0)
# Per channel: MAX_ATTEMPTS_<CHANNEL> or the channel table's default (MMS reads the SMS one).
MAX_ATTEMPTS = {name: env_int(spec.max_attempts_env, spec.max_attempts)
                for name, spec in CHANNELS.items()}
# Default rate limits per workspace and channel queue ("5/s", "20/min"; empty = none), from
# RATE_LIMIT_<QUEUE>. A workspace overrides them in its settings: {"rate_limits": {key: "5/s"}}.
RATE_LIMITS = {key: env_str(env) for key, env in RATE_LIMIT_ENVS.items()}
# Per API key request limit (429 with Retry-After beyond it); empty disables.
# (Read directly: set but empty means "no limit", which env_str would turn into the default.)
API_RATE_LIMIT = os.environ.get("API_RATE_LIMIT", "50/s burst 100")
# How long a worker owns a claimed message; after that the sweeper takes it back. Longer
# than the slowest provider call (connect + read timeout) by a wide margin.
DELIVERY_LEASE_SECONDS = env_int("DELIVERY_LEASE_SECONDS", 90)
# A `queued` message not claimed after this long is published again (a lost broker message).
REQUEUE_AFTER_SECONDS = env_int("REQUEUE_AFTER_SECONDS", 120)
# The dispatcher publishes timers due within this window, with a countdown to the instant.
DISPATCH_LOOKAHEAD_SECONDS = env_float("DISPATCH_LOOKAHEAD_SECONDS", 1.0)
DISPATCH_POLL_SECONDS = env_float("DISPATCH_POLL_SECONDS", 0.2)
# A workspace seen without an enabled event endpoint is looked up again after this long
# (messaging.events.outbox.subscribers): what an endpoint created elsewhere may miss at most.
EVENT_ENDPOINTS_RECHECK_SECONDS = env_float("EVENT_ENDPOINTS_RECHECK_SECONDS", 1.0)
# Write each message's timeline (README.md, "Timelines"). Off only to measure what it
# costs (make bench, scenario e2e): the timeline is how support answers "why?".
TIMELINE_ENABLED = env_bool("TIMELINE_ENABLED", True)
# `send_at` may be this far in the past (clock skew, slow clients) before it is refused.
SEND_AT_PAST_TOLERANCE_SECONDS = env_int("SEND_AT_PAST_TOLERANCE_SECONDS", 60)
IDEMPOTENCY_TTL_SECONDS = 24 * 3600
MESSAGE_BATCH_LIMIT = 1000
EVENT_BATCH_LIMIT = 1000
# Marketing sms/mms held back by quiet hours go out at the window's end plus up to this many
# seconds (each message its own stable offset), so a whole list does not fire in one second.
QUIET_HOURS_JITTER_SECONDS = env_int("QUIET_HOURS_JITTER_SECONDS", 300)

# Events (README.md, "Events"): after a rotation the previous secret keeps signing this
# long, so receivers can switch over; an endpoint whose every delivery failed for this many
# days is disabled (and the workspace's endpoint_disabled alert rules fire).
WEBHOOK_SECRET_OVERLAP_HOURS = env_float("WEBHOOK_SECRET_OVERLAP_HOURS", 24.0)
WEBHOOK_ENDPOINT_DISABLE_AFTER_DAYS = env_float("WEBHOOK_ENDPOINT_DISABLE_AFTER_DAYS", 5.0)

CELERY_BEAT_SCHEDULE.update({
    # Disabling is measured in days: an hourly pass is punctual enough and nearly free.
    "disable-failing-endpoints": {"task": "messaging.tasks.disable_failing_endpoints",
                                  "schedule": 3600.0},
    # Repairs what the broker lost: expired leases (killed workers) and queued rows whose
    # task vanished. Every 15 s keeps recovery well under a minute at trivial cost.
    "sweep-messages": {"task": "messaging.tasks.sweep_messages", "schedule": 15.0},
})
# Redis has no native priorities; kombu emulates them with one list per step, and a worker
# takes from the lowest step first: priority-lane tasks at 0, bulk ones at 6 (messaging.lanes).
CELERY_BROKER_TRANSPORT_OPTIONS.update({
    "priority_steps": [0, 3, 6], "sep": ":", "queue_order_strategy": "priority",
})
# Lanes (README.md, "Lanes"): empty (default), a priority-lane task goes to its channel's
# queue ahead of the bulk ones (every worker serves both lanes, priority first); a queue
# name sends every channel's priority-lane tasks there instead, for workers kept for them
# (Procfile: worker-priority). Measured both ways in docs/benchmarks.md ("lanes").
PRIORITY_LANE_QUEUE = env_str("PRIORITY_LANE_QUEUE", "")
if PRIORITY_LANE_QUEUE:
    CELERY_TASK_QUEUES.append(Queue(PRIORITY_LANE_QUEUE))

# --- Flows ----------------------------------------------------------------------------------
# How long one worker owns an execution while advancing it (light nodes are milliseconds).
FLOW_LEASE_SECONDS = env_int("FLOW_LEASE_SECONDS", 60)
CELERY_BEAT_SCHEDULE.update({
    # Republishes executions whose advance task was lost and finishes steps whose message
    # finished while the notification was lost; 30 s bounds that recovery time.
    "sweep-flows": {"task": "flows.tasks.sweep_flows", "schedule": 30.0},
})

# --- Audiences ------------------------------------------------------------------------------
# Contact imports (README.md, "Contact imports"): the largest upload taken, and the most rows
# one file may hold (it is counted before anything is written).
IMPORT_MAX_BYTES = env_int("IMPORT_MAX_BYTES", 256 * 1024 * 1024)
IMPORT_MAX_ROWS = env_int("IMPORT_MAX_ROWS", 1_000_000)
# One import task works this long, then hands the rest to a fresh task on the queue.
IMPORT_TASK_SECONDS = env_int("IMPORT_TASK_SECONDS", 60)
# A pending import not started, or a running one without a batch for this long, had its
# task lost (a killed worker, a broker flush): the sweep queues it again.
IMPORT_STALL_SECONDS = env_int("IMPORT_STALL_SECONDS", 120)
# A scheduled or sending broadcast without a batch made for this long had its task lost:
# the tick queues it again.
BROADCAST_STALL_SECONDS = env_int("BROADCAST_STALL_SECONDS", 120)
CELERY_BEAT_SCHEDULE.update({
    # Imports run for minutes; a lost task found within a minute costs little.
    "sweep-imports": {"task": "audiences.tasks.sweep_imports", "schedule": 60.0},
    # Starts broadcasts whose send_at came and completes finished ones (broadcast.completed
    # goes out within this long of the last message); a few indexed queries each time.
    "broadcasts-tick": {"task": "audiences.tasks.broadcasts_tick", "schedule": 5.0},
})

# --- Monitoring -----------------------------------------------------------------------------
# GET /metrics answers a bearer token holder or an address inside these CIDRs; with neither
# set it answers 403 (behind a proxy every client looks local, so no network is trusted by
# default).
# Unset, the token `make run` generated (var/metrics_token), as for SECRET_KEY.
METRICS_TOKEN = env_or_var_file("METRICS_TOKEN", "metrics_token")
METRICS_ALLOWED_NETWORKS = env_list("METRICS_ALLOWED_NETWORKS", [])
# Beat sends a heartbeat task to every queue this often; the worker consuming it stores the
# time in Redis, so liveness is measured by consumption.
WORKER_HEARTBEAT_SECONDS = env_int("WORKER_HEARTBEAT_SECONDS", 30)
# /health/ready fails when the default queue's last consumed heartbeat is older than this
# (four missed heartbeats); 0 removes the check. Never-seen heartbeats report "unknown".
HEALTH_WORKER_MAX_AGE_SECONDS = env_int("HEALTH_WORKER_MAX_AGE_SECONDS", 120)
# /api/v1/queues/health calls a queue degraded when its oldest waiting row or heartbeat is
# older than this.
HEALTH_QUEUE_STALE_SECONDS = env_int("HEALTH_QUEUE_STALE_SECONDS", 300)
# Retention (README.md, "Retention"): beat purges history older than each kind's age, in
# days (0 keeps that kind forever), RETENTION_BATCH_SIZE rows per short transaction, every
# RETENTION_INTERVAL_SECONDS (0: no periodic purge). The audit log is kept longest.
RETENTION_DAYS = {
    kind: env_float(f"RETENTION_{kind.upper()}_DAYS", default)
    for kind, default in (("messages", 30.0), ("event_deliveries", 14.0), ("steps", 30.0),
                          ("executions", 90.0), ("schedule_runs", 90.0),
                          ("dead_letters", 90.0), ("alert_events", 90.0),
                          ("audit_log", 365.0))
}
RETENTION_BATCH_SIZE = max(1, env_int("RETENTION_BATCH_SIZE", 500))
RETENTION_INTERVAL_SECONDS = env_int("RETENTION_INTERVAL_SECONDS", 3600)
# A run stops after this long (inside the task's time limit); the next run goes on.
RETENTION_RUN_SECONDS = env_float("RETENTION_RUN_SECONDS", 240.0)
if RETENTION_INTERVAL_SECONDS > 0:
    CELERY_BEAT_SCHEDULE["purge-history"] = {
        "task": "monitoring.tasks.purge_history",
        "schedule": float(RETENTION_INTERVAL_SECONDS)}
CELERY_BEAT_SCHEDULE.update({
    # Alert windows are minutes long; once a minute bounds detection delay to a minute for a
    # few aggregate queries per enabled rule.
    "evaluate-alerts": {"task": "monitoring.tasks.evaluate_alerts", "schedule": 60.0},
    # /metrics reads trigger-kept totals plus the deltas written since the last compaction;
    # folding them every 30 s keeps a scrape to a few thousand rows at ~500 writes/s.
    "compact-metric-counts": {"task": "monitoring.tasks.compact_metric_counts",
                              "schedule": 30.0},
    # One heartbeat per queue at top priority (it measures consumption, not the backlog);
    # one that waited a whole interval expires unconsumed, so its age keeps growing.
    **{f"heartbeat-{queue}": {
        "task": "monitoring.tasks.heartbeat", "schedule": float(WORKER_HEARTBEAT_SECONDS),
        "args": [queue], "options": {"queue": queue, "priority": 0,
                                     "expire_seconds": WORKER_HEARTBEAT_SECONDS}}
       for queue in (*ALL_QUEUES, *([PRIORITY_LANE_QUEUE] if PRIORITY_LANE_QUEUE else []))},
})

# --- Flow schedules -------------------------------------------------------------------------
# A wake-up fires occurrences at most this old; older missed ones follow the schedule's
# catch_up ("skip" records them as skipped, "run_once" starts the latest once).
SCHEDULE_CATCH_UP_GRACE_SECONDS = env_int("SCHEDULE_CATCH_UP_GRACE_SECONDS", 300)
# How long a flow start with `mode: "immediate"` walks inside the request before the rest
# goes on in the background (a request must not hold a web worker for long).
FLOW_IMMEDIATE_SECONDS = env_float("FLOW_IMMEDIATE_SECONDS", 5.0)
# A running schedule run idle this long had its batch task lost: the sweep requeues it.
SCHEDULE_RUN_REQUEUE_SECONDS = env_int("SCHEDULE_RUN_REQUEUE_SECONDS", 120)
# A run still unfinished this long after firing is failed (and its counters say so).
SCHEDULE_RUN_TIMEOUT_SECONDS = env_int("SCHEDULE_RUN_TIMEOUT_SECONDS", 3600)
CELERY_BEAT_SCHEDULE.update({
    # Beat's per-schedule crontab task is only the fast path: this fires schedules whose
    # next_run_at passed unfired (a lost message, beat's own DST or crontab quirks) and
    # requeues stalled runs. Every 15 s keeps a missed occurrence well inside the grace.
    "sweep-schedules": {"task": "flows.schedule_tasks.sweep_schedules", "schedule": 15.0},
})
