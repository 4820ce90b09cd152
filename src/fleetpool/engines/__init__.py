"""What fleetpool knows about each database engine, as data and small pure functions.

Strategy: the client, the reaper and the benchmarks must agree on facts such as
"which errors mean the server is full", "which statements leave state in a
session" and "how to kill a session safely". Those facts live here, one module
per engine family, with no driver import: they classify SQLSTATEs, MySQL error
numbers and statement text, and build SQL strings. Everything that talks to a
server is in :mod:`fleetpool.client`.

Errors are classified by code only, never by message text: messages are
translated and reworded between versions, codes are not.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable
from typing import NamedTuple


class ErrorKind(enum.Enum):
    """What a connect or query error means for the caller."""

    #: The server refused us because it is full (53300; MySQL 1040, 1203, 1226): wait, retry.
    CAPACITY = "capacity"
    #: The network or a restarting server: retry with backoff.
    TRANSIENT = "transient"
    #: The credentials were refused: refresh them once (rotation), then give up.
    AUTH = "auth"
    #: Anything else (unknown database, permission, syntax): do not retry.
    FATAL = "fatal"


class SessionState(enum.Flag):
    """Kinds of state a statement can leave behind in a server session."""

    NONE = 0
    #: A session variable / GUC (SET, set_config, SET NAMES, SET ROLE...).
    SETTING = enum.auto()
    #: A temporary table, view or sequence.
    TEMP = enum.auto()
    #: A session-level lock (advisory lock, GET_LOCK, LOCK TABLES).
    LOCK = enum.auto()
    #: A server-side prepared statement (PREPARE ...).
    PREPARED = enum.auto()
    #: A user variable (MySQL @var).
    VARIABLE = enum.auto()
    #: LISTEN, cursors WITH HOLD, HANDLER OPEN, XA: other per-session objects.
    OTHER = enum.auto()
    #: The default database changed (MySQL USE): only a reconnect undoes it.
    DATABASE = enum.auto()


class Rule(NamedTuple):
    """One statement-classification rule: a regex and the state it implies."""

    pattern: str
    state: SessionState
    #: True: the pattern must start a statement (after comments and ';').
    leading: bool = True


# A statement starts at the beginning of the text or after ';', possibly after
# comments and parentheses. Patterns that may appear anywhere (function calls,
# "@v :=") are matched without this prefix. False positives only cost a reset;
# false negatives leak state, so rules lean wide.
_LEAD = r"(?:^|;)\s*(?:(?:/\*.*?\*/|--[^\n]*(?:\n|$)|#[^\n]*(?:\n|$)|\()\s*)*"


def compile_rules(rules: Iterable[Rule]) -> list[tuple[re.Pattern[str], SessionState]]:
    compiled = []
    for rule in rules:
        text = (_LEAD + rule.pattern) if rule.leading else rule.pattern
        compiled.append((re.compile(text, re.IGNORECASE | re.DOTALL), rule.state))
    return compiled


def classify(
    sql: str, rules: list[tuple[re.Pattern[str], SessionState]], quick: re.Pattern[str]
) -> SessionState:
    """Return the session state ``sql`` may leave behind (``SessionState.NONE`` if none).

    ``quick`` is one cheap regex that every dirtying statement matches; most
    statements fail it and cost one scan.
    """
    if quick.search(sql) is None:
        return SessionState.NONE
    found = SessionState.NONE
    for pattern, state in rules:
        if pattern.search(sql) is not None:
            found |= state
    return found


class SessionRow(NamedTuple):
    """One server session as the reaper sees it, engine-neutral.

    ``idle_for`` is seconds since the session last did anything (None when the
    server does not say); ``busy`` means running a statement; ``in_transaction``
    means a transaction is open (idle or not).
    """

    id: int
    user_is_me: bool
    tag: str
    busy: bool
    in_transaction: bool
    idle_for: float | None


__all__ = [
    "ErrorKind",
    "Rule",
    "SessionRow",
    "SessionState",
    "classify",
    "compile_rules",
]
