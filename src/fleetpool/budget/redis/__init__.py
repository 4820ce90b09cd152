"""Redis budget backend: a fleet shares one Redis (or one Redis Cluster slot).

Strategy: every operation is one Lua function, so each is atomic on the server and
costs one round trip: FCALL into a Functions library (Redis >= 7; loaded again
when the server lost it), or EVALSHA of a standalone script where the server
has no Functions or an ACL refuses them. The Lua is in ``lua/*.lua``
(assembled by :mod:`._lua`); the wire packing and the private per-thread
connections are in :mod:`._wire`; the pub/sub wake-ups in :mod:`._wake`.
The admission rule is a line-by-line transcription of
:func:`fleetpool.budget._policy.admit` plus the waiter rules of
:func:`fleetpool.budget._state.acquire_step`;
``tests/integration/budget/test_redis_lua_policy.py`` holds the two equal with
hypothesis. Time is the server's ``TIME``, so clock
skew between the fleet's hosts cannot grant or expire anything early (Redis
replicates the script's effects, not the script, so this is safe on replicas).

Layout, all keys under the hash tag ``{fleetpool:<name>}`` so a budget lives in
one Cluster slot:

* ``:config``  string, JSON ``{"limit": n, "functions": {fn: [min, max|null]}}``
* ``:leases``  hash lease id -> JSON ``{"a": acquired_at, "f": function, "h": holder, "m": meta}``
* ``:expiry``  zset lease id -> expires_at in microseconds (purged from the low end
  on every acquire)
* ``:counts``  hash function -> live leases (kept in step with ``:leases``; an
  O(functions) read per acquire instead of O(leases))
* ``:wq``      zset waiter ticket -> enqueue sequence number (FCFS order)
* ``:wexp``    zset ticket -> expires_at (µs);  ``:wfn`` hash ticket -> function
* ``:seq``     counter for ``:wq``
* ``:offers``  zset lease id -> until when its holder promised to release it (fair handoff)
* ``:storm``   string, when the next connect slot is free (µs; storm control)

A call whose reply was lost is retried once only when it failed fast (a stale
connection); the retried ``acquire`` first looks for its own lease id, so a
retry never counts a lease twice. Timeouts are never retried: a store call takes
at most about the configured timeout, then :class:`BudgetUnavailable` is raised.
An acquire that got no reply may still have run (or run late, when a frozen
server wakes up); its lease id is remembered and released after the next call
that reaches the server.

Wake-ups: a write that frees capacity while waiters exist PUBLISHes on
``{fleetpool:<name>}:wake`` (see :mod:`._wake`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, TypeVar

from ...errors import BudgetUnavailable, ConfigError, LeaseLost
from ...redact import redact_url
from .._base import (
    AcquireRequest,
    AcquireResult,
    BudgetBackend,
    Lease,
    Snapshot,
    granted_lease,
)
from .._per_thread import PerThread
from .._policy import REASONS, UNCONFIGURED, BudgetConfig
from ._lua import LIBRARY, SCRIPT_ARGS, SCRIPTS, function_name
from ._topology import is_redirect, open_topology
from ._wake import Contention, Wakeups
from ._wire import (
    NO_WAITING,
    as_str,
    compact,
    connect,
    is_missing_code,
    is_unknown_command,
    micros,
    pack_args,
    round_trip,
    sha1,
)

if TYPE_CHECKING:
    import redis as redis_py

T = TypeVar("T")
log = logging.getLogger("fleetpool.budget")

#: Query parameters of a redis:// URL passed on to redis-py.
ALLOWED_OPTIONS = frozenset(
    {
        "client_name",
        "health_check_interval",
        "max_connections",
        "password",
        "username",
        "ssl_ca_certs",
        "ssl_certfile",
        "ssl_keyfile",
        "ssl_cert_reqs",
        "ssl_check_hostname",
    }
)


KEY_SUFFIXES = (
    "config",
    "leases",
    "expiry",
    "counts",
    "wq",
    "wexp",
    "wfn",
    "seq",
    "offers",
    "storm",
)


def budget_keys(name: str) -> list[str]:
    """The keys of budget ``name``; they share one hash tag (one Cluster slot)."""
    tag = "{fleetpool:" + name + "}"
    return [f"{tag}:{suffix}" for suffix in KEY_SUFFIXES]


def wake_channel(name: str) -> str:
    return "{fleetpool:" + name + "}:wake"


def contention_channel(name: str) -> str:
    """Where a refused, queued acquire says someone waits (``acquire.lua`` derives it
    from the wake channel)."""
    return "{fleetpool:" + name + "}:contended"


#: The admission reasons as the server sends them (decoding each reply costs more).
_REASONS = {r.encode(): r for r in REASONS}


class RedisBackend(BudgetBackend):
    kind = "redis"
    notifies = True
    signals_contention = True

    def __init__(
        self,
        name: str,
        url: str,
        timeout: float = 2.0,
        options: dict[str, str] | None = None,
    ) -> None:
        super().__init__(name)
        try:
            import redis as redis_py
            from redis.backoff import NoBackoff
            from redis.retry import Retry
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise ConfigError(
                "the redis budget backend needs redis-py: pip install 'fleetpool[redis]'"
            ) from exc
        opts = dict(options or {})
        self.wait_replicas, self.wait_timeout = _wait_options(opts, url, float(timeout))
        unknown = sorted(set(opts) - ALLOWED_OPTIONS)
        if unknown:
            raise ConfigError(
                f"unknown option(s) {', '.join(unknown)} in redis budget URL; "
                f"accepted: timeout, on_unavailable, wait_replicas, wait_timeout, "
                f"{', '.join(sorted(ALLOWED_OPTIONS))}"
            )
        self.timeout = float(timeout)
        self.url = url
        self._redis_py = redis_py
        kwargs: dict[str, Any] = {
            "socket_timeout": self.timeout,
            "socket_connect_timeout": self.timeout,
            # fleetpool bounds the call itself: no retries with backoff inside redis-py.
            "retry": Retry(NoBackoff(), 0),
        }
        if "health_check_interval" not in opts:
            kwargs["health_check_interval"] = 30
        self.keys = budget_keys(name)
        try:
            # No I/O here for one server or Sentinel: redis-py connects on the first
            # command. A Cluster reads its slot map now.
            self._topology = open_topology(url, self.keys[0], opts, kwargs, redis_py)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"invalid redis budget URL {redact_url(url)!r}: {exc}") from exc
        self._client: redis_py.Redis = self._topology.client
        self.channel = wake_channel(name)
        #: RESP header, command, function (or script sha), key count and keys of
        #: each operation, packed once.
        self._packed: dict[str, bytes] = {}
        self._use_functions(True)
        # This thread's own connection (see _connection); kept until close().
        self._conns: PerThread[Any] = PerThread(
            # The client of the moment: a Cluster redirect replaces it.
            lambda: connect(self._client.connection_pool),
            _disconnect,
            close_with_thread=False,
        )
        self._static: dict[tuple[str, str, float], bytes] = {}
        self._wakeups = Wakeups(self._client, self.channel, self.timeout, redis_py)
        self._contention = Contention(self._client, contention_channel(name), redis_py)
        self._orphans: list[tuple[str, str]] = []
        self._orphans_lock = threading.Lock()

    # -- calling the server ------------------------------------------------------

    def _unavailable(self, exc: Exception) -> BudgetUnavailable:
        return BudgetUnavailable(
            f"redis budget {self.name!r} at {redact_url(self.url)} unavailable: "
            f"{type(exc).__name__}: {exc}"
        )

    def _call(self, fn: Callable[[], T]) -> T:
        r = self._redis_py
        start = time.monotonic()
        retried = False
        while True:
            try:
                return fn()
            except r.TimeoutError as exc:
                raise self._unavailable(exc) from exc
            except r.ConnectionError as exc:
                # A pooled connection the server (or a NAT) dropped while this
                # container was frozen fails fast; one more try gets a new one
                # (in a Cluster, from the slot's primary of now).
                if not retried and time.monotonic() - start < self.timeout / 2:
                    retried = True
                    if self._topology.follows_failover:
                        self._rediscover()
                    continue
                raise self._unavailable(exc) from exc
            except r.ResponseError as exc:
                if not retried and is_redirect(exc):
                    retried = True
                    self._rediscover()
                    continue
                raise self._unavailable(exc) from exc
            except r.RedisError as exc:
                raise self._unavailable(exc) from exc

    def _rediscover(self) -> None:
        """Ask the Cluster again where the budget's slot lives; use that node from now on."""
        try:
            client = self._topology.rediscover()
        except self._redis_py.RedisError as exc:
            log.info("redis budget %r: cluster rediscovery failed: %s", self.name, exc)
            return
        if client is not self._client:
            self._client = client
            self._conns.close_all(timeout=0.0)
            self._wakeups.use(client)
            self._contention.use(client)

    def _connection(self) -> Any:
        """This thread's own connection (made on first use; per process after a fork).

        A budget call is one command and one reply, so a thread keeps one
        connection instead of borrowing from redis-py's pool each time: the
        pool's bookkeeping (a lock, a readiness poll, telemetry) costs about as
        much as a loopback round trip. A connection the server dropped fails
        fast and is reopened by the retry in :meth:`_call`.
        """
        return self._conns.get().value

    def _use_functions(self, functions: bool) -> None:
        """Call operations with FCALL (Redis >= 7) or, without Functions, EVALSHA."""
        self.functions = functions
        for op, source in SCRIPTS.items():
            if functions:
                head = ("FCALL", function_name(op), "1", self.keys[0])
            else:
                head = ("EVALSHA", sha1(source), "1", self.keys[0])
            self._packed[op] = pack_args(head, total=len(head) + SCRIPT_ARGS[op])

    def _load(self, conn: Any, op: str, missing: Exception) -> None:
        """Put the Lua code on a server that lacks it (a restart, a flush, a new server).

        With Functions, the library; if the server has no Functions (Redis < 7),
        or they may not be loaded (an ACL without FUNCTION), every later call
        uses EVALSHA instead.
        """
        response_error = self._redis_py.ResponseError
        if self.functions:
            if is_unknown_command(missing) or type(missing).__name__ == "NoPermissionError":
                self._use_functions(False)
            else:
                conn.send_command("FUNCTION", "LOAD", "REPLACE", LIBRARY)
                try:
                    conn.read_response()
                    return
                except response_error as exc:
                    log.info(
                        "redis budget %r: FUNCTION LOAD refused (%s); using EVALSHA", self.name, exc
                    )
                    self._use_functions(False)
        conn.send_command("SCRIPT", "LOAD", SCRIPTS[op])
        conn.read_response()

    def _script(
        self,
        op: str,
        args: Sequence[str | bytes],
        retry_args: Sequence[str | bytes] | None = None,
    ) -> Any:
        """Run operation ``op``: one FCALL (or EVALSHA), one reply.

        ``retry_args`` replace ``args`` when a call whose reply was lost is sent
        again (acquire then checks whether the first one already ran).
        """
        response_error = self._redis_py.ResponseError
        sent = 0

        def run() -> Any:
            nonlocal sent
            conn = self._connection()
            call_args = retry_args if sent and retry_args is not None else args
            sent += 1
            try:
                try:
                    return round_trip(conn, self._packed[op] + pack_args(call_args))
                except response_error as exc:
                    if not is_missing_code(exc):
                        raise
                    self._load(conn, op, exc)
                    return round_trip(conn, self._packed[op] + pack_args(call_args))
            except response_error:
                raise  # the connection is fine
            except BaseException:
                conn.disconnect()  # a half-read reply must never reach the next caller
                raise

        result = self._call(run)
        if self._orphans and op != "release":
            self._release_orphans()
        return result

    def _release_orphans(self) -> None:
        """Best effort: give back leases whose acquire timed out but may have run late."""
        with self._orphans_lock:
            orphans, self._orphans = self._orphans, []
        for lease_id, function in orphans:
            try:
                self._script("release", (lease_id, self.channel, function))
            except BudgetUnavailable:
                return  # they expire on their own

    # -- the interface -------------------------------------------------------------

    def configure(self, config: BudgetConfig) -> None:
        self._script("configure", (config.to_json(), self.channel))

    def get_config(self) -> BudgetConfig:
        raw = self._call(lambda: self._client.get(self.keys[0]))
        return UNCONFIGURED if raw is None else BudgetConfig.from_json(raw)

    def budget_names(self) -> list[str]:
        head, tail = "{fleetpool:", "}:" + KEY_SUFFIXES[0]
        keys = self._call(lambda: list(self._client.scan_iter(match=head + "*" + tail, count=1000)))
        names = (as_str(k) for k in keys)
        return sorted(k[len(head) : -len(tail)] for k in names if k.endswith(tail))

    def try_acquire(self, request: AcquireRequest) -> AcquireResult:
        queueing = request.queue_for > 0
        self._wakeups.before_attempt(queueing)
        # Packed here in one piece: the static part once per function, holder
        # and ttl, the rest per call; the final flag differs only on a retry.
        if queueing or request.ticket:
            variable = pack_args(
                (
                    request.lease_id,
                    request.ticket or "",
                    micros(request.queue_for),
                    # Only a call that may join the queue needs a fresh ticket.
                    (request.ticket or uuid.uuid4().hex) if queueing else "",
                )
            )
        else:  # the common call: no ticket, no queueing
            variable = pack_args((request.lease_id,)) + NO_WAITING
        packed = self._static_args(request) + variable
        args = (packed + b"$0\r\n\r\n",)
        retry_args = (packed + b"$1\r\n1\r\n",)
        try:
            res = self._script("acquire", args, retry_args)
        except BudgetUnavailable:
            # The script may have run although no reply came back (a frozen or
            # overloaded server answers late, a reply is lost with its
            # connection): release that lease after the next call that works.
            with self._orphans_lock:
                self._orphans = [*self._orphans[-99:], (request.lease_id, request.function)]
            raise
        granted, reason, limit, in_use, ticket, reclaimed, acquired_us, expires_us, soonest_us = res
        lease = None
        if granted and self.wait_replicas:
            self._replicated(request.lease_id, request.function)
        if granted:
            lease = granted_lease(
                request.lease_id,
                self.name,
                request.function,
                request.holder,
                acquired_us / 1e6,
                expires_us / 1e6,
                dict(request.meta),
            )
        else:
            self._wakeups.refused(soonest_us)
        return AcquireResult(
            lease=lease,
            reason=_REASONS.get(reason) or as_str(reason),
            limit=int(limit),
            in_use=int(in_use),
            ticket=as_str(ticket) or None,
            reclaimed=int(reclaimed),
        )

    def _static_args(self, request: AcquireRequest) -> bytes:
        """The packed function, ttl, lease payload and channel of an acquire.

        They repeat from call to call (a container asks for the same function,
        holder and ttl every time), so without meta they are packed once.
        """
        key = (request.function, request.holder, request.ttl)
        packed = None if request.meta else self._static.get(key)
        if packed is None:
            try:
                payload = compact(
                    {"f": request.function, "h": request.holder, "m": dict(request.meta)}
                )
            except TypeError as exc:
                raise ConfigError(f"lease meta must be JSON-serialisable: {exc}") from exc
            # (the script prepends the acquired time: it gets the text after the brace)
            packed = pack_args((request.function, micros(request.ttl), payload[1:], self.channel))
            if not request.meta:
                if len(self._static) >= 64:
                    self._static.clear()
                self._static[key] = packed
        return packed

    def _replicated(self, lease_id: str, function: str) -> None:
        """WAIT mode: return only once ``wait_replicas`` replicas have the write.

        Redis replicates asynchronously: a primary that fails over right after a
        grant may lose it, and the promoted replica would then grant the same
        capacity again. WAIT closes that hole for failovers that promote a
        replica that acknowledged (Sentinel and Cluster pick the most up to date
        one). When too few acknowledge in time, the grant is given back and the
        store counts as unavailable (``on_unavailable`` decides).
        """
        try:
            self._wait_for_replicas()
        except BudgetUnavailable:
            with contextlib.suppress(BudgetUnavailable):
                self._script("release", (lease_id, self.channel, function))
            raise

    def _wait_for_replicas(self) -> None:
        ms = str(max(1, round(self.wait_timeout * 1000)))
        command = pack_args(("WAIT", str(self.wait_replicas), ms), total=3)
        acked = self._call(lambda: round_trip(self._connection(), command))
        if int(acked) < self.wait_replicas:
            raise BudgetUnavailable(
                f"redis budget {self.name!r} at {redact_url(self.url)}: {acked} of "
                f"{self.wait_replicas} replicas acknowledged within {self.wait_timeout:g}s "
                "(wait_replicas)"
            )

    def renew(self, lease: Lease, ttl: float) -> Lease:
        expires = self._script("renew", (lease.id, micros(ttl)))
        if expires is None:
            raise LeaseLost.of(lease)
        if self.wait_replicas:
            # A renewal lost in a failover would let the lease expire early there.
            self._wait_for_replicas()
        return replace(lease, expires_at=expires / 1e6)

    def annotate(self, lease: Lease, meta: Mapping[str, Any]) -> Lease:
        merged = {**lease.meta, **meta}
        try:
            text = compact(merged)
        except TypeError as exc:
            raise ConfigError(f"lease meta must be JSON-serialisable: {exc}") from exc
        expires = self._script("annotate", (lease.id, text))
        if expires is None:
            raise LeaseLost.of(lease)
        return replace(lease, meta=merged, expires_at=expires / 1e6)

    def contended(self) -> bool:
        return self._contention.heard()

    def offer(self, lease: Lease, grace: float) -> int:
        return int(self._script("offer", (lease.id, micros(grace))))

    def reserve_connect(self, rate: float, burst: int, within: float) -> float | None:
        delay = int(
            self._script("connect_slot", (micros(1.0 / rate), str(int(burst)), micros(within)))
        )
        return None if delay < 0 else delay / 1e6

    def release(self, lease: Lease) -> bool:
        return bool(self._script("release", (lease.id, self.channel, lease.function)))

    def cancel_wait(self, ticket: str) -> None:
        self._script("cancel_wait", (ticket, self.channel))

    def leases(self) -> list[Lease]:
        flat = self._script("leases", ())
        out: list[Lease] = []
        for i in range(0, len(flat), 3):
            data = json.loads(flat[i + 1])
            out.append(
                Lease(
                    id=as_str(flat[i]),
                    budget=self.name,
                    function=data["f"],
                    holder=data["h"],
                    acquired_at=float(data["a"]),
                    expires_at=float(flat[i + 2]) / 1e6,
                    meta=data["m"],
                )
            )
        out.sort(key=lambda x: (x.acquired_at, x.id))
        return out

    def snapshot(self) -> Snapshot:
        raw_config, flat, waiting = self._script("snapshot", ())
        config = BudgetConfig.from_json(raw_config) if raw_config else UNCONFIGURED
        counts = {as_str(flat[i]): int(flat[i + 1]) for i in range(0, len(flat), 2)}
        return Snapshot.from_counts(self.name, config, counts, int(waiting))

    # -- waiting ---------------------------------------------------------------------

    def wait_for_change(self, timeout: float) -> None:
        self._wakeups.wait(timeout)

    def close(self) -> None:
        """Close the wake-up subscriptions and the connections (reconnects lazily)."""
        self._conns.close_all(timeout=0.0)
        self._wakeups.close()
        self._contention.close()
        self._client.close()


def _wait_options(opts: dict[str, str], url: str, timeout: float) -> tuple[int, float]:
    """``wait_replicas`` (default 0: no WAIT) and ``wait_timeout`` (seconds, default
    the store timeout) from the URL's query, removed from ``opts``."""
    raw_n, raw_t = opts.pop("wait_replicas", "0"), opts.pop("wait_timeout", None)
    try:
        n = int(raw_n)
    except ValueError:
        n = -1
    if n < 0:
        raise ConfigError(
            f"wait_replicas in {redact_url(url)!r} must be an integer >= 0, got {raw_n!r}"
        )
    if raw_t is None:
        return n, timeout
    try:
        t = float(raw_t)
    except ValueError:
        t = -1.0
    if not 0 < t <= timeout:
        raise ConfigError(
            f"wait_timeout in {redact_url(url)!r} must be seconds in (0, timeout={timeout:g}], "
            f"got {raw_t!r}"
        )
    return n, t


def _disconnect(conn: Any) -> None:
    # redis-py only shuts the socket down in the process that opened it.
    conn.disconnect()


__all__ = ["RedisBackend", "budget_keys", "contention_channel", "wake_channel"]
