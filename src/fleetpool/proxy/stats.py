# Strategy: plain counters and fixed-bucket histograms updated inline on the event
# loop (no locks, no allocation on the hot path). Exporters (Prometheus, JSON
# /status, the admin console's SHOW STATS) read them; nothing here does I/O.
from __future__ import annotations

from dataclasses import dataclass, field

from ..histogram import Histogram

LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    120.0,
)


@dataclass(slots=True)
class Stats:
    client_connections_total: int = 0
    clients_refused: int = 0
    auth_failures: int = 0
    # login throttling (proxy/throttle.py)
    logins_in_progress: int = 0
    logins_delayed: int = 0
    logins_refused_banned: int = 0
    logins_refused_busy: int = 0
    login_bans: int = 0
    protocol_errors: int = 0
    borrow_timeouts: int = 0
    server_connects: int = 0
    server_connect_errors: int = 0
    server_errors: int = 0
    server_lost: int = 0
    pinned_total: int = 0
    borrows: int = 0
    transactions: int = 0
    cancels: int = 0
    pins: dict[str, int] = field(default_factory=dict)  # pinned clients by reason
    borrow_latency: Histogram = field(default_factory=lambda: Histogram(LATENCY_BUCKETS))
    transaction_latency: Histogram = field(default_factory=lambda: Histogram(LATENCY_BUCKETS))

    def borrowed_at_once(self) -> None:
        self.borrows += 1
        hist = self.borrow_latency
        hist.counts[0] += 1
        hist.n += 1

    def borrowed(self, waited: float) -> None:
        self.borrows += 1
        self.borrow_latency.observe(waited)

    def pinned(self, reason: str) -> None:
        self.pinned_total += 1
        self.pins[reason] = self.pins.get(reason, 0) + 1

    def transaction_done(self, seconds: float) -> None:
        self.transactions += 1
        self.transaction_latency.observe(seconds)
