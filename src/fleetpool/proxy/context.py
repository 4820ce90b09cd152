# Strategy: the doors between the proxy's parts. The engine-neutral core (pool, queue,
# registry, leases, failover, admin) and each wire-protocol plug-in meet only through
# these small Protocols; the composition root (worker.py) builds the parts and hands
# each one the few collaborators it uses. Nothing here names a protocol message.
#
# Ownership of a server connection: it always has exactly one ``owner`` -- the pool
# while it is idle or doing the proxy's own work, the client it is attached to
# otherwise. It reports to that owner (idle: nothing is pending; closed) and never
# calls into a client or the pool by itself. The owning client gives it back to the
# pool with a verdict from policy.plan_give_back.
from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Protocol


class Cleanup(enum.Enum):
    """Work a server connection does on the pool's behalf before it is reused."""

    ROLLBACK = "rollback"  # end a transaction a vanished client left open
    RESET = "reset"  # undo a pinned client's session state (server_reset_query)
    STATEMENTS = "statements"  # drop the prepared statements cached on it
    INIT = "init"  # run init_query on a new connection
    CHECK = "check"  # health check of an idle connection


class ServerOwner(Protocol):
    def server_idle(self, server: Any) -> None:
        """Nothing is pending on ``server`` (a transaction or the proxy's own work ended)."""

    def server_closed(self, server: Any, reason: str) -> None:
        """``server`` is gone (closed by either side)."""


class ServerConn(Protocol):
    """What the core needs from a server connection of any engine."""

    id: int
    host: str
    port: int
    pid: int
    created: float
    idle_since: float
    last_checked: float
    expires: float
    lease: Any
    generation: int  # the pool's generation when it was opened (see Pool.reconnect)
    owner: ServerOwner | None
    close_reason: str

    @property
    def queries(self) -> int: ...

    alive: bool  # logged in, not closing, trusted: may be reused

    @property
    def busy(self) -> bool: ...

    @property
    def prepared_count(self) -> int: ...

    def close(self, reason: str) -> None: ...

    def cleanup(self, work: Cleanup, now: float) -> None:
        """Start ``work``; the owner hears ``server_idle`` when it is done (or
        ``server_closed`` if it failed and the connection cannot be trusted)."""

    def cancel_running(self) -> Coroutine[Any, Any, None]:
        """Ask the server to cancel what this connection runs (engine-specific)."""


class PoolClient(Protocol):
    """What the pool needs from a client waiting for a server connection."""

    id: int
    waiting: bool
    wait_started: float

    @property
    def closed(self) -> bool: ...

    def attach(self, server: Any, now: float) -> None:
        """``server`` now serves this client (its owner is the client from now on)."""

    def borrow_failed(self, kind: str, message: str, code: str = "", raw: bytes = b"") -> None:
        """No server connection for this client: ``kind`` is ``timeout``, ``cancelled``,
        ``auth``, ``refused`` (the server refused the login for good), ``unavailable``
        or ``shutdown``; ``code`` the engine's own code of the
        server's refusal when there is one, ``raw`` that refusal as the server sent it
        (a login-time client may be given it whole)."""


Spawner = Callable[[Coroutine[Any, Any, Any]], Any]
Connector = Callable[[str, int, float], Awaitable[Any]]
Prober = Callable[[str, int, float], Awaitable[bool]]
