"""What both fleetpool Django backends add to Django's own: a ``fleetpool.Database`` per wrapper.

Strategy: Django keeps one connection per thread and alias (its
``DatabaseWrapper``), opened at first use and closed by the request signals
when ``CONN_MAX_AGE`` says so. The fleetpool backends keep all of that and put
one :class:`fleetpool.Database` under it, mapping Django's moments onto
fleetpool's checkout and check-in:

* Django connects -> fleetpool checks out: a lease from the budget (settings'
  ``FLEETPOOL["budget"]``), the connection tagged and given the lease-aligned
  server timeouts, through fleetpool's retries and credentials. The driver is
  configured Django's way (adapters and cursor class on PostgreSQL, converters
  and client flags on MySQL), with fleetpool's statement tracking added.
* the end of a request (``close_if_unusable_or_obsolete``, outside an atomic
  block) -> fleetpool checks in: a clean session costs nothing; a dirty one is
  reset (or rolled back) and Django's session set-up is run again at the next use.
* the next use (``ensure_connection``) -> fleetpool checks out again: the lease
  is renewed only past half its TTL, and a session the server dropped is
  replaced (Django then sees a new connection and initialises it).
* Django closes (``CONN_MAX_AGE`` reached, errors, ``close()``) -> fleetpool
  closes the session and releases the lease.

``CONN_MAX_AGE = 0`` (Django's default) closes at every request's end, so
only the lease applies; set it to ``None`` (or seconds) for warm reuse -- the
lease-aligned server idle timeout still ends a session a frozen container
abandons. ``ATOMIC_REQUESTS`` works unchanged: a request's atomic block ends
before the check-in. Migrations and the test runner connect through the same path.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import quote, urlencode

from django.core.exceptions import ImproperlyConfigured

import fleetpool
from fleetpool.errors import ConfigError

#: Keys of ``DATABASES[alias]["FLEETPOOL"]``: ``fleetpool.Database``'s keyword arguments.
SETTINGS_KEY = "FLEETPOOL"


class FleetpoolWrapperMixin:
    """Mixed into Django's ``DatabaseWrapper`` (first in the bases)."""

    settings_dict: dict[str, Any]
    connection: Any
    in_atomic_block: bool
    close_at: float | None
    alias: str

    _fleet: fleetpool.Database | None = None
    _fleet_out = False
    #: fleet.stats.resets when Django last initialised the session.
    _fleet_resets_seen = 0

    # -- what each engine supplies -------------------------------------------

    #: URL scheme of the fleetpool DSN.
    fleet_scheme = ""

    def fleet_split(self, conn_params: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """(fleetpool DSN, driver connect options) from Django's connection parameters."""
        raise NotImplementedError

    # -- fleetpool ------------------------------------------------------------

    def fleet_dsn(self, query: dict[str, Any], host: str, port: Any, user: Any, db: Any) -> str:
        params = {k: str(v) for k, v in query.items() if v is not None}
        if host.startswith("/"):  # a unix socket directory (PostgreSQL) or path (MySQL)
            params["host" if self.fleet_scheme == "postgresql" else "unix_socket"] = host
            host = ""
        netloc = f"{quote(str(user), safe='')}@" if user else ""
        netloc += host + (f":{int(port)}" if port and host else "")
        if port and not host:
            params["port"] = str(port)
        url = f"{self.fleet_scheme}://{netloc}/{quote(str(db or ''), safe='')}"
        return url + (f"?{urlencode(params)}" if params else "")

    def fleet_for(self, conn_params: dict[str, Any]) -> fleetpool.Database:
        """The wrapper's Database, rebuilt when Django now connects elsewhere (test DB)."""
        dsn, options = self.fleet_split(conn_params)
        fleet = self._fleet
        if fleet is not None and fleet.dsn != dsn:
            fleet.close()
            fleet = self._fleet = None
        if fleet is None:
            settings = dict(self.settings_dict.get(SETTINGS_KEY) or {})
            if self.settings_dict.get("PASSWORD") and not (
                {"password", "secret", "iam_auth"} & settings.keys()
            ):
                settings["password"] = self.settings_dict["PASSWORD"]
            try:
                fleet = fleetpool.Database(dsn, **settings)
            except TypeError as exc:
                raise ImproperlyConfigured(
                    f"DATABASES[{self.alias!r}][{SETTINGS_KEY!r}]: {exc}; accepted: the "
                    "keyword arguments of fleetpool.Database (budget, budget_name, function, "
                    "lease_ttl, max_wait, connect_timeout, statement_timeout, password, "
                    "secret, iam_auth, region, idle_timeout, reset, reap_threshold, ...)"
                ) from None
            except ConfigError as exc:
                raise ImproperlyConfigured(f"DATABASES[{self.alias!r}]: {exc}") from exc
            self._fleet = fleet
        fleet.driver.connect_options = options
        return fleet

    @property
    def fleet(self) -> fleetpool.Database | None:
        """The ``fleetpool.Database`` under this wrapper (None before the first connect)."""
        return self._fleet

    def fleet_checkout(self, conn_params: dict[str, Any]) -> Any:
        """Django's "connect": a checkout (the warm session when there is one)."""
        fleet = self.fleet_for(conn_params)
        if not self._fleet_out:
            fleet.checkout()
            self._fleet_out = True
        self._fleet_resets_seen = fleet.stats.resets
        return fleet._conn

    def _fleet_checkin(self) -> None:
        fleet = self._fleet
        conn = self.connection
        self._fleet_out = False
        if fleet is None:
            return
        fleet.checkin()
        if fleet._conn is not conn:
            # fleetpool closed the session (broken, or state only a new session clears).
            self.connection = None

    # -- Django's moments -----------------------------------------------------

    def ensure_connection(self) -> None:
        fleet = self._fleet
        if self.connection is not None and not self._fleet_out and fleet is not None:
            conn = fleet.checkout()
            self._fleet_out = True
            if conn is not self.connection:
                self.connection = None  # a new session: Django connects and initialises it
            elif fleet.stats.resets != self._fleet_resets_seen:
                # The check-in reset the session: Django's session set-up is gone.
                self._fleet_resets_seen = fleet.stats.resets
                self.init_connection_state()
        super().ensure_connection()  # type: ignore[misc]

    def init_connection_state(self) -> None:
        super().init_connection_state()  # type: ignore[misc]
        fleet = self._fleet
        if fleet is not None and self.connection is not None:
            # Django's set-up (time zone, isolation level...) is the clean state.
            fleet.driver.rebase(self.connection)

    def close_if_unusable_or_obsolete(self) -> None:
        if self.connection is not None and not self._fleet_out:
            # Checked in (clean, autocommit restored): only the age rule applies.
            if self.close_at is not None and time.monotonic() >= self.close_at:
                self.close()  # type: ignore[attr-defined]
            return
        super().close_if_unusable_or_obsolete()  # type: ignore[misc]
        if self.connection is not None and self._fleet_out and not self.in_atomic_block:
            self._fleet_checkin()

    def _close(self) -> None:
        fleet = self._fleet
        if fleet is None or self.connection is None:
            super()._close()  # type: ignore[misc]
            return
        fleet.close()  # the session ends and the lease goes back to the fleet
        if self._fleet_out:
            # Unwind the checkout after the close: nothing is left to clean, no round trip.
            self._fleet_out = False
            fleet.checkin(failed=True)


__all__ = ["SETTINGS_KEY", "FleetpoolWrapperMixin"]
