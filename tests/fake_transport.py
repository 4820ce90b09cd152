"""Stand-ins for sockets: the relay's unit tests drive the proxy's real protocol
objects (client and server connections, pool, registry) with transports that record
writes -- no sockets, no event-loop I/O, no whole Proxy."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any


class FakeTransport:
    def __init__(self) -> None:
        self.out: list[bytes] = []
        self.closed = False
        self.paused = False

    def write(self, data: bytes) -> None:
        self.out.append(bytes(data))  # a copy: the proxy may reuse its buffer

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 1)

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False

    def close(self) -> None:
        self.closed = True

    def sent(self) -> bytes:
        """Everything written since the last call."""
        data = b"".join(self.out)
        self.out.clear()
        return data


@dataclass
class FakeWorker:
    """The parts a PostgreSQL client connection is handed, wired as the worker does."""

    services: Any
    engine: Any
    servers: list[Any] = field(default_factory=list)

    @property
    def pool(self) -> Any:
        return self.services.router.default

    @property
    def stats(self) -> Any:
        return self.services.stats

    def client(self) -> Any:
        client = self.engine.frontend(self.services)()
        client.connection_made(FakeTransport())
        client._cancel_login_timer()
        # Logged in, as the startup phase would leave it.
        from fleetpool.pg.relay import ClientState

        client.user = client.database = "u"
        client.pg = ClientState({"application_name": ""}, self.engine.interner, 1 << 20)
        client.state = "ready"
        client._startup = None
        return client

    def server(self) -> Any:
        from fleetpool.proxy.pg.backend import BackendConnection

        server = BackendConnection(
            "127.0.0.1",
            1,
            user="u",
            password="",
            startup={},
            stats=self.stats,
            max_message_size=1 << 20,
            reset_query="DISCARD ALL",
        )
        server.transport = FakeTransport()
        server.state = "ready"
        server.alive = True
        server.ready.set_result(None)
        # Its settings as if the proxy had already applied a default client's.
        server.pg.settings.applied["application_name"] = (
            "SELECT pg_catalog.set_config('application_name', '', false)"
        )
        self.pool.servers.add(server)
        self.pool.release(server)
        self.servers.append(server)
        return server


def _worker(
    kind: type[FakeWorker], url: str, engine_class: Any, servers: int, settings: dict[str, Any]
) -> FakeWorker:
    """A worker for ``url``'s engine, with no server to connect to, and ``servers``
    server connections idle in its pool."""
    from fleetpool.proxy import ProxyConfig, parse_upstream
    from fleetpool.proxy.console import Console
    from fleetpool.proxy.registry import Registry
    from fleetpool.proxy.router import Router
    from fleetpool.proxy.services import Lifecycle, Services, Users
    from fleetpool.proxy.stats import Stats

    cfg = ProxyConfig(
        upstream=parse_upstream(url),
        listen=("127.0.0.1", 0),
        connection_borrow_timeout=60,
        **settings,
    )
    stats = Stats()
    engine = engine_class(cfg, stats)

    async def no_connect(host: str, port: int, timeout: float) -> Any:
        raise OSError("no server in unit tests")

    router = Router(
        cfg,
        servers,
        lambda up, variant: no_connect,
        stats,
        lambda: {"u": "pw"},
        default_variant=engine.default_variant,
    )
    services = Services(
        cfg=cfg,
        router=router,
        registry=Registry(0, 1),
        stats=stats,
        spawn=lambda coro: coro.close(),
        users=Users({"u": "pw"}),
        console=Console(None, None),  # type: ignore[arg-type]
        lifecycle=Lifecycle(),
    )
    worker = kind(services, engine)
    for _ in range(servers):
        worker.server()
    return worker


def fake_worker(servers: int = 2, **settings: Any) -> FakeWorker:
    """Build inside a running event loop (connections create futures)."""
    from fleetpool.proxy.pg import PostgresEngine

    return _worker(FakeWorker, "postgresql://u@127.0.0.1:1/db", PostgresEngine, servers, settings)


@dataclass
class FakeMySQLWorker(FakeWorker):
    """The MySQL plug-in's parts, wired as the worker does, with fake transports."""

    def client(self, capabilities: int | None = None) -> Any:
        """A client logged in (as the login phase leaves one); by default with the flags
        the proxy itself logs in to servers with."""
        from fleetpool.mysql.login import BACKEND_CAPABILITIES
        from fleetpool.mysql.relay import ClientState

        caps = BACKEND_CAPABILITIES if capabilities is None else capabilities
        client = self.engine.frontend(self.services)()
        client.connection_made(FakeTransport())
        client._login.finished()
        client.user = "u"
        client.database = "db"
        client.caps = caps
        client.tracks_session = True
        client.my = ClientState(caps, self.engine.interner, {})
        client.my.database = "db"
        client.my.key = self.engine.interner.key(client.my.settings, client.my.database)
        client.state = "ready"
        client.transport.sent()  # the greeting the login phase wrote
        return client

    def server(self, capabilities: int | None = None) -> Any:
        """A server connection logged in, tracking its session, idle in the pool."""
        from fleetpool.mysql.constants import SERVER_STATUS_AUTOCOMMIT
        from fleetpool.mysql.login import BACKEND_CAPABILITIES
        from fleetpool.mysql.relay import ServerState
        from fleetpool.proxy.mysql.backend import ServerConnection

        caps = BACKEND_CAPABILITIES if capabilities is None else capabilities
        server = ServerConnection("127.0.0.1", 1, None, stats=self.stats)  # type: ignore[arg-type]
        server.transport = FakeTransport()
        server.my = ServerState(caps, SERVER_STATUS_AUTOCOMMIT, "db", self.engine.collation)
        server.state = "ready"
        server.alive = True
        server.ready.set_result(None)
        self.pool.servers.add(server)
        self.pool.release(server)
        self.servers.append(server)
        return server


def fake_mysql_worker(servers: int = 2, **settings: Any) -> FakeMySQLWorker:
    """Build inside a running event loop (connections create futures)."""
    from fleetpool.proxy.mysql import MySQLEngine

    worker = _worker(FakeMySQLWorker, "mysql://u@127.0.0.1:1/db", MySQLEngine, servers, settings)
    assert isinstance(worker, FakeMySQLWorker)
    return worker


def run(test: Callable[[FakeWorker], Coroutine[Any, Any, None]], **kwargs: Any) -> None:
    import asyncio

    async def main() -> None:
        await test(fake_worker(**kwargs))

    asyncio.run(main())
