"""The differences between "through the proxy" and "direct" the MySQL harness accepts.

Strategy: as for PostgreSQL (tests/integration/proxy/fidelity/allowed.py), every packet a
client reads after login is compared byte for byte, except what this list names. Each
entry says what differs and why no client can rely on it, and is a pure function from
transcript to transcript applied to both runs alike. Anything else that differs is a
fidelity bug, recorded as xfail(strict=True) in test_fidelity.py until fixed. The README's
"Proxy fidelity" paragraph names the same entries.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .tap import Transcript


@dataclass(frozen=True)
class Allowance:
    name: str
    reason: str
    apply: Callable[[Transcript], Transcript]


# The login itself is never recorded packet by packet (tap.Run.session sums it up in
# one entry without the connection id, the nonce or the authentication exchange): the
# proxy authenticates clients itself and hands out its own connection ids, which a
# client only sends back (KILL). That is this list's first entry, applied at recording.
ALLOWED: tuple[Allowance, ...] = (
    Allowance(
        "login exchange: connection id, nonce and authentication",
        "the proxy authenticates its clients itself (its own users and plugin) and gives "
        "each client its own connection id; KILL with that id reaches the right server "
        "thread. Server version, negotiated capabilities, status and charset are compared",
        lambda t: t,
    ),
)


def normalise(t: Transcript) -> Transcript:
    for allowance in ALLOWED:
        t = allowance.apply(t)
    return t
