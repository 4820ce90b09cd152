"""Settings of the small Django project the fleetpool backends are tested with.

Read from the environment (set by tests/integration/django/test_django.py):
``FP_DJANGO_DSN`` (a fleetpool database URL), ``FP_DJANGO_BUDGET`` (a budget
URL), ``FP_DJANGO_BUDGET_NAME``, ``FP_DJANGO_TEST_DB`` (the test database's name).
"""

from __future__ import annotations

import os

from fleetpool.client.dsn import parse_dsn

_target = parse_dsn(os.environ["FP_DJANGO_DSN"])

SECRET_KEY = "fleetpool-django-tests"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
ALLOWED_HOSTS = ["testserver"]
INSTALLED_APPS = ["django.contrib.contenttypes", "fpsite"]
ROOT_URLCONF = "fpsite.urls"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
MIDDLEWARE: list[str] = []

DATABASES = {
    "default": {
        "ENGINE": f"fleetpool.django.{_target.engine}",
        "NAME": _target.database,
        "USER": _target.user,
        "PASSWORD": _target.password or "",
        "HOST": _target.host,
        "PORT": _target.port,
        "CONN_MAX_AGE": None,
        "ATOMIC_REQUESTS": True,
        "TEST": {"NAME": os.environ["FP_DJANGO_TEST_DB"]},
        "FLEETPOOL": {
            "budget": os.environ["FP_DJANGO_BUDGET"],
            "budget_name": os.environ["FP_DJANGO_BUDGET_NAME"],
            "function": "django-site",
            "lease_ttl": 60,
            "handle_signals": False,
        },
    }
}

# Views that raise on purpose: keep the test output readable.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "loggers": {"django.request": {"level": "CRITICAL"}},
}
