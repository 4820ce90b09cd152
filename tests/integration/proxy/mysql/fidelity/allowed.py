"""The differences between "through the proxy" and "direct" the MySQL harness accepts.

Strategy: as for PostgreSQL (tests/integration/proxy/fidelity/allowed.py), every packet a
client reads after login is compared byte for byte, except what this list names. Each
entry says what differs and why no client can rely on it, and is a pure function from
transcript to transcript applied to both runs alike. Anything else that differs is a
fidelity bug, recorded as xfail(strict=True) in test_fidelity.py until fixed. The README's
"Proxy fidelity" paragraph names the same entries.
"""

from __future__ import annotations

from dataclasses import replace

from fleetpool.mysql import messages as mm

from ...fidelity.allowed import Allowance
from .tap import PREPARE_STEP, Transcript


def _relative_statement_ids(t: Transcript) -> Transcript:
    """Each session's prepared-statement ids become 1, 2, ... in the order given."""
    out: Transcript = []
    ids: dict[tuple[str, int], int] = {}
    step = ("", "")
    for r in t:
        first, step = (r.session, r.step) != step, (r.session, r.step)
        if first and r.step.startswith(PREPARE_STEP) and r.payload[:1] == b"\x00":
            ok = mm.PrepareOk.parse(r.payload)
            n = ids.setdefault((r.session, ok.statement_id), len(ids) + 1)
            r = replace(r, payload=r.payload[:1] + n.to_bytes(4, "little") + r.payload[5:])
        out.append(r)
    return out


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
    Allowance(
        "prepared-statement ids",
        "the proxy gives clients statement ids of its own and maps them to each server "
        "connection's (where it prepares statements again on demand); a client only sends "
        "them back. Compared as 'the n-th statement this session prepared'",
        _relative_statement_ids,
    ),
)


def normalise(t: Transcript) -> Transcript:
    for allowance in ALLOWED:
        t = allowance.apply(t)
    return t
