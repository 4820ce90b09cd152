"""The differences between "through the proxy" and "direct" that the harness accepts.

Strategy: everything a client receives is compared byte for byte, except what this one
list names. Each entry says what differs and why no client can rely on it; each is a
pure function from transcript to transcript, applied to both runs alike, so an entry can
only blur a difference, never invent one. Anything that differs and is not here is a
fidelity bug: a test marked xfail(strict=True) in test_scripts.py records it until fixed.
Keep this list short; the README's "Proxy fidelity" paragraph names the same entries.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from fleetpool.pg import messages as m
from fleetpool.pg.codec import Message

from .driver import Received

Transcript = list[Received]


@dataclass(frozen=True)
class Allowance:
    name: str
    reason: str
    apply: Callable[[Transcript], Transcript]


def _drop_auth_exchange(t: Transcript) -> Transcript:
    return [
        r
        for r in t
        if r.msg.type != m.AUTHENTICATION or m.parse_auth_request(r.msg.body)[0] == m.AUTH_OK
    ]


def _blank_cancel_keys(t: Transcript) -> Transcript:
    return [
        replace(r, msg=Message(m.BACKEND_KEY_DATA, b"")) if r.msg.type == m.BACKEND_KEY_DATA else r
        for r in t
    ]


def _sort_login_parameters(t: Transcript) -> Transcript:
    """Sort each session's login ParameterStatus messages by name, in their own places."""
    out = list(t)
    for session in {r.session for r in t}:
        places = [
            i
            for i, r in enumerate(t)
            if r.session == session and r.step == "login" and r.msg.type == m.PARAMETER_STATUS
        ]
        ordered = sorted((t[i] for i in places), key=lambda r: m.parse_parameter_status(r.msg.body))
        for i, r in zip(places, ordered, strict=True):
            out[i] = r
    return out


def _relative_notification_pids(t: Transcript) -> Transcript:
    """A NotificationResponse's pid becomes "the receiving session" (-1), "session i of
    this run" (-2 - i) or "someone else" (0), judged by the BackendKeyData each session
    received: what a client can compare it with."""
    keys: dict[str, int] = {}
    order: list[str] = []
    for r in t:
        if r.msg.type == m.BACKEND_KEY_DATA and r.session not in keys:
            keys[r.session] = m.parse_backend_key_data(r.msg.body)[0]
            order.append(r.session)
    out: Transcript = []
    for r in t:
        if r.msg.type == m.NOTIFICATION_RESPONSE:
            pid, channel, payload = m.parse_notification(r.msg.body)
            if pid == keys.get(r.session):
                rel = -1
            else:
                rel = next((-2 - i for i, s in enumerate(order) if keys[s] == pid), 0)
            rebuilt = m.build_notification(rel, channel, payload)
            r = replace(r, msg=Message(m.NOTIFICATION_RESPONSE, rebuilt[5:]))
        out.append(r)
    return out


# Applied in this order. _relative_notification_pids reads the BackendKeyData values,
# so it runs before _blank_cancel_keys.
ALLOWED: tuple[Allowance, ...] = (
    Allowance(
        "authentication exchange",
        "the proxy authenticates its clients itself (its own user list and method, here "
        "SCRAM-SHA-256 with random nonces) while the server trusts loopback; only "
        "AuthenticationOk is compared",
        _drop_auth_exchange,
    ),
    Allowance(
        "NotificationResponse pid compared as relative",
        "the sender's pid is compared as 'this session' / 'another session of the script' "
        "/ 'someone else' against the BackendKeyData the client received, which is all a "
        "client can check it against (it is not an allowance: a mismatch still fails)",
        _relative_notification_pids,
    ),
    Allowance(
        "BackendKeyData values",
        "the proxy hands out its own cancel keys and routes CancelRequests itself; a client "
        "only sends them back",
        _blank_cancel_keys,
    ),
    Allowance(
        "order of ParameterStatus messages at login",
        "the protocol does not order them and drivers keep them in a map; the names and "
        "values are still compared",
        _sort_login_parameters,
    ),
)


def normalise(t: Transcript) -> Transcript:
    for allowance in ALLOWED:
        t = allowance.apply(t)
    return t
