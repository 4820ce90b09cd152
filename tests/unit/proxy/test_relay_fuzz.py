"""Random client messages through the relay (fake transports): only clean failures."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from fleetpool.pg.codec import encode_message
from tests.fake_transport import FakeWorker, run

messages = st.builds(
    lambda t, body: encode_message(t, body),
    st.sampled_from([b"Q", b"P", b"B", b"D", b"C", b"E", b"S", b"H", b"d", b"c"]),
    st.one_of(
        st.binary(max_size=40),
        st.builds(
            lambda n, q: n + b"\x00" + q + b"\x00\x00\x00",
            st.sampled_from([b"", b"s1", b"s2"]),
            st.sampled_from([b"select 1", b"SET x = 1", b"DEALLOCATE s1", b"LISTEN a"]),
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
    async def check(w: FakeWorker) -> None:
        client = w.client()
        wire = b"".join(msgs)
        for i in range(0, len(wire), chunk):
            client.data_received(wire[i : i + chunk])
        # Either still relaying, or closed with an ErrorResponse: never an exception.
        assert client.state in ("ready", "closed")
        sent = client.transport.sent()
        assert b"CXX000" not in sent  # a bug in the proxy, not a bad client

    run(check, servers=1)
