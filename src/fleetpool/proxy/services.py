# Strategy: the collaborators a client connection uses, handed in by the composition
# root (worker.py) as one typed bundle. Nothing here points back at the worker: a
# client reaches the pool, the registry, the stats and the admin console through these
# fields and no further.
from __future__ import annotations

import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .config import ProxyConfig
from .console import Console
from .context import Spawner
from .registry import Registry
from .router import Router
from .stats import Stats
from .throttle import LoginThrottle, ThrottleRules


@dataclass
class Lifecycle:
    """The worker's state that clients must respect."""

    draining: bool = False


@dataclass
class Users:
    """Who may log in: user name -> password, md5 hash or SCRAM verifier."""

    secrets: dict[str, str]
    token_secret: tuple[str, ...] = ()  # the current secret, and the previous one
    _cache: dict[tuple[str, str], Any] = field(default_factory=dict)

    def secret(self, user: str) -> str | None:
        return self.secrets.get(user)

    def cached(self, key: tuple[str, str], make: Callable[[], Any]) -> Any:
        """A derived value (a SCRAM verifier: 4096 PBKDF2 rounds) computed once."""
        found = self._cache.get(key)
        if found is None:
            if len(self._cache) > 10_000:
                self._cache.clear()
            found = self._cache[key] = make()
        return found


@dataclass
class Services:
    cfg: ProxyConfig
    router: Router
    registry: Registry
    stats: Stats
    spawn: Spawner
    users: Users
    console: Console
    lifecycle: Lifecycle
    client_tls: ssl.SSLContext | None = None
    # tls-server-end-point data of the proxy's certificate (SCRAM-SHA-256-PLUS over TLS)
    channel_binding: bytes | None = None
    throttle: LoginThrottle = field(default_factory=lambda: LoginThrottle(ThrottleRules()))
