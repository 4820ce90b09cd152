"""Wake-ups for threads waiting on a Redis budget: one pub/sub subscription per thread.

Strategy: a write that frees capacity while waiters exist PUBLISHes on the
budget's wake channel. Each waiting thread subscribes once, on its own
connection, before its first queued attempt, so a release between the attempt
and the wait is never missed; the subscription is kept for the thread's later
waits and closed with the backend. A message is a hint, never a grant: the
woken thread asks the store again. Without a subscription (an error, an ACL)
the front's jittered poll still works, so every failure here degrades to it.
"""

from __future__ import annotations

import select
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._per_thread import PerThread

if TYPE_CHECKING:
    from redis.client import PubSub


@dataclass(eq=False)
class Waits:
    """One thread's wake-up subscription and what its last refusal said."""

    pubsub: PubSub | None = None
    #: time.monotonic() at which the earliest live lease runs out.
    next_expiry: float | None = None


def _unsubscribe(waits: Waits | Listening) -> None:
    if waits.pubsub is not None:
        try:
            waits.pubsub.close()
        except Exception:  # pragma: no cover - closing a broken socket
            pass
        waits.pubsub = None


class Wakeups:
    """The wake-up subscriptions of one budget's threads."""

    def __init__(self, client: Any, channel: str, timeout: float, redis_py: Any) -> None:
        self._client = client
        self._channel = channel
        self._timeout = timeout
        self._error = redis_py.RedisError
        self._timeout_error = redis_py.TimeoutError
        self._threads = PerThread(Waits, _unsubscribe, close_with_thread=False)

    def use(self, client: Any) -> None:
        """Subscribe through ``client`` from now on (a Cluster redirect); the
        threads' subscriptions through the old one are closed."""
        self._client = client
        self._threads.close_all(timeout=0.0)

    def before_attempt(self, queueing: bool) -> None:
        """Drop wake-ups already queued (the attempt sees their effect); subscribe
        before the first attempt that may queue, so no wake-up is missed."""
        slot = self._threads.peek()
        if slot is not None and slot.value.pubsub is not None:
            self._drain(slot.value)
        elif queueing:
            self._subscribe(self._threads.get().value)

    def refused(self, soonest_us: int) -> None:
        """Remember when the earliest live lease runs out (-1: none), to wake then."""
        if soonest_us >= 0:
            self._threads.get().value.next_expiry = time.monotonic() + soonest_us / 1e6
        elif (slot := self._threads.peek()) is not None:
            slot.value.next_expiry = None

    def wait(self, timeout: float) -> None:
        """Sleep until a wake-up, the earliest lease's expiry or ``timeout``."""
        timeout = max(0.0, timeout)
        waits = self._threads.get().value
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
        except self._error:
            _unsubscribe(waits)
            time.sleep(max(0.0, deadline - time.monotonic()))

    def close(self) -> None:
        """Close every thread's subscription (threads subscribe again when they wait)."""
        self._threads.close_all(timeout=0.0)

    def _subscribe(self, waits: Waits) -> None:
        if waits.pubsub is not None:
            return
        pubsub: PubSub = self._client.pubsub()
        try:
            pubsub.subscribe(self._channel)
            deadline = time.monotonic() + self._timeout
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise self._timeout_error("no SUBSCRIBE confirmation")
                msg = pubsub.get_message(timeout=left)
                if msg is not None and msg.get("type") == "subscribe":
                    break
        except self._error:
            # No notification for this thread: the front's jittered poll still works.
            pubsub.close()
            return
        waits.pubsub = pubsub

    def _drain(self, waits: Waits) -> None:
        pubsub = waits.pubsub
        if pubsub is None:
            return
        try:
            while pubsub.get_message(timeout=0.0) is not None:
                pass
        except self._error:
            _unsubscribe(waits)


@dataclass(eq=False)
class Listening:
    """One thread's subscription to the contention channel (fair handoff)."""

    pubsub: PubSub | None = None
    #: time.monotonic() before which no new subscription is tried (after a failure).
    retry_at: float = 0.0
    #: A poll object on the subscription's socket (``sock``): one system call says
    #: "nothing new".
    poller: Any = None
    sock: Any = None


def _stop_listening(listening: Listening) -> None:
    _unsubscribe(listening)
    listening.poller = listening.sock = None


#: Seconds without a new subscription after one failed (a check-in must not
#: wait for a connect timeout each time the store is down).
RETRY_AFTER = 30.0


class Contention:
    """Whether a waiter published on the contention channel since this thread last looked.

    A holder subscribes once (the SUBSCRIBE is sent, its confirmation read
    later with the messages) and then looks at check-in with a zero-timeout
    read of the socket: no round trip, so a clean invocation with nobody
    waiting makes no store call. Messages wait in the socket while the
    container is busy or frozen.
    """

    def __init__(self, client: Any, channel: str, redis_py: Any) -> None:
        self._client = client
        self._channel = channel
        self._error = redis_py.RedisError
        self._threads = PerThread(Listening, _stop_listening, close_with_thread=False)

    def use(self, client: Any) -> None:
        """Listen through ``client`` from now on (a Cluster redirect)."""
        self._client = client
        self._threads.close_all(timeout=0.0)

    def heard(self) -> bool:
        listening = self._threads.get().value
        pubsub = listening.pubsub
        if pubsub is None:
            now = time.monotonic()
            if now < listening.retry_at:
                return False
            pubsub = self._client.pubsub()
            try:
                pubsub.subscribe(self._channel)
            except self._error:
                pubsub.close()
                listening.retry_at = now + RETRY_AFTER
                return False
            listening.pubsub = pubsub
            return False
        poller = listening.poller
        sock = getattr(pubsub.connection, "_sock", None)
        if poller is None or sock is not listening.sock:  # first look, or reconnected
            listening.poller = listening.sock = None
            if sock is not None:
                listening.sock = sock
                # Poll the socket itself: redis-py's get_message costs ~10 us even
                # when nothing came. Whatever the parser holds buffered was read
                # together with socket data, and the loop below drains it all.
                poller = listening.poller = select.poll()
                poller.register(sock.fileno(), select.POLLIN | select.POLLERR | select.POLLHUP)
        elif not poller.poll(0):
            return False
        heard = False
        try:
            while (msg := pubsub.get_message(timeout=0.0)) is not None:
                heard = heard or msg.get("type") == "message"
        except self._error:
            _stop_listening(listening)
            listening.retry_at = time.monotonic() + RETRY_AFTER
        return heard

    def close(self) -> None:
        self._threads.close_all(timeout=0.0)


__all__ = ["Contention", "Listening", "Waits", "Wakeups"]
