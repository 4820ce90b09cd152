"""Hypothesis: malformed MySQL input raises ProtocolError subclasses only -- never another
exception -- and never makes a decoder, the tracker or a login buffer without bound."""

from __future__ import annotations

from collections.abc import Callable

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fleetpool.errors import ProtocolError
from fleetpool.mysql import auth
from fleetpool.mysql import constants as c
from fleetpool.mysql import messages as m
from fleetpool.mysql.codec import Packet, PacketDecoder, encode_packet, encode_packets, scan_packets
from fleetpool.mysql.login import LOGIN_MAX_PAYLOAD, BackendLogin, Credential, FrontendLogin
from fleetpool.mysql.sql import NO_EFFECT, classify, might_affect_session
from fleetpool.mysql.tracker import ResponseTracker

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
CAPS = c.CLIENT_PROTOCOL_41 | c.CLIENT_SESSION_TRACK


def valid_payloads() -> list[bytes]:
    caps = CAPS | c.CLIENT_SECURE_CONNECTION | c.CLIENT_PLUGIN_AUTH | c.CLIENT_CONNECT_ATTRS
    return [
        m.HandshakeV10("8.0.36", 1, b"n" * 20, caps, auth_plugin="caching_sha2_password").build(),
        m.HandshakeResponse41(
            caps | c.CLIENT_CONNECT_WITH_DB,
            "u",
            b"x" * 20,
            "db",
            "mysql_native_password",
            {"a": "b"},
        ).build(),
        m.OkPacket(1, 2, info="i", session_state=m.SessionStateInfo(schema="s")).build(CAPS),
        m.ErrPacket(1045, "denied").build(),
        m.EofPacket().build(),
        m.ColumnDefinition("c", default=b"d").build(),
        m.PrepareOk(1, 2, 3).build(),
        m.AuthSwitchRequest("client_ed25519", b"z" * 32).build(),
        m.com_stmt_execute(1, [1, "a", None]),
        m.build_text_row([b"a", None]),
    ]


def mutated(base: list[bytes]) -> st.SearchStrategy[bytes]:
    def mutate(data: tuple[int, list[tuple[int, int]], int]) -> bytes:
        index, flips, cut = data
        raw = bytearray(base[index % len(base)])
        for pos, value in flips:
            if raw:
                raw[pos % len(raw)] = value
        return bytes(raw[: cut % (len(raw) + 1)]) if cut % 3 == 0 else bytes(raw)

    return st.tuples(
        st.integers(0, 100),
        st.lists(st.tuples(st.integers(0, 1000), st.integers(0, 255)), max_size=4),
        st.integers(0, 1000),
    ).map(mutate)


PAYLOADS = st.one_of(st.binary(max_size=200), mutated(valid_payloads()))

PARSERS: list[Callable[[bytes], object]] = [
    m.HandshakeV10.parse,
    m.HandshakeResponse41.parse,
    lambda p: m.OkPacket.parse(p, CAPS),
    lambda p: m.OkPacket.parse(p, c.CLIENT_PROTOCOL_41),
    m.ErrPacket.parse,
    m.EofPacket.parse,
    m.ColumnDefinition.parse,
    m.PrepareOk.parse,
    m.SessionStateInfo.parse,
    m.AuthSwitchRequest.parse,
    lambda p: m.ChangeUser.parse(p, CAPS | c.CLIENT_PLUGIN_AUTH | c.CLIENT_CONNECT_ATTRS),
    m.StmtExecute.parse,
    lambda p: m.StmtExecute.parse(p).parameter_types(3),
    lambda p: m.parse_text_row(p, 2),
    m.decode_attributes,
    lambda p: m.parse_status(p, CAPS),
    lambda p: m.read_lenenc_int(p, 0),
]


@FUZZ
@given(PAYLOADS)
def test_parsers_raise_protocol_errors_only(payload: bytes) -> None:
    for parse in PARSERS:
        try:
            parse(payload)
        except ProtocolError:
            pass


@FUZZ
@given(st.lists(st.binary(max_size=80), max_size=8), st.integers(1, 300))
def test_packet_decoder_is_bounded(chunks: list[bytes], limit: int) -> None:
    decoder = PacketDecoder(max_payload=limit, expected_seq=None)
    try:
        for chunk in chunks:
            decoder.receive_data(chunk)
            while isinstance(packet := decoder.next_packet(), Packet):
                assert len(packet.payload) <= limit
            assert decoder.buffered <= limit + 4 + 80
        _offsets, end = scan_packets(b"".join(chunks), 0, limit)
        assert end <= len(b"".join(chunks))
    except ProtocolError:
        pass


COMMANDS = [c.COM_QUERY, c.COM_STMT_PREPARE, c.COM_STMT_EXECUTE, c.COM_STMT_FETCH,
            c.COM_FIELD_LIST, c.COM_STATISTICS, c.COM_PING]  # fmt: skip


def response_packets() -> list[bytes]:
    return [
        b"\x01",
        b"\x02",
        m.ColumnDefinition("a").build(),
        m.EofPacket().build(),
        m.EofPacket(c.SERVER_MORE_RESULTS_EXISTS).build(),
        m.build_text_row([b"x"]),
        m.OkPacket().build(CAPS),
        m.OkPacket(
            status=c.SERVER_MORE_RESULTS_EXISTS | c.SERVER_SESSION_STATE_CHANGED,
            session_state=m.SessionStateInfo(schema="s"),
        ).build(CAPS),
        m.OkPacket(eof_header=True).build(CAPS),
        m.ErrPacket(1, "e").build(),
        m.PrepareOk(1, 1, 1).build(),
        b"\xfbfile",
    ]


@FUZZ
@given(
    st.sampled_from(COMMANDS),
    st.booleans(),
    st.lists(
        st.one_of(st.sampled_from(response_packets()), mutated(response_packets())), max_size=12
    ),
    st.lists(st.integers(0, 2000), max_size=4),
    st.binary(max_size=40),
)
def test_tracker_raises_protocol_errors_only(
    command: int, deprecate: bool, payloads: list[bytes], cuts: list[int], noise: bytes
) -> None:
    caps = CAPS | (c.CLIENT_DEPRECATE_EOF if deprecate else 0)
    data, _ = encode_packets(payloads, 1)
    data += noise
    tracker = ResponseTracker(caps, max_payload=1000)
    tracker.start(command)
    buf = bytearray()
    last = 0
    try:
        for cut in [*sorted(x % (len(data) + 1) for x in cuts), len(data)]:
            buf += data[last:cut]
            last = cut
            del buf[: tracker.feed(buf, 0)]
            assert len(buf) <= 4 + 1000
            if tracker.done or tracker.awaiting_infile:
                break
    except ProtocolError:
        pass


def _users(name: str) -> Credential | None:
    return Credential.from_password("pw") if name == "u" else None


@FUZZ
@given(st.lists(st.one_of(PAYLOADS.map(lambda p: encode_packet(p, 0)), st.binary(max_size=60)),
                max_size=5))  # fmt: skip
def test_backend_login_raises_protocol_errors_only(chunks: list[bytes]) -> None:
    login = BackendLogin("u", "pw", tls="disable")
    try:
        for chunk in chunks:
            login.receive_data(chunk)
            assert login.decoder.buffered <= LOGIN_MAX_PAYLOAD + 4 + 300
            if login.done:
                break
    except ProtocolError:
        pass


def client_packets() -> list[bytes]:
    caps = (c.CLIENT_PROTOCOL_41 | c.CLIENT_SECURE_CONNECTION | c.CLIENT_PLUGIN_AUTH
            | c.CLIENT_CONNECT_ATTRS | c.CLIENT_CONNECT_WITH_DB)  # fmt: skip
    nonce = b"n" * 20
    return [
        encode_packet(
            m.HandshakeResponse41(
                caps, "u", auth.sha2_scramble("pw", nonce), "d", "caching_sha2_password"
            ).build(),
            1,
        ),
        encode_packet(m.HandshakeResponse41(caps, "u", b"", "", "dialog").build(), 1),
        encode_packet(m.build_ssl_request(caps), 1),
        encode_packet(b"\x02", 3),
        encode_packet(b"pw\x00", 3),
    ]


@FUZZ
@given(
    st.lists(
        st.one_of(
            st.sampled_from(client_packets()), mutated(client_packets()), st.binary(max_size=60)
        ),
        max_size=5,
    ),
    st.booleans(),
)
def test_frontend_login_raises_protocol_errors_only(chunks: list[bytes], tls: bool) -> None:
    login = FrontendLogin(_users, connection_id=1, nonce=b"n" * 20, tls_available=tls)
    login.start()
    try:
        for chunk in chunks:
            login.receive_data(chunk)
            assert login.decoder.buffered <= LOGIN_MAX_PAYLOAD + 4 + 300
            if login.done:
                break
            if login._state == "tls":
                login.tls_started()
    except ProtocolError:
        pass


SQL_ALPHABET = st.sampled_from(
    ["SET ", "@", "@@", "x", "'", '"', "`", "\\", ";", "/*", "*/", "/*!", "--", " ", "\n",
     "#", "(", ")", "=", ":=", ",", "GLOBAL ", "SESSION ", "names ", "get_lock(", "use ",
     "CREATE TEMPORARY TABLE ", "1", "é", "TRANSACTION "]
)  # fmt: skip


@FUZZ
@given(st.lists(SQL_ALPHABET, max_size=25).map("".join))
def test_classifier_never_fails_and_prefilter_never_misses(text: str) -> None:
    effect = classify(text)
    raw = text.encode()
    if effect != NO_EFFECT:
        assert might_affect_session(raw, 0, len(raw))
    for setting in effect.settings:
        assert setting.sql()
