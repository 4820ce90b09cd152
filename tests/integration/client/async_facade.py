"""A blocking face on ``AsyncDatabase``, so the client's contract tests run against both.

The tests are written once, in blocking style (``with db.connection() as conn:
rows(conn, ...)``). For the async flavour each call is sent to an event loop
running in a thread of its own and waited for; objects coming back (the
connection, cursors) are wrapped the same way, so ``conn.execute(...)`` or
``cur.fetchall()`` run the driver's coroutines. All coroutines of one facade
run in one ``contextvars.Context``: as the blocking Database's scopes belong to
one thread, these belong to one logical caller (nested scopes share a checkout).
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import fleetpool

#: Seconds any one bridged call may take (bounds every test step).
CALL_TIMEOUT = 60.0
_PLAIN = (type(None), bool, int, float, str, bytes, list, tuple, dict)


class Loop:
    """An event loop in a daemon thread, shared by the facades of one test."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Any, context: contextvars.Context) -> Any:
        done: Any = asyncio.run_coroutine_threadsafe(self._in(coro, context), self.loop)
        return done.result(CALL_TIMEOUT)

    async def _in(self, coro: Any, context: contextvars.Context) -> Any:
        return await asyncio.get_running_loop().create_task(coro, context=context)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


class Proxy:
    """A driver object whose coroutine methods are run to completion on the loop."""

    def __init__(self, facade: SyncFacade, target: Any) -> None:
        object.__setattr__(self, "_facade", facade)
        object.__setattr__(self, "_target", target)

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._target, name)
        if not callable(value) or inspect.isclass(value):
            return value

        def call(*args: Any, **kwargs: Any) -> Any:
            return self._facade.wrap(value(*args, **kwargs))

        return call

    def __setattr__(self, name: str, value: Any) -> None:
        setter = getattr(self._target, f"set_{name}", None)
        if setter is not None and inspect.iscoroutinefunction(setter):
            self._facade.run(setter(value))
        else:
            setattr(self._target, name, value)

    def __enter__(self) -> Any:
        return self._facade.wrap(self._target.__aenter__())

    def __exit__(self, *exc: Any) -> None:
        self._facade.run(self._target.__aexit__(*exc))


class SyncFacade:
    """``Database``'s blocking surface over an ``AsyncDatabase``."""

    def __init__(self, loop: Loop, dsn: str, **kwargs: Any) -> None:
        self._loop = loop
        self._context = contextvars.copy_context()
        self.adb = fleetpool.AsyncDatabase(dsn, **kwargs)
        self._proxies: dict[int, Proxy] = {}

    def run(self, coro: Any) -> Any:
        return self._loop.run(coro, self._context)

    def wrap(self, value: Any) -> Any:
        if inspect.isawaitable(value):
            value = self.run(_awaited(value))
        if isinstance(value, _PLAIN):
            return value
        proxy = self._proxies.get(id(value))
        if proxy is None or proxy._target is not value:
            proxy = self._proxies[id(value)] = Proxy(self, value)
        return proxy

    def __getattr__(self, name: str) -> Any:
        return getattr(self.adb, name)

    @property
    def _conn(self) -> Any:
        # Tests reach for the connection outside a checkout (to leave it mid-transaction).
        conn = self.adb._conn
        return None if conn is None else self.wrap(conn)

    @contextmanager
    def _scope(self, manager: Any) -> Iterator[Any]:
        conn = self.run(manager.__aenter__())
        try:
            yield self.wrap(conn)
        except BaseException as exc:
            if not self.run(manager.__aexit__(type(exc), exc, exc.__traceback__)):
                raise
        else:
            self.run(manager.__aexit__(None, None, None))

    def connection(self) -> Any:
        return self._scope(self.adb.connection())

    def transaction(self) -> Any:
        return self._scope(self.adb.transaction())

    def handler(self, fn: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
        async def body(event: Any, context: Any) -> Any:
            # The blocking body calls back into this facade: run it off the loop.
            return await asyncio.to_thread(fn, event, context)

        wrapped = self.adb.handler(body)
        return lambda event, context: self.run(wrapped(event, context))

    def close(self) -> None:
        self.run(self.adb.aclose())


async def _awaited(value: Any) -> Any:
    return await value


__all__ = ["Loop", "SyncFacade"]
