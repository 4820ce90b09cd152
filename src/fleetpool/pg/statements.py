# Strategy: protocol-level prepared statements without pinning (PgBouncer's
# prepare.c, done as two small sans-I/O maps).
#
# * ClientStatements: per client, the client's statement names -> (server-side name,
#   the Parse to send, what the statement does to the session). The server-side name
#   is ``fp_<hash of text and parameter types>``: the same statement prepared by any
#   client on any server connection has the same name, so it is prepared once per
#   server connection and then shared.
# * ServerStatements: per server connection, which server-side names exist there
#   (True), may or may not exist (False: a batch that prepared them failed, so the next
#   user re-prepares behind a Close), and which client's unnamed statement the
#   connection currently holds.
from __future__ import annotations

import hashlib
from typing import NamedTuple

from .sql import NOTHING, Analysis


def server_name(sql: bytes, types: bytes) -> bytes:
    """Server-side name of a prepared statement: same text and types, same name."""
    return b"fp_" + hashlib.blake2b(sql + b"\x00" + types, digest_size=12).hexdigest().encode()


class Statement(NamedTuple):
    """A client's named statement: its server-side name, Parse message and effect."""

    server: bytes
    parse: bytes
    effect: Analysis


class ClientStatements:
    __slots__ = ("named", "unnamed", "unnamed_effect", "unnamed_key")

    def __init__(self) -> None:
        self.named: dict[bytes, Statement] = {}
        self.unnamed: bytes | None = None  # the client's last unnamed Parse, as sent
        self.unnamed_key = 0  # identifies that Parse on a server connection
        self.unnamed_effect: Analysis = NOTHING

    def clear(self) -> None:
        self.named.clear()
        self.unnamed = None
        self.unnamed_key = 0
        self.unnamed_effect = NOTHING


class ServerStatements:
    __slots__ = ("prepared", "unnamed_owner")

    def __init__(self) -> None:
        self.prepared: dict[bytes, bool] = {}
        self.unnamed_owner = 0  # unnamed_key of the client whose unnamed Parse is here

    def __len__(self) -> int:
        return len(self.prepared)

    def unknown(self, names: list[bytes]) -> None:
        """A batch that prepared ``names`` failed: they may or may not exist now."""
        for name in names:
            self.prepared[name] = False

    def clear(self) -> None:
        """Every statement is gone (DISCARD ALL, DEALLOCATE ALL, reset)."""
        self.prepared.clear()
        self.unnamed_owner = 0
