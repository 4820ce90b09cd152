# Strategy: what operators audit -- logins, failed logins, admin commands -- is logged
# (and pins, which operators trace back to the code that caused them) is logged
# as one record per event with named fields (``record.fields``), not only as prose: the
# JSON log format writes the fields as keys (``"event": "login_failed", "user": ...``)
# for a log pipeline to filter on, and the text format appends them as ``key=value``.
# Every wire-protocol plug-in reports through these functions, so the fields are the
# same for each engine. Secrets never appear: a password is not a field.
from __future__ import annotations

import logging
from typing import Any

from ..redact import sql_head

log = logging.getLogger("fleetpool.proxy.events")

#: Attribute of a LogRecord holding an event's fields (the formatters read it).
FIELDS = "fields"


def emit(event: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log ``event`` with ``fields`` (None values are left out)."""
    if not log.isEnabledFor(level):
        return
    kept = {k: v for k, v in fields.items() if v is not None and v != ""}
    text = " ".join(f"{k}={_shown(v)}" for k, v in kept.items())
    log.log(level, "%s %s", event, text, extra={FIELDS: {"event": event, **kept}})


def _shown(value: Any) -> str:
    text = str(value)
    return repr(text) if not text or any(c.isspace() or c in "\"'=" for c in text) else text


def login(user: str, database: str, addr: str, **fields: Any) -> None:
    """A client logged in (``admin=True`` for the admin console)."""
    emit("login", user=user, database=database, addr=addr, **fields)


def login_failed(user: str, database: str, addr: str, reason: str, code: str) -> None:
    """A login was refused; ``code`` is the error code the client got."""
    emit(
        "login_failed",
        logging.WARNING,
        user=user,
        database=database,
        addr=addr,
        reason=reason,
        code=code,
    )


def admin_command(user: str, addr: str, command: str, result: str) -> None:
    """An admin console command ran; read-only ones (SHOW) are logged at DEBUG."""
    level = logging.DEBUG if command.upper().startswith("SHOW") else logging.INFO
    emit("admin_command", level, user=user, addr=addr, command=command, result=result)


def pinned(client: int, application_name: str, reason: str, statement: bytes) -> None:
    """A client was pinned to its server connection.

    ``application_name`` (MySQL: the ``program_name`` connection attribute) and the
    statement's first words (literals hidden) lead to the call site that pinned.
    """
    emit(
        "pinned",
        client=client,
        application_name=application_name or "(none)",
        reason=reason,
        statement=sql_head(statement) if statement else "(not seen: found after it ran)",
    )


def record_fields(record: logging.LogRecord) -> dict[str, Any]:
    """An event's fields, or ``{}`` for an ordinary log record."""
    fields = getattr(record, FIELDS, None)
    return fields if isinstance(fields, dict) else {}
