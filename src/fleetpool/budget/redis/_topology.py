"""Which Redis server holds the budget: one server, a Cluster, or Sentinel's primary.

Strategy: the backend sends each operation as one packed command on a private
connection (see :mod:`._wire`); all it needs from the topology is a redis-py
client for the server that owns the budget's keys, and a way to look again
after a redirect or a failover. The budget's keys share one hash tag, so in a
Cluster they live in one slot on one primary: the client is that primary's,
and a ``MOVED``/``ASK`` reply or a lost primary makes the backend ask the
cluster for its slot map again (redis-py's cluster client does the discovery).
With Sentinel, redis-py's managed connections ask the sentinels for the
current primary each time they connect, so a reconnect follows a failover.

URLs:

* ``redis://host:port/db``, ``rediss://`` -- one server.
* ``redis+cluster://host:port[,host:port...]`` (``rediss+cluster://``) -- any
  nodes of a Redis Cluster (database 0 only, as Cluster has no others).
* ``redis+sentinel://host:port[,host:port...]/service[/db]``
  (``rediss+sentinel://``) -- the sentinels and the name of the monitored primary.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote, urlencode, urlsplit

from ...errors import ConfigError
from ...redact import redact_url

CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")
SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel")
SCHEMES = ("redis", "rediss", *CLUSTER_SCHEMES, *SENTINEL_SCHEMES)


def is_redirect(exc: Exception) -> bool:
    """A Cluster node says the slot lives elsewhere (resharding, failover)."""
    text = str(exc)
    return text.startswith(("MOVED ", "ASK ")) or type(exc).__name__ in ("MovedError", "AskError")


def _hosts(netloc: str, url: str, default_port: int) -> list[tuple[str, int]]:
    hosts: list[tuple[str, int]] = []
    for item in netloc.rpartition("@")[2].split(","):
        host, _, port = item.strip().rpartition(":")
        if not host:
            host, port = port, str(default_port)
        try:
            hosts.append((host.strip("[]"), int(port)))
        except ValueError:
            raise ConfigError(
                f"bad host:port {item!r} in redis budget URL {redact_url(url)!r}"
            ) from None
    return hosts


def _credentials(netloc: str) -> dict[str, str]:
    userinfo = netloc.rpartition("@")[0]
    if not userinfo:
        return {}
    user, _, password = userinfo.partition(":")
    out = {"password": unquote(password)} if password else {}
    if user:
        out["username"] = unquote(user)
    return out


#: URL options that redis-py takes as numbers (a redis:// URL is parsed by redis-py itself).
_NUMBERS = {"health_check_interval": float, "max_connections": int}
_FLAGS = ("ssl_check_hostname",)


def _typed(options: dict[str, str]) -> dict[str, Any]:
    """The URL's options as keyword arguments for the Cluster and Sentinel clients."""
    out: dict[str, Any] = {}
    for key, value in options.items():
        if key in _NUMBERS:
            try:
                out[key] = _NUMBERS[key](value)
            except ValueError:
                raise ConfigError(f"{key} must be a number, got {value!r}") from None
        elif key in _FLAGS:
            out[key] = value.lower() in ("1", "true", "yes", "on")
        else:
            out[key] = value
    return out


class Topology:
    """The client for the budget's server; :meth:`rediscover` looks again."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def rediscover(self) -> Any:
        return self.client

    #: Whether a connection error may mean the server moved (worth asking again).
    follows_failover = False


class ClusterTopology(Topology):
    follows_failover = True

    def __init__(self, cluster: Any, key: str) -> None:
        self._cluster = cluster
        self._key = key
        super().__init__(self._node_client())

    def _node_client(self) -> Any:
        node = self._cluster.get_node_from_key(self._key)
        if node is None or node.redis_connection is None:  # pragma: no cover - partial map
            raise ConfigError(f"the Redis Cluster has no node for the budget key {self._key!r}")
        return node.redis_connection

    def rediscover(self) -> Any:
        self._cluster.nodes_manager.initialize()
        self.client = self._node_client()
        return self.client


def open_topology(
    url: str, key: str, options: dict[str, str], kwargs: dict[str, Any], redis_py: Any
) -> Topology:
    """Build the client(s) for ``url`` (no I/O for one server or Sentinel; a Cluster
    reads its slot map now)."""
    parts = urlsplit(url)
    scheme = parts.scheme
    if scheme in ("redis", "rediss"):
        query = "?" + urlencode(options) if options else ""
        return Topology(redis_py.Redis.from_url(url + query, **kwargs))
    tls = scheme.startswith("rediss")
    extra: dict[str, Any] = {**kwargs, **_typed(options), **_credentials(parts.netloc)}
    if tls:
        extra["ssl"] = True
    if scheme in CLUSTER_SCHEMES:
        from redis.cluster import ClusterNode, RedisCluster

        if parts.path.strip("/") not in ("", "0"):
            raise ConfigError(f"a Redis Cluster has only database 0; got {redact_url(url)!r}")
        nodes = [ClusterNode(h, p) for h, p in _hosts(parts.netloc, url, 6379)]  # type: ignore[no-untyped-call]
        extra.pop("retry", None)  # the cluster client's own retries stay off below
        try:
            cluster = RedisCluster(startup_nodes=nodes, cluster_error_retry_attempts=0, **extra)
        except redis_py.RedisError as exc:
            from ...errors import BudgetUnavailable

            raise BudgetUnavailable(
                f"redis cluster at {redact_url(url)} unavailable: {type(exc).__name__}: {exc}"
            ) from exc
        return ClusterTopology(cluster, key)
    # Sentinel
    from redis.sentinel import Sentinel

    path = [p for p in parts.path.split("/") if p]
    if not path:
        raise ConfigError(
            f"redis sentinel URL {redact_url(url)!r} needs the primary's service name: "
            "redis+sentinel://host:26379,host2:26379/mymaster/0"
        )
    db = 0
    if len(path) > 1:
        try:
            db = int(path[1])
        except ValueError:
            raise ConfigError(f"bad database number in {redact_url(url)!r}") from None
    timeouts = {k: kwargs[k] for k in ("socket_timeout", "socket_connect_timeout") if k in kwargs}
    sentinel = Sentinel(  # type: ignore[no-untyped-call]
        _hosts(parts.netloc, url, 26379), sentinel_kwargs=dict(timeouts), **timeouts
    )
    return Topology(sentinel.master_for(path[0], db=db, **extra))  # type: ignore[no-untyped-call]


__all__ = [
    "CLUSTER_SCHEMES",
    "SCHEMES",
    "SENTINEL_SCHEMES",
    "ClusterTopology",
    "Topology",
    "is_redirect",
    "open_topology",
]
