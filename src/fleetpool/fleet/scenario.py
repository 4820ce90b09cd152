"""Scenarios: the database, the budget, the function, the workload and the traffic of a run.

Strategy: a scenario is a TOML file validated against a small schema written as
data (section -> key -> checker), so every error names the file, the line and
the key, and says what is accepted. ``tomllib`` reports syntax errors with a
line; for unknown keys and bad values the key's line is found by scanning the
text for it under its table header. The built-in demo scenario is the same
structure, built in code.
"""

from __future__ import annotations

import math
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .emulator import FunctionConfig
from .strategies import STRATEGIES
from .traffic import Phase, Workload

# "proxy" is opt-in (--strategies ...,proxy): one more strategy would take the
# demo past its ~2 minutes, and it needs PostgreSQL.
DEFAULT_STRATEGIES: tuple[str, ...] = (
    "naive",
    "global",
    "pool",
    "counter",
    "zombie-killer",
    "fleetpool",
)


@dataclass(frozen=True)
class Costs:
    """What each step costs on the virtual clock (``fleetpool simulate --virtual``), seconds.

    The defaults are what the real demo measures on a small machine (see the
    calibration test); a scenario's ``[model]`` table overrides them.
    """

    cold_start: float = 0.15  # a container's start before its global section
    #: Cold starts that proceed at once; more queue (a host starting processes on a
    #: few cores, as the demo's does). 0: no limit, as a serverless platform.
    cold_start_slots: int = 0
    #: A container's first connect also loads the database driver.
    driver_import: float = 0.0
    connect: float = 0.006  # one server session's login
    statement: float = 0.001  # the workload's query, server side
    store: float = 0.003  # one budget or counter store round trip
    hop: float = 0.0005  # a proxy's or Data API's added time per statement
    sample_interval: float = 0.25  # the observer's; longer runs are thinned to ~600 points


def host_costs() -> Costs:
    """The costs of ``fleetpool demo`` on this machine, for the simulator to reproduce it.

    The emulator starts containers as processes on this host's cores, so its cold
    starts (and each container's first driver import) queue behind each other, and a
    store round trip is a transaction on one SQLite file shared by ~100 processes. The
    figures are fitted to the demo's spike on a 2-core machine (the calibration test).
    """
    return Costs(
        cold_start=0.04,
        cold_start_slots=os.cpu_count() or 1,
        driver_import=0.01,
        connect=0.03,
        store=0.05,
    )


@dataclass(frozen=True)
class Scenario:
    name: str = "spike"
    seed: int = 1
    strategies: tuple[str, ...] = DEFAULT_STRATEGIES
    dsn: str | None = None  # None: start an embedded PostgreSQL
    max_connections: int = 10  # embedded server: connections the workload may open
    budget_url: str | None = None  # None: an SQLite file in the run's work dir
    limit: int | None = None  # None: the server's usable limit
    lease_ttl: float = 3.0
    max_wait: float = 10.0
    function: FunctionConfig = field(
        default_factory=lambda: FunctionConfig(
            handler="", timeout=2.5, concurrency=120, idle_lifetime=6.0
        )
    )
    handler: str | None = None  # a user's handler, run as strategy "custom"
    workload: Workload = field(default_factory=Workload)
    phases: tuple[Phase, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    zombie_min_idle: float = 2.0
    pool_size: int = 5
    costs: Costs = field(default_factory=Costs)

    @property
    def duration(self) -> float:
        return math.fsum(p.duration for p in self.phases)


def demo_scenario(
    limit: int = 10, duration: float = 15.0, *, strategies: tuple[str, ...] = DEFAULT_STRATEGIES
) -> Scenario:
    """The default spike: quiet, then ~10x the connection limit of concurrent invocations, quiet.

    Think time 0.5 s and a 0.5 s peak at ``20 * limit`` arrivals per second put
    about ``10 * limit`` invocations in flight at once; draining them through
    ``limit`` connections takes about 5 s: within the 8 s a fleetpool container
    may wait for a lease and the 10 s function timeout. Half of the invocations
    of the quiet start are "slow" (they outlive the timeout), so their containers
    are killed mid-invocation while holding a connection -- the same invocations
    for every strategy. Frozen containers are reclaimed after 5 s idle.
    """
    if duration < 12:
        raise ConfigError(f"--duration must be at least 12 seconds, got {duration}")
    peak_at = 2.0
    spike = Phase(
        "spike", duration, base_rate=2.0, peak_rate=20.0 * limit, peak_at=peak_at, peak_length=0.5
    )
    return Scenario(
        name="spike",
        strategies=strategies,
        max_connections=limit,
        lease_ttl=3.0,
        max_wait=8.0,
        workload=Workload(think=0.5, slow_fraction=0.5, slow_think=60.0, slow_until=peak_at),
        phases=(spike,),
        function=FunctionConfig(
            handler="", timeout=10.0, concurrency=12 * limit, idle_lifetime=5.0
        ),
        costs=host_costs(),
    )


# -- validation ----------------------------------------------------------------

Checker = Callable[[Any], Any]


class _Bad(ValueError):
    pass


def _num(lo: float | None = None, *, positive: bool = False) -> Checker:
    def check(v: Any) -> float:
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise _Bad(f"must be a number, got {v!r}")
        if positive and v <= 0:
            raise _Bad(f"must be > 0, got {v!r}")
        if lo is not None and v < lo:
            raise _Bad(f"must be >= {lo}, got {v!r}")
        return float(v)

    return check


def _int(lo: int) -> Checker:
    def check(v: Any) -> int:
        if isinstance(v, bool) or not isinstance(v, int):
            raise _Bad(f"must be an integer, got {v!r}")
        if v < lo:
            raise _Bad(f"must be >= {lo}, got {v!r}")
        return v

    return check


def _str(choices: tuple[str, ...] = ()) -> Checker:
    def check(v: Any) -> str:
        if not isinstance(v, str) or not v:
            raise _Bad(f"must be a non-empty string, got {v!r}")
        if choices and v not in choices:
            raise _Bad(f"must be one of {', '.join(choices)}; got {v!r}")
        return v

    return check


def _handler(v: Any) -> str:
    s: str = _str()(v)
    if not re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*", s):
        raise _Bad(f"must be 'module:function', got {v!r}")
    return s


def _strategies(v: Any) -> tuple[str, ...]:
    if not isinstance(v, list) or not v or not all(isinstance(x, str) for x in v):
        raise _Bad(f"must be a non-empty list of strategy names, got {v!r}")
    unknown = [x for x in v if x not in STRATEGIES]
    if unknown:
        raise _Bad(f"unknown strategy {unknown[0]!r}; known: {', '.join(STRATEGIES)}")
    return tuple(v)


def _table(v: Any) -> dict[str, Any]:
    if not isinstance(v, dict):
        raise _Bad(f"must be a table, got {v!r}")
    return v


def _rates(v: Any) -> tuple[float, ...]:
    if not isinstance(v, list) or not v:
        raise _Bad(f"must be a non-empty list of rates, got {v!r}")
    return tuple(_num(0)(x) for x in v)


SCHEMA: dict[str, dict[str, Checker]] = {
    "scenario": {"name": _str(), "seed": _int(0), "strategies": _strategies},
    "database": {"dsn": _str(), "max_connections": _int(1)},
    "budget": {
        "url": _str(),
        "limit": _int(1),
        "lease_ttl": _num(positive=True),
        "max_wait": _num(0),
    },
    "function": {
        "name": _str(),
        "handler": _handler,
        "timeout": _num(positive=True),
        "concurrency": _int(1),
        "idle_lifetime": _num(positive=True),
        "kill_signal": _str(("SIGKILL", "SIGTERM")),
        "grace": _num(0),
        "memory_mb": _int(1),
        "init_timeout": _num(positive=True),
        "start_method": _str(("forkserver", "spawn")),
        "linger": lambda v: _bool(v),
    },
    "workload": {
        "think": _num(0),
        "query": _str(),
        "slow_fraction": _num(0),
        "slow_think": _num(0),
        "slow_until": _num(0),
        "zombie_min_idle": _num(0),
        "pool_size": _int(1),
    },
    "model": {
        "cold_start": _num(0),
        "cold_start_slots": _int(0),
        "driver_import": _num(0),
        "connect": _num(0),
        "statement": _num(0),
        "store": _num(0),
        "hop": _num(0),
        "sample_interval": _num(positive=True),
    },
}

PHASE_KEYS: dict[str, dict[str, Checker]] = {
    "steady": {"rate": _num(0)},
    "ramp": {"from_rate": _num(0), "to_rate": _num(0)},
    "spike": {
        "base_rate": _num(0),
        "peak_rate": _num(0),
        "peak_at": _num(0),
        "peak_length": _num(positive=True),
    },
    "step": {"rates": _rates},
    "harness": {"iterations": _int(1), "spread": _num(0)},
}
PHASE_REQUIRED: dict[str, tuple[str, ...]] = {
    "steady": ("rate",),
    "ramp": ("from_rate", "to_rate"),
    "spike": ("base_rate", "peak_rate", "peak_length"),
    "step": ("rates",),
    "harness": ("iterations",),
}


def _bool(v: Any) -> bool:
    if not isinstance(v, bool):
        raise _Bad(f"must be true or false, got {v!r}")
    return v


def locate(text: str, table: str, key: str | None, index: int | None = None) -> int | None:
    """1-based line of ``key`` under ``[table]`` (the ``index``-th ``[[table]]``), or the header."""
    header_re = re.compile(r"^\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
    key_re = re.compile(rf"^\s*\"?{re.escape(key)}\"?\s*=") if key else None
    current: str | None = None
    seen = -1
    header_line: int | None = None
    in_target = False
    for n, line in enumerate(text.splitlines(), 1):
        m = header_re.match(line)
        if m:
            current = m.group(1)
            if current == table:
                seen += 1
                in_target = index is None or seen == index
                if in_target:
                    header_line = n
            else:
                in_target = False
            continue
        if in_target and key_re is not None and key_re.match(line):
            return n
    return header_line


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file; :class:`ConfigError` names the line and the key."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read scenario file {p}: {exc.strerror or exc}") from exc
    return parse_scenario(text, str(p))


def parse_scenario(text: str, source: str = "<scenario>") -> Scenario:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: invalid TOML: {exc}") from exc

    def fail(table: str, key: str | None, msg: str, index: int | None = None) -> ConfigError:
        line = locate(text, table, key, index)
        where = f"{source}:{line}" if line else source
        label = f"[{table}]" if index is None else f"[[{table}]] #{index + 1}"
        what = f"{label} key {key!r}" if key else label
        return ConfigError(f"{where}: {what}: {msg}")

    known = {*SCHEMA, "traffic", "env"}
    for section in data:
        if section not in known:
            raise fail(section, None, f"unknown section; known: {', '.join(sorted(known))}")
    values: dict[str, dict[str, Any]] = {}
    for section, keys in SCHEMA.items():
        raw = data.get(section, {})
        if not isinstance(raw, dict):
            raise fail(section, None, "must be a table")
        out: dict[str, Any] = {}
        for key, value in raw.items():
            if key not in keys:
                raise fail(section, key, f"unknown key; known: {', '.join(keys)}")
            try:
                out[key] = keys[key](value)
            except _Bad as exc:
                raise fail(section, key, str(exc)) from None
        values[section] = out

    env_raw = data.get("env", {})
    if not isinstance(env_raw, dict):
        raise fail("env", None, "must be a table of strings")
    for key, value in env_raw.items():
        if not isinstance(value, str | int | float | bool):
            raise fail("env", key, f"must be a string or number, got {value!r}")
    env = {k: str(v) for k, v in env_raw.items()}

    traffic = data.get("traffic")
    if traffic is None:
        raise fail(
            "traffic",
            None,
            "missing: add at least one [[traffic]] phase "
            "(kind = steady | ramp | spike | step | harness)",
        )
    if not isinstance(traffic, list):
        raise fail("traffic", None, "must be an array of tables: write [[traffic]]")
    phases = [_phase(item, i, fail) for i, item in enumerate(traffic)]

    sc = values["scenario"]
    db = values["database"]
    bu = values["budget"]
    fn = values["function"]
    wl = values["workload"]
    base = Scenario()
    function = replace(base.function, **{k: v for k, v in fn.items() if k != "handler"})
    workload = Workload(
        **{
            k: v
            for k, v in wl.items()
            if k in ("think", "query", "slow_fraction", "slow_think", "slow_until")
        }
    )
    if workload.slow_fraction > 1:
        raise fail("workload", "slow_fraction", "must be between 0 and 1")
    return Scenario(
        name=sc.get("name", "scenario"),
        seed=sc.get("seed", 1),
        strategies=sc.get("strategies", DEFAULT_STRATEGIES),
        dsn=db.get("dsn"),
        max_connections=db.get("max_connections", base.max_connections),
        budget_url=bu.get("url"),
        limit=bu.get("limit"),
        lease_ttl=bu.get("lease_ttl", base.lease_ttl),
        max_wait=bu.get("max_wait", base.max_wait),
        function=function,
        handler=fn.get("handler"),
        workload=workload,
        phases=tuple(phases),
        env=env,
        zombie_min_idle=wl.get("zombie_min_idle", base.zombie_min_idle),
        pool_size=wl.get("pool_size", base.pool_size),
        costs=Costs(**values["model"]),
    )


def _phase(item: Any, i: int, fail: Callable[..., ConfigError]) -> Phase:
    if not isinstance(item, dict):
        raise fail("traffic", None, "must be a table", i)
    kind = item.get("kind")
    if not isinstance(kind, str) or kind not in PHASE_KEYS:
        raise fail("traffic", "kind", f"must be one of {', '.join(PHASE_KEYS)}; got {kind!r}", i)
    allowed = {"kind", "duration", "payload", *PHASE_KEYS[kind]}
    args: dict[str, Any] = {"kind": kind}
    for key, value in item.items():
        if key not in allowed:
            raise fail(
                "traffic",
                key,
                f"unknown key for a {kind} phase; known: {', '.join(sorted(allowed))}",
                i,
            )
        if key == "kind":
            continue
        try:
            if key == "duration":
                args[key] = _num(positive=True)(value)
            elif key == "payload":
                args[key] = _table(value)
            else:
                args[key] = PHASE_KEYS[kind][key](value)
        except _Bad as exc:
            raise fail("traffic", key, str(exc), i) from None
    for key in PHASE_REQUIRED[kind]:
        if key not in args:
            raise fail("traffic", None, f"a {kind} phase needs {key!r}", i)
    if "duration" not in args:
        if kind != "harness":
            raise fail("traffic", None, f"a {kind} phase needs 'duration' (seconds)", i)
        args["duration"] = max(1.0, float(args.get("spread", 0.0)))
    return Phase(**args)
