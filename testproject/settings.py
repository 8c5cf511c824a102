"""Settings of the project that demonstrates and tests maintenance_tasks.

Everything that differs between machines comes from the environment (django-environ):
DATABASE_URL picks SQLite (default), PostgreSQL or MariaDB; TASKS_BACKEND picks where runs are
performed: ``immediate`` (default: in the calling process), ``database`` (django-tasks-db, run
``manage.py db_worker``) or ``rq`` (django-tasks-rq on REDIS_URL, run ``manage.py rqworker``),
or a backend's dotted path.
"""

from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"
VAR_DIR.mkdir(exist_ok=True)

env = environ.Env()
DEBUG = env.bool("DJANGO_DEBUG", default=True)
SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="testproject-insecure-key")
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_tasks_db",
    "django_rq",
    "maintenance_tasks",
    "testproject.demo",
    "testproject.editorial",
    "testproject.testapp",
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

ROOT_URLCONF = "testproject.urls"
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
            ]
        },
    }
]
STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "static"
# Where the default storage keeps files: the CSV files runs are started with (CSV_STORAGE).
MEDIA_ROOT = env.path("MEDIA_ROOT", default=VAR_DIR / "media")

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}")}
# LEGACY_DATABASE_URL adds a second database, "legacy": the models testproject/routers.py names live
# there, and the processors over them commit their batches and checkpoints there.
if _legacy_url := env.str("LEGACY_DATABASE_URL", default=""):
    DATABASES["legacy"] = env.db_url_config(_legacy_url)
    DATABASE_ROUTERS = ["testproject.routers.LegacyRouter"]
# TEST_DB_NAME lets several suites share a database server without sharing a test database.
_test_name = env.str("TEST_DB_NAME", default="test")
for _alias, _db in DATABASES.items():
    _suffix = "" if _alias == "default" else f"_{_alias}"
    if _db["ENGINE"].endswith("sqlite3"):
        # A file, not memory, so that processes started by the tests see the test database.
        _db["TEST"] = {"NAME": str(VAR_DIR / f"{_test_name}{_suffix}.sqlite3")}
        _db["OPTIONS"] = {
            "transaction_mode": "IMMEDIATE",
            "timeout": 30,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    else:
        _db["TEST"] = {"NAME": f"test_{_test_name}{_suffix}"}
    if _db["ENGINE"].endswith("mysql"):
        _db.setdefault("OPTIONS", {})["charset"] = "utf8mb4"
        _db["TEST"]["CHARSET"] = "utf8mb4"

TASK_BACKENDS = {
    "immediate": "django.tasks.backends.immediate.ImmediateBackend",
    "database": "django_tasks_db.DatabaseBackend",
    "rq": "django_tasks_rq.RQBackend",
}
_tasks_backend = env.str("TASKS_BACKEND", default="immediate")
TASKS = {
    "default": {
        "BACKEND": TASK_BACKENDS.get(_tasks_backend, _tasks_backend),
        "QUEUES": env.list("TASKS_QUEUES", default=["default", "heavy"]),
    }
}
REDIS_URL = env.str("REDIS_URL", default="redis://127.0.0.1:6379/0")
RQ_QUEUES = {name: {"URL": REDIS_URL} for name in TASKS["default"]["QUEUES"]}

MAINTENANCE_TASKS = {
    "CHECKPOINT_INTERVAL": env.float("MAINTENANCE_CHECKPOINT_INTERVAL", default=1.0),
    "STALE_AFTER": env.float("MAINTENANCE_STALE_AFTER", default=60.0),
    "LOG_INTERVAL": env.float("MAINTENANCE_LOG_INTERVAL", default=5.0),
    "SLICE_SECONDS": env.float("MAINTENANCE_SLICE_SECONDS", default=60.0),
    "MAX_CONCURRENT_RUNS": env.int("MAINTENANCE_MAX_CONCURRENT_RUNS", default=None),
    "MAX_RECOVERIES": env.int("MAINTENANCE_MAX_RECOVERIES", default=5),
    "SCHEDULER_INTERVAL": env.float("MAINTENANCE_SCHEDULER_INTERVAL", default=60.0),
    "OUTPUT_LINES": env.int("MAINTENANCE_OUTPUT_LINES", default=200),
    "THROTTLE_CHECK_INTERVAL": env.float("MAINTENANCE_THROTTLE_CHECK_INTERVAL", default=1.0),
    # The tests count batches and stop or kill runs between them, one transaction per batch;
    # tests/test_batching.py sets the app's default (0.5) itself, and bench/engine.py runs with it.
    "BATCH_TIME": None if env.str("MAINTENANCE_BATCH_TIME", default="") == "" else env.float("MAINTENANCE_BATCH_TIME"),
}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
TIME_ZONE = "UTC"
LANGUAGE_CODE = "en-us"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {
        "maintenance_tasks": {"handlers": ["console"], "level": env.str("MAINTENANCE_LOG_LEVEL", default="WARNING")}
    },
}
