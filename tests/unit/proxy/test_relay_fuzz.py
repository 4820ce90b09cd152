"""Random client messages through the relay (fake transports): only clean failures."""

from __future__ import annotations

import asyncio

from hypothesis import given, settings
from hypothesis import strategies as st

from fleetpool.pg.codec import encode_message
from fleetpool.proxy import Proxy, ProxyConfig, parse_upstream
from fleetpool.proxy.client import ClientConnection
from fleetpool.proxy.server import ServerConnection
from tests.fake_transport import FakeTransport

messages = st.builds(
    lambda t, body: encode_message(t, body),
    st.sampled_from([b"Q", b"P", b"B", b"D", b"C", b"E", b"S", b"H", b"d", b"c"]),
    st.one_of(
        st.binary(max_size=40),
        st.builds(
            lambda n, q: n + b"\x00" + q + b"\x00\x00\x00",
            st.sampled_from([b"", b"s1", b"s2"]),
            st.sampled_from([b"select 1", b"SET x = 1", b"DEALLOCATE s1"]),
        ),
        st.builds(
            lambda k, n: k + n + b"\x00",
            st.sampled_from([b"S", b"P"]),
            st.sampled_from([b"", b"s1"]),
        ),
    ),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(messages, max_size=12), st.integers(min_value=1, max_value=50))
def test_relay_survives_random_messages(msgs: list[bytes], chunk: int) -> None:
    async def main() -> None:
        cfg = ProxyConfig(
            upstream=parse_upstream("postgresql://u@127.0.0.1:1/db"), listen=("127.0.0.1", 0)
        )
        proxy = Proxy(cfg)
        server = ServerConnection(proxy, "127.0.0.1", 1)
        server.transport = FakeTransport()  # type: ignore[assignment]
        server.state = "ready"
        proxy.pool.servers.add(server)
        proxy.pool.idle.append(server)
        client = ClientConnection(proxy)
        client.transport = FakeTransport()  # type: ignore[assignment]
        client.state = "ready"
        wire = b"".join(msgs)
        for i in range(0, len(wire), chunk):
            client.data_received(wire[i : i + chunk])
        # Either still relaying, or closed with an ErrorResponse: never an exception.
        assert client.state in ("ready", "closed")

    asyncio.run(main())
