"""Run a script against two targets, normalise, and show the first difference.

Strategy: comparison is on (session, message type, body) after ``allowed.normalise``;
rendering is only for people. A failure prints both normalised transcripts side by
side around the first difference, one readable line per message, so the reader sees
what the client got through the proxy next to what the server itself said.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from fleetpool.pg import messages as m
from fleetpool.pg.codec import Message

from .allowed import ALLOWED, Transcript, normalise
from .driver import Received, Run, Target

Script = Callable[[Run], None]

_NAMES = {
    b"R": "Authentication",
    b"K": "BackendKeyData",
    b"S": "ParameterStatus",
    b"Z": "ReadyForQuery",
    b"T": "RowDescription",
    b"D": "DataRow",
    b"C": "CommandComplete",
    b"E": "ErrorResponse",
    b"N": "NoticeResponse",
    b"A": "Notification",
    b"1": "ParseComplete",
    b"2": "BindComplete",
    b"3": "CloseComplete",
    b"n": "NoData",
    b"s": "PortalSuspended",
    b"t": "ParameterDescription",
    b"I": "EmptyQueryResponse",
    b"G": "CopyInResponse",
    b"H": "CopyOutResponse",
    b"W": "CopyBothResponse",
    b"d": "CopyData",
    b"c": "CopyDone",
    b"v": "NegotiateProtocolVersion",
    b"V": "FunctionCallResponse",
    b"!": "(end of stream)",
}


def _short(value: bytes | None, limit: int = 24) -> str:
    if value is None:
        return "NULL"
    text = value.decode(errors="replace")
    return repr(text) if len(text) <= limit else f"{text[:limit]!r}..({len(value)} bytes)"


def render(msg: Message) -> str:
    """One line for a backend message: its name and the parts of its body that matter."""
    name = _NAMES.get(msg.type, repr(msg.type))
    body = msg.body
    try:
        if msg.type in (m.ERROR_RESPONSE, m.NOTICE_RESPONSE):
            f = m.parse_error_fields(body)
            rest = "".join(sorted(set(f) - {"S", "V", "C", "M"}))
            return f"{name} {f.get('S')} {f.get('C')} {f.get('M')!r} +{rest}"
        if msg.type == m.PARAMETER_STATUS:
            return f"{name} %s=%r" % m.parse_parameter_status(body)
        if msg.type == m.DATA_ROW:
            return f"{name} [{', '.join(_short(v) for v in m.parse_data_row(body))}]"
        if msg.type == m.ROW_DESCRIPTION:
            cols = m.parse_row_description(body)
            return f"{name} [{', '.join(f'{n}:{oid}' for n, oid in cols)}]"
        if msg.type in (m.COMMAND_COMPLETE, b"!"):
            return f"{name} {body.rstrip(bytes(1)).decode(errors='replace')!r}"
        if msg.type == m.READY_FOR_QUERY:
            return f"{name} {body.decode()}"
        if msg.type == m.NOTIFICATION_RESPONSE:
            pid, channel, payload = m.parse_notification(body)
            who = "this session" if pid == -1 else f"session #{-2 - pid}" if pid < 0 else "other"
            return f"{name} from {who} {channel!r} {payload!r}"
        if msg.type == m.AUTHENTICATION:
            return f"{name} code={m.parse_auth_request(body)[0]}"
        if msg.type == b"d":
            return f"{name} {_short(body, 40)}"
    except Exception as exc:  # a malformed body is itself worth seeing
        return f"{name} <unparsable: {exc}> {body[:40]!r}"
    return f"{name} {body[:40].hex()}" if body else name


def run_script(script: Script, target: Target) -> tuple[Transcript, BaseException | None]:
    """The raw transcript of ``script`` on ``target``, and the exception that stopped it."""
    run = Run(target)
    error: BaseException | None = None
    try:
        script(run)
    except Exception as exc:
        error = exc
    finally:
        run.close()
    return run.transcript, error


def _line(r: Received | None) -> str:
    return "" if r is None else f"{r.session}| {render(r.msg)}"


def first_difference(a: Transcript, b: Transcript) -> int | None:
    key = [(r.session, r.msg) for r in a]
    other = [(r.session, r.msg) for r in b]
    for i, (x, y) in enumerate(zip(key, other, strict=False)):
        if x != y:
            return i
    return None if len(a) == len(b) else min(len(a), len(b))


def listing(a: Transcript, b: Transcript, labels: tuple[str, str]) -> str:
    """Both transcripts whole, side by side."""
    width = 78
    out = [f"   {labels[0]:<{width}} | {labels[1]}"]
    for i in range(max(len(a), len(b))):
        x = a[i] if i < len(a) else None
        y = b[i] if i < len(b) else None
        out.append(f"   {_line(x)[:width]:<{width}} | {_line(y)[:width]}")
    return "\n".join(out)


def side_by_side(
    a: Transcript, b: Transcript, at: int, labels: tuple[str, str] = ("direct", "proxy")
) -> str:
    """Both transcripts around message ``at`` (the first difference), then the two
    differing messages in full."""
    width = 78
    lo, hi = max(0, at - 8), min(max(len(a), len(b)), at + 10)
    at_msg = a[at] if at < len(a) else b[at] if at < len(b) else None
    step = at_msg.step if at_msg else "(end)"
    out = [
        f"first difference at message {at} (step {step!r}); "
        f"allowed differences applied: {', '.join(x.name for x in ALLOWED)}",
        f"   {labels[0]:<{width}} | {labels[1]}",
    ]
    for i in range(lo, hi):
        x = a[i] if i < len(a) else None
        y = b[i] if i < len(b) else None
        mark = ">> " if i == at else "   "
        out.append(f"{mark}{_line(x)[:width]:<{width}} | {_line(y)[:width]}")
    x, y = (a[at] if at < len(a) else None), (b[at] if at < len(b) else None)
    out.append(f"   {labels[0]}: {_line(x) or '(nothing)'}")
    out.append(f"   {labels[1]}: {_line(y) or '(nothing)'}")
    if x and y and x.session == y.session and render(x.msg) == render(y.msg):
        n = next(
            (i for i, (p, q) in enumerate(zip(x.msg.body, y.msg.body, strict=False)) if p != q),
            min(len(x.msg.body), len(y.msg.body)),
        )
        out.append(f"   (the lines read alike; the bodies differ from byte {n})")
    return "\n".join(out)


def compare(script: Script, direct: Target, proxy: Target) -> str | None:
    """None when the two runs match after normalisation, else a report to print."""
    raw_a, err_a = run_script(script, direct)
    if err_a is not None:
        raise AssertionError(f"the script fails against the server itself: {err_a!r}") from err_a
    raw_b, err_b = run_script(script, proxy)
    a, b = normalise(raw_a), normalise(raw_b)
    at = first_difference(a, b)
    labels = (direct.label, proxy.label)
    if os.environ.get("FLEETPOOL_FIDELITY_SHOW"):  # whole transcripts, for `pytest -s`
        print(listing(a, b, labels))
    if at is None and err_b is None:
        return None
    report = side_by_side(a, b, len(b) if at is None else at, labels)
    if err_b is not None:
        report += f"\nthrough the proxy the script stopped: {err_b}"
    return report
