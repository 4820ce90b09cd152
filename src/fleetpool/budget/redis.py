"""Redis budget backend: a fleet shares one Redis (or one Redis Cluster slot).

Strategy: every operation is one Lua function, so each is atomic on the server and
costs one round trip: FCALL into a Functions library (Redis >= 7; loaded again
when the server lost it), or EVALSHA of a standalone script where the server
has no Functions or an ACL refuses them.
The admission rule is a line-by-line transcription of
:func:`fleetpool.budget._policy.admit` plus the waiter rules of
:func:`fleetpool.budget._state.acquire_step`; ``tests/unit/test_redis_lua_policy.py``
holds the two equal with hypothesis. Time is the server's ``TIME``, so clock
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

A call whose reply was lost is retried once only when it failed fast (a stale
connection); the retried ``acquire`` first looks for its own lease id, so a
retry never counts a lease twice. Timeouts are never retried: a store call takes
at most about the configured timeout, then :class:`BudgetUnavailable` is raised.
An acquire that got no reply may still have run (or run late, when a frozen
server wakes up); its lease id is remembered and released after the next call
that reaches the server.

Wake-ups: a write that frees capacity while waiters exist PUBLISHes on
``{fleetpool:<name>}:wake``. Each waiting thread subscribes once (its own
connection, reused for later waits) before its first queued attempt, so a
release between the attempt and the wait is never missed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlencode

from ..errors import BudgetUnavailable, ConfigError, LeaseLost
from ._base import (
    AcquireRequest,
    AcquireResult,
    BudgetBackend,
    Lease,
    Snapshot,
    granted_lease,
)
from ._policy import BudgetConfig

if TYPE_CHECKING:
    import redis as redis_py
    from redis.client import PubSub

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

# -- Lua ------------------------------------------------------------------------
# KEYS: 1 config (the others are derived from it: see bind)
#
# Times are whole microseconds of the server's clock, in zset scores and in
# arguments alike. Redis before 7.2 turns every Lua number handed to redis.call
# into text with printf("%.17g") and a non-integral score into text again for
# a small zset, and those float conversions cost more than the commands; an
# integer goes through string.format('%d') (integer printing) and is kept
# exactly, and constant numeric arguments are written as strings ('1', '-1').
# A microsecond count of today (~1.8e15) is exact in a double.

# The shared part of every operation. Operations are functions of (KEYS, ARGV):
# loaded once as a Redis Functions library (Redis >= 7: FCALL runs only the
# operation; the helpers below are built once, at load) or, on older servers,
# sent as one EVALSHA script per operation.
PRELUDE = r"""
-- Only KEYS[1] ('{fleetpool:<name>}:config') is passed: every key of a call
-- costs the server work, and the others share its hash tag (one Cluster slot),
-- so they are derived from it -- once per budget name, not per call (equal Lua
-- strings are one interned object: the check is a pointer compare).
local K_CONFIG, K_LEASES, K_EXPIRY, K_COUNTS, K_WQ, K_WEXP, K_WFN, K_SEQ
local function bind(keys)
  local k = keys[1]
  if k == K_CONFIG then return end
  local tag = string.sub(k, 1, -7)
  K_CONFIG, K_LEASES, K_EXPIRY, K_COUNTS = k, tag .. 'leases', tag .. 'expiry', tag .. 'counts'
  K_WQ, K_WEXP, K_WFN, K_SEQ = tag .. 'wq', tag .. 'wexp', tag .. 'wfn', tag .. 'seq'
end

local function int(x) return string.format('%d', x) end

-- The server's clock in microseconds, and the TIME reply {seconds, micros}
-- for the callers that also need the instant as text (string.format, one C
-- call per text: Lua string building costs more than the commands here).
local function clock()
  local t = redis.call('TIME')
  -- Each text parsed once: arithmetic converts a string once, tonumber() twice.
  local s, us = t[1] + 0, t[2] + 0
  t[1], t[2] = s, us
  return s * 1000000 + us, t
end

local function micros_text(t) return string.format('%d%06d', t[1], t[2]) end

-- The decoded config of the last raw text seen. Equal Lua strings are one
-- interned object, so the check costs a pointer compare; in a Functions
-- library the cache lives as long as the library (with EVAL, one call). It is
-- keyed by content, so budgets and config changes can never see a stale one.
local cfg_raw, cfg_val = nil, nil
local function load_config()
  local raw = redis.call('GET', K_CONFIG)
  if not raw then return {limit = 0, functions = {}} end
  if raw ~= cfg_raw then
    cfg_val = cjson.decode(raw)
    cfg_raw = raw
  end
  return cfg_val
end

local function in_use(fn)
  return (redis.call('HGET', K_COUNTS, fn) or 0) + 0
end

-- BudgetConfig.max_for: the function's cap, never above the limit.
local function max_for(cfg, fn)
  local spec = cfg.functions[fn]
  if spec == nil or spec[2] == nil or spec[2] == cjson.null then return cfg.limit end
  return math.min(spec[2], cfg.limit)
end

local function min_for(cfg, fn)
  local spec = cfg.functions[fn]
  if spec == nil then return 0 end
  return spec[1]
end

local function drop_lease(id)
  local v = redis.call('HGET', K_LEASES, id)
  redis.call('ZREM', K_EXPIRY, id)
  if not v then return end
  redis.call('HDEL', K_LEASES, id)
  local fn = cjson.decode(v).f
  if redis.call('HINCRBY', K_COUNTS, fn, '-1') <= 0 then redis.call('HDEL', K_COUNTS, fn) end
end

local function purge_leases(now_s)
  local ids = redis.call('ZRANGEBYSCORE', K_EXPIRY, '-inf', now_s)
  for i = 1, #ids do drop_lease(ids[i]) end
  return #ids
end

local function drop_waiter(t)
  redis.call('ZREM', K_WQ, t)
  redis.call('ZREM', K_WEXP, t)
  redis.call('HDEL', K_WFN, t)
end

-- Publish a wake-up if waiters other than the caller's ``own`` (0 or 1) exist.
local function wake_others(channel, own)
  if redis.call('ZCARD', K_WQ) - own > 0 then redis.call('PUBLISH', channel, '1') end
end

local function purge_waiters(now_s)
  local ts = redis.call('ZRANGEBYSCORE', K_WEXP, '-inf', now_s)
  for i = 1, #ts do drop_waiter(ts[i]) end
end
"""

# _policy.admit(), transcribed. ``my_rank`` is the caller's place in the queue
# (false: not queued, so every live waiter is ahead); ``queued``: whether the
# queue has anyone at all (an empty queue needs no look at it).
ADMIT = r"""
local function admit(cfg, fn, my_rank, total, queued)
  local mine = in_use(fn)
  if mine >= max_for(cfg, fn) then return false, 'at_function_max' end
  if total >= cfg.limit then return false, 'budget_full' end
  if mine < min_for(cfg, fn) then return true, 'granted_reserve' end
  local reserved = 0
  for name, spec in pairs(cfg.functions) do
    if name ~= fn then
      local short = spec[1] - in_use(name)
      if short > 0 then reserved = reserved + short end
    end
  end
  if total + reserved >= cfg.limit then return false, 'reserved_for_others' end
  if not queued then return true, 'granted' end
  -- total + reserved + ahead >= limit  <=>  ahead >= room
  local room = cfg.limit - total - reserved
  local tickets
  if my_rank == false then
    tickets = redis.call('ZRANGE', K_WQ, '0', '-1')
  elseif my_rank > 0 then
    tickets = redis.call('ZRANGE', K_WQ, '0', int(my_rank - 1))
  else
    tickets = {}
  end
  local ahead = 0
  local eligible = {}
  for i = 1, #tickets do
    local f = redis.call('HGET', K_WFN, tickets[i])
    if f then
      local ok = eligible[f]
      if ok == nil then
        ok = in_use(f) < max_for(cfg, f)
        eligible[f] = ok
      end
      if ok then
        ahead = ahead + 1
        if ahead >= room then return false, 'queued_behind_earlier_waiters' end
      end
    end
  end
  return true, 'granted'
end
"""

# ARGV: function, ttl (µs), payload JSON '{"f":..,"h":..,"m":..}' without its
#       opening brace, wake channel
#       (the part that repeats from call to call: the client packs it once), then
#       lease_id, ticket or '', queue_for (µs), ticket to use when newly queued
#       ('' when not queueing), '1' when this call repeats one whose reply was
#       lost (else '')
# -> {granted, reason, limit, in_use, ticket, reclaimed, acquired_at µs, expires_at µs,
#     µs until the earliest live lease expires (-1: none)}
ACQUIRE = r"""
local fn, payload, channel = ARGV[1], ARGV[3], ARGV[4]
local id, ticket, new_ticket = ARGV[5], ARGV[6], ARGV[8]
local now, t = clock()
local now_s = micros_text(t)
local cfg = load_config()
local reclaimed = purge_leases(now_s)
-- The queue's size, counted before purging: enough to know it may hold someone.
local queued = redis.call('ZCARD', K_WQ) > 0
if queued then
  purge_waiters(now_s)
  queued = redis.call('ZCARD', K_WQ) > 0
end

local total = redis.call('ZCARD', K_EXPIRY)
if ARGV[9] == '1' then
  -- A retry of a call whose reply was lost: the lease may already be ours.
  local existing = redis.call('HGET', K_LEASES, id)
  if existing then
    local exp = tonumber(redis.call('ZSCORE', K_EXPIRY, id))
    local a = cjson.decode(existing).a
    return {1, 'granted', cfg.limit, total - 1, '', reclaimed,
            math.floor(tonumber(a) * 1000000 + 0.5), exp, -1}
  end
end

local my_rank = false
if ticket ~= '' and queued then my_rank = redis.call('ZRANK', K_WQ, ticket) end
local granted, reason = admit(cfg, fn, my_rank, total, queued)

if granted then
  local exp = now + ARGV[2]
  redis.call('HSET', K_LEASES, id, string.format('{"a":%d.%06d,%s', t[1], t[2], payload))
  redis.call('ZADD', K_EXPIRY, int(exp), id)
  redis.call('HINCRBY', K_COUNTS, fn, '1')
  if ticket ~= '' then drop_waiter(ticket) end
  if reclaimed > 0 then wake_others(channel, 0) end
  return {1, reason, cfg.limit, total, '', reclaimed, now, exp, -1}
end

local out = ''
local queue_for = ARGV[7] + 0
if queue_for > 0 then
  if my_rank == false then
    out = new_ticket
    redis.call('ZADD', K_WQ, int(redis.call('INCR', K_SEQ)), out)
  else
    out = ticket
  end
  redis.call('HSET', K_WFN, out, fn)
  redis.call('ZADD', K_WEXP, int(now + queue_for), out)
elseif ticket ~= '' then
  drop_waiter(ticket)
end
if reclaimed > 0 then
  if out ~= '' then wake_others(channel, 1) else wake_others(channel, 0) end
end
-- When the earliest live lease runs out (the waiter sleeps no longer than that).
local soonest = -1
local first = redis.call('ZRANGE', K_EXPIRY, '0', '0', 'WITHSCORES')
if #first == 2 then soonest = math.max(0, tonumber(first[2]) - now) end
return {0, reason, cfg.limit, total, out, reclaimed, 0, 0, soonest}
"""

# ARGV: lease_id, ttl (µs) -> new expires_at µs, or false if the lease is gone
RENEW = r"""
local now = clock()
local exp = redis.call('ZSCORE', K_EXPIRY, ARGV[1])
if not exp then return false end
if tonumber(exp) <= now then
  drop_lease(ARGV[1])
  return false
end
local new = now + tonumber(ARGV[2])
redis.call('ZADD', K_EXPIRY, 'XX', int(new), ARGV[1])
return new
"""

# ARGV: lease_id, wake channel, the lease's function -> 1 if the lease was live
# (the caller names the function, so the common path decodes no JSON)
RELEASE = r"""
local id, fn = ARGV[1], ARGV[3]
local exp = redis.call('ZSCORE', K_EXPIRY, id)
if not exp then return 0 end
redis.call('ZREM', K_EXPIRY, id)
if redis.call('HDEL', K_LEASES, id) == 1 then
  if redis.call('HINCRBY', K_COUNTS, fn, '-1') <= 0 then redis.call('HDEL', K_COUNTS, fn) end
end
if exp + 0 <= clock() then return 0 end
if redis.call('ZCARD', K_WQ) > 0 then redis.call('PUBLISH', ARGV[2], '1') end
return 1
"""

# ARGV: lease_id, the lease's whole new meta JSON -> its expires_at µs, or false if gone.
# The holder merges (it owns the lease); the stored text keeps "m" last, and a
# ',"m":' outside a JSON string cannot come earlier (a quote inside one is \").
ANNOTATE = r"""
local id = ARGV[1]
local exp = redis.call('ZSCORE', K_EXPIRY, id)
if not exp or tonumber(exp) <= clock() then return false end
local v = redis.call('HGET', K_LEASES, id)
if not v then return false end
local at = string.find(v, ',"m":', 1, true)
if not at then return false end
redis.call('HSET', K_LEASES, id, string.sub(v, 1, at) .. '"m":' .. ARGV[2] .. '}')
return tonumber(exp)
"""

# ARGV: ticket, wake channel
CANCEL_WAIT = r"""
if redis.call('ZREM', K_WQ, ARGV[1]) == 1 then
  redis.call('ZREM', K_WEXP, ARGV[1])
  redis.call('HDEL', K_WFN, ARGV[1])
  if redis.call('ZCARD', K_WQ) > 0 then redis.call('PUBLISH', ARGV[2], '1') end
else
  redis.call('ZREM', K_WEXP, ARGV[1])
  redis.call('HDEL', K_WFN, ARGV[1])
end
return 1
"""

# ARGV: config JSON, wake channel
CONFIGURE = r"""
redis.call('SET', K_CONFIG, ARGV[1])
if redis.call('ZCARD', K_WQ) > 0 then redis.call('PUBLISH', ARGV[2], '1') end
return 1
"""

# -> {id1, value1, expires1 µs, id2, ...} of live leases
LEASES = r"""
local _, t = clock()
local now_s = micros_text(t)
local live = redis.call('ZRANGEBYSCORE', K_EXPIRY, '(' .. now_s, '+inf', 'WITHSCORES')
local out = {}
for i = 1, #live, 2 do
  local v = redis.call('HGET', K_LEASES, live[i])
  if v then
    out[#out + 1] = live[i]
    out[#out + 1] = v
    out[#out + 1] = live[i + 1]
  end
end
return out
"""

# -> {config JSON or '', {fn1, n1, fn2, n2, ...} live counts, live waiters}
SNAPSHOT = r"""
local _, t = clock()
local now_s = micros_text(t)
local counts = {}
local raw = redis.call('HGETALL', K_COUNTS)
for i = 1, #raw, 2 do counts[raw[i]] = tonumber(raw[i + 1]) end
-- Expired leases not purged yet still sit in :counts; leave them out (no writes here).
local dead = redis.call('ZRANGEBYSCORE', K_EXPIRY, '-inf', now_s)
for i = 1, #dead do
  local v = redis.call('HGET', K_LEASES, dead[i])
  if v then
    local fn = cjson.decode(v).f
    counts[fn] = (counts[fn] or 0) - 1
  end
end
local flat = {}
for fn, n in pairs(counts) do
  if n > 0 then
    flat[#flat + 1] = fn
    flat[#flat + 1] = n
  end
end
local waiting = redis.call('ZCOUNT', K_WEXP, '(' .. now_s, '+inf')
return {redis.call('GET', K_CONFIG) or '', flat, waiting}
"""

#: Operation name -> Lua body, run with KEYS and ARGV bound.
OPERATIONS = {
    "acquire": ACQUIRE,
    "renew": RENEW,
    "release": RELEASE,
    "annotate": ANNOTATE,
    "cancel_wait": CANCEL_WAIT,
    "configure": CONFIGURE,
    "leases": LEASES,
    "snapshot": SNAPSHOT,
}


def _operation(op: str) -> str:
    return f"local function op_{op}(KEYS, ARGV)\n  bind(KEYS)\n{OPERATIONS[op]}end\n"


#: The version of the whole Lua text: a library or script from another
#: fleetpool version on the same server never stands in for this one.
LUA_VERSION = hashlib.sha1((PRELUDE + ADMIT + "".join(OPERATIONS.values())).encode()).hexdigest()[
    :12
]
LIBRARY_NAME = f"fleetpool_{LUA_VERSION}"


def function_name(op: str) -> str:
    return f"{LIBRARY_NAME}_{op}"


#: Every operation as one Redis Functions library (FUNCTION LOAD, then FCALL).
LIBRARY = (
    f"#!lua name={LIBRARY_NAME}\n"
    + PRELUDE
    + ADMIT
    + "".join(_operation(op) for op in OPERATIONS)
    + "".join(f"redis.register_function('{function_name(op)}', op_{op})\n" for op in OPERATIONS)
)

#: Each operation as a standalone script for servers without Functions (< 7).
#: Redis 5 and 6 replicate a script's effects only when asked, and TIME before
#: a write needs that.
SCRIPTS = {
    op: (
        "if redis.replicate_commands then pcall(redis.replicate_commands) end\n"
        + PRELUDE
        + ADMIT
        + _operation(op)
        + f"return op_{op}(KEYS, ARGV)\n"
    )
    for op in OPERATIONS
}

#: How many ARGV each script takes (the packed command header counts them).
SCRIPT_ARGS = {
    "acquire": 9,
    "renew": 2,
    "release": 3,
    "annotate": 2,
    "cancel_wait": 2,
    "configure": 2,
    "leases": 0,
    "snapshot": 0,
}

_compact = json.JSONEncoder(separators=(",", ":")).encode


def _pack_args(items: Sequence[str | bytes], total: int | None = None) -> bytes:
    """RESP bulk strings for the ``str`` items, after an array header of ``total`` if given.

    ``bytes`` items are arguments packed earlier and are copied as they are.
    The budget's commands are a fixed head (FCALL, function, keys: packed once
    per backend) and a few short arguments, so packing them here is a join, not
    redis-py's general encoder for every argument of every call.
    """
    parts = [] if total is None else [b"*%d\r\n" % total]
    for item in items:
        if isinstance(item, bytes):
            parts.append(item)
        else:
            raw = item.encode()
            parts.append(b"$%d\r\n%s\r\n" % (len(raw), raw))
    return b"".join(parts)


KEY_SUFFIXES = ("config", "leases", "expiry", "counts", "wq", "wexp", "wfn", "seq")


def budget_keys(name: str) -> list[str]:
    """The keys of budget ``name``; they share one hash tag (one Cluster slot)."""
    tag = "{fleetpool:" + name + "}"
    return [f"{tag}:{suffix}" for suffix in KEY_SUFFIXES]


def wake_channel(name: str) -> str:
    return "{fleetpool:" + name + "}:wake"


#: The admission reasons as the server sends them (decoding each reply costs more).
_REASONS = {
    r.encode(): r
    for r in (
        "granted",
        "granted_reserve",
        "at_function_max",
        "budget_full",
        "reserved_for_others",
        "queued_behind_earlier_waiters",
    )
}


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


@dataclass(eq=False)
class _Waits:
    """One thread's wake-up subscription and what its last refusal said."""

    pid: int
    pubsub: PubSub | None = None
    #: time.monotonic() at which the earliest live lease runs out.
    next_expiry: float | None = None


class RedisBackend(BudgetBackend):
    kind = "redis"
    notifies = True

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
        unknown = sorted(set(opts) - ALLOWED_OPTIONS)
        if unknown:
            raise ConfigError(
                f"unknown option(s) {', '.join(unknown)} in redis budget URL; "
                f"accepted: timeout, on_unavailable, {', '.join(sorted(ALLOWED_OPTIONS))}"
            )
        self.timeout = float(timeout)
        self.url = url
        self._redis_py = redis_py
        full_url = url + ("?" + urlencode(opts) if opts else "")
        kwargs: dict[str, Any] = {
            "socket_timeout": self.timeout,
            "socket_connect_timeout": self.timeout,
            # fleetpool bounds the call itself: no retries with backoff inside redis-py.
            "retry": Retry(NoBackoff(), 0),
        }
        if "health_check_interval" not in opts:
            kwargs["health_check_interval"] = 30
        try:
            # No I/O here: redis-py connects on the first command.
            self._client: redis_py.Redis = redis_py.Redis.from_url(full_url, **kwargs)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"invalid redis budget URL {url!r}: {exc}") from exc
        self.keys = budget_keys(name)
        self.channel = wake_channel(name)
        #: RESP header, command, function (or script sha), key count and keys of
        #: each operation, packed once.
        self._packed: dict[str, bytes] = {}
        self._use_functions(True)
        self._conns: list[Any] = []
        self._static: dict[tuple[str, str, float], bytes] = {}
        self._local = threading.local()
        self._waits: list[_Waits] = []
        self._waits_lock = threading.Lock()
        self._orphans: list[tuple[str, str]] = []
        self._orphans_lock = threading.Lock()

    # -- calling the server ------------------------------------------------------

    def _unavailable(self, exc: Exception) -> BudgetUnavailable:
        return BudgetUnavailable(
            f"redis budget {self.name!r} at {self.url} unavailable: {type(exc).__name__}: {exc}"
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
                # container was frozen fails fast; one more try gets a new one.
                if not retried and time.monotonic() - start < self.timeout / 2:
                    retried = True
                    continue
                raise self._unavailable(exc) from exc
            except r.RedisError as exc:
                raise self._unavailable(exc) from exc

    def _connection(self) -> Any:
        """This thread's own connection (made on first use; per process after a fork).

        A budget call is one command and one reply, so a thread keeps one
        connection instead of borrowing from redis-py's pool each time: the
        pool's bookkeeping (a lock, a readiness poll, telemetry) costs about as
        much as a loopback round trip. A connection the server dropped fails
        fast and is reopened by the retry in :meth:`_call`.
        """
        local = self._local
        conn = getattr(local, "conn", None)
        if conn is None or local.conn_pid != os.getpid():
            pool = self._client.connection_pool
            conn = pool.connection_class(**pool.connection_kwargs)
            local.conn, local.conn_pid = conn, os.getpid()
            with self._waits_lock:
                self._conns.append(conn)
        return conn

    def _use_functions(self, functions: bool) -> None:
        """Call operations with FCALL (Redis >= 7) or, without Functions, EVALSHA."""
        self.functions = functions
        for op, source in SCRIPTS.items():
            if functions:
                head = ("FCALL", function_name(op), "1", self.keys[0])
            else:
                head = ("EVALSHA", _sha1(source), "1", self.keys[0])
            self._packed[op] = _pack_args(head, total=len(head) + SCRIPT_ARGS[op])

    def _load(self, conn: Any, op: str, missing: Exception) -> None:
        """Put the Lua code on a server that lacks it (a restart, a flush, a new server).

        With Functions, the library; if the server has no Functions (Redis < 7),
        or they may not be loaded (an ACL without FUNCTION), every later call
        uses EVALSHA instead.
        """
        response_error = self._redis_py.ResponseError
        if self.functions:
            if _is_unknown_command(missing) or type(missing).__name__ == "NoPermissionError":
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
                conn.send_packed_command((self._packed[op] + _pack_args(call_args),))
                try:
                    return conn.read_response()
                except response_error as exc:
                    if not _is_missing_code(exc):
                        raise
                    self._load(conn, op, exc)
                    conn.send_packed_command((self._packed[op] + _pack_args(call_args),))
                    return conn.read_response()
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
        return BudgetConfig(limit=0) if raw is None else BudgetConfig.from_json(raw)

    def try_acquire(self, request: AcquireRequest) -> AcquireResult:
        waits = self._thread_waits()
        if waits is not None and waits.pubsub is not None:
            self._drain(waits)
        elif request.queue_for > 0:
            # Subscribe before the attempt that queues us: no wake-up is missed.
            self._subscribe(self._thread_waits(create=True))
        queueing = request.queue_for > 0
        # Packed here in one piece: the static part once per function, holder
        # and ttl, the rest per call; the final flag differs only on a retry.
        if queueing or request.ticket:
            variable = _pack_args(
                (
                    request.lease_id,
                    request.ticket or "",
                    _micros(request.queue_for),
                    # Only a call that may join the queue needs a fresh ticket.
                    (request.ticket or uuid.uuid4().hex) if queueing else "",
                )
            )
        else:  # the common call: no ticket, no queueing
            variable = _pack_args((request.lease_id,)) + _NO_WAITING
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
            waits = self._thread_waits(create=soonest_us >= 0)
            if waits is not None:
                waits.next_expiry = time.monotonic() + soonest_us / 1e6 if soonest_us >= 0 else None
        return AcquireResult(
            lease=lease,
            reason=_REASONS.get(reason) or _text(reason),
            limit=int(limit),
            in_use=int(in_use),
            ticket=_text(ticket) or None,
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
                payload = _compact(
                    {"f": request.function, "h": request.holder, "m": dict(request.meta)}
                )
            except TypeError as exc:
                raise ConfigError(f"lease meta must be JSON-serialisable: {exc}") from exc
            # (the script prepends the acquired time: it gets the text after the brace)
            packed = _pack_args((request.function, _micros(request.ttl), payload[1:], self.channel))
            if not request.meta:
                if len(self._static) >= 64:
                    self._static.clear()
                self._static[key] = packed
        return packed

    def renew(self, lease: Lease, ttl: float) -> Lease:
        expires = self._script("renew", (lease.id, _micros(ttl)))
        if expires is None:
            raise LeaseLost.of(lease)
        return replace(lease, expires_at=expires / 1e6)

    def annotate(self, lease: Lease, meta: Mapping[str, Any]) -> Lease:
        merged = {**lease.meta, **meta}
        try:
            text = _compact(merged)
        except TypeError as exc:
            raise ConfigError(f"lease meta must be JSON-serialisable: {exc}") from exc
        expires = self._script("annotate", (lease.id, text))
        if expires is None:
            raise LeaseLost.of(lease)
        return replace(lease, meta=merged, expires_at=expires / 1e6)

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
                    id=_text(flat[i]),
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
        config = BudgetConfig.from_json(raw_config) if raw_config else BudgetConfig(limit=0)
        counts = {_text(flat[i]): int(flat[i + 1]) for i in range(0, len(flat), 2)}
        return Snapshot.from_counts(self.name, config, counts, int(waiting))

    # -- waiting ---------------------------------------------------------------------

    def _thread_waits(self, create: bool = False) -> _Waits | None:
        waits: _Waits | None = getattr(self._local, "waits", None)
        if waits is not None and waits.pid != os.getpid():
            waits = None  # inherited across fork: the parent owns that connection
        if waits is None and create:
            waits = _Waits(pid=os.getpid())
            self._local.waits = waits
            with self._waits_lock:
                self._waits.append(waits)
        return waits

    def _subscribe(self, waits: _Waits | None) -> None:
        if waits is None or waits.pubsub is not None:
            return
        pubsub: PubSub = self._client.pubsub()  # type: ignore[no-untyped-call]
        try:
            pubsub.subscribe(self.channel)
            deadline = time.monotonic() + self.timeout
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise self._redis_py.TimeoutError("no SUBSCRIBE confirmation")
                msg = pubsub.get_message(timeout=left)
                if msg is not None and msg.get("type") == "subscribe":
                    break
        except self._redis_py.RedisError:
            # No notification for this thread: the front's jittered poll still works.
            pubsub.close()
            return
        waits.pubsub = pubsub

    def _drain(self, waits: _Waits) -> None:
        pubsub = waits.pubsub
        if pubsub is None:
            return
        try:
            while pubsub.get_message(timeout=0.0) is not None:
                pass
        except self._redis_py.RedisError:
            self._drop_pubsub(waits)

    def _drop_pubsub(self, waits: _Waits) -> None:
        if waits.pubsub is not None:
            try:
                waits.pubsub.close()
            except Exception:  # pragma: no cover - closing a broken socket
                pass
            waits.pubsub = None

    def wait_for_change(self, timeout: float) -> None:
        timeout = max(0.0, timeout)
        waits = self._thread_waits(create=True)
        assert waits is not None
        if waits.next_expiry is not None:
            # An expiring lease frees capacity without anyone calling release.
            timeout = max(0.0, min(timeout, waits.next_expiry - time.monotonic() + 0.001))
            waits.next_expiry = None
        if waits.pubsub is None:
            self._subscribe(waits)
        pubsub = waits.pubsub
        if pubsub is None:
            time.sleep(timeout)
            return
        deadline = time.monotonic() + timeout
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                msg = pubsub.get_message(timeout=left)
                if msg is not None and msg.get("type") == "message":
                    return
        except self._redis_py.RedisError:
            self._drop_pubsub(waits)
            time.sleep(max(0.0, deadline - time.monotonic()))

    def close(self) -> None:
        """Close the wake-up subscriptions and the connections (reconnects lazily)."""
        with self._waits_lock:
            waits, self._waits = self._waits, []
            conns, self._conns = self._conns, []
        for conn in conns:
            # redis-py only shuts the socket down in the process that opened it.
            conn.disconnect()
        for w in waits:
            if w.pid == os.getpid():
                self._drop_pubsub(w)
        self._local = threading.local()
        self._client.close()


#: Ticket '', queue_for 0, new ticket '': the arguments of an acquire that will not wait.
_NO_WAITING = b"$0\r\n\r\n$1\r\n0\r\n$0\r\n\r\n"


def _micros(seconds: float) -> str:
    """Whole microseconds, the unit of every time the Lua code handles."""
    return str(round(seconds * 1_000_000))


def _sha1(source: str) -> str:
    return hashlib.sha1(source.encode()).hexdigest()


def _is_unknown_command(exc: Exception) -> bool:
    return str(exc).lower().startswith("unknown command")


def _is_missing_code(exc: Exception) -> bool:
    """The server lacks our Lua: NOSCRIPT, an unloaded function, or no FCALL at all.

    Redis reports these only as text (``NOSCRIPT`` is its own error type in
    redis-py); the three messages are stable across Redis and Valkey versions.
    """
    if type(exc).__name__ in ("NoScriptError", "NoPermissionError"):
        # NOPERM: an ACL that allows EVALSHA but not FCALL; the EVALSHA path is tried.
        return True
    text = str(exc).lower()
    return text.startswith("function not found") or _is_unknown_command(exc)


__all__ = ["RedisBackend", "budget_keys", "wake_channel"]
