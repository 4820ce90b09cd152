"""rewrite_oks: the OK packets a client without session tracking gets, as the server
itself would have written them for that client (MySQL and MariaDB differ)."""

from __future__ import annotations

import pytest

from fleetpool.mysql import constants as c
from fleetpool.mysql import messages as m
from fleetpool.mysql.codec import HEADER_SIZE, encode_packet
from fleetpool.mysql.relay import rewrite_oks

TRACKING = c.CLIENT_PROTOCOL_41 | c.CLIENT_SESSION_TRACK
PLAIN_CLIENT = c.CLIENT_PROTOCOL_41
INFO = "Records: 3  Duplicates: 0  Warnings: 0"


def rewritten(server_caps: int, ok: m.OkPacket) -> bytes:
    payload = ok.build(server_caps)
    data = encode_packet(payload, 1)
    out = rewrite_oks(data, [(HEADER_SIZE, len(data))], server_caps, PLAIN_CLIENT)
    assert out[3] == 1  # the sequence id is kept
    return out[HEADER_SIZE:]


@pytest.mark.parametrize(
    ("flavour", "server_caps", "info_wire"),
    [
        # MySQL writes the info as the rest of the packet for such a client...
        ("mysql", TRACKING | c.CLIENT_MYSQL, INFO.encode()),
        # ...MariaDB length-prefixes it for every client.
        ("mariadb", TRACKING, m.lenenc_str(INFO)),
    ],
)
def test_info_as_the_server_writes_it(flavour: str, server_caps: int, info_wire: bytes) -> None:
    state = m.SessionStateInfo(schema="shop")
    status = c.SERVER_STATUS_AUTOCOMMIT | c.SERVER_STATUS_IN_TRANS
    ok = m.OkPacket(3, 7, status, 1, INFO, state)
    head = m.OkPacket(3, 7, status, 1).build(PLAIN_CLIENT)  # no SESSION_STATE_CHANGED
    assert rewritten(server_caps, ok) == head + info_wire


def test_mariadb_ok_without_state_is_unchanged() -> None:
    ok = m.OkPacket(3, 0, c.SERVER_STATUS_AUTOCOMMIT, 0, INFO)
    assert rewritten(TRACKING, ok) == ok.build(TRACKING)
