"""A password-guessing client for login-abuse tests and benchmarks.

It logs in from a chosen loopback source address (127.0.0.2, say, so the proxy sees
an address other than the victims' 127.0.0.1), over the PostgreSQL protocol with
fleetpool's own sans-I/O codec (SCRAM-SHA-256, md5 or cleartext: whatever the proxy
asks), with a wrong password, many times and several at once. Every attempt and the
whole run are bounded in time. Only loopback addresses are used.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field

from fleetpool.pg import messages as m
from fleetpool.pg.auth import ScramClient, md5_password
from fleetpool.pg.codec import NEED_DATA, BackendDecoder, Message, encode_startup

# What one attempt ended with.
REFUSED = "refused-before-password"  # an error before any password was asked for
FAILED = "password-refused"  # the password was checked and refused
ACCEPTED = "accepted"
BROKEN = "broken"  # timeout, reset, unexpected bytes


@dataclass
class AttackResult:
    outcomes: Counter[str] = field(default_factory=Counter)
    sqlstates: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    @property
    def attempts(self) -> int:
        return sum(self.outcomes.values())


async def _read(reader: asyncio.StreamReader, dec: BackendDecoder, deadline: float) -> Message:
    while True:
        event = dec.next_event()
        if event is not NEED_DATA:
            assert isinstance(event, Message)
            return event
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        data = await asyncio.wait_for(reader.read(65536), left)
        if not data:
            raise ConnectionResetError("closed")
        dec.receive_data(data)


async def attempt(
    host: str,
    port: int,
    user: str,
    password: str,
    *,
    database: str = "postgres",
    source: str = "127.0.0.2",
    timeout: float = 10.0,
) -> tuple[str, str]:
    """One login; (outcome, SQLSTATE of the error if any)."""
    deadline = time.monotonic() + timeout
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, local_addr=(source, 0)), timeout
        )
    except (OSError, TimeoutError):
        return BROKEN, ""
    dec = BackendDecoder(1 << 20)
    asked = False
    scram: ScramClient | None = None
    try:
        writer.write(encode_startup({"user": user, "database": database}))
        while True:
            msg = await _read(reader, dec, deadline)
            if msg.type == m.ERROR_RESPONSE:
                code = m.parse_error_fields(msg.body).get("C", "")
                return (FAILED if asked else REFUSED), code
            if msg.type != m.AUTHENTICATION:
                continue
            kind, data = m.parse_auth_request(msg.body)
            if kind == m.AUTH_OK:
                return ACCEPTED, ""
            asked = True
            if kind == m.AUTH_SASL:
                scram = ScramClient(password)
                writer.write(m.sasl_initial_response("SCRAM-SHA-256", scram.first()))
            elif kind == m.AUTH_SASL_CONTINUE and scram is not None:
                writer.write(m.sasl_response(scram.final(data)))
            elif kind == m.AUTH_MD5:
                writer.write(m.password_message(md5_password(user, password, data)))
            elif kind == m.AUTH_CLEARTEXT:
                writer.write(m.password_message(password.encode()))
    except (OSError, TimeoutError, ConnectionError):
        return BROKEN, ""
    except Exception:
        return BROKEN, ""
    finally:
        writer.close()


async def attack(
    host: str,
    port: int,
    user: str,
    *,
    attempts: int = 1000,
    concurrency: int = 20,
    source: str = "127.0.0.2",
    time_limit: float = 120.0,
) -> AttackResult:
    """``attempts`` wrong-password logins, ``concurrency`` at a time, within ``time_limit``."""
    result = AttackResult()
    started = time.monotonic()
    stop = started + time_limit
    todo = iter(range(attempts))

    async def worker() -> None:
        for i in todo:
            if time.monotonic() > stop:
                return
            outcome, code = await attempt(
                host, port, user, f"wrong-guess-{i}", source=source, timeout=10.0
            )
            result.outcomes[outcome] += 1
            if code:
                result.sqlstates[code] += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    result.seconds = time.monotonic() - started
    return result
