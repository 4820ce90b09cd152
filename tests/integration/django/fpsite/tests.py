"""Run by Django's test runner (``django-admin test fpsite``) on the fleetpool backends.

Requests go through Django's WSGI handler, so the request signals fire as in
production (Django's test client disconnects them): a request's end checks the
session in to fleetpool, the next request checks it out again.
"""

from __future__ import annotations

import json
from typing import Any

from django.core.handlers.wsgi import WSGIHandler
from django.db import connection
from django.db.migrations.recorder import MigrationRecorder
from django.test import RequestFactory, TransactionTestCase
from django.test.utils import override_settings
from fpsite.models import Item

import fleetpool


def request(path: str) -> tuple[int, bytes]:
    environ = RequestFactory()._base_environ(PATH_INFO=path, REQUEST_METHOD="GET")
    status: list[str] = []
    response = WSGIHandler()(environ, lambda s, headers, *exc: status.append(s))
    try:
        body = b"".join(response)
    finally:
        response.close()  # request_finished: Django's end-of-request connection handling
    return int(status[0].split()[0]), body


def state() -> dict[str, Any]:
    code, body = request("/session")
    assert code == 200, body
    return dict(json.loads(body))


def budget() -> fleetpool.Budget:
    settings = connection.settings_dict["FLEETPOOL"]
    return fleetpool.open_budget(settings["budget"], settings["budget_name"])


class FleetpoolBackendTests(TransactionTestCase):
    def setUp(self) -> None:
        connection.close()  # each test starts from a fresh session and lease

    def test_migrations_ran_through_the_backend(self) -> None:
        applied = MigrationRecorder(connection).applied_migrations()
        self.assertIn(("fpsite", "0001_initial"), applied)
        self.assertIn(Item._meta.db_table, connection.introspection.table_names())

    def test_requests_share_one_warm_leased_session(self) -> None:
        first = state()
        fleet = connection.fleet
        counts = (fleet.stats.connects, fleet.stats.acquires, fleet.stats.resets)
        for _ in range(5):
            again = state()
            self.assertEqual(again["session"], first["session"])
            self.assertEqual(again["lease"], first["lease"])
        self.assertIsNotNone(first["lease"])
        self.assertTrue(first["tag"].startswith("fp:"))
        # No new session, no store call, no reset round trip after the first request.
        self.assertEqual((fleet.stats.connects, fleet.stats.acquires, fleet.stats.resets), counts)
        leases = [x for x in budget().leases() if x.function == "django-site"]
        self.assertEqual([x.id for x in leases], [first["lease"]])

    def test_state_left_by_a_request_is_gone_in_the_next(self) -> None:
        clean = state()
        resets = connection.fleet.stats.resets
        code, _ = request("/dirty")
        self.assertEqual(code, 200)
        after = state()
        self.assertEqual(after["session"], clean["session"], "the warm session was kept")
        self.assertEqual(after["marker"], clean["marker"])
        # Django's own session set-up is back after fleetpool's reset.
        self.assertEqual(after["isolation"], clean["isolation"])
        self.assertEqual(after["timezone"], clean["timezone"])
        self.assertEqual(connection.fleet.stats.resets, resets + 1)

    def test_atomic_requests_roll_back_a_failed_view(self) -> None:
        before = state()
        code, _ = request("/create-then-fail")
        self.assertEqual(code, 500)
        after = state()
        self.assertEqual(after["items"], before["items"])
        self.assertEqual(after["session"], before["session"])

    def test_orm_and_atomic_blocks_work_between_requests(self) -> None:
        from django.db import transaction

        with transaction.atomic():
            Item.objects.create(name="a")
            with transaction.atomic():
                Item.objects.create(name="b")
        self.assertEqual(sorted(Item.objects.values_list("name", flat=True)), ["a", "b"])
        self.assertEqual(state()["items"], 2)

    def test_conn_max_age_zero_closes_and_releases_each_request(self) -> None:
        connection.settings_dict["CONN_MAX_AGE"] = 0
        try:
            connection.close()
            first = state()
            second = state()
            self.assertNotEqual(second["session"], first["session"])
            self.assertNotEqual(second["lease"], first["lease"])
            self.assertEqual([x for x in budget().leases() if x.function == "django-site"], [])
        finally:
            connection.settings_dict["CONN_MAX_AGE"] = None

    @override_settings(DEBUG=False)
    def test_closing_releases_the_lease(self) -> None:
        state()
        connection.close()
        self.assertEqual([x for x in budget().leases() if x.function == "django-site"], [])
