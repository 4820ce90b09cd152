"""1,000 wrong passwords from one address: the attacker is throttled and banned (few
passwords are ever checked), while another client keeps logging in, undelayed.

Checked by counting (attempts checked, delays, bans, the victim's failures), not by
clocks; the latency figures are in benchmarks/login_abuse.py.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import psycopg
import pytest

from tests.login_attack import ACCEPTED, FAILED, REFUSED, attack

from .conftest import USER, ProxyHandle

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ATTACKER = "127.0.0.2"
CONCURRENCY = 50


class Victim(threading.Thread):
    """Logs in (connect, one query, close) from 127.0.0.1 until told to stop."""

    def __init__(self, dsn: str, limit: int = 2000) -> None:
        super().__init__(daemon=True)
        self.dsn = dsn
        self.limit = limit
        self.stop = threading.Event()
        self.times: list[float] = []
        self.errors: list[str] = []

    def run(self) -> None:
        for _ in range(self.limit):
            if self.stop.is_set():
                return
            t0 = time.monotonic()
            try:
                with psycopg.connect(self.dsn, connect_timeout=30) as conn:
                    conn.execute("select 1")
            except psycopg.Error as exc:
                self.errors.append(str(exc))
            self.times.append(time.monotonic() - t0)


def test_a_thousand_wrong_passwords_from_one_address(proxy_factory: Any) -> None:
    ban_after = 20
    handle: ProxyHandle = proxy_factory(
        login_delay=0.05, login_delay_max=0.5, login_ban_after=ban_after, login_ban_time=120.0
    )
    victim = Victim(handle.dsn())
    victim.start()
    try:
        result = asyncio.run(
            attack("127.0.0.1", handle.port, USER, attempts=1000, concurrency=CONCURRENCY)
        )
    finally:
        victim.stop.set()
        victim.join(60)
    stats = handle.proxy.stats
    assert result.attempts == 1000, result.outcomes
    assert result.outcomes[ACCEPTED] == 0
    # Few passwords were ever checked: the ban came after ban_after failures (plus those
    # already in flight when it did), and every later attempt was refused up front (after
    # login_delay_max, holding its slot: the attacker's rate fell to a crawl).
    checked = result.outcomes[FAILED]
    assert ban_after <= checked <= ban_after + CONCURRENCY, result.outcomes
    assert result.outcomes[REFUSED] == 1000 - checked, result.outcomes
    assert result.sqlstates["28000"] == result.outcomes[REFUSED]
    assert stats.auth_failures == checked
    assert stats.login_bans == 1 and stats.logins_refused_banned == result.outcomes[REFUSED]
    # Only the attacker was delayed or banned; the victim never failed.
    assert stats.logins_delayed == checked
    throttle = handle.proxy.services.throttle
    assert throttle.banned(ATTACKER, time.monotonic())
    assert not throttle.banned("127.0.0.1", time.monotonic())
    assert victim.errors == []
    assert len(victim.times) >= 5
    assert max(victim.times) < 30  # a generous bound: the figures are in the benchmark
    assert throttle.in_progress == 0 and stats.logins_in_progress == 0


def test_without_bans_the_delay_bounds_the_attackers_rate(proxy_factory: Any) -> None:
    """Delay only: each address holds at most max_logins_per_address slots, each for
    at least the (growing) delay, so checked passwords per second stay bounded."""
    per_address, delay_max = 4, 0.4
    handle: ProxyHandle = proxy_factory(
        login_delay=0.05,
        login_delay_max=delay_max,
        login_ban_after=0,
        max_logins_per_address=per_address,
    )
    result = asyncio.run(
        attack("127.0.0.1", handle.port, USER, attempts=200, concurrency=10, time_limit=60.0)
    )
    checked = result.outcomes[FAILED]
    assert checked + result.outcomes[REFUSED] == result.attempts
    # The delays run 0.05, 0.1, 0.2, then 0.4 s per failure: whatever the machine's
    # speed, per_address slots cannot check more than this many in the elapsed time.
    bound = per_address * (4 + result.seconds / delay_max)
    assert checked <= bound, (checked, result.seconds)
    assert result.sqlstates.get("53300", 0) == result.outcomes[REFUSED]  # the busy cap
    stats = handle.proxy.stats
    assert stats.logins_refused_busy == result.outcomes[REFUSED]
    assert stats.login_bans == 0
    # Another address logs in at once.
    with psycopg.connect(handle.dsn(), connect_timeout=30) as conn:
        assert conn.execute("select 1").fetchone() == (1,)
